//! `lbctl rolling` end to end: real balancers from the lab, application
//! nodes that are real processes the hooks stop and start, a load
//! generator counting every request (the example plans are in
//! `rolling_examples.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{
    CONFLUENCE, Env, admin_bits, apache_section, assert_no_failure, confluence_env,
    haproxy_section, inventory, json, load, nginx_section, pool, text, weights, zdu_nodes,
};
use lb_lab::{
    Apache, AppNodes, FakeZdu, Haproxy, Load, LoadOptions, Nginx, PoolSpec, Pools, Prometheus,
    Webhook, http,
};

/// The plan that really stops every node, installs version 2 and starts
/// it again.
fn upgrade_plan(apps: &AppNodes, nodes: &[&str]) -> String {
    format!(
        r#"[[group]]
name = "app"
nodes = [{}]

[group.hooks]
before = "{}"
upgrade = "{}"
after = "{}"
timeout = "1m"

[group.gate]
http = "http://{{address}}/-/readiness"
body = "ok"
timeout = "30s"
interval = "100ms"
"#,
        nodes
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
        apps.hook("stop").replace('\'', ""),
        apps.hook("install --version 2").replace('\'', ""),
        apps.hook("start").replace('\'', "")
    )
}

/// Upgrades one node with no balancer involved, as a rolling restart
/// without lbctl does: stop, an upgrade that takes 4 s (longer than
/// HAProxy's retries, 3 × 1 s, can hide), start.
fn naive_restart(apps: &AppNodes, id: &str) {
    apps.stop(id);
    std::thread::sleep(Duration::from_secs(4));
    apps.start_again(id);
}

#[test]
fn a_rolling_upgrade_through_haproxy_under_load_loses_no_request() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &upgrade_plan(&apps, &ids),
    );

    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_failure(&r, "with lbctl");
    assert!(
        r.by_version.contains_key("1") && r.by_version.contains_key("2"),
        "the load saw the old and the new version: {r:?}"
    );
    for id in &ids {
        let v = http::get(&format!("http://{}/", apps.addr(id))).unwrap();
        assert_eq!(
            v.header("x-version"),
            Some("2"),
            "{id} runs the new version"
        );
        assert_eq!(admin_bits(&hap, id), 0, "{id} is back in rotation");
    }

    let v = json(&out);
    assert_eq!(v["result"], "ok");
    assert_eq!(
        (v["nodes_done"].as_u64(), v["nodes_total"].as_u64()),
        (Some(3), Some(3))
    );
    let steps: Vec<&str> = v["nodes"][1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["drain", "before", "upgrade", "after", "gate", "undrain"]
    );
    for s in v["nodes"][1]["steps"].as_array().unwrap() {
        assert_eq!(s["result"], "ok", "{s}");
        assert!(
            s["started"].is_string() && s["ended"].is_string() && s["ms"].is_u64(),
            "{s}"
        );
    }
    assert_eq!(v["nodes"][1]["steps"][2]["exit_code"], 0);
    assert!(v["nodes"][1]["steps"][0]["waited_ms"].is_u64());
    assert_eq!(v["nodes"][1]["steps"][4]["gate"]["passed"], true);
    assert!(v["timing"]["overhead_per_node_ms"].is_u64());

    // The same load through a naive rolling restart (no lbctl) does fail:
    // the load generator sees downtime when there is some.
    let traffic = load(&hap.frontend_url("app"));
    naive_restart(&apps, "node2");
    traffic.wait_for_ok(100);
    let naive = traffic.stop();
    assert!(
        naive.failed > 0,
        "a naive restart loses requests: {naive:?}"
    );
}

#[test]
fn a_rolling_upgrade_through_apache_under_load_loses_no_request() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let web = Apache::start(&pool(&apps, &ids));
    let env = Env::with_plan(
        &inventory(&apps, &apache_section("web", &web.manager_url())),
        &upgrade_plan(&apps, &ids),
    );
    // Two connections, not four: httpd's `busy` count, the Apache
    // driver's drain signal, is updated without synchronisation and drifts
    // upward under concurrent requests (reproduced with no lbctl at all:
    // see the README's benchmark notes); a drain can then wait for a 0
    // that never comes. The benchmark measures that with the full load.
    let traffic = Load::start(
        &web.frontend_url("app"),
        LoadOptions {
            connections: 2,
            ..LoadOptions::default()
        },
    );
    traffic.wait_for_ok(100);
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_failure(&r, "with lbctl");
    assert!(r.by_version.contains_key("2"), "{r:?}");
    let v: serde_json::Value = serde_json::from_slice(
        &env.cmd(&["status", "--output", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["members"][0]["admin"], "ready", "{n}");
        assert_eq!(n["members"][0]["kind"], "apache", "{n}");
    }
    for id in &ids {
        assert_eq!(apps.installed_version(id), "2");
    }
}

#[test]
fn a_rolling_upgrade_through_nginx_under_load_loses_no_request_but_to_nginx_reloads() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let ngx = Nginx::start(&pool(&apps, &ids));
    let env = Env::with_plan(
        &inventory(&apps, &nginx_section("front", &ngx)),
        &upgrade_plan(&apps, &ids),
    );
    let traffic = load(&ngx.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // nginx closes idle keep-alive client connections at every reload (two
    // per node: drain and undrain); a request that goes out on one as it
    // closes fails whatever the orchestration does. Those are counted on
    // their own (the benchmark measures them against bare reloads); every
    // other failure would be lbctl's.
    eprintln!(
        "nginx: {} requests, {} failed, all of them idle keep-alive closes at reloads: {}",
        r.requests,
        r.failed,
        r.failed == r.idle_close
    );
    let mut other = r.clone();
    other.failed -= r.idle_close;
    assert_no_failure(&other, "with lbctl, besides nginx's reload closes");
    let upstream = std::fs::read_to_string(ngx.upstream_file()).unwrap();
    assert!(!upstream.contains("down"), "every node back: {upstream}");
    for id in &ids {
        assert_eq!(apps.installed_version(id), "2");
    }
}

#[test]
fn a_failed_step_exits_1_naming_node_step_and_output_and_resume_finishes() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let flag = apps.dir().join("fixed");
    let plan = upgrade_plan(&apps, &ids).replace(
        "upgrade = \"",
        &format!(
            "upgrade = \"test {{node}} != node2 || test -e {} || {{ echo dpkg: error processing gitlab-ee >&2; exit 100; }}; ",
            flag.display()
        ),
    );
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    );
    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("app/node2: failed at step upgrade"), "{err}");
    assert!(err.contains("exit 100"), "{err}");
    assert!(
        err.contains("dpkg: error processing gitlab-ee"),
        "the output's tail: {err}"
    );
    assert!(err.contains("node2 is left out of rotation"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(
        text(&out.stdout).contains("app/node1 undrain ok"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(admin_bits(&hap, "node2") & 1, 1, "node2 is in maint");
    assert!(apps.pid("node2").is_none(), "its before hook stopped it");
    assert_eq!(admin_bits(&hap, "node3"), 0, "node3 untouched");

    let status: serde_json::Value = serde_json::from_slice(
        &env.cmd(&["status", "node2", "--output", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(status["nodes"][0]["members"][0]["admin"], "maint");

    std::fs::write(&flag, "").unwrap();
    let out = env.rolling(&["--resume", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["nodes"][0]["result"], "skipped");
    let n2: Vec<(String, String)> = v["nodes"][1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().into(),
                s["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        n2.iter()
            .map(|(a, b)| format!("{a} {b}"))
            .collect::<Vec<_>>(),
        [
            "drain ok",
            "before skipped",
            "upgrade ok",
            "after ok",
            "gate ok",
            "undrain ok"
        ]
    );
    let r = traffic.stop();
    assert_no_failure(&r, "failure, wait, resume");
    for id in &ids {
        assert_eq!(admin_bits(&hap, id), 0);
        assert_eq!(apps.installed_version(id), "2");
    }
}

#[test]
fn sigint_stops_the_hook_leaves_the_node_out_and_resume_finishes() {
    let apps = AppNodes::start_many(2);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let pidfile = apps.dir().join("hook.pid");
    let quick = apps.dir().join("quick");
    let plan = upgrade_plan(&apps, &ids).replace(
        "upgrade = \"",
        &format!(
            "upgrade = \"test -e {q} || {{ echo $$ > {p}; sleep 60; }}; ",
            q = quick.display(),
            p = pidfile.display()
        ),
    );
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    );
    let child = env.spawn_rolling();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the hook never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hook_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("app/node1: interrupted during step upgrade"),
        "{err}"
    );
    assert!(err.contains("node1 is left out of rotation"), "{err}");
    assert!(
        err.contains("lbctl rolling --plan") && err.contains("--resume"),
        "{err}"
    );
    assert!(
        !Path::new(&format!("/proc/{hook_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{hook_pid}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "the hook was stopped"
    );
    assert_eq!(admin_bits(&hap, "node1") & 1, 1, "node1 stays in maint");
    assert_eq!(admin_bits(&hap, "node2"), 0);

    std::fs::write(&quick, "").unwrap();
    let out = env.rolling(&["--resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("rolling upgrade done: 2/2 nodes"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(admin_bits(&hap, "node1"), 0);
}

#[test]
fn sigterm_gives_a_hook_that_traps_term_its_grace_from_the_sigterm_to_clean_up() {
    let apps = AppNodes::start_many(2);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let pidfile = apps.dir().join("hook.pid");
    let cleaned = apps.dir().join("cleaned");
    let script = apps.dir().join("upgrade.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntrap 'sleep 1; echo clean > {c}; exit 1' TERM\necho $$ > {p}\n\
             while :; do sleep 0.1; done\n",
            c = cleaned.display(),
            p = pidfile.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    // The script and one more command: `sh -c` runs the script as its
    // child, and the shell itself goes at once on SIGTERM.
    let plan = upgrade_plan(&apps, &ids).replace(
        "upgrade = \"",
        &format!("upgrade = \"{} && ", script.display()),
    );
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    );
    let child = env.spawn_rolling();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the hook never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hook_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&cleaned).unwrap_or_default().trim(),
        "clean",
        "the hook's TERM trap ran to its end before lbctl exited"
    );
    assert!(
        !Path::new(&format!("/proc/{hook_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{hook_pid}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "nothing of the hook outlives lbctl"
    );
    assert_eq!(admin_bits(&hap, "node1") & 1, 1, "node1 stays in maint");
}

#[test]
fn a_hook_orphaned_by_sigkill_of_lbctl_is_found_by_resume_and_recover_which_refuse_unless_told_to_kill_it()
 {
    let apps = AppNodes::start_many(2);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let pidfile = apps.dir().join("hook.pid");
    let quick = apps.dir().join("quick");
    let plan = upgrade_plan(&apps, &ids).replace(
        "upgrade = \"",
        &format!(
            "upgrade = \"test -e {q} || {{ echo $$ > {p}; sleep 60; }}; ",
            q = quick.display(),
            p = pidfile.display()
        ),
    );
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    );
    let mut child = env.spawn_rolling();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the hook never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hook_pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    child.kill().unwrap(); // SIGKILL: the hook is orphaned
    child.wait().unwrap();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{hook_pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
    };
    assert!(alive(), "the orphaned hook still runs");
    std::fs::write(&quick, "").unwrap();

    // --resume would run the step a second time beside it: refused.
    let out = env.rolling(&["--resume"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("process group {hook_pid}")) && err.contains("step upgrade"),
        "names the hook's pid and step: {err}"
    );
    assert!(err.contains("--kill-stale-hooks"), "{err}");
    assert!(alive());
    // recover would put node1 back under the running upgrade: refused.
    let out = env.run(&["recover"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&hook_pid),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(admin_bits(&hap, "node1") & 1, 1, "node1 stays in maint");

    // Told to, --resume kills it and finishes.
    let out = env.rolling(&["--resume", "--kill-stale-hooks"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!alive(), "the orphaned hook was killed");
    assert_eq!(admin_bits(&hap, "node1"), 0);
}

#[test]
fn a_dry_run_prints_every_node_step_and_command_and_touches_nothing() {
    let apps = AppNodes::start_many(2);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &upgrade_plan(&apps, &ids),
    );
    let before: Vec<u32> = ids.iter().map(|id| admin_bits(&hap, id)).collect();
    let out = env.rolling(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("2 nodes in 1 groups (dry run: nothing changed)"),
        "{t}"
    );
    assert!(t.contains("    1. drain       guard, drain, wait until no connection is left, maint: edge app/node2"), "{t}");
    assert!(
        t.contains(&format!(
            "    3. upgrade     {} install --dir",
            apps.bin().display()
        )),
        "{t}"
    );
    assert!(t.contains("--id node2 --version 2"), "{t}");
    assert!(
        t.contains(&format!(
            "    5. gate        http http://{}/-/readiness -> 200 with \"ok\"",
            apps.addr("node2")
        )),
        "{t}"
    );
    let after: Vec<u32> = ids.iter().map(|id| admin_bits(&hap, id)).collect();
    assert_eq!(after, before, "nothing changed");
    assert!(apps.pid("node1").is_some() && apps.pid("node2").is_some());
    let v = json(&env.rolling(&["--dry-run", "--output", "json"]));
    assert_eq!(v["result"], "planned");
    assert_eq!(v["nodes"][0]["steps"][0]["result"], "planned");
}

/// Keep-alive clients whose requests take 40 ms each, so that HAProxy's
/// per-server count of connections in flight (`scur`) is the load.
fn slow_load(hap: &Haproxy, connections: usize) -> Load {
    let l = Load::start(
        &format!("{}slow?ms=40", hap.frontend_url("app")),
        LoadOptions {
            connections,
            ..LoadOptions::default()
        },
    );
    l.wait_for_ok(100);
    l
}

fn weighted_pool(apps: &AppNodes, weights: &[(&str, u32)]) -> Pools {
    let mut p = PoolSpec::new("app");
    for (id, w) in weights {
        p = p.weighted(id, apps.addr(id), *w);
    }
    Pools::new().with(p)
}

/// The rebalance entry of the JSON report for pool `app`.
fn rebalanced_pool(v: &serde_json::Value) -> &serde_json::Value {
    let pools = v["rebalance"]["pools"]
        .as_array()
        .unwrap_or_else(|| panic!("no rebalance in the report: {v}"));
    assert_eq!(pools.len(), 1, "{v}");
    assert_eq!(pools[0]["pool"], "app", "{v}");
    &pools[0]
}

#[test]
fn a_pool_left_skewed_after_the_upgrade_is_evened_out_by_weight_and_every_weight_comes_back() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&weighted_pool(
        &apps,
        &[("node1", 200), ("node2", 50), ("node3", 50)],
    ));
    let original = weights(&hap);
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &format!(
            "rebalance = {{ strategy = \"weight\", window = \"1s\", duration = \"30s\" }}\n\n{}",
            upgrade_plan(&apps, &ids)
        ),
    );
    let traffic = slow_load(&hap, 9);
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_failure(&r, "upgrade and rebalance");
    let v = json(&out);
    assert_eq!(v["result"], "ok");
    assert_eq!(v["nodes_done"], 3);
    for id in &ids {
        assert_eq!(apps.installed_version(id), "2", "{id} upgraded");
        assert_eq!(admin_bits(&hap, id), 0, "{id} back in rotation");
    }

    let plan_steps: Vec<(&str, &str)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["result"].as_str().unwrap()))
        .collect();
    assert_eq!(plan_steps, [("rebalance", "ok")]);
    assert_eq!(v["rebalance"]["strategy"], "weight");
    let p = rebalanced_pool(&v);
    assert_eq!(p["outcome"], "rebalanced", "{v}");
    assert!(p["before"]["skew"].as_f64().unwrap() > 1.5, "{v}");
    assert!(p["after"]["skew"].as_f64().unwrap() <= 1.5, "{v}");
    let lowered = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["member"] == "node1")
        .unwrap_or_else(|| panic!("node1, the busiest, was lowered: {v}"));
    assert_eq!(lowered["what"], "weight");
    assert_eq!(lowered["from"], "200");
    assert!(
        lowered["to"].as_str().unwrap().parse::<u32>().unwrap() < 200,
        "{v}"
    );
    assert!(
        !v["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("rebalance"))),
        "evened out: nothing to warn about: {v}"
    );
    assert_eq!(weights(&hap), original, "every weight back, exactly");
}

#[test]
fn a_balanced_pool_after_the_upgrade_is_left_alone_and_the_text_shows_each_pool() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &format!("rebalance = true\n\n{}", upgrade_plan(&apps, &ids)),
    );

    // The dry run lists the step and measures nothing.
    let out = env.rolling(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let last = t.lines().last().unwrap();
    assert!(
        last.starts_with(
            "  rebalance   rebalance all measurable pools, threshold 1.5, strategy drain"
        ),
        "the plan's last step: {t}"
    );
    assert!(!t.contains("skew"), "{t}");
    let v = json(&env.rolling(&["--dry-run", "--output", "json"]));
    assert_eq!(v["steps"][0]["step"], "rebalance");
    assert_eq!(v["steps"][0]["result"], "planned");
    assert!(v.get("rebalance").is_none(), "{v}");

    let traffic = slow_load(&hap, 6);
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    let p = rebalanced_pool(&v);
    assert_eq!(p["outcome"], "balanced", "{v}");
    assert!(p["actions"].as_array().unwrap().is_empty(), "{v}");
    assert!(p["before"]["skew"].as_f64().unwrap() <= 1.5, "{v}");
    assert_eq!(v["rebalance"]["threshold"], 1.5);
    assert_eq!(v["rebalance"]["strategy"], "drain");

    // Run again (a finished plan may be), in text: the same per-pool
    // lines `lbctl rebalance` prints, after the summary.
    let out = env.rolling(&[]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_failure(&r, "two upgrades with a rebalance each");
    let t = text(&out.stdout);
    assert!(t.contains("\nrebalance ok ("), "the step's line: {t}");
    assert!(
        t.contains("rebalance once the last node was back (drain, threshold 1.5), in "),
        "{t}"
    );
    assert!(t.contains("\nedge pool app (haproxy): balanced\n"), "{t}");
    assert!(t.contains("\n  before: skew "), "{t}");
    assert!(
        !text(&out.stderr).contains("warning: rebalance"),
        "{}",
        text(&out.stderr)
    );
    for id in &ids {
        assert_eq!(admin_bits(&hap, id), 0);
    }
}

#[test]
fn zdu_refuses_to_begin_with_a_node_in_error_and_cancels_a_run_abandoned_before_any_upgrade() {
    let apps = AppNodes::start(&CONFLUENCE);
    let hap = Haproxy::start(&pool(&apps, &CONFLUENCE));
    let z = FakeZdu::start_with(&zdu_nodes(&apps), "1", Some(("admin", "secret")));
    let env = confluence_env(&apps, &hap, &z);
    z.set_error("confluence2", true);
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("node(s) in ERROR: confluence2"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        z.calls().iter().all(|c| c.starts_with("GET")),
        "nothing posted: {:?}",
        z.calls()
    );
    assert_eq!(admin_bits(&hap, "confluence1"), 0, "nothing drained");
    z.set_error("confluence2", false);

    // The first node's stop fails: no node was upgraded, so lbctl leaves
    // upgrade mode.
    let plan = std::fs::read_to_string(env.plan()).unwrap();
    std::fs::write(
        env.plan(),
        plan.replace("confluence stop", "confluence stopp"),
    )
    .unwrap();
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("confluence1: failed at step before"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        z.calls()
            .contains(&"POST /rest/zdu/cluster/zdu/cancel -> 200".to_string()),
        "{:?}",
        z.calls()
    );
    assert_eq!(z.state(), "STABLE");
}

#[test]
fn zdu_is_never_cancelled_in_mixed_and_resume_approves() {
    let apps = AppNodes::start(&CONFLUENCE);
    let hap = Haproxy::start(&pool(&apps, &CONFLUENCE));
    let z = FakeZdu::start_with(&zdu_nodes(&apps), "1", Some(("admin", "secret")));
    let env = confluence_env(&apps, &hap, &z);
    // The second node's installer fails after the first node was upgraded.
    let plan = std::fs::read_to_string(env.plan()).unwrap();
    let broken = plan.replace(
        "ssh {node} sudo /tmp/atlassian",
        "test {node} != confluence2 && ssh {node} sudo /tmp/atlassian",
    );
    assert_ne!(plan, broken, "the example's upgrade hook");
    std::fs::write(env.plan(), &broken).unwrap();
    let out = env.rolling(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "failed");
    assert_eq!(v["failure"]["node"], "confluence2");
    assert_eq!(z.state(), "MIXED");
    assert!(
        !z.calls().iter().any(|c| c.contains("cancel")),
        "{:?}",
        z.calls()
    );
    let cancel = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "zdu_cancel");
    assert!(
        cancel.is_none(),
        "an upgrade began: no cancel step at all: {v}"
    );

    // Without --resume a new run refuses: the cluster is MIXED.
    std::fs::write(env.plan(), &plan).unwrap();
    let out = env.rolling(&["--restart"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("MIXED"), "{}", text(&out.stderr));

    let out = env.rolling(&["--resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(z.state(), "STABLE");
    assert_eq!(z.version(), "9.2.1");
}

#[test]
fn bad_plans_and_empty_resumes_are_exit_2_naming_what_is_wrong() {
    let inv = "[nodes.node1]\naddress = \"127.0.0.1:1\"\n";
    let plan = "[[group]]\nname = \"app\"\nnodes = [\"node1\"]\nbalanced = false\nbacth = 2\n";
    let env = Env::with_plan(inv, plan);
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("plan.toml") && err.contains("line 5") && err.contains("bacth"),
        "{err}"
    );
    let out = env.rolling(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["kind"], "config");

    std::fs::write(
        env.plan(),
        format!(
            "rebalance = {{ threshold = 0.5 }}\n{}",
            plan.replace("bacth = 2\n", "")
        ),
    )
    .unwrap();
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("plan.toml: line 1: rebalance: threshold must be at least 1"),
        "{err}"
    );

    std::fs::write(env.plan(), plan.replace("bacth = 2\n", "")).unwrap();
    let out = env.rolling(&["--resume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nothing to resume"),
        "{}",
        text(&out.stderr)
    );
    let out = env.rolling(&["--resume", "--restart"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the two flags exclude each other"
    );

    // An unbalanced node with no balancer at all: hooks and gates only.
    std::fs::write(
        env.plan(),
        plan.replace(
            "bacth = 2\n",
            "[group.hooks]\nupgrade = \"echo upgrading {node} at {address}\"\n",
        ),
    )
    .unwrap();
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("app/node1 upgrade ok") && t.contains("rolling upgrade done: 1/1 nodes"),
        "{t}"
    );
    let log = t
        .lines()
        .find_map(|l| l.strip_prefix("hook log: "))
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("[app/node1 upgrade] upgrading node1 at 127.0.0.1:1"),
        "{log}"
    );
}

#[test]
fn a_gate_with_healthy_for_fails_a_node_that_passes_once_then_goes_down_and_keeps_it_out() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    // node2 starts, answers, and stops again a second later (a
    // crash after start-up): its first look passes.
    let crash = format!(
        "if [ {{node}} = node2 ]; then (sleep 1; {}) >/dev/null 2>&1 & fi",
        apps.hook("stop").replace('\'', "")
    );
    let start = apps.hook("start").replace('\'', "");
    let plan = upgrade_plan(&apps, &ids)
        .replace(
            "timeout = \"30s\"\n",
            "timeout = \"30s\"\nhealthy_for = \"3s\"\n",
        )
        .replace(
            &format!("after = \"{start}\""),
            &format!("after = \"{start}; {crash}\""),
        );
    assert!(
        plan.contains("healthy_for") && plan.contains("sleep 1"),
        "{plan}"
    );
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    );

    // The dry run says so.
    let out = env.rolling(&["--dry-run"]);
    assert!(
        text(&out.stdout).contains("-> 200 with \"ok\", then healthy for 3s"),
        "{}",
        text(&out.stdout)
    );

    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_no_failure(&r, "a node failing its soak stays out");
    let v = json(&out);
    let n1 = &v["nodes"][0]["steps"][4];
    assert_eq!(n1["step"], "gate");
    assert_eq!(n1["result"], "ok", "node1 stayed healthy: {n1}");
    assert_eq!(n1["gate"]["healthy_for_ms"], 3000);
    assert!(
        n1["gate"]["attempts"].as_u64().unwrap() > 1,
        "node1 was looked at again during its soak: {n1}"
    );
    assert_eq!(v["failure"]["node"], "node2");
    assert_eq!(v["failure"]["step"], "gate");
    let msg = v["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("passed, then failed") && msg.contains("into its healthy_for of 3s"),
        "{msg}"
    );
    assert_eq!(admin_bits(&hap, "node1"), 0, "node1 back");
    assert_eq!(admin_bits(&hap, "node2") & 1, 1, "node2 stays in maint");
    assert_eq!(admin_bits(&hap, "node3"), 0, "node3 untouched");
}

#[test]
fn on_failure_rolls_a_node_back_and_it_returns_only_when_its_gate_passes() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    // node2's upgrade fails after installing version 2; the rollback
    // installs version 1 again and starts it.
    let plan = upgrade_plan(&apps, &ids).replace(
        "timeout = \"1m\"\n",
        &format!(
            "on_failure = \"echo rolling {{node}} back; {} && {}\"\ntimeout = \"1m\"\n",
            apps.hook("install --version 1").replace('\'', ""),
            apps.hook("start").replace('\'', "")
        ),
    );
    let plan = plan.replace(
        "upgrade = \"",
        "upgrade = \"test {node} != node2 || { echo dpkg: error processing gitlab-ee >&2; exit 100; }; ",
    );
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    );
    let t = text(&env.rolling(&["--dry-run"]).stdout);
    assert!(
        t.contains("on_failure") && t.contains("echo rolling node2 back"),
        "{t}"
    );

    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run still stops: {}",
        text(&out.stderr)
    );
    assert_no_failure(&r, "a node rolled back");
    let v = json(&out);
    assert_eq!(v["failure"]["node"], "node2");
    assert_eq!(v["failure"]["step"], "upgrade");
    let steps: Vec<String> = v["nodes"][1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["step"].as_str().unwrap(),
                s["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "drain ok",
            "before ok",
            "upgrade failed",
            "on_failure ok",
            "gate ok",
            "undrain ok"
        ]
    );
    assert_eq!(v["nodes"][1]["result"], "failed");
    assert_eq!(v["nodes"][1]["steps"][3]["exit_code"], 0);
    assert_eq!(admin_bits(&hap, "node2"), 0, "node2 is back, at version 1");
    assert_eq!(apps.installed_version("node2"), "1");
    assert_eq!(admin_bits(&hap, "node3"), 0, "node3 untouched");
    assert_eq!(apps.installed_version("node3"), "1");
    let err = v["error"]["message"].as_str().unwrap();
    assert!(
        err.contains("node2 is back in rotation after its on_failure hook and gate passed"),
        "{err}"
    );

    // A rollback that fails: node2 stays out of rotation.
    let failing = plan.replace(
        "echo rolling {node} back;",
        "echo rolling {node} back; false &&",
    );
    std::fs::write(env.plan(), failing).unwrap();
    let out = env.rolling(&["--restart", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["nodes"][1]["steps"][3]["step"], "on_failure");
    assert_eq!(v["nodes"][1]["steps"][3]["result"], "failed");
    assert_eq!(admin_bits(&hap, "node2") & 1, 1, "node2 stays in maint");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node2 is left out of rotation"),
        "{v}"
    );
}

#[test]
fn a_pause_after_the_first_node_exits_0_paused_and_resume_goes_on() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &format!(
            "pause = \"after_first_node\"\n\n{}",
            upgrade_plan(&apps, &ids)
        ),
    );
    let t = text(&env.rolling(&["--dry-run"]).stdout);
    let lines: Vec<&str> = t.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  pause"))
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(
        lines[at],
        "  pause       after app/node1: stop here (pause = \"after_first_node\"); `--resume` goes on"
    );
    assert!(lines[at - 1].contains("undrain"), "right after node1: {t}");
    assert!(lines[at + 1].starts_with("  node2"), "{t}");

    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["result"], "paused");
    assert_eq!(v["paused"]["pause"], "after_first_node");
    assert_eq!(v["paused"]["group"], "app");
    assert_eq!(v["paused"]["node"], "node1");
    assert!(
        v["paused"]["resume"]
            .as_str()
            .unwrap()
            .ends_with("--resume"),
        "{v}"
    );
    assert_eq!(v["nodes_done"], 1);
    assert_eq!(v["nodes"][1]["result"], "pending");
    assert_eq!(apps.installed_version("node1"), "2");
    assert_eq!(apps.installed_version("node2"), "1", "node2 not begun");
    for id in &ids {
        assert_eq!(admin_bits(&hap, id), 0, "{id} in rotation while paused");
    }

    // A plain run is refused: the last one is not finished.
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--resume"),
        "{}",
        text(&out.stderr)
    );

    let out = env.rolling(&["--resume"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("rolling upgrade done: 3/3 nodes"),
        "{}",
        text(&out.stdout)
    );
    assert_no_failure(&r, "pause and resume");
    for id in &ids {
        assert_eq!(apps.installed_version(id), "2");
        assert_eq!(admin_bits(&hap, id), 0);
    }
}

#[test]
fn a_group_pause_after_the_group_names_the_group_and_prints_the_command_that_continues() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let one = upgrade_plan(&apps, &["node1"])
        .replace("[group.hooks]", "pause = \"after_group\"\n\n[group.hooks]");
    let rest =
        upgrade_plan(&apps, &["node2", "node3"]).replace("name = \"app\"", "name = \"rest\"");
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &format!("{one}\n{rest}"),
    );
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("paused after group app (pause = \"after_group\"): 1/3 nodes done; continue with `lbctl rolling --plan")
            && t.trim_end().ends_with("--resume`"),
        "{t}"
    );
    let out = env.rolling(&["--resume", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["result"], "ok");
    let pause = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "pause")
        .unwrap();
    assert_eq!(pause["result"], "skipped", "{v}");
    assert_eq!(apps.installed_version("node3"), "2");
}

#[test]
fn skip_finishes_a_confluence_upgrade_without_a_node_in_error_that_was_shut_down() {
    let apps = AppNodes::start(&CONFLUENCE);
    let hap = Haproxy::start(&pool(&apps, &CONFLUENCE));
    let z = FakeZdu::start_with(&zdu_nodes(&apps), "1", Some(("admin", "secret")));
    let env = confluence_env(&apps, &hap, &z);
    let plan = std::fs::read_to_string(env.plan()).unwrap();
    let broken = plan.replace(
        "ssh {node} sudo /tmp/atlassian",
        "test {node} != confluence2 && ssh {node} sudo /tmp/atlassian",
    );
    std::fs::write(env.plan(), &broken).unwrap();
    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(z.state(), "MIXED");

    // --skip needs --resume, and a node the run stopped on.
    let out = env.rolling(&["--skip", "confluence2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = env.rolling(&["--resume", "--skip", "confluence3"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--skip confluence3: the last run did not stop on it"),
        "{}",
        text(&out.stderr)
    );
    let out = env.rolling(&["--resume", "--skip", "confluence9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // The operator shuts the node in error down (OFFLINE), then goes on
    // without it.
    apps.stop("confluence2");
    let out = env.rolling(&["--resume", "--skip", "confluence2", "--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_failure(&r, "skip a node in error");
    let v = json(&out);
    assert_eq!(v["result"], "ok");
    assert_eq!(v["nodes"][1]["node"], "confluence2");
    assert_eq!(v["nodes"][1]["result"], "left_out");
    assert_eq!(v["nodes"][2]["result"], "ok");
    assert_eq!(v["nodes_done"], 2);
    let warned = v["warnings"].as_array().unwrap().iter().any(|w| {
        w.as_str().unwrap()
            == "confluence/confluence2: skipped (--skip): its remaining steps did not run; it stays out of rotation"
    });
    assert!(warned, "{v}");
    assert_eq!(z.state(), "STABLE", "approved without the node shut down");
    assert_eq!(z.version(), "9.2.1");
    assert_eq!(
        admin_bits(&hap, "confluence2") & 1,
        1,
        "confluence2 stays in maint"
    );
    assert_eq!(admin_bits(&hap, "confluence3"), 0);
    assert_eq!(apps.installed_version("confluence3"), "9.2.1");
}

/// A gate on the error ratio of the whole pool, as Prometheus scrapes it
/// from every application node, that must hold for 3 s (a ratio over a
/// window takes that long to show a new node's errors).
const ERROR_RATIO_GATE: &str = r#"[group.gate]
prometheus = "PROM"
query = 'sum(rate(lab_responses_total{code="500"}[2s])) / sum(rate(lab_responses_total[2s]))'
below = 0.05
healthy_for = "3s"
timeout = "10s"
interval = "200ms"
"#;

#[test]
fn a_prometheus_gate_passes_a_healthy_upgrade_and_stops_one_whose_error_ratio_rises() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    let targets: Vec<std::net::SocketAddr> = ids.iter().map(|id| apps.addr(id)).collect();
    let prom = Prometheus::start(&targets);
    let gate = ERROR_RATIO_GATE.replace("PROM", &prom.url());
    let plan = |version: &str| {
        let p = upgrade_plan(&apps, &ids).replace("--version 2", &format!("--version {version}"));
        format!("{}{gate}", &p[..p.find("[group.gate]").unwrap()])
    };
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan("2"),
    );
    let t = text(&env.rolling(&["--dry-run"]).stdout);
    assert!(
        t.contains(&format!(
            "gate        prometheus {}: sum(rate(lab_responses_total{{code=\"500\"}}[2s])) / sum(rate(lab_responses_total[2s])) < 0.05, then healthy for 3s",
            prom.url()
        )),
        "{t}"
    );

    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    let g = &v["nodes"][2]["steps"][4]["gate"];
    assert_eq!(g["kind"], "prometheus", "{v}");
    assert_eq!(g["passed"], true);
    assert_eq!(g["last"], "0 < 0.05", "{g}");
    for id in &ids {
        assert_eq!(apps.installed_version(id), "2");
    }

    // A release that passes its health checks but fails its users: the
    // first node returns (its own gate looked before it took traffic),
    // the pool's error ratio rises, and the second node's gate stops the
    // run with it out of rotation.
    std::fs::write(env.plan(), plan("bad3")).unwrap();
    let out = env.rolling(&["--output", "json"]);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(r.failed > 0, "the bad release failed requests: {r:?}");
    let v = json(&out);
    assert_eq!(v["failure"]["node"], "node2", "{v}");
    assert_eq!(v["failure"]["step"], "gate");
    let msg = v["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("passed, then failed") && msg.contains("not < 0.05"),
        "{msg}"
    );
    let last = v["nodes"][1]["steps"][4]["gate"]["last"].as_str().unwrap();
    assert!(last.ends_with("not < 0.05"), "{last}");
    assert_eq!(admin_bits(&hap, "node2") & 1, 1, "node2 stays out");
    assert_eq!(apps.installed_version("node3"), "2", "node3 not reached");
}

#[test]
fn notify_posts_every_step_to_a_webhook_retrying_and_never_fails_the_upgrade() {
    let apps = AppNodes::start_many(2);
    let ids = apps.ids();
    let hap = Haproxy::start(&pool(&apps, &ids));
    // The receiver fails its first two requests: the sender retries.
    let hook = Webhook::start_failing(2);
    let secret = format!("{}/T000/B000/s3cr3t", hook.url());
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &format!("notify = \"{secret}\"\n\n{}", upgrade_plan(&apps, &ids)),
    );
    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(hook.failed(), 2);
    let events: Vec<serde_json::Value> = hook
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let v = json(&out);
    assert_eq!(events.first().unwrap()["event"], "start", "{events:?}");
    assert_eq!(events.first().unwrap()["run"], v["run"]);
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["result"], "ok");
    assert_eq!(end["nodes_done"], 2);
    let node1: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "step" && e["node"] == "node1")
        .map(|e| (e["step"].as_str().unwrap(), e["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        node1,
        [
            ("drain", "ok"),
            ("before", "ok"),
            ("upgrade", "ok"),
            ("after", "ok"),
            ("gate", "ok"),
            ("undrain", "ok")
        ]
    );
    // The report's step shape, with where it ran.
    let upgrade = events
        .iter()
        .find(|e| e["step"] == "upgrade" && e["node"] == "node2")
        .unwrap();
    assert_eq!(upgrade["group"], "app");
    assert_eq!(upgrade["exit_code"], 0);
    assert_eq!(upgrade, &{
        let mut s = v["nodes"][1]["steps"][2].clone();
        for k in ["event", "run", "plan", "group", "node"] {
            s[k] = upgrade[k].clone();
        }
        s
    });
    assert!(
        v.get("warnings")
            .is_none_or(|w| !w.to_string().contains("notify"))
    );

    // A receiver that is gone: the upgrade goes on and says so, without
    // the URL's secret part.
    drop(hook);
    let out = env.rolling(&["--output", "json"]);
    let r = traffic.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_failure(&r, "two upgrades with notifications");
    let v = json(&out);
    let w = v["warnings"].to_string();
    assert!(
        w.contains("notify: ") && w.contains("the upgrade went on"),
        "{w}"
    );
    assert!(w.contains("http://127.0.0.1/…"), "{w}");
    assert!(!text(&out.stdout).contains("s3cr3t") && !text(&out.stderr).contains("s3cr3t"));
    for id in &ids {
        assert_eq!(admin_bits(&hap, id), 0);
    }
}

#[test]
fn a_hook_that_prints_one_huge_line_is_cut_on_stderr_and_whole_in_the_hook_log() {
    let inv = "[nodes.node1]\naddress = \"127.0.0.1:1\"\n";
    let plan = "[[group]]\nname = \"app\"\nnodes = [\"node1\"]\nbalanced = false\n\n\
                [group.hooks]\nupgrade = \"head -c 10000000 /dev/zero | tr '\\\\0' x; echo; exit 3\"\n";
    let env = Env::with_plan(inv, plan);
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.len() < 10_000, "stderr is {} bytes", err.len());
    assert!(
        err.contains("… (9998000 more bytes; the whole line is in the hook log)"),
        "{err}"
    );
    let log = err
        .lines()
        .find_map(|l| l.split_once("(full log: "))
        .and_then(|(_, p)| p.strip_suffix(") ---"))
        .unwrap_or_else(|| panic!("{err}"));
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains(&"x".repeat(10_000_000)));
}
