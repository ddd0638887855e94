//! `lbctl watch` for real: in a terminal (tmux) during a rolling upgrade
//! of the lab, and `--once` without one.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{Env, Tmux, apache_section, haproxy_section, nginx_section, stderr, text};
use lb_lab::{Apache, AppNodes, Backend, Haproxy, Load, LoadOptions, Nginx, PoolSpec, Pools};

fn quoted(s: &str) -> String {
    toml::Value::String(s.into()).to_string()
}

#[test]
fn watch_shows_a_rolling_upgrade_of_the_lab_live_and_q_quits_changing_nothing() {
    let apps = AppNodes::start_many(3);
    let ids = apps.ids();
    let mut spec = PoolSpec::new("app");
    for id in &ids {
        spec = spec.member(id, apps.addr(id));
    }
    let pools = Pools::new().with(spec);
    let hap = Haproxy::start(&pools);
    let apache = Apache::start(&pools);
    let nginx = Nginx::start(&pools);
    let mut inventory = String::from(
        "[defaults]\npoll_interval = \"200ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\n\n",
    );
    inventory += &haproxy_section("haproxy", &hap.admin_socket());
    inventory += &apache_section("apache", &apache.manager_url());
    inventory += &nginx_section("nginx", &nginx);
    for id in &ids {
        let _ = writeln!(inventory, "[nodes.{id}]\naddress = \"{}\"\n", apps.addr(id));
    }
    // Each node: stopped, a 3 s upgrade to version 2, started again.
    let plan = format!(
        "[[group]]\nname = \"app\"\nnodes = [\"node1\", \"node2\", \"node3\"]\n\n[group.hooks]\n\
         before = {}\nupgrade = {}\nafter = {}\n\n[group.gate]\ntcp = \"{{address}}\"\n",
        quoted(&apps.hook("stop")),
        quoted(&format!("sleep 3 && {}", apps.hook("install --version 2"))),
        quoted(&apps.hook("start")),
    );
    let env = Env::with_plan(&inventory, &plan);
    let tmux = Tmux::new(&env.file(""));
    // Some traffic through HAProxy, for the connections' history.
    let load = Load::start(
        &hap.frontend_url("app"),
        LoadOptions {
            connections: 4,
            ..LoadOptions::default()
        },
    );
    let mut rolling = env.spawn_rolling();
    let rolling_pid = format!("\"pid\":{},", rolling.id());

    let exit_file = env.file("watch.exit");
    tmux.start_watch(&env, "", &exit_file);

    // Wait until the header shows node2 being upgraded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let screen = loop {
        let s = tmux.capture();
        if s.contains("node node2  step upgrade") {
            break s;
        }
        if let Some(code) = rolling.try_wait().unwrap() {
            let out = rolling.wait_with_output().unwrap();
            panic!(
                "the rolling run ended ({code}) before node2's upgrade: {}",
                stderr(&out)
            );
        }
        assert!(
            Instant::now() < deadline,
            "watch never showed node2's upgrade; last screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("lbctl watch during the rolling upgrade:\n{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines[0].starts_with("lbctl watch  3 nodes  3 balancers  every 200ms  sorted by node"),
        "{screen}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "rolling {}  group app  node node2  step upgrade (started)",
            env.plan().canonicalize().unwrap().display()
        )),
        "{screen}"
    );
    assert!(lines[1].ends_with("claims node2"), "{screen}");
    let row = |node: &str, bal: &str| -> Vec<&str> {
        lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() > 4 && w[0] == node && w[1] == bal)
            .unwrap_or_else(|| panic!("no row {node} {bal}:\n{screen}"))
    };
    for bal in ["apache", "haproxy", "nginx"] {
        assert_eq!(
            row("node2", bal)[4],
            "maint",
            "node2 is out on {bal}:\n{screen}"
        );
        assert_eq!(
            row("node1", bal)[4],
            "ready",
            "node1 is back on {bal}:\n{screen}"
        );
        assert_eq!(
            row("node3", bal)[4],
            "ready",
            "node3 waits on {bal}:\n{screen}"
        );
    }
    assert!(lines.last().unwrap().starts_with("q quit"), "{screen}");

    tmux.ok(&["send-keys", "-t", "watch", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Ok(code) = std::fs::read_to_string(&exit_file)
            && code.ends_with('\n')
        {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "q did not end watch:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code.trim(), "0", "watch exits 0 on q");

    let out = rolling.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the rolling run went on: {}",
        stderr(&out)
    );
    load.stop();
    // watch wrote nothing: every run in the journal is the rolling
    // process's (the rolling run and its drains and undrains).
    let journal = std::fs::read_to_string(env.state().join("journal.jsonl")).unwrap();
    for line in journal
        .lines()
        .filter(|l| l.contains("\"event\":\"start\""))
    {
        assert!(
            line.contains(&rolling_pid),
            "only the rolling process's runs: {line}"
        );
    }
}

#[test]
fn watch_once_prints_the_status_document_and_without_a_terminal_says_so() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let mut inventory = haproxy_section("edge", &hap.admin_socket());
    for b in &backends {
        let _ = writeln!(
            inventory,
            "[nodes.{}]\naddress = \"{}\"\n",
            b.id(),
            b.addr()
        );
    }
    let env = Env::new(&inventory);

    let status = env.ok(&["status", "node2", "--output", "json"]);
    let once = env.ok(&["watch", "node2", "--once", "--output", "json"]);
    assert_eq!(text(&once.stdout), text(&status.stdout));
    let v: serde_json::Value = serde_json::from_slice(&once.stdout).unwrap();
    assert_eq!(v["nodes"][0]["node"], "node2");

    let out = env.run(&["watch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("watch needs a terminal"),
        "{}",
        stderr(&out)
    );
    let (code, v) = env.json_code(&["watch"]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("add --once"),
        "{v}"
    );
    let out = env.run(&["watch", "--interval", "0s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("more than 0"), "{}", stderr(&out));
    let out = env.run(&["watch", "node9", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown node: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("node9"), "{}", stderr(&out));
    assert!(
        !env.state().join("journal.jsonl").exists() || {
            let j = std::fs::read_to_string(env.state().join("journal.jsonl")).unwrap();
            j.is_empty()
        },
        "watch journals nothing"
    );
}
