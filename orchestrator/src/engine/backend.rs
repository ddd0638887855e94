//! The coordination backend: where runs are journaled, claims held and
//! the guard's critical section taken. One trait, two implementations:
//! files in the state directory ([`super::file`], the default, shared by
//! the lbctl processes of one machine) and etcd ([`super::etcd`], shared
//! by every machine that names the same endpoints and prefix).

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::compact::Compacted;
use super::records::Record;
use crate::error::Result;

/// What reading the journal found.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Every record that could be read, in order.
    pub records: Vec<Record>,
    /// Records (lines, keys) that could not be read, and were skipped.
    pub skipped: usize,
}

impl Read {
    /// Adds the record `bytes` hold; bytes that are not one (not UTF-8,
    /// JSON that is not a record) are skipped and counted, with a warning
    /// naming `place` (the line, the key).
    pub(crate) fn add(&mut self, bytes: &[u8], place: impl FnOnce() -> String) {
        match std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str::<Record>(l).map_err(|e| e.to_string()))
        {
            Ok(r) => self.records.push(r),
            Err(e) => {
                tracing::warn!("{}: skipped, unreadable: {e}", place());
                self.skipped += 1;
            }
        }
    }
}

/// Who holds a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run (its journal id).
    pub run: String,
    /// The command, e.g. `drain node2`.
    pub command: String,
    /// The user.
    pub user: String,
    /// The machine.
    pub host: String,
    /// The process.
    pub pid: u32,
    /// Since when (RFC 3339).
    pub since: String,
    /// Why (`--reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} (`{}`) of {}@{} pid {} since {}",
            self.run, self.command, self.user, self.host, self.pid, self.since
        )?;
        if let Some(r) = &self.reason {
            write!(f, ", reason: {r:?}")?;
        }
        Ok(())
    }
}

/// Something a backend keeps alive while it is held: a locked file, a key
/// bound to a lease.
pub type Token = Arc<dyn Any + Send + Sync>;

/// Claims held by this process; released when dropped.
#[derive(Default)]
pub struct ClaimSet {
    pub(crate) held: Vec<Token>,
    pub(crate) keys: Vec<String>,
}

impl fmt::Debug for ClaimSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimSet")
            .field("keys", &self.keys)
            .finish()
    }
}

/// Holds the guard's critical section until dropped.
pub struct LockGuard {
    pub(crate) _token: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// A claim another run holds: its key and holder.
pub type Claimed = (String, Holder);

/// Where runs are journaled and claims held.
#[async_trait]
pub trait Coordination: Send + Sync + fmt::Debug {
    /// Where, for messages: `state directory /var/lib/lbctl`, `etcd
    /// http://127.0.0.1:2379 prefix /lbctl`.
    fn describe(&self) -> String;

    /// Appends records, in order; with `sync`, durable before it returns.
    async fn append(&self, records: &[Record], sync: bool) -> Result<()>;

    /// Makes every record appended so far durable.
    async fn sync(&self) -> Result<()>;

    /// The live journal's records, in order, and how many could not be
    /// read: every run not finished, and the finished runs the backend
    /// has not archived yet (what `recover`, `--resume` and `watch` need).
    async fn read(&self) -> Result<Read>;

    /// Every record kept, archived ones included, in order (what
    /// `history` lists). By default the live journal.
    async fn read_all(&self) -> Result<Read> {
        self.read().await
    }

    /// Removes finished runs past the retention from the live journal
    /// now (call it under [`lock`](Self::lock)); `None` where there was
    /// nothing to do. The file backend also does it by itself when a lock
    /// finds the live journal large.
    async fn compact(&self) -> Result<Option<Compacted>> {
        Ok(None)
    }

    /// Enters the critical section in which claims are taken and listed
    /// and the guard decides, waiting up to `timeout`.
    async fn lock(&self, timeout: Duration) -> Result<LockGuard>;

    /// Tries once (under [`lock`](Self::lock)) to claim every key: all of
    /// them, or none and the first key another run holds, with its holder.
    async fn try_claim(
        &self,
        keys: &[String],
        holder: &Holder,
    ) -> Result<std::result::Result<ClaimSet, (String, Option<Holder>)>>;

    /// Enters the critical section (waiting up to `timeout` for it) and
    /// tries once to claim every key there: the lock, still held, and the
    /// claims; or none and the first key another run holds, with the lock
    /// given back. A backend may do both in one step (etcd: one
    /// transaction).
    async fn lock_and_claim(
        &self,
        keys: &[String],
        holder: &Holder,
        timeout: Duration,
    ) -> Result<std::result::Result<(LockGuard, ClaimSet), (String, Option<Holder>)>> {
        let lock = self.lock(timeout).await?;
        Ok(self.try_claim(keys, holder).await?.map(|set| (lock, set)))
    }

    /// The claims other processes hold now (under [`lock`](Self::lock)).
    async fn others(&self) -> Result<Vec<Claimed>>;

    /// The claims other processes hold now, for a reader outside the
    /// critical section (`watch`), listed so that looking never makes
    /// another's claim fail (the file backend under the bare lock, waiting
    /// up to `timeout`; etcd by a plain read) and changing nothing.
    async fn peek(&self, timeout: Duration) -> Result<Vec<Claimed>>;

    /// Fencing, before a write to a balancer: the claims this process
    /// holds are still its own (for etcd: its lease lives and each claim
    /// key is the lease's).
    async fn check(&self) -> Result<()>;

    /// Before a write to a balancer: [`check`](Self::check), then
    /// [`sync`](Self::sync) (the intents durable). A backend may do both
    /// in one step (etcd: the intents written in a transaction that
    /// compares the claims).
    async fn sync_fenced(&self) -> Result<()> {
        self.check().await?;
        self.sync().await
    }

    /// Gives back what this process holds (for etcd: revokes its lease, so
    /// its lock and claims go at once rather than when the lease expires).
    async fn close(&self) {}
}
