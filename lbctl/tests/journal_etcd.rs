//! The etcd journal stays bounded too: finished runs past the retention
//! are deleted from a real etcd (Debian's `etcd-server`), and what
//! `recover` reads is the runs not finished and the recent ones only,
//! while `history` still lists every run the retention keeps.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use lb_core::{AdminState, Balancer, InMemoryBalancer, MemberRef};
use lb_lab::Etcd;
use orchestrator::engine::{Coordination, EtcdBackend};
use orchestrator::inventory::CoordinationConfig;
use orchestrator::journal::Record;
use orchestrator::{DrainOptions, Fleet, HistoryFilter, Inventory, Node, Settings};

fn ts(days_ago: u64) -> String {
    (time::OffsetDateTime::now_utc() - Duration::from_secs(days_ago * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A drain of `node` (finished unless `open`), `days_ago`, by a process of
/// another machine, as lbctl journals it.
fn run(out: &mut Vec<Record>, id: &str, node: &str, days_ago: u64, open: bool) {
    let t = ts(days_ago);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"{{"ts":"{t}","run":"{id}","event":"start","pid":4000000001,"host":"elsewhere","user":"ops","command":"drain {node}"}}"#
    );
    let _ = writeln!(
        s,
        r#"{{"ts":"{t}","run":"{id}","event":"intent","seq":1,"node":"{node}","balancer":"mem","pool":"app","member":"{node}","what":"state","from":"ready","to":"maint"}}"#
    );
    let _ = writeln!(
        s,
        r#"{{"ts":"{t}","run":"{id}","event":"done","seq":1,"result":"applied"}}"#
    );
    if !open {
        let _ = writeln!(
            s,
            r#"{{"ts":"{t}","run":"{id}","event":"end","status":"ok"}}"#
        );
    }
    out.extend(
        s.lines()
            .map(|l| serde_json::from_str::<Record>(l).unwrap()),
    );
}

fn backend(etcd: &Etcd) -> Arc<EtcdBackend> {
    let inv = Inventory::parse(&format!(
        "[coordination]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"/lbctl/j\"\n\
         lease_ttl = \"2s\"\n",
        etcd.endpoint()
    ))
    .unwrap();
    let CoordinationConfig::Etcd(cfg) = inv.coordination else {
        panic!("{:?}", inv.coordination)
    };
    Arc::new(EtcdBackend::new(*cfg).unwrap())
}

fn runs_in(records: &[Record]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for r in records {
        if !ids.contains(&r.run) {
            ids.push(r.run.clone());
        }
    }
    ids
}

#[test]
fn finished_runs_past_the_retention_leave_etcd_and_recover_reads_the_open_ones() {
    let etcd = Etcd::start();
    let state = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = backend(&etcd);
        // 1100 runs of 60 days ago: past the default retention (30 days).
        let mut runs: Vec<Vec<Record>> = Vec::new();
        for i in 0..1100 {
            let mut recs = Vec::new();
            run(&mut recs, &format!("old-{i}"), "node3", 60, false);
            runs.push(recs);
        }
        // And 600 of yesterday: more records than etcd answers in one page.
        for i in 0..600 {
            let mut recs = Vec::new();
            run(&mut recs, &format!("recent-{i}"), "node3", 1, false);
            runs.push(recs);
        }
        // One request a record, as lbctl writes them; 16 writers, each
        // run's records in order.
        let mut writers = Vec::new();
        for w in 0..16 {
            let mine: Vec<Record> = runs.iter().skip(w).step_by(16).flatten().cloned().collect();
            let b = b.clone();
            writers.push(tokio::spawn(async move {
                for r in mine {
                    b.append(&[r], true).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let mut recs = Vec::new();
        run(&mut recs, "open-1", "node2", 45, true);
        for r in recs {
            b.append(&[r], true).await.unwrap();
        }

        let mem = Arc::new(
            InMemoryBalancer::new("mem")
                .with_member("app", "node1", "10.0.0.1:8080")
                .with_member("app", "node2", "10.0.0.2:8080")
                .with_member("app", "node3", "10.0.0.3:8080"),
        );
        let mut fb = Fleet::builder()
            .settings(Settings {
                poll_interval: Duration::from_millis(10),
                ..Settings::default()
            })
            .state_dir(state.path())
            .coordination(b.clone())
            .balancer("memory", mem.clone() as Arc<dyn Balancer>);
        for i in 1..=3 {
            fb = fb.node(Node::new(&format!("node{i}"), &format!("10.0.0.{i}:8080")));
        }
        let f = fb.build().unwrap();
        // A command that changes something takes the lock.
        f.drain(&["node1".to_string()], &DrainOptions::default())
            .await
            .unwrap();

        // What recover reads: no finished run from before that command.
        let live = runs_in(&b.read().await.unwrap().records);
        assert!(
            !live
                .iter()
                .any(|r| r.starts_with("old-") || r.starts_with("recent-")),
            "{} runs read, {:?}…",
            live.len(),
            &live[..live.len().min(5)]
        );
        assert!(live.contains(&"open-1".to_string()), "{live:?}");

        // The open run is still put back.
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

        // History lists what the retention keeps; the old runs' keys are
        // gone.
        let h = f
            .history(&HistoryFilter {
                node: None,
                since: Some(Duration::from_secs(90 * 86_400)),
            })
            .await
            .unwrap();
        let ids: Vec<&str> = h.runs.iter().map(|r| r.run.as_str()).collect();
        assert_eq!(ids.len(), 600 + 1 + 2, "{ids:?}");
        assert!(
            ids[..600].iter().all(|i| i.starts_with("recent-")),
            "{ids:?}"
        );
        assert_eq!(ids[600], "open-1");
        f.close().await;
    });
}
