//! A webhook receiver on a loopback port: keeps every JSON body POSTed to
//! it, in order, and can answer 500 to the first requests (to exercise a
//! sender's retries). A plain thread with a blocking listener; stopped
//! (its port closed) on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ports::{PortLease, lease_port};

#[derive(Debug, Default)]
struct Shared {
    bodies: Mutex<Vec<String>>,
    fail_first: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
}

/// The receiver.
#[derive(Debug)]
pub struct Webhook {
    lease: PortLease,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    /// A receiver that answers 204 to every POST.
    pub fn start() -> Webhook {
        Webhook::start_failing(0)
    }

    /// A receiver that answers 500 to its first `n` requests, then 204.
    ///
    /// # Panics
    ///
    /// When the leased port cannot be bound.
    pub fn start_failing(n: usize) -> Webhook {
        let lease = lease_port();
        let listener = TcpListener::bind(lease.addr()).expect("bind webhook");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            fail_first: AtomicUsize::new(n),
            ..Shared::default()
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = serve(conn, &s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Webhook {
            lease,
            shared,
            thread: Some(thread),
        }
    }

    /// Where to POST: `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.lease.addr())
    }

    /// Every body accepted (answered 204), in order.
    pub fn bodies(&self) -> Vec<String> {
        self.shared
            .bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many requests were answered 500.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection (`Connection: close`).
fn serve(conn: TcpStream, s: &Shared) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut len = 0usize;
    let mut first = String::new();
    r.read_line(&mut first)?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let fail = s
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        s.failed.fetch_add(1, Ordering::SeqCst);
        "500 Internal Server Error"
    } else {
        if first.starts_with("POST ") {
            s.bodies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(String::from_utf8_lossy(&body).into_owned());
        }
        "204 No Content"
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    w.flush()
}
