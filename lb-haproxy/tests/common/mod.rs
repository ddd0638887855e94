//! What the integration tests share: driver construction, polling, a keep-alive client.
#![allow(dead_code)]

use std::time::Duration;

use lb_core::{Balancer, Member, MemberRef};
use lb_haproxy::Haproxy;

/// The driver on the lab's unix admin socket.
pub fn on_unix(lab: &lb_lab::Haproxy) -> Haproxy {
    Haproxy::builder("edge")
        .socket(lab.admin_socket().to_str().expect("UTF-8 path"))
        .build()
        .expect("a valid driver")
}

/// The driver on the lab's TCP admin socket.
pub fn on_tcp(lab: &lb_lab::Haproxy) -> Haproxy {
    Haproxy::builder("edge")
        .socket(&format!("tcp://{}", lab.admin_tcp()))
        .build()
        .expect("a valid driver")
}

pub fn mref(pool: &str, member: &str) -> MemberRef {
    MemberRef::new(pool, member)
}

/// The member `pool/name` as the driver lists it.
pub async fn member(lb: &Haproxy, pool: &str, name: &str) -> Member {
    let all = lb.members().await.expect("members()");
    let mut found = all.into_iter().filter(|m| m.pool == pool && m.name == name);
    let m = found
        .next()
        .unwrap_or_else(|| panic!("{pool}/{name} is not listed"));
    assert!(found.next().is_none(), "{pool}/{name} is listed twice");
    m
}

/// Polls `members()` every 50 ms until `pool/name` satisfies `ok`, for at
/// most 20 s (a generous bound for a loaded machine; it is not a timing
/// assertion: the condition is what the test checks).
pub async fn wait_member(
    lb: &Haproxy,
    pool: &str,
    name: &str,
    what: &str,
    ok: impl Fn(&Member) -> bool,
) -> Member {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = member(lb, pool, name).await;
        if ok(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pool}/{name} never became {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs blocking work (the lab's HTTP client) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// An HTTP/1.1 client that keeps ONE connection open and sends every
/// request on it, with a persistence cookie, as a browser pinned to a
/// server does. It never reconnects: if the connection is closed, the
/// next request fails.
pub struct KeepAlive {
    reader: std::io::BufReader<std::net::TcpStream>,
    host: String,
    cookie: String,
    pub sent: usize,
}

impl KeepAlive {
    /// Connects to `url`'s host and port.
    pub fn connect(url: &str, cookie: &str) -> KeepAlive {
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let s = std::net::TcpStream::connect(&host).expect("connect to the frontend");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        KeepAlive {
            reader: std::io::BufReader::new(s),
            host,
            cookie: cookie.to_owned(),
            sent: 0,
        }
    }

    /// `GET path` on the open connection: the status and the backend that
    /// answered (`X-Backend`, empty when none did).
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{BufRead, Read, Write};
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
            self.host, self.cookie
        );
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.sent += 1;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection was closed",
            ));
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
        let (mut len, mut backend, mut close) = (0usize, String::new(), false);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-backend" => backend = v.trim().to_owned(),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        if close {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("the frontend answered {status} and closes the connection"),
            ));
        }
        Ok((status, backend))
    }
}

/// A pool whose servers carry a persistence cookie (`SRV=<name>`), as a
/// sticky application (sessions, logins) is set up.
pub fn sticky_pool(name: &str, backends: &[lb_lab::Backend]) -> lb_lab::PoolSpec {
    let mut p = lb_lab::PoolSpec::new(name).directive("cookie SRV insert indirect nocache");
    for b in backends {
        p.members.push(lb_lab::MemberSpec {
            name: b.id().to_owned(),
            addr: b.addr(),
            weight: None,
            extra: format!("cookie {}", b.id()),
        });
    }
    p
}
