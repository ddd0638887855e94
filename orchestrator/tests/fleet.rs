//! The fleet's contract, on in-memory balancers: all-or-nothing changes,
//! the guard, waits, the journal and recover.

use std::sync::Arc;
use std::time::Duration;

use lb_core::{AdminState, Balancer, Error as LbError, Health, InMemoryBalancer, MemberRef};
use orchestrator::report::{MemberChange, NodeOutcome};
use orchestrator::{DrainOptions, Error, ExitCode, Fleet, Node, Settings, UndrainOptions};

fn lb(name: &str) -> Arc<InMemoryBalancer> {
    Arc::new(
        InMemoryBalancer::new(name)
            .with_member("app", "node1", "10.0.0.1:8080")
            .with_member("app", "node2", "10.0.0.2:8080")
            .with_member("app", "node3", "10.0.0.3:8080"),
    )
}

/// `web` names its members by address, as nginx does.
fn by_address(name: &str) -> Arc<InMemoryBalancer> {
    Arc::new(
        InMemoryBalancer::new(name)
            .with_member("app", "10.0.0.1:8080", "10.0.0.1:8080")
            .with_member("app", "10.0.0.2:8080", "10.0.0.2:8080"),
    )
}

fn settings() -> Settings {
    Settings {
        poll_interval: Duration::from_millis(10),
        drain_timeout: Duration::from_secs(5),
        undrain_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

fn fleet(balancers: &[Arc<InMemoryBalancer>], state: &std::path::Path) -> Fleet {
    let mut b = Fleet::builder().settings(settings()).state_dir(state);
    for l in balancers {
        b = b.balancer("memory", l.clone() as Arc<dyn Balancer>);
    }
    for i in 1..=3 {
        b = b.node(Node::new(&format!("node{i}"), &format!("10.0.0.{i}:8080")));
    }
    b.build().unwrap()
}

fn n(s: &str) -> Vec<String> {
    vec![s.to_string()]
}

fn admin(l: &InMemoryBalancer, pool: &str, m: &str) -> AdminState {
    l.member(&MemberRef::new(pool, m)).unwrap().admin
}

#[tokio::test]
async fn drain_takes_the_node_out_everywhere_and_undrain_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, web) = (lb("edge"), by_address("web"));
    let f = fleet(&[edge.clone(), web.clone()], dir.path());

    let r = f
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap();
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Maint);
    assert_eq!(admin(&web, "app", "10.0.0.2:8080"), AdminState::Maint);
    assert_eq!(
        admin(&edge, "app", "node1"),
        AdminState::Ready,
        "nothing else moves"
    );
    assert_eq!(r.nodes[0].result, NodeOutcome::Drained);
    assert_eq!(r.nodes[0].members.len(), 2);
    assert!(
        r.nodes[0]
            .members
            .iter()
            .all(|m| m.change == MemberChange::Applied && m.status.admin == AdminState::Maint)
    );

    let again = f
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap();
    assert_eq!(again.nodes[0].result, NodeOutcome::Unchanged);

    let r = f
        .undrain(&n("node2"), &UndrainOptions::default())
        .await
        .unwrap();
    assert_eq!(r.nodes[0].result, NodeOutcome::Undrained);
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Ready);
    assert_eq!(admin(&web, "app", "10.0.0.2:8080"), AdminState::Ready);

    let json = serde_json::to_value(&r).unwrap();
    let m = &json["nodes"][0]["members"][0];
    for key in [
        "balancer", "kind", "pool", "member", "admin", "health", "active", "weight", "change",
    ] {
        assert!(m.get(key).is_some(), "member JSON has {key}: {m}");
    }
    assert_eq!(json["nodes"][0]["result"], "undrained");
    assert!(json["waited_ms"].is_u64());
}

#[tokio::test]
async fn soft_drain_stops_at_drain_and_waits_for_connections() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    let node2 = MemberRef::new("app", "node2");
    edge.set_active(&node2, 3);
    let e2 = edge.clone();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        e2.set_active(&MemberRef::new("app", "node2"), 0);
    });
    let opts = DrainOptions {
        soft: true,
        ..Default::default()
    };
    let r = f.drain(&n("node2"), &opts).await.unwrap();
    closer.await.unwrap();
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Drain);
    assert!(
        r.waited_ms >= 150,
        "it waited for the connections: {}",
        r.waited_ms
    );
}

#[tokio::test]
async fn a_drain_that_times_out_leaves_the_member_draining_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    edge.set_active(&MemberRef::new("app", "node2"), 7);
    let opts = DrainOptions {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let e = f.drain(&n("node2"), &opts).await.unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Timeout);
    let msg = e.to_string();
    assert!(
        msg.contains("edge app/node2") && msg.contains("active 7") && msg.contains("left draining"),
        "{msg}"
    );
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Drain);
    // Left draining on purpose: nothing for recover.
    assert!(f.recover(true).await.unwrap().recovered.is_empty());
}

#[tokio::test]
async fn the_guard_refuses_and_changes_nothing_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    edge.set_health(&MemberRef::new("app", "node3"), Health::Down);
    f.drain(&n("node1"), &DrainOptions::default())
        .await
        .unwrap();
    // node2 is now the last member that is ready and up.
    let e = f
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Guard);
    let msg = e.to_string();
    assert!(
        msg.contains("edge pool app would keep 0") && msg.contains("node3 is ready/down"),
        "{msg}"
    );
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Ready);

    let r = f
        .drain(
            &n("node2"),
            &DrainOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Maint);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("guard overridden by --force")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn draining_two_nodes_at_once_is_guarded_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Arc::new(
        InMemoryBalancer::new("edge")
            .with_member("app", "node1", "10.0.0.1:8080")
            .with_member("app", "node2", "10.0.0.2:8080"),
    );
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    let e = f
        .drain(&["node1", "node2"], &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Guard);
    assert_eq!(edge.writes(), 0);
}

#[tokio::test]
async fn a_failing_balancer_rolls_the_others_back() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, web) = (lb("edge"), by_address("web"));
    let f = fleet(&[edge.clone(), web.clone()], dir.path());
    web.fail_writes(Some(LbError::unauthorized(
        "web",
        "permission denied (socket needs level admin)",
    )));
    let e = f
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::RolledBack, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("web: permission denied") && msg.contains("edge app/node2 back to ready"),
        "{msg}"
    );
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Ready);
    assert!(
        f.recover(true).await.unwrap().recovered.is_empty(),
        "a complete rollback leaves nothing to recover"
    );
}

/// The journal's lines, as JSON.
fn journal_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_change_of_a_rollback_is_journaled_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, web) = (lb("edge"), by_address("web"));
    let f = fleet(&[edge.clone(), web.clone()], dir.path());
    web.fail_writes(Some(LbError::unavailable("web", "connection refused")));
    let e = f
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::RolledBack, "{e}");
    let lines = journal_lines(dir.path());
    let intents: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "intent").collect();
    // drain on edge, drain on web (failed), edge put back to ready.
    let changes: Vec<(String, String, String)> = intents
        .iter()
        .map(|i| {
            (
                i["balancer"].as_str().unwrap().to_string(),
                i["from"].as_str().unwrap().to_string(),
                i["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("edge".into(), "ready".into(), "drain".into()),
            ("web".into(), "ready".into(), "drain".into()),
            ("edge".into(), "drain".into(), "ready".into()),
        ]
    );
    for i in intents {
        let done: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["event"] == "done" && l["seq"] == i["seq"] && l["run"] == i["run"])
            .collect();
        assert_eq!(done.len(), 1, "intent {i} has one done: {lines:?}");
    }
    assert_eq!(
        lines.last().unwrap()["status"],
        "rolled_back",
        "the run ends once everything is back"
    );
}

#[tokio::test]
async fn a_failure_with_nothing_applied_is_a_plain_failure() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    edge.fail_writes(Some(LbError::unavailable("edge", "connection refused")));
    let e = f
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Failed);
    assert!(e.to_string().contains("edge: connection refused"));
}

#[tokio::test]
async fn undrain_waits_until_balancers_see_the_node_up() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    f.drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap();
    let node2 = MemberRef::new("app", "node2");
    edge.set_health(&node2, Health::Down);
    let opts = UndrainOptions {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let e = f.undrain(&n("node2"), &opts).await.unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Timeout);
    assert!(
        e.to_string().contains("in rotation (ready) but down"),
        "{e}"
    );

    let e2 = edge.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        e2.set_health(&MemberRef::new("app", "node2"), Health::Up);
    });
    let r = f
        .undrain(&n("node2"), &UndrainOptions::default())
        .await
        .unwrap();
    assert_eq!(r.nodes[0].members[0].status.health, Health::Up);
}

#[tokio::test]
async fn dry_runs_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    let r = f
        .drain(
            &n("node2"),
            &DrainOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(r.dry_run);
    assert_eq!(
        r.nodes[0].members[0].status.admin,
        AdminState::Maint,
        "shows the planned state"
    );
    assert_eq!(edge.writes(), 0);
    assert!(
        !dir.path().join("journal.jsonl").exists()
            || f.journal().unwrap().records().await.unwrap().is_empty()
    );
}

#[tokio::test]
async fn bad_names_are_usage_errors_and_reach_no_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    let e = f
        .drain(&n("node9"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    assert!(e.to_string().contains("node1, node2, node3"), "{e}");
    let e = f
        .drain(&n("node2;show info"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    assert_eq!(edge.writes(), 0);

    let lone = Fleet::builder()
        .balancer("memory", edge.clone())
        .node(Node::new("ghost", "10.9.9.9:80"))
        .build()
        .unwrap();
    let e = lone
        .drain(&n("ghost"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("matches no member"),
        "{e}"
    );
}

#[tokio::test]
async fn recover_puts_back_what_an_interrupted_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let f = fleet(std::slice::from_ref(&edge), dir.path());
    // An interrupted drain: intent and done recorded, no end.
    let j = f.journal().unwrap();
    let run = orchestrator::journal::Run::start(j, "drain node2")
        .await
        .unwrap();
    let node2 = MemberRef::new("app", "node2");
    let s = run
        .intent(
            Some("node2"),
            "edge",
            &node2,
            orchestrator::journal::Setting::State {
                from: AdminState::Ready,
                to: AdminState::Drain,
            },
        )
        .await
        .unwrap();
    let res = edge.set_state(&node2, AdminState::Drain).await;
    run.done(s, &res).await.unwrap();
    drop(run);

    let planned = f.recover(true).await.unwrap();
    assert_eq!(planned.recovered.len(), 1);
    assert_eq!(
        admin(&edge, "app", "node2"),
        AdminState::Drain,
        "dry run changes nothing"
    );

    let r = f.recover(false).await.unwrap();
    assert_eq!(r.recovered[0].restore, "ready");
    assert_eq!(r.recovered[0].change, MemberChange::Applied);
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Ready);
    let again = f.recover(false).await.unwrap();
    assert!(again.recovered.is_empty(), "{again:?}");
}

#[tokio::test]
async fn the_guard_counts_a_node_another_run_claims_as_out_before_its_balancers_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let edge = lb("edge");
    let build = || {
        let mut b = Fleet::builder()
            .settings(Settings {
                min_active: 2,
                lock_timeout: Duration::ZERO,
                ..settings()
            })
            .state_dir(dir.path())
            .balancer("memory", edge.clone() as Arc<dyn Balancer>);
        for i in 1..=3 {
            b = b.node(Node::new(&format!("node{i}"), &format!("10.0.0.{i}:8080")));
        }
        b.build().unwrap()
    };
    let (a, b) = (build(), build());
    // Run A claims node2 and has not changed anything yet.
    let claim = a
        .engine()
        .claim(&["node2".to_string()], "run-a", "drain node2")
        .await
        .unwrap();
    assert_eq!(admin(&edge, "app", "node2"), AdminState::Ready);
    let e = b
        .drain(&n("node1"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Guard, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("would keep 1")
            && msg.contains("node2 counted out: node2 claimed by run run-a"),
        "{msg}"
    );
    let e = b
        .drain(&n("node2"), &DrainOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Guard, "{e}");
    assert!(
        e.to_string().contains("node2 is claimed by run run-a"),
        "{e}"
    );
    assert_eq!(edge.writes(), 0, "nothing changed");
    drop(claim);
    b.drain(&n("node1"), &DrainOptions::default())
        .await
        .unwrap();
}
