//! The etcd backend: the journal, the critical section and claims in etcd,
//! shared by every lbctl, on every machine, that names the same endpoints
//! and prefix.
//!
//! Under the prefix `P`:
//! - `P/journal/…`: one key per record, read back in the order etcd
//!   created them (create revision), so `recover` and `history` see every
//!   machine's runs (`recover` only the runs still live:
//!   [`super::etcd_journal`]);
//! - `P/lock`: the critical section, a key created only when absent;
//! - `P/claims/KEY`: one key per claim, holding its holder.
//!
//! The lock and the claims are bound to this process's lease, kept alive
//! while it runs: a crashed lbctl's claims expire after `lease_ttl`.
//! Before every write to a balancer the claims are checked (fencing): the
//! lease is alive and each claim key is still this lease's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::backend::{ClaimSet, Claimed, Coordination, Holder, LockGuard, Read, Token};
use super::compact::{Compacted, Retention};
use super::etcd_journal;
use super::records::Record;
use crate::error::{Error, Result};

/// `[coordination]` with `backend = "etcd"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// The client URLs, e.g. `["https://etcd1:2379"]`.
    pub endpoints: Vec<String>,
    /// Every key lbctl writes starts with it (default `/lbctl`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long a crashed lbctl's claims outlive it (default 15s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub lease_ttl: Option<Duration>,
    /// Each request's bound (default 5s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
    /// An etcd user (authentication on).
    pub username: Option<String>,
    /// The environment variable holding its password.
    pub password_env: Option<String>,
    /// A file holding its password.
    pub password_file: Option<PathBuf>,
    /// The CA certificate (PEM) of `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM), for etcd's client certificate
    /// authentication, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key_file: Option<PathBuf>,
    /// Finished runs older than this leave the journal (default 30d).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub retention: Option<Duration>,
    /// At most about this many finished runs are kept (default: no limit
    /// but `retention`).
    pub keep_runs: Option<usize>,
}

fn default_prefix() -> String {
    "/lbctl".into()
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .finish_non_exhaustive()
    }
}

const DEFAULT_TTL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection: a client, and the lease this process's lock and claims
/// are bound to, kept alive by a task.
struct Conn {
    client: Client,
    lease: i64,
    /// Why the lease was lost, once it is.
    lost: Arc<Mutex<Option<String>>>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
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
    conn: OnceCell<Conn>,
    mine: Mutex<BTreeMap<String, Weak<HeldKey>>>,
    seq: AtomicU64,
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
            retention: Retention::from_keys(cfg.retention, cfg.keep_runs),
            cfg,
            password,
            conn: OnceCell::new(),
            mine: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
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

    async fn conn(&self) -> Result<&Conn> {
        self.conn.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<Conn> {
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
        let mut client = self
            .call(
                "cannot connect",
                Client::connect(self.cfg.endpoints.clone(), Some(opts)),
            )
            .await?;
        let ttl = self.cfg.lease_ttl.unwrap_or(DEFAULT_TTL).as_secs().max(1) as i64;
        let lease = self
            .call("cannot grant a lease", client.lease_grant(ttl, None))
            .await?
            .id();
        let (mut keeper, mut stream) = self
            .call(
                "cannot keep the lease alive",
                client.lease_keep_alive(lease),
            )
            .await?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
        let keeper = tokio::spawn(async move {
            loop {
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
                tokio::time::sleep(every).await;
            }
        });
        Ok(Conn {
            client,
            lease,
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
        let c = self.conn().await?;
        let mut ops = vec![TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(c.lease)),
        )];
        ops.extend(also);
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(ops)
            .or_else([TxnOp::get(key, None)]);
        let mut client = c.client.clone();
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

    fn claim_key(&self, key: &str) -> String {
        self.key(&format!("claims/{key}"))
    }

    /// Under the lock, whose creation `r` answered (with `P/index`): sorts
    /// the journal's runs once [`etcd_journal::COMPACT_EVERY`] revisions
    /// went by since the last time. A failure is only logged: the journal
    /// is as it was, or complete, and the command goes on.
    async fn compact_when_due(&self, r: &etcd_client::TxnResponse) {
        let now = r.header().map_or(0, |h| h.revision());
        let index = r
            .op_responses()
            .into_iter()
            .find_map(|o| match o {
                TxnOpResponse::Get(g) => Some(etcd_journal::index_of(g.kvs())),
                _ => None,
            })
            .unwrap_or(0);
        if now - index > etcd_journal::COMPACT_EVERY {
            match self.compact().await {
                Ok(c) => tracing::debug!("etcd journal compacted: {c:?}"),
                Err(e) => tracing::warn!("etcd journal not compacted: {e}"),
            }
        }
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

#[async_trait]
impl Coordination for EtcdBackend {
    fn describe(&self) -> String {
        format!("etcd {} prefix {}", self.endpoints(), self.cfg.prefix)
    }

    async fn append(&self, records: &[Record], _sync: bool) -> Result<()> {
        let c = self.conn().await?;
        let ops: Vec<TxnOp> = records
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
        let mut client = c.client.clone();
        // A write etcd acknowledged is on a quorum's disk: durable.
        self.call(
            "cannot write the journal",
            client.txn(Txn::new().and_then(ops)),
        )
        .await
        .map(drop)
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn read(&self) -> Result<Read> {
        let c = self.conn().await?;
        let mut client = c.client.clone();
        let live = self
            .call(
                "cannot read the journal",
                etcd_journal::read_live(&mut client, &self.cfg.prefix),
            )
            .await?;
        Ok(parse(&live.kvs))
    }

    async fn read_all(&self) -> Result<Read> {
        let c = self.conn().await?;
        let mut client = c.client.clone();
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
        let c = self.conn().await?;
        let mut client = c.client.clone();
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
        let key = self.key("lock");
        let me = super::journal::Identity::here();
        let value = format!("{}@{} pid {}", me.user, me.host, me.pid);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let index = etcd_journal::get_index(&self.cfg.prefix);
            match self.create_and(&key, &value, vec![index]).await? {
                Ok(r) => {
                    let client = self.conn().await?.client.clone();
                    let guard = LockGuard {
                        _token: Box::new(HeldKey { key, client }),
                    };
                    self.compact_when_due(&r).await;
                    return Ok(guard);
                }
                Err(holder) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::State(format!(
                        "another lbctl ({holder}) holds the lock {key} in etcd at {} and did \
                         not release it within {}; try again later or raise --lock-timeout",
                        self.endpoints(),
                        lb_core::duration::format_duration(timeout)
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
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
                        client: self.conn().await?.client.clone(),
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
        let c = self.conn().await?;
        let mut client = c.client.clone();
        let prefix = self.claim_key("");
        let r = self
            .call(
                "cannot read claims",
                client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            if kv.lease() == c.lease {
                continue;
            }
            let key = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
            if let Ok(h) = serde_json::from_slice::<Holder>(kv.value()) {
                out.push((key, h));
            }
        }
        Ok(out)
    }

    async fn check(&self) -> Result<()> {
        let Some(c) = self.conn.get() else {
            return Ok(());
        };
        if let Some(why) = c.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(self.unreachable("this run's lease is lost", why));
        }
        let keys: Vec<String> = {
            let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
            mine.iter()
                .filter(|(_, w)| w.strong_count() > 0)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let mut client = c.client.clone();
        for key in keys {
            let r = self
                .call(
                    "cannot check a claim",
                    client.get(self.claim_key(&key), None),
                )
                .await?;
            match r.kvs().first() {
                Some(kv) if kv.lease() == c.lease => {}
                _ => {
                    return Err(self.unreachable(
                        "fencing",
                        format!("the claim on {key} is no longer this run's (its lease expired)"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn close(&self) {
        if let Some(c) = self.conn.get() {
            let mut client = c.client.clone();
            let _ = tokio::time::timeout(self.timeout(), client.lease_revoke(c.lease)).await;
        }
    }
}
