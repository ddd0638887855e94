//! A stand-in for Confluence Data Center's zero-downtime-upgrade REST API
//! (`/rest/zdu/cluster/zdu/…`), serving the cluster state machine over
//! real application nodes: a node's state and version come from asking
//! the node itself (`GET /status` and `X-Version` of a `lab-app`), so
//! stopping and starting a node moves the cluster as in Confluence.
//!
//! - `GET  …/state` (and `GET …/zdu`): `{"state", "originalClusterVersion", "nodes":[…]}`
//! - `POST …/start`: `STABLE` → `READY_TO_UPGRADE` (409 otherwise, or with a node in `ERROR`)
//! - `GET  …/nodes/{id}`: `{"id", "name", "state", "buildNumber"}`; node
//!   states `ACTIVE`, `STARTING`, `OFFLINE`, `ERROR`
//! - `POST …/cancel`: `READY_TO_UPGRADE` → `STABLE`; 409 in `MIXED` (and otherwise)
//! - `POST …/approve`: `READY_TO_RUN_UPGRADE_TASKS` → `STABLE` (409 otherwise)
//!
//! `READY_TO_UPGRADE` turns `MIXED` once a node runs another version than
//! the cluster's, and `MIXED` turns `READY_TO_RUN_UPGRADE_TASKS` once every
//! node that is not `OFFLINE` (one shut down after an error) is `ACTIVE`
//! on the same new version. POSTs need `X-Atlassian-Token:
//! no-check` (403 without, as Atlassian's XSRF check answers), and with
//! credentials set every call needs them (401).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::ports::{PortLease, lease_port};

const BASE: &str = "/rest/zdu/cluster/zdu";

#[derive(Debug)]
struct Cluster {
    state: String,
    version: String,
    nodes: Vec<(String, SocketAddr)>,
    last_version: Vec<String>,
    errors: BTreeSet<String>,
    calls: Vec<String>,
    auth: Option<String>,
}

/// The fake ZDU API on its own port and thread. `Drop` stops it.
#[derive(Debug)]
pub struct FakeZdu {
    lease: PortLease,
    cluster: Arc<Mutex<Cluster>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeZdu {
    /// Serves a `STABLE` cluster at `version` whose nodes are
    /// `(id, address of its lab-app)`.
    pub fn start(nodes: &[(&str, SocketAddr)], version: &str) -> FakeZdu {
        FakeZdu::start_with(nodes, version, None)
    }

    /// As [`start`](Self::start), requiring basic auth `user:password`.
    ///
    /// # Panics
    ///
    /// When the port cannot be bound.
    pub fn start_with(
        nodes: &[(&str, SocketAddr)],
        version: &str,
        auth: Option<(&str, &str)>,
    ) -> FakeZdu {
        use base64_lite::encode;
        let cluster = Arc::new(Mutex::new(Cluster {
            state: "STABLE".into(),
            version: version.into(),
            nodes: nodes.iter().map(|(i, a)| (i.to_string(), *a)).collect(),
            last_version: vec![version.to_string(); nodes.len()],
            errors: BTreeSet::new(),
            calls: Vec::new(),
            auth: auth.map(|(u, p)| format!("Basic {}", encode(format!("{u}:{p}").as_bytes()))),
        }));
        let lease = lease_port();
        let addr = lease.addr();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let c = cluster.clone();
        let thread = std::thread::Builder::new()
            .name("fake-zdu".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(run(addr, c, stop_rx, ready_tx));
            })
            .expect("spawn fake-zdu");
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("lb-lab: fake ZDU cannot listen on {addr}: {e}"),
            Err(_) => panic!("lb-lab: fake ZDU died while starting"),
        }
        FakeZdu {
            lease,
            cluster,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (the base URL a plan's `[zdu] url` takes).
    pub fn url(&self) -> String {
        format!("http://{}", self.lease.addr())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster state as last computed.
    pub fn state(&self) -> String {
        self.lock().state.clone()
    }

    /// Forces the cluster state (to test how lbctl meets it).
    pub fn set_state(&self, s: &str) {
        self.lock().state = s.into();
    }

    /// The cluster's version (what `approve` moves it to).
    pub fn version(&self) -> String {
        self.lock().version.clone()
    }

    /// Puts node `id` in `ERROR` (or takes it out).
    pub fn set_error(&self, id: &str, on: bool) {
        let mut c = self.lock();
        if on {
            c.errors.insert(id.into());
        } else {
            c.errors.remove(id);
        }
    }

    /// Every call so far, as `METHOD /path -> STATUS`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

impl Drop for FakeZdu {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    addr: SocketAddr,
    cluster: Arc<Mutex<Cluster>>,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let c = cluster.clone();
                let svc = service_fn(move |req| handle(req, c.clone()));
                tokio::spawn(async move {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }
    }
}

/// Asks a lab-app node what it is: `(state, version)`.
async fn probe(addr: SocketAddr) -> (String, Option<String>) {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /status HTTP/1.0\r\nHost: node\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(2), ask).await else {
        return ("OFFLINE".into(), None);
    };
    let version = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-version")
            .then(|| v.trim().to_string())
    });
    let state = if text.contains("\"STARTING\"") {
        "STARTING"
    } else if text.contains("\"RUNNING\"") {
        "ACTIVE"
    } else {
        "OFFLINE"
    };
    (state.into(), version)
}

/// Every node's `(id, state, version)`, and the cluster state moved on by
/// what the nodes run now.
async fn evaluate(cluster: &Arc<Mutex<Cluster>>) -> Vec<(String, String, String)> {
    let nodes = cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .nodes
        .clone();
    let mut seen = Vec::new();
    for (_, addr) in &nodes {
        seen.push(probe(*addr).await);
    }
    let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::new();
    for (i, (id, _)) in nodes.iter().enumerate() {
        if let Some(v) = &seen[i].1 {
            c.last_version[i] = v.clone();
        }
        let state = if c.errors.contains(id) {
            "ERROR".to_string()
        } else {
            seen[i].0.clone()
        };
        out.push((id.clone(), state, c.last_version[i].clone()));
    }
    let version = c.version.clone();
    if c.state == "READY_TO_UPGRADE" && out.iter().any(|(_, _, v)| *v != version) {
        c.state = "MIXED".into();
    }
    // A node shut down (OFFLINE) does not hold the upgrade back: once
    // every other node is ACTIVE on the new version, the upgrade can be
    // finished (Confluence's troubleshooting for a node in error).
    if c.state == "MIXED" {
        let online: Vec<_> = out.iter().filter(|(_, s, _)| s != "OFFLINE").collect();
        if let Some((_, _, first)) = online.first()
            && online
                .iter()
                .all(|(_, s, v)| s == "ACTIVE" && v == first && *v != version)
        {
            c.state = "READY_TO_RUN_UPGRADE_TASKS".into();
        }
    }
    out
}

fn node_json(id: &str, state: &str, version: &str) -> String {
    format!(
        "{{\"id\":\"{id}\",\"name\":\"{id}\",\"state\":\"{state}\",\"buildNumber\":\"{version}\"}}"
    )
}

fn cluster_json(c: &Cluster, nodes: &[(String, String, String)]) -> String {
    format!(
        "{{\"state\":\"{}\",\"originalClusterVersion\":\"{}\",\"nodes\":[{}]}}",
        c.state,
        c.version,
        nodes
            .iter()
            .map(|(i, s, v)| node_json(i, s, v))
            .collect::<Vec<_>>()
            .join(",")
    )
}

async fn handle(
    req: Request<Incoming>,
    cluster: Arc<Mutex<Cluster>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (auth, xsrf) = (header("authorization"), header("x-atlassian-token"));
    let nodes = evaluate(&cluster).await;
    let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
    let conflict = |m: String| (409, format!("{{\"message\":\"{m}\"}}"));
    let (status, body) = if c.auth.is_some() && auth != c.auth {
        (401, "{\"message\":\"authentication required\"}".to_string())
    } else if method == "POST" && xsrf.as_deref() != Some("no-check") {
        (403, "{\"message\":\"XSRF check failed\"}".to_string())
    } else {
        let rest = path.strip_prefix(BASE).unwrap_or("/unknown");
        match (method.as_str(), rest) {
            ("GET", "" | "/" | "/state") => (200, cluster_json(&c, &nodes)),
            ("POST", "/start") => {
                if c.state != "STABLE" {
                    conflict(format!(
                        "cannot start an upgrade: the cluster is {}",
                        c.state
                    ))
                } else if nodes.iter().any(|(_, s, _)| s == "ERROR") {
                    conflict("cannot start an upgrade: a node is in ERROR".into())
                } else {
                    c.state = "READY_TO_UPGRADE".into();
                    (200, cluster_json(&c, &nodes))
                }
            }
            ("POST", "/cancel") => {
                if c.state == "READY_TO_UPGRADE" {
                    c.state = "STABLE".into();
                    (200, cluster_json(&c, &nodes))
                } else {
                    conflict(format!("cannot cancel: the cluster is {}", c.state))
                }
            }
            ("POST", "/approve") => {
                if c.state == "READY_TO_RUN_UPGRADE_TASKS" {
                    c.version = nodes[0].2.clone();
                    c.state = "STABLE".into();
                    (200, cluster_json(&c, &nodes))
                } else {
                    conflict(format!("cannot approve: the cluster is {}", c.state))
                }
            }
            ("GET", r) if r.starts_with("/nodes/") => {
                let id = &r["/nodes/".len()..];
                match nodes.iter().find(|(i, _, _)| i == id) {
                    Some((i, s, v)) => (200, node_json(i, s, v)),
                    None => (404, format!("{{\"message\":\"no node {id}\"}}")),
                }
            }
            _ => (404, "{\"message\":\"not found\"}".to_string()),
        }
    };
    c.calls.push(format!("{method} {path} -> {status}"));
    Ok(Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response"))
}

mod base64_lite {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(b: &[u8]) -> String {
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    #[cfg(test)]
    #[test]
    fn encodes_like_rfc_4648() {
        assert_eq!(encode(b"admin:secret"), "YWRtaW46c2VjcmV0");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"a"), "YQ==");
    }
}
