//! The engine: the balancers, the journal and the lock, and
//! [`Transaction`], the one place that writes to a balancer under the
//! journal (intent, concurrent apply, done, rollback). Fleet operations,
//! `recover`, `rebalance` and rolling upgrades all change balancers
//! through it; nothing else calls `set_state` or `set_weight`.

pub mod journal;
mod records;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lb_core::{Balancer, Member};

use crate::error::{Error, Result};
use journal::{Journal, LockGuard};

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
        }
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
    pub fn begin(&self, command: &str) -> Result<Transaction<'_>> {
        Transaction::begin(self, command)
    }
}
