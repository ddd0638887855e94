//! Runtime state that survives a reload, through HAProxy's server-state
//! file.

mod common;

use std::path::Path;

use common::{member, mref, on_unix};
use lb_core::{AdminState, Balancer, Change, Error};
use lb_haproxy::Haproxy;
use lb_lab::{Backend, HaproxyOptions, Pools};

/// A lab HAProxy that loads its servers' state from `state` at every
/// (re)start.
fn lab_with_state_file(backends: &[Backend], state: &Path) -> lb_lab::Haproxy {
    let opts = HaproxyOptions {
        global: vec![format!("server-state-file {}", state.display())],
        defaults: vec!["load-server-state-from-file global".into()],
        ..HaproxyOptions::default()
    };
    lb_lab::Haproxy::start_with(&Pools::new().pool("app", backends), &opts)
}

fn keeping(lab: &lb_lab::Haproxy, state: &Path) -> Haproxy {
    Haproxy::builder("edge")
        .socket(lab.admin_socket().to_str().unwrap())
        .state_file(state)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_a_reload_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("servers.state");
    let backends = Backend::start_many(3);
    let lab = lab_with_state_file(&backends, &state);
    let lb = keeping(&lab, &state);
    let plain = on_unix(&lab); // keeps no state file

    assert_eq!(
        lb.set_state(&mref("app", "node2"), AdminState::Drain)
            .await
            .unwrap(),
        Change::Applied
    );
    assert_eq!(
        lb.set_weight(&mref("app", "node3"), 7).await.unwrap(),
        Change::Applied
    );
    let written = std::fs::read_to_string(&state).unwrap();
    assert!(written.starts_with("1\n# be_id be_name"), "{written}");
    assert_eq!(
        written
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        4,
        "the version line and three servers: {written}"
    );
    assert_eq!(
        plain
            .set_state(&mref("app", "node1"), AdminState::Maint)
            .await
            .unwrap(),
        Change::Applied
    );

    let worker = || {
        lab.command("show info")
            .lines()
            .find(|l| l.starts_with("Pid: "))
            .map(str::to_owned)
            .expect("show info names the worker")
    };
    let before = worker();
    lab.reload(); // SIGUSR2 to the master; returns once a new worker answers
    assert_ne!(before, worker(), "a new worker answers");

    let node2 = member(&lb, "app", "node2").await;
    assert_eq!(
        node2.admin,
        AdminState::Drain,
        "drained before, still drained after"
    );
    assert_eq!(member(&lb, "app", "node3").await.weight, Some(7));
    assert_eq!(
        member(&lb, "app", "node1").await.admin,
        AdminState::Ready,
        "a change made without the state file is lost by the reload"
    );
    assert_eq!(
        lb.set_state(&mref("app", "node2"), AdminState::Drain)
            .await
            .unwrap(),
        Change::AlreadyInState
    );
}

/// When the file cannot be written the change is made but reported as
/// `Unavailable` (a reload would undo it); retrying finds the member
/// already in state and writes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_cannot_be_written_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("state");
    std::fs::create_dir(&sub).unwrap();
    let state = sub.join("servers.state");
    let backends = Backend::start_many(2);
    let lab = lab_with_state_file(&backends, &state);
    let lb = keeping(&lab, &state);
    std::fs::remove_dir(&sub).unwrap();

    let node2 = mref("app", "node2");
    let e = lb.set_state(&node2, AdminState::Drain).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("app/node2 is drained on HAProxy"), "{msg}");
    assert!(msg.contains("servers.state could not be written"), "{msg}");
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Drain);

    std::fs::create_dir(&sub).unwrap();
    assert_eq!(
        lb.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::AlreadyInState
    );
    let written = std::fs::read_to_string(&state).unwrap();
    let row = written
        .lines()
        .find(|l| l.split(' ').nth(3) == Some("node2"))
        .expect("node2 in the state file");
    assert_eq!(row.split(' ').nth(6), Some("8"), "forced drain: {row}");
    let leftovers: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["servers.state"],
        "no temporary file left behind"
    );
}
