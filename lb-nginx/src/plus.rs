//! NGINX Plus: the REST API (`/api/N/http/upstreams/…`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Error, Health, Member, MemberRef,
};
use lb_http::{BasicAuth, ClientOptions, Secret};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use url::Url;

use crate::error::NgxError;
use crate::oss::MAX_WEIGHT;

/// The request timeout unless [`NginxPlusBuilder::timeout`] says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An NGINX Plus, driven through its REST API. See the
/// [crate documentation](crate).
#[derive(Clone)]
pub struct NginxPlus {
    name: String,
    base: Url,
    user: Option<BasicAuth>,
    client: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for NginxPlus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NginxPlus")
            .field("name", &self.name)
            .field("url", &self.base.as_str())
            .field("user", &self.user.as_ref().map(BasicAuth::username))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds an [`NginxPlus`]; see [`NginxPlus::builder`].
#[derive(Clone)]
#[must_use]
pub struct NginxPlusBuilder {
    name: String,
    url: Option<String>,
    timeout: Duration,
}

/// `u` with the password of its `user:password@` replaced, for `Debug`.
pub(crate) fn redacted_url(u: &str) -> String {
    match Url::parse(u) {
        Ok(mut p) => {
            if p.password().is_some() {
                let _ = p.set_password(Some("REDACTED"));
            }
            p.to_string()
        }
        Err(_) => "(unparsable)".into(),
    }
}

impl fmt::Debug for NginxPlusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NginxPlusBuilder")
            .field("name", &self.name)
            .field("url", &self.url.as_deref().map(redacted_url))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NginxPlus {
    /// Starts building the driver for the balancer called `name` in the
    /// inventory.
    pub fn builder(name: &str) -> NginxPlusBuilder {
        NginxPlusBuilder {
            name: name.to_owned(),
            url: None,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl NginxPlusBuilder {
    /// The API's base URL with its version (inventory key `url`), e.g.
    /// `http://127.0.0.1:8080/api/9`. A `user:password@` in it is sent as
    /// HTTP basic authentication and never printed.
    pub fn url(mut self, u: &str) -> Self {
        self.url = Some(u.to_owned());
        self
    }

    /// The timeout of each request (inventory key `timeout`, default
    /// 10 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Checks everything and prepares the HTTP client; nothing is sent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad name, a missing or unparsable
    /// URL, a scheme other than http/https, a query or fragment in it, or
    /// a zero timeout.
    pub fn build(self) -> lb_core::Result<NginxPlus> {
        let name = self.name;
        lb_core::validate_name(&name, "balancer", &name)?;
        let bad = |m: String| Error::invalid_input(&name, m);
        let raw = self
            .url
            .ok_or_else(|| bad("url is required, e.g. http://127.0.0.1:8080/api/9".into()))?;
        let mut base = Url::parse(&raw).map_err(|e| bad(format!("url is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(bad(format!(
                "url must be http:// or https:// with a host, not {}",
                base.scheme()
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("url must not have a query or a fragment".into()));
        }
        if base.cannot_be_a_base() {
            return Err(bad("url cannot hold a path".into()));
        }
        if self.timeout.is_zero() {
            return Err(bad("the timeout is zero".into()));
        }
        let user = if base.username().is_empty() {
            None
        } else {
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let password = base.password().map(|p| Secret::new(decode(p)));
            Some(
                BasicAuth::new(decode(base.username()), password)
                    .map_err(|e| bad(format!("the user in url: {e}")))?,
            )
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let client = ClientOptions {
            timeout: Some(self.timeout),
            ..ClientOptions::default()
        }
        .build()
        .map_err(|e| bad(e.to_string()))?;
        Ok(NginxPlus {
            name,
            base,
            user,
            client,
            timeout: self.timeout,
        })
    }
}

/// A peer of `GET /http/upstreams/` (`NginxHTTPUpstreamPeer`).
#[derive(Debug, Deserialize)]
struct Peer {
    server: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    active: Option<u64>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    health_checks: Option<HealthChecks>,
}

#[derive(Debug, Deserialize)]
struct HealthChecks {
    #[serde(default)]
    last_passed: Option<bool>,
}

/// `NginxHTTPUpstream`.
#[derive(Debug, Deserialize)]
struct Upstream {
    #[serde(default)]
    peers: Vec<Peer>,
}

/// `NginxHTTPUpstreamConfServer`.
#[derive(Debug, Deserialize)]
struct ConfServer {
    id: i64,
    server: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    down: bool,
    #[serde(default)]
    drain: bool,
}

impl ConfServer {
    fn admin(&self) -> AdminState {
        if self.down {
            AdminState::Maint
        } else if self.drain {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }
}

/// `NginxError`.
#[derive(Debug, Deserialize)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

fn admin_of(state: &str) -> AdminState {
    match state {
        "draining" => AdminState::Drain,
        "down" => AdminState::Maint,
        _ => AdminState::Ready,
    }
}

fn health_of(p: &Peer) -> Health {
    let checked = || match p.health_checks.as_ref().and_then(|h| h.last_passed) {
        Some(true) => Health::Up,
        Some(false) => Health::Down,
        None => Health::Unknown,
    };
    match p.state.as_deref() {
        Some("up") => Health::Up,
        Some("unhealthy" | "unavail") => Health::Down,
        Some("draining" | "down") => checked(),
        _ => Health::Unknown,
    }
}

/// What a request is about, for error messages.
struct Ctx<'a> {
    what: String,
    pool: &'a str,
    member: Option<&'a str>,
}

impl NginxPlus {
    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
        cx: &Ctx<'_>,
    ) -> Result<T, NgxError> {
        let url = self.url(segments);
        let mut req = self.client.request(method.clone(), url.clone());
        if let Some(auth) = &self.user {
            req = auth.apply(req);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|source| NgxError::Http {
            what: format!("{}: {method} {url}", cx.what),
            source,
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|source| NgxError::Http {
            what: format!("{}: reading the answer to {method} {url}", cx.what),
            source,
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                NgxError::Decode(format!(
                    "{}: the answer to {method} {url} is not what the NGINX Plus API documents: {e}",
                    cx.what
                ))
            });
        }
        let parsed: Option<ApiError> = serde_json::from_slice(&bytes).ok();
        let (code, text) = match parsed {
            Some(e) => (e.error.code, e.error.text.unwrap_or_default()),
            None => (
                None,
                String::from_utf8_lossy(&bytes)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            ),
        };
        let member = cx
            .member
            .map(|m| format!(" (member {}/{m})", cx.pool))
            .unwrap_or_default();
        let message = match code.as_deref() {
            Some("UpstreamNotFound") => format!(
                "{}: pool {} not found: NGINX Plus has no upstream {} with a zone{member}",
                cx.what, cx.pool, cx.pool
            ),
            Some("UpstreamServerNotFound") => format!(
                "{}: member {}/{} not found: NGINX Plus says {text:?}",
                cx.what,
                cx.pool,
                cx.member.unwrap_or("?")
            ),
            Some("UpstreamStatic") => format!(
                "{}: upstream {} has no `zone`: the NGINX Plus API changes only upstreams kept in shared memory (add `zone {} 64k;` to it){member}",
                cx.what, cx.pool, cx.pool
            ),
            Some("MethodDisabled") => format!(
                "{}: NGINX Plus refuses writes (405 MethodDisabled): `api write=on;` is missing from its API location{member}",
                cx.what
            ),
            Some(c) => format!(
                "{}: NGINX Plus answered {} {c}: {text}{member}",
                cx.what,
                status.as_u16()
            ),
            None => format!(
                "{}: {method} {url} answered {status}: {text}{member}",
                cx.what
            ),
        };
        Err(NgxError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    async fn find(&self, m: &MemberRef, what: &str) -> Result<ConfServer, NgxError> {
        let cx = Ctx {
            what: what.to_owned(),
            pool: &m.pool,
            member: Some(&m.member),
        };
        let servers: Vec<ConfServer> = self
            .call(
                Method::GET,
                &["http", "upstreams", &m.pool, "servers", ""],
                None,
                &cx,
            )
            .await?;
        let mut found: Vec<ConfServer> = servers
            .into_iter()
            .filter(|s| s.server == m.member)
            .collect();
        match found.len() {
            0 => Err(NgxError::NotFound(format!(
                "{what}: member {m} not found: upstream {} has no server {}",
                m.pool, m.member
            ))),
            1 => Ok(found.remove(0)),
            n => Err(NgxError::Unsupported(format!(
                "{what}: upstream {} has {n} servers {} (ids {:?}); cannot tell which is {m}",
                m.pool,
                m.member,
                found.iter().map(|s| s.id).collect::<Vec<_>>()
            ))),
        }
    }

    async fn patch(
        &self,
        m: &MemberRef,
        id: i64,
        body: Value,
        what: &str,
    ) -> Result<ConfServer, NgxError> {
        let cx = Ctx {
            what: what.to_owned(),
            pool: &m.pool,
            member: Some(&m.member),
        };
        let id = id.to_string();
        self.call(
            Method::PATCH,
            &["http", "upstreams", &m.pool, "servers", &id],
            Some(body),
            &cx,
        )
        .await
    }

    async fn do_set_state(&self, m: &MemberRef, state: AdminState) -> Result<Change, NgxError> {
        let what = format!("set {m} {state}");
        let s = self.find(m, &what).await?;
        if s.admin() == state {
            return Ok(Change::AlreadyInState);
        }
        let mut body = Map::new();
        match state {
            AdminState::Drain => {
                if s.down {
                    body.insert("down".into(), json!(false));
                }
                body.insert("drain".into(), json!(true));
            }
            AdminState::Maint => {
                body.insert("down".into(), json!(true));
            }
            AdminState::Ready => {
                if s.down {
                    body.insert("down".into(), json!(false));
                }
                if s.drain {
                    body.insert("drain".into(), json!(false));
                }
            }
        }
        let back = self.patch(m, s.id, Value::Object(body), &what).await?;
        if back.admin() != state {
            return Err(NgxError::ReadBack(format!(
                "{what}: NGINX Plus accepted the change but server {} reads {}",
                back.id,
                back.admin()
            )));
        }
        Ok(Change::Applied)
    }

    async fn do_set_weight(&self, m: &MemberRef, weight: u32) -> Result<Change, NgxError> {
        let what = format!("set the weight of {m} to {weight}");
        let s = self.find(m, &what).await?;
        if s.weight == Some(weight) {
            return Ok(Change::AlreadyInState);
        }
        let back = self
            .patch(m, s.id, json!({ "weight": weight }), &what)
            .await?;
        if back.weight != Some(weight) {
            return Err(NgxError::ReadBack(format!(
                "{what}: NGINX Plus accepted the change but server {} has weight {:?}",
                back.id, back.weight
            )));
        }
        Ok(Change::Applied)
    }

    async fn do_members(&self) -> Result<Vec<Member>, NgxError> {
        let cx = Ctx {
            what: "list the upstreams".into(),
            pool: "",
            member: None,
        };
        let ups: std::collections::BTreeMap<String, Upstream> = self
            .call(Method::GET, &["http", "upstreams", ""], None, &cx)
            .await?;
        let mut out = Vec::new();
        for (pool, u) in ups {
            for p in &u.peers {
                out.push(Member {
                    pool: pool.clone(),
                    name: p.server.clone(),
                    address: p.server.clone(),
                    admin: admin_of(p.state.as_deref().unwrap_or("")),
                    health: health_of(p),
                    active: p.active,
                    weight: p.weight,
                });
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Balancer for NginxPlus {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            active_connections: true,
            health: true,
            weight_range: Some((1, MAX_WEIGHT)),
            distinct_drain: true,
            drain_signal: DrainSignal::ActiveCount,
        }
    }

    async fn members(&self) -> lb_core::Result<Vec<Member>> {
        self.do_members().await.map_err(|e| e.into_core(&self.name))
    }

    async fn set_state(&self, m: &MemberRef, state: AdminState) -> lb_core::Result<Change> {
        m.validate(&self.name)?;
        self.do_set_state(m, state)
            .await
            .map_err(|e| e.into_core(&self.name))
    }

    async fn set_weight(&self, m: &MemberRef, weight: u32) -> lb_core::Result<Change> {
        m.validate(&self.name)?;
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(Error::invalid_input(
                &self.name,
                format!("weight {weight} for {m} is out of range 1..={MAX_WEIGHT}"),
            ));
        }
        self.do_set_weight(m, weight)
            .await
            .map_err(|e| e.into_core(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_checks_and_redacts() {
        let e = NginxPlus::builder("plus").build().unwrap_err();
        assert_eq!(e.kind(), "invalid_input");
        for u in [
            "not a url",
            "ftp://h/api/9",
            "http://h/api/9?x=1",
            "mailto:a@b",
        ] {
            let e = NginxPlus::builder("plus").url(u).build().unwrap_err();
            assert_eq!(e.kind(), "invalid_input", "{u}: {e}");
        }
        let e = NginxPlus::builder("plus")
            .url("http://h/api/9")
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
        assert_eq!(
            NginxPlus::builder("a b")
                .url("http://h/api/9")
                .build()
                .unwrap_err()
                .kind(),
            "invalid_input"
        );
        let b = NginxPlus::builder("plus").url("http://ops:s3cr%40t@127.0.0.1:8080/api/9");
        assert!(!format!("{b:?}").contains("s3cr"), "{b:?}");
        let p = b.build().unwrap();
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("s3cr") && dbg.contains("ops"), "{dbg}");
        let ops = BasicAuth::new("ops", Some(Secret::new("s3cr@t"))).unwrap();
        assert_eq!(p.user, Some(ops));
        assert_eq!(
            p.url(&["http", "upstreams", "a/b c", "servers", ""])
                .as_str(),
            "http://127.0.0.1:8080/api/9/http/upstreams/a%2Fb%20c/servers/"
        );
        let p = NginxPlus::builder("plus")
            .url("http://h:1/api/9/")
            .build()
            .unwrap();
        assert_eq!(
            p.url(&["http", "upstreams", ""]).as_str(),
            "http://h:1/api/9/http/upstreams/"
        );
    }

    #[test]
    fn states_and_health_from_peers() {
        let peer = |state: &str, last: Option<bool>| Peer {
            server: "a".into(),
            state: Some(state.into()),
            active: Some(0),
            weight: Some(1),
            health_checks: Some(HealthChecks { last_passed: last }),
        };
        assert_eq!(admin_of("draining"), AdminState::Drain);
        assert_eq!(admin_of("down"), AdminState::Maint);
        assert_eq!(admin_of("unhealthy"), AdminState::Ready);
        assert_eq!(health_of(&peer("up", None)), Health::Up);
        assert_eq!(health_of(&peer("unhealthy", Some(false))), Health::Down);
        assert_eq!(health_of(&peer("unavail", None)), Health::Down);
        assert_eq!(health_of(&peer("checking", None)), Health::Unknown);
        assert_eq!(health_of(&peer("draining", Some(true))), Health::Up);
        assert_eq!(health_of(&peer("down", None)), Health::Unknown);
    }
}
