//! The journal's retention from the inventory, end to end: `lbctl` with
//! `[coordination] retention` against a real HAProxy, a journal an
//! earlier release grew, and `history --since` in days.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::{Env, admin_bits, haproxy_section};
use lb_lab::{Backend, Haproxy, Pools};

fn ts(days_ago: u64) -> String {
    (time::OffsetDateTime::now_utc() - Duration::from_secs(days_ago * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `n` finished drains of node3, `days_ago`, as lbctl journals them.
fn finished(out: &mut String, tag: &str, n: usize, days_ago: u64) {
    let t = ts(days_ago);
    for i in 0..n {
        let id = format!("{tag}-{i}");
        let _ = writeln!(
            out,
            r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000001,"host":"elsewhere","user":"ops","command":"drain node3"}}"#
        );
        let _ = writeln!(
            out,
            r#"{{"ts":"{t}","run":"{id}","event":"intent","seq":1,"node":"node3","balancer":"edge","pool":"app","member":"node3","what":"state","from":"ready","to":"drain"}}"#
        );
        let _ = writeln!(
            out,
            r#"{{"ts":"{t}","run":"{id}","event":"done","seq":1,"result":"applied"}}"#
        );
        let _ = writeln!(
            out,
            r#"{{"ts":"{t}","run":"{id}","event":"end","status":"ok"}}"#
        );
    }
}

#[test]
fn the_inventorys_retention_drops_older_runs_and_history_since_days_lists_the_rest() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let mut inv = String::from("[coordination]\nbackend = \"file\"\nretention = \"7d\"\n\n");
    for b in &backends {
        let _ = writeln!(inv, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    let env = Env::new(&(inv + &haproxy_section("edge", &hap.admin_socket())));
    let mut j = String::new();
    finished(&mut j, "tenday", 2000, 10);
    finished(&mut j, "threeday", 50, 3);
    std::fs::create_dir_all(env.state()).unwrap();
    std::fs::write(env.state().join("journal.jsonl"), &j).unwrap();

    env.ok(&["drain", "node1", "--no-wait"]);
    assert_eq!(admin_bits(&hap, "node1") & 0x08, 0x08, "node1 drains");

    let v = env.json(&["history", "--since", "90d"]);
    let runs: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(runs.len(), 51, "{runs:?}");
    assert!(
        runs[..50].iter().all(|r| r.starts_with("threeday-")),
        "{runs:?}"
    );
    assert_eq!(v["runs"][50]["command"], "drain node1");
    let v = env.json(&["history", "--since", "2d"]);
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "{v}");

    let live = std::fs::read_to_string(env.state().join("journal.jsonl")).unwrap();
    assert!(!live.contains("day-"), "{live}");
    assert!(env.state().join("journal.archive").is_dir());
}

#[test]
fn a_retention_that_is_not_a_duration_is_a_configuration_error() {
    let env = Env::new("[coordination]\nbackend = \"file\"\nretention = \"a month\"\n");
    let out = env.cmd(&["history"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("retention") || e.contains("a month"), "{e}");
}
