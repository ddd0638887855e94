use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::oneshot;

use crate::ports::{PortLease, lease_port};

/// A small HTTP backend on its own loopback port, run on a thread of its
/// own (so it serves whatever runtime the test uses).
///
/// - `/health` → 200 `ok`
/// - `/slow?ms=N` → its id, after N ms
/// - anything else → 200 with its id as the body
///
/// Every answer carries `X-Backend: ID`. It stops and starts again on the
/// same port, and counts the requests it served and has in flight.
#[derive(Debug)]
pub struct Backend {
    id: String,
    lease: PortLease,
    hits: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<Duration>,
    thread: JoinHandle<()>,
}

impl Backend {
    /// Starts a backend answering as `id` on a fresh port.
    pub fn start(id: &str) -> Backend {
        let mut b = Backend {
            id: id.into(),
            lease: lease_port(),
            hits: Arc::default(),
            in_flight: Arc::default(),
            running: None,
        };
        b.start_again();
        b
    }

    /// Starts `n` backends named `node1` … `nodeN`.
    pub fn start_many(n: usize) -> Vec<Backend> {
        (1..=n)
            .map(|i| Backend::start(&format!("node{i}")))
            .collect()
    }

    /// Its id (also the `X-Backend` header and the body of `/`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.lease.addr()
    }

    /// `http://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// Requests served so far (all paths, `/health` included).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops gracefully: closes the port at once, lets requests in flight
    /// finish (up to 30 s), closes idle keep-alive connections. Returns
    /// when the port is closed and the requests are done.
    pub fn stop(&mut self) {
        self.shutdown(Duration::from_secs(30));
    }

    /// Stops at once: the port and every connection close, requests in
    /// flight are cut.
    pub fn kill(&mut self) {
        self.shutdown(Duration::ZERO);
    }

    fn shutdown(&mut self, grace: Duration) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(grace);
            let _ = r.thread.join();
        }
    }

    /// Starts serving again on the same port (after [`stop`](Self::stop)).
    ///
    /// # Panics
    ///
    /// When the port cannot be bound again.
    pub fn start_again(&mut self) {
        if self.running.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel::<Duration>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (id, addr) = (self.id.clone(), self.addr());
        let (hits, in_flight) = (self.hits.clone(), self.in_flight.clone());
        let thread = std::thread::Builder::new()
            .name(format!("backend-{id}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("backend runtime");
                let app = Arc::new(AppMode::default());
                rt.block_on(serve(id, addr, hits, in_flight, app, stop_rx, ready_tx));
            })
            .expect("spawn backend thread");
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("lb-lab: backend {} cannot listen on {addr}: {e}", self.id),
            Err(_) => panic!("lb-lab: backend {} died while starting", self.id),
        }
        self.running = Some(Running {
            stop: stop_tx,
            thread,
        });
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a backend run as an application node (the `lab-app` binary)
/// differs from the in-process [`Backend`]: it reports a version, and for
/// a while after it starts it is "starting" (`/health` and
/// `/-/readiness` answer 503, `/status` says `STARTING`), as real
/// applications are. A version whose name begins with `bad` answers 500
/// to every request but `/status`, `/health`, `/-/readiness` and
/// `/metrics` (a release that passes its health checks but fails its
/// users). `/metrics` counts the
/// answers in Prometheus' text format:
/// `lab_responses_total{node="ID",code="200"|"500"}`.
#[derive(Debug, Default)]
pub(crate) struct AppMode {
    /// `X-Version` on every answer; `None`: a plain lab backend.
    pub version: Option<String>,
    /// Until when it is starting.
    pub starting_until: Option<std::time::Instant>,
    /// Answers with status 200 so far (`/metrics` excluded).
    pub ok: AtomicU64,
    /// Answers with status 500 so far.
    pub errors: AtomicU64,
}

impl AppMode {
    fn starting(&self) -> bool {
        self.starting_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }
}

pub(crate) async fn serve(
    id: String,
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    app: Arc<AppMode>,
    mut stop: oneshot::Receiver<Duration>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let Some(listener) = crate::backend::listen(addr, &ready) else {
        return;
    };
    let graceful = GracefulShutdown::new();
    let id: Arc<str> = id.into();
    let grace = loop {
        tokio::select! {
            g = &mut stop => break g.unwrap_or(Duration::ZERO),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (id, hits, in_flight) = (id.clone(), hits.clone(), in_flight.clone());
                let app = app.clone();
                let svc = service_fn(move |req| {
                    handle(req, id.clone(), hits.clone(), in_flight.clone(), app.clone())
                });
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    };
    drop(listener);
    if !grace.is_zero() {
        let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    }
    // Dropping the runtime closes whatever connection is left.
}

async fn handle(
    req: Request<Incoming>,
    id: Arc<str>,
    hits: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    app: Arc<AppMode>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    in_flight.fetch_add(1, Ordering::SeqCst);
    struct Done(Arc<AtomicU64>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _done = Done(in_flight);
    let path = req.uri().path();
    if let Some(version) = &app.version {
        if path == "/metrics" {
            let body = format!(
                "# TYPE lab_responses_total counter\n\
                 lab_responses_total{{node=\"{id}\",code=\"200\"}} {}\n\
                 lab_responses_total{{node=\"{id}\",code=\"500\"}} {}\n",
                app.ok.load(Ordering::SeqCst),
                app.errors.load(Ordering::SeqCst)
            );
            return Ok(Response::builder()
                .header("Content-Type", "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(body)))
                .expect("static response"));
        }
        let starting = app.starting();
        let (status, body) = match path {
            "/status" => (
                200,
                format!(
                    "{{\"state\":\"{}\"}}",
                    if starting { "STARTING" } else { "RUNNING" }
                ),
            ),
            "/health" | "/-/readiness" if starting => (503, "{\"status\":\"starting\"}".into()),
            "/-/readiness" => (200, "{\"status\":\"ok\"}".into()),
            _ => (0, String::new()),
        };
        if status == 0 && version.starts_with("bad") && path != "/health" {
            app.errors.fetch_add(1, Ordering::SeqCst);
            return Ok(Response::builder()
                .status(500)
                .header("X-Backend", &*id)
                .header("X-Version", version.as_str())
                .body(Full::new(Bytes::from("broken release\n")))
                .expect("static response"));
        }
        if status == 200 || status == 0 {
            app.ok.fetch_add(1, Ordering::SeqCst);
        }
        if status != 0 {
            return Ok(Response::builder()
                .status(status)
                .header("X-Backend", &*id)
                .header("X-Version", version.as_str())
                .header("Content-Type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("static response"));
        }
    }
    let body = if path == "/health" {
        "ok\n".to_string()
    } else {
        if path == "/slow" {
            let ms = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        format!("{id}\n")
    };
    let mut resp = Response::builder()
        .header("X-Backend", &*id)
        .header("Content-Type", "text/plain");
    if let Some(v) = &app.version {
        resp = resp.header("X-Version", v.as_str());
    }
    Ok(resp
        .body(Full::new(Bytes::from(body)))
        .expect("static response"))
}

/// Binds `addr` (with `SO_REUSEADDR`, so a restart can take the same port
/// at once) inside the serving thread's runtime, and tells the starting
/// thread through `ready` whether it worked.
pub(crate) fn listen(
    addr: SocketAddr,
    ready: &std::sync::mpsc::Sender<Result<(), String>>,
) -> Option<tokio::net::TcpListener> {
    let bound = (|| {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.set_reuseaddr(true)?;
        s.bind(addr)?;
        s.listen(1024)
    })();
    let _ = ready.send(bound.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    bound.ok()
}
