//! Drained means drained: what happens to a drain's wait when the balancer
//! reloads or dies under it, tried against real daemons.

mod common;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Env, admin_bits, apache_section, haproxy_section, nginx_section, stderr, text};
use lb_lab::{Apache, Backend, Haproxy, HaproxyOptions, Nginx, Pools, http};

fn nodes_section(backends: &[Backend]) -> String {
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("[nodes.node{}]\naddress = \"{}\"\n\n", i + 1, b.addr()))
        .collect()
}

/// A lab HAProxy that keeps its servers' state across reloads in `state`.
fn haproxy_keeping_state(backends: &[Backend], state: &Path) -> Haproxy {
    let opts = HaproxyOptions {
        global: vec![format!("server-state-file {}", state.display())],
        defaults: vec!["load-server-state-from-file global".into()],
        ..HaproxyOptions::default()
    };
    Haproxy::start_with(&Pools::new().pool("app", backends), &opts)
}

/// What a request thread yields: the backend that answered, the status
/// (or the error) and when it finished.
type Answered = (Option<String>, Result<u16, String>, Instant);

/// One slow request on each of the three nodes (round robin) through
/// `frontend`; returns once node2's is in flight.
fn slow_through(frontend: &str, backends: &[Backend], ms: u64) -> Vec<JoinHandle<Answered>> {
    let url = format!("{frontend}slow?ms={ms}");
    let slow = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || match http::get(&url) {
                Ok(r) => (
                    r.header("x-backend").map(str::to_string),
                    Ok(r.status),
                    Instant::now(),
                ),
                Err(e) => (None, Err(e.to_string()), Instant::now()),
            })
        })
        .collect();
    while backends[1].in_flight() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    slow
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until lbctl has set node2 to drain (HAProxy's forced-drain bit).
fn until_draining(hap: &Haproxy, lbctl: &mut Child) {
    while admin_bits(hap, "node2") & 8 == 0 {
        if let Some(code) = lbctl.try_wait().unwrap() {
            panic!("lbctl ended ({code}) before node2 was draining");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for lbctl to end and notes when it did.
fn finish(child: Child) -> (Output, Instant) {
    let out = child.wait_with_output().unwrap();
    (out, Instant::now())
}

/// When node2's slow request completed, asserting it completed with 200.
fn node2_finished(slow: Vec<JoinHandle<Answered>>) -> Instant {
    let results: Vec<_> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    let (_, status, at) = results
        .iter()
        .find(|(b, _, _)| b.as_deref() == Some("node2"))
        .unwrap_or_else(|| panic!("no answer from node2: {results:?}"));
    assert_eq!(status, &Ok(200), "node2's request in flight completed");
    *at
}

#[test]
fn a_balancer_killed_during_the_wait_is_named_unreachable_not_timed_out() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &haproxy_section("edge", &hap.admin_socket())));
    let slow = slow_through(&hap.frontend_url("app"), &backends, 30_000);
    let mut lbctl = spawn(&env, &["drain", "node2", "--timeout", "20s"]);
    until_draining(&hap, &mut lbctl);
    hap.crash();
    let (out, _) = finish(lbctl);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "exit 1, not a timeout: {err}");
    let lower = err.to_lowercase();
    assert!(
        err.contains("haproxy `edge` unreachable since"),
        "names the balancer: {err}"
    );
    assert!(
        lower.contains("connection refused") || lower.contains("no such file"),
        "says why: {err}"
    );
    assert!(
        err.contains("app/node2"),
        "names what is left out of rotation: {err}"
    );
    assert!(
        err.contains("lbctl undrain node2"),
        "says how to recover: {err}"
    );
    assert!(
        !err.contains("active 1") && !err.contains("timed out"),
        "no stale figures: {err}"
    );
    drop(slow);
}

/// Drains node2 while a 3 s request is in flight on it, reloads HAProxy
/// once the drain is set, lets `during` look, and asserts lbctl returned
/// with exit 0 only after the request completed. Returns lbctl's output.
fn drain_through_a_reload(master: bool, during: impl FnOnce(&Env)) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("servers.state");
    let backends = Backend::start_many(3);
    let hap = haproxy_keeping_state(&backends, &state);
    let mut inv = nodes_section(&backends)
        + &haproxy_section("edge", &hap.admin_socket())
        + &format!("state_file = \"{}\"\n", state.display());
    if master {
        inv += &format!("master_socket = \"{}\"\n", hap.master_socket().display());
    }
    let env = Env::new(&inv);
    let slow = slow_through(&hap.frontend_url("app"), &backends, 3_000);
    let mut lbctl = spawn(&env, &["drain", "node2", "--timeout", "30s"]);
    until_draining(&hap, &mut lbctl);
    hap.reload();
    during(&env);
    let (out, returned) = finish(lbctl);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let finished = node2_finished(slow);
    assert!(
        returned >= finished,
        "lbctl called node2 drained {:?} before its request completed",
        finished - returned
    );
    assert!(text(&out.stdout).contains("node2: drained"));
    out
}

#[test]
fn a_reload_during_the_wait_without_a_master_socket_waits_for_the_old_worker() {
    let out = drain_through_a_reload(false, |_| {});
    assert!(
        stderr(&out).contains("reloaded"),
        "says the reload was seen: {}",
        stderr(&out)
    );
}

#[test]
fn with_the_master_socket_an_old_worker_s_connections_count() {
    drain_through_a_reload(true, |env| {
        // The new worker has no connection to node2; the old one still has.
        let v = env.json(&["status", "node2"]);
        assert_eq!(
            v["nodes"][0]["members"][0]["active"], 1,
            "the old worker's connection: {v}"
        );
    });
}

/// The process title nginx gave `pid`, or `None` once it exited.
fn title(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).trim_end().to_string())
}

#[test]
fn nginx_undrain_returns_once_the_old_workers_stopped_accepting() {
    let backends = Backend::start_many(3);
    let ngx = Nginx::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &nginx_section("front", &ngx)));
    for round in 0..6 {
        env.ok(&["drain", "node3"]);
        let before = ngx.workers();
        env.ok(&["undrain", "node3"]);
        for pid in &before {
            let t = title(*pid);
            assert!(
                t.as_deref() != Some("nginx: worker process"),
                "round {round}: undrain returned while worker {pid}, which holds the \
                 configuration without node3, still accepts ({t:?})"
            );
        }
        let hits = backends[2].hits();
        for _ in 0..40 {
            assert_eq!(http::get(&ngx.frontend_url("app")).unwrap().status, 200);
        }
        assert!(
            backends[2].hits() > hits,
            "round {round}: none of 40 requests reached node3 after undrain returned"
        );
    }
}

#[test]
fn an_nginx_server_named_by_host_name_is_the_node_its_name_resolves_to() {
    let backends = Backend::start_many(3);
    let pool = lb_lab::PoolSpec::new("app")
        .member("node1", backends[0].addr())
        .member("node3", backends[2].addr())
        .directive(&format!("server localhost:{};", backends[1].port()));
    let ngx = Nginx::start(&Pools::new().with(pool));
    let env = Env::new(&(nodes_section(&backends) + &nginx_section("front", &ngx)));
    let out = env.ok(&["drain", "node2"]);
    assert!(
        text(&out.stdout).contains(&format!("localhost:{}", backends[1].port())),
        "the report names the member: {}",
        text(&out.stdout)
    );
    let hits = backends[1].hits();
    for _ in 0..40 {
        assert_eq!(http::get(&ngx.frontend_url("app")).unwrap().status, 200);
    }
    assert_eq!(
        backends[1].hits(),
        hits,
        "nginx sent node2 none of 40 requests"
    );
}

/// Sends 40 requests through `url`; how many `b` answered.
fn hits_of_40(url: &str, b: &Backend) -> u64 {
    let before = b.hits();
    for _ in 0..40 {
        assert_eq!(http::get(url).unwrap().status, 200);
    }
    b.hits() - before
}

#[test]
fn an_nginx_server_in_an_included_file_is_drained_there_and_put_back() {
    let backends = Backend::start_many(3);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("app.d");
    std::fs::create_dir(&dir).unwrap();
    let web02 = dir.join("web-02.conf");
    let included = format!(
        "# web-02, kept by the app team\nserver {}  max_fails=3;\t# in rotation\n\n",
        backends[1].addr()
    );
    std::fs::write(&web02, &included).unwrap();
    let pool = lb_lab::PoolSpec::new("app")
        .member("node1", backends[0].addr())
        .member("node3", backends[2].addr())
        .directive(&format!("include {}/*.conf;", dir.display()));
    let ngx = Nginx::start(&Pools::new().with(pool));
    let url = ngx.frontend_url("app");
    assert!(
        hits_of_40(&url, &backends[1]) > 0,
        "nginx routes to the server of the included file"
    );
    let env = Env::new(&(nodes_section(&backends) + &nginx_section("front", &ngx)));
    let upstreams = std::fs::read(ngx.upstream_file()).unwrap();

    let v = env.json(&["status", "node2"]);
    let members = &v["nodes"][0]["members"];
    assert_eq!(members[0]["balancer"], "front", "{v}");
    assert_eq!(members[0]["pool"], "app", "{v}");
    assert_eq!(members[0]["member"], backends[1].addr().to_string(), "{v}");
    assert!(
        v["unmatched"].as_array().is_none_or(Vec::is_empty),
        "nothing unmatched: {v}"
    );

    let out = env.ok(&["drain", "node2"]);
    assert!(
        text(&out.stdout).contains(&backends[1].addr().to_string()),
        "the report names the member: {}",
        text(&out.stdout)
    );
    assert_eq!(
        hits_of_40(&url, &backends[1]),
        0,
        "nginx sent node2 none of 40 requests after the drain"
    );
    assert_eq!(
        std::fs::read_to_string(&web02).unwrap(),
        included.replace("max_fails=3;", "max_fails=3 down;"),
        "only the server line changed, in the file that holds it"
    );
    assert_eq!(std::fs::read(ngx.upstream_file()).unwrap(), upstreams);

    env.ok(&["undrain", "node2"]);
    assert_eq!(std::fs::read_to_string(&web02).unwrap(), included);
    assert!(
        hits_of_40(&url, &backends[1]) > 0,
        "node2 is back in rotation"
    );
}

#[test]
fn a_member_lbctl_cannot_attribute_refuses_the_drain_and_status_shows_it() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let pool = lb_lab::PoolSpec::new("app")
        .member("node1", backends[0].addr())
        .member("node2", backends[1].addr())
        .member("node3", backends[2].addr())
        .directive("server unix:/run/lbctl-test-none.sock;");
    let ngx = Nginx::start(&Pools::new().with(pool));
    let env = Env::new(
        &(nodes_section(&backends)
            + &haproxy_section("edge", &hap.admin_socket())
            + &nginx_section("front", &ngx)),
    );
    let upstreams = std::fs::read(ngx.upstream_file()).unwrap();
    let out = env.run(&["drain", "node2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    for needle in [
        "front",
        "app",
        "unix:/run/lbctl-test-none.sock",
        "nothing changed",
    ] {
        assert!(err.contains(needle), "names {needle}: {err}");
    }
    assert_eq!(admin_bits(&hap, "node2"), 0, "HAProxy untouched");
    assert_eq!(std::fs::read(ngx.upstream_file()).unwrap(), upstreams);

    let v = env.json(&["status"]);
    let unmatched: Vec<String> = v["unmatched"]
        .as_array()
        .unwrap_or_else(|| panic!("status lists unmatched members: {v}"))
        .iter()
        .map(|u| format!("{} {} {}", u["balancer"], u["pool"], u["server"]))
        .collect();
    assert_eq!(unmatched.len(), 1, "{v}");
    assert!(
        unmatched[0].contains("front") && unmatched[0].contains("unix:"),
        "{unmatched:?}"
    );
}

#[test]
fn an_apache_busy_count_left_by_a_killed_child_is_judged_stuck_and_warned() {
    let backends = Backend::start_many(3);
    let apache = Apache::start(&Pools::new().pool("app", &backends));
    let env = Env::new(
        &(nodes_section(&backends)
            + &apache_section("web", &apache.manager_url())
            + "busy_settle = \"2s\"\n"),
    );
    let _slow = slow_through(&apache.frontend_url("app"), &backends, 60_000);
    // A child killed in the middle of a request never runs the request
    // pool's cleanup that decrements the worker's busy count.
    for pid in lb_lab::pids_in_group(apache.pid()) {
        if pid != apache.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let stuck = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = env.json_code(&["status", "node2"]);
        if code == 0 && backends[1].in_flight() == 0 {
            assert!(
                v["nodes"][0]["members"][0]["active"].as_u64() >= Some(1),
                "the count stuck with nothing in flight: {v}"
            );
            break;
        }
        assert!(Instant::now() < stuck, "apache did not come back: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env.run(&["drain", "node2", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("judged stuck"),
        "warns: {}",
        stderr(&out)
    );
}

#[test]
fn apache_drain_never_cuts_a_pinned_request() {
    let backends = Backend::start_many(3);
    let apache = Apache::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &apache_section("web", &apache.manager_url())));
    for round in 0..3 {
        let slow = slow_through(&apache.frontend_url("app"), &backends, 3_000);
        let out = env.run(&["drain", "node2", "--timeout", "30s"]);
        let returned = Instant::now();
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}",
            stderr(&out)
        );
        let finished = node2_finished(slow);
        assert!(
            returned >= finished,
            "round {round}: drained {:?} before node2's request completed",
            finished - returned
        );
        env.ok(&["undrain", "node2"]);
    }
}
