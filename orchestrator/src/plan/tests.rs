//! The plan parser's contract: defaults, every error naming the file,
//! the line and the key, shell safety.

use super::*;
use crate::rebalance::Strategy;

const GITLAB: &str = r#"
finally = "ssh rails1 sudo gitlab-rake db:migrate"
hook_timeout = "10m"

[[group]]
name = "postgres"
nodes = ["pg1", "pg2"]
balanced = false

[group.hooks]
upgrade = "ssh {node} sudo apt-get install -y gitlab-ee"

[group.gate]
tcp = "{address}"
timeout = "1m"
interval = "1s"

[[group]]
name = "rails"
nodes = ["rails1", "rails2", "rails3"]
batch = 2

[group.hooks]
before = "ssh {node} sudo gitlab-ctl stop puma"
upgrade = "ssh {node} sudo apt-get install -y gitlab-ee"
first_node = "ssh {node} sudo SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-ctl reconfigure"
after = "ssh {node} sudo gitlab-ctl restart"
after_group = "echo {group} done"
timeout = "30m"

[group.gate]
http = "http://{address}/-/readiness"
expect_status = 200
body = "\"status\":\"ok\""
"#;

#[test]
fn parses_groups_hooks_gates_and_defaults() {
    let p = Plan::parse(GITLAB, "gitlab.toml").unwrap();
    assert_eq!(p.groups.len(), 2);
    let pg = &p.groups[0];
    assert!(!pg.balanced);
    assert_eq!(pg.batch, 1);
    assert_eq!(
        pg.upgrade.as_ref().unwrap().timeout,
        Duration::from_secs(600),
        "hook_timeout"
    );
    assert_eq!(
        pg.gate,
        Some(Gate {
            check: GateCheck::Tcp {
                address: "{address}".into()
            },
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(1),
            healthy_for: None,
        })
    );
    let rails = &p.groups[1];
    assert_eq!((rails.batch, rails.balanced), (2, true));
    assert_eq!(
        rails.before.as_ref().unwrap().timeout,
        Duration::from_secs(1800)
    );
    assert!(
        rails
            .first_node
            .as_ref()
            .unwrap()
            .command
            .contains("SKIP_POST")
    );
    match &rails.gate.as_ref().unwrap().check {
        GateCheck::Http {
            url,
            expect_status,
            body,
        } => {
            assert_eq!(url, "http://{address}/-/readiness");
            assert_eq!(*expect_status, 200);
            assert_eq!(body.as_deref(), Some("\"status\":\"ok\""));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rails.gate.as_ref().unwrap().interval, DEFAULT_GATE_INTERVAL);
    assert_eq!(
        p.finally.as_ref().unwrap().timeout,
        Duration::from_secs(600)
    );
    assert_eq!(
        p.nodes().map(|(_, n)| n).collect::<Vec<_>>(),
        ["pg1", "pg2", "rails1", "rails2", "rails3"]
    );
    assert_eq!(p.describe_node(1, 2), "gitlab.toml: line 20");
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let e = Plan::parse(&GITLAB.replace("batch = 2", "bacth = 2"), "gitlab.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gitlab.toml") && e.contains("line 21") && e.contains("bacth"),
        "{e}"
    );
    let e = Plan::parse(&GITLAB.replace("expect_status", "expect"), "p.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("expect") && e.contains("line 33"), "{e}");
    let e = Plan::parse(
        "rebalanse = true\n[[group]]\nname = \"a\"\nnodes = [\"n\"]\n",
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rebalanse") && e.contains("line 1"), "{e}");
    let e = Plan::parse(
        "[[group]]\nname = \"a\"\nnodes = [\"n\"]\ntimeout = \"5x\"\n",
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("timeout") && e.contains("line 4"), "{e}");
}

#[test]
fn semantic_errors_name_the_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "batch = 2",
            "batch = 0",
            "line 21: group rails: batch must be 1 or more",
        ),
        (
            "tcp = \"{address}\"",
            "tcp = \"{address}\"\ncommand = \"true\"",
            "line 13: group postgres: gate: give exactly one",
        ),
        (
            "expect_status = 200",
            "expect_status = 200\ntcp = \"x:1\"",
            "exactly one of http, tcp, command, zdu or prometheus (found http, tcp)",
        ),
        (
            "after_group = \"echo {group} done\"",
            "after_group = \"echo {node}\"",
            "line 28: group rails: hooks.after_group runs once for the group, so it cannot use {node}",
        ),
        (
            "finally = \"ssh rails1",
            "finally = \"ssh {node}",
            "line 2: finally runs once for the plan",
        ),
        (
            "nodes = [\"rails1\", \"rails2\", \"rails3\"]",
            "nodes = [\"rails1\", \"pg2\"]",
            "line 20: group rails: node \"pg2\" is already in group postgres",
        ),
        (
            "name = \"rails\"",
            "name = \"postgres\"",
            "line 19: two groups are named \"postgres\"",
        ),
        (
            "name = \"rails\"",
            "name = \"rails$(id)\"",
            "line 19: group name \"rails$(id)\" holds characters",
        ),
        (
            "tcp = \"{address}\"",
            "zdu = true",
            "zdu = true needs a [zdu] section",
        ),
        (
            "http = \"http://",
            "http = \"ftp://",
            "is not an http:// or https:// URL",
        ),
        (
            "nodes = [\"pg1\", \"pg2\"]",
            "nodes = []",
            "line 7: group postgres: nodes is empty",
        ),
    ];
    for (from, to, want) in cases {
        assert!(GITLAB.contains(from), "{from}");
        let e = Plan::parse(&GITLAB.replacen(from, to, 1), "g.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{to}: {e}");
        assert!(e.starts_with("g.toml: "), "{e}");
    }
    let e = Plan::parse("finally = \"x\"\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no [[group]]"), "{e}");
}

const ONE_GROUP: &str = "\n[[group]]\nname = \"app\"\nnodes = [\"node1\"]\n";

fn with_rebalance(line: &str) -> Result<Plan> {
    Plan::parse(
        &format!("finally = \"true\"\n{line}\n{ONE_GROUP}"),
        "r.toml",
    )
}

#[test]
fn rebalance_is_a_bool_or_a_table_of_the_cli_knobs() {
    let p = Plan::parse(ONE_GROUP, "r.toml").unwrap();
    assert_eq!(p.rebalance, None, "absent");
    assert_eq!(with_rebalance("rebalance = false").unwrap().rebalance, None);
    assert_eq!(
        with_rebalance("rebalance = true").unwrap().rebalance,
        Some(RebalanceOptions::default()),
        "the defaults of lbctl rebalance"
    );
    let o = with_rebalance(
        "rebalance = { threshold = 1.3, strategy = \"weight\", min_load = 2, window = \"2s\", max_drain = \"45s\", duration = \"3m\" }",
    )
    .unwrap()
    .rebalance
    .unwrap();
    assert_eq!(
        o,
        RebalanceOptions {
            pool: None,
            threshold: 1.3,
            min_load: 2.0,
            strategy: Strategy::Weight,
            window: Duration::from_secs(2),
            max_drain: Duration::from_secs(45),
            duration: Duration::from_secs(180),
            ..RebalanceOptions::default()
        }
    );
    let o = with_rebalance("rebalance = { strategy = \"drain\" }")
        .unwrap()
        .rebalance
        .unwrap();
    assert_eq!(o, RebalanceOptions::default(), "every key is optional");
    // The same as a table of its own, after the groups.
    let p = Plan::parse(
        &format!("{ONE_GROUP}\n[rebalance]\nstrategy = \"weight\"\nthreshold = 2\n"),
        "r.toml",
    )
    .unwrap();
    let o = p.rebalance.unwrap();
    assert_eq!((o.strategy, o.threshold), (Strategy::Weight, 2.0));
    assert_eq!(p.groups.len(), 1);
}

#[test]
fn rebalance_errors_name_the_file_the_line_and_the_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "rebalance = { pool = \"app\" }",
            &["line 2", "unknown field `pool`"],
        ),
        (
            "rebalance = { strategy = \"weight\", treshold = 1.2 }",
            &["line 2", "unknown field `treshold`"],
        ),
        (
            "rebalance = { threshold = 0.8 }",
            &["line 2: rebalance: threshold must be at least 1", "not 0.8"],
        ),
        (
            "rebalance = { min_load = -1 }",
            &["line 2: rebalance: min_load must be 0 or more, not -1"],
        ),
        (
            "rebalance = { strategy = \"fast\" }",
            &["line 2: rebalance: unknown strategy \"fast\": drain or weight"],
        ),
        (
            "rebalance = { window = \"5x\" }",
            &["line 2: rebalance: window: invalid duration \"5x\""],
        ),
        (
            "rebalance = { duration = \"0s\" }",
            &["line 2: rebalance: duration must be more than 0"],
        ),
        (
            "rebalance = \"yes\"",
            &["line 2", "rebalance", "true, false or a table"],
        ),
    ];
    for (line, want) in cases {
        let e = with_rebalance(line).unwrap_err().to_string();
        assert!(e.starts_with("r.toml: "), "{line}: {e}");
        for w in *want {
            assert!(e.contains(w), "{line}: want {w:?} in: {e}");
        }
    }
    // A key on a line of its own is named at its own line.
    let e = Plan::parse(
        &format!("{ONE_GROUP}\n[rebalance]\nstrategy = \"weight\"\nthreshold = 0.5\n"),
        "r.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 8: rebalance: threshold"), "{e}");
}

#[test]
fn zdu_section_defaults_and_checks() {
    let text = "[zdu]\nurl = \"https://c.example:8090/\"\nusername = \"admin\"\npassword_env = \"CONF_PW\"\n\n[[group]]\nname = \"confluence\"\nnodes = [\"c1\"]\n[group.gate]\nzdu = true\n";
    let p = Plan::parse(text, "c.toml").unwrap();
    let z = p.zdu.as_ref().unwrap();
    assert_eq!(z.url, "https://c.example:8090");
    assert_eq!(z.state_path, "/rest/zdu/cluster/zdu/state");
    assert_eq!(z.node_path, "/rest/zdu/cluster/zdu/nodes/{id}");
    assert_eq!(z.node_id, "{node}");
    assert_eq!(p.groups[0].gate.as_ref().unwrap().check, GateCheck::Zdu);
    assert!(!format!("{z:?}").contains("CONF_PW") || format!("{z:?}").contains("password_env"));
    let e = Plan::parse(&text.replace("username = \"admin\"\n", ""), "c.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 1: [zdu]: username and password_env go together"),
        "{e}"
    );
    let e = Plan::parse(
        &text.replace("[zdu]\n", "[zdu]\nnode_path = \"/nodes\"\n"),
        "c.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("must hold {id}"), "{e}");
    let e = Plan::parse(
        &text.replace("[zdu]\n", "[zdu]\npasword = \"x\"\n"),
        "c.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pasword") && e.contains("line 2"), "{e}");
}

#[test]
fn shell_safety() {
    for s in ["node1", "10.0.0.1:8080", "[::1]:80", "rails-1.example.com"] {
        assert!(shell_safe(s), "{s}");
    }
    for s in [
        "", "a b", "a;b", "$(id)", "a`b`", "a|b", "a'b", "a&b", "a>b",
    ] {
        assert!(!shell_safe(s), "{s}");
    }
}

#[test]
fn preflight_hold_revisit_on_failure_and_healthy_for_parse() {
    let text = format!(
        "preflight = [\"test -e /ok\", \"true\"]\n{}\n[[group]]\nname = \"post\"\nnodes = [\"rails1\", \"rails2\", \"rails3\"]\nrevisit = true\n",
        GITLAB
            .replace("batch = 2\n", "batch = 2\nhold = true\n")
            .replace(
                "timeout = \"30m\"",
                "on_failure = \"ssh {node} sudo apt-get install -y gitlab-ee=1\"\ntimeout = \"30m\""
            )
            .replace(
                "timeout = \"1m\"",
                "timeout = \"1m\"\nhealthy_for = \"30s\""
            )
    );
    let p = Plan::parse(&text, "p.toml").unwrap();
    assert_eq!(
        p.preflight
            .iter()
            .map(|h| h.command.as_str())
            .collect::<Vec<_>>(),
        ["test -e /ok", "true"]
    );
    assert_eq!(
        p.preflight[0].timeout,
        Duration::from_secs(600),
        "hook_timeout"
    );
    assert!(p.groups[1].hold && !p.groups[1].revisit);
    assert!(p.groups[2].revisit && !p.groups[2].hold);
    assert_eq!(
        p.groups[1].on_failure.as_ref().unwrap().command,
        "ssh {node} sudo apt-get install -y gitlab-ee=1"
    );
    assert_eq!(
        p.groups[0].gate.as_ref().unwrap().healthy_for,
        Some(Duration::from_secs(30))
    );
    assert_eq!(p.nodes().count(), 8, "the rails nodes twice");
}

#[test]
fn preflight_hold_and_revisit_errors_name_the_line() {
    let post = "\n[[group]]\nname = \"post\"\nnodes = [\"rails1\"]\nrevisit = true\n";
    let cases: &[(String, &str)] = &[
        (
            format!("preflight = [\"ssh {{node}} true\"]\n{GITLAB}"),
            "p.toml: line 1: preflight runs once for the plan, so it cannot use {node}",
        ),
        (
            format!("preflight = [\" \"]\n{GITLAB}"),
            "p.toml: line 1: preflight: a command is empty",
        ),
        (
            GITLAB.replace("batch = 2\n", "batch = 2\nhold = true\n"),
            "p.toml: line 18: group rails: hold = true, but node \"rails1\" is in no later group with revisit = true",
        ),
        (
            GITLAB.replace("balanced = false\n", "balanced = false\nhold = true\n"),
            "group postgres: hold = true keeps nodes out of rotation, but balanced = false",
        ),
        (
            format!("{GITLAB}{}", post.replace("rails1", "rails9")),
            "group post: revisit = true, but node \"rails9\" is in no earlier group",
        ),
        (
            format!("{GITLAB}{}", post.replace("revisit = true\n", "")),
            "group post: node \"rails1\" is already in group rails; a node is upgraded once (a group that comes back to it says revisit = true)",
        ),
        (
            GITLAB.replace("[\"pg1\", \"pg2\"]", "[\"pg1\", \"pg1\"]"),
            "p.toml: line 7: group postgres: node \"pg1\" is listed twice",
        ),
        (
            GITLAB.replace("timeout = \"1m\"", "timeout = \"1m\"\nhealthy_for = \"0s\""),
            "group postgres: gate: healthy_for must be more than 0",
        ),
        (
            GITLAB.replace("timeout = \"30m\"", "on_failure = \"\"\ntimeout = \"30m\""),
            "group rails: hooks.on_failure is empty",
        ),
        (
            format!("pause = \"after_node\"\n{GITLAB}"),
            "p.toml: line 1: pause = \"after_node\": after_first_node or after_group",
        ),
        (
            GITLAB.replace("batch = 2\n", "batch = 2\npause = \"later\"\n"),
            "group rails: pause = \"later\": after_first_node or after_group",
        ),
        (
            format!("notify = \"ftp://hooks.example/T0/s3cr3t\"\n{GITLAB}"),
            "p.toml: line 1: notify is not an http:// or https:// URL",
        ),
        (
            GITLAB.replace(
                "tcp = \"{address}\"",
                "prometheus = \"http://p:9090\"\nquery = \"up\"",
            ),
            "group postgres: gate: a prometheus gate needs one of below or above",
        ),
        (
            GITLAB.replace(
                "tcp = \"{address}\"",
                "prometheus = \"http://p:9090\"\nbelow = 1.0",
            ),
            "group postgres: gate: a prometheus gate needs a query",
        ),
        (
            GITLAB.replace("tcp = \"{address}\"", "tcp = \"{address}\"\nbelow = 1.0"),
            "group postgres: gate: query, below and above go with a prometheus gate",
        ),
    ];
    for (text, want) in cases {
        let e = Plan::parse(text, "p.toml").unwrap_err().to_string();
        assert!(e.contains(want), "{want}\n{e}");
        assert!(!e.contains("s3cr3t"), "the notify URL is a secret: {e}");
    }
    let p = Plan::parse(
        &format!(
            "pause = \"after_group\"\nnotify = \"https://hooks.example/T0/s3cr3t\"\n{}",
            GITLAB.replace(
                "tcp = \"{address}\"",
                "prometheus = \"http://p:9090/\"\nquery = 'up{instance=\"{address}\"}'\nabove = 0.5"
            )
        ),
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.pause, Some(Pause::AfterGroup));
    assert_eq!(p.notify.as_deref(), Some("https://hooks.example/T0/s3cr3t"));
    assert_eq!(
        p.groups[0].gate.as_ref().unwrap().check,
        GateCheck::Prometheus {
            url: "http://p:9090".into(),
            query: "up{instance=\"{address}\"}".into(),
            condition: Condition::Above(Bound(0.5)),
        }
    );
}

#[test]
fn the_readme_plan_parses() {
    let readme = include_str!("../../../README.md");
    let at = readme
        .find("### The plan\n\n```toml\n")
        .expect("the README's plan")
        + 22;
    let block = &readme[at..at + readme[at..].find("```").unwrap()];
    let p = Plan::parse(block, "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.preflight.len(), 1);
    assert_eq!(p.pause, Some(Pause::AfterFirstNode));
    let g = &p.groups[0];
    assert!(g.on_failure.is_some());
    assert_eq!(
        g.gate.as_ref().unwrap().healthy_for,
        Some(Duration::from_secs(30))
    );
}

#[test]
fn hook_grace_defaults_to_5s_and_is_read_from_the_plan() {
    let plan = |head: &str| {
        Plan::parse(
            &format!("{head}\n[[group]]\nname = \"app\"\nnodes = [\"node1\"]\n"),
            "plan.toml",
        )
    };
    assert_eq!(plan("").unwrap().hook_grace, Duration::from_secs(5));
    assert_eq!(
        plan("hook_grace = \"250ms\"").unwrap().hook_grace,
        Duration::from_millis(250)
    );
    let e = plan("hook_grace = \"soon\"").unwrap_err().to_string();
    assert!(e.contains("plan.toml") && e.contains("hook_grace"), "{e}");
}
