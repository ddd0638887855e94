//! The journal stays bounded: finished runs past the retention leave the
//! live journal (archived, or dropped once older than the retention),
//! what is not finished stays, and `recover` reads only the live journal.
//! Journals are written as lbctl writes them, on in-memory balancers.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lb_core::{AdminState, Balancer, InMemoryBalancer, MemberRef};
use orchestrator::HistoryFilter;
use orchestrator::{DrainOptions, Fleet, Node, Settings};

fn lb() -> Arc<InMemoryBalancer> {
    Arc::new(
        InMemoryBalancer::new("mem")
            .with_member("app", "node1", "10.0.0.1:8080")
            .with_member("app", "node2", "10.0.0.2:8080")
            .with_member("app", "node3", "10.0.0.3:8080"),
    )
}

fn fleet(mem: &Arc<InMemoryBalancer>, state: &Path) -> Fleet {
    let mut b = Fleet::builder()
        .settings(Settings {
            poll_interval: Duration::from_millis(10),
            drain_timeout: Duration::from_secs(5),
            undrain_timeout: Duration::from_secs(5),
            ..Settings::default()
        })
        .state_dir(state)
        .balancer("memory", mem.clone() as Arc<dyn Balancer>);
    for i in 1..=3 {
        b = b.node(Node::new(&format!("node{i}"), &format!("10.0.0.{i}:8080")));
    }
    b.build().unwrap()
}

fn ts(days_ago: u64) -> String {
    (time::OffsetDateTime::now_utc() - Duration::from_secs(days_ago * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A finished drain of node3 on `mem` (start, intent, done, end) by a
/// process of another machine, `days_ago`.
fn finished_run(out: &mut String, id: &str, days_ago: u64) {
    let t = ts(days_ago);
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000001,"host":"elsewhere","user":"ops","command":"drain node3"}}"#).unwrap();
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"intent","seq":1,"node":"node3","balancer":"mem","pool":"app","member":"node3","what":"state","from":"ready","to":"drain"}}"#).unwrap();
    writeln!(
        out,
        r#"{{"ts":"{t}","run":"{id}","event":"done","seq":1,"result":"applied"}}"#
    )
    .unwrap();
    writeln!(
        out,
        r#"{{"ts":"{t}","run":"{id}","event":"end","status":"ok"}}"#
    )
    .unwrap();
}

/// A drain of node2 killed after it set maint, `days_ago` (no `end`).
fn open_run(out: &mut String, id: &str, days_ago: u64) {
    let t = ts(days_ago);
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000002,"host":"elsewhere","user":"ops","command":"drain node2"}}"#).unwrap();
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"intent","seq":1,"node":"node2","balancer":"mem","pool":"app","member":"node2","what":"state","from":"ready","to":"maint"}}"#).unwrap();
    writeln!(
        out,
        r#"{{"ts":"{t}","run":"{id}","event":"done","seq":1,"result":"applied"}}"#
    )
    .unwrap();
}

/// A rolling run of `/p.toml` that paused after its first node,
/// `days_ago`: `--resume` continues it, so it is not finished.
fn paused_rolling(out: &mut String, id: &str, days_ago: u64) {
    let t = ts(days_ago);
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000003,"host":"elsewhere","user":"ops","command":"rolling --plan /p.toml"}}"#).unwrap();
    writeln!(
        out,
        r#"{{"ts":"{t}","run":"{id}","event":"rolling","plan":"/p.toml"}}"#
    )
    .unwrap();
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"step","group":"app","node":"node1","step":"node","status":"ok"}}"#).unwrap();
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"step","group":"app","node":"","step":"pause","status":"ok"}}"#).unwrap();
    writeln!(
        out,
        r#"{{"ts":"{t}","run":"{id}","event":"end","status":"interrupted"}}"#
    )
    .unwrap();
}

fn journal_text(state: &Path) -> String {
    std::fs::read_to_string(state.join("journal.jsonl")).unwrap()
}

#[tokio::test]
async fn finished_runs_past_the_retention_leave_the_journal_and_what_is_not_finished_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = String::new();
    // 3000 runs of 60 days ago: past the default retention (30 days).
    for i in 0..3000 {
        finished_run(&mut j, &format!("old-{i}"), 60);
    }
    open_run(&mut j, "open-1", 45);
    paused_rolling(&mut j, "paused-1", 40);
    for i in 0..10 {
        finished_run(&mut j, &format!("recent-{i}"), 1);
    }
    std::fs::write(dir.path().join("journal.jsonl"), &j).unwrap();
    let before = j.len();

    let mem = lb();
    let f = fleet(&mem, dir.path());
    // Any command that changes something takes the state directory's lock.
    f.drain(&["node1".to_string()], &DrainOptions::default())
        .await
        .unwrap();

    let live = journal_text(dir.path());
    assert!(
        live.len() < before / 10,
        "the live journal still holds {} of {before} bytes",
        live.len()
    );
    assert!(!live.contains("\"old-"), "a run past the retention is kept");
    for id in ["open-1", "paused-1"] {
        assert!(live.contains(id), "{id} left the live journal:\n{live}");
    }

    // The open run is still recovered.
    let r = f.recover(false).await.unwrap();
    let got: Vec<_> = r
        .recovered
        .iter()
        .map(|x| (x.run.as_str(), x.member.as_str()))
        .collect();
    assert_eq!(got, [("open-1", "node2")]);
    assert_eq!(
        mem.member(&MemberRef::new("app", "node2")).unwrap().admin,
        AdminState::Ready
    );

    // History lists what the retention keeps, oldest first, and nothing
    // older.
    let h = f
        .history(&HistoryFilter {
            node: None,
            since: Some(Duration::from_secs(90 * 86_400)),
        })
        .await
        .unwrap();
    let ids: Vec<&str> = h.runs.iter().map(|r| r.run.as_str()).collect();
    assert_eq!(ids.len(), 2 + 10 + 2, "{ids:?}");
    assert_eq!(&ids[..2], ["open-1", "paused-1"]);
    assert!(
        ids[2..12].iter().all(|i| i.starts_with("recent-")),
        "{ids:?}"
    );
}

#[tokio::test]
async fn recover_reads_only_the_live_journal_and_history_reads_the_archive_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = String::new();
    // 3000 finished runs of two days ago, within the retention, with a
    // line that cannot be read among them.
    for i in 0..3000 {
        finished_run(&mut j, &format!("past-{i}"), 2);
        if i == 1500 {
            j.push_str("{\"ts\":\"2026-11-01T10:00:00Z\",\"run\n");
        }
    }
    open_run(&mut j, "open-1", 1);
    std::fs::write(dir.path().join("journal.jsonl"), &j).unwrap();

    let mem = lb();
    let f = fleet(&mem, dir.path());
    f.drain(&["node1".to_string()], &DrainOptions::default())
        .await
        .unwrap();

    let r = f.recover(true).await.unwrap();
    assert_eq!(r.recovered.len(), 1, "{:?}", r.recovered);
    assert_eq!(r.recovered[0].run, "open-1");
    assert_eq!(
        r.skipped_lines, 0,
        "recover read the finished runs' lines too"
    );

    let h = f.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(h.skipped_lines, 1);
    // Every past run, the open one and the drain.
    assert_eq!(h.runs.len(), 3000 + 2);
    assert_eq!(h.runs[0].run, "past-0");
    assert_eq!(h.runs[2999].run, "past-2999");
    assert_eq!(h.runs[3000].run, "open-1");
    assert_eq!(h.runs[3001].command, "drain node1");
}

#[tokio::test]
async fn listing_claims_as_watch_does_leaves_a_large_journal_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = String::new();
    // Over 1 MiB, past the retention: the next command that changes
    // something compacts it; `watch`, which only reads, must not.
    for i in 0..3000 {
        finished_run(&mut j, &format!("old-{i}"), 60);
    }
    std::fs::write(dir.path().join("journal.jsonl"), &j).unwrap();
    let mem = lb();
    let f = fleet(&mem, dir.path());
    assert!(f.engine().peek().await.unwrap().is_empty());
    assert_eq!(
        journal_text(dir.path()),
        j,
        "listing claims changed the journal"
    );
    assert!(!dir.path().join("journal.archive").exists());
}
