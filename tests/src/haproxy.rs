use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::{Daemon, find_binary, lab_dir};
use crate::pools::Pools;
use crate::ports::{PortLease, lease_port};

/// Extra configuration for [`Haproxy::start_with`].
#[derive(Debug, Clone)]
pub struct HaproxyOptions {
    /// Lines added to `global`.
    pub global: Vec<String>,
    /// Lines added to `defaults`.
    pub defaults: Vec<String>,
    /// Health-check parameters on every server line (empty: no checks).
    pub check: String,
}

impl Default for HaproxyOptions {
    fn default() -> Self {
        HaproxyOptions {
            global: Vec::new(),
            defaults: Vec::new(),
            check: "check inter 200 fall 2 rise 1".into(),
        }
    }
}

/// A real `haproxy -W` (master-worker) on loopback: one frontend per pool,
/// an admin runtime socket on a unix path and on TCP, a `level user`
/// socket for permission tests, and the master CLI (`-S`) on a unix path.
#[derive(Debug)]
pub struct Haproxy {
    daemon: Daemon,
    dir: tempfile::TempDir,
    frontends: Vec<(String, PortLease)>,
    admin_tcp: PortLease,
    user_tcp: PortLease,
}

impl Haproxy {
    /// Starts haproxy with default options.
    pub fn start(pools: &Pools) -> Haproxy {
        Haproxy::start_with(pools, &HaproxyOptions::default())
    }

    /// Starts haproxy and waits until every frontend and the admin socket
    /// answer.
    ///
    /// # Panics
    ///
    /// When haproxy is not installed (says `apt-get install haproxy`), or
    /// does not start (with its log).
    pub fn start_with(pools: &Pools, opts: &HaproxyOptions) -> Haproxy {
        let bin = find_binary("haproxy", "haproxy");
        let dir = lab_dir("lb-haproxy-");
        let frontends: Vec<_> = pools
            .pools
            .iter()
            .map(|p| (p.name.clone(), lease_port()))
            .collect();
        let (admin_tcp, user_tcp) = (lease_port(), lease_port());
        let d = dir.path();
        let mut c = String::new();
        let _ = writeln!(c, "global");
        let _ = writeln!(
            c,
            "    stats socket {}/admin.sock mode 600 level admin",
            d.display()
        );
        let _ = writeln!(c, "    stats socket ipv4@{} level admin", admin_tcp.addr());
        let _ = writeln!(
            c,
            "    stats socket {}/user.sock mode 600 level user",
            d.display()
        );
        let _ = writeln!(c, "    stats socket ipv4@{} level user", user_tcp.addr());
        let _ = writeln!(c, "    stats timeout 2m");
        for l in &opts.global {
            let _ = writeln!(c, "    {l}");
        }
        let _ = writeln!(
            c,
            "\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    timeout http-keep-alive 10s"
        );
        for l in &opts.defaults {
            let _ = writeln!(c, "    {l}");
        }
        for (p, (_, fe)) in pools.pools.iter().zip(&frontends) {
            let _ = writeln!(
                c,
                "\nfrontend fe_{}\n    bind {}\n    default_backend {}",
                p.name,
                fe.addr(),
                p.name
            );
            let _ = writeln!(
                c,
                "\nbackend {}\n    balance roundrobin\n    option httpchk GET /health",
                p.name
            );
            for l in &p.extra {
                let _ = writeln!(c, "    {l}");
            }
            for m in &p.members {
                let _ = write!(c, "    server {} {} {}", m.name, m.addr, opts.check);
                if let Some(w) = m.weight {
                    let _ = write!(c, " weight {w}");
                }
                let _ = writeln!(c, " {}", m.extra);
            }
        }
        let cfg = d.join("haproxy.cfg");
        std::fs::write(&cfg, c).expect("write haproxy.cfg");
        let mut cmd = Command::new(bin);
        cmd.arg("-W")
            .arg("-db")
            .arg("-S")
            .arg(d.join("master.sock"))
            .arg("-f")
            .arg(&cfg)
            .current_dir(d);
        let mut ports: Vec<u16> = frontends.iter().map(|(_, l)| l.port()).collect();
        ports.push(admin_tcp.port());
        let mut daemon = Daemon::spawn("haproxy", cmd, &d.join("haproxy.log"), ports);
        let sock = d.join("admin.sock");
        daemon.wait_ready(|| sock.exists());
        Haproxy {
            daemon,
            dir,
            frontends,
            admin_tcp,
            user_tcp,
        }
    }

    /// `http://127.0.0.1:PORT/` of the frontend for `pool`.
    ///
    /// # Panics
    ///
    /// For a pool it was not started with.
    pub fn frontend_url(&self, pool: &str) -> String {
        let (_, l) = self
            .frontends
            .iter()
            .find(|(p, _)| p == pool)
            .unwrap_or_else(|| panic!("lb-lab: haproxy has no pool {pool}"));
        format!("http://{}/", l.addr())
    }

    /// The unix admin socket (`level admin`).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The master CLI socket (`-S`): `show proc`, and `@!PID` to reach
    /// any worker, old ones still finishing after a reload included.
    pub fn master_socket(&self) -> PathBuf {
        self.dir.path().join("master.sock")
    }

    /// The TCP admin socket (`level admin`).
    pub fn admin_tcp(&self) -> SocketAddr {
        self.admin_tcp.addr()
    }

    /// A unix socket at `level user` (writes are denied).
    pub fn user_socket(&self) -> PathBuf {
        self.dir.path().join("user.sock")
    }

    /// A TCP socket at `level user`.
    pub fn user_tcp(&self) -> SocketAddr {
        self.user_tcp.addr()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// Its temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master's PID (also the process group of every worker).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The daemon handle (ports, log).
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Sends one runtime API command on the TCP admin socket and returns the
    /// answer.
    ///
    /// # Panics
    ///
    /// When the socket does not answer.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = TcpStream::connect(self.admin_tcp()).expect("connect to haproxy admin socket");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(format!("{cmd}\n").as_bytes())
            .expect("send command");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read answer");
        out
    }

    fn worker_pid(&self) -> Option<String> {
        let s = TcpStream::connect(self.admin_tcp()).ok()?;
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"show info\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .map(str::to_owned)
    }

    /// Kills the master and every worker at once (SIGKILL to the process
    /// group), as a crash or an OOM kill would, and waits until the admin
    /// socket refuses connections.
    ///
    /// # Panics
    ///
    /// When the socket still answers after 5 s.
    pub fn crash(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            Signal::SIGKILL,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(self.admin_tcp()).is_ok() {
            assert!(
                Instant::now() < deadline,
                "lb-lab: haproxy survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reloads (SIGUSR2 to the master) and waits until a new worker answers
    /// on the admin socket. A master still settling after its start can
    /// miss the signal, so it is sent again every 2 s until the new worker
    /// shows (a reload is idempotent).
    ///
    /// # Panics
    ///
    /// When no new worker answers within 10 s.
    pub fn reload(&self) {
        let old = self.worker_pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut next_signal = Instant::now();
        while Instant::now() < deadline {
            if Instant::now() >= next_signal {
                self.daemon.signal(Signal::SIGUSR2);
                next_signal = Instant::now() + Duration::from_secs(2);
            }
            let now = self.worker_pid();
            if now.is_some() && now != old {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "lb-lab: haproxy did not reload; its log:\n{}",
            self.daemon.log_tail(30)
        );
    }
}
