//! A fake Azure Resource Manager for Application Gateways, with a fake
//! Entra ID token endpoint.
//!
//! There is no Azure emulator, so this server follows the REST contract of
//! `Microsoft.Network/applicationGateways` (api-version 2025-07-01) as
//! Azure documents it and as its published examples show (the examples are
//! in `tests/fixtures/azure/`, see [`EXAMPLE_GET`] and its siblings):
//!
//! - every ARM request needs `Authorization: Bearer <token>` with a token it
//!   issued or was told to accept (401 `AuthenticationFailed` /
//!   `InvalidAuthenticationToken` otherwise) and an `api-version`;
//! - `GET …/applicationGateways/{gw}` answers the stored body with an
//!   `etag` (in the body and the `ETag` header) that changes on every write;
//! - `PUT` honours `If-Match` (412 `PreconditionFailed`), stores the body
//!   verbatim (unknown properties included), answers 201 (new) or 200 with
//!   `Azure-AsyncOperation` and `Retry-After`; the operation reads
//!   `InProgress` ([`FakeArm::set_async_polls`] times) before its end
//!   (`Succeeded`, or an injected `Failed` / `Canceled`); a PUT while an
//!   operation runs cancels that one with
//!   `CanceledAndSupersededDueToAnotherOperation`, as Application Gateway does;
//! - `POST …/backendhealth` answers 202 + `Location` (polled until 200) or
//!   200 at once, in the shape of `ApplicationGatewayBackendHealthGet.json`;
//! - `POST /{tenant}/oauth2/v2.0/token` issues tokens for the clients added
//!   with [`FakeArm::add_client`] (the client-credentials grant).
//!
//! Faults are injected per request ([`PutFault`], [`GetFault`]) and every
//! request is logged ([`FakeArm::requests`]). It serves plain HTTP, or
//! HTTPS with a certificate for `127.0.0.1` and `localhost` signed by the
//! lab's test CA ([`FakeArm::start_tls`], [`TEST_CA_PEM`]) — which Entra ID
//! clients require, since they refuse an `http://` authority.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::ports::{PortLease, lease_port};

/// Azure's published `ApplicationGateways_Get` example (api-version
/// 2025-07-01), unmodified; the body is at `responses."200".body`.
pub const EXAMPLE_GET: &str = include_str!("../fixtures/azure/ApplicationGatewayGet.json");
/// Azure's published `ApplicationGateways_CreateOrUpdate` example; the
/// request body is at `parameters.parameters`.
pub const EXAMPLE_CREATE: &str = include_str!("../fixtures/azure/ApplicationGatewayCreate.json");
/// Azure's published `ApplicationGateways_BackendHealth` example.
pub const EXAMPLE_BACKEND_HEALTH: &str =
    include_str!("../fixtures/azure/ApplicationGatewayBackendHealthGet.json");

/// The lab's test CA (PEM): it signed the certificate [`FakeArm::start_tls`]
/// serves (for `127.0.0.1` and `localhost`). Test-only; never trust it
/// anywhere else.
pub const TEST_CA_PEM: &str = include_str!("../certs/ca.pem");
pub(crate) const SERVER_CERT_PEM: &str = include_str!("../certs/server.pem");
pub(crate) const SERVER_KEY_PEM: &str = include_str!("../certs/server-key.pem");

/// What the next `PUT` of a gateway meets (queued with
/// [`FakeArm::push_put_fault`], one fault per PUT, in order).
pub enum PutFault {
    /// 409 `CanceledAndSupersededDueToAnotherOperation`; nothing stored.
    Superseded,
    /// 409 `AnotherOperationInProgress`; nothing stored.
    AnotherOperationInProgress,
    /// 412 `PreconditionFailed`, whatever `If-Match` says; nothing stored.
    PreconditionFailed,
    /// 429 `TooManyRequests` with `Retry-After`; nothing stored.
    TooManyRequests,
    /// 500 `InternalServerError`; nothing stored.
    ServerError,
    /// 403 with this ARM error code (e.g. `LinkedAuthorizationFailed`).
    Forbidden(String),
    /// Accepted (200/201 + `Azure-AsyncOperation`), but the operation ends
    /// `Failed` with this code and message. `keep`: the gateway keeps the
    /// new body (with `provisioningState: Failed`); otherwise it goes back
    /// to the body before this PUT (also `Failed`).
    Failed {
        /// Azure's error code.
        code: String,
        /// Azure's error message.
        message: String,
        /// Whether the gateway keeps the body of the failed PUT.
        keep: bool,
    },
    /// Accepted, but the operation ends `Canceled` with
    /// `CanceledAndSupersededDueToAnotherOperation`; the body stays stored.
    Canceled,
    /// Someone else writes the gateway just before this PUT arrives (the
    /// change is applied and the etag changes, so a PUT carrying the old
    /// `If-Match` gets 412). The PUT itself is then handled normally.
    ConcurrentChange(Box<dyn FnOnce(&mut Value) + Send>),
}

impl fmt::Debug for PutFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutFault::Superseded => f.write_str("Superseded"),
            PutFault::AnotherOperationInProgress => f.write_str("AnotherOperationInProgress"),
            PutFault::PreconditionFailed => f.write_str("PreconditionFailed"),
            PutFault::TooManyRequests => f.write_str("TooManyRequests"),
            PutFault::ServerError => f.write_str("ServerError"),
            PutFault::Forbidden(c) => write!(f, "Forbidden({c})"),
            PutFault::Failed {
                code,
                message,
                keep,
            } => write!(f, "Failed({code}, {message}, keep: {keep})"),
            PutFault::Canceled => f.write_str("Canceled"),
            PutFault::ConcurrentChange(_) => f.write_str("ConcurrentChange(..)"),
        }
    }
}

/// What the next `GET` of a gateway meets (queued with
/// [`FakeArm::push_get_fault`]).
#[derive(Debug, Clone)]
pub enum GetFault {
    /// 429 `TooManyRequests` with `Retry-After`.
    TooManyRequests,
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// 403 with this ARM error code (e.g. `AuthorizationFailed`).
    Forbidden(String),
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `GET`, `PUT`, `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (empty if none).
    pub query: String,
    /// The `If-Match` header, if sent.
    pub if_match: Option<String>,
    /// The status the fake answered.
    pub status: u16,
}

impl Logged {
    /// Whether this is a `PUT` of an application gateway.
    pub fn is_gateway_put(&self) -> bool {
        self.method == "PUT"
            && self
                .path
                .to_ascii_lowercase()
                .contains("/applicationgateways/")
    }
}

/// One token request the fake received (the secret is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The tenant in the path.
    pub tenant: String,
    /// The `client_id` form field.
    pub client_id: String,
    /// The `scope` form field.
    pub scope: String,
    /// The status the fake answered.
    pub status: u16,
}

struct Gateway {
    body: Value,
}

enum End {
    Succeeded,
    Failed {
        code: String,
        message: String,
        keep: bool,
        previous: Value,
    },
    Canceled,
}

struct Operation {
    gateway: String,
    polls_left: u32,
    end: End,
    done: Option<Value>,
}

struct HealthOp {
    gateway: String,
    polls_left: u32,
}

struct Client {
    tenant: String,
    client_id: String,
    secret: String,
}

struct State {
    base: String,
    /// The base of the `Azure-AsyncOperation` and `Location` URLs it hands out.
    async_base: Option<String>,
    location: String,
    tokens: Vec<String>,
    clients: Vec<Client>,
    gateways: HashMap<String, Gateway>,
    operations: HashMap<String, Operation>,
    health_ops: HashMap<String, HealthOp>,
    put_faults: VecDeque<PutFault>,
    get_faults: VecDeque<GetFault>,
    health_faults: VecDeque<GetFault>,
    health: HashMap<String, String>,
    async_polls: u32,
    health_polls: u32,
    retry_after: u32,
    log: Vec<Logged>,
    token_log: Vec<TokenRequest>,
    counter: u64,
}

impl State {
    fn next_id(&mut self) -> String {
        self.counter += 1;
        let r: u32 = rand::rng().random();
        format!("{r:08x}-0000-4000-8000-{:012x}", self.counter)
    }

    fn new_etag(&mut self) -> String {
        format!("W/\"{}\"", self.next_id())
    }
}

/// A fake ARM (and Entra ID token endpoint) on a loopback port of its own,
/// served from a thread of its own (so it serves whatever runtime the test
/// uses, or none). Stopped on drop.
///
/// ```no_run
/// use lb_lab::FakeArm;
///
/// let arm = FakeArm::start();
/// arm.accept_token("t0ken");
/// let body: serde_json::Value = serde_json::from_str(lb_lab::fake_arm::EXAMPLE_GET).unwrap();
/// arm.insert_gateway("subid", "rg1", "appgw", body["responses"]["200"]["body"].clone());
/// println!("ARM endpoint: {}", arm.endpoint());
/// ```
pub struct FakeArm {
    lease: PortLease,
    tls: bool,
    state: Arc<Mutex<State>>,
    ca_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeArm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeArm")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl FakeArm {
    /// Starts a fake ARM speaking plain HTTP.
    pub fn start() -> FakeArm {
        FakeArm::start_with(false)
    }

    /// Starts a fake ARM speaking HTTPS with a certificate signed by
    /// [`TEST_CA_PEM`] (see [`FakeArm::ca_file`]).
    pub fn start_tls() -> FakeArm {
        FakeArm::start_with(true)
    }

    fn start_with(tls: bool) -> FakeArm {
        let lease = lease_port();
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{}", lease.port());
        let ca_dir = tempfile::Builder::new()
            .prefix("lb-lab-arm-")
            .tempdir()
            .expect("temp dir for the fake ARM's CA");
        std::fs::write(ca_dir.path().join("ca.pem"), TEST_CA_PEM).expect("write the test CA");
        let state = Arc::new(Mutex::new(State {
            base,
            async_base: None,
            location: "westeurope".into(),
            tokens: Vec::new(),
            clients: Vec::new(),
            gateways: HashMap::new(),
            operations: HashMap::new(),
            health_ops: HashMap::new(),
            put_faults: VecDeque::new(),
            get_faults: VecDeque::new(),
            health_faults: VecDeque::new(),
            health: HashMap::new(),
            async_polls: 1,
            health_polls: 1,
            retry_after: 10,
            log: Vec::new(),
            token_log: Vec::new(),
            counter: 0,
        }));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let addr = lease.addr();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-arm".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake ARM runtime");
                rt.block_on(serve(addr, tls, st, stop_rx, ready_tx));
            })
            .expect("spawn the fake ARM thread");
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("lb-lab: the fake ARM cannot listen on {addr}: {e}"),
            Err(_) => panic!("lb-lab: the fake ARM died while starting"),
        }
        FakeArm {
            lease,
            tls,
            state,
            ca_dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The base URL: `http://127.0.0.1:PORT` (or `https://…`), to use as
    /// the ARM endpoint and as the Entra ID authority host.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.lease.port())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.lease.addr()
    }

    /// A PEM file holding [`TEST_CA_PEM`] (lives as long as the fake).
    pub fn ca_file(&self) -> PathBuf {
        self.ca_dir.path().join("ca.pem")
    }

    /// The path of a gateway:
    /// `/subscriptions/S/resourceGroups/R/providers/Microsoft.Network/applicationGateways/G`.
    pub fn gateway_path(subscription: &str, resource_group: &str, gateway: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Network/applicationGateways/{gateway}"
        )
    }

    /// Accepts `token` as a bearer token from now on.
    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.push(token.to_owned());
    }

    /// Registers a service principal for the client-credentials grant at
    /// `POST /{tenant}/oauth2/v2.0/token`; the tokens issued to it are
    /// accepted by ARM.
    pub fn add_client(&self, tenant: &str, client_id: &str, secret: &str) {
        self.lock().clients.push(Client {
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: secret.into(),
        });
    }

    /// Stores `body` as gateway `S/R/G`, as if created long ago:
    /// `provisioningState: Succeeded`, a fresh etag, `id`, `name` and
    /// `type` filled in where missing. Everything else is kept verbatim.
    pub fn insert_gateway(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        body: Value,
    ) {
        let mut st = self.lock();
        let path = FakeArm::gateway_path(subscription, resource_group, name);
        let mut body = body;
        complete_ids(&mut body, &path, name);
        set_provisioning(&mut body, "Succeeded");
        let etag = st.new_etag();
        set_etags(&mut body, &etag);
        st.gateways.insert(key_of(&path), Gateway { body });
    }

    /// The gateway as stored now (with its etag), if any.
    pub fn gateway(&self, subscription: &str, resource_group: &str, name: &str) -> Option<Value> {
        let path = FakeArm::gateway_path(subscription, resource_group, name);
        self.lock()
            .gateways
            .get(&key_of(&path))
            .map(|g| g.body.clone())
    }

    /// Someone else (portal, CLI) changes the gateway now: `f` edits the
    /// stored body and the etag changes.
    ///
    /// # Panics
    ///
    /// When there is no such gateway.
    pub fn modify_gateway(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) {
        let mut st = self.lock();
        let key = key_of(&FakeArm::gateway_path(subscription, resource_group, name));
        let etag = st.new_etag();
        let g = st
            .gateways
            .get_mut(&key)
            .unwrap_or_else(|| panic!("lb-lab: no gateway {key}"));
        f(&mut g.body);
        set_etags(&mut g.body, &etag);
    }

    /// Queues a fault for the next gateway PUT that has none yet.
    pub fn push_put_fault(&self, fault: PutFault) {
        self.lock().put_faults.push_back(fault);
    }

    /// Queues a fault for the next gateway GET that has none yet.
    pub fn push_get_fault(&self, fault: GetFault) {
        self.lock().get_faults.push_back(fault);
    }

    /// Queues a fault for the next `POST …/backendhealth`.
    pub fn push_health_fault(&self, fault: GetFault) {
        self.lock().health_faults.push_back(fault);
    }

    /// How many times an operation reads `InProgress` before it ends
    /// (default 1).
    pub fn set_async_polls(&self, n: u32) {
        self.lock().async_polls = n;
    }

    /// How many times the backend-health result reads 202 before 200;
    /// 0 answers the POST with 200 and the body at once (default 1).
    pub fn set_health_polls(&self, n: u32) {
        self.lock().health_polls = n;
    }

    /// Hands out `Azure-AsyncOperation` and `Location` URLs on `base`
    /// (e.g. another host) instead of its own endpoint.
    pub fn set_async_base(&self, base: &str) {
        self.lock().async_base = Some(base.trim_end_matches('/').to_owned());
    }

    /// The `Retry-After` seconds it sends (default 10, as ARM does; tests
    /// cap the wait on the client side).
    pub fn set_retry_after(&self, seconds: u32) {
        self.lock().retry_after = seconds;
    }

    /// The health the backend-health API reports for `address` (default
    /// `Up`); any string, including values Azure may add later.
    pub fn set_health(&self, address: &str, health: &str) {
        self.lock()
            .health
            .insert(address.to_ascii_lowercase(), health.to_owned());
    }

    /// Every ARM request so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// Every token request so far, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.lock().token_log.clone()
    }

    /// The number of gateway PUTs received so far.
    pub fn put_count(&self) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|l| l.is_gateway_put())
            .count()
    }
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn key_of(path: &str) -> String {
    path.trim_end_matches('/').to_ascii_lowercase()
}

fn tls_acceptor() -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(SERVER_CERT_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("test certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes())
        .map_err(|e| format!("test key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let acceptor = if tls {
        match tls_acceptor() {
            Ok(a) => Some(a),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    } else {
        None
    };
    let Some(listener) = crate::backend::listen(addr, &ready) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let st = state.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, st.clone()));
                    let mut conn = http1::Builder::new();
                    conn.keep_alive(true);
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ = conn.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        }
    }
    // Dropping the runtime closes every connection left.
}

/// An answer before it becomes a hyper response.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer::json(status, json!({"error": {"code": code, "message": message}}))
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let if_match = header("if-match");
    let auth = header("authorization");
    let content_type = header("content-type");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let answer = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segs.len() == 4
            && segs[1].eq_ignore_ascii_case("oauth2")
            && segs[2] == "v2.0"
            && segs[3] == "token"
            && method == "POST"
        {
            token(&mut st, segs[0], &body)
        } else {
            let a = arm(
                &mut st,
                &method,
                &segs,
                &query,
                if_match.as_deref(),
                auth.as_deref(),
                content_type.as_deref(),
                &body,
            );
            st.log.push(Logged {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                if_match: if_match.clone(),
                status: a.status,
            });
            a
        }
    };
    let mut rsp = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(
            "x-ms-request-id",
            format!("{:016x}", rand::rng().random::<u64>()),
        );
    for (k, v) in &answer.headers {
        rsp = rsp.header(*k, v);
    }
    let bytes = match &answer.body {
        Some(v) => {
            rsp = rsp.header("Content-Type", "application/json; charset=utf-8");
            Bytes::from(serde_json::to_vec(v).unwrap_or_default())
        }
        None => Bytes::new(),
    };
    Ok(rsp
        .body(Full::new(bytes))
        .expect("a valid fake ARM response"))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url_decode_pairs(std::str::from_utf8(body).ok()?)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

fn token(st: &mut State, tenant: &str, body: &[u8]) -> Answer {
    let client_id = form_field(body, "client_id").unwrap_or_default();
    let secret = form_field(body, "client_secret").unwrap_or_default();
    let scope = form_field(body, "scope").unwrap_or_default();
    let grant = form_field(body, "grant_type").unwrap_or_default();
    let known = st
        .clients
        .iter()
        .any(|c| c.tenant == tenant && c.client_id == client_id && c.secret == secret);
    let answer = if grant != "client_credentials" {
        Answer::json(
            400,
            json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003: The app requested an unsupported grant type.", "error_codes": [70003]}),
        )
    } else if !scope.ends_with("/.default") {
        Answer::json(
            400,
            json!({"error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", "error_codes": [1002012]}),
        )
    } else if !known {
        Answer::json(
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.", "error_codes": [7000215]}),
        )
    } else {
        let t = format!("fake-arm-token-{}", st.next_id());
        st.tokens.push(t.clone());
        Answer::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t}),
        )
    };
    st.token_log.push(TokenRequest {
        tenant: tenant.to_owned(),
        client_id,
        scope,
        status: answer.status,
    });
    answer
}

#[allow(clippy::too_many_arguments)]
fn arm(
    st: &mut State,
    method: &str,
    segs: &[&str],
    query: &str,
    if_match: Option<&str>,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    match auth {
        None => {
            return Answer::error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
            .header("WWW-Authenticate", "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\"");
        }
        Some(a) => {
            let ok = a
                .strip_prefix("Bearer ")
                .is_some_and(|t| st.tokens.iter().any(|x| x == t));
            if !ok {
                return Answer::error(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                )
                .header("WWW-Authenticate", "Bearer error=\"invalid_token\", error_description=\"The access token is invalid.\"");
            }
        }
    }
    let api_version = url_decode_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v);
    if api_version.as_deref().is_none_or(str::is_empty) {
        return Answer::error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let is = |i: usize, s: &str| segs.get(i).is_some_and(|x| x.eq_ignore_ascii_case(s));
    // /subscriptions/S/resourceGroups/R/providers/Microsoft.Network/applicationGateways/G[/backendhealth]
    if segs.len() >= 8
        && is(0, "subscriptions")
        && is(2, "resourceGroups")
        && is(4, "providers")
        && is(5, "Microsoft.Network")
        && is(6, "applicationGateways")
    {
        let gw_path = format!("/{}", segs[..8].join("/"));
        let key = key_of(&gw_path);
        return match (segs.len(), method) {
            (8, "GET") => get_gateway(st, &key, segs[7], segs[3]),
            (8, "PUT") => put_gateway(st, &key, &gw_path, segs[7], if_match, content_type, body),
            (9, "POST") if is(8, "backendhealth") => backend_health(st, &key, segs[7], segs[3]),
            _ => Answer::error(
                405,
                "MethodNotAllowed",
                &format!("The requested resource does not support http method '{method}'."),
            ),
        };
    }
    // /subscriptions/S/providers/Microsoft.Network/locations/L/operations/ID
    // /subscriptions/S/providers/Microsoft.Network/locations/L/operationResults/ID
    if segs.len() == 8
        && method == "GET"
        && is(0, "subscriptions")
        && is(2, "providers")
        && is(3, "Microsoft.Network")
        && is(4, "locations")
    {
        if is(6, "operations") {
            return operation(st, segs[7]);
        }
        if is(6, "operationResults") {
            return health_result(st, segs[7]);
        }
    }
    Answer::error(
        404,
        "InvalidResourceType",
        "The resource type could not be found in the namespace 'Microsoft.Network' for api version '2025-07-01'.",
    )
}

fn not_found(name: &str, rg: &str) -> Answer {
    Answer::error(
        404,
        "ResourceNotFound",
        &format!(
            "The Resource 'Microsoft.Network/applicationGateways/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn read_fault(st: &State, f: GetFault, key: &str, action: &str) -> Answer {
    match f {
        GetFault::TooManyRequests => Answer::error(
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00.",
        )
        .header("Retry-After", st.retry_after.to_string()),
        GetFault::ServiceUnavailable => Answer::error(
            503,
            "ServiceUnavailable",
            "The server is currently unable to handle the request.",
        ),
        GetFault::Forbidden(code) => Answer::error(
            403,
            &code,
            &format!(
                "The client 'lbctl' does not have authorization to perform action 'Microsoft.Network/applicationGateways/{action}' over scope '{key}' or the scope is invalid."
            ),
        ),
    }
}

fn get_gateway(st: &mut State, key: &str, name: &str, rg: &str) -> Answer {
    if let Some(f) = st.get_faults.pop_front() {
        return read_fault(st, f, key, "read");
    }
    match st.gateways.get(key) {
        Some(g) => {
            let etag = g
                .body
                .get("etag")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Answer::json(200, g.body.clone()).header("ETag", etag)
        }
        None => not_found(name, rg),
    }
}

fn put_gateway(
    st: &mut State,
    key: &str,
    path: &str,
    name: &str,
    if_match: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let retry_after = st.retry_after;
    let mut fault = st.put_faults.pop_front();
    if let Some(PutFault::ConcurrentChange(_)) = &fault {
        let Some(PutFault::ConcurrentChange(f)) = fault.take() else {
            unreachable!()
        };
        let etag = st.new_etag();
        if let Some(g) = st.gateways.get_mut(key) {
            f(&mut g.body);
            set_etags(&mut g.body, &etag);
        }
    }
    match &fault {
        Some(PutFault::Superseded) => {
            return Answer::error(
                409,
                "CanceledAndSupersededDueToAnotherOperation",
                &format!(
                    "Operation PutApplicationGatewayOperation (00000000-0000-0000-0000-000000000000) was canceled and superseded by operation PutApplicationGatewayOperation (11111111-1111-1111-1111-111111111111) on resource {path}."
                ),
            );
        }
        Some(PutFault::AnotherOperationInProgress) => {
            return Answer::error(
                409,
                "AnotherOperationInProgress",
                &format!(
                    "Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: {}/subscriptions/x/providers/Microsoft.Network/locations/{}/operations/0?api-version=2025-07-01.",
                    st.base, st.location
                ),
            );
        }
        Some(PutFault::PreconditionFailed) => {
            return Answer::error(
                412,
                "PreconditionFailed",
                "Precondition failed for the resource. The etag of the resource does not match the etag in the If-Match header.",
            );
        }
        Some(PutFault::TooManyRequests) => {
            return Answer::error(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:05:00.",
            )
            .header("Retry-After", retry_after.to_string());
        }
        Some(PutFault::ServerError) => {
            return Answer::error(500, "InternalServerError", "An error occurred.");
        }
        Some(PutFault::Forbidden(code)) => {
            return Answer::error(
                403,
                code,
                "The client has permission to perform action 'Microsoft.Network/applicationGateways/write' on scope, however the current tenant is not authorized to access linked subscription.",
            );
        }
        _ => {}
    }
    if !content_type.is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json")) {
        return Answer::error(
            415,
            "UnsupportedMediaType",
            "The content media type is not supported. Content-Type must be 'application/json'.",
        );
    }
    let existing = st.gateways.get(key).map(|g| g.body.clone());
    if let Some(want) = if_match {
        let current = existing
            .as_ref()
            .and_then(|b| b.get("etag"))
            .and_then(Value::as_str);
        let ok = match current {
            Some(c) => want == "*" || want == c,
            None => false,
        };
        if !ok {
            return Answer::error(
                412,
                "PreconditionFailed",
                "Precondition failed for the resource. The etag of the resource does not match the etag in the If-Match header.",
            );
        }
    }
    let mut new: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Answer::error(
                400,
                "InvalidRequestFormat",
                "Cannot parse the request: the body is not a JSON object.",
            );
        }
    };
    if let Err(m) = validate_gateway(&new, name, existing.is_none()) {
        return Answer::error(400, "InvalidRequestFormat", &m);
    }
    // Supersede a running operation on this gateway, as Application Gateway does.
    for op in st.operations.values_mut() {
        if op.gateway == key && op.done.is_none() {
            op.end = End::Canceled;
            op.polls_left = 0;
        }
    }
    complete_ids(&mut new, path, name);
    set_provisioning(&mut new, "Updating");
    let etag = st.new_etag();
    set_etags(&mut new, &etag);
    let previous = existing.clone().unwrap_or(Value::Null);
    st.gateways
        .insert(key.to_owned(), Gateway { body: new.clone() });
    let end = match fault {
        Some(PutFault::Failed {
            code,
            message,
            keep,
        }) => End::Failed {
            code,
            message,
            keep,
            previous,
        },
        Some(PutFault::Canceled) => End::Canceled,
        _ => End::Succeeded,
    };
    let id = st.next_id();
    let polls_left = st.async_polls;
    st.operations.insert(
        id.clone(),
        Operation {
            gateway: key.to_owned(),
            polls_left,
            end,
            done: None,
        },
    );
    let sub = path.split('/').nth(2).unwrap_or("");
    let op_url = format!(
        "{}/subscriptions/{sub}/providers/Microsoft.Network/locations/{}/operations/{id}?api-version=2025-07-01",
        st.async_base.as_ref().unwrap_or(&st.base),
        st.location
    );
    let status = if existing.is_some() { 200 } else { 201 };
    Answer::json(status, new)
        .header("ETag", etag)
        .header("Azure-AsyncOperation", op_url)
        .header("Retry-After", retry_after.to_string())
}

/// What ARM would refuse in a gateway body (a small part of its checks).
fn validate_gateway(b: &Value, name: &str, create: bool) -> Result<(), String> {
    if let Some(n) = b.get("name").and_then(Value::as_str)
        && !n.eq_ignore_ascii_case(name)
    {
        return Err(format!(
            "The name '{n}' in the body does not match the name '{name}' in the URL."
        ));
    }
    if create && b.get("location").and_then(Value::as_str).is_none() {
        return Err("The 'location' property is required to create a resource.".into());
    }
    let props = match b.get("properties") {
        None => return Ok(()),
        Some(Value::Object(p)) => p,
        Some(_) => return Err("'properties' must be an object.".into()),
    };
    if let Some(pools) = props.get("backendAddressPools") {
        let pools = pools
            .as_array()
            .ok_or("'backendAddressPools' must be an array.")?;
        for p in pools {
            let pname = p.get("name").and_then(Value::as_str).unwrap_or("?");
            let addrs = p.pointer("/properties/backendAddresses");
            let Some(addrs) = addrs else { continue };
            let addrs = addrs
                .as_array()
                .ok_or_else(|| format!("backendAddresses of pool '{pname}' must be an array."))?;
            let mut seen = std::collections::HashSet::new();
            for a in addrs {
                let addr = match a {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => match (o.get("ipAddress"), o.get("fqdn")) {
                        (Some(Value::String(s)), None) | (None, Some(Value::String(s))) => {
                            s.clone()
                        }
                        _ => {
                            return Err(format!(
                                "A backend address of pool '{pname}' must have exactly one of ipAddress or fqdn: {a}"
                            ));
                        }
                    },
                    _ => {
                        return Err(format!("Invalid backend address in pool '{pname}': {a}"));
                    }
                };
                if !seen.insert(addr.to_ascii_lowercase()) {
                    return Err(format!(
                        "Backend address '{addr}' appears twice in pool '{pname}'."
                    ));
                }
            }
        }
    }
    Ok(())
}

fn operation(st: &mut State, id: &str) -> Answer {
    let retry_after = st.retry_after;
    let Some(op) = st.operations.get_mut(id) else {
        return Answer::error(404, "OperationNotFound", "The operation was not found.");
    };
    if let Some(done) = &op.done {
        return Answer::json(200, done.clone());
    }
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return Answer::json(200, json!({"status": "InProgress"}))
            .header("Retry-After", retry_after.to_string());
    }
    let gw_key = op.gateway.clone();
    let end = std::mem::replace(&mut op.end, End::Succeeded);
    let (result, body_after): (Value, Option<(Option<Value>, &str)>) = match end {
        End::Succeeded => (json!({"status": "Succeeded"}), Some((None, "Succeeded"))),
        End::Failed {
            code,
            message,
            keep,
            previous,
        } => {
            let restore = (!keep && !previous.is_null()).then_some(previous);
            (
                json!({"status": "Failed", "error": {"code": code, "message": message}}),
                Some((restore, "Failed")),
            )
        }
        End::Canceled => {
            // Superseded: the newer operation governs the provisioning
            // state; with none running (an injected cancel), it is over.
            let newer_running = st
                .operations
                .iter()
                .any(|(k, o)| k != id && o.gateway == gw_key && o.done.is_none());
            (
                json!({"status": "Canceled", "error": {"code": "CanceledAndSupersededDueToAnotherOperation", "message": "Operation PutApplicationGatewayOperation was canceled and superseded by another operation on this resource."}}),
                (!newer_running).then_some((None, "Succeeded")),
            )
        }
    };
    let Some(op) = st.operations.get_mut(id) else {
        unreachable!("the operation was just read")
    };
    op.done = Some(result.clone());
    if let Some((restore, state)) = body_after {
        let etag = st.new_etag();
        if let Some(g) = st.gateways.get_mut(&gw_key) {
            if let Some(prev) = restore {
                g.body = prev;
            }
            set_provisioning(&mut g.body, state);
            set_etags(&mut g.body, &etag);
        }
    }
    Answer::json(200, result)
}

fn backend_health(st: &mut State, key: &str, name: &str, rg: &str) -> Answer {
    if !st.gateways.contains_key(key) {
        return not_found(name, rg);
    }
    if let Some(f) = st.health_faults.pop_front() {
        return read_fault(st, f, key, "backendhealth/action");
    }
    if st.health_polls == 0 {
        let body = health_body(st, key);
        return Answer::json(200, body);
    }
    let id = st.next_id();
    st.health_ops.insert(
        id.clone(),
        HealthOp {
            gateway: key.to_owned(),
            polls_left: st.health_polls - 1,
        },
    );
    let sub = key.split('/').nth(2).unwrap_or("");
    let url = format!(
        "{}/subscriptions/{sub}/providers/Microsoft.Network/locations/{}/operationResults/{id}?api-version=2025-07-01",
        st.async_base.as_ref().unwrap_or(&st.base),
        st.location
    );
    Answer {
        status: 202,
        headers: vec![
            ("Location", url),
            ("Retry-After", st.retry_after.to_string()),
        ],
        body: None,
    }
}

fn health_result(st: &mut State, id: &str) -> Answer {
    let retry_after = st.retry_after;
    let Some(op) = st.health_ops.get_mut(id) else {
        return Answer::error(404, "OperationNotFound", "The operation was not found.");
    };
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return Answer {
            status: 202,
            headers: vec![("Retry-After", retry_after.to_string())],
            body: None,
        };
    }
    let key = op.gateway.clone();
    Answer::json(200, health_body(st, &key))
}

/// `{"backendAddressPools":[{"backendAddressPool":{"id"},"backendHttpSettingsCollection":[{"backendHttpSettings":{"id"},"servers":[{"address","health","healthProbeLog"}]}]}]}`
/// for the gateway as stored, pairing pools with the settings the rules
/// route them through. Pool ids use `backendaddressPools`, as Azure's
/// example does.
fn health_body(st: &State, key: &str) -> Value {
    let Some(g) = st.gateways.get(key) else {
        return json!({"backendAddressPools": []});
    };
    let gw_id = g
        .body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let props = g.body.get("properties").cloned().unwrap_or(Value::Null);
    let pairs = routing_pairs(&props);
    let mut pools_out = Vec::new();
    for pool in props
        .get("backendAddressPools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pname = pool.get("name").and_then(Value::as_str).unwrap_or("");
        let servers: Vec<Value> = pool
            .pointer("/properties/backendAddresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| match a {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o
                    .get("ipAddress")
                    .or_else(|| o.get("fqdn"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .map(|addr| {
                let h = st
                    .health
                    .get(&addr.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| "Up".into());
                let log = match h.as_str() {
                    "Up" => "Success. Received 200 status code".to_owned(),
                    "Down" => "Cannot connect to backend server. Check whether any NSG/UDR/Firewall is blocking access to the server.".to_owned(),
                    other => format!("The backend health status is {other}."),
                };
                json!({"address": addr, "health": h, "healthProbeLog": log})
            })
            .collect();
        let mut settings: Vec<String> = pairs
            .iter()
            .filter(|(p, _)| p.eq_ignore_ascii_case(pname))
            .map(|(_, s)| s.clone())
            .collect();
        settings.sort();
        settings.dedup();
        let coll: Vec<Value> = settings
            .iter()
            .map(|s| {
                json!({
                    "backendHttpSettings": {"id": format!("{gw_id}/backendHttpSettingsCollection/{s}")},
                    "servers": servers,
                })
            })
            .collect();
        pools_out.push(json!({
            "backendAddressPool": {"id": format!("{gw_id}/backendaddressPools/{pname}")},
            "backendHttpSettingsCollection": coll,
        }));
    }
    json!({"backendAddressPools": pools_out})
}

/// (pool name, settings name) pairs the gateway's rules route through.
fn routing_pairs(props: &Value) -> Vec<(String, String)> {
    fn last(v: Option<&Value>) -> Option<String> {
        v.and_then(|x| x.get("id"))
            .and_then(Value::as_str)
            .and_then(|id| id.rsplit('/').next())
            .map(str::to_owned)
    }
    let mut out = Vec::new();
    let mut push = |p: Option<&Value>, s: Option<&Value>| {
        if let (Some(p), Some(s)) = (last(p), last(s)) {
            out.push((p, s));
        }
    };
    for r in props
        .get("requestRoutingRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = r.get("properties");
        push(
            p.and_then(|p| p.get("backendAddressPool")),
            p.and_then(|p| p.get("backendHttpSettings")),
        );
    }
    for m in props
        .get("urlPathMaps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = m.get("properties");
        push(
            p.and_then(|p| p.get("defaultBackendAddressPool")),
            p.and_then(|p| p.get("defaultBackendHttpSettings")),
        );
        for r in p
            .and_then(|p| p.get("pathRules"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rp = r.get("properties");
            push(
                rp.and_then(|p| p.get("backendAddressPool")),
                rp.and_then(|p| p.get("backendHttpSettings")),
            );
        }
    }
    out
}

/// Fills in `id`, `name`, `type` of the gateway and the `id` of each
/// named child (pools, settings, rules, …) where missing, as ARM does.
fn complete_ids(body: &mut Value, path: &str, name: &str) {
    let Value::Object(o) = body else { return };
    o.entry("id")
        .or_insert_with(|| Value::String(path.to_owned()));
    o.entry("name")
        .or_insert_with(|| Value::String(name.to_owned()));
    o.entry("type")
        .or_insert_with(|| Value::String("Microsoft.Network/applicationGateways".into()));
    let gw_id = o
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(path)
        .to_owned();
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for (coll, v) in props.iter_mut() {
            let Value::Array(items) = v else { continue };
            for it in items {
                if let Value::Object(child) = it
                    && let Some(n) = child.get("name").and_then(Value::as_str).map(str::to_owned)
                    && !child.contains_key("id")
                {
                    child.insert("id".into(), Value::String(format!("{gw_id}/{coll}/{n}")));
                }
            }
        }
    }
}

fn set_provisioning(body: &mut Value, state: &str) {
    if let Some(Value::Object(p)) = body.get_mut("properties") {
        p.insert("provisioningState".into(), Value::String(state.into()));
    }
}

/// Sets the gateway's `etag`, and every `etag` its children carry (ARM
/// gives them the gateway's).
fn set_etags(body: &mut Value, etag: &str) {
    fn walk(v: &mut Value, etag: &str) {
        match v {
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if k == "etag" && x.is_string() {
                        *x = Value::String(etag.to_owned());
                    } else {
                        walk(x, etag);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, etag)),
            _ => {}
        }
    }
    walk(body, etag);
    if let Value::Object(o) = body {
        o.insert("etag".into(), Value::String(etag.to_owned()));
    }
}
