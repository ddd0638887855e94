//! `recover` as history grows: a journal of 1 000 and one of 100 000
//! finished runs (drains of one node, each `start`, `intent`, `done`,
//! `end`, within the retention) and one run a killed lbctl left open,
//! against a real haproxy. `lbctl recover --dry-run` is timed on each
//! journal as every release before compaction kept it (everything in
//! `journal.jsonl`), then once a command that changes something
//! (`lbctl undrain node1`, its lock) compacted it. Goal: `recover` as
//! fast with 100 000 past runs as with 1 000 (ratio ≤ 1.5).
//!
//! ```text
//! cargo bench -p lbctl --bench journal            # 15 runs each (-- --runs N)
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lb_lab::{Backend, Haproxy, Pools};

fn ts(days_ago: u64) -> String {
    (time::OffsetDateTime::now_utc() - Duration::from_secs(days_ago * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `runs` finished drains of node3 (a day old) and a drain of node2 a
/// killed lbctl left, as lbctl journals them.
fn journal(runs: usize) -> String {
    let t = ts(1);
    let mut s = String::with_capacity(runs * 700);
    for i in 0..runs {
        let id = format!("1764400000000-{}-0", 100_000 + i);
        let _ = writeln!(
            s,
            r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000001,"host":"elsewhere","user":"ops","command":"drain node3"}}"#
        );
        let _ = writeln!(
            s,
            r#"{{"ts":"{t}","run":"{id}","event":"intent","seq":1,"node":"node3","balancer":"edge","pool":"app","member":"node3","what":"state","from":"ready","to":"drain"}}"#
        );
        let _ = writeln!(
            s,
            r#"{{"ts":"{t}","run":"{id}","event":"done","seq":1,"result":"applied"}}"#
        );
        let _ = writeln!(
            s,
            r#"{{"ts":"{t}","run":"{id}","event":"end","status":"ok"}}"#
        );
    }
    let id = "1764500000000-99-0";
    let _ = writeln!(
        s,
        r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000002,"host":"elsewhere","user":"ops","command":"drain node2"}}"#
    );
    let _ = writeln!(
        s,
        r#"{{"ts":"{t}","run":"{id}","event":"intent","seq":1,"node":"node2","balancer":"edge","pool":"app","member":"node2","what":"state","from":"ready","to":"maint"}}"#
    );
    s
}

fn size(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .unwrap()
            .map(|e| size(&e.unwrap().path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    runs: usize,
    bytes: u64,
    before_ms: f64,
    compact_ms: f64,
    live: u64,
    archive: u64,
    after_ms: f64,
}

fn main() {
    let runs_each: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map_or(15, |n| n.parse().expect("--runs N"));
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let mut rows = Vec::new();
    for runs in [1_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut inv = format!(
            "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"{}\"\n\n",
            hap.admin_socket().display()
        );
        for b in &backends {
            let _ = writeln!(inv, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
        }
        std::fs::write(dir.path().join("lbctl.toml"), inv).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("journal.jsonl"), journal(runs)).unwrap();
        let lbctl = |args: &[&str]| {
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_lbctl"))
                .args(args)
                .env("LBCTL_CONFIG", dir.path().join("lbctl.toml"))
                .env("LBCTL_STATE_DIR", &state)
                .output()
                .unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            assert!(
                out.status.success(),
                "lbctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            (ms, String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let recover = || {
            let (ms, out) = lbctl(&["recover", "--dry-run", "--output", "json"]);
            assert!(out.contains("\"member\":\"node2\""), "{out}");
            ms
        };
        let bytes = size(&state.join("journal.jsonl"));
        let before_ms = median((0..runs_each).map(|_| recover()).collect());
        let (compact_ms, _) = lbctl(&["undrain", "node1"]);
        let after_ms = median((0..runs_each).map(|_| recover()).collect());
        rows.push(Row {
            runs,
            bytes,
            before_ms,
            compact_ms,
            live: size(&state.join("journal.jsonl")),
            archive: size(&state.join("journal.archive")),
            after_ms,
        });
    }
    println!(
        "| past runs | journal | recover before (median of {runs_each}) | command that compacts | live journal after | archive | recover after (median of {runs_each}) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} MB | {:.1} ms | {:.1} ms | {:.1} kB | {:.1} MB | {:.1} ms |",
            r.runs,
            r.bytes as f64 / 1e6,
            r.before_ms,
            r.compact_ms,
            r.live as f64 / 1e3,
            r.archive as f64 / 1e6,
            r.after_ms
        );
    }
    let (a, b) = (&rows[0], &rows[1]);
    println!(
        "\nrecover, 100 000 / 1 000 past runs: before {:.2}×, after {:.2}× (goal ≤ 1.5×)",
        b.before_ms / a.before_ms,
        b.after_ms / a.after_ms
    );
}
