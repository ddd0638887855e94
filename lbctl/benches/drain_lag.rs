//! Drained-detection lag: from the moment the last request in flight on a
//! node completes to the moment `lbctl drain` returns, against a real
//! haproxy, at the default poll interval (100 ms). Goal: ≤ 150 ms.
//!
//! ```text
//! cargo bench -p lbctl --bench drain_lag
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use lb_lab::{Backend, Haproxy, Pools, http};

const RUNS: usize = 10;

fn main() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let dir = tempfile::tempdir().unwrap();
    let mut inv = format!(
        "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"{}\"\n\n",
        hap.admin_socket().display()
    );
    for b in &backends {
        inv.push_str(&format!("[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr()));
    }
    std::fs::write(dir.path().join("lbctl.toml"), inv).unwrap();
    let lbctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lbctl"))
            .args(args)
            .env("LBCTL_CONFIG", dir.path().join("lbctl.toml"))
            .env("LBCTL_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let url = format!("{}slow?ms=700", hap.frontend_url("app"));
    let mut lags = Vec::new();
    for i in 0..RUNS {
        lbctl(&["undrain", "node2"]);
        let slow: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let r = http::get(&url).unwrap();
                    (r.header("x-backend").unwrap().to_string(), Instant::now())
                })
            })
            .collect();
        while backends[1].in_flight() == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Spread lbctl's polls over the whole interval relative to the
        // request's end, so the figure is not one lucky phase.
        std::thread::sleep(Duration::from_millis((i as u64 * 37) % 100));
        lbctl(&["drain", "node2", "--soft"]);
        let returned = Instant::now();
        let done = slow
            .into_iter()
            .map(|t| t.join().unwrap())
            .find(|(b, _)| b == "node2")
            .expect("a request on node2")
            .1;
        lags.push(returned.saturating_duration_since(done));
    }
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "drained-detection lag over {RUNS} runs (poll 100 ms): min {:.1} ms, median {:.1} ms, max {:.1} ms (goal <= 150 ms)",
        ms(lags[0]),
        ms(lags[RUNS / 2]),
        ms(lags[RUNS - 1])
    );
}
