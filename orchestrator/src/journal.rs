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
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When (RFC 3339, UTC).
    pub ts: String,
    /// The run it belongs to.
    pub run: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a journal record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began.
    Start {
        /// The process.
        pid: u32,
        /// The machine.
        host: String,
        /// Who ran it.
        user: String,
        /// The command, e.g. `drain node2`.
        command: String,
    },
    /// A change is about to be made.
    Intent {
        /// Its number within the run.
        seq: u64,
        /// The node it serves (empty when none).
        node: String,
        /// The balancer's inventory name.
        balancer: String,
        /// The pool.
        pool: String,
        /// The member.
        member: String,
        /// `state` or `weight`.
        what: String,
        /// The value before (`ready`/`drain`/`maint`, or a weight).
        from: String,
        /// The value asked for.
        to: String,
    },
    /// A change was made, or failed.
    Done {
        /// The intent's number.
        seq: u64,
        /// `applied`, `unchanged` or `failed`.
        result: String,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The run ended, leaving what it meant to leave.
    End {
        /// `ok`, `timeout`, `guard`, `rolled_back`, `failed` or `recovered`.
        status: String,
        /// For `recovered`: the run that was put back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<String>,
    },
    /// A rolling upgrade: the plan it runs, and the run it resumes.
    Rolling {
        /// The plan (its canonical path).
        plan: String,
        /// The earlier run of the same plan this one continues.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumes: Option<String>,
    },
    /// One step of a rolling upgrade began or ended.
    Step {
        /// The group (empty for the plan's own steps).
        group: String,
        /// The node (empty for group and plan steps).
        node: String,
        /// `drain`, `before`, `upgrade`, `first_node`, `after`, `gate`,
        /// `undrain`, `after_group`, `rebalance`, `finally`, `zdu_start`,
        /// `zdu_approve`, `zdu_cancel`.
        step: String,
        /// `started`, `ok`, `failed` or `interrupted`.
        status: String,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// The state directory: `journal.jsonl` and `lock`.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: Mutex<File>,
}

/// The default state directory: `$LBCTL_STATE_DIR`, else
/// `$XDG_STATE_HOME/lbctl`, else `~/.local/state/lbctl`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LBCTL_STATE_DIR").filter(|d| !d.is_empty()) {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("lbctl");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".local/state/lbctl")
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Journal {
    /// Opens (creating) the journal in `dir`.
    ///
    /// # Errors
    ///
    /// [`Error::State`] naming the path.
    pub fn open(dir: &Path) -> Result<Journal> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::State(format!("cannot create state dir {}: {e}", dir.display())))?;
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::State(format!("cannot open journal {}: {e}", path.display())))?;
        Ok(Journal {
            dir: dir.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// Appends one record; with `sync`, syncs it (and every record before
    /// it) to disk before returning.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub fn append(&self, run: &str, event: Event, sync: bool) -> Result<()> {
        let rec = Record {
            ts: now_rfc3339(),
            run: run.into(),
            event,
        };
        let mut line = serde_json::to_string(&rec).expect("records serialize");
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| {
                Error::State(format!(
                    "cannot write journal {}: {e}",
                    self.path().display()
                ))
            })
    }

    /// Every record, in order. Lines that do not parse (a torn last line
    /// after a crash) are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub fn records(&self) -> Result<Vec<Record>> {
        let f = File::open(self.path()).map_err(|e| {
            Error::State(format!(
                "cannot read journal {}: {e}",
                self.path().display()
            ))
        })?;
        Ok(BufReader::new(f)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }

    /// Takes the advisory lock, waiting up to `timeout` for another lbctl
    /// to release it.
    ///
    /// # Errors
    ///
    /// [`Error::State`] saying who holds it, when the wait runs out.
    pub async fn lock(&self, timeout: Duration) -> Result<LockGuard> {
        self.lock_file("lock", "another lbctl", timeout).await
    }

    /// Takes the advisory lock on the file `name` of the state directory
    /// (`who` says in messages what holds it), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::State`] saying who holds it, when the wait runs out.
    pub async fn lock_file(&self, name: &str, who: &str, timeout: Duration) -> Result<LockGuard> {
        let path = self.dir.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::State(format!("cannot open lock {}: {e}", path.display())))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match f.try_lock() {
                Ok(()) => {
                    let mut f = f;
                    let _ = f.set_len(0);
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(LockGuard { _file: f });
                }
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::State(format!("cannot lock {}: {e}", path.display())));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::State(format!(
                    "{who} (pid {}) holds the lock {} and did not release it within {}; \
                     try again later or raise --lock-timeout",
                    holder.trim(),
                    path.display(),
                    crate::duration::format_duration(timeout)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
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
    /// [`Error::State`].
    pub fn start(journal: &'a Journal, command: &str) -> Result<Run<'a>> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}-{}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        journal.append(
            &id,
            Event::Start {
                pid: std::process::id(),
                host: hostname(),
                user: std::env::var("USER")
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_else(|_| format!("uid {}", nix_uid())),
                command: command.into(),
            },
            false,
        )?;
        Ok(Run {
            journal,
            id,
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
    /// [`Error::State`].
    #[allow(clippy::too_many_arguments)]
    pub fn intent(
        &self,
        node: &str,
        balancer: &str,
        m: &lb_core::MemberRef,
        what: &str,
        from: &str,
        to: &str,
    ) -> Result<u64> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.journal.append(
            &self.id,
            Event::Intent {
                seq,
                node: node.into(),
                balancer: balancer.into(),
                pool: m.pool.clone(),
                member: m.member.clone(),
                what: what.into(),
                from: from.into(),
                to: to.into(),
            },
            false,
        )?;
        Ok(seq)
    }

    /// Records the outcome of intent `seq`.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub fn done(
        &self,
        seq: u64,
        outcome: &std::result::Result<lb_core::Change, lb_core::Error>,
    ) -> Result<()> {
        let (result, error) = match outcome {
            Ok(lb_core::Change::Applied) => ("applied", None),
            Ok(lb_core::Change::AlreadyInState) => ("unchanged", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        self.journal.append(
            &self.id,
            Event::Done {
                seq,
                result: result.into(),
                error,
            },
            false,
        )
    }

    /// Ends the run.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub fn end(&self, status: &str, recovered: Option<&str>) -> Result<()> {
        self.journal.append(
            &self.id,
            Event::End {
                status: status.into(),
                recovered: recovered.map(str::to_owned),
            },
            true,
        )
    }

    /// Syncs every record written so far to disk: the intents of a batch
    /// are durable before any of their changes is made. (`done` records
    /// are not synced one by one: a lost `done` only makes `recover` put a
    /// member back to a state it may already have.)
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub fn sync(&self) -> Result<()> {
        let f = self.journal.file.lock().unwrap_or_else(|p| p.into_inner());
        f.sync_data().map_err(|e| {
            Error::State(format!(
                "cannot sync journal {}: {e}",
                self.journal.path().display()
            ))
        })
    }
}

/// Whether `pid` (another process than this one) runs on this machine.
pub(crate) fn process_alive(pid: u32) -> bool {
    pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn nix_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A change an interrupted run left, to be put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// The interrupted run.
    pub run: String,
    /// The command it was running.
    pub command: String,
    /// The node it served.
    pub node: String,
    /// The balancer.
    pub balancer: String,
    /// The pool.
    pub pool: String,
    /// The member.
    pub member: String,
    /// `state` or `weight`.
    pub what: String,
    /// The value to put back.
    pub restore: String,
}

/// The runs with no `end` whose process is gone, and what each left: for
/// every member it touched, the value before its first change. Runs whose
/// process still lives on this machine are skipped (they are not
/// interrupted, only busy) and returned separately.
pub fn leftovers(records: &[Record]) -> (Vec<Leftover>, Vec<String>) {
    struct RunInfo {
        command: String,
        alive: bool,
        ended: bool,
        first: BTreeMap<(String, String, String, String), (String, String)>,
        order: Vec<(String, String, String, String)>,
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
                what,
                from,
                ..
            } => {
                if let Some(run) = runs.get_mut(r.run.as_str()) {
                    let key = (balancer.clone(), pool.clone(), member.clone(), what.clone());
                    if !run.first.contains_key(&key) {
                        run.order.push(key.clone());
                        run.first.insert(key, (node.clone(), from.clone()));
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
            Event::Done { .. } | Event::Rolling { .. } | Event::Step { .. } => {}
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
                pool: key.1.clone(),
                member: key.2.clone(),
                what: key.3.clone(),
                restore: from.clone(),
            });
        }
    }
    (out, busy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::{Change, MemberRef};

    #[tokio::test]
    async fn interrupted_runs_are_leftovers_and_finished_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let m = MemberRef::new("app", "node2");

        let done = Run::start(&j, "drain node1").unwrap();
        let s = done
            .intent(
                "node1",
                "edge",
                &MemberRef::new("app", "node1"),
                "state",
                "ready",
                "drain",
            )
            .unwrap();
        done.done(s, &Ok(Change::Applied)).unwrap();
        done.end("ok", None).unwrap();

        let cut = Run::start(&j, "drain node2").unwrap();
        let s = cut
            .intent("node2", "edge", &m, "state", "ready", "drain")
            .unwrap();
        cut.done(s, &Ok(Change::Applied)).unwrap();
        let s = cut
            .intent("node2", "edge", &m, "state", "drain", "maint")
            .unwrap();
        cut.done(s, &Ok(Change::Applied)).unwrap();
        // No end: interrupted. But this process is alive, so it is "busy"
        // unless its pid is ours: Run::start records our own pid, which
        // leftovers() treats as not alive (it is the recovering process).
        let (left, busy) = leftovers(&j.records().unwrap());
        assert!(busy.is_empty());
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(
            (left[0].member.as_str(), left[0].restore.as_str()),
            ("node2", "ready")
        );

        let rec = Run::start(&j, "recover").unwrap();
        rec.end("recovered", Some(cut.id())).unwrap();
        let (left, _) = leftovers(&j.records().unwrap());
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_the_lock_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        Run::start(&j, "x").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap()
            .write_all(b"{\"ts\":")
            .unwrap();
        assert_eq!(j.records().unwrap().len(), 1);

        let held = j.lock(Duration::from_millis(10)).await.unwrap();
        let j2 = Journal::open(dir.path()).unwrap();
        let e = j2.lock(Duration::from_millis(50)).await.unwrap_err();
        assert!(e.to_string().contains("holds the lock"), "{e}");
        drop(held);
        j2.lock(Duration::from_millis(50)).await.unwrap();
    }
}
