//! Rebalancing, measured: per balancer, several runs of `lbctl rebalance`
//! (the default `drain` strategy) on a pool made skewed the way a rolling
//! upgrade leaves it, with every request counted.
//!
//! ```text
//! cargo bench -p lbctl --bench rebalance            # 5 runs per balancer
//! cargo bench -p lbctl --bench rebalance -- --runs 10 --only haproxy
//! ```
//!
//! Per run: three backends behind a real balancer with session persistence
//! (HAProxy `cookie SERVERID insert`, Apache `stickysession=ROUTEID`), 36
//! users that keep their cookies and send a 200 ms request about every
//! 300 ms after the last answer. Every user arrives while node2 and node3
//! are draining, so all stick to node1; then node2 and node3 are back and
//! get no one. Time to balance is `lbctl rebalance`'s wall time: from its
//! start (including its first 1 s measurement) until it returns with the
//! pool balanced (including the measurement that says so). Then the
//! requests each node serves while the users send 400 more give the skew
//! the users see. Requests (answered or failed) are counted from the
//! rebalance's start to its end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use lb_lab::{Apache, Backend, Haproxy, Load, LoadOptions, PoolSpec, Pools};

enum Lb {
    Haproxy(Haproxy),
    Apache(Apache),
}

impl Lb {
    fn start(kind: &str, backends: &[Backend]) -> Lb {
        let pool = PoolSpec::new("app").backends(backends);
        match kind {
            "haproxy" => Lb::Haproxy(Haproxy::start(&Pools::new().with(pool.haproxy_cookies()))),
            "apache" => Lb::Apache(Apache::start(&Pools::new().with(pool.apache_sticky()))),
            other => panic!("no balancer {other} in this benchmark: haproxy or apache"),
        }
    }

    fn section(&self) -> String {
        match self {
            Lb::Haproxy(h) => format!(
                "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"{}\"\n",
                h.admin_socket().display()
            ),
            Lb::Apache(a) => format!(
                "[balancers.web]\nkind = \"apache\"\nurl = \"{}\"\n",
                a.manager_url()
            ),
        }
    }

    fn url(&self) -> String {
        match self {
            Lb::Haproxy(h) => h.frontend_url("app"),
            Lb::Apache(a) => a.frontend_url("app"),
        }
    }
}

struct Run {
    code: i32,
    time: Duration,
    pulses: usize,
    skew_before: f64,
    skew_after: f64,
    served_skew: f64,
    requests: u64,
    failed: u64,
}

fn lbctl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(args)
        .env("LBCTL_CONFIG", dir.join("lbctl.toml"))
        .env("LBCTL_STATE_DIR", dir.join("state"))
        .output()
        .expect("run lbctl")
}

/// Requests each backend served while `n` more succeeded: max / mean.
fn served_skew(load: &Load, backends: &[Backend], n: u64) -> f64 {
    let count = |m: &BTreeMap<String, u64>, b: &str| m.get(b).copied().unwrap_or(0);
    let before = load.by_backend();
    load.wait_for_ok(n);
    let now = load.by_backend();
    let served: Vec<f64> = backends
        .iter()
        .map(|b| (count(&now, b.id()) - count(&before, b.id())) as f64)
        .collect();
    let mean = served.iter().sum::<f64>() / served.len() as f64;
    served.iter().copied().fold(0.0, f64::max) / mean
}

fn one_run(kind: &str, dir: &std::path::Path) -> Run {
    let backends = Backend::start_many(3);
    let lb = Lb::start(kind, &backends);
    let mut inv = String::from("[defaults]\nmin_active = 1\npoll_interval = \"50ms\"\n\n");
    inv.push_str(&lb.section());
    for b in &backends {
        let _ = write!(inv, "\n[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    std::fs::write(dir.join("lbctl.toml"), inv).unwrap();
    let ok = |args: &[&str]| {
        let out = lbctl(dir, args);
        assert!(
            out.status.success(),
            "lbctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["drain", "node2", "node3", "--no-wait", "-q"]);
    let load = Load::start(&format!("{}slow?ms=200", lb.url()), LoadOptions::users(36));
    load.wait_for_ok(100);
    ok(&["undrain", "node2", "node3", "-q"]);
    load.wait_for_ok(100);

    let (ok0, failed0) = (load.ok(), load.failed());
    let t0 = Instant::now();
    let out = lbctl(dir, &["rebalance", "--window", "1s", "--output", "json"]);
    let time = t0.elapsed();
    let (ok1, failed1) = (load.ok(), load.failed());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lbctl rebalance: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let p = &v["pools"][0];
    for m in p["after"]["members"].as_array().into_iter().flatten() {
        eprintln!(
            "    after: {} {} {} load {}",
            m["member"].as_str().unwrap_or("?"),
            m["admin"],
            m["health"],
            m["load"]
        );
    }
    for a in p["actions"].as_array().into_iter().flatten() {
        eprintln!(
            "    {} out for {} ms: load {} -> {}",
            a["member"].as_str().unwrap_or("?"),
            a["held_ms"],
            a["load_before"],
            a["load_after"]
        );
    }
    let skew = |m: &str| p[m]["skew"].as_f64().unwrap_or(f64::NAN);
    let served = served_skew(&load, &backends, 400);
    let report = load.stop();
    for f in report.samples.iter().take(3) {
        eprintln!("    {f}");
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        time,
        pulses: p["actions"].as_array().map_or(0, Vec::len),
        skew_before: skew("before"),
        skew_after: skew("after"),
        served_skew: served,
        requests: (ok1 - ok0) + (failed1 - failed0),
        failed: failed1 - failed0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let runs: usize = flag("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    let only = flag("--only").unwrap_or_else(|| "haproxy,apache".into());
    let mut table = String::from(
        "| balancer | runs | balanced (exit 0) | skew before (mean) | skew after, lbctl (mean / max) | served skew after (mean / max) | pulses (mean) | time to balance (min / median / max) | requests during | failed during |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for kind in only.split(',') {
        let mut rs: Vec<Run> = Vec::new();
        for i in 1..=runs {
            let dir = tempfile::tempdir().unwrap();
            let r = one_run(kind, dir.path());
            eprintln!(
                "{kind} run {i}/{runs}: exit {}, {:.2} -> {:.2} (served {:.2}), {} pulses, {} ms, {} requests, {} failed",
                r.code,
                r.skew_before,
                r.skew_after,
                r.served_skew,
                r.pulses,
                r.time.as_millis(),
                r.requests,
                r.failed
            );
            rs.push(r);
        }
        let mean = |f: &dyn Fn(&Run) -> f64| rs.iter().map(f).sum::<f64>() / rs.len() as f64;
        let max = |f: &dyn Fn(&Run) -> f64| rs.iter().map(f).fold(0.0, f64::max);
        let mut times: Vec<u128> = rs.iter().map(|r| r.time.as_millis()).collect();
        times.sort_unstable();
        let _ = writeln!(
            table,
            "| {kind} | {runs} | {} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {} / {} / {} ms | {} | {} |",
            rs.iter().filter(|r| r.code == 0).count(),
            mean(&|r| r.skew_before),
            mean(&|r| r.skew_after),
            max(&|r| r.skew_after),
            mean(&|r| r.served_skew),
            max(&|r| r.served_skew),
            mean(&|r| r.pulses as f64),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            rs.iter().map(|r| r.requests).sum::<u64>(),
            rs.iter().map(|r| r.failed).sum::<u64>(),
        );
    }
    println!("\n{table}");
}
