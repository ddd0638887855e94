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
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use tokio::sync::OnceCell;

use super::backend::{ClaimSet, Claimed, Coordination, Holder, LockGuard, Read, Token};
pub use super::etcd_config::EtcdConfig;
use super::records::Record;
use crate::error::{Error, Result};

const DEFAULT_TTL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease this process's lock and claims are bound to, kept alive by a
/// task; granted on the first lock or claim (a command that only reads
/// takes none).
struct Lease {
    id: i64,
    /// Why the lease was lost, once it is.
    lost: Arc<Mutex<Option<String>>>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

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
        let bad = |m: String| Error::Config(format!("[coordination]: {m}"));
        if cfg.endpoints.is_empty() {
            return Err(bad("`endpoints` names no etcd endpoint".into()));
        }
        for e in &cfg.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(bad(format!(
                    "endpoint {e:?} is not an http:// or https:// URL"
                )));
            }
        }
        if !cfg.prefix.starts_with('/') || cfg.prefix.ends_with('/') || cfg.prefix.len() < 2 {
            return Err(bad(format!(
                "`prefix` {:?} must start with / and not end with one (e.g. /lbctl/prod)",
                cfg.prefix
            )));
        }
        if cfg.cert_file.is_some() != cfg.key_file.is_some() {
            return Err(bad("`cert_file` and `key_file` go together".into()));
        }
        let source = lb_http::SecretSource::one_of(
            "password",
            [
                cfg.password_env.clone().map(lb_http::SecretSource::Env),
                cfg.password_file.clone().map(lb_http::SecretSource::File),
            ],
        )
        .map_err(|e| bad(e.to_string()))?;
        let password = source
            .map(|s| s.read("password").map(|p| p.expose().to_owned()))
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        if password.is_some() && cfg.username.is_none() {
            return Err(bad("a password is given but no `username`".into()));
        }
        Ok(EtcdBackend {
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
        match tokio::time::timeout(self.timeout(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unreachable(what, e)),
            Err(_) => Err(self.unreachable(
                what,
                format!(
                    "no answer within {}",
                    lb_core::duration::format_duration(self.timeout())
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

    async fn connect(&self) -> Result<Client> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.timeout())
            .with_timeout(self.timeout());
        if let Some(u) = &self.cfg.username {
            opts = opts.with_user(u, self.password.clone().unwrap_or_default());
        }
        if self.cfg.ca_file.is_some() || self.cfg.cert_file.is_some() {
            let read = |p: &PathBuf, key: &str| {
                std::fs::read(p).map_err(|e| {
                    Error::Config(format!(
                        "[coordination]: cannot read `{key}` {}: {e}",
                        p.display()
                    ))
                })
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.cfg.ca_file {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "ca_file")?));
            }
            if let (Some(c), Some(k)) = (&self.cfg.cert_file, &self.cfg.key_file) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(c, "cert_file")?,
                    read(k, "key_file")?,
                ));
            }
            opts = opts.with_tls(tls);
        }
        self.call(
            "cannot connect",
            Client::connect(self.cfg.endpoints.clone(), Some(opts)),
        )
        .await
    }

    async fn grant(&self) -> Result<Lease> {
        let mut client = self.conn().await?.clone();
        let ttl = self.cfg.lease_ttl.unwrap_or(DEFAULT_TTL).as_secs().max(1) as i64;
        let lease = self
            .call("cannot grant a lease", client.lease_grant(ttl, None))
            .await?
            .id();
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
        // The keep-alive stream opens in its own task: nothing waits for
        // it (the lease is good for its TTL from the grant).
        let keeper = tokio::spawn(async move {
            let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
                Ok(ks) => ks,
                Err(e) => {
                    *flag.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("cannot keep the lease alive: {e}"));
                    return;
                }
            };
            loop {
                tokio::time::sleep(every).await;
                let alive = match keeper.keep_alive().await {
                    Ok(()) => match stream.message().await {
                        Ok(Some(r)) if r.ttl() > 0 => Ok(()),
                        Ok(Some(_)) => Err("the lease expired".to_string()),
                        Ok(None) => Err("the keep-alive stream ended".to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = alive {
                    *flag.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        });
        Ok(Lease {
            id: lease,
            lost,
            keeper,
        })
    }

    fn held_by_me(&self, key: &str) -> Option<Arc<HeldKey>> {
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        mine.get(key).and_then(Weak::upgrade)
    }

    /// Creates `key` with `value` bound to the lease when it is absent;
    /// returns the value that is there otherwise.
    async fn create(&self, key: &str, value: &str) -> Result<std::result::Result<(), String>> {
        let lease = self.lease().await?.id;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let mut client = self.conn().await?.clone();
        let r = self.call("cannot write", client.txn(txn)).await?;
        if r.succeeded() {
            return Ok(Ok(()));
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

/// The most operations etcd takes in one transaction (its default
/// `--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;

/// The sequence number that ends a journal key (`…/journal/RUN/00000042`).
fn sequence_of(key: &[u8]) -> u64 {
    let key = String::from_utf8_lossy(key);
    key.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

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
        let r = self
            .call(
                "cannot read the journal",
                client.get(
                    self.key("journal/"),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Create, SortOrder::Ascend),
                    ),
                ),
            )
            .await?;
        // The records of one transaction share a create revision: within
        // it, the sequence number ending each key gives their order.
        let mut kvs: Vec<&etcd_client::KeyValue> = r.kvs().iter().collect();
        kvs.sort_by_key(|kv| (kv.create_revision(), sequence_of(kv.key())));
        let mut out = Read::default();
        for kv in kvs {
            match kv
                .value_str()
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::from_str::<Record>(v).map_err(|e| e.to_string()))
            {
                Ok(rec) => out.records.push(rec),
                Err(e) => {
                    tracing::warn!(
                        "etcd journal key {}: skipped, unreadable: {e}",
                        String::from_utf8_lossy(kv.key())
                    );
                    out.skipped += 1;
                }
            }
        }
        Ok(out)
    }

    async fn lock(&self, timeout: Duration) -> Result<LockGuard> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let key = self.key("lock");
        let me = super::journal::Identity::here();
        let value = format!("{}@{} pid {}", me.user, me.host, me.pid);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.create(&key, &value).await? {
                Ok(()) => {
                    let client = self.conn().await?.clone();
                    return Ok(LockGuard {
                        _token: Box::new(HeldKey { key, client }),
                    });
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
            // The claims as they stand once these are taken: what `others`
            // asks next, under this lock.
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
                let seen = r.op_responses().into_iter().find_map(|o| match o {
                    TxnOpResponse::Get(g) => Some(self.claims_of(g.kvs(), Some(lease))),
                    _ => None,
                });
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
                let lock = LockGuard {
                    _token: Box::new(HeldKey {
                        key: lock_key,
                        client: client.clone(),
                    }),
                };
                let mut set = ClaimSet::default();
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

    async fn peek(&self, _timeout: Duration) -> Result<Vec<Claimed>> {
        // A read: no claim waits for it.
        self.others().await
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
