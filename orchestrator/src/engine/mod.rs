//! The engine: the balancers, the journal and the lock, and
//! [`Transaction`], the one place that writes to a balancer under the
//! journal (intent, concurrent apply, done, rollback). Fleet operations,
//! `recover`, `rebalance` and rolling upgrades all change balancers
//! through it; nothing else calls `set_state` or `set_weight`.

mod backend;
mod claims;
pub mod compact;
mod etcd;
mod etcd_config;
mod etcd_journal;
mod etcd_lease;
mod file;
mod host;
pub mod journal;
mod records;
mod shared;
pub mod stale;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lb_core::{Balancer, Member};

use crate::error::{Error, Result};
use journal::{Identity, Journal, LockGuard, new_run_id, now_rfc3339};

pub use backend::{ClaimSet, Claimed, Coordination, Holder, Read};
pub use etcd::{EtcdBackend, EtcdConfig};
pub use file::FileBackend;
pub use txn::{Transaction, Write};

/// One balancer of the fleet: its inventory name, its kind and its driver.
#[derive(Debug, Clone)]
pub struct FleetBalancer {
    /// The inventory name.
    pub name: String,
    /// The kind, as the inventory writes it.
    pub kind: String,
    /// The driver.
    pub lb: Arc<dyn Balancer>,
}

/// How long a claim is waited for between two tries.
const CLAIM_RETRY: Duration = Duration::from_millis(50);

/// Every balancer's members as read at one moment, in the order of
/// [`Engine::balancers`].
pub type Snapshot = Vec<Vec<Member>>;

/// The balancers, with the journal and the lock that keep their changes
/// recoverable.
#[derive(Debug)]
pub struct Engine {
    balancers: Vec<FleetBalancer>,
    journal: Option<Journal>,
    lock_timeout: Duration,
    reason: Option<String>,
}

impl Engine {
    /// An engine over `balancers`, journaling to `journal` when there is
    /// one, waiting up to `lock_timeout` for another lbctl's lock.
    pub fn new(
        balancers: Vec<FleetBalancer>,
        journal: Option<Journal>,
        lock_timeout: Duration,
    ) -> Engine {
        Engine {
            balancers,
            journal,
            lock_timeout,
            reason: None,
        }
    }

    /// Records `reason` (the operator's `--reason`) with every run and
    /// claim.
    pub fn with_reason(mut self, reason: Option<String>) -> Engine {
        self.reason = reason.filter(|r| !r.trim().is_empty());
        self
    }

    /// The operator's reason, if given.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The balancers.
    pub fn balancers(&self) -> &[FleetBalancer] {
        &self.balancers
    }

    /// The journal, when there is one.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// The position of the balancer named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.balancers.iter().position(|b| b.name == name)
    }

    /// Reads every balancer, concurrently.
    ///
    /// # Errors
    ///
    /// [`Error::Balancer`] for the first balancer that cannot be read.
    pub async fn read_all(&self) -> Result<Snapshot> {
        let reads = join_all(self.balancers.iter().map(|b| b.lb.members())).await;
        reads
            .into_iter()
            .map(|r| r.map_err(Error::Balancer))
            .collect()
    }

    /// Takes the state directory's lock (none without a journal), waiting
    /// up to the lock timeout.
    ///
    /// # Errors
    ///
    /// [`Error::State`] saying who holds it.
    pub async fn lock(&self) -> Result<Option<LockGuard>> {
        match &self.journal {
            Some(j) => Ok(Some(j.lock(self.lock_timeout).await?)),
            None => Ok(None),
        }
    }

    /// Begins a transaction for `command` (journaled as a run when there
    /// is a journal).
    ///
    /// # Errors
    ///
    /// [`Error::State`] when the journal cannot be written.
    pub async fn begin(&self, command: &str) -> Result<Transaction<'_>> {
        Transaction::begin(self, &new_run_id(), command).await
    }

    /// Begins the transaction of run `id` (the id its claims were taken
    /// for).
    ///
    /// # Errors
    ///
    /// [`Error::State`] when the journal cannot be written.
    pub async fn begin_as(&self, id: &str, command: &str) -> Result<Transaction<'_>> {
        Transaction::begin(self, id, command).await
    }

    /// Claims `keys` (node names, or `member:BALANCER/POOL/MEMBER`) for run
    /// `run` of `command`, for as long as the returned set lives. Keys this
    /// process holds already are shared. Another run's claim is waited for
    /// up to the lock timeout (0: not at all). Without a state directory
    /// there is nobody to share claims with, and nothing is claimed.
    ///
    /// # Errors
    ///
    /// [`Error::Claimed`] (exit 4) naming the key and its holder;
    /// [`Error::State`] when the state directory fails.
    pub async fn claim(&self, keys: &[String], run: &str, command: &str) -> Result<ClaimSet> {
        Ok(self.claim_locked(keys, run, command).await?.0)
    }

    /// [`claim`](Self::claim), and the lock, still held, under which the
    /// claims were taken: the guard decides under it without a second pass
    /// through the critical section (none without a journal).
    ///
    /// # Errors
    ///
    /// As [`claim`](Self::claim).
    pub async fn claim_locked(
        &self,
        keys: &[String],
        run: &str,
        command: &str,
    ) -> Result<(ClaimSet, Option<LockGuard>)> {
        let Some(journal) = &self.journal else {
            return Ok((ClaimSet::default(), None));
        };
        let me = Identity::here();
        let holder = Holder {
            run: run.to_owned(),
            command: command.to_owned(),
            user: me.user,
            host: me.host,
            pid: me.pid,
            since: now_rfc3339(),
            reason: self.reason.clone(),
        };
        let started = tokio::time::Instant::now();
        let deadline = started + self.lock_timeout;
        loop {
            let taken = journal
                .backend()
                .lock_and_claim(keys, &holder, self.lock_timeout)
                .await?;
            match taken {
                Ok((lock, set)) => return Ok((set, Some(lock))),
                Err((key, who)) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Claimed(format!(
                        "{key} is claimed by {}; waited {} (--lock-timeout) and changed nothing; \
                         try again once it is done, or raise --lock-timeout",
                        who.map_or("another lbctl".into(), |h| h.to_string()),
                        crate::duration::format_duration(self.lock_timeout),
                    )));
                }
                Err(_) => tokio::time::sleep(CLAIM_RETRY).await,
            }
        }
    }

    /// The claims other runs hold now: call it under [`lock`](Self::lock),
    /// so that none is taken or given up meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn others(&self) -> Result<Vec<Claimed>> {
        match &self.journal {
            Some(j) => j.backend().others().await,
            None => Ok(Vec::new()),
        }
    }

    /// The claims other runs hold now, for a reader outside the critical
    /// section (`watch`): listed so that looking never makes a claim fail.
    ///
    /// # Errors
    ///
    /// [`Error::State`], also when the lock cannot be had in time.
    pub async fn peek(&self) -> Result<Vec<Claimed>> {
        match &self.journal {
            Some(j) => j.backend().peek(self.lock_timeout).await,
            None => Ok(Vec::new()),
        }
    }

    /// Fencing before a write: the claims this process holds are still
    /// its own.
    ///
    /// # Errors
    ///
    /// [`Error::State`] when they are not (or the backend cannot say).
    pub async fn check(&self) -> Result<()> {
        match &self.journal {
            Some(j) => j.backend().check().await,
            None => Ok(()),
        }
    }

    /// Gives back what this process holds in the backend (lbctl calls it
    /// once a command is done).
    pub async fn close(&self) {
        if let Some(j) = &self.journal {
            j.backend().close().await;
        }
    }
}
