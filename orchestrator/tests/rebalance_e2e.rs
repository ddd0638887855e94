//! `lbctl rebalance` against real balancers from the lab, driven through
//! the lbctl binary.

use std::fmt::Write as _;
use std::time::Duration;

mod common;

use common::{Env, haproxy_section};
use lb_lab::{Backend, Haproxy, Load, LoadOptions, PoolSpec, Pools};

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

fn set_state(h: &Haproxy, server: &str, state: &str) {
    let out = h.command(&format!("set server app/{server} state {state}"));
    assert!(out.trim().is_empty(), "set {server} {state}: {out}");
}

/// `show servers state app`: server name → the whole line.
fn servers_state(h: &Haproxy) -> Vec<(String, String)> {
    h.command("show servers state app")
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some("app"))
        .map(|l| (l.split(' ').nth(3).unwrap().to_string(), l.to_string()))
        .collect()
}

/// The user-visible weight (srv_uweight, 9th field) of every server.
fn weights(h: &Haproxy) -> Vec<(String, String)> {
    servers_state(h)
        .into_iter()
        .map(|(n, l)| (n, l.split(' ').nth(8).unwrap().to_string()))
        .collect()
}

/// The admin bits (7th field) of every server.
fn admin_bits(h: &Haproxy) -> Vec<(String, String)> {
    servers_state(h)
        .into_iter()
        .map(|(n, l)| (n, l.split(' ').nth(6).unwrap().to_string()))
        .collect()
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
    let hap = Haproxy::start(
        &Pools::new().with(
            PoolSpec::new("app")
                .weighted("node1", backends[0].addr(), 200)
                .weighted("node2", backends[1].addr(), 50)
                .weighted("node3", backends[2].addr(), 50),
        ),
    );
    let original = weights(&hap);
    let load = slow_load(&hap, 9, 40);
    load.wait_for_ok(100);
    let env =
        Env::new(&(nodes_section(&backends, 1) + &haproxy_section("edge", &hap.admin_socket())));
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
