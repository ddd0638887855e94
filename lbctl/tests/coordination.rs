//! Two lbctl never fight: claims on nodes, the guard that counts claimed
//! nodes as out, changes made outside lbctl during a wait, a journal that
//! survives torn and unreadable lines, and `history` — against a real
//! HAProxy from the lab, with the file backend.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Env, admin_bits, haproxy_section, stderr, text};
use lb_lab::{Backend, Haproxy, Pools, http};

fn inventory(backends: &[Backend], hap: &Haproxy, min_active: usize) -> String {
    let mut s = format!(
        "[defaults]\npoll_interval = \"50ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\nmin_active = {min_active}\n\n"
    );
    for b in backends {
        let _ = writeln!(s, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    s + &haproxy_section("edge", &hap.admin_socket())
}

/// Three backends behind HAProxy, and a request of `ms` in flight on each
/// (round robin), so that a drain of node2 waits.
fn busy_lab(ms: u64, min_active: usize) -> (Vec<Backend>, Haproxy, Env) {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap, min_active));
    let url = format!("{}slow?ms={ms}", hap.frontend_url("app"));
    for _ in 0..3 {
        let u = url.clone();
        std::thread::spawn(move || http::get(&u));
    }
    while backends[1].in_flight() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    (backends, hap, env)
}

/// Starts `lbctl drain node2` (and `extra`) and returns once HAProxy has
/// node2 draining: the drain is waiting for the request in flight.
fn drain_waiting(env: &Env, hap: &Haproxy, extra: &[&str]) -> Child {
    let mut args = vec!["drain", "node2"];
    args.extend(extra);
    let child = env
        .cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_bits(hap, "node2") & 0x08 == 0 {
        assert!(Instant::now() < deadline, "lbctl never set drain");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_second_lbctl_on_a_node_being_drained_is_refused_naming_the_holder() {
    let (_b, hap, env) = busy_lab(3000, 1);
    let drain = drain_waiting(&env, &hap, &["--reason", "kernel 6.1.0-27"]);
    let out = env.run(&["undrain", "node2", "--lock-timeout", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    for part in [
        "node2",
        "drain node2",
        "kernel 6.1.0-27",
        &format!("pid {}", drain.id()),
        "@",
    ] {
        assert!(err.contains(part), "names {part:?}: {err}");
    }
    assert_eq!(
        admin_bits(&hap, "node2") & 0x08,
        0x08,
        "the refused undrain changed nothing"
    );
    let out = drain.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        admin_bits(&hap, "node2") & 0x01,
        0x01,
        "node2 ends in maint"
    );

    // Waiting for the claim instead of refusing: the undrain goes through
    // once the drain has finished.
    let v = env.json(&["undrain", "node2", "--lock-timeout", "10s"]);
    assert_eq!(v["nodes"][0]["result"], "undrained");
}

#[test]
fn a_claimed_node_is_waited_for_up_to_the_lock_timeout_then_refused_as_json() {
    let (_b, hap, env) = busy_lab(20_000, 1);
    let mut drain = drain_waiting(&env, &hap, &[]);
    let t = Instant::now();
    let (code, v) = env.json_code(&["drain", "node2", "--lock-timeout", "1s"]);
    let waited = t.elapsed();
    drain.kill().unwrap();
    drain.wait().unwrap();
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["error"]["kind"], "claimed", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("drain node2") && msg.contains("1s"), "{msg}");
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
}

#[test]
fn the_guard_holds_with_a_drain_waiting_an_undrain_refused_and_a_second_drain() {
    // min_active = 2 on a pool of three.
    let (_b, hap, env) = busy_lab(3000, 2);
    let drain = drain_waiting(&env, &hap, &[]);
    let out = env.run(&["undrain", "node2", "--lock-timeout", "0"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = env.run(&["drain", "node1", "--no-wait", "--lock-timeout", "0"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("min_active 2"),
        "the guard refused: {}",
        stderr(&out)
    );
    let out = drain.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ready = ["node1", "node2", "node3"]
        .iter()
        .filter(|n| admin_bits(&hap, n) == 0)
        .count();
    assert_eq!(ready, 2, "two members stay ready");
}

#[test]
fn a_member_changed_outside_lbctl_during_the_wait_stops_the_drain() {
    let (_b, hap, env) = busy_lab(3000, 1);
    let drain = drain_waiting(&env, &hap, &[]);
    // Someone puts node2 back through HAProxy's own socket.
    hap.command("set server app/node2 state ready");
    let out = drain.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("edge app/node2") && err.contains("outside lbctl") && err.contains("ready"),
        "{err}"
    );
    assert_eq!(
        admin_bits(&hap, "node2"),
        0,
        "lbctl changed nothing more: node2 stays as the other party left it"
    );
}

#[test]
fn a_torn_or_unreadable_journal_line_hides_nothing_from_recover() {
    let (_b, hap, env) = busy_lab(20_000, 1);
    // A crash mid-write left half a line; a disk error left bytes that
    // are not UTF-8.
    std::fs::create_dir_all(env.state()).unwrap();
    let mut j = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.state().join("journal.jsonl"))
        .unwrap();
    j.write_all(b"\xff\xfe not utf-8\n{\"ts\":\"2026-").unwrap();
    drop(j);
    let mut drain = drain_waiting(&env, &hap, &[]);
    drain.kill().unwrap(); // SIGKILL, mid-wait
    drain.wait().unwrap();
    assert_eq!(admin_bits(&hap, "node2") & 0x08, 0x08, "left draining");

    let v = env.json(&["recover"]);
    assert_eq!(v["recovered"][0]["member"], "node2", "{v}");
    assert_eq!(v["skipped_lines"], 2, "{v}");
    assert_eq!(admin_bits(&hap, "node2"), 0, "back in rotation");
    let out = env.ok(&["recover"]);
    assert!(
        text(&out.stdout).contains("2 unreadable journal line"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn history_lists_who_changed_what_and_why() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap, 1));
    env.ok(&["drain", "node1", "--reason", "disk swap"]);
    let mut undrain = env.cmd(&["undrain", "node1"]);
    let out = undrain
        .env("LBCTL_REASON", "disk swapped")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    env.ok(&["drain", "node2", "--no-wait"]);

    let v = env.json(&["history", "--node", "node1"]);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    assert_eq!(runs[0]["command"], "drain node1");
    assert_eq!(runs[0]["reason"], "disk swap");
    assert_eq!(runs[0]["result"], "ok");
    assert!(runs[0]["who"].as_str().unwrap().contains('@'), "{v}");
    let changes: Vec<(String, String)> = runs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["member"].as_str().unwrap().to_string(),
                c["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("node1".to_string(), "drain".to_string()),
            ("node1".to_string(), "maint".to_string())
        ]
    );
    assert_eq!(runs[1]["command"], "undrain node1");
    assert_eq!(runs[1]["reason"], "disk swapped");

    let v = env.json(&["history", "--since", "1h"]);
    assert_eq!(v["runs"].as_array().unwrap().len(), 3, "{v}");
    let out = env.ok(&["history"]);
    let t = text(&out.stdout);
    assert!(
        t.contains("drain node1") && t.contains("disk swap") && t.contains("drain node2"),
        "{t}"
    );
}

#[test]
fn twenty_lbctl_draining_twenty_nodes_of_a_pool_of_thirty_keep_min_active() {
    let backends = Backend::start_many(30);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&inventory(&backends, &hap, 25));
    let t = Instant::now();
    let children: Vec<_> = (1..=20)
        .map(|i| {
            let node = format!("node{i}");
            env.cmd(&["drain", &node, "--no-wait", "--lock-timeout", "30s"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code())
        .collect();
    let took = t.elapsed();
    let ready = (1..=30)
        .filter(|i| admin_bits(&hap, &format!("node{i}")) == 0)
        .count();
    assert_eq!(ready, 25, "exactly five drained, 25 ready: {codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(4)).count(),
        15,
        "the guard refused the others: {codes:?}"
    );
    eprintln!("20 concurrent drains of a pool of 30 (min_active 25) took {took:?}");
}
