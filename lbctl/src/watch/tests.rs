//! The view drawn on ratatui's test backend: what an operator reads.

use std::time::{Duration, Instant};

use lb_core::{AdminState, Health};
use orchestrator::journal::{Event, Record, Setting, Step, StepStatus, Value};
use orchestrator::report::{MemberStatus, NodeStatus, StatusReport};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Modifier;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::{HIGHLIGHT, Model, Sort};
use super::runs::in_progress;
use super::view::draw;

fn member(bal: &str, member: &str, admin: AdminState, active: u64) -> MemberStatus {
    MemberStatus {
        balancer: bal.into(),
        kind: "haproxy".into(),
        pool: "app".into(),
        member: member.into(),
        admin,
        health: Health::Up,
        active: Some(active),
        weight: Some(1),
    }
}

/// Two nodes on two balancers; node2 in `admin` with `active` connections.
fn report(admin: AdminState, active: u64) -> StatusReport {
    let node = |n: &str, a: AdminState, c: u64| NodeStatus {
        node: n.into(),
        address: "127.0.0.1:1".into(),
        members: vec![member("edge", n, a, c), member("web", n, a, c)],
    };
    StatusReport {
        nodes: vec![
            node("node1", AdminState::Ready, 2),
            node("node2", admin, active),
        ],
        unmatched: Vec::new(),
    }
}

fn screen(model: &Model, now: Instant, wall: OffsetDateTime) -> (Vec<String>, TestBackend) {
    let mut t = Terminal::new(TestBackend::new(110, 12)).unwrap();
    t.draw(|f| draw(f, model, now, wall)).unwrap();
    let b = t.backend().buffer().clone();
    let lines = (0..b.area.height)
        .map(|y| {
            (0..b.area.width)
                .map(|x| b[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect();
    (lines, t.backend().clone())
}

/// The line with its runs of spaces squeezed to one.
fn squeezed(line: &str) -> String {
    words(line).join(" ")
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn record(run: &str, ts: &str, event: Event) -> Record {
    Record {
        ts: ts.into(),
        run: run.into(),
        event,
    }
}

#[test]
fn every_member_is_a_row_with_its_state_history_and_weight() {
    let now = Instant::now();
    let wall = OffsetDateTime::now_utc();
    let mut m = Model::new(Sort::Node, Duration::from_millis(100));
    for c in [0, 4, 8] {
        m.update(&report(AdminState::Ready, c), now);
    }
    let (lines, _) = screen(&m, now, wall);
    assert!(
        lines[0].starts_with("lbctl watch  2 nodes  2 balancers  every 100ms  sorted by node"),
        "{lines:#?}"
    );
    assert_eq!(lines[1], "no rolling or rebalance run in progress");
    assert_eq!(
        squeezed(&lines[2]),
        "NODE BALANCER POOL MEMBER ADMIN HEALTH ACTIVE HISTORY WEIGHT"
    );
    assert_eq!(squeezed(&lines[3]), "node1 edge app node1 ready up 2 ▃▃▃ 1");
    assert_eq!(squeezed(&lines[5]), "node2 edge app node2 ready up 8 ▁▅█ 1");
    assert_eq!(squeezed(&lines[6]), "node2 web app node2 ready up 8 ▁▅█ 1");
    assert!(
        lines[11].starts_with("q quit  s sort by balancer"),
        "{lines:#?}"
    );
}

#[test]
fn a_change_is_highlighted_for_a_while_and_sorting_by_balancer_regroups_rows() {
    let t0 = Instant::now();
    let wall = OffsetDateTime::now_utc();
    let mut m = Model::new(Sort::Node, Duration::from_millis(100));
    m.update(&report(AdminState::Ready, 0), t0);
    m.update(&report(AdminState::Maint, 0), t0);
    let (lines, backend) = screen(&m, t0, wall);
    assert_eq!(words(&lines[5])[4], "maint");
    let reversed = |y: u16| {
        backend.buffer()[(0, y)]
            .modifier
            .contains(Modifier::REVERSED)
    };
    assert!(
        reversed(5) && reversed(6),
        "node2's rows changed: highlighted"
    );
    assert!(!reversed(3) && !reversed(4), "node1's rows did not change");
    let (_, later) = screen(&m, t0 + HIGHLIGHT, wall);
    assert!(
        !later.buffer()[(0, 5)].modifier.contains(Modifier::REVERSED),
        "the highlight fades"
    );

    m.set_sort(Sort::Balancer);
    let (lines, _) = screen(&m, t0, wall);
    let order: Vec<(&str, &str)> = lines[3..7]
        .iter()
        .map(|l| {
            let w = words(l);
            (w[1], w[0])
        })
        .collect();
    assert_eq!(
        order,
        [
            ("edge", "node1"),
            ("edge", "node2"),
            ("web", "node1"),
            ("web", "node2")
        ]
    );
    assert!(lines[0].contains("sorted by balancer"));
}

#[test]
fn a_rolling_run_in_progress_shows_plan_group_node_step_elapsed_and_claims() {
    let started = OffsetDateTime::now_utc() - Duration::from_secs(75);
    let ts = started.format(&Rfc3339).unwrap();
    // A live process other than this one (the journal skips its own).
    let me = std::os::unix::process::parent_id();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let intent = |seq, node: &str, to| Event::Intent {
        seq,
        node: Some(node.into()),
        balancer: "edge".into(),
        pool: "app".into(),
        member: node.into(),
        change: Setting::new(Value::State(AdminState::Ready), Value::State(to)),
    };
    let step = |node: &str, step, status| Event::Step {
        group: Some("app".into()),
        node: Some(node.into()),
        step,
        status,
        detail: None,
    };
    let records = vec![
        // A run that ended: not shown.
        record(
            "old",
            &ts,
            Event::Start {
                pid: me,
                host: host.clone(),
                user: "ops".into(),
                command: "drain node1".into(),
                reason: None,
            },
        ),
        record("old", &ts, intent(1, "node1", AdminState::Maint)),
        record(
            "old",
            &ts,
            Event::End {
                status: orchestrator::journal::EndStatus::Ok,
                recovered: None,
            },
        ),
        // The rolling run: node1 done and back, node2 out and upgrading.
        record(
            "r1",
            &ts,
            Event::Start {
                pid: me,
                host: host.clone(),
                user: "ops".into(),
                command: "rolling /srv/plan.toml".into(),
                reason: None,
            },
        ),
        record(
            "r1",
            &ts,
            Event::Rolling {
                plan: "/srv/plan.toml".into(),
                resumes: None,
            },
        ),
        record("r1", &ts, step("node1", Step::Drain, StepStatus::Started)),
        record("r1", &ts, step("node1", Step::Node, StepStatus::Ok)),
        record("r1", &ts, step("node2", Step::Drain, StepStatus::Started)),
        // Its drain of node2: a run of its own, ended.
        record(
            "d2",
            &ts,
            Event::Start {
                pid: me,
                host: host.clone(),
                user: "ops".into(),
                command: "drain node2".into(),
                reason: None,
            },
        ),
        record("d2", &ts, intent(1, "node2", AdminState::Maint)),
        record(
            "d2",
            &ts,
            Event::End {
                status: orchestrator::journal::EndStatus::Ok,
                recovered: None,
            },
        ),
        record("r1", &ts, step("node2", Step::Drain, StepStatus::Ok)),
        record("r1", &ts, step("node2", Step::Upgrade, StepStatus::Started)),
        // A rebalance elsewhere holding node3 out.
        record(
            "rb",
            &ts,
            Event::Start {
                pid: me,
                host: host.clone(),
                user: "ops".into(),
                command: "rebalance".into(),
                reason: None,
            },
        ),
        record("rb", &ts, intent(1, "node3", AdminState::Maint)),
        // A run whose process is gone: not in progress.
        record(
            "dead",
            &ts,
            Event::Start {
                pid: u32::MAX - 1,
                host: host.clone(),
                user: "ops".into(),
                command: "drain node1".into(),
                reason: None,
            },
        ),
    ];
    let runs = in_progress(&records);
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "rb"], "{runs:#?}");
    assert_eq!(runs[0].claims, ["node2"]);
    assert_eq!(runs[1].claims, ["node3"]);

    let mut m = Model::new(Sort::Node, Duration::from_millis(100));
    m.update(&report(AdminState::Maint, 0), Instant::now());
    m.runs = runs;
    let (lines, _) = screen(&m, Instant::now(), OffsetDateTime::now_utc());
    assert_eq!(
        lines[1],
        "rolling /srv/plan.toml  group app  node node2  step upgrade (started)  1m15s  claims node2"
    );
    assert_eq!(lines[2], "rebalance  1m15s  claims node3");
    assert_eq!(words(&lines[3])[0], "NODE", "the table follows the header");
}

#[test]
fn claims_from_the_backend_join_their_run_or_stand_for_another_machines() {
    let holder = |run: &str, command: &str, host: &str| orchestrator::engine::Holder {
        run: run.into(),
        command: command.into(),
        user: "ops".into(),
        host: host.into(),
        pid: 7,
        since: "2026-11-30T10:00:00Z".into(),
        reason: None,
    };
    let mine = super::runs::RunInProgress {
        id: "r1".into(),
        command: "rolling /srv/plan.toml".into(),
        plan: None,
        step: None,
        started: None,
        claims: vec!["node2".into()],
    };
    let runs = super::runs::with_claims(
        vec![mine],
        &[
            (
                "node2".into(),
                holder("r1", "rolling --plan /srv/plan.toml", "a"),
            ),
            (
                "node3".into(),
                holder("r1", "rolling --plan /srv/plan.toml", "a"),
            ),
            ("node1".into(), holder("r9", "drain node1", "ci-runner-4")),
        ],
    );
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0].claims, ["node2", "node3"]);
    assert_eq!(runs[1].id, "r9");
    assert_eq!(runs[1].command, "drain node1 (ops@ci-runner-4)");
    assert_eq!(runs[1].claims, ["node1"]);
    assert!(runs[1].started.is_some());
}

#[test]
fn a_failed_read_is_shown_and_the_rows_stay() {
    let mut m = Model::new(Sort::Node, Duration::from_millis(100));
    m.update(&report(AdminState::Ready, 0), Instant::now());
    m.error = Some("edge: unavailable: connection refused".into());
    let (lines, _) = screen(&m, Instant::now(), OffsetDateTime::now_utc());
    assert_eq!(
        lines[11],
        "last read failed: edge: unavailable: connection refused"
    );
    assert_eq!(words(&lines[3])[0], "node1");
}
