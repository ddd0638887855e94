//! The etcd backend: the journal, the critical section and claims in etcd,
//! shared by every lbctl, on every machine, that names the same endpoints
//! and prefix.
//!
//! Under the prefix `P`:
//! - `P/journal/…`: one key per record, read back in the order etcd
//!   created them (create revision), so `recover` and `history` see every
//!   machine's runs;
//! - `P/lock`: the critical section, a key created only when absent;
//! - `P/claims/KEY`: one key per claim, holding its holder.
//!
//! The lock and the claims are bound to this process's lease, granted
//! with the first of them (a command that only reads takes none) and kept
//! alive while it runs: a crashed lbctl's claims expire after `lease_ttl`.
//! Before every write to a balancer the claims are checked (fencing): the
//! lease is alive and each claim key is still this lease's, in one
//! round trip.
//!
//! Records appended without `sync` (a change's `done`, a run's `start`)
//! wait in memory and go with the next record that is synced (the intents
//! before a change, a run's end), one transaction for all: a run that
//! drains a node writes the journal twice. A record lost with a crash in
//! between is one the file backend would not have synced either.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::OnceCell;

use super::backend::{ClaimSet, Claimed, Coordination, Holder, LockGuard, Read, Token};
use super::compact::{Compacted, Retention};
pub use super::etcd_config::EtcdConfig;
use super::etcd_journal;
use super::etcd_lease::Lease;
use super::records::Record;
use crate::error::{Error, Result};

const DEFAULT_TTL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A key this process holds (a claim, the lock): deleted when dropped
/// (and, should that not happen, when the lease expires).
struct HeldKey {
    key: String,
    client: Client,
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        let (key, mut client) = (self.key.clone(), self.client.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client.delete(key, None).await;
            });
        }
    }
}

/// Journal, lock and claims in etcd.
pub struct EtcdBackend {
    cfg: EtcdConfig,
    password: Option<String>,
    conn: OnceCell<Client>,
    lease: OnceCell<Lease>,
    mine: Mutex<BTreeMap<String, Weak<HeldKey>>>,
    seq: AtomicU64,
    /// Records appended without `sync`, written with the next record that
    /// is (or at [`sync`](Coordination::sync), or [`close`](Coordination::close)).
    pending: tokio::sync::Mutex<Vec<Record>>,
    /// The claims the last [`lock_and_claim`](Coordination::lock_and_claim)
    /// read in its transaction, for the next `others` under that lock.
    seen: Mutex<Option<Vec<Claimed>>>,
    retention: Retention,
}

impl fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// Checks `cfg` and reads the password; connects at first use.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key at fault.
    pub fn new(cfg: EtcdConfig) -> Result<EtcdBackend> {
        let password = cfg.checked()?;
        Ok(EtcdBackend {
            retention: Retention::from_keys(cfg.retention, cfg.keep_runs),
            cfg,
            password,
            conn: OnceCell::new(),
            lease: OnceCell::new(),
            mine: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
            pending: tokio::sync::Mutex::new(Vec::new()),
            seen: Mutex::new(None),
        })
    }

    fn endpoints(&self) -> String {
        self.cfg.endpoints.join(",")
    }

    fn timeout(&self) -> Duration {
        self.cfg.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.cfg.prefix)
    }

    /// An error talking to etcd, naming it.
    fn unreachable(&self, what: &str, e: impl fmt::Display) -> Error {
        Error::State(format!(
            "etcd at {}: {what}: {e}; lbctl changed nothing more (what it took out of \
             rotation stays out: run `lbctl recover` once etcd answers)",
            self.endpoints()
        ))
    }

    /// Runs one request with the configured bound.
    async fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        self.call_within(self.timeout(), what, f).await
    }

    /// [`call`](Self::call) with the bound `limit`, for work of many
    /// requests.
    async fn call_within<T>(
        &self,
        limit: Duration,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unreachable(what, e)),
            Err(_) => Err(self.unreachable(
                what,
                format!(
                    "no answer within {}",
                    lb_core::duration::format_duration(limit)
                ),
            )),
        }
    }

    async fn conn(&self) -> Result<&Client> {
        self.conn.get_or_try_init(|| self.connect()).await
    }

    /// This process's lease, granted (and kept alive) on first use.
    async fn lease(&self) -> Result<&Lease> {
        self.lease.get_or_try_init(|| self.grant()).await
    }

    async fn grant(&self) -> Result<Lease> {
        let mut client = self.conn().await?.clone();
        let ttl = self.cfg.lease_ttl.unwrap_or(DEFAULT_TTL).as_secs().max(1) as i64;
        let id = self
            .call("cannot grant a lease", client.lease_grant(ttl, None))
            .await?
            .id();
        Ok(Lease::keep_alive(client, id, ttl))
    }

    async fn connect(&self) -> Result<Client> {
        let opts = self
            .cfg
            .connect_options(self.password.as_deref(), self.timeout())?;
        self.call(
            "cannot connect",
            Client::connect(self.cfg.endpoints.clone(), Some(opts)),
        )
        .await
    }

    fn held_by_me(&self, key: &str) -> Option<Arc<HeldKey>> {
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        mine.get(key).and_then(Weak::upgrade)
    }

    /// Creates `key` with `value` bound to the lease when it is absent;
    /// returns the value that is there otherwise.
    async fn create(&self, key: &str, value: &str) -> Result<std::result::Result<(), String>> {
        Ok(self.create_and(key, value, Vec::new()).await?.map(drop))
    }

    /// [`create`](Self::create), with `also` in the same transaction when
    /// `key` is created (its answer is returned).
    async fn create_and(
        &self,
        key: &str,
        value: &str,
        also: Vec<TxnOp>,
    ) -> Result<std::result::Result<etcd_client::TxnResponse, String>> {
        let lease = self.lease().await?.id;
        let mut ops = vec![TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )];
        ops.extend(also);
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(ops)
            .or_else([TxnOp::get(key, None)]);
        let mut client = self.conn().await?.clone();
        let r = self.call("cannot write", client.txn(txn)).await?;
        if r.succeeded() {
            return Ok(Ok(r));
        }
        let there = r
            .op_responses()
            .into_iter()
            .find_map(|o| match o {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .and_then(|kv| kv.value_str().ok().map(str::to_owned)),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Err(there))
    }

    /// Under the lock, whose creation `r` answered (with `P/index`, its
    /// answer number `at`): sorts the journal's runs once
    /// [`etcd_journal::COMPACT_EVERY`] revisions went by since the last
    /// time. A failure is only logged: the journal is as it was, or
    /// complete, and the command goes on.
    async fn compact_when_due(&self, r: &etcd_client::TxnResponse, at: usize) {
        let now = r.header().map_or(0, |h| h.revision());
        let index = match r.op_responses().into_iter().nth(at) {
            Some(TxnOpResponse::Get(g)) => etcd_journal::index_of(g.kvs()),
            _ => 0,
        };
        if now - index > etcd_journal::COMPACT_EVERY {
            match self.compact().await {
                Ok(c) => tracing::debug!("etcd journal compacted: {c:?}"),
                Err(e) => tracing::warn!("etcd journal not compacted: {e}"),
            }
        }
    }

    /// The claims among `kvs` (keys under `P/claims/`) that are not bound
    /// to `mine`, this process's lease, by key.
    fn claims_of(&self, kvs: &[etcd_client::KeyValue], mine: Option<i64>) -> Vec<Claimed> {
        let prefix = self.claim_key("");
        let mut out: Vec<Claimed> = kvs
            .iter()
            .filter(|kv| Some(kv.lease()) != mine)
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key().get(prefix.len()..)?).into_owned();
                Some((key, serde_json::from_slice::<Holder>(kv.value()).ok()?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The lock `key` stayed held by `holder` for all of `timeout`.
    fn lock_held(&self, holder: &str, key: &str, timeout: Duration) -> Error {
        Error::State(format!(
            "another lbctl ({holder}) holds the lock {key} in etcd at {} and did not release \
             it within {}; try again later or raise --lock-timeout",
            self.endpoints(),
            lb_core::duration::format_duration(timeout)
        ))
    }

    fn claim_key(&self, key: &str) -> String {
        self.key(&format!("claims/{key}"))
    }

    /// Writes the pending records, in order, a transaction per
    /// [`MAX_TXN_OPS`] of them.
    async fn flush(&self, pending: &mut Vec<Record>) -> Result<()> {
        self.flush_when(pending, Vec::new()).await.map(drop)
    }

    /// [`flush`](Self::flush), the first transaction only if `when` holds;
    /// false (and nothing written) when it does not.
    async fn flush_when(&self, pending: &mut Vec<Record>, when: Vec<Compare>) -> Result<bool> {
        if pending.is_empty() {
            return Ok(true);
        }
        let client = self.conn().await?;
        let mut when = Some(when);
        for chunk in pending.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|r| {
                    let n = self.seq.fetch_add(1, Ordering::SeqCst);
                    let key = self.key(&format!("journal/{}/{n:08}", r.run));
                    TxnOp::put(
                        key,
                        serde_json::to_string(r).expect("records serialize"),
                        None,
                    )
                })
                .collect();
            let mut client = client.clone();
            let txn = Txn::new().when(when.take().unwrap_or_default());
            // A write etcd acknowledged is on a quorum's disk: durable.
            let r = self
                .call("cannot write the journal", client.txn(txn.and_then(ops)))
                .await?;
            if !r.succeeded() {
                return Ok(false);
            }
        }
        pending.clear();
        Ok(true)
    }

    /// The fencing compares: each claim this process holds still bound to
    /// its lease; none when it holds none.
    ///
    /// # Errors
    ///
    /// When the lease is known lost.
    fn fence(&self) -> Result<Option<(Vec<String>, Vec<Compare>)>> {
        let Some(lease) = self.lease.get() else {
            return Ok(None);
        };
        if let Some(why) = lease.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(self.unreachable("this run's lease is lost", why));
        }
        let keys: Vec<String> = {
            let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
            mine.iter()
                .filter(|(_, w)| w.strong_count() > 0)
                .map(|(k, _)| k.clone())
                .collect()
        };
        if keys.is_empty() {
            return Ok(None);
        }
        let when = keys
            .iter()
            .map(|k| Compare::lease(self.claim_key(k), CompareOp::Equal, lease.id))
            .collect();
        Ok(Some((keys, when)))
    }

    fn fenced_out(&self, keys: &[String]) -> Error {
        self.unreachable(
            "fencing",
            format!(
                "the claim on {} is no longer this run's (its lease expired)",
                keys.join(", ")
            ),
        )
    }
}

/// The records of journal keys, in the order given; what cannot be read
/// is skipped and counted.
fn parse(kvs: &[etcd_client::KeyValue]) -> Read {
    let mut out = Read::default();
    for kv in kvs {
        out.add(kv.value(), || {
            format!("etcd journal key {}", String::from_utf8_lossy(kv.key()))
        });
    }
    out
}

/// The most operations etcd takes in one transaction (its default
/// `--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;

#[async_trait]
impl Coordination for EtcdBackend {
    fn describe(&self) -> String {
        format!("etcd {} prefix {}", self.endpoints(), self.cfg.prefix)
    }

    async fn append(&self, records: &[Record], sync: bool) -> Result<()> {
        let mut pending = self.pending.lock().await;
        pending.extend_from_slice(records);
        if sync {
            self.flush(&mut pending).await
        } else {
            Ok(())
        }
    }

    async fn sync(&self) -> Result<()> {
        let mut pending = self.pending.lock().await;
        self.flush(&mut pending).await
    }

    async fn read(&self) -> Result<Read> {
        // What this process appended is read back too.
        self.sync().await?;
        let mut client = self.conn().await?.clone();
        let live = self
            .call(
                "cannot read the journal",
                etcd_journal::read_live(&mut client, &self.cfg.prefix),
            )
            .await?;
        Ok(parse(&live.kvs))
    }

    async fn read_all(&self) -> Result<Read> {
        self.sync().await?;
        let mut client = self.conn().await?.clone();
        let (kvs, _) = self
            .call_within(
                self.timeout() * 12,
                "cannot read the journal",
                etcd_journal::get_paged(&mut client, &self.key("journal/"), 0),
            )
            .await?;
        Ok(parse(&kvs))
    }

    async fn compact(&self) -> Result<Option<Compacted>> {
        let mut client = self.conn().await?.clone();
        // A journal never compacted (an earlier release's) may be large.
        let done = self
            .call_within(
                self.timeout() * 12,
                "cannot compact the journal",
                etcd_journal::compact(
                    &mut client,
                    &self.cfg.prefix,
                    &self.retention,
                    super::host::process_lives,
                ),
            )
            .await?;
        Ok(Some(done))
    }

    async fn lock(&self, timeout: Duration) -> Result<LockGuard> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let key = self.key("lock");
        let me = super::journal::Identity::here();
        let value = format!("{}@{} pid {}", me.user, me.host, me.pid);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let index = etcd_journal::get_index(&self.cfg.prefix);
            match self.create_and(&key, &value, vec![index]).await? {
                Ok(r) => {
                    let client = self.conn().await?.clone();
                    let guard = LockGuard {
                        _token: Box::new(HeldKey { key, client }),
                    };
                    self.compact_when_due(&r, 1).await;
                    return Ok(guard);
                }
                Err(holder) if tokio::time::Instant::now() >= deadline => {
                    return Err(self.lock_held(&holder, &key, timeout));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn lock_and_claim(
        &self,
        keys: &[String],
        holder: &Holder,
        timeout: Duration,
    ) -> Result<std::result::Result<(LockGuard, ClaimSet), (String, Option<Holder>)>> {
        // One transaction: the lock and every claim this process does not
        // hold yet are created together, or nothing is.
        let fresh: Vec<&String> = keys
            .iter()
            .filter(|k| self.held_by_me(k).is_none())
            .collect();
        if fresh.len() + 1 > MAX_TXN_OPS {
            let lock = self.lock(timeout).await?;
            return Ok(self.try_claim(keys, holder).await?.map(|set| (lock, set)));
        }
        let lock_key = self.key("lock");
        let me = super::journal::Identity::here();
        let lock_value = format!("{}@{} pid {}", me.user, me.host, me.pid);
        let value = serde_json::to_string(holder).expect("holders serialize");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let lease = self.lease().await?.id;
            let client = self.conn().await?;
            let with_lease = || Some(PutOptions::new().with_lease(lease));
            let mut when = vec![Compare::create_revision(
                lock_key.clone(),
                CompareOp::Equal,
                0,
            )];
            let mut then = vec![TxnOp::put(
                lock_key.clone(),
                lock_value.clone(),
                with_lease(),
            )];
            let mut otherwise = vec![TxnOp::get(lock_key.clone(), None)];
            for k in &fresh {
                let ck = self.claim_key(k);
                when.push(Compare::create_revision(ck.clone(), CompareOp::Equal, 0));
                then.push(TxnOp::put(ck.clone(), value.clone(), with_lease()));
                otherwise.push(TxnOp::get(ck, None));
            }
            // The journal's index (sorted up to where), and the claims as
            // they stand once these are taken: what `others` asks next,
            // under this lock.
            let index_at = then.len();
            then.push(etcd_journal::get_index(&self.cfg.prefix));
            then.push(TxnOp::get(
                self.claim_key(""),
                Some(GetOptions::new().with_prefix()),
            ));
            let mut client = client.clone();
            let r = self
                .call(
                    "cannot write",
                    client.txn(Txn::new().when(when).and_then(then).or_else(otherwise)),
                )
                .await?;
            if r.succeeded() {
                let seen = match r.op_responses().into_iter().nth(index_at + 1) {
                    Some(TxnOpResponse::Get(g)) => Some(self.claims_of(g.kvs(), Some(lease))),
                    _ => None,
                };
                let lock = LockGuard {
                    _token: Box::new(HeldKey {
                        key: lock_key,
                        client: client.clone(),
                    }),
                };
                let mut set = ClaimSet::default();
                {
                    let mut mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
                    mine.retain(|_, w| w.strong_count() > 0);
                    for key in keys {
                        set.keys.push(key.clone());
                        let held = match mine.get(key).and_then(Weak::upgrade) {
                            Some(h) => h,
                            None => {
                                let h = Arc::new(HeldKey {
                                    key: self.claim_key(key),
                                    client: client.clone(),
                                });
                                mine.insert(key.clone(), Arc::downgrade(&h));
                                h
                            }
                        };
                        set.held.push(held as Token);
                    }
                }
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
                self.compact_when_due(&r, index_at).await;
                return Ok(Ok((lock, set)));
            }
            // What was there: the lock (first), then each claim.
            let found: Vec<Option<String>> = r
                .op_responses()
                .into_iter()
                .map(|o| match o {
                    TxnOpResponse::Get(g) => g
                        .kvs()
                        .first()
                        .map(|kv| kv.value_str().unwrap_or_default().to_owned()),
                    _ => None,
                })
                .collect();
            if let Some((k, there)) = fresh
                .iter()
                .zip(found.iter().skip(1))
                .find_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            {
                return Ok(Err(((*k).clone(), serde_json::from_str(there).ok())));
            }
            if tokio::time::Instant::now() >= deadline {
                let holder = found.first().cloned().flatten().unwrap_or_default();
                return Err(self.lock_held(&holder, &lock_key, timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_claim(
        &self,
        keys: &[String],
        holder: &Holder,
    ) -> Result<std::result::Result<ClaimSet, (String, Option<Holder>)>> {
        let value = serde_json::to_string(holder).expect("holders serialize");
        let mut set = ClaimSet::default();
        let mut fresh = Vec::new();
        for key in keys {
            set.keys.push(key.clone());
            if let Some(h) = self.held_by_me(key) {
                set.held.push(h as Token);
                continue;
            }
            let k = self.claim_key(key);
            match self.create(&k, &value).await? {
                Ok(()) => {
                    let held = Arc::new(HeldKey {
                        key: k,
                        client: self.conn().await?.clone(),
                    });
                    fresh.push((key.clone(), Arc::downgrade(&held)));
                    set.held.push(held as Token);
                }
                // Dropping `set` gives back what this try took.
                Err(there) => return Ok(Err((key.clone(), serde_json::from_str(&there).ok()))),
            }
        }
        let mut mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        mine.retain(|_, w| w.strong_count() > 0);
        mine.extend(fresh);
        Ok(Ok(set))
    }

    async fn others(&self) -> Result<Vec<Claimed>> {
        if let Some(seen) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Ok(seen);
        }
        self.peek(Duration::ZERO).await
    }

    async fn peek(&self, _timeout: Duration) -> Result<Vec<Claimed>> {
        // A read (never the claims a lock-and-claim read for the guard):
        // no claim waits for it.
        let mine = self.lease.get().map(|l| l.id);
        let mut client = self.conn().await?.clone();
        let r = self
            .call(
                "cannot read claims",
                client.get(self.claim_key(""), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        Ok(self.claims_of(r.kvs(), mine))
    }

    async fn check(&self) -> Result<()> {
        let Some((keys, when)) = self.fence()? else {
            return Ok(());
        };
        let mut client = self.conn().await?.clone();
        let r = self
            .call("cannot check the claims", client.txn(Txn::new().when(when)))
            .await?;
        if r.succeeded() {
            Ok(())
        } else {
            Err(self.fenced_out(&keys))
        }
    }

    async fn sync_fenced(&self) -> Result<()> {
        let mut pending = self.pending.lock().await;
        match self.fence()? {
            // The intents written only while the claims are this run's:
            // one round trip for both.
            Some((keys, when)) if !pending.is_empty() => {
                if self.flush_when(&mut pending, when).await? {
                    Ok(())
                } else {
                    Err(self.fenced_out(&keys))
                }
            }
            _ => {
                drop(pending);
                self.check().await?;
                self.sync().await
            }
        }
    }

    async fn close(&self) {
        if let Err(e) = self.sync().await {
            tracing::warn!("{e}");
        }
        if let (Some(client), Some(lease)) = (self.conn.get(), self.lease.get()) {
            let mut client = client.clone();
            let _ = tokio::time::timeout(self.timeout(), client.lease_revoke(lease.id)).await;
        }
    }
}
