//! A fake NGINX Plus REST API (v9), for the one balancer the lab cannot run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::pools::Pools;
use crate::ports::{PortLease, lease_port};

/// Where the error objects point, as nginx's do.
const HREF: &str = "https://nginx.org/en/docs/http/ngx_http_api_module.html";

/// Switches for [`FakePlus::start_with`].
#[derive(Debug, Clone)]
pub struct FakePlusOptions {
    /// `api write=on;`: without it every POST, PATCH and DELETE answers
    /// 405 `MethodDisabled`.
    pub write: bool,
    /// Pools configured without a `zone` (static): absent from
    /// `GET /http/upstreams/`, and 400 `UpstreamStatic` everywhere else.
    pub static_pools: Vec<String>,
}

impl Default for FakePlusOptions {
    fn default() -> Self {
        FakePlusOptions {
            write: true,
            static_pools: Vec::new(),
        }
    }
}

/// One upstream server as the fake holds it (the configuration fields of
/// `NginxHTTPUpstreamConfServer` and the live `active` and health state
/// of `NginxHTTPUpstreamPeer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePlusServer {
    /// The server's ID in its upstream.
    pub id: u64,
    /// Its address.
    pub server: String,
    /// `weight`.
    pub weight: u64,
    /// `max_conns`.
    pub max_conns: u64,
    /// `max_fails`.
    pub max_fails: u64,
    /// `fail_timeout`.
    pub fail_timeout: String,
    /// `slow_start`.
    pub slow_start: String,
    /// `route`.
    pub route: String,
    /// `backup`.
    pub backup: bool,
    /// `down`.
    pub down: bool,
    /// `drain`.
    pub drain: bool,
    /// The peer's `active` connections (set by the test).
    pub active: u64,
    /// The health-check state set by the test (`up`, `unhealthy`,
    /// `unavail`, `checking`), `None` without health checks (then `up`).
    pub health: Option<String>,
}

impl FakePlusServer {
    fn new(id: u64, server: &str) -> Self {
        FakePlusServer {
            id,
            server: server.to_owned(),
            weight: 1,
            max_conns: 0,
            max_fails: 1,
            fail_timeout: "10s".into(),
            slow_start: "0s".into(),
            route: String::new(),
            backup: false,
            down: false,
            drain: false,
            active: 0,
            health: None,
        }
    }

    /// The peer `state`: `down` and `draining` as set through the API,
    /// else the health state.
    pub fn state(&self) -> &str {
        if self.down {
            "down"
        } else if self.drain {
            "draining"
        } else {
            self.health.as_deref().unwrap_or("up")
        }
    }

    fn conf_json(&self) -> Value {
        let mut o = json!({
            "id": self.id,
            "server": self.server,
            "weight": self.weight,
            "max_conns": self.max_conns,
            "max_fails": self.max_fails,
            "fail_timeout": self.fail_timeout,
            "slow_start": self.slow_start,
            "route": self.route,
            "backup": self.backup,
            "down": self.down,
        });
        if self.drain {
            o["drain"] = json!(true);
        }
        o
    }

    fn peer_json(&self) -> Value {
        let mut hc = json!({ "checks": 0, "fails": 0, "unhealthy": 0 });
        if let Some(h) = &self.health {
            hc["last_passed"] = json!(h == "up");
        }
        let mut o = json!({
            "id": self.id,
            "server": self.server,
            "name": self.server,
            "backup": self.backup,
            "weight": self.weight,
            "state": self.state(),
            "active": self.active,
            "requests": 0,
            "responses": {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "codes": {}, "total": 0},
            "sent": 0,
            "received": 0,
            "fails": 0,
            "unavail": 0,
            "health_checks": hc,
            "downtime": 0,
        });
        if self.max_conns > 0 {
            o["max_conns"] = json!(self.max_conns);
        }
        o
    }
}

#[derive(Debug)]
struct Upstream {
    name: String,
    zone: bool,
    servers: Vec<FakePlusServer>,
    next_id: u64,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePlusRequest {
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    /// The body, as text.
    pub body: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug)]
struct State {
    write: bool,
    upstreams: Vec<Upstream>,
    log: Vec<FakePlusRequest>,
}

/// A fake NGINX Plus REST API on a loopback port of its own, serving
/// exactly the HTTP-upstream endpoints of `nginx_api.yaml` (v9), with the
/// status codes and error objects it defines for them:
///
/// - `GET /api/9/` and `GET /api/9/http/` (the lists of endpoints it has),
/// - `GET /api/9/http/upstreams/` (upstreams with a zone; `?fields=`),
/// - `GET|DELETE /api/9/http/upstreams/{name}/`,
/// - `GET|POST /api/9/http/upstreams/{name}/servers/`,
/// - `GET|PATCH|DELETE /api/9/http/upstreams/{name}/servers/{id}`.
///
/// Error objects are `{"error":{"status","text","code"},"request_id","href"}`
/// with the spec's codes: `UnknownVersion`, `UpstreamNotFound`,
/// `UpstreamServerNotFound`, `UpstreamStatic`, `UpstreamBadServerId`,
/// `MethodDisabled`, `JsonError`, `UpstreamConfFormatError`,
/// `UpstreamBadAddress`, `UpstreamBadWeight`, `UpstreamBadMaxConns`,
/// `UpstreamBadMaxFails`, `UpstreamBadFailTimeout`,
/// `UpstreamBadSlowStart`, `EntryExists`. Outside those endpoints (which
/// the spec does not cover) it answers 404 `PathNotFound` and 405
/// `MethodNotSupported`, as nginx does.
///
/// Started from [`Pools`] (a member's `weight` and the words `down`,
/// `drain`, `backup` in its extra parameters are read), with the write
/// switch and static (zone-less) pools of [`FakePlusOptions`]; a test sets
/// live `active` counts and health states, and reads what was sent.
#[derive(Debug)]
pub struct FakePlus {
    lease: PortLease,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakePlus {
    /// Starts with writes on and every pool in a zone.
    pub fn start(pools: &Pools) -> FakePlus {
        FakePlus::start_with(pools, &FakePlusOptions::default())
    }

    /// Starts and waits until it listens.
    ///
    /// # Panics
    ///
    /// When it cannot listen.
    pub fn start_with(pools: &Pools, opts: &FakePlusOptions) -> FakePlus {
        let upstreams = pools
            .pools
            .iter()
            .map(|p| {
                let servers: Vec<FakePlusServer> = p
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let mut s = FakePlusServer::new(i as u64, &m.addr.to_string());
                        s.weight = m.weight.map_or(1, u64::from);
                        for w in m.extra.split_whitespace() {
                            match w {
                                "down" => s.down = true,
                                "drain" => s.drain = true,
                                "backup" => s.backup = true,
                                _ => {}
                            }
                        }
                        s
                    })
                    .collect();
                Upstream {
                    name: p.name.clone(),
                    zone: !opts.static_pools.contains(&p.name),
                    next_id: servers.len() as u64,
                    servers,
                }
            })
            .collect();
        let state = Arc::new(Mutex::new(State {
            write: opts.write,
            upstreams,
            log: Vec::new(),
        }));
        let lease = lease_port();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (st, addr) = (state.clone(), lease.addr());
        let thread = std::thread::Builder::new()
            .name("fake-plus".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake plus runtime");
                rt.block_on(serve(st, addr, stop_rx, ready_tx));
            })
            .expect("spawn the fake plus thread");
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("lb-lab: the fake NGINX Plus cannot listen on {addr}: {e}"),
            Err(_) => panic!("lb-lab: the fake NGINX Plus died while starting"),
        }
        FakePlus {
            lease,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The API's base URL, `http://127.0.0.1:PORT/api/9`.
    pub fn url(&self) -> String {
        format!("http://{}/api/9", self.lease.addr())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with(&self, pool: &str, server: &str, f: impl FnOnce(&mut FakePlusServer)) {
        let mut st = self.lock();
        let s = st
            .upstreams
            .iter_mut()
            .find(|u| u.name == pool)
            .and_then(|u| u.servers.iter_mut().find(|s| s.server == server))
            .unwrap_or_else(|| panic!("lb-lab: the fake NGINX Plus has no {pool}/{server}"));
        f(s);
    }

    /// Turns `api write=on` on or off.
    pub fn set_write(&self, on: bool) {
        self.lock().write = on;
    }

    /// Gives a pool a zone (dynamic) or takes it away (static).
    ///
    /// # Panics
    ///
    /// For an unknown pool.
    pub fn set_zone(&self, pool: &str, on: bool) {
        let mut st = self.lock();
        let u = st
            .upstreams
            .iter_mut()
            .find(|u| u.name == pool)
            .unwrap_or_else(|| panic!("lb-lab: the fake NGINX Plus has no upstream {pool}"));
        u.zone = on;
    }

    /// Sets the `active` connections a peer reports.
    ///
    /// # Panics
    ///
    /// For an unknown pool or server.
    pub fn set_active(&self, pool: &str, server: &str, active: u64) {
        self.with(pool, server, |s| s.active = active);
    }

    /// Sets the health-check state a peer reports when it is neither
    /// `down` nor draining: `up`, `unhealthy`, `unavail` or `checking`.
    ///
    /// # Panics
    ///
    /// For another value, or an unknown pool or server.
    pub fn set_health(&self, pool: &str, server: &str, state: &str) {
        assert!(
            matches!(state, "up" | "unhealthy" | "unavail" | "checking"),
            "lb-lab: {state:?} is not a health state of NGINX Plus"
        );
        self.with(pool, server, |s| s.health = Some(state.to_owned()));
    }

    /// The server as the fake holds it now.
    pub fn server(&self, pool: &str, server: &str) -> Option<FakePlusServer> {
        self.lock()
            .upstreams
            .iter()
            .find(|u| u.name == pool)
            .and_then(|u| u.servers.iter().find(|s| s.server == server))
            .cloned()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<FakePlusRequest> {
        self.lock().log.clone()
    }
}

impl Drop for FakePlus {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let Some(listener) = crate::backend::listen(addr, &ready) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let st = state.clone();
                let svc = service_fn(move |req| handle(req, st.clone()));
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(e.to_string()),
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let (status, out) = match &body {
        Ok(b) => route(&mut st, &method, &path, query.as_deref(), b),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "reading request body failed",
            "BodyReadError",
        ),
    };
    st.log.push(FakePlusRequest {
        method: method.to_string(),
        path: match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        },
        body: body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        status: status.as_u16(),
    });
    drop(st);
    let mut resp = Response::builder().status(status);
    let bytes = match out {
        Some(v) => {
            resp = resp.header("Content-Type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    Ok(resp.body(Full::new(bytes)).expect("static response"))
}

type Answer = (StatusCode, Option<Value>);

fn error(status: StatusCode, text: &str, code: &str) -> Answer {
    let request_id: String = (0..32)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("hex digit"))
        .collect();
    (
        status,
        Some(json!({
            "error": { "status": status.as_u16(), "text": text, "code": code },
            "request_id": request_id,
            "href": HREF,
        })),
    )
}

fn ok(v: Value) -> Answer {
    (StatusCode::OK, Some(v))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Keeps the listed top-level fields of an upstream object (`?fields=`).
fn filter_fields(v: Value, query: Option<&str>) -> Value {
    let Some(fields) = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("fields="))
            .map(percent_decode)
    }) else {
        return v;
    };
    let keep: Vec<&str> = fields.split(',').filter(|f| !f.is_empty()).collect();
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

fn route(st: &mut State, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Answer {
    let not_found = || error(StatusCode::NOT_FOUND, "path not found", "PathNotFound");
    let not_supported = || {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not supported",
            "MethodNotSupported",
        )
    };
    let Some(rest) = path.strip_prefix("/api/") else {
        return not_found();
    };
    let mut segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    if segs.last().is_some_and(String::is_empty) {
        segs.pop();
    }
    let Some(version) = segs.first() else {
        return not_found();
    };
    if version != "9" {
        return error(StatusCode::NOT_FOUND, "unknown version", "UnknownVersion");
    }
    let segs: Vec<&str> = segs[1..].iter().map(String::as_str).collect();
    let allowed: &[Method] = match segs.as_slice() {
        [] | ["http"] | ["http", "upstreams"] => &[Method::GET],
        ["http", "upstreams", _] => &[Method::GET, Method::DELETE],
        ["http", "upstreams", _, "servers"] => &[Method::GET, Method::POST],
        ["http", "upstreams", _, "servers", _] => &[Method::GET, Method::PATCH, Method::DELETE],
        _ => return not_found(),
    };
    if !allowed.contains(method) {
        return not_supported();
    }
    if *method != Method::GET && !st.write {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method disabled",
            "MethodDisabled",
        );
    }
    match segs.as_slice() {
        [] => return ok(json!(["http"])),
        ["http"] => return ok(json!(["upstreams"])),
        ["http", "upstreams"] => {
            let mut m = Map::new();
            for u in st.upstreams.iter().filter(|u| u.zone) {
                m.insert(u.name.clone(), filter_fields(upstream_json(u), query));
            }
            return ok(Value::Object(m));
        }
        _ => {}
    }
    let name = segs[2];
    let Some(u) = st.upstreams.iter_mut().find(|u| u.name == name) else {
        return error(
            StatusCode::NOT_FOUND,
            "upstream not found",
            "UpstreamNotFound",
        );
    };
    if !u.zone {
        return error(
            StatusCode::BAD_REQUEST,
            "upstream is static",
            "UpstreamStatic",
        );
    }
    match (segs.as_slice(), method) {
        ([_, _, _], &Method::GET) => ok(filter_fields(upstream_json(u), query)),
        ([_, _, _], &Method::DELETE) => (StatusCode::NO_CONTENT, None),
        ([_, _, _, _], &Method::GET) => ok(servers_json(u)),
        ([_, _, _, _], &Method::POST) => post_server(u, body),
        ([_, _, _, _, id], m) => {
            let Ok(id) = id.parse::<u64>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid server ID",
                    "UpstreamBadServerId",
                );
            };
            let Some(i) = u.servers.iter().position(|s| s.id == id) else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("server with ID \"{id}\" does not exist"),
                    "UpstreamServerNotFound",
                );
            };
            match *m {
                Method::GET => ok(u.servers[i].conf_json()),
                Method::PATCH => patch_server(u, i, body),
                _ => {
                    u.servers.remove(i);
                    ok(servers_json(u))
                }
            }
        }
        _ => not_supported(),
    }
}

fn upstream_json(u: &Upstream) -> Value {
    json!({
        "peers": u.servers.iter().map(FakePlusServer::peer_json).collect::<Vec<_>>(),
        "keepalive": 0,
        "zombies": 0,
        "zone": u.name,
    })
}

fn servers_json(u: &Upstream) -> Value {
    Value::Array(u.servers.iter().map(FakePlusServer::conf_json).collect())
}

/// An nginx time: one or more `NUMBER[unit]` with units ms, s, m, h, d, w,
/// M, y (a bare number is seconds).
fn is_nginx_time(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "M", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None if rest.is_empty() => {}
            None => return false,
        }
    }
    true
}

/// Validates a `NginxHTTPUpstreamConfServer` body and applies it to `s`
/// (all or nothing: `s` is a copy until the caller keeps it).
fn apply_conf(
    s: &mut FakePlusServer,
    body: &Map<String, Value>,
    creating: bool,
) -> Result<(), Answer> {
    let bad = |text: String, code: &str| Err(error(StatusCode::BAD_REQUEST, &text, code));
    let int = |v: &Value| v.as_u64().filter(|n| *n <= i32::MAX as u64);
    for (k, v) in body {
        if v.is_object() || v.is_array() {
            return bad("nested object or list".into(), "UpstreamConfFormatError");
        }
        match k.as_str() {
            "server" => match v.as_str() {
                Some(a) if !a.is_empty() && !a.contains(char::is_whitespace) => s.server = a.into(),
                _ => return bad("invalid \"server\" argument".into(), "UpstreamBadAddress"),
            },
            "weight" => match int(v).filter(|w| *w >= 1) {
                Some(w) => s.weight = w,
                None => return bad("invalid \"weight\"".into(), "UpstreamBadWeight"),
            },
            "max_conns" => match int(v) {
                Some(n) => s.max_conns = n,
                None => return bad("invalid \"max_conns\"".into(), "UpstreamBadMaxConns"),
            },
            "max_fails" => match int(v) {
                Some(n) => s.max_fails = n,
                None => return bad("invalid \"max_fails\"".into(), "UpstreamBadMaxFails"),
            },
            "fail_timeout" => match v.as_str().filter(|t| is_nginx_time(t)) {
                Some(t) => s.fail_timeout = t.into(),
                None => return bad("invalid \"fail_timeout\"".into(), "UpstreamBadFailTimeout"),
            },
            "slow_start" => match v.as_str().filter(|t| is_nginx_time(t)) {
                Some(t) => s.slow_start = t.into(),
                None => return bad("invalid \"slow_start\"".into(), "UpstreamBadSlowStart"),
            },
            "route" => match v.as_str() {
                Some(r) => s.route = r.into(),
                None => return bad("invalid \"route\" value".into(), "UpstreamConfFormatError"),
            },
            "down" => match v.as_bool() {
                Some(b) => s.down = b,
                None => return bad("invalid \"down\" value".into(), "UpstreamConfFormatError"),
            },
            "drain" => match v.as_bool() {
                Some(b) => s.drain = b,
                None => return bad("invalid \"drain\" value".into(), "UpstreamConfFormatError"),
            },
            "backup" if creating => match v.as_bool() {
                Some(b) => s.backup = b,
                None => return bad("invalid \"backup\" value".into(), "UpstreamConfFormatError"),
            },
            // Read-only: "cannot be changed".
            "id" | "backup" | "service" | "parent" | "host" => {
                return bad(format!("invalid \"{k}\" value"), "UpstreamConfFormatError");
            }
            other => {
                return bad(
                    format!("unknown parameter \"{other}\""),
                    "UpstreamConfFormatError",
                );
            }
        }
    }
    Ok(())
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, Answer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "JSON error",
            "JsonError",
        )),
    }
}

fn patch_server(u: &mut Upstream, i: usize, body: &[u8]) -> Answer {
    let obj = match json_object(body) {
        Ok(o) => o,
        Err(a) => return a,
    };
    let mut s = u.servers[i].clone();
    if let Err(a) = apply_conf(&mut s, &obj, false) {
        return a;
    }
    u.servers[i] = s;
    ok(u.servers[i].conf_json())
}

fn post_server(u: &mut Upstream, body: &[u8]) -> Answer {
    let obj = match json_object(body) {
        Ok(o) => o,
        Err(a) => return a,
    };
    if !obj.contains_key("server") {
        return error(
            StatusCode::BAD_REQUEST,
            "missing \"server\" argument",
            "UpstreamConfFormatError",
        );
    }
    let mut s = FakePlusServer::new(u.next_id, "");
    if let Err(a) = apply_conf(&mut s, &obj, true) {
        return a;
    }
    if u.servers.iter().any(|x| x.server == s.server) {
        return error(StatusCode::CONFLICT, "entry exists", "EntryExists");
    }
    u.next_id += 1;
    let v = s.conf_json();
    u.servers.push(s);
    (StatusCode::CREATED, Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_times_and_percent_decoding() {
        for t in ["10s", "1m30s", "500ms", "5", "1h", "2d"] {
            assert!(is_nginx_time(t), "{t}");
        }
        for t in ["", "s", "10x", "1.5s", "-1s"] {
            assert!(!is_nginx_time(t), "{t}");
        }
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
