use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::{Daemon, children_of, find_binary, lab_dir, running_as_root};
use crate::pools::Pools;
use crate::ports::{PortLease, lease_port};

/// Extra configuration for [`Nginx::start_with`].
#[derive(Debug, Clone, Default)]
pub struct NginxOptions {
    /// Lines added to the main context.
    pub main: Vec<String>,
    /// Lines added to `http { }`.
    pub http: Vec<String>,
    /// Lines added to each frontend's `location / { }`.
    pub location: Vec<String>,
}

/// A real nginx (master + one worker) on loopback: one frontend `server`
/// per pool, with the upstream blocks in a file of their own
/// (`upstreams.conf`, the file a driver edits) included from `nginx.conf`.
#[derive(Debug)]
pub struct Nginx {
    daemon: Daemon,
    dir: tempfile::TempDir,
    frontends: Vec<(String, PortLease)>,
    bin: PathBuf,
}

impl Nginx {
    /// Starts nginx with default options.
    pub fn start(pools: &Pools) -> Nginx {
        Nginx::start_with(pools, &NginxOptions::default())
    }

    /// Starts nginx and waits until every frontend answers and its worker
    /// runs.
    ///
    /// # Panics
    ///
    /// When nginx is not installed (says `apt-get install nginx`), or does
    /// not start (with its log).
    pub fn start_with(pools: &Pools, opts: &NginxOptions) -> Nginx {
        let bin = find_binary("nginx", "nginx");
        let dir = lab_dir("lb-nginx-");
        let d = dir.path();
        for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let p = d.join("tmp").join(t);
            std::fs::create_dir_all(&p).expect("nginx temp dir");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let frontends: Vec<_> = pools
            .pools
            .iter()
            .map(|p| (p.name.clone(), lease_port()))
            .collect();
        let mut up = String::new();
        for p in &pools.pools {
            let _ = writeln!(up, "upstream {} {{", p.name);
            for l in &p.extra {
                let _ = writeln!(up, "    {l}");
            }
            for m in &p.members {
                let _ = write!(up, "    server {}", m.addr);
                if let Some(w) = m.weight {
                    let _ = write!(up, " weight={w}");
                }
                if !m.extra.is_empty() {
                    let _ = write!(up, " {}", m.extra);
                }
                let _ = writeln!(up, ";");
            }
            let _ = writeln!(up, "}}\n");
        }
        std::fs::write(d.join("upstreams.conf"), up).expect("write upstreams.conf");
        let mut c = String::new();
        let _ = writeln!(c, "daemon off;\nmaster_process on;\nworker_processes 1;");
        let _ = writeln!(
            c,
            "pid {}/nginx.pid;\nerror_log {}/error.log notice;",
            d.display(),
            d.display()
        );
        if running_as_root() {
            let _ = writeln!(c, "user nobody nogroup;");
        }
        for l in &opts.main {
            let _ = writeln!(c, "{l}");
        }
        let _ = writeln!(
            c,
            "events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;"
        );
        for (t, dirname) in [
            ("client_body_temp_path", "client_body"),
            ("proxy_temp_path", "proxy"),
            ("fastcgi_temp_path", "fastcgi"),
            ("uwsgi_temp_path", "uwsgi"),
            ("scgi_temp_path", "scgi"),
        ] {
            let _ = writeln!(c, "    {t} {}/tmp/{dirname};", d.display());
        }
        for l in &opts.http {
            let _ = writeln!(c, "    {l}");
        }
        let _ = writeln!(c, "    include {}/upstreams.conf;", d.display());
        for (name, fe) in &frontends {
            let _ = writeln!(
                c,
                "    server {{\n        listen {};\n        location / {{\n            proxy_pass http://{name};\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";",
                fe.addr()
            );
            for l in &opts.location {
                let _ = writeln!(c, "            {l}");
            }
            let _ = writeln!(c, "        }}\n    }}");
        }
        let _ = writeln!(c, "}}");
        std::fs::write(d.join("nginx.conf"), c).expect("write nginx.conf");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(format!("{}/", d.display()))
            .arg("-e")
            .arg(d.join("error.log"))
            .current_dir(d);
        let ports = frontends.iter().map(|(_, l)| l.port()).collect();
        let mut daemon = Daemon::spawn("nginx", cmd, &d.join("nginx.log"), ports);
        let master = daemon.pid();
        let pid_file = d.join("nginx.pid");
        daemon.wait_ready(|| pid_file.exists() && !children_of(master).is_empty());
        Nginx {
            daemon,
            dir,
            frontends,
            bin,
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
            .unwrap_or_else(|| panic!("lb-lab: nginx has no pool {pool}"));
        format!("http://{}/", l.addr())
    }

    /// The main configuration (what `nginx -t -c` checks).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }

    /// The file holding the upstream blocks.
    pub fn upstream_file(&self) -> PathBuf {
        self.dir.path().join("upstreams.conf")
    }

    /// The master's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("nginx.pid")
    }

    /// The prefix (`-p`), ending in `/`.
    pub fn prefix(&self) -> String {
        format!("{}/", self.dir.path().display())
    }

    /// The nginx binary used.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Its temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master's PID.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The daemon handle (ports, log).
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// The master's live worker processes (old ones shutting down included).
    pub fn workers(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Reloads (SIGHUP to the master) and waits until a worker that did not
    /// exist before runs.
    ///
    /// # Panics
    ///
    /// When no new worker appears within 10 s.
    pub fn reload(&self) {
        let old = self.workers();
        self.daemon.signal(Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.workers().iter().any(|w| !old.contains(w)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "lb-lab: nginx did not reload; its log:\n{}",
            crate::daemon::tail(&self.dir.path().join("error.log"), 30)
        );
    }
}
