//! A load generator: N keep-alive HTTP/1.1 connections (hyper's client),
//! each sending `GET` after `GET` until stopped, counting every request
//! and every failure: non-2xx answers, connections that could not be
//! made, connections that broke under a request, and timeouts.
//!
//! Each connection is one user, as a browser tab is: it keeps the cookies
//! it was given (name and value; attributes are ignored) and sends them
//! with every request, across reconnections, so balancers' cookie
//! persistence (HAProxy `cookie … insert`, Apache `stickysession`) holds
//! it on one server.
//!
//! Like any keep-alive client pool, a connection the server closed while
//! it was idle is replaced without a request being lost; a request that
//! was written and got no answer is a failure (counted as `idle_close`
//! when it was the first request of a reused connection to find it
//! closed: the race every keep-alive client has with a server that closes
//! idle connections).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rand::{Rng as _, SeedableRng as _};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// A request's time limit (connect + answer).
    pub timeout: Duration,
    /// Each connection's pause between requests, on average: each pause
    /// is drawn between half and one and a half times this, and each
    /// connection starts after a random part of it, so that users do not
    /// move in lock-step.
    pub pause: Duration,
}

impl LoadOptions {
    /// `n` users clicking through pages: each sends a request about every
    /// 300 ms after its last answer (give the URL a slow path, such as
    /// `slow?ms=200`, for requests that take a while).
    pub fn users(n: usize) -> LoadOptions {
        LoadOptions {
            connections: n,
            pause: Duration::from_millis(300),
            ..LoadOptions::default()
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            connections: 8,
            timeout: Duration::from_secs(10),
            pause: Duration::from_millis(2),
        }
    }
}

/// What a load run counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests attempted (each failure counts as one).
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Every failure: `non_2xx + connect_errors + connection_errors + timeouts`.
    pub failed: u64,
    /// Answers that were not 2xx.
    pub non_2xx: u64,
    /// Connections that could not be made (refused, reset).
    pub connect_errors: u64,
    /// Requests whose connection broke before the answer was complete.
    pub connection_errors: u64,
    /// Of `connection_errors`: requests on a reused keep-alive connection
    /// that broke before any answer came — the server closed that idle
    /// connection as the request went out (nginx does at every reload).
    pub idle_close: u64,
    /// Requests with no answer within the timeout.
    pub timeouts: u64,
    /// 2xx answers per `X-Backend`.
    pub by_backend: BTreeMap<String, u64>,
    /// 2xx answers per `X-Version`.
    pub by_version: BTreeMap<String, u64>,
    /// The first failures, with when they happened (ms since the start).
    pub samples: Vec<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    non_2xx: AtomicU64,
    connect_errors: AtomicU64,
    connection_errors: AtomicU64,
    idle_close: AtomicU64,
    timeouts: AtomicU64,
    seen: Mutex<Seen>,
}

/// Answers per backend, per version, and the first failures.
type Seen = (BTreeMap<String, u64>, BTreeMap<String, u64>, Vec<String>);

/// A running load. [`stop`](Load::stop) ends it and returns the counts.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Duration>>,
}

struct Target {
    host: String,
    addr: String,
    path: String,
}

fn parse(url: &str) -> Target {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("lb-lab: load needs an http:// URL, not {url}"));
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Target {
        host: hostport.into(),
        addr: hostport.into(),
        path: path.into(),
    }
}

impl Load {
    /// Starts loading `url` (an `http://` URL) on a thread of its own.
    pub fn start(url: &str, opts: LoadOptions) -> Load {
        let target = Arc::new(parse(url));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (s, c) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("load".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("load runtime");
                let t0 = Instant::now();
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..opts.connections.max(1))
                        .map(|_| {
                            tokio::spawn(connection(
                                target.clone(),
                                opts.clone(),
                                s.clone(),
                                c.clone(),
                                t0,
                            ))
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                t0.elapsed()
            })
            .expect("spawn load thread");
        Load {
            stop,
            counters,
            thread: Some(thread),
        }
    }

    /// Requests so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::SeqCst)
    }

    /// Failed requests so far (every kind, as [`LoadReport::failed`]).
    pub fn failed(&self) -> u64 {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        get(&c.non_2xx) + get(&c.connect_errors) + get(&c.connection_errors) + get(&c.timeouts)
    }

    /// 2xx answers so far per `X-Backend`.
    pub fn by_backend(&self) -> BTreeMap<String, u64> {
        self.counters
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Waits until `n` more requests have succeeded (at most 30 s).
    ///
    /// # Panics
    ///
    /// When they do not within 30 s.
    pub fn wait_for_ok(&self, n: u64) {
        let goal = self.ok() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok() < goal {
            assert!(
                Instant::now() < deadline,
                "lb-lab: load: {n} more successful requests did not come within 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops (every connection finishes its current request) and returns
    /// the counts.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let elapsed = self
            .thread
            .take()
            .map(|t| t.join().expect("load thread"))
            .unwrap_or_default();
        let c = &self.counters;
        let (by_backend, by_version, samples) =
            c.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let r = LoadReport {
            requests: get(&c.requests),
            ok: get(&c.ok),
            failed: self.failed(),
            non_2xx: get(&c.non_2xx),
            connect_errors: get(&c.connect_errors),
            connection_errors: get(&c.connection_errors),
            idle_close: get(&c.idle_close),
            timeouts: get(&c.timeouts),
            by_backend,
            by_version,
            samples,
            elapsed,
        };
        debug_assert_eq!(r.requests, r.ok + r.failed);
        r
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sample(c: &Counters, t0: Instant, what: String) {
    let mut seen = c.seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.2.len() < 20 {
        seen.2
            .push(format!("{} ms: {what}", t0.elapsed().as_millis()));
    }
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(t: &Target) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(&t.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connection(
    t: Arc<Target>,
    opts: LoadOptions,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
    t0: Instant,
) {
    let mut conn: Option<(Sender, u64)> = None;
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    if !opts.pause.is_zero() {
        tokio::time::sleep(opts.pause.mul_f64(rng.random_range(0.0..1.0))).await;
    }
    while !stop.load(Ordering::SeqCst) {
        if !opts.pause.is_zero() {
            tokio::time::sleep(opts.pause.mul_f64(rng.random_range(0.5..1.5))).await;
        }
        // A connection the server closed while idle is replaced; no
        // request was lost on it.
        if let Some((s, _)) = &mut conn
            && (s.is_closed() || s.ready().await.is_err())
        {
            conn = None;
        }
        let (mut sender, used) = match conn.take() {
            Some(x) => x,
            None => match tokio::time::timeout(opts.timeout, connect(&t)).await {
                Ok(Ok(s)) => (s, 0),
                Ok(Err(e)) => {
                    c.requests.fetch_add(1, Ordering::SeqCst);
                    c.connect_errors.fetch_add(1, Ordering::SeqCst);
                    sample(&c, t0, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    c.requests.fetch_add(1, Ordering::SeqCst);
                    c.timeouts.fetch_add(1, Ordering::SeqCst);
                    sample(&c, t0, "connect: timeout".into());
                    continue;
                }
            },
        };
        let mut req = hyper::Request::get(&t.path).header("Host", &t.host);
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("Cookie", cookies.join("; "));
        }
        let req = req.body(Empty::<Bytes>::new()).expect("request");
        c.requests.fetch_add(1, Ordering::SeqCst);
        // Whether the answer's head came: a failure before it, on a reused
        // connection, is the server closing that idle connection under the
        // request.
        let mut head = false;
        let answer = tokio::time::timeout(opts.timeout, async {
            let resp = sender.send_request(req).await?;
            head = true;
            let status = resp.status();
            let header = |n: &str| {
                resp.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (backend, version) = (header("x-backend"), header("x-version"));
            let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            for c in resp.headers().get_all("set-cookie") {
                let pair = c
                    .to_str()
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default();
                if let Some((k, v)) = pair.split_once('=') {
                    jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, backend, version, close))
        })
        .await;
        match answer {
            Ok(Ok((status, backend, version, close))) => {
                if status.is_success() {
                    c.ok.fetch_add(1, Ordering::SeqCst);
                    let mut seen = c.seen.lock().unwrap_or_else(|p| p.into_inner());
                    *seen
                        .0
                        .entry(backend.unwrap_or_else(|| "?".into()))
                        .or_default() += 1;
                    *seen
                        .1
                        .entry(version.unwrap_or_else(|| "?".into()))
                        .or_default() += 1;
                } else {
                    c.non_2xx.fetch_add(1, Ordering::SeqCst);
                    sample(
                        &c,
                        t0,
                        format!("status {status} from {}", backend.unwrap_or_default()),
                    );
                }
                if !close {
                    conn = Some((sender, used + 1));
                }
            }
            Ok(Err(e)) => {
                c.connection_errors.fetch_add(1, Ordering::SeqCst);
                let idle = used > 0 && !head;
                if idle {
                    c.idle_close.fetch_add(1, Ordering::SeqCst);
                }
                let when = if idle {
                    "no answer (idle close)"
                } else if head {
                    "after the answer's head"
                } else {
                    "no answer"
                };
                sample(
                    &c,
                    t0,
                    format!("request {} on this connection, {when}: {e}", used + 1),
                );
            }
            Err(_) => {
                c.timeouts.fetch_add(1, Ordering::SeqCst);
                sample(&c, t0, "no answer within the timeout".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Haproxy, Pools};

    #[test]
    fn counts_answers_and_every_kind_of_failure() {
        let mut b = Backend::start("node1");
        let load = Load::start(
            &b.url(),
            LoadOptions {
                connections: 2,
                ..LoadOptions::default()
            },
        );
        load.wait_for_ok(50);
        b.kill();
        std::thread::sleep(Duration::from_millis(200));
        b.start_again();
        load.wait_for_ok(50);
        let r = load.stop();
        assert!(r.ok >= 100, "{r:?}");
        assert_eq!(r.requests, r.ok + r.failed, "{r:?}");
        assert!(
            r.connect_errors > 0,
            "refused while the backend was down: {r:?}"
        );
        assert_eq!(r.by_backend.get("node1"), Some(&r.ok));
        assert!(!r.samples.is_empty());
    }

    #[test]
    fn a_balancer_with_no_server_left_is_counted_as_non_2xx() {
        let mut b = Backend::start("node1");
        let hap = Haproxy::start(&Pools::new().pool("app", std::slice::from_ref(&b)));
        let load = Load::start(&hap.frontend_url("app"), LoadOptions::default());
        load.wait_for_ok(20);
        b.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while load.counters.non_2xx.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "haproxy never answered 503");
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = load.stop();
        assert!(r.non_2xx > 0 && r.failed >= r.non_2xx, "{r:?}");
        assert!(r.samples.iter().any(|s| s.contains("503")), "{r:?}");
        assert_eq!(r.requests, r.ok + r.failed);
    }
}
