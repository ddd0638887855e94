//! SIGINT and SIGTERM to `drain`, `undrain` and `recover`, with real
//! processes: lbctl against the lab's HAProxy, a request in flight.

mod common;

use std::fmt::Write as _;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, admin_bits, haproxy_section, json, stderr};
use lb_lab::{Backend, Haproxy, Pools, http};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn inventory(backends: &[Backend], hap: &Haproxy) -> String {
    let mut s = String::from(
        "[defaults]\npoll_interval = \"50ms\"\ndrain_timeout = \"60s\"\nundrain_timeout = \"60s\"\n\n",
    );
    for b in backends {
        let _ = writeln!(s, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    s + &haproxy_section("edge", &hap.admin_socket())
}

/// Three 30-second requests, one on each node (round robin), so a drain of
/// any node waits.
fn keep_busy(hap: &Haproxy, backends: &[Backend]) {
    let url = format!("{}slow?ms=30000", hap.frontend_url("app"));
    for _ in 0..3 {
        let u = url.clone();
        std::thread::spawn(move || http::get(&u));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while backends[1].in_flight() == 0 {
        assert!(Instant::now() < deadline, "no request reached node2");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `sig` and waits (at most 10 s) for lbctl to exit.
fn signal(child: Child, sig: Signal) -> Output {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("lbctl exits within 10 s of the signal")
        .unwrap()
}

const DRAINING: u32 = 0x08;

#[test]
fn sigterm_to_drain_mid_wait_leaves_the_node_draining_ends_the_run_and_says_what_next() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap));
    keep_busy(&hap, &backends);

    let child = spawn(&env, &["drain", "node2", "--output", "json"]);
    until("lbctl set drain", || {
        admin_bits(&hap, "node2") & DRAINING != 0
    });
    let out = signal(child, Signal::SIGTERM);

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("SIGTERM") || msg.contains("signal"), "{msg}");
    assert!(msg.contains("edge app/node2"), "names the member: {msg}");
    assert!(
        msg.contains("lbctl undrain node2") && msg.contains("lbctl drain node2"),
        "says what to run next: {msg}"
    );
    assert_eq!(
        admin_bits(&hap, "node2") & DRAINING,
        DRAINING,
        "what is out stays out"
    );
    assert_eq!(admin_bits(&hap, "node2") & 0x01, 0, "no maint began");

    // The run ended, as interrupted: recover leaves it to the operator.
    let h = env.json(&["history", "--node", "node2"]);
    let runs = h["runs"].as_array().unwrap();
    let last = runs.last().unwrap();
    assert_eq!(last["command"], "drain node2", "{h}");
    assert_eq!(last["result"], "interrupted", "{h}");
    let r = env.json(&["recover", "--dry-run"]);
    assert_eq!(r["recovered"], serde_json::json!([]), "{r}");

    // The command it named puts the node back.
    env.ok(&["undrain", "node2", "--no-wait"]);
    assert_eq!(admin_bits(&hap, "node2"), 0);
}

#[test]
fn sigint_to_drain_in_text_says_so_on_stderr() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap));
    keep_busy(&hap, &backends);

    let child = spawn(&env, &["drain", "node2"]);
    until("lbctl set drain", || {
        admin_bits(&hap, "node2") & DRAINING != 0
    });
    let out = signal(child, Signal::SIGINT);

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let err = stderr(&out);
    assert!(err.contains("interrupted"), "{err}");
    assert!(err.contains("lbctl undrain node2"), "{err}");
    assert_eq!(admin_bits(&hap, "node2") & DRAINING, DRAINING);
}

#[test]
fn sigterm_to_undrain_waiting_for_health_abandons_the_wait_and_says_so() {
    let mut backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap));
    // node2 down (its checks keep running while it drains): the undrain
    // waits for a health that never comes.
    backends[1].stop();
    until("HAProxy sees node2 down", || {
        hap.command("show servers state app")
            .lines()
            .any(|l| l.split(' ').nth(3) == Some("node2") && l.split(' ').nth(5) == Some("0"))
    });
    env.ok(&["drain", "node2", "--no-wait"]);

    let child = spawn(&env, &["undrain", "node2", "--output", "json"]);
    until("lbctl set ready", || admin_bits(&hap, "node2") == 0);
    let out = signal(child, Signal::SIGTERM);

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("node2"), "{msg}");
    assert!(
        msg.contains("lbctl status node2"),
        "says what to run next: {msg}"
    );
    assert_eq!(admin_bits(&hap, "node2"), 0, "in rotation, as asked");
    let h = env.json(&["history", "--node", "node2"]);
    assert_eq!(
        h["runs"].as_array().unwrap().last().unwrap()["result"],
        "ok"
    );
}

#[test]
fn sigterm_to_recover_waiting_for_a_claim_changes_nothing_and_names_the_next_command() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap));
    keep_busy(&hap, &backends);

    // A drain killed mid-wait leaves node2 draining, for recover.
    let mut killed = spawn(&env, &["drain", "node2"]);
    until("lbctl set drain", || {
        admin_bits(&hap, "node2") & DRAINING != 0
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    // Another drain of node2 waits for the same request, holding node2.
    let holder = spawn(&env, &["drain", "node2", "--soft"]);
    let state = env.state();
    until("the second drain claims node2", || {
        std::fs::read_to_string(state.join("journal.jsonl"))
            .map(|j| j.matches("\"start\"").count() >= 2)
            .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_millis(300));

    let child = spawn(&env, &["recover", "--output", "json"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = signal(child, Signal::SIGTERM);
    let _ = signal(holder, Signal::SIGKILL);

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("node2"), "{msg}");
    assert!(msg.contains("lbctl recover"), "{msg}");
    assert_eq!(
        admin_bits(&hap, "node2") & DRAINING,
        DRAINING,
        "nothing was put back"
    );
    // What it left is still there for the next recover.
    let r = env.json(&["recover"]);
    assert_eq!(r["recovered"][0]["member"], "node2", "{r}");
    assert_eq!(admin_bits(&hap, "node2"), 0);
}
