//! [`Transaction`]: intent → concurrent apply → done, and rollback.

use std::sync::{Mutex, MutexGuard};

use futures::future::join_all;
use lb_core::{Change, MemberRef};

use super::Engine;
use super::journal::{EndStatus, Run, Setting, Value, What};
use crate::error::{Error, Result};

/// One write: set `to` on `member` of balancer number `bal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The node it serves, if any (journaled, for `recover`'s report).
    pub node: Option<String>,
    /// The balancer's position in [`Engine::balancers`].
    pub bal: usize,
    /// The member.
    pub member: MemberRef,
    /// Its value as last read (the transaction knows better for members
    /// it changed itself).
    pub from: Value,
    /// The value to set.
    pub to: Value,
}

/// A member setting the transaction changed: what it was before the
/// transaction's first change to it, and what it is now.
#[derive(Debug, Clone)]
struct Changed {
    node: Option<String>,
    bal: usize,
    member: MemberRef,
    what: What,
    original: Value,
    current: Value,
}

/// A group of journaled changes made by one command: every write is
/// recorded (synced) before it is made and marked done after; a failed
/// all-or-nothing step puts back everything the transaction changed,
/// each put-back journaled the same way; the run ends with a status.
#[derive(Debug)]
pub struct Transaction<'e> {
    engine: &'e Engine,
    run: Option<Run<'e>>,
    /// Never held across an await.
    changed: Mutex<Vec<Changed>>,
}

impl<'e> Transaction<'e> {
    pub(super) async fn begin(
        engine: &'e Engine,
        id: &str,
        command: &str,
    ) -> Result<Transaction<'e>> {
        let run = match engine.journal() {
            Some(j) => Some(Run::start_as(j, id, command, engine.reason()).await?),
            None => None,
        };
        Ok(Transaction {
            engine,
            run,
            changed: Mutex::new(Vec::new()),
        })
    }

    /// The journal's run id, when journaled.
    pub fn id(&self) -> Option<&str> {
        self.run.as_ref().map(Run::id)
    }

    /// The journal's run, when journaled (to add records of its own).
    pub fn run(&self) -> Option<&Run<'e>> {
        self.run.as_ref()
    }

    fn ledger(&self) -> MutexGuard<'_, Vec<Changed>> {
        self.changed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the transaction changed `member` of balancer `bal`.
    pub fn changed(&self, bal: usize, member: &MemberRef) -> bool {
        self.ledger()
            .iter()
            .any(|c| c.bal == bal && &c.member == member)
    }

    /// Journals every write's intent (synced to disk), makes them all at
    /// once, and journals each outcome. Returns each write's outcome, in
    /// order; no rollback.
    ///
    /// # Errors
    ///
    /// [`Error::State`] when the journal cannot be written (before any
    /// change is made, when it is an intent).
    pub async fn apply(&self, writes: &[Write]) -> Result<Vec<lb_core::Result<Change>>> {
        let mut seqs = Vec::new();
        let mut changes = Vec::new();
        for w in writes {
            let from = slot(&self.ledger(), w).map_or(w.from, |c| c.current);
            let change = Setting::new(from, w.to);
            changes.push(change);
            if let Some(run) = &self.run {
                let b = &self.engine.balancers()[w.bal];
                seqs.push(Some(
                    run.intent(w.node.as_deref(), &b.name, &w.member, change)
                        .await?,
                ));
            } else {
                seqs.push(None);
            }
        }
        // Fencing: nothing is written unless this run's claims are still
        // its own; and not before its intents are durable. (No run: no
        // journal, so no claims either.)
        if let Some(run) = &self.run {
            run.sync_fenced().await?;
        }
        let results = join_all(writes.iter().map(|w| self.set(w.bal, &w.member, w.to))).await;
        if let Some(run) = &self.run {
            for (seq, res) in seqs.iter().zip(&results) {
                if let Some(seq) = seq {
                    run.done(*seq, res).await?;
                }
            }
        }
        for ((w, change), res) in writes.iter().zip(changes).zip(&results) {
            if let Ok(Change::Applied) = res {
                let caps = self.engine.balancers()[w.bal].lb.capabilities();
                let now = match w.to {
                    Value::State(s) => Value::State(caps.reads_back_as(s)),
                    v => v,
                };
                let mut ledger = self.ledger();
                match ledger.iter_mut().find(|c| same(c, w)) {
                    Some(c) => c.current = now,
                    None => ledger.push(Changed {
                        node: w.node.clone(),
                        bal: w.bal,
                        member: w.member.clone(),
                        what: w.to.what(),
                        original: change.from(),
                        current: now,
                    }),
                }
            }
        }
        Ok(results)
    }

    async fn set(&self, bal: usize, r: &MemberRef, to: Value) -> lb_core::Result<Change> {
        let b = &self.engine.balancers()[bal];
        match to {
            Value::State(s) => {
                let res = b.lb.set_state(r, s).await;
                tracing::info!(balancer = %b.name, member = %r, state = %s, ok = res.is_ok(), "set_state");
                res
            }
            Value::Weight(w) => {
                let res = b.lb.set_weight(r, w).await;
                tracing::info!(balancer = %b.name, member = %r, weight = w, ok = res.is_ok(), "set_weight");
                res
            }
        }
    }

    /// [`apply`](Self::apply), all or nothing: when any write fails,
    /// everything this transaction changed (earlier steps included) is put
    /// back and the run ends.
    ///
    /// # Errors
    ///
    /// [`Error::Balancer`] when nothing had changed; [`Error::RolledBack`]
    /// (exit 5) saying what was put back, or what could not be (then the
    /// run stays open for `recover`); [`Error::State`] for the journal.
    pub async fn apply_or_roll_back(&self, writes: &[Write]) -> Result<()> {
        let results = self.apply(writes).await?;
        let mut failures: Vec<lb_core::Error> =
            results.into_iter().filter_map(|r| r.err()).collect();
        if failures.is_empty() {
            return Ok(());
        }
        let first = failures.remove(0);
        if self.ledger().is_empty() {
            self.end(EndStatus::Failed).await?;
            return Err(Error::Balancer(first));
        }
        let (rolled_back, complete) = self.roll_back().await;
        if complete {
            self.end(EndStatus::RolledBack).await?;
        }
        let to = writes.first().map(|w| w.to.to_string()).unwrap_or_default();
        let mut message = format!("setting {to} failed: {first}");
        for e in failures {
            message.push_str(&format!("; {e}"));
        }
        Err(Error::RolledBack {
            message,
            rolled_back,
        })
    }

    /// Puts back everything the transaction changed, in the order it was
    /// changed, each put-back journaled (intent, done). Returns what was
    /// said about each, and whether all went back.
    async fn roll_back(&self) -> (String, bool) {
        let mut said = Vec::new();
        let mut complete = true;
        let changed = std::mem::take(&mut *self.ledger());
        for c in changed {
            let b = &self.engine.balancers()[c.bal];
            let res = self.put_back(&c).await;
            match res {
                Ok(_) => said.push(format!("{} {} back to {}", b.name, c.member, c.original)),
                Err(e) => {
                    complete = false;
                    said.push(format!(
                        "{} {} NOT put back to {} ({e}); run `lbctl recover`",
                        b.name, c.member, c.original
                    ));
                }
            }
        }
        if said.is_empty() {
            said.push("nothing had changed".into());
        }
        (said.join("; "), complete)
    }

    async fn put_back(&self, c: &Changed) -> lb_core::Result<Change> {
        let b = &self.engine.balancers()[c.bal];
        let journal_err = |e: Error| lb_core::Error::unavailable(&b.name, e.to_string());
        let seq = match &self.run {
            Some(run) => {
                let seq = run
                    .intent(
                        c.node.as_deref(),
                        &b.name,
                        &c.member,
                        Setting::new(c.current, c.original),
                    )
                    .await
                    .map_err(journal_err)?;
                run.sync().await.map_err(journal_err)?;
                Some(seq)
            }
            None => None,
        };
        let res = self.set(c.bal, &c.member, c.original).await;
        if let (Some(run), Some(seq)) = (&self.run, seq) {
            run.done(seq, &res).await.map_err(journal_err)?;
        }
        res
    }

    /// Ends the run with `status`.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn end(&self, status: EndStatus) -> Result<()> {
        match &self.run {
            Some(run) => run.end(status).await,
            None => Ok(()),
        }
    }

    /// Marks run `other` as put back by this one (`recover`).
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn recovered(&self, other: &str) -> Result<()> {
        match &self.run {
            Some(run) => run.recovered(other).await,
            None => Ok(()),
        }
    }
}

fn same(c: &Changed, w: &Write) -> bool {
    c.bal == w.bal && c.member == w.member && c.what == w.to.what()
}

fn slot<'a>(ledger: &'a [Changed], w: &Write) -> Option<&'a Changed> {
    ledger.iter().find(|c| same(c, w))
}
