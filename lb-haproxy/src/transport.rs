//! The runtime API socket: where it is, and one session on it.
//!
//! A [`Session`] is one connection in HAProxy's interactive (`prompt`)
//! mode. [`Session::run`] sends several commands at once and reads one
//! answer per command; the caller looks at the answers before sending the
//! next batch on the same connection (read → decide → write + read back).
//! Every connect and every batch has a deadline, so a socket that never
//! answers is an error, never a hang.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::error::HapError;

/// The longest unix socket path the kernel accepts (`sun_path` less its NUL).
const MAX_UNIX_PATH: usize = 107;

/// Where the runtime API listens.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP host (name or address) and port.
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    /// Parses `/path`, `unix:///path` or `tcp://host:port` (`[v6]:port`).
    pub(crate) fn parse(s: &str) -> Result<Endpoint, String> {
        const FORMS: &str = "expected /path, unix:///path or tcp://host:port";
        if let Some(rest) = s.strip_prefix("tcp://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("socket {s:?} has no port ({FORMS})"))?;
            let host = match host.strip_prefix('[') {
                Some(h) => h
                    .strip_suffix(']')
                    .ok_or_else(|| format!("socket {s:?}: unclosed '[' in the host"))?,
                None => host,
            };
            if host.is_empty() {
                return Err(format!("socket {s:?} has no host ({FORMS})"));
            }
            if host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#@[]".contains(c))
            {
                return Err(format!("socket {s:?}: {host:?} is not a host name"));
            }
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("socket {s:?}: {port:?} is not a port (1-65535)"))?;
            return Ok(Endpoint::Tcp {
                host: host.to_owned(),
                port,
            });
        }
        let path = match s.strip_prefix("unix://") {
            Some(p) => p,
            None if s.contains("://") => {
                return Err(format!("socket {s:?}: unknown scheme ({FORMS})"));
            }
            None => s,
        };
        if !path.starts_with('/') {
            return Err(format!("socket {s:?}: the path must be absolute ({FORMS})"));
        }
        if path.len() > MAX_UNIX_PATH {
            return Err(format!(
                "socket path {path:?} is {} bytes long; unix sockets allow at most {MAX_UNIX_PATH}",
                path.len()
            ));
        }
        if path.contains('\0') {
            return Err(format!("socket path {path:?} contains a NUL byte"));
        }
        Ok(Endpoint::Unix(PathBuf::from(path)))
    }
}

impl Endpoint {
    /// Whether HAProxy runs on this host as far as the address tells: a
    /// unix socket, or TCP on a loopback address.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            Endpoint::Unix(_) => true,
            Endpoint::Tcp { host, .. } => {
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// Connects to `ep` within `timeout`; returns the stream and `ep` as shown.
async fn connect(ep: &Endpoint, timeout: Duration) -> Result<(Stream, String), HapError> {
    let endpoint = ep.to_string();
    let connect = async {
        match ep {
            Endpoint::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
            Endpoint::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(Stream::Tcp),
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(s)) => Ok((s, endpoint)),
        Ok(Err(source)) => {
            if let Endpoint::Unix(p) = ep
                && let Some(kind) = not_a_socket(p.as_path())
            {
                return Err(HapError::NotASocket {
                    path: p.display().to_string(),
                    kind,
                });
            }
            Err(HapError::Connect { endpoint, source })
        }
        Err(_) => Err(HapError::Timeout {
            endpoint,
            what: "accept the connection",
            after: timeout,
        }),
    }
}

/// Runs one command on HAProxy's master CLI (`-S`): connects, sends it,
/// closes the sending side (the master answers a command once its input
/// ends) and reads the answer to the end, all within `timeout`.
pub(crate) async fn master_command(
    ep: &Endpoint,
    timeout: Duration,
    command: &str,
) -> Result<String, HapError> {
    debug_assert!(!command.contains([';', '\n', '\r']), "{command:?}");
    let (stream, endpoint) = connect(ep, timeout).await?;
    let io = |source| HapError::Io {
        endpoint: endpoint.clone(),
        source,
    };
    let work = async {
        let mut out = Vec::new();
        let line = format!("{command}\n");
        match stream {
            Stream::Unix(mut s) => {
                s.write_all(line.as_bytes()).await.map_err(io)?;
                s.shutdown().await.map_err(io)?;
                s.read_to_end(&mut out).await.map_err(io)?;
            }
            Stream::Tcp(mut s) => {
                s.write_all(line.as_bytes()).await.map_err(io)?;
                s.shutdown().await.map_err(io)?;
                s.read_to_end(&mut out).await.map_err(io)?;
            }
        }
        Ok::<_, HapError>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HapError::Timeout {
            endpoint: endpoint.clone(),
            what: "answer",
            after: timeout,
        }),
    }
}

/// One connection to the runtime API, in interactive mode.
pub(crate) struct Session {
    stream: Stream,
    endpoint: String,
    timeout: Duration,
    /// Bytes received and not yet split into answers.
    buf: Vec<u8>,
    /// How far `buf` has been searched for a terminator already.
    scanned: usize,
    /// Whether `prompt` was sent yet (it goes out with the first batch).
    prompted: bool,
}

impl Session {
    /// Connects within `timeout`.
    pub(crate) async fn open(ep: &Endpoint, timeout: Duration) -> Result<Session, HapError> {
        let (stream, endpoint) = connect(ep, timeout).await?;
        if let Stream::Tcp(t) = &stream {
            let _ = t.set_nodelay(true);
        }
        Ok(Session {
            stream,
            endpoint,
            timeout,
            buf: Vec::with_capacity(16 * 1024),
            scanned: 0,
            prompted: false,
        })
    }

    /// Sends `commands` in one write and returns one answer per command,
    /// in order, without HAProxy's terminating empty line: an empty answer
    /// is a success without output.
    ///
    /// Commands must not contain `;`, CR or LF (they are built from
    /// validated names); the whole batch is answered within the timeout.
    pub(crate) async fn run(&mut self, commands: &[String]) -> Result<Vec<String>, HapError> {
        debug_assert!(
            commands
                .iter()
                .all(|c| !c.contains([';', '\n', '\r']) && !c.is_empty()),
            "runtime API commands are single commands: {commands:?}"
        );
        let mut payload = String::new();
        let mut expect = commands.len();
        if !self.prompted {
            payload.push_str("prompt\n");
            expect += 1;
        }
        for c in commands {
            payload.push_str(c);
            payload.push('\n');
        }
        let timeout = self.timeout;
        let first = commands.first().map(String::as_str).unwrap_or("prompt");
        let work = async {
            self.write(payload.as_bytes()).await?;
            let mut answers = Vec::with_capacity(expect);
            while answers.len() < expect {
                let cmd = match (self.prompted, answers.len()) {
                    (false, 0) => "prompt",
                    (false, i) => commands[i - 1].as_str(),
                    (true, i) => commands[i].as_str(),
                };
                answers.push(self.answer(cmd).await?);
            }
            Ok::<_, HapError>(answers)
        };
        let mut answers = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::debug!(command = first, endpoint = %self.endpoint, "no answer in time");
                return Err(HapError::Timeout {
                    endpoint: self.endpoint.clone(),
                    what: "answer",
                    after: timeout,
                });
            }
        };
        if !self.prompted {
            let p = answers.remove(0);
            if !p.is_empty() {
                return Err(HapError::unexpected("prompt", &p));
            }
            self.prompted = true;
        }
        Ok(answers)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), HapError> {
        let r = match &mut self.stream {
            Stream::Unix(s) => s.write_all(bytes).await,
            Stream::Tcp(s) => s.write_all(bytes).await,
        };
        r.map_err(|source| HapError::Io {
            endpoint: self.endpoint.clone(),
            source,
        })
    }

    /// Reads until one whole answer is buffered and returns it.
    async fn answer(&mut self, command: &str) -> Result<String, HapError> {
        loop {
            if let Some(end) = find_terminator(&self.buf, self.scanned) {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + TERMINATOR.len());
                self.scanned = 0;
                return Ok(text);
            }
            self.scanned = self.buf.len().saturating_sub(TERMINATOR.len() - 1);
            if self.buf.capacity() - self.buf.len() < 8 * 1024 {
                self.buf.reserve(self.buf.len().max(16 * 1024));
            }
            let n = match &mut self.stream {
                Stream::Unix(s) => s.read_buf(&mut self.buf).await,
                Stream::Tcp(s) => s.read_buf(&mut self.buf).await,
            }
            .map_err(|source| HapError::Io {
                endpoint: self.endpoint.clone(),
                source,
            })?;
            if n == 0 {
                return Err(HapError::Closed {
                    endpoint: self.endpoint.clone(),
                    command: command.to_owned(),
                });
            }
        }
    }
}

/// What ends every answer in interactive mode: a newline, then the prompt.
const TERMINATOR: &[u8] = b"\n> ";

/// Where the first terminator in `buf` starts, searching from `from`.
///
/// HAProxy writes each command's output, then `"\n> "`; output lines end
/// in `\n`, so an answer with output ends `"…\n\n> "` and an empty one is
/// just `"\n> "`. No runtime API output line starts with `"> "`.
pub(crate) fn find_terminator(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    buf[from..]
        .windows(TERMINATOR.len())
        .position(|w| w == TERMINATOR)
        .map(|i| from + i)
}

/// What `path` is when it exists and is not a socket ("a regular file",
/// "a directory", …); `None` for a socket or no file at all.
fn not_a_socket(path: &std::path::Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_socket() {
        None
    } else if t.is_file() {
        Some("a regular file")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe")
    } else {
        Some("a device")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_socket_forms() {
        assert_eq!(
            Endpoint::parse("/run/haproxy/admin.sock"),
            Ok(Endpoint::Unix("/run/haproxy/admin.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:///run/haproxy/admin.sock"),
            Ok(Endpoint::Unix("/run/haproxy/admin.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:9999"),
            Ok(Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 9999
            })
        );
        let v6 = Endpoint::parse("tcp://[::1]:9999").unwrap();
        assert_eq!(
            v6,
            Endpoint::Tcp {
                host: "::1".into(),
                port: 9999
            }
        );
        assert_eq!(v6.to_string(), "tcp://[::1]:9999");
        assert_eq!(
            Endpoint::parse("tcp://lb.example:9999/")
                .unwrap()
                .to_string(),
            "tcp://lb.example:9999"
        );
    }

    #[test]
    fn refuses_what_is_not_a_socket() {
        for (s, why) in [
            ("", "absolute"),
            ("admin.sock", "absolute"),
            ("unix://admin.sock", "absolute"),
            ("http://127.0.0.1:80", "unknown scheme"),
            ("tcp://127.0.0.1", "no port"),
            ("tcp://:9999", "no host"),
            ("tcp://127.0.0.1:0", "not a port"),
            ("tcp://127.0.0.1:99999", "not a port"),
            ("tcp://127.0.0.1:x", "not a port"),
            ("tcp://a b:1", "not a host name"),
            ("tcp://[::1:1", "unclosed"),
        ] {
            let e = Endpoint::parse(s).unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        let long = format!("/{}", "x".repeat(120));
        assert!(Endpoint::parse(&long).unwrap_err().contains("at most 107"));
    }

    #[test]
    fn finds_answer_ends() {
        assert_eq!(find_terminator(b"\n> ", 0), Some(0));
        assert_eq!(find_terminator(b"No such server.\n\n> ", 0), Some(16));
        assert_eq!(find_terminator(b"1\n# be_id\n", 0), None);
        assert_eq!(find_terminator(b"ab\n>", 0), None);
        assert_eq!(find_terminator(b"ab\n> ", 1), Some(2));
        assert_eq!(find_terminator(b"ab", 9), None);
    }
}
