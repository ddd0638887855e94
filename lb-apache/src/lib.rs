#![doc = include_str!("../README.md")]

mod builder;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod settings;
mod stuck;
pub mod xml;

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Member, MemberRef, Result,
    validate_name,
};
use lb_http::BasicAuth;
use reqwest::header::{CONTENT_TYPE, REFERER};
use url::Url;

pub use builder::{ApacheBuilder, DEFAULT_TIMEOUT};
use error::ApacheError;
pub use settings::Config;
pub use stuck::DEFAULT_BUSY_SETTLE;
use xml::{BalancerInfo, Manager, WorkerInfo};

/// What the status page says when `BalancerPersist On` is in effect.
const PERSIST_ON: &str = "Balancer changes will be persisted on restart";
/// … and when it is off.
const PERSIST_OFF: &str = "Balancer changes will NOT be persisted on restart";

/// An Apache httpd 2.4 `mod_proxy_balancer` balancer-manager.
///
/// Every `balancer://POOL` of the manager's virtual host is a pool; every
/// worker of it a member, named by its `route`, or by its URL when it has
/// no route (writes accept either). See the crate documentation for the
/// wire protocol and the state mapping.
pub struct Apache {
    name: String,
    url: Url,
    xml_url: Url,
    referer: String,
    auth: Option<BasicAuth>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    client: reqwest::Client,
    persist: Mutex<Persist>,
    /// Busy counts judged stuck.
    stuck: stuck::Stuck,
}

impl fmt::Debug for Apache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Apache")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("username", &self.auth.as_ref().map(BasicAuth::username))
            .field("password", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What is known about `BalancerPersist`, and for which set of nonces (a
/// restart without persistence gives every balancer a new nonce, and a
/// configuration change needs a restart).
#[derive(Debug, Default)]
pub(crate) struct Persist {
    checked_for: Option<u64>,
    state: PersistState,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum PersistState {
    #[default]
    NotRead,
    On,
    Off,
    Unknown(String),
}

/// The form a state change posts, besides `b`, `w` and `nonce`.
///
/// - Ready: `w_status_N=0 w_status_D=0 w_status_S=0`
/// - Drain: `w_status_N=1 w_status_D=0 w_status_S=0`
/// - Maint: `w_status_N=1 w_status_D=1` (draining *and* disabled, so that
///   clearing only "disabled" by hand leaves the worker draining, not in
///   full rotation).
fn state_fields(s: AdminState) -> &'static [(&'static str, &'static str)] {
    match s {
        AdminState::Ready => &[
            ("w_status_N", "0"),
            ("w_status_D", "0"),
            ("w_status_S", "0"),
        ],
        AdminState::Drain => &[
            ("w_status_N", "1"),
            ("w_status_D", "0"),
            ("w_status_S", "0"),
        ],
        AdminState::Maint => &[("w_status_N", "1"), ("w_status_D", "1")],
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    State(AdminState),
    Weight(u32),
}

impl Op {
    fn holds(self, w: &WorkerInfo) -> bool {
        match self {
            Op::State(s) => w.status.admin() == s,
            Op::Weight(x) => w.load_factor == Some(x * 100),
        }
    }

    fn describe(self) -> String {
        match self {
            Op::State(s) => s.as_str().to_owned(),
            Op::Weight(x) => format!("weight {x}"),
        }
    }

    fn observed(self, w: &WorkerInfo) -> String {
        match self {
            Op::State(_) => w.status.admin().as_str().to_owned(),
            Op::Weight(_) => match w.load_factor {
                Some(lf) => format!("load factor {}.{:02}", lf / 100, lf % 100),
                None => "no load factor".to_owned(),
            },
        }
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 12;
    let all: Vec<&str> = names.collect();
    if all.is_empty() {
        return "(none)".into();
    }
    let mut s = all[..all.len().min(SHOWN)].join(", ");
    if all.len() > SHOWN {
        s.push_str(&format!(", … ({} in all)", all.len()));
    }
    s
}

/// The pool `m.pool` and its worker `m.member` (by route-or-URL name first,
/// then by URL).
fn locate<'a>(
    snap: &'a Manager,
    m: &MemberRef,
) -> Result<(&'a BalancerInfo, &'a WorkerInfo), ApacheError> {
    let Some(bal) = snap.balancer(&m.pool) else {
        return Err(ApacheError::PoolNotFound {
            pool: m.pool.clone(),
            member: m.member.clone(),
            known: list(snap.balancers.iter().map(|b| b.pool())),
        });
    };
    let pick = |found: Vec<&'a WorkerInfo>| match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        _ => Err(ApacheError::Ambiguous {
            pool: m.pool.clone(),
            member: m.member.clone(),
            urls: list(found.iter().map(|w| w.url.as_str())),
        }),
    };
    let by_name = pick(
        bal.workers
            .iter()
            .filter(|w| w.member_name() == m.member)
            .collect(),
    )?;
    let by_url = || {
        pick(
            bal.workers
                .iter()
                .filter(|w| same_url(&w.url, &m.member))
                .collect(),
        )
    };
    match by_name.map_or_else(by_url, |w| Ok(Some(w)))? {
        Some(w) => Ok((bal, w)),
        None => Err(ApacheError::MemberNotFound {
            pool: m.pool.clone(),
            member: m.member.clone(),
            known: list(bal.workers.iter().map(WorkerInfo::member_name)),
        }),
    }
}

fn fingerprint(snap: &Manager) -> u64 {
    let mut h = DefaultHasher::new();
    for b in &snap.balancers {
        (&b.name, &b.nonce).hash(&mut h);
    }
    h.finish()
}

/// The causes of a reqwest error, outermost first.
fn causes(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p: &String| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    // reqwest's outermost message repeats the URL, which the caller names.
    if parts.len() > 1 {
        parts.remove(0);
    }
    parts.join(": ")
}

impl Apache {
    /// Starts configuring a driver for the balancer named `name` in the
    /// inventory.
    pub fn builder(name: &str) -> ApacheBuilder {
        ApacheBuilder::new(name)
    }

    /// The balancer-manager's URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// One fresh read of the balancer-manager (`GET url?xml=1`), as httpd
    /// reports it: every balancer with its nonce and every worker with its
    /// raw status tokens.
    ///
    /// # Errors
    ///
    /// As for [`Balancer::members`].
    pub async fn read(&self) -> Result<Manager> {
        self.read_xml().await.map_err(|e| e.into_core(&self.name))
    }

    /// Sends one form POST to the balancer-manager, exactly as given
    /// (`b=pool`, `w=worker_url`, `nonce`, then `fields`, e.g.
    /// `("w_status_N", "1")`), with the same-host `Referer`.
    ///
    /// This does **not** verify anything: httpd answers 200 whether it
    /// applied the change or ignored it. Use [`Balancer::set_state`] and
    /// [`Balancer::set_weight`], which read the result back; this exists
    /// for tools that need other fields, and to measure what verification
    /// costs.
    ///
    /// # Errors
    ///
    /// [`lb_core::Error::InvalidInput`] for a pool or worker name that fails
    /// [`validate_name`]; transport and HTTP errors as for
    /// [`Balancer::members`].
    pub async fn post_unverified(
        &self,
        pool: &str,
        worker_url: &str,
        nonce: &str,
        fields: &[(&str, &str)],
    ) -> Result<()> {
        validate_name(&self.name, "pool", pool)?;
        validate_name(&self.name, "member", worker_url)?;
        self.post(pool, worker_url, nonce, fields)
            .await
            .map_err(|e| e.into_core(&self.name))
    }

    fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let rb = self
            .client
            .request(method, url.clone())
            .header(REFERER, &self.referer);
        match &self.auth {
            Some(a) => a.apply(rb),
            None => rb,
        }
    }

    async fn send(
        &self,
        what: &'static str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApacheError> {
        let url = self.url.to_string();
        let again = rb.try_clone();
        let resp = match rb.send().await {
            Ok(r) => r,
            // A connection httpd closed as the request was sent (an old
            // child exiting after a graceful restart): it was not answered,
            // and every request here may be repeated (reads, and writes of
            // absolute values), so try once more on a new connection.
            // Refused connections and timeouts are not retried.
            Err(e) if !e.is_timeout() && !e.is_connect() && again.is_some() => {
                tracing::debug!(balancer = %self.name, error = %e, "retrying on a new connection");
                let again = again.expect("checked");
                again.send().await.map_err(|e| self.transport(e))?
            }
            Err(e) => return Err(self.transport(e)),
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(resp),
            401 => Err(ApacheError::Refused {
                what,
                url,
                status,
                hint: match &self.auth {
                    Some(a) => format!(
                        "the server refused user {:?}: check the password",
                        a.username()
                    ),
                    None => "the balancer-manager asks for a login: set `username` and \
                             `password_env` or `password_file`"
                        .into(),
                },
            }),
            403 => Err(ApacheError::Refused {
                what,
                url,
                status,
                hint: "forbidden: a `Require` rule of <Location /balancer-manager> refuses \
                       this client (address or user)"
                    .into(),
            }),
            300..=399 => {
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                Err(ApacheError::Status {
                    what,
                    url,
                    status,
                    hint: format!(
                        " (a redirect to {to}; redirects are not followed: point `url` at \
                         the balancer-manager itself)"
                    ),
                })
            }
            404 => Err(ApacheError::Status {
                what,
                url,
                status,
                hint: " (no balancer-manager there: check `url` and `SetHandler \
                       balancer-manager`)"
                    .into(),
            }),
            _ => Err(ApacheError::Status {
                what,
                url,
                status,
                hint: String::new(),
            }),
        }
    }

    fn transport(&self, e: reqwest::Error) -> ApacheError {
        let url = self.url.to_string();
        let cause = causes(&e);
        if e.is_timeout() {
            ApacheError::Timeout {
                url,
                secs: self.timeout.as_secs_f64(),
                cause,
            }
        } else if self.url.scheme() == "https" && cause.contains("certificate") {
            ApacheError::Tls {
                url,
                cause,
                hint: " (verification is always on: give the CA that signed the server's \
                       certificate with `ca_file`)",
            }
        } else if self.url.scheme() == "https"
            && (cause.contains("tls") || cause.contains("TLS"))
            && !cause.contains("onnection refused")
        {
            ApacheError::Tls {
                url,
                cause,
                hint: "",
            }
        } else {
            ApacheError::Unreachable { url, cause }
        }
    }

    async fn body(&self, resp: reqwest::Response) -> Result<String, ApacheError> {
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn read_xml(&self) -> Result<Manager, ApacheError> {
        let resp = self
            .send("GET", self.request(reqwest::Method::GET, &self.xml_url))
            .await?;
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        let text = String::from_utf8_lossy(&bytes);
        if ctype.contains("html") || text.trim_start().starts_with("<!DOCTYPE HTML") {
            return Err(ApacheError::NotXml {
                url: self.url.to_string(),
                content_type: if ctype.is_empty() {
                    "HTML".into()
                } else {
                    ctype
                },
            });
        }
        let snap = xml::parse(&text).map_err(|source| ApacheError::Parse {
            url: self.url.to_string(),
            source,
        })?;
        self.check_persist(&snap).await;
        Ok(snap)
    }

    fn persist(&self) -> MutexGuard<'_, Persist> {
        self.persist.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the status page once per set of nonces to learn whether
    /// `BalancerPersist` is on (the XML does not say).
    async fn check_persist(&self, snap: &Manager) {
        let fp = fingerprint(snap);
        if self.persist().checked_for == Some(fp) {
            return;
        }
        let (state, settled) = match self
            .send("GET", self.request(reqwest::Method::GET, &self.url))
            .await
        {
            Ok(resp) => match self.body(resp).await {
                Ok(page) if page.contains(PERSIST_OFF) => (PersistState::Off, true),
                Ok(page) if page.contains(PERSIST_ON) => (PersistState::On, true),
                Ok(_) => (
                    PersistState::Unknown("the status page does not say".into()),
                    true,
                ),
                Err(e) => (PersistState::Unknown(e.to_string()), false),
            },
            Err(e) => {
                let transient = matches!(
                    e,
                    ApacheError::Timeout { .. } | ApacheError::Unreachable { .. }
                );
                (PersistState::Unknown(e.to_string()), !transient)
            }
        };
        tracing::debug!(balancer = %self.name, ?state, "BalancerPersist");
        let mut p = self.persist();
        p.state = state;
        p.checked_for = settled.then_some(fp);
    }

    async fn post(
        &self,
        pool: &str,
        worker_url: &str,
        nonce: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), ApacheError> {
        let mut form: Vec<(&str, &str)> = vec![("b", pool), ("w", worker_url), ("nonce", nonce)];
        form.extend_from_slice(fields);
        let resp = self
            .send(
                "POST",
                self.request(reqwest::Method::POST, &self.url).form(&form),
            )
            .await?;
        // Drain the answer (the HTML page) so the connection can be reused.
        self.body(resp).await?;
        Ok(())
    }

    /// Reads, writes when needed, reads back and compares. Retries once
    /// when the nonce changed in between (httpd restarted).
    async fn write(&self, m: &MemberRef, op: Op) -> Result<Change, ApacheError> {
        let snap = self.read_xml().await?;
        let (bal, w) = locate(&snap, m)?;
        if op.holds(w) {
            return Ok(Change::AlreadyInState);
        }
        let (pool, url) = (bal.pool().to_owned(), w.url.clone());
        let mut nonce = bal.nonce.clone();
        let owned: Vec<(&str, String)> = match op {
            Op::State(s) => state_fields(s)
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect(),
            Op::Weight(x) => vec![("w_lf", x.to_string())],
        };
        let fields: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut retried = false;
        loop {
            tracing::debug!(balancer = %self.name, member = %m, worker = %url, change = %op.describe(), "POST balancer-manager");
            self.post(&pool, &url, &nonce, &fields).await?;
            let after = self.read_xml().await?;
            let now = after
                .balancer(&pool)
                .and_then(|b| b.workers.iter().find(|x| x.url == url).map(|x| (b, x)));
            let Some((bal2, w2)) = now else {
                return Err(ApacheError::Vanished {
                    pool,
                    member: m.member.clone(),
                    url,
                });
            };
            if op.holds(w2) {
                return Ok(Change::Applied);
            }
            if !retried && bal2.nonce != nonce {
                nonce = bal2.nonce.clone();
                retried = true;
                continue;
            }
            return Err(ApacheError::ignored(
                &pool,
                &m.member,
                op.describe(),
                op.observed(w2),
                &w2.status.0,
            ));
        }
    }
}

#[async_trait]
impl Balancer for Apache {
    fn name(&self) -> &str {
        &self.name
    }

    /// Active counts (`busy`), health (`Ok`/`Err`/`HcFl`), load factors
    /// 1–100, distinct drain (`Drn`) and maint (`Dis`) states; drained when
    /// the worker's `busy` reaches 0.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            active_connections: true,
            health: true,
            weight_range: Some((1, 100)),
            distinct_drain: true,
            drain_signal: DrainSignal::ActiveCount,
        }
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let snap = self.read().await?;
        Ok(snap
            .balancers
            .iter()
            .flat_map(|b| {
                b.workers.iter().map(move |w| Member {
                    pool: b.pool().to_owned(),
                    name: w.member_name().to_owned(),
                    address: w.address(),
                    admin: w.status.admin(),
                    health: w.status.health(),
                    active: self.stuck.active(b.pool(), w, w.status.admin()),
                    weight: w.weight(),
                })
            })
            .collect())
    }

    async fn set_state(&self, m: &MemberRef, state: AdminState) -> Result<Change> {
        m.validate(&self.name)?;
        self.write(m, Op::State(state))
            .await
            .map_err(|e| e.into_core(&self.name))
    }

    async fn set_weight(&self, m: &MemberRef, weight: u32) -> Result<Change> {
        m.validate(&self.name)?;
        if !(1..=100).contains(&weight) {
            return Err(ApacheError::WeightOutOfRange {
                pool: m.pool.clone(),
                member: m.member.clone(),
                weight,
            }
            .into_core(&self.name));
        }
        self.write(m, Op::Weight(weight))
            .await
            .map_err(|e| e.into_core(&self.name))
    }

    /// `BalancerPersist` off (or not known) on the last read: changes made
    /// through the balancer-manager are lost on the next restart of httpd.
    /// Empty before the first read.
    fn warnings(&self) -> Vec<String> {
        let mut w = self.stuck.notes();
        w.extend(self.persist_warnings());
        w
    }
}

impl Apache {
    fn persist_warnings(&self) -> Vec<String> {
        match &self.persist().state {
            PersistState::NotRead | PersistState::On => Vec::new(),
            PersistState::Off => vec![format!(
                "BalancerPersist is off at {}: changes are lost on the next Apache restart \
                 (add `BalancerPersist On` to keep them)",
                self.url
            )],
            PersistState::Unknown(why) => vec![format!(
                "cannot tell whether BalancerPersist is on at {} ({why}): changes may be lost \
                 on the next Apache restart",
                self.url
            )],
        }
    }
}
