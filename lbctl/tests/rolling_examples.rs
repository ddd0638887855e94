//! The example plans end to end: each runs against the lab (real HAProxy,
//! application nodes that are processes, load), with the `ssh` stand-in
//! recording every command with the lbctl step that ran it. Each test
//! holds the documented procedure as a list of (node, step, command), in
//! the document's order, and asserts the recording equals it: diff the
//! list against the document to review the plan.

use std::collections::BTreeMap;
use std::time::Duration;

mod common;

use common::{
    CONFLUENCE, Env, admin_bits, assert_no_failure, confluence_env, example, haproxy_section,
    inventory, json, load, pool, text, zdu_nodes,
};
use lb_lab::{AppNodes, FakeZdu, Haproxy};

const TOUCH: &str = "sudo touch /etc/gitlab/skip-auto-reconfigure";
const INSTALL: &str = "sudo apt-get install -y gitlab-ee=17.9.1-ee.0";
const RECONFIGURE: &str = "sudo gitlab-ctl reconfigure";
const RESTART: &str = "sudo gitlab-ctl restart";
const STATUS: &str = "sudo gitlab-ctl status";
const RESTART_BUT_GITALY: &str = "sudo gitlab-ctl restart consul node-exporter logrotate";
const PATRONI: &str = "sudo gitlab-ctl patroni members";

/// `sed -i` setting `key` (one of gitlab.rb's settings) to `value`, as
/// the plans write "make sure KEY = VALUE is set in gitlab.rb".
fn set(keys: &[(&str, &str)]) -> String {
    let exprs: Vec<String> = keys
        .iter()
        .map(|(k, v)| {
            let (scope, name) = k.split_once('.').unwrap();
            format!(r#""s/^#* *{scope}\['{name}'\].*/{scope}['{name}'] = {v}/""#)
        })
        .collect();
    if exprs.len() == 1 {
        format!("sudo sed -i {} /etc/gitlab/gitlab.rb", exprs[0])
    } else {
        format!(
            "sudo sed -i -e {} /etc/gitlab/gitlab.rb",
            exprs.join(" -e ")
        )
    }
}

type Expected = Vec<(String, String, String)>;

fn push(e: &mut Expected, node: &str, step: &str, commands: &[&str]) {
    for c in commands {
        e.push((node.into(), step.into(), (*c).into()));
    }
}

/// "Upgrade Consul, PostgreSQL, PgBouncer and Redis nodes", on `node`.
fn consul_like(e: &mut Expected, node: &str) {
    push(e, node, "before", &[TOUCH]);
    push(e, node, "upgrade", &[INSTALL]);
    push(
        e,
        node,
        "after",
        &[
            RECONFIGURE,
            "sudo gitlab-ctl restart consul",
            "sudo gitlab-ctl restart-except consul",
        ],
    );
}

/// "Upgrade Gitaly nodes": no restart of Gitaly itself.
fn gitaly(e: &mut Expected, node: &str) {
    push(e, node, "before", &[TOUCH]);
    push(e, node, "upgrade", &[INSTALL]);
    push(e, node, "after", &[RECONFIGURE, STATUS, RESTART_BUT_GITALY]);
}

/// The preflight checks (one minor release; background migrations done).
fn preflight(e: &mut Expected, node: &str) {
    push(
        e,
        node,
        "preflight",
        &[
            "dpkg-query -W -f='${Version}' gitlab-ee",
            "sudo gitlab-rails runner -e production 'puts Gitlab::Database::BackgroundMigration::BatchedMigration.queued.count'",
        ],
    );
}

/// GitLab's multi-node zero-downtime upgrade, in the document's order.
fn gitlab_procedure() -> Expected {
    let mut e = Vec::new();
    preflight(&mut e, "rails1");
    // Consul, PostgreSQL, PgBouncer, Redis.
    for n in ["consul1", "postgres1", "pgbouncer1", "redis1"] {
        consul_like(&mut e, n);
    }
    gitaly(&mut e, "gitaly1");
    // Praefect: the deploy node migrates, the others do not; then every
    // Praefect node restarts what else runs.
    push(&mut e, "praefect1", "before", &[TOUCH]);
    let on = set(&[("praefect.auto_migrate", "true")]);
    push(
        &mut e,
        "praefect1",
        "first_node",
        &[&on, INSTALL, RECONFIGURE],
    );
    push(&mut e, "praefect2", "before", &[TOUCH]);
    let off = set(&[("praefect.auto_migrate", "false")]);
    push(
        &mut e,
        "praefect2",
        "upgrade",
        &[&off, INSTALL, RECONFIGURE],
    );
    for n in ["praefect1", "praefect2"] {
        push(&mut e, n, "after_group", &[STATUS, RESTART_BUT_GITALY]);
    }
    // Rails deploy node: regular migrations only, against the leader.
    push(&mut e, "rails1", "before", &[TOUCH]);
    let on = set(&[("gitlab_rails.auto_migrate", "true")]);
    push(&mut e, "rails1", "upgrade", &[&on]);
    push(&mut e, "postgres1", "upgrade", &[PATRONI]);
    let leader = set(&[
        ("gitlab_rails.db_host", "'postgres1'"),
        ("gitlab_rails.db_port", "5432"),
    ]);
    push(&mut e, "rails1", "upgrade", &[&leader, INSTALL]);
    push(
        &mut e,
        "rails1",
        "after",
        &["sudo SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-ctl reconfigure"],
    );
    // Every other Rails node.
    let off = set(&[("gitlab_rails.auto_migrate", "false")]);
    for n in ["rails2", "rails3"] {
        push(&mut e, n, "before", &[TOUCH]);
        push(&mut e, n, "upgrade", &[&off, INSTALL]);
        push(&mut e, n, "after", &[RECONFIGURE, RESTART]);
    }
    // Back on the deploy node: post-deployment migrations, then normal.
    push(
        &mut e,
        "rails1",
        "upgrade",
        &["sudo gitlab-rake gitlab:db:configure"],
    );
    let normal = set(&[
        ("gitlab_rails.auto_migrate", "false"),
        ("gitlab_rails.db_host", "'pgbouncer1'"),
        ("gitlab_rails.db_port", "6432"),
    ]);
    push(&mut e, "rails1", "after", &[&normal, RECONFIGURE, RESTART]);
    // Sidekiq, last.
    push(&mut e, "sidekiq1", "before", &[TOUCH]);
    push(&mut e, "sidekiq1", "upgrade", &[INSTALL]);
    push(&mut e, "sidekiq1", "after", &[RECONFIGURE, RESTART]);
    e
}

/// The recording without the gates' own commands (a command gate may
/// look more than once); returns those apart.
fn recorded(apps: &AppNodes) -> (Expected, Expected) {
    apps.ssh_steps()
        .into_iter()
        .partition(|(_, s, _)| s != "gate")
}

fn diff(got: &Expected, want: &Expected) -> String {
    let fmt = |v: &Expected| {
        v.iter()
            .map(|(n, s, c)| format!("{n:<20} {s:<12} {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "--- recorded ---\n{}\n--- documented ---\n{}",
        fmt(got),
        fmt(want)
    )
}

const GITLAB_NODES: [&str; 11] = [
    "consul1",
    "postgres1",
    "pgbouncer1",
    "redis1",
    "gitaly1",
    "praefect1",
    "praefect2",
    "rails1",
    "rails2",
    "rails3",
    "sidekiq1",
];

fn pids(apps: &AppNodes, ids: &[&str]) -> BTreeMap<String, Option<u32>> {
    ids.iter()
        .map(|id| (id.to_string(), apps.pid(id)))
        .collect()
}

#[test]
fn the_gitlab_example_runs_the_documented_procedure_step_by_step_under_load() {
    let apps = AppNodes::start(&GITLAB_NODES);
    apps.set_installed_version("rails1", "17.8.3-ee.0");
    let rails = ["rails1", "rails2", "rails3"];
    let hap = Haproxy::start(&pool(&apps, &rails));
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &example("gitlab-plan.toml"),
    )
    .with_path(&apps.ssh_path());
    let graceful = pids(&apps, &["gitaly1", "praefect1", "praefect2", "consul1"]);

    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_no_failure(&r, "GitLab example");

    let (got, gates) = recorded(&apps);
    let want = gitlab_procedure();
    assert!(got == want, "{}", diff(&got, &want));
    assert!(
        gates
            .iter()
            .all(|(n, _, c)| n == "sidekiq1" && c == "sudo gitlab-ctl status sidekiq"),
        "{gates:?}"
    );
    assert!(!gates.is_empty());

    // Gitaly and Praefect reload gracefully: their processes were never
    // restarted; Consul's was.
    let now = pids(&apps, &["gitaly1", "praefect1", "praefect2", "consul1"]);
    for id in ["gitaly1", "praefect1", "praefect2"] {
        assert_eq!(now[id], graceful[id], "{id} was not restarted");
    }
    assert_ne!(now["consul1"], graceful["consul1"], "consul1 was restarted");
    for id in GITLAB_NODES {
        assert_eq!(apps.installed_version(id), "17.9.1-ee.0", "{id}");
    }
    for id in rails {
        assert_eq!(admin_bits(&hap, id), 0, "{id} is back in rotation");
    }

    let v = json(&out);
    assert_eq!(v["result"], "ok");
    assert_eq!(
        (v["nodes_done"].as_u64(), v["nodes_total"].as_u64()),
        (Some(12), Some(12))
    );
    let node = |g: &str, n: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["group"] == g && x["node"] == n)
            .unwrap_or_else(|| panic!("{g}/{n} in {v}"))
            .clone()
    };
    let steps = |x: &serde_json::Value| -> Vec<String> {
        x["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap().to_string())
            .collect()
    };
    // The deploy node is held out of rotation from its first visit to its
    // second: no undrain in rails-deploy, a drain (a no-op) and an
    // undrain in rails-post-deploy.
    assert_eq!(
        steps(&node("rails-deploy", "rails1")),
        ["drain", "before", "upgrade", "after"]
    );
    assert_eq!(
        steps(&node("rails-post-deploy", "rails1")),
        ["drain", "upgrade", "after", "gate", "undrain"]
    );
    assert_eq!(node("postgresql", "postgres1")["balanced"], false);
    assert!(!steps(&node("postgresql", "postgres1")).contains(&"drain".to_string()));
    let plan_steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(plan_steps, ["preflight", "preflight", "after_group"]);
}

/// Confluence's rolling upgrade on each node, in the document's order:
/// graceful shutdown, upgrade, start (then the API says ACTIVE).
fn confluence_procedure() -> Expected {
    let mut e = Vec::new();
    for n in CONFLUENCE {
        push(&mut e, n, "before", &["sudo /etc/init.d/confluence stop"]);
        push(
            &mut e,
            n,
            "upgrade",
            &["sudo /tmp/atlassian-confluence-9.2.1-x64.bin -q -varfile /tmp/response.varfile"],
        );
        push(&mut e, n, "after", &["sudo /etc/init.d/confluence start"]);
    }
    e
}

#[test]
fn the_confluence_example_runs_the_zdu_api_from_start_to_approve_under_load() {
    let apps = AppNodes::start_with(&CONFLUENCE, Duration::from_millis(1500));
    // Wait until the nodes are up before the balancer checks them.
    std::thread::sleep(Duration::from_millis(1600));
    let hap = Haproxy::start(&pool(&apps, &CONFLUENCE));
    let z = FakeZdu::start_with(&zdu_nodes(&apps), "1", Some(("admin", "secret")));
    let env = confluence_env(&apps, &hap, &z);
    let traffic = load(&hap.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    traffic.wait_for_ok(100);
    let r = traffic.stop();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_no_failure(&r, "Confluence example");
    assert_eq!(z.state(), "STABLE");
    assert_eq!(
        z.version(),
        "9.2.1",
        "approved: the cluster runs the new version"
    );
    let calls: Vec<String> = z
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("POST"))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /rest/zdu/cluster/zdu/start -> 200",
            "POST /rest/zdu/cluster/zdu/approve -> 200"
        ]
    );
    let v = json(&out);
    let gate = &v["nodes"][0]["steps"][4]["gate"];
    assert_eq!(gate["kind"], "zdu");
    assert_eq!(gate["target"], "confluence1");
    assert_eq!(gate["last"], "ACTIVE");
    assert!(
        gate["attempts"].as_u64().unwrap() >= 2,
        "waited through STARTING: {gate}"
    );
    let plan_steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(plan_steps, ["zdu_start", "zdu_approve"]);

    let (got, gates) = recorded(&apps);
    let want = confluence_procedure();
    assert!(got == want, "{}", diff(&got, &want));
    assert!(
        gates.is_empty(),
        "the gate asks the ZDU API, not ssh: {gates:?}"
    );
    // The API, in the document's order: the state, upgrade mode on (and
    // READY_TO_UPGRADE read back), each node's state until ACTIVE, and
    // the finalization once the cluster is READY_TO_RUN_UPGRADE_TASKS.
    let api: Vec<String> = z
        .calls()
        .into_iter()
        .map(|c| c.split(" -> ").next().unwrap().to_string())
        .fold(Vec::new(), |mut v, c| {
            if v.last() != Some(&c) {
                v.push(c);
            }
            v
        });
    assert_eq!(
        api,
        [
            "GET /rest/zdu/cluster/zdu/state",
            "POST /rest/zdu/cluster/zdu/start",
            "GET /rest/zdu/cluster/zdu/state",
            "GET /rest/zdu/cluster/zdu/nodes/confluence1",
            "GET /rest/zdu/cluster/zdu/nodes/confluence2",
            "GET /rest/zdu/cluster/zdu/nodes/confluence3",
            "GET /rest/zdu/cluster/zdu/state",
            "POST /rest/zdu/cluster/zdu/approve",
            "GET /rest/zdu/cluster/zdu/state",
        ]
    );
}

/// One Geo site's nodes, by component.
fn site(s: &str) -> Vec<String> {
    [
        "consul1",
        "postgres1",
        "pgbouncer1",
        "redis1",
        "gitaly1",
        "rails1",
        "rails2",
        "rails3",
        "sidekiq1",
    ]
    .iter()
    .map(|n| format!("{s}-{n}"))
    .collect()
}

/// Sidekiq, as every site upgrades it.
fn sidekiq(e: &mut Expected, node: &str) {
    push(e, node, "before", &[TOUCH]);
    push(e, node, "upgrade", &[INSTALL]);
    push(e, node, "after", &[RECONFIGURE, RESTART]);
}

/// GitLab Geo's upgrade of a primary and a secondary site, in the
/// document's order.
fn geo_procedure() -> Expected {
    let mut e = Vec::new();
    let version = "dpkg-query -W -f='${Version}' gitlab-ee";
    push(&mut e, "primary-rails1", "preflight", &[version]);
    push(&mut e, "secondary-rails1", "preflight", &[version]);
    push(
        &mut e,
        "primary-rails1",
        "preflight",
        &[
            "sudo gitlab-rails runner -e production 'puts Gitlab::Database::BackgroundMigration::BatchedMigration.queued.count'",
        ],
    );
    // Primary site: the normal process, without post-deployment migrations.
    for n in ["consul1", "postgres1", "pgbouncer1", "redis1"] {
        consul_like(&mut e, &format!("primary-{n}"));
    }
    gitaly(&mut e, "primary-gitaly1");
    push(&mut e, "primary-rails1", "before", &[TOUCH]);
    let on = set(&[("gitlab_rails.auto_migrate", "true")]);
    push(&mut e, "primary-rails1", "upgrade", &[&on]);
    push(&mut e, "primary-postgres1", "upgrade", &[PATRONI]);
    let leader = set(&[
        ("gitlab_rails.db_host", "'primary-postgres1'"),
        ("gitlab_rails.db_port", "5432"),
    ]);
    push(&mut e, "primary-rails1", "upgrade", &[&leader, INSTALL]);
    push(
        &mut e,
        "primary-rails1",
        "after",
        &["sudo SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-ctl reconfigure"],
    );
    let off = set(&[("gitlab_rails.auto_migrate", "false")]);
    for n in ["primary-rails2", "primary-rails3"] {
        push(&mut e, n, "before", &[TOUCH]);
        push(&mut e, n, "upgrade", &[&off, INSTALL]);
        push(&mut e, n, "after", &[RECONFIGURE, RESTART]);
    }
    sidekiq(&mut e, "primary-sidekiq1");
    // Secondary site: the normal process but for Rails.
    for n in ["consul1", "postgres1", "pgbouncer1", "redis1"] {
        consul_like(&mut e, &format!("secondary-{n}"));
    }
    gitaly(&mut e, "secondary-gitaly1");
    let off = set(&[
        ("gitlab_rails.auto_migrate", "false"),
        ("geo_secondary.auto_migrate", "false"),
    ]);
    // Its Rails deploy node.
    push(
        &mut e,
        "secondary-rails1",
        "before",
        &[
            "sudo gitlab-ctl stop geo-logcursor",
            TOUCH,
            "sudo scp primary-rails1:/etc/gitlab/gitlab-secrets.json /etc/gitlab/gitlab-secrets.json",
        ],
    );
    push(&mut e, "secondary-rails1", "upgrade", &[&off, INSTALL]);
    push(
        &mut e,
        "secondary-rails1",
        "after",
        &[
            RECONFIGURE,
            RESTART,
            "sudo SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-rake db:migrate:geo",
        ],
    );
    // Its other Rails nodes.
    for n in ["secondary-rails2", "secondary-rails3"] {
        push(
            &mut e,
            n,
            "before",
            &["sudo gitlab-ctl stop geo-logcursor", TOUCH],
        );
        push(&mut e, n, "upgrade", &[&off, INSTALL]);
        push(&mut e, n, "after", &[RECONFIGURE, RESTART]);
    }
    sidekiq(&mut e, "secondary-sidekiq1");
    // Post-deployment migrations on the primary's deploy node.
    push(
        &mut e,
        "primary-rails1",
        "upgrade",
        &[
            "sudo gitlab-rake gitlab:db:configure",
            "sudo gitlab-rake gitlab:geo:check",
        ],
    );
    let normal = set(&[
        ("gitlab_rails.auto_migrate", "false"),
        ("gitlab_rails.db_host", "'pgbouncer1'"),
        ("gitlab_rails.db_port", "6432"),
    ]);
    push(
        &mut e,
        "primary-rails1",
        "after",
        &[&normal, RECONFIGURE, RESTART],
    );
    // The secondary's Geo tracking post-deployment migrations.
    push(
        &mut e,
        "secondary-rails1",
        "finally",
        &[
            "sudo gitlab-rake db:migrate:geo",
            "sudo gitlab-rake geo:status",
        ],
    );
    e
}

#[test]
fn the_gitlab_geo_example_upgrades_the_primary_then_the_secondary_as_documented_under_load() {
    let ids: Vec<String> = site("primary")
        .into_iter()
        .chain(site("secondary"))
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let apps = AppNodes::start(&ids);
    for n in ["primary-rails1", "secondary-rails1"] {
        apps.set_installed_version(n, "17.8.3-ee.0");
    }
    let primary = Haproxy::start(&pool(
        &apps,
        &["primary-rails1", "primary-rails2", "primary-rails3"],
    ));
    let secondary = Haproxy::start(&pool(
        &apps,
        &["secondary-rails1", "secondary-rails2", "secondary-rails3"],
    ));
    let balancers = format!(
        "{}\n{}",
        haproxy_section("primary", &primary.admin_socket()),
        haproxy_section("secondary", &secondary.admin_socket())
    );
    let env = Env::with_plan(
        &inventory(&apps, &balancers),
        &example("gitlab-geo-plan.toml"),
    )
    .with_path(&apps.ssh_path());

    let p_load = load(&primary.frontend_url("app"));
    let s_load = load(&secondary.frontend_url("app"));
    let out = env.rolling(&["--output", "json"]);
    p_load.wait_for_ok(100);
    s_load.wait_for_ok(100);
    let (p, s) = (p_load.stop(), s_load.stop());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    assert_no_failure(&p, "Geo example, primary site");
    assert_no_failure(&s, "Geo example, secondary site");

    let (got, gates) = recorded(&apps);
    let want = geo_procedure();
    assert!(got == want, "{}", diff(&got, &want));
    assert!(
        gates
            .iter()
            .all(|(n, _, c)| n.ends_with("-sidekiq1") && c == "sudo gitlab-ctl status sidekiq"),
        "{gates:?}"
    );
    for id in &ids {
        assert_eq!(apps.installed_version(id), "17.9.1-ee.0", "{id}");
    }
    for (h, n) in [
        (&primary, "primary-rails1"),
        (&primary, "primary-rails2"),
        (&primary, "primary-rails3"),
        (&secondary, "secondary-rails1"),
        (&secondary, "secondary-rails2"),
        (&secondary, "secondary-rails3"),
    ] {
        assert_eq!(admin_bits(h, n), 0, "{n} is back in rotation");
    }
    let v = json(&out);
    assert_eq!(v["result"], "ok");
    assert_eq!(
        v["nodes_done"], 19,
        "18 nodes, the primary's deploy node twice"
    );
}

#[test]
fn the_gitlab_preflight_refuses_with_exit_4_and_changes_nothing_until_its_checks_pass() {
    let apps = AppNodes::start(&GITLAB_NODES);
    apps.set_installed_version("rails1", "17.8.3-ee.0");
    apps.set_background_migrations(3);
    let rails = ["rails1", "rails2", "rails3"];
    let hap = Haproxy::start(&pool(&apps, &rails));
    let env = Env::with_plan(
        &inventory(&apps, &haproxy_section("edge", &hap.admin_socket())),
        &example("gitlab-plan.toml"),
    )
    .with_path(&apps.ssh_path());
    let before = pids(&apps, &GITLAB_NODES);

    // The dry run lists the checks first, and runs none.
    let t = text(&env.rolling(&["--dry-run"]).stdout);
    let first = t.lines().find(|l| l.starts_with("  ")).unwrap();
    assert!(first.starts_with("  preflight   v=$(ssh rails1"), "{t}");
    assert!(apps.ssh_steps().is_empty(), "{:?}", apps.ssh_steps());

    // Background migrations still queued.
    let out = env.rolling(&["--output", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "guard");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("preflight check failed, nothing changed"),
        "{msg}"
    );
    assert!(
        msg.contains("batched background migrations queued: 3"),
        "{msg}"
    );
    let steps: Vec<String> = apps.ssh_steps().into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(steps, ["preflight", "preflight"], "only the checks ran");

    // Not one minor release behind.
    apps.set_background_migrations(0);
    apps.set_installed_version("rails1", "17.7.6-ee.0");
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("installed: 17.7.6-ee.0")
            && err.contains("17.9 must be reached from 17.8, one minor release at a time"),
        "{err}"
    );
    for id in rails {
        assert_eq!(admin_bits(&hap, id), 0, "{id} untouched");
    }
    assert_eq!(pids(&apps, &GITLAB_NODES), before, "no node restarted");
    for id in GITLAB_NODES.iter().filter(|n| **n != "rails1") {
        assert_eq!(apps.installed_version(id), "1", "{id} not upgraded");
    }

    // Once the checks pass, a plain run (no --resume, no --restart) goes.
    apps.set_installed_version("rails1", "17.8.3-ee.0");
    let out = env.rolling(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(apps.installed_version("sidekiq1"), "17.9.1-ee.0");
}
