//! The journal and the lock: a JSON-lines file in the state directory with
//! one record before each change and one after it, fsync'd, and an
//! advisory file lock held while state is being changed.
//!
//! A run writes `start`, then for each change an `intent` (from, to) before
//! it and a `done` after it, and `end` once what it leaves behind is what
//! it meant to leave. A run with no `end` was interrupted: `lbctl recover`
//! puts back every member it touched to the state (or weight) it had
//! before the run's first change to it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::compact::{Compacted, Retention};
use super::file::{FileBackend, lock_file};
pub use super::host::process_lives;
pub(crate) use super::host::{hostname, process_alive};
use crate::error::Result;

pub use super::backend::{Coordination, LockGuard, Read};

pub use super::records::*;

/// The journal of runs, with the claims and the critical section that go
/// with it, in a coordination backend; and the local state directory
/// (hook logs, per-machine locks).
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    backend: Arc<dyn Coordination>,
}

/// The default state directory, `/var/lib/lbctl`: one per machine, so
/// that every user's lbctl on it shares the journal, the lock and the
/// claims. lbctl creates it (as root) group-writable with the set-group-id
/// bit, and its files group-writable: operators of one group share it
/// (`install -d -m 2775 -g GROUP /var/lib/lbctl` once). `--state-dir` or
/// `LBCTL_STATE_DIR` choose another.
pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/lbctl")
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Journal {
    /// The file backend in state directory `dir` (created).
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State) naming the path.
    pub fn open(dir: &Path) -> Result<Journal> {
        Journal::open_with(dir, Retention::default())
    }

    /// The file backend in state directory `dir` (created), keeping
    /// finished runs as `retention` says.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State) naming the path.
    pub fn open_with(dir: &Path, retention: Retention) -> Result<Journal> {
        Ok(Journal {
            dir: dir.to_owned(),
            backend: Arc::new(FileBackend::open(dir)?.with_retention(retention)),
        })
    }

    /// `backend`, with `dir` as the local state directory.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State) when `dir` cannot be created.
    pub fn with_backend(dir: &Path, backend: Arc<dyn Coordination>) -> Result<Journal> {
        super::shared::shared_dir(dir)?;
        Ok(Journal {
            dir: dir.to_owned(),
            backend,
        })
    }

    /// The local state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Coordination {
        &*self.backend
    }

    /// Where the journal is, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Appends one record; with `sync`, makes it (and every record before
    /// it) durable before returning.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn append(&self, run: &str, event: Event, sync: bool) -> Result<()> {
        let rec = Record {
            ts: now_rfc3339(),
            run: run.into(),
            event,
        };
        self.backend.append(&[rec], sync).await
    }

    /// Every record of the live journal, in order; what cannot be read is
    /// skipped ([`read`](Self::read) counts it).
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn records(&self) -> Result<Vec<Record>> {
        Ok(self.read().await?.records)
    }

    /// Every record of the live journal (every run not finished, and the
    /// finished ones not archived yet), in order, and how many could not
    /// be read (a torn line, bytes that are not UTF-8, JSON that is not a
    /// record): each is skipped alone, and what follows it is read.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn read(&self) -> Result<Read> {
        self.backend.read().await
    }

    /// Every record kept, archived runs included, in order, and how many
    /// could not be read: what `history` lists. [`read`](Self::read) has
    /// the live journal only: every run not finished, and the recent ones.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn read_all(&self) -> Result<Read> {
        self.backend.read_all().await
    }

    /// Removes finished runs past the retention from the live journal now,
    /// under the critical section (waiting up to `timeout` for it).
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn compact(&self, timeout: Duration) -> Result<Option<Compacted>> {
        let _lock = self.backend.lock(timeout).await?;
        self.backend.compact().await
    }

    /// Enters the critical section, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State) saying who holds it, when the wait runs out.
    pub async fn lock(&self, timeout: Duration) -> Result<LockGuard> {
        self.backend.lock(timeout).await
    }

    /// Takes the advisory lock on the file `name` of the local state
    /// directory (`who` says in messages what holds it), waiting up to
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State) saying who holds it, when the wait runs out.
    pub async fn lock_file(&self, name: &str, who: &str, timeout: Duration) -> Result<LockGuard> {
        lock_file(&self.dir, name, who, timeout).await
    }
}

/// A run in the journal: its id and the next intent number.
#[derive(Debug)]
pub struct Run<'a> {
    journal: &'a Journal,
    id: String,
    seq: AtomicU64,
}

impl<'a> Run<'a> {
    /// Starts a run, writing its `start` record.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn start(journal: &'a Journal, command: &str) -> Result<Run<'a>> {
        Run::start_as(journal, &new_run_id(), command, None).await
    }

    /// Starts run `id` (from [`new_run_id`]) of `command`, with the
    /// operator's `reason`.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn start_as(
        journal: &'a Journal,
        id: &str,
        command: &str,
        reason: Option<&str>,
    ) -> Result<Run<'a>> {
        let me = Identity::here();
        journal
            .append(
                id,
                Event::Start {
                    pid: me.pid,
                    host: me.host,
                    user: me.user,
                    command: command.into(),
                    reason: reason.map(str::to_owned),
                },
                false,
            )
            .await?;
        Ok(Run {
            journal,
            id: id.to_owned(),
            seq: AtomicU64::new(1),
        })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records an intent; returns its number for [`done`](Self::done).
    /// Call [`sync`](Self::sync) before making the change.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn intent(
        &self,
        node: Option<&str>,
        balancer: &str,
        m: &lb_core::MemberRef,
        change: Setting,
    ) -> Result<u64> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.journal
            .append(
                &self.id,
                Event::Intent {
                    seq,
                    node: node.map(str::to_owned),
                    balancer: balancer.into(),
                    pool: m.pool.clone(),
                    member: m.member.clone(),
                    change,
                },
                false,
            )
            .await?;
        Ok(seq)
    }

    /// Records the outcome of intent `seq`.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn done(
        &self,
        seq: u64,
        outcome: &std::result::Result<lb_core::Change, lb_core::Error>,
    ) -> Result<()> {
        let (result, error) = match outcome {
            Ok(lb_core::Change::Applied) => (Outcome::Applied, None),
            Ok(lb_core::Change::AlreadyInState) => (Outcome::Unchanged, None),
            Err(e) => (Outcome::Failed, Some(e.to_string())),
        };
        self.journal
            .append(&self.id, Event::Done { seq, result, error }, false)
            .await
    }

    /// Ends the run.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn end(&self, status: EndStatus) -> Result<()> {
        self.journal
            .append(
                &self.id,
                Event::End {
                    status,
                    recovered: None,
                },
                true,
            )
            .await
    }

    /// Ends run `other` for good: `recover` put back what it left.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn recovered(&self, other: &str) -> Result<()> {
        self.journal
            .append(
                &self.id,
                Event::End {
                    status: EndStatus::Recovered,
                    recovered: Some(other.to_owned()),
                },
                true,
            )
            .await
    }

    /// Syncs every record written so far to disk: the intents of a batch
    /// are durable before any of their changes is made. (`done` records
    /// are not synced one by one: a lost `done` only makes `recover` put a
    /// member back to a state it may already have.)
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn sync(&self) -> Result<()> {
        self.journal.backend.sync().await
    }

    /// Before a change: checks that this run's claims are still its own
    /// (fencing), and syncs every record written so far.
    ///
    /// # Errors
    ///
    /// [`Error::State`](crate::Error::State).
    pub async fn sync_fenced(&self) -> Result<()> {
        self.journal.backend.sync_fenced().await
    }
}

/// A fresh run id: milliseconds since the epoch, the pid, a counter.
pub fn new_run_id() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Who runs this process, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (`$USER`, `$LOGNAME`, else `uid N`).
    pub user: String,
    /// The machine.
    pub host: String,
    /// The process.
    pub pid: u32,
}

impl Identity {
    /// This process's (read once: a command asks for it several times).
    pub fn here() -> Identity {
        static HERE: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        HERE.get_or_init(|| Identity {
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| format!("uid {}", uid())),
            host: hostname(),
            pid: std::process::id(),
        })
        .clone()
    }
}

/// This process's user id: the owner of `/proc/self`.
fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// A change an interrupted run left, to be put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The interrupted run.
    pub run: String,
    /// The command it was running.
    pub command: String,
    /// The node it served, if any.
    pub node: Option<String>,
    /// The balancer.
    pub balancer: String,
    /// The member.
    pub member: lb_core::MemberRef,
    /// The value to put back.
    pub restore: Value,
}

/// The runs with no `end` whose process is gone, and what each left: for
/// every member it touched, the value before its first change. Runs whose
/// process still lives on this machine are skipped (they are not
/// interrupted, only busy) and returned separately.
pub fn leftovers(records: &[Record]) -> (Vec<Leftover>, Vec<String>) {
    /// A member's setting: balancer, pool, member, what.
    type Key = (String, String, String, What);
    struct RunInfo {
        command: String,
        alive: bool,
        ended: bool,
        first: BTreeMap<Key, (Option<String>, Value)>,
        order: Vec<Key>,
    }
    let me = hostname();
    let mut runs: BTreeMap<&str, RunInfo> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in records {
        match &r.event {
            Event::Start {
                pid, host, command, ..
            } => {
                let alive = *host == me && process_alive(*pid);
                order.push(&r.run);
                runs.insert(
                    &r.run,
                    RunInfo {
                        command: command.clone(),
                        alive,
                        ended: false,
                        first: BTreeMap::new(),
                        order: Vec::new(),
                    },
                );
            }
            Event::Intent {
                node,
                balancer,
                pool,
                member,
                change,
                ..
            } => {
                if let Some(run) = runs.get_mut(r.run.as_str()) {
                    let key = (
                        balancer.clone(),
                        pool.clone(),
                        member.clone(),
                        change.what(),
                    );
                    if !run.first.contains_key(&key) {
                        run.order.push(key.clone());
                        run.first.insert(key, (node.clone(), change.from()));
                    }
                }
            }
            Event::End { recovered, .. } => {
                if let Some(run) = runs.get_mut(r.run.as_str()) {
                    run.ended = true;
                }
                if let Some(other) = recovered
                    && let Some(run) = runs.get_mut(other.as_str())
                {
                    run.ended = true;
                }
            }
            Event::Done { .. }
            | Event::Rolling { .. }
            | Event::Step { .. }
            | Event::Hook { .. } => {}
        }
    }
    let mut out = Vec::new();
    let mut busy = Vec::new();
    for id in order {
        let run = &runs[id];
        if run.ended || run.first.is_empty() {
            continue;
        }
        if run.alive {
            busy.push(format!("{id} ({})", run.command));
            continue;
        }
        for key in &run.order {
            let (node, from) = &run.first[key];
            out.push(Leftover {
                run: id.to_string(),
                command: run.command.clone(),
                node: node.clone(),
                balancer: key.0.clone(),
                member: lb_core::MemberRef::new(&key.1, &key.2),
                restore: *from,
            });
        }
    }
    (out, busy)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use lb_core::{AdminState, Change, MemberRef};

    #[tokio::test]
    async fn interrupted_runs_are_leftovers_and_finished_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let m = MemberRef::new("app", "node2");

        let done = Run::start(&j, "drain node1").await.unwrap();
        let s = done
            .intent(
                Some("node1"),
                "edge",
                &MemberRef::new("app", "node1"),
                Setting::State {
                    from: AdminState::Ready,
                    to: AdminState::Drain,
                },
            )
            .await
            .unwrap();
        done.done(s, &Ok(Change::Applied)).await.unwrap();
        done.end(EndStatus::Ok).await.unwrap();

        let cut = Run::start(&j, "drain node2").await.unwrap();
        for (from, to) in [
            (AdminState::Ready, AdminState::Drain),
            (AdminState::Drain, AdminState::Maint),
        ] {
            let s = cut
                .intent(Some("node2"), "edge", &m, Setting::State { from, to })
                .await
                .unwrap();
            cut.done(s, &Ok(Change::Applied)).await.unwrap();
        }
        // No end: interrupted. But this process is alive, so it is "busy"
        // unless its pid is ours: Run::start records our own pid, which
        // leftovers() treats as not alive (it is the recovering process).
        let (left, busy) = leftovers(&j.records().await.unwrap());
        assert!(busy.is_empty());
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(
            (&left[0].member, left[0].restore),
            (&m, Value::State(AdminState::Ready))
        );

        let rec = Run::start(&j, "recover").await.unwrap();
        rec.recovered(cut.id()).await.unwrap();
        let (left, _) = leftovers(&j.records().await.unwrap());
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_the_lock_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        Run::start(&j, "x").await.unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap()
            .write_all(b"{\"ts\":")
            .unwrap();
        assert_eq!(j.records().await.unwrap().len(), 1);

        let held = j.lock(Duration::from_millis(10)).await.unwrap();
        let j2 = Journal::open(dir.path()).unwrap();
        let e = j2.lock(Duration::from_millis(50)).await.unwrap_err();
        assert!(e.to_string().contains("holds the lock"), "{e}");
        drop(held);
        j2.lock(Duration::from_millis(50)).await.unwrap();
    }

    /// Lines as lbctl has always written them: a journal left by an
    /// earlier release must still be read, typed, and recovered.
    const EARLIER: &str = r#"{"ts":"2026-11-01T10:00:00Z","run":"1-2-0","event":"start","pid":4000000001,"host":"elsewhere","user":"ops","command":"rebalance"}
{"ts":"2026-11-01T10:00:00Z","run":"1-2-0","event":"intent","seq":1,"node":"","balancer":"edge","pool":"app","member":"web1","what":"weight","from":"100","to":"40"}
{"ts":"2026-11-01T10:00:00Z","run":"1-2-0","event":"done","seq":1,"result":"applied"}
{"ts":"2026-11-01T10:00:01Z","run":"1-2-0","event":"intent","seq":2,"node":"web2","balancer":"edge","pool":"app","member":"web2","what":"state","from":"ready","to":"maint"}
{"ts":"2026-11-01T10:00:01Z","run":"1-2-0","event":"done","seq":2,"result":"failed","error":"edge: refused"}
{"ts":"2026-11-01T10:00:02Z","run":"3-4-0","event":"start","pid":4000000002,"host":"elsewhere","user":"ops","command":"rolling --plan /p.toml"}
{"ts":"2026-11-01T10:00:02Z","run":"3-4-0","event":"rolling","plan":"/p.toml"}
{"ts":"2026-11-01T10:00:02Z","run":"3-4-0","event":"step","group":"app","node":"web1","step":"drain","status":"ok"}
{"ts":"2026-11-01T10:00:02Z","run":"3-4-0","event":"step","group":"","node":"","step":"finally","status":"failed","detail":"exit 1"}
{"ts":"2026-11-01T10:00:03Z","run":"3-4-0","event":"end","status":"failed"}
"#;

    #[test]
    fn an_earlier_releases_journal_reads_back_typed_and_writes_back_the_same() {
        let records: Vec<Record> = EARLIER
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(records.len(), 10);
        match &records[1].event {
            Event::Intent { node, change, .. } => {
                assert_eq!(node, &None);
                assert_eq!(*change, Setting::Weight { from: 100, to: 40 });
            }
            e => panic!("{e:?}"),
        }
        match &records[8].event {
            Event::Step {
                group,
                node,
                step,
                status,
                ..
            } => assert_eq!(
                (group, node, *step, *status),
                (&None, &None, Step::Finally, StepStatus::Failed)
            ),
            e => panic!("{e:?}"),
        }
        // Written back byte for byte (the timestamp is the record's own).
        for (line, r) in EARLIER.lines().zip(&records) {
            assert_eq!(serde_json::to_string(r).unwrap(), line);
        }
        let (left, busy) = leftovers(&records);
        assert!(busy.is_empty());
        let got: Vec<_> = left
            .iter()
            .map(|l| (l.member.member.as_str(), l.node.as_deref(), l.restore))
            .collect();
        assert_eq!(
            got,
            [
                ("web1", None, Value::Weight(100)),
                ("web2", Some("web2"), Value::State(AdminState::Ready))
            ]
        );
    }

    #[test]
    fn a_weight_that_is_not_a_number_is_an_unreadable_line() {
        let line = EARLIER.lines().nth(1).unwrap().replace("\"100\"", "\"x\"");
        let e = serde_json::from_str::<Record>(&line).unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
