//! The lab's application nodes (processes a hook can stop and start), the
//! `ssh` stand-in the example plans use, and the fake Confluence ZDU API.

use std::process::Command;
use std::time::{Duration, Instant};

use lb_lab::{AppNodes, FakeZdu, http};

fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<http::Response> {
    http::get(&format!("http://{addr}{path}"))
}

#[test]
fn an_app_node_stops_gracefully_and_starts_again_at_a_new_version() {
    let apps = AppNodes::start(&["node1"]);
    let addr = apps.addr("node1");
    let r = get(addr, "/").unwrap();
    assert_eq!((r.status, r.header("x-version")), (200, Some("1")));
    assert_eq!(r.header("x-backend"), Some("node1"));
    let pid = apps.pid("node1").expect("runs");

    // A request in flight when the stop begins still gets its answer.
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    apps.stop("node1");
    let r = slow
        .join()
        .unwrap()
        .expect("the request in flight completed");
    assert_eq!(r.status, 200);
    assert!(apps.pid("node1").is_none(), "process {pid} is gone");
    assert!(get(addr, "/").is_err(), "the port is closed");

    let out = Command::new(apps.bin())
        .args(["install", "--dir"])
        .arg(apps.dir())
        .args(["--id", "node1", "--version", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    apps.start_again("node1");
    let r = get(addr, "/").unwrap();
    assert_eq!(r.header("x-version"), Some("2"), "same port, new version");
    assert_ne!(apps.pid("node1"), Some(pid), "a new process");
}

#[test]
fn a_starting_node_says_so_until_it_is_ready() {
    let apps = AppNodes::start_with(&["node1"], Duration::from_millis(800));
    let addr = apps.addr("node1");
    let first = get(addr, "/status").unwrap();
    assert!(first.body.contains("STARTING"), "{first:?}");
    assert_eq!(get(addr, "/-/readiness").unwrap().status, 503);
    assert_eq!(get(addr, "/health").unwrap().status, 503);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(addr, "/status").unwrap().body.contains("RUNNING") {
        assert!(Instant::now() < deadline, "never RUNNING");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = get(addr, "/-/readiness").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"ok\"}"));
}

#[test]
fn the_ssh_stand_in_runs_the_example_plans_remote_commands() {
    let apps = AppNodes::start(&["rails1"]);
    let addr = apps.addr("rails1");
    let ssh = apps.ssh_path().join("ssh");
    let run = |args: &[&str]| Command::new(&ssh).args(args).output().unwrap();

    assert!(
        run(&["rails1", "sudo gitlab-ctl stop puma"])
            .status
            .success()
    );
    assert!(apps.pid("rails1").is_none());
    let out = run(&[
        "rails1",
        "sudo",
        "apt-get",
        "install",
        "-y",
        "gitlab-ee=17.9.1-ee.0",
    ]);
    assert!(out.status.success());
    assert_eq!(apps.installed_version("rails1"), "17.9.1-ee.0");
    assert!(run(&["rails1", "sudo SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-ctl reconfigure && sudo gitlab-ctl start"]).status.success());
    assert_eq!(
        get(addr, "/").unwrap().header("x-version"),
        Some("17.9.1-ee.0")
    );
    assert!(
        run(&["rails1", "sudo /etc/init.d/confluence stop"])
            .status
            .success()
    );
    assert!(apps.pid("rails1").is_none());
    assert!(
        run(&["rails1", "sudo systemctl restart confluence"])
            .status
            .success()
    );
    assert!(apps.pid("rails1").is_some());

    let out = run(&["rails1", "sudo rm -rf /"]);
    assert_eq!(out.status.code(), Some(127), "unknown commands fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown remote command"));
    let out = run(&["nosuchnode", "sudo gitlab-ctl start"]);
    assert!(!out.status.success(), "unknown nodes fail");

    let log = apps.ssh_log();
    assert_eq!(log[0], "rails1 sudo gitlab-ctl stop puma");
    assert_eq!(
        log[1],
        "rails1 sudo apt-get install -y gitlab-ee=17.9.1-ee.0"
    );
    assert_eq!(log.len(), 7, "{log:?}");
}

#[test]
fn the_ssh_stand_in_records_steps_and_restarts_only_the_nodes_own_service() {
    let apps = AppNodes::start(&["gitaly1", "consul1", "secondary-rails1"]);
    let ssh = apps.ssh_path().join("ssh");
    let run = |step: &str, args: &[&str]| {
        Command::new(&ssh)
            .env("LBCTL_STEP", step)
            .args(args)
            .output()
            .unwrap()
    };
    let pid = |id| apps.pid(id).unwrap();
    let (gitaly, consul, rails) = (pid("gitaly1"), pid("consul1"), pid("secondary-rails1"));

    // Gitaly reloads gracefully: restarting what runs beside it leaves it.
    let out = run(
        "after",
        &[
            "gitaly1",
            "sudo gitlab-ctl restart consul node-exporter logrotate",
        ],
    );
    assert!(out.status.success());
    assert_eq!(pid("gitaly1"), gitaly);
    // Consul's own restart restarts it; everything but Consul does not.
    assert!(
        run("after", &["consul1", "sudo gitlab-ctl restart consul"])
            .status
            .success()
    );
    let consul2 = pid("consul1");
    assert_ne!(consul2, consul);
    assert!(
        run(
            "after",
            &["consul1", "sudo gitlab-ctl restart-except consul"]
        )
        .status
        .success()
    );
    assert_eq!(pid("consul1"), consul2);
    // The Geo log cursor is not the node's process either.
    assert!(
        run(
            "before",
            &["secondary-rails1", "sudo gitlab-ctl stop geo-logcursor"]
        )
        .status
        .success()
    );
    assert_eq!(pid("secondary-rails1"), rails);
    for cmd in [
        "sudo touch /etc/gitlab/skip-auto-reconfigure",
        "sudo scp primary-rails1:/etc/gitlab/gitlab-secrets.json /etc/gitlab/gitlab-secrets.json",
        r#"sudo sed -i "s/^#* *gitlab_rails\['auto_migrate'\].*/gitlab_rails['auto_migrate'] = false/" /etc/gitlab/gitlab.rb"#,
    ] {
        assert!(
            run("before", &["secondary-rails1", cmd]).status.success(),
            "{cmd}"
        );
    }
    let out = run("upgrade", &["gitaly1", "sudo gitlab-ctl patroni members"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| gitaly1 | 127.0.0.1 | Leader |"));
    apps.set_installed_version("gitaly1", "17.8.3-ee.0");
    let out = run(
        "preflight",
        &["gitaly1", "dpkg-query -W -f='${Version}' gitlab-ee"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "17.8.3-ee.0");
    apps.set_background_migrations(4);
    let out = run(
        "preflight",
        &["gitaly1", "sudo gitlab-rails runner -e production 'puts 1'"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4");

    let steps = apps.ssh_steps();
    assert_eq!(steps.len(), 10, "{steps:?}");
    assert_eq!(
        steps[0],
        (
            "gitaly1".to_string(),
            "after".to_string(),
            "sudo gitlab-ctl restart consul node-exporter logrotate".to_string()
        )
    );
    assert_eq!(steps[3].1, "before");
    assert_eq!(
        apps.ssh_log()[3],
        "secondary-rails1 sudo gitlab-ctl stop geo-logcursor"
    );

    // `/metrics` counts answers; a `bad` release fails users, not checks.
    let addr = apps.addr("gitaly1");
    get(addr, "/").unwrap();
    apps.stop("gitaly1");
    apps.set_installed_version("gitaly1", "bad1");
    apps.start_again("gitaly1");
    assert_eq!(get(addr, "/").unwrap().status, 500);
    assert_eq!(get(addr, "/health").unwrap().status, 200);
    let m = get(addr, "/metrics").unwrap().body;
    assert!(
        m.contains("lab_responses_total{node=\"gitaly1\",code=\"500\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("lab_responses_total{node=\"gitaly1\",code=\"200\"} 1"),
        "{m}"
    );
}

fn call(z: &FakeZdu, method: &str, path: &str, xsrf: bool, auth: Option<&str>) -> http::Response {
    let mut h = Vec::new();
    if xsrf {
        h.push(("X-Atlassian-Token", "no-check"));
    }
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    http::request(
        method,
        &format!("{}/rest/zdu/cluster/zdu/{path}", z.url()),
        &h,
        "",
    )
    .unwrap()
}

fn state(z: &FakeZdu) -> String {
    let r = call(z, "GET", "state", false, None);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.body.split("\"state\":\"").nth(1).unwrap();
    v[..v.find('"').unwrap()].to_string()
}

fn upgrade(apps: &AppNodes, id: &str, version: &str) {
    apps.stop(id);
    let out = Command::new(apps.bin())
        .args(["install", "--dir"])
        .arg(apps.dir())
        .args(["--id", id, "--version", version])
        .output()
        .unwrap();
    assert!(out.status.success());
    apps.start_again(id);
}

#[test]
fn the_fake_zdu_api_walks_confluences_state_machine_and_refuses_illegal_moves() {
    let apps = AppNodes::start(&["c1", "c2"]);
    let z = FakeZdu::start(&[("c1", apps.addr("c1")), ("c2", apps.addr("c2"))], "1");
    assert_eq!(state(&z), "STABLE");
    assert_eq!(
        call(&z, "POST", "cancel", true, None).status,
        409,
        "cancel when STABLE"
    );
    assert_eq!(
        call(&z, "POST", "approve", true, None).status,
        409,
        "approve when STABLE"
    );
    assert_eq!(
        call(&z, "POST", "start", false, None).status,
        403,
        "XSRF header missing"
    );
    assert_eq!(call(&z, "POST", "start", true, None).status, 200);
    assert_eq!(state(&z), "READY_TO_UPGRADE");
    assert_eq!(
        call(&z, "POST", "start", true, None).status,
        409,
        "start twice"
    );

    apps.stop("c1");
    let r = call(&z, "GET", "nodes/c1", false, None);
    assert!(r.body.contains("\"state\":\"OFFLINE\""), "{r:?}");
    assert_eq!(
        state(&z),
        "READY_TO_UPGRADE",
        "a node down is not an upgrade yet"
    );
    upgrade(&apps, "c1", "2");
    let r = call(&z, "GET", "nodes/c1", false, None);
    assert!(
        r.body.contains("\"state\":\"ACTIVE\"") && r.body.contains("\"buildNumber\":\"2\""),
        "{r:?}"
    );
    assert_eq!(state(&z), "MIXED");
    let r = call(&z, "POST", "cancel", true, None);
    assert_eq!(r.status, 409, "never cancel in MIXED: {r:?}");
    assert!(r.body.contains("MIXED"));
    assert_eq!(
        call(&z, "POST", "approve", true, None).status,
        409,
        "approve in MIXED"
    );

    upgrade(&apps, "c2", "2");
    assert_eq!(state(&z), "READY_TO_RUN_UPGRADE_TASKS");
    assert_eq!(call(&z, "POST", "approve", true, None).status, 200);
    assert_eq!(state(&z), "STABLE");
    assert_eq!(z.version(), "2");
    assert_eq!(call(&z, "GET", "nodes/c9", false, None).status, 404);
    assert!(
        z.calls()
            .contains(&"POST /rest/zdu/cluster/zdu/approve -> 200".to_string())
    );
}

#[test]
fn the_fake_zdu_api_cancels_before_mixed_refuses_error_nodes_and_checks_credentials() {
    let apps = AppNodes::start(&["c1"]);
    let z = FakeZdu::start_with(&[("c1", apps.addr("c1"))], "1", Some(("admin", "secret")));
    assert_eq!(call(&z, "GET", "state", false, None).status, 401);
    let auth = Some("Basic YWRtaW46c2VjcmV0");
    assert_eq!(call(&z, "POST", "start", true, auth).status, 200);
    assert_eq!(
        call(&z, "POST", "cancel", true, auth).status,
        200,
        "cancel before any node moved"
    );
    assert!(
        call(&z, "GET", "state", false, auth)
            .body
            .contains("STABLE")
    );

    z.set_error("c1", true);
    let r = call(&z, "GET", "nodes/c1", false, auth);
    assert!(r.body.contains("ERROR"), "{r:?}");
    assert_eq!(
        call(&z, "POST", "start", true, auth).status,
        409,
        "no upgrade with a node in ERROR"
    );
}
