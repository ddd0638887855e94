//! `lbctl rebalance` against real balancers from the lab, driven through
//! the lbctl binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

mod common;

use common::{Env, apache_section, haproxy_section, servers_state, weights};
use lb_lab::{Apache, Backend, Haproxy, Load, LoadOptions, PoolSpec, Pools};

fn nodes_section(backends: &[Backend], min_active: usize) -> String {
    let mut s = format!(
        "[defaults]\nmin_active = {min_active}\npoll_interval = \"50ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\n\n"
    );
    for b in backends {
        let _ = writeln!(s, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    s
}

/// A pool whose keep-alive clients stay on the server they last used
/// while it is usable, as browsers with long-lived connections do.
fn sticky_pool(backends: &[Backend]) -> Pools {
    Pools::new().with(
        PoolSpec::new("app")
            .backends(backends)
            .directive("option prefer-last-server")
            .directive("http-reuse never"),
    )
}

fn cookie_pool(backends: &[Backend]) -> Pools {
    Pools::new().with(PoolSpec::new("app").backends(backends).haproxy_cookies())
}

/// Starts `load` while only node1 takes new users (node2 and node3
/// draining), then puts node2 and node3 back: everyone stays on node1, as
/// after a rolling upgrade.
fn all_on_node1(h: &Haproxy, load: impl FnOnce() -> Load) -> Load {
    set_state(h, "node2", "drain");
    set_state(h, "node3", "drain");
    let load = load();
    load.wait_for_ok(100);
    set_state(h, "node2", "ready");
    set_state(h, "node3", "ready");
    load.wait_for_ok(100);
    load
}

/// node1 with four times the weight of node2 and node3: under
/// per-request load, node1 carries twice the mean.
fn weighted_200_50_50(backends: &[Backend]) -> Haproxy {
    Haproxy::start(
        &Pools::new().with(
            PoolSpec::new("app")
                .weighted("node1", backends[0].addr(), 200)
                .weighted("node2", backends[1].addr(), 50)
                .weighted("node3", backends[2].addr(), 50),
        ),
    )
}

/// lbctl with `backends` as nodes (min_active 1) and `hap` as `edge`.
fn edge_env(backends: &[Backend], hap: &Haproxy) -> Env {
    Env::new(&(nodes_section(backends, 1) + &haproxy_section("edge", &hap.admin_socket())))
}

fn set_state(h: &Haproxy, server: &str, state: &str) {
    let out = h.command(&format!("set server app/{server} state {state}"));
    assert!(out.trim().is_empty(), "set {server} {state}: {out}");
}

/// Every server's admin bits (`srv_admin_state`).
fn admin_bits(h: &Haproxy) -> Vec<(String, String)> {
    servers_state(h, "srv_admin_state")
}

fn slow_load(h: &Haproxy, connections: usize, ms: u64) -> Load {
    Load::start(
        &format!("{}slow?ms={ms}", h.frontend_url("app")),
        LoadOptions {
            connections,
            pause: Duration::from_millis(2),
            ..LoadOptions::default()
        },
    )
}

/// `n` users, each sending a request that takes 200 ms every half second
/// or so.
fn users(url: &str, n: usize) -> Load {
    Load::start(&format!("{url}slow?ms=200"), LoadOptions::users(n))
}

fn pool<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == name)
        .unwrap_or_else(|| panic!("no pool {name} in {v}"))
}

#[test]
fn a_balanced_pool_is_left_alone_and_an_unmeasurable_one_is_said_so() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let ngx = lb_lab::Nginx::start(&Pools::new().pool("web", &backends));
    let inv = nodes_section(&backends, 1)
        + &haproxy_section("edge", &hap.admin_socket())
        + &format!(
            "[balancers.front]\nkind = \"nginx\"\nupstream_file = \"{}\"\nconf = \"{}\"\npid_file = \"{}\"\nprefix = \"{}\"\n\n",
            ngx.upstream_file().display(),
            ngx.conf().display(),
            ngx.pid_file().display(),
            ngx.prefix()
        );
    let env = Env::new(&inv);
    let load = slow_load(&hap, 4, 40);
    load.wait_for_ok(40);
    let (code, v) = env.json_code(&["rebalance", "--window", "1s"]);
    assert_eq!(code, 0, "{v}");
    let p = pool(&v, "app");
    assert_eq!(p["outcome"], "balanced", "{v}");
    assert!(p["actions"].as_array().unwrap().is_empty(), "{v}");
    assert!(p["before"]["skew"].as_f64().unwrap() <= 1.5, "{v}");
    let w = pool(&v, "web");
    assert_eq!(w["outcome"], "not_measurable", "{v}");
    assert!(
        w["reason"].as_str().unwrap().contains("front (nginx)"),
        "{v}"
    );
    assert!(w.get("before").is_none(), "{v}");
    // Nothing was journaled as a change.
    let journal = std::fs::read_to_string(env.state().join("journal.jsonl")).unwrap();
    assert!(!journal.contains("\"intent\""), "{journal}");
    assert_eq!(load.stop().failed, 0);

    let out = env.run(&["rebalance", "--pool", "web", "--window", "200ms"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("front pool web (nginx): not measurable"),
        "{text}"
    );
    assert!(text.contains("reports no per-member load"), "{text}");
}

#[test]
fn the_guard_keeps_a_pool_of_two_from_losing_both_members() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&sticky_pool(&backends));
    set_state(&hap, "node2", "maint");
    let load = slow_load(&hap, 4, 40);
    load.wait_for_ok(40);
    set_state(&hap, "node2", "ready");
    load.wait_for_ok(40);
    // min_active 2: taking node1 out would leave one.
    let env =
        Env::new(&(nodes_section(&backends, 2) + &haproxy_section("edge", &hap.admin_socket())));
    let (code, v) = env.json_code(&["rebalance", "--window", "1s"]);
    assert_eq!(code, 4, "{v}");
    let p = pool(&v, "app");
    assert_eq!(p["outcome"], "prevented", "{v}");
    assert!(
        p["reason"].as_str().unwrap().contains("min_active 2"),
        "{v}"
    );
    assert!(admin_bits(&hap).iter().all(|(_, b)| b == "0"));
    assert_eq!(load.stop().failed, 0);
}

#[test]
fn weight_strategy_evens_out_and_restores_every_original_weight_exactly() {
    let backends = Backend::start_many(3);
    let hap = weighted_200_50_50(&backends);
    let original = weights(&hap);
    let load = slow_load(&hap, 9, 40);
    load.wait_for_ok(100);
    let env = edge_env(&backends, &hap);
    let (code, v) = env.json_code(&[
        "rebalance",
        "--strategy",
        "weight",
        "--window",
        "1s",
        "--duration",
        "30s",
    ]);
    assert_eq!(code, 0, "{v}");
    let p = pool(&v, "app");
    assert_eq!(p["outcome"], "rebalanced", "{v}");
    assert!(p["before"]["skew"].as_f64().unwrap() > 1.5, "{v}");
    assert!(p["after"]["skew"].as_f64().unwrap() <= 1.5, "{v}");
    let a = &p["actions"][0];
    assert_eq!(
        (a["member"].as_str(), a["what"].as_str(), a["from"].as_str()),
        (Some("node1"), Some("weight"), Some("200")),
        "{v}"
    );
    assert!(
        a["to"].as_str().unwrap().parse::<u32>().unwrap() < 200,
        "{v}"
    );
    assert_eq!(weights(&hap), original);
    assert_eq!(load.stop().failed, 0);
}

/// Every server's `scur` in pool `app`, read straight from HAProxy.
fn scur(h: &Haproxy) -> Vec<(String, u64)> {
    let csv = h.command("show stat");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let (px, sv, cur) = (col("pxname"), col("svname"), col("scur"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > cur && f[px] == "app" && f[sv] != "FRONTEND" && f[sv] != "BACKEND")
        .map(|f| (f[sv].to_string(), f[cur].parse().unwrap()))
        .collect()
}

/// max/mean of `scur` over `n` reads 50 ms apart, measured by the test.
fn measured_skew(h: &Haproxy, n: usize) -> (f64, Vec<(String, f64)>) {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (s, c) in scur(h) {
            match sums.iter_mut().find(|(n, _)| *n == s) {
                Some((_, v)) => *v += c as f64,
                None => sums.push((s, c as f64)),
            }
        }
    }
    let loads: Vec<(String, f64)> = sums.into_iter().map(|(s, v)| (s, v / n as f64)).collect();
    let mean = loads.iter().map(|(_, v)| v).sum::<f64>() / loads.len() as f64;
    let max = loads.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    (max / mean, loads)
}

#[test]
fn drain_strategy_moves_cookie_persistent_users_off_the_busy_member_on_haproxy() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&cookie_pool(&backends));
    // Everyone arrived while only node1 took new users, and stays there.
    let load = all_on_node1(&hap, || users(&hap.frontend_url("app"), 36));
    let (skew, loads) = measured_skew(&hap, 10);
    assert!(skew > 2.0, "skewed before: {loads:?}");

    let env = edge_env(&backends, &hap);
    let (code, v) = env.json_code(&["rebalance", "--window", "1s"]);
    assert_eq!(code, 0, "{v}");
    let p = pool(&v, "app");
    assert_eq!(p["outcome"], "rebalanced", "{v}");
    assert!(p["before"]["skew"].as_f64().unwrap() > 2.0, "{v}");
    assert!(p["after"]["skew"].as_f64().unwrap() <= 1.5, "{v}");
    assert_eq!(p["actions"][0]["member"], "node1", "{v}");
    // Measured independently, and a while later: the users stay moved.
    load.wait_for_ok(200);
    let (skew, loads) = measured_skew(&hap, 20);
    assert!(skew <= 1.5, "balanced after: {loads:?} in {v}");
    assert!(admin_bits(&hap).iter().all(|(_, b)| b == "0"));
    let r = load.stop();
    assert_eq!(r.failed, 0, "{r:?}");
}

#[test]
fn users_that_come_back_after_each_pulse_are_reported_still_skewed() {
    // prefer-last-server with private connections: each client connection
    // keeps its idle connection to node1 and returns to it as soon as
    // node1 is back, however long it was out.
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&sticky_pool(&backends));
    let load = all_on_node1(&hap, || slow_load(&hap, 12, 40));
    let env = edge_env(&backends, &hap);
    let (code, v) = env.json_code(&["rebalance", "--window", "500ms", "--max-drain", "2s"]);
    assert_eq!(code, 3, "{v}");
    let p = pool(&v, "app");
    assert_eq!(p["outcome"], "still_skewed", "{v}");
    let reason = p["reason"].as_str().unwrap();
    assert!(
        reason.contains("node1 was out of rotation for --max-drain 2s"),
        "{v}"
    );
    assert!(reason.contains("come back"), "{v}");
    assert!(p["actions"].as_array().unwrap().len() >= 2, "{v}");
    assert!(admin_bits(&hap).iter().all(|(_, b)| b == "0"), "all back");
    let r = load.stop();
    assert_eq!(r.failed, 0, "{r:?}");
}

/// Runs `lbctl ARGS`, sends it `signal` as soon as `changed` sees its
/// change on the balancer, and returns its output.
fn signal_when(
    env: &Env,
    args: &[&str],
    signal: nix::sys::signal::Signal,
    changed: impl Fn() -> bool,
) -> std::process::Output {
    let mut child = env
        .cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !changed() {
        assert!(
            std::time::Instant::now() < deadline,
            "lbctl {args:?} never changed anything"
        );
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "lbctl {args:?} ended before it changed anything: {}{}",
                common::text(&out.stdout),
                common::text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    child.wait_with_output().unwrap()
}

fn kill_when(env: &Env, args: &[&str], changed: impl Fn() -> bool) {
    signal_when(env, args, nix::sys::signal::Signal::SIGKILL, changed);
}

#[test]
fn killed_mid_rebalance_recover_restores_states_and_weights() {
    // The weight strategy, killed while node1's weight is lowered.
    let backends = Backend::start_many(3);
    let hap = weighted_200_50_50(&backends);
    let original = weights(&hap);
    let load = slow_load(&hap, 9, 40);
    load.wait_for_ok(100);
    let env = edge_env(&backends, &hap);
    kill_when(
        &env,
        &["rebalance", "--strategy", "weight", "--window", "1s"],
        || weights(&hap) != original,
    );
    assert_ne!(weights(&hap), original, "left lowered by the kill");
    let v = env.json(&["recover"]);
    let got = &v["recovered"][0];
    assert_eq!(
        (
            got["member"].as_str(),
            got["what"].as_str(),
            got["restore"].as_str()
        ),
        (Some("node1"), Some("weight"), Some("200")),
        "{v}"
    );
    assert_eq!(weights(&hap), original);
    assert_eq!(load.stop().failed, 0);

    // The drain strategy, killed while node1 is out of rotation (its
    // users come back after each pulse, so the pulses grow).
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&sticky_pool(&backends));
    let load = all_on_node1(&hap, || slow_load(&hap, 12, 40));
    let env = edge_env(&backends, &hap);
    kill_when(&env, &["rebalance", "--window", "500ms"], || {
        admin_bits(&hap).iter().any(|(_, b)| b != "0")
    });
    let v = env.json(&["recover"]);
    let got = &v["recovered"][0];
    assert_eq!(
        (
            got["member"].as_str(),
            got["what"].as_str(),
            got["restore"].as_str()
        ),
        (Some("node1"), Some("state"), Some("ready")),
        "{v}"
    );
    assert!(admin_bits(&hap).iter().all(|(_, b)| b == "0"), "all back");
    assert_eq!(load.stop().failed, 0);
}

/// Requests each backend served while `n` more succeeded, and max/mean.
fn served_while(load: &Load, backends: &[Backend], n: u64) -> (f64, BTreeMap<String, u64>) {
    let before = load.by_backend();
    load.wait_for_ok(n);
    let now = load.by_backend();
    let count = |m: &BTreeMap<String, u64>, b: &str| m.get(b).copied().unwrap_or(0);
    let served: BTreeMap<String, u64> = backends
        .iter()
        .map(|b| {
            (
                b.id().to_string(),
                count(&now, b.id()) - count(&before, b.id()),
            )
        })
        .collect();
    let mean = served.values().sum::<u64>() as f64 / served.len() as f64;
    let max = served.values().copied().max().unwrap_or(0) as f64;
    (max / mean, served)
}

#[test]
fn drain_strategy_moves_sticky_session_users_off_the_busy_member_on_apache() {
    let backends = Backend::start_many(3);
    let apache =
        Apache::start(&Pools::new().with(PoolSpec::new("app").backends(&backends).apache_sticky()));
    let env =
        Env::new(&(nodes_section(&backends, 1) + &apache_section("web", &apache.manager_url())));
    // Everyone arrives while node2 and node3 are draining…
    env.ok(&["drain", "node2", "node3", "--no-wait"]);
    let load = users(&apache.frontend_url("app"), 36);
    load.wait_for_ok(100);
    // …then they are back, and get no one.
    env.ok(&["undrain", "node2", "node3"]);
    let (skew, served) = served_while(&load, &backends, 200);
    assert!(skew > 2.0, "all on node1 before: {served:?}");

    let (code, v) = env.json_code(&["rebalance", "--window", "1s"]);
    assert_eq!(code, 0, "{v}");
    let p = pool(&v, "app");
    assert_eq!(
        (p["balancer"].as_str(), p["kind"].as_str()),
        (Some("web"), Some("apache")),
        "{v}"
    );
    assert_eq!(p["outcome"], "rebalanced", "{v}");
    assert!(p["before"]["skew"].as_f64().unwrap() > 2.0, "{v}");
    assert!(p["after"]["skew"].as_f64().unwrap() <= 1.5, "{v}");
    assert_eq!(p["actions"][0]["to"], "maint", "{v}");
    // What the users see: requests served per node, a while later.
    let (skew, served) = served_while(&load, &backends, 400);
    assert!(skew <= 1.5, "served after: {served:?} in {v}");
    let status = env.json(&["status"]);
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["members"][0]["admin"], "ready", "{status}");
    }
    let r = load.stop();
    assert_eq!(r.failed, 0, "{r:?}");
}

#[test]
fn interrupted_rebalance_puts_the_member_back_itself_and_exits_1() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&sticky_pool(&backends));
    let load = all_on_node1(&hap, || slow_load(&hap, 12, 40));
    let env = edge_env(&backends, &hap);
    let out = signal_when(
        &env,
        &["rebalance", "--window", "500ms", "--output", "json"],
        nix::sys::signal::Signal::SIGINT,
        || admin_bits(&hap).iter().any(|(_, b)| b != "0"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("lbctl: stopping: the member out of rotation is put back"),
        "{}",
        common::stderr(&out)
    );
    let v = common::json(&out);
    assert_eq!(v["stopped"], true, "{v}");
    let p = pool(&v, "app");
    assert_eq!(p["outcome"], "still_skewed", "{v}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("stopped by a signal"),
        "{v}"
    );
    // Back without recover, and nothing left for it.
    assert!(admin_bits(&hap).iter().all(|(_, b)| b == "0"), "all back");
    assert_eq!(env.json(&["recover"])["recovered"], serde_json::json!([]));
    assert_eq!(load.stop().failed, 0);
}
