//! lbctl end to end against real balancers from the lab.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Env, admin_bits, apache_section, drain_while_busy, haproxy_section, nginx_section, stderr,
};
use lb_lab::{Backend, Haproxy, Pools, http};

fn nodes_section(backends: &[Backend]) -> String {
    let mut s = String::from(
        "[defaults]\npoll_interval = \"50ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\n\n",
    );
    for b in backends {
        let _ = writeln!(s, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    s
}

/// Sends `n` requests through `url` and returns the backends that answered.
fn answered_by(url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = http::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(r.status, 200, "GET {url}: {r:?}");
            r.header("x-backend").unwrap().to_string()
        })
        .collect()
}

#[test]
fn drain_and_undrain_on_haproxy_move_traffic_and_report_json() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &haproxy_section("edge", &hap.admin_socket())));

    let v = env.json(&["status"]);
    let m = &v["nodes"][1]["members"][0];
    assert_eq!(v["nodes"][1]["node"], "node2");
    assert_eq!(v["nodes"][1]["address"], backends[1].addr().to_string());
    assert_eq!(
        (
            m["balancer"].as_str(),
            m["kind"].as_str(),
            m["pool"].as_str(),
            m["member"].as_str(),
            m["admin"].as_str()
        ),
        (
            Some("edge"),
            Some("haproxy"),
            Some("app"),
            Some("node2"),
            Some("ready")
        )
    );
    assert!(
        m["active"].is_u64() && m["weight"].is_u64() && m["health"].is_string(),
        "{m}"
    );

    let v = env.json(&["drain", "node2"]);
    assert_eq!(v["nodes"][0]["result"], "drained");
    assert_eq!(v["nodes"][0]["members"][0]["admin"], "maint");
    assert_eq!(v["nodes"][0]["members"][0]["change"], "applied");
    assert!(v["waited_ms"].is_u64());
    assert_eq!(
        admin_bits(&hap, "node2") & 0x01,
        0x01,
        "forced maint in HAProxy itself"
    );
    let seen = answered_by(&hap.frontend_url("app"), 30);
    assert!(
        !seen.iter().any(|b| b == "node2"),
        "no request reaches node2: {seen:?}"
    );

    let v = env.json(&["undrain", "node2"]);
    assert_eq!(v["nodes"][0]["result"], "undrained");
    assert_eq!(v["nodes"][0]["members"][0]["health"], "up");
    assert_eq!(admin_bits(&hap, "node2"), 0);
    let seen = answered_by(&hap.frontend_url("app"), 30);
    assert!(
        seen.iter().any(|b| b == "node2"),
        "traffic returns to node2: {seen:?}"
    );

    // Text status: one row per node and member.
    let out = env.ok(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().starts_with("NODE"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" edge ")).count(),
        3,
        "{text}"
    );
}

#[test]
fn drain_waits_for_the_request_in_flight() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &haproxy_section("edge", &hap.admin_socket())));
    // Round robin: three 3-second requests, one on each node.
    let url = format!("{}slow?ms=3000", hap.frontend_url("app"));
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = http::get(&url).unwrap();
                (
                    r.header("x-backend").unwrap().to_string(),
                    r.status,
                    Instant::now(),
                )
            })
        })
        .collect();
    while backends[1].in_flight() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = env.ok(&["drain", "node2"]);
    let returned = Instant::now();
    let results: Vec<_> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    let (_, status, finished) = results
        .iter()
        .find(|(b, _, _)| b == "node2")
        .expect("a slow request on node2");
    assert_eq!(*status, 200, "the request in flight completed");
    assert!(
        returned >= *finished,
        "lbctl returned only after node2's request completed"
    );
    let lag = returned - *finished;
    assert!(
        lag < Duration::from_millis(500),
        "and within 500 ms of it: {lag:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node2: drained"));
}

#[test]
fn the_guard_refuses_draining_the_last_ready_member_unless_forced() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &haproxy_section("edge", &hap.admin_socket())));
    env.ok(&["drain", "node1"]);
    // Admin states only: the dump also holds seconds since the last change.
    let admin = || [admin_bits(&hap, "node1"), admin_bits(&hap, "node2")];
    let before = admin();
    let out = env.run(&["drain", "node2"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("edge pool app would keep 0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(admin(), before, "nothing changed");

    let out = env.run(&["drain", "node2", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("guard overridden by --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(admin_bits(&hap, "node2") & 0x01, 0x01);
}

#[test]
fn a_balancer_that_denies_the_write_rolls_the_others_back() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let other = Haproxy::start(&Pools::new().pool("app", &backends));
    // `ro` can read but not write (`level user`).
    let inv = nodes_section(&backends)
        + &haproxy_section("edge", &hap.admin_socket())
        + &haproxy_section("ro", &other.user_socket());
    let env = Env::new(&inv);
    let out = env.run(&["drain", "node2", "--output", "json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "rolled_back");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("ro:") && msg.contains("edge app/node2 back to ready"),
        "{msg}"
    );
    assert_eq!(admin_bits(&hap, "node2"), 0, "edge is back as it was");
    assert_eq!(admin_bits(&other, "node2"), 0);
}

#[test]
fn recover_puts_back_what_a_killed_lbctl_left() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &haproxy_section("edge", &hap.admin_socket())));
    let mut child = drain_while_busy(&env, &hap, &backends[1], "node2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_bits(&hap, "node2") & 0x08 == 0 {
        assert!(Instant::now() < deadline, "lbctl never set drain");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, mid-wait
    child.wait().unwrap();
    assert_eq!(admin_bits(&hap, "node2") & 0x08, 0x08, "left draining");

    let v = env.json(&["recover", "--dry-run"]);
    assert_eq!(v["recovered"][0]["member"], "node2");
    assert_eq!(
        admin_bits(&hap, "node2") & 0x08,
        0x08,
        "dry run changes nothing"
    );
    let v = env.json(&["recover"]);
    assert_eq!(v["recovered"][0]["restore"], "ready");
    assert_eq!(v["recovered"][0]["change"], "applied");
    assert_eq!(admin_bits(&hap, "node2"), 0, "back in rotation");
    let v = env.json(&["recover"]);
    assert_eq!(
        v["recovered"],
        serde_json::json!([]),
        "a second recover changes nothing"
    );
}

#[test]
fn an_unreachable_balancer_is_exit_1_naming_it_within_its_timeout() {
    let backends = Backend::start_many(2);
    // A port that accepts connections and never answers.
    let dead = lb_lab::lease_port();
    let _listener = std::net::TcpListener::bind(dead.addr()).unwrap();
    let inv = nodes_section(&backends)
        + &format!(
            "[balancers.silent]\nkind = \"haproxy\"\nsocket = \"tcp://{}\"\ntimeout = \"1s\"\n",
            dead.addr()
        );
    let env = Env::new(&inv);
    let t = Instant::now();
    let out = env.run(&["drain", "node1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("silent"), "{}", stderr(&out));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bounded by the timeout: {:?}",
        t.elapsed()
    );

    let inv =
        nodes_section(&backends) + &haproxy_section("gone", Path::new("/nonexistent/admin.sock"));
    let out = Env::new(&inv).run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gone"), "{}", stderr(&out));
}

#[test]
fn the_library_example_drains_and_undrains_a_real_haproxy() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "-q",
            "-p",
            "orchestrator",
            "--example",
            "drain_node",
            "--",
        ])
        .arg(hap.admin_socket())
        .args(["node2", &backends[1].addr().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("edge app node2: maint") && text.contains("node2: Undrained"),
        "{text}"
    );
    assert_eq!(admin_bits(&hap, "node2"), 0);
}

#[test]
fn two_lbctl_processes_drain_two_nodes_of_one_nginx_upstream_at_once() {
    let backends = Backend::start_many(3);
    let ngx = lb_lab::Nginx::start(&Pools::new().pool("app", &backends));
    let env = Env::new(&(nodes_section(&backends) + &nginx_section("front", &ngx)));
    let a = env
        .cmd(&["drain", "node1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = env
        .cmd(&["drain", "node2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for (node, child) in [("node1", a), ("node2", b)] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "drain {node}: {}", stderr(&out));
    }
    let up = std::fs::read_to_string(ngx.upstream_file()).unwrap();
    for b in &backends[..2] {
        assert!(
            up.contains(&format!("server {} down;", b.addr())),
            "both applied: {up}"
        );
    }
    assert!(
        up.contains(&format!("server {};", backends[2].addr())),
        "{up}"
    );
    let seen = answered_by(&ngx.frontend_url("app"), 12);
    assert!(seen.iter().all(|b| b == "node3"), "{seen:?}");

    // The journal: two runs, each with its intents, their outcomes and an end.
    let journal = std::fs::read_to_string(env.state().join("journal.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let runs: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r["run"].as_str().unwrap()).collect();
    assert_eq!(runs.len(), 2, "{journal}");
    for run in runs {
        let events: Vec<&str> = records
            .iter()
            .filter(|r| r["run"] == run)
            .map(|r| r["event"].as_str().unwrap())
            .collect();
        assert_eq!(events.first(), Some(&"start"), "{events:?}");
        assert_eq!(events.last(), Some(&"end"), "{events:?}");
        assert_eq!(
            events.iter().filter(|e| **e == "intent").count(),
            events.iter().filter(|e| **e == "done").count(),
            "every intent has its outcome: {events:?}"
        );
    }
    assert!(
        env.json(&["recover", "--dry-run"])["recovered"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Guard: node3 is the last one.
    let out = env.run(&["drain", "node3"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

#[test]
fn an_azure_application_gateway_is_drained_and_restored_through_lbctl() {
    let arm = lb_lab::FakeArm::start();
    arm.accept_token("e2e-token");
    arm.set_retry_after(1);
    arm.set_health("10.0.0.1", "Up");
    arm.set_health("10.0.0.2", "Up");
    let example: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/azure/ApplicationGatewayGet.json"
        ))
        .unwrap(),
    )
    .unwrap();
    arm.insert_gateway(
        "subid",
        "rg1",
        "appgw",
        example["responses"]["200"]["body"].clone(),
    );
    let before = arm.gateway("subid", "rg1", "appgw").unwrap();
    let inv = format!(
        "[nodes.web1]\naddress = \"10.0.0.1:80\"\n[nodes.web2]\naddress = \"10.0.0.2:80\"\n\n\
         [balancers.agw]\nkind = \"azure-appgw\"\nsubscription = \"subid\"\nresource_group = \"rg1\"\n\
         gateway = \"appgw\"\ncredential = \"static-token\"\ntoken_env = \"LBCTL_E2E_TOKEN\"\nendpoint = \"{}\"\n",
        arm.endpoint()
    );
    let env = Env::new(&inv);
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = env
            .cmd(&a)
            .env("LBCTL_E2E_TOKEN", "e2e-token")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("e2e-token"),
            "the token is never printed"
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run(&["drain", "web1"]);
    let m = &v["nodes"][0]["members"][0];
    assert_eq!(
        (m["kind"].as_str(), m["pool"].as_str(), m["member"].as_str()),
        (Some("azure-appgw"), Some("appgwpool1"), Some("10.0.0.1"))
    );
    assert_eq!(m["admin"], "maint");
    let pool =
        &arm.gateway("subid", "rg1", "appgw").unwrap()["properties"]["backendAddressPools"][1];
    assert_eq!(
        pool["properties"]["backendAddresses"],
        serde_json::json!(["10.0.0.2"])
    );
    // Guard: web2 is the pool's last member.
    let out = env
        .cmd(&["drain", "web2"])
        .env("LBCTL_E2E_TOKEN", "e2e-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    run(&["undrain", "web1"]);
    let mut after = arm.gateway("subid", "rg1", "appgw").unwrap();
    let mut before = before;
    for g in [&mut before, &mut after] {
        strip_volatile(g);
    }
    assert_eq!(
        after, before,
        "the gateway is as it was, but for etags and provisioning states"
    );
}

fn strip_volatile(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("etag");
            m.remove("provisioningState");
            for (_, x) in m.iter_mut() {
                strip_volatile(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

#[test]
fn one_node_behind_haproxy_apache_and_nginx_is_drained_everywhere_in_one_command() {
    let backends = Backend::start_many(3);
    let pools = Pools::new().pool("app", &backends);
    let hap = Haproxy::start(&pools);
    let web = lb_lab::Apache::start(&pools);
    let ngx = lb_lab::Nginx::start(&pools);
    let inv = nodes_section(&backends)
        + &haproxy_section("edge", &hap.admin_socket())
        + &apache_section("web", &web.manager_url())
        + &nginx_section("front", &ngx);
    let env = Env::new(&inv);
    let frontends = [
        hap.frontend_url("app"),
        web.frontend_url("app"),
        ngx.frontend_url("app"),
    ];

    let v = env.json(&["drain", "node2"]);
    let members = v["nodes"][0]["members"].as_array().unwrap();
    let mut kinds: Vec<&str> = members
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["apache", "haproxy", "nginx"], "{v}");
    assert!(
        members
            .iter()
            .all(|m| m["admin"] == "maint" && m["change"] == "applied"),
        "{v}"
    );
    for url in &frontends {
        let seen = answered_by(url, 24);
        assert!(
            !seen.iter().any(|b| b == "node2"),
            "no request reaches node2 through {url}: {seen:?}"
        );
    }

    // status --output json: exactly the shape DESIGN.md documents.
    let v = env.json(&["status", "node2"]);
    let node = &v["nodes"][0];
    assert_eq!(
        node.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["node", "address", "members"]
    );
    for m in node["members"].as_array().unwrap() {
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "balancer", "kind", "pool", "member", "admin", "health", "active", "weight"
            ],
            "{m}"
        );
        assert_eq!(m["admin"], "maint");
        assert!(["up", "down", "unknown"].contains(&m["health"].as_str().unwrap()));
    }
    let nginx_member = node["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "nginx")
        .unwrap();
    assert_eq!(nginx_member["member"], backends[1].addr().to_string());
    assert_eq!(
        nginx_member["health"], "unknown",
        "open-source nginx does not know"
    );

    let v = env.json(&["undrain", "node2"]);
    assert_eq!(v["nodes"][0]["result"], "undrained");
    for url in &frontends {
        let seen = answered_by(url, 24);
        assert!(
            seen.iter().any(|b| b == "node2"),
            "traffic returns to node2 through {url}: {seen:?}"
        );
    }
}
