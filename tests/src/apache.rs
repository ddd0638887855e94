use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::{Daemon, find_binary, lab_dir, running_as_root, tail};
use crate::pools::Pools;
use crate::ports::{PortLease, lease_port};

const MODULES: &[&str] = &[
    "mpm_event",
    "authz_core",
    "authz_host",
    "slotmem_shm",
    "proxy",
    "proxy_http",
    "proxy_balancer",
    "lbmethod_byrequests",
    "status",
    "headers",
];

/// Extra configuration for [`Apache::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ApacheOptions {
    /// Further modules to load (`auth_basic`, `authn_file`, …).
    pub modules: Vec<String>,
    /// Lines added to the server configuration (e.g. `BalancerPersist On`).
    pub server: Vec<String>,
    /// Lines inside `<Location /balancer-manager>`, replacing the default
    /// `Require ip 127.0.0.1`.
    pub manager: Vec<String>,
}

/// A real `apache2 -DFOREGROUND` on one loopback port: every pool is a
/// `balancer://POOL` proxied at `/POOL/`, and the balancer-manager is at
/// `/balancer-manager`, all in one server (one vhost).
#[derive(Debug)]
pub struct Apache {
    daemon: Daemon,
    dir: tempfile::TempDir,
    port: PortLease,
}

impl Apache {
    /// Starts Apache with default options.
    pub fn start(pools: &Pools) -> Apache {
        Apache::start_with(pools, &ApacheOptions::default())
    }

    /// Starts Apache and waits until it answers.
    ///
    /// # Panics
    ///
    /// When apache2 is not installed (says `apt-get install apache2`), or
    /// does not start (with its log).
    pub fn start_with(pools: &Pools, opts: &ApacheOptions) -> Apache {
        let bin = find_binary("apache2", "apache2");
        let dir = lab_dir("lb-apache-");
        let d = dir.path();
        std::fs::create_dir_all(d.join("run")).expect("apache run dir");
        let port = lease_port();
        let mut c = String::new();
        let _ = writeln!(c, "ServerRoot {}", d.display());
        let _ = writeln!(c, "DefaultRuntimeDir {}/run", d.display());
        let _ = writeln!(c, "PidFile {}/run/apache2.pid", d.display());
        let _ = writeln!(c, "ErrorLog {}/error.log\nLogLevel notice", d.display());
        let _ = writeln!(c, "ServerName 127.0.0.1\nListen {}", port.addr());
        for m in MODULES
            .iter()
            .map(|s| s.to_string())
            .chain(opts.modules.iter().cloned())
        {
            let _ = writeln!(
                c,
                "LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so"
            );
        }
        if running_as_root() {
            let _ = writeln!(c, "User nobody\nGroup nogroup");
        }
        let _ = writeln!(
            c,
            "StartServers 1\nServerLimit 4\nThreadsPerChild 32\nMaxRequestWorkers 128\nMinSpareThreads 8\nMaxSpareThreads 64\nKeepAliveTimeout 10"
        );
        for l in &opts.server {
            let _ = writeln!(c, "{l}");
        }
        let _ = writeln!(
            c,
            "<Location /balancer-manager>\n    SetHandler balancer-manager"
        );
        if opts.manager.is_empty() {
            let _ = writeln!(c, "    Require ip 127.0.0.1");
        }
        for l in &opts.manager {
            let _ = writeln!(c, "    {l}");
        }
        let _ = writeln!(c, "</Location>");
        for p in &pools.pools {
            let _ = writeln!(c, "<Proxy balancer://{}>", p.name);
            for m in &p.members {
                let _ = write!(c, "    BalancerMember http://{}", m.addr);
                if !m.name.is_empty() {
                    let _ = write!(c, " route={}", m.name);
                }
                if let Some(w) = m.weight {
                    let _ = write!(c, " loadfactor={w}");
                }
                let _ = writeln!(c, " {}", m.extra);
            }
            for l in &p.extra {
                let _ = writeln!(c, "    {l}");
            }
            let _ = writeln!(c, "</Proxy>");
            let _ = writeln!(c, "ProxyPass /{0}/ balancer://{0}/", p.name);
        }
        std::fs::write(d.join("apache2.conf"), c).expect("write apache2.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(d.join("apache2.conf"))
            .arg("-DFOREGROUND")
            .current_dir(d);
        let mut daemon = Daemon::spawn("apache2", cmd, &d.join("apache2.log"), vec![port.port()]);
        let pid_file = d.join("run/apache2.pid");
        daemon.wait_ready(|| pid_file.exists());
        Apache { daemon, dir, port }
    }

    /// `http://127.0.0.1:PORT/POOL/`: the frontend for `pool`.
    pub fn frontend_url(&self, pool: &str) -> String {
        format!("http://{}/{pool}/", self.port.addr())
    }

    /// `http://127.0.0.1:PORT/balancer-manager`.
    pub fn manager_url(&self) -> String {
        format!("http://{}/balancer-manager", self.port.addr())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("apache2.conf")
    }

    /// Its temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The parent's PID.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The daemon handle (ports, log).
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Graceful restart (SIGUSR1 to the parent); returns once Apache says
    /// it resumed normal operations.
    ///
    /// # Panics
    ///
    /// When it does not within 10 s.
    pub fn graceful(&self) {
        let count = || {
            self.error_log()
                .matches("resuming normal operations")
                .count()
        };
        let before = count();
        self.daemon.signal(Signal::SIGUSR1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if count() > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "lb-lab: apache2 did not restart gracefully; its log:\n{}",
            tail(&self.dir.path().join("error.log"), 30)
        );
    }
}
