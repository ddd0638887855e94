//! A drain that HAProxy reloads under: per run, a 2 s request is in flight
//! on node2, `lbctl drain node2` sets drain and waits, and HAProxy is
//! reloaded (SIGUSR2 to the master) while it waits. Measured: when lbctl
//! returned relative to the completion of node2's request (negative would
//! mean it called node2 drained too early), with the master CLI
//! (`master_socket`) and without it (the worker's PID watched).
//!
//! ```text
//! cargo bench -p lbctl --bench reload_drain            # 10 runs per mode
//! cargo bench -p lbctl --bench reload_drain -- --runs 20
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lb_lab::{Backend, Haproxy, HaproxyOptions, Pools, http};

/// Signed milliseconds from `a` to `b`.
fn ms(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64() * 1e3
    } else {
        -((a - b).as_secs_f64() * 1e3)
    }
}

/// One run: lbctl's return minus the completion of node2's request.
fn run(master: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("servers.state");
    let backends = Backend::start_many(3);
    let opts = HaproxyOptions {
        global: vec![format!("server-state-file {}", state.display())],
        defaults: vec!["load-server-state-from-file global".into()],
        ..HaproxyOptions::default()
    };
    let hap = Haproxy::start_with(&Pools::new().pool("app", &backends), &opts);
    let mut inv = format!(
        "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"{}\"\nstate_file = \"{}\"\n",
        hap.admin_socket().display(),
        state.display()
    );
    if master {
        inv.push_str(&format!(
            "master_socket = \"{}\"\n",
            hap.master_socket().display()
        ));
    }
    for b in &backends {
        inv.push_str(&format!(
            "\n[nodes.{}]\naddress = \"{}\"\n",
            b.id(),
            b.addr()
        ));
    }
    std::fs::write(dir.path().join("lbctl.toml"), inv).unwrap();
    let url = format!("{}slow?ms=2000", hap.frontend_url("app"));
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = http::get(&url).unwrap();
                (r.header("x-backend").map(str::to_owned), Instant::now())
            })
        })
        .collect();
    while backends[1].in_flight() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let child = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(["drain", "node2", "--timeout", "30s"])
        .env("LBCTL_CONFIG", dir.path().join("lbctl.toml"))
        .env("LBCTL_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !hap
        .command("show servers state app")
        .lines()
        .any(|l| l.split(' ').nth(3) == Some("node2") && l.split(' ').nth(6) == Some("8"))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    hap.reload();
    let out = child.wait_with_output().unwrap();
    let returned = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let finished = slow
        .into_iter()
        .map(|t| t.join().unwrap())
        .find(|(b, _)| b.as_deref() == Some("node2"))
        .expect("node2 answered")
        .1;
    ms(finished, returned)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    println!(
        "| mode | runs | returned before the request completed | lbctl's return after it: min / median / max |\n|---|---|---|---|"
    );
    for (name, master) in [("master_socket", true), ("worker PID watched", false)] {
        let mut v: Vec<f64> = (0..runs).map(|_| run(master)).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "| {name} | {runs} | {} | {:.0} / {:.0} / {:.0} ms |",
            v.iter().filter(|d| **d < 0.0).count(),
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}
