//! Many lbctl on many machines never fight: claims, the guard's critical
//! section and the journal in a real etcd (Debian's `etcd-server`), shared
//! by lbctl processes with separate state directories, as two operators'
//! machines or two CI runners are; against a real HAProxy.

mod common;

use std::fmt::Write as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Tmux, admin_bits, haproxy_section, stderr};
use lb_lab::{Backend, Etcd, Haproxy, Pools, http};

/// The inventory every "machine" shares: the nodes, HAProxy, and etcd.
fn inventory(backends: &[Backend], hap: &Haproxy, etcd: &str, min_active: usize) -> String {
    let mut s = format!(
        "[defaults]\npoll_interval = \"50ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\n\
         min_active = {min_active}\n\n[coordination]\nbackend = \"etcd\"\nendpoints = [\"{etcd}\"]\n\
         prefix = \"/lbctl/test\"\nlease_ttl = \"2s\"\ntimeout = \"2s\"\n\n"
    );
    for b in backends {
        let _ = writeln!(s, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    s + &haproxy_section("edge", &hap.admin_socket())
}

/// Two machines: two scratch dirs (inventories, state dirs) on one etcd.
fn machines(inv: &str) -> (Env, Env) {
    (Env::new(inv), Env::new(inv))
}

fn ready(hap: &Haproxy, n: usize) -> usize {
    (1..=n)
        .filter(|i| admin_bits(hap, &format!("node{i}")) == 0)
        .count()
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A request of `ms` in flight on each of the three nodes (round robin).
fn busy(hap: &Haproxy, backends: &[Backend], ms: u64) {
    let url = format!("{}slow?ms={ms}", hap.frontend_url("app"));
    for _ in 0..3 {
        let u = url.clone();
        std::thread::spawn(move || http::get(&u));
    }
    while backends[1].in_flight() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_drain_bit(hap: &Haproxy, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_bits(hap, node) & 0x08 == 0 {
        assert!(Instant::now() < deadline, "lbctl never set drain on {node}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_machines_racing_drains_never_leave_fewer_than_min_active() {
    let etcd = Etcd::start();
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let (a, b) = machines(&inventory(&backends, &hap, &etcd.endpoint(), 2));
    for round in 0..20 {
        let pa = spawn(
            &a,
            &["drain", "node1", "--no-wait", "--lock-timeout", "10s"],
        );
        let pb = spawn(
            &b,
            &["drain", "node2", "--no-wait", "--lock-timeout", "10s"],
        );
        let (oa, ob) = (
            pa.wait_with_output().unwrap(),
            pb.wait_with_output().unwrap(),
        );
        let codes = [oa.status.code(), ob.status.code()];
        assert!(
            ready(&hap, 3) >= 2,
            "round {round}: fewer than two ready ({codes:?}): {} / {}",
            stderr(&oa),
            stderr(&ob)
        );
        assert!(
            codes.contains(&Some(0)) && codes.contains(&Some(4)),
            "round {round}: one drains, the guard refuses the other: {codes:?} {} / {}",
            stderr(&oa),
            stderr(&ob)
        );
        let refused = if codes[0] == Some(4) { &oa } else { &ob };
        assert!(
            stderr(refused).contains("min_active 2"),
            "{}",
            stderr(refused)
        );
        let drained = if codes[0] == Some(0) {
            "node1"
        } else {
            "node2"
        };
        a.ok(&["undrain", drained, "--no-wait"]);
    }
}

#[test]
fn a_node_claimed_on_one_machine_is_refused_on_another_naming_the_holder() {
    let etcd = Etcd::start();
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let (a, b) = machines(&inventory(&backends, &hap, &etcd.endpoint(), 1));
    busy(&hap, &backends, 3000);
    let drain = spawn(&a, &["drain", "node2", "--reason", "CVE-2026-1234"]);
    wait_for_drain_bit(&hap, "node2");
    let out = b.run(&["undrain", "node2", "--lock-timeout", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("node2 is claimed by")
            && err.contains("drain node2")
            && err.contains("CVE-2026-1234")
            && err.contains(&format!("pid {}", drain.id())),
        "{err}"
    );
    let out = drain.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Every machine's runs, from either.
    let v = b.json(&["history", "--node", "node2"]);
    assert_eq!(v["runs"][0]["command"], "drain node2", "{v}");
    assert_eq!(v["runs"][0]["reason"], "CVE-2026-1234", "{v}");
    assert_eq!(v["runs"][0]["result"], "ok", "{v}");
}

#[test]
fn a_killed_holder_s_claim_expires_and_recover_on_another_machine_puts_back_what_it_left() {
    let etcd = Etcd::start();
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let (a, b) = machines(&inventory(&backends, &hap, &etcd.endpoint(), 1));
    busy(&hap, &backends, 20_000);
    let mut drain = spawn(&a, &["drain", "node2"]);
    wait_for_drain_bit(&hap, "node2");
    drain.kill().unwrap(); // SIGKILL on machine A
    drain.wait().unwrap();
    assert_eq!(admin_bits(&hap, "node2") & 0x08, 0x08, "left draining");

    // Machine B: the claim is A's until its lease (2 s) expires; recover
    // waits for it, then puts back exactly what A left.
    let t = Instant::now();
    let v = b.json(&["recover", "--lock-timeout", "10s"]);
    assert_eq!(v["recovered"][0]["member"], "node2", "{v}");
    assert_eq!(v["recovered"][0]["restore"], "ready", "{v}");
    assert_eq!(v["recovered"][0]["change"], "applied", "{v}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(admin_bits(&hap, "node2"), 0, "back in rotation");
    let v = a.json(&["recover"]);
    assert_eq!(
        v["recovered"],
        serde_json::json!([]),
        "nothing left, seen from A"
    );
}

#[test]
fn etcd_down_at_start_is_exit_1_naming_the_endpoints_and_nothing_changes() {
    let mut etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    etcd.kill();
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let (a, _) = machines(&inventory(&backends, &hap, &endpoint, 1));
    let (code, v) = a.json_code(&["drain", "node2"]);
    assert_eq!(code, 1, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&endpoint), "{msg}");
    assert_eq!(admin_bits(&hap, "node2"), 0, "nothing changed");
}

#[test]
fn etcd_lost_while_a_drain_waits_stops_it_with_exit_1_and_what_stays_out() {
    let mut etcd = Etcd::start();
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let (a, _) = machines(&inventory(&backends, &hap, &etcd.endpoint(), 1));
    busy(&hap, &backends, 3000);
    let drain = spawn(&a, &["drain", "node2"]);
    wait_for_drain_bit(&hap, "node2");
    etcd.kill();
    let out = drain.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("etcd") && err.contains("lbctl recover"),
        "names etcd and what to run: {err}"
    );
    assert_eq!(
        admin_bits(&hap, "node2"),
        0x08,
        "nothing new began: node2 stays draining, not maint"
    );
    // Once etcd is back, recover puts it back.
    etcd.restart();
    let v = a.json(&["recover", "--lock-timeout", "10s"]);
    assert_eq!(v["recovered"][0]["member"], "node2", "{v}");
    assert_eq!(admin_bits(&hap, "node2"), 0);
}

#[test]
fn etcd_with_authentication_takes_the_user_and_password_and_refuses_a_wrong_one() {
    let etcd = Etcd::start_with_auth("s3cret-pw");
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let inv = inventory(&backends, &hap, &etcd.endpoint(), 1).replace(
        "[coordination]\n",
        "[coordination]\nusername = \"root\"\npassword_env = \"LBCTL_TEST_ETCD_PASSWORD\"\n",
    );
    let env = Env::new(&inv);
    let mut wrong = env.cmd(&["drain", "node2", "--no-wait", "--output", "json"]);
    let out = wrong
        .env("LBCTL_TEST_ETCD_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(text.contains(&etcd.endpoint()), "names etcd: {text}");
    assert!(
        !text.contains("not-the-password"),
        "the password is never shown: {text}"
    );
    assert_eq!(admin_bits(&hap, "node2"), 0, "nothing changed");

    let mut right = env.cmd(&["drain", "node2", "--no-wait"]);
    let out = right
        .env("LBCTL_TEST_ETCD_PASSWORD", "s3cret-pw")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(admin_bits(&hap, "node2") & 0x08, 0x08);
}

#[test]
fn etcd_over_tls_is_trusted_through_ca_file_and_refused_without_it() {
    let etcd = Etcd::start_tls();
    assert!(etcd.endpoint().starts_with("https://"));
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let inv = inventory(&backends, &hap, &etcd.endpoint(), 1);
    let (code, v) = Env::new(&inv).json_code(&["drain", "node2", "--no-wait"]);
    assert_eq!(code, 1, "an unknown CA is refused: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&etcd.endpoint()),
        "{v}"
    );
    assert_eq!(admin_bits(&hap, "node2"), 0, "nothing changed");
    let inv = inv.replace(
        "[coordination]\n",
        &format!(
            "[coordination]\nca_file = \"{}\"\n",
            etcd.ca_file().display()
        ),
    );
    Env::new(&inv).ok(&["drain", "node2", "--no-wait"]);
    assert_eq!(admin_bits(&hap, "node2") & 0x08, 0x08);
}

#[test]
fn commands_that_only_read_take_no_lease_and_every_command_gives_its_lease_back() {
    let etcd = Etcd::start();
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let (a, b) = machines(&inventory(&backends, &hap, &etcd.endpoint(), 1));
    a.ok(&["drain", "node2", "--no-wait", "--reason", "lease check"]);
    assert_eq!(etcd.leases(), 0, "drain left its lease in etcd");
    a.ok(&["undrain", "node2", "--no-wait"]);
    assert_eq!(etcd.leases(), 0, "undrain left its lease in etcd");

    // While a drain waits (its lease held), `watch` in a terminal on the
    // other machine shows the run and takes no lease of its own.
    busy(&hap, &backends, 3000);
    let drain = spawn(&a, &["drain", "node2"]);
    wait_for_drain_bit(&hap, "node2");
    let tmux = Tmux::new(&b.file(""));
    let exit_file = b.file("watch.exit");
    tmux.start_watch(&b, "--interval 200ms", &exit_file);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tmux.capture().contains("drain node2") {
        assert!(
            Instant::now() < deadline,
            "watch never showed the drain:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(etcd.leases(), 1, "only the waiting drain holds a lease");
    let out = drain.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    tmux.ok(&["send-keys", "-t", "watch", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&exit_file).is_ok_and(|c| c.ends_with('\n')) {
        assert!(Instant::now() < deadline, "q did not end watch");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(etcd.leases(), 0, "watch or the drain left a lease in etcd");

    let v = b.json(&["history"]);
    assert_eq!(v["runs"][0]["reason"], "lease check", "{v}");
    assert_eq!(etcd.leases(), 0, "history took a lease in etcd");
}
