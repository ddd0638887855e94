//! A real etcd (Debian's `etcd-server`) on loopback: one member, its data
//! in a temp dir, stopped by PID.

use std::process::Command;

use nix::sys::signal::Signal;

use crate::daemon::{Daemon, find_binary, lab_dir};
use crate::fake_arm::{SERVER_CERT_PEM, SERVER_KEY_PEM};
use crate::http;
use crate::ports::{PortLease, lease_port};

/// One etcd member serving clients on a loopback port.
#[derive(Debug)]
pub struct Etcd {
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    client: PortLease,
    peer: PortLease,
    tls: bool,
}

impl Etcd {
    /// Starts etcd and waits until it reports itself healthy.
    ///
    /// # Panics
    ///
    /// When etcd is not installed (says `apt-get install etcd-server`), or
    /// does not start (with its log).
    pub fn start() -> Etcd {
        let dir = lab_dir("etcd");
        let (client, peer) = (lease_port(), lease_port());
        let mut e = Etcd {
            daemon: None,
            dir,
            client,
            peer,
            tls: false,
        };
        e.daemon = Some(e.spawn());
        e
    }

    /// Starts etcd serving clients over TLS (`https://127.0.0.1:PORT`),
    /// with the lab's test certificate (its CA: [`Etcd::ca_file`]).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_tls() -> Etcd {
        let dir = lab_dir("etcd");
        let (client, peer) = (lease_port(), lease_port());
        for (name, pem) in [
            ("server.pem", SERVER_CERT_PEM),
            ("server-key.pem", SERVER_KEY_PEM),
            ("ca.pem", crate::fake_arm::TEST_CA_PEM),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write a test certificate");
        }
        let mut e = Etcd {
            daemon: None,
            dir,
            client,
            peer,
            tls: true,
        };
        e.daemon = Some(e.spawn());
        e
    }

    /// The CA certificate (PEM file) of a TLS etcd's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn spawn(&self) -> Daemon {
        let bin = find_binary("etcd", "etcd-server");
        let d = self.dir.path();
        let client = format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.client.addr()
        );
        let peer = format!("http://{}", self.peer.addr());
        let mut cmd = Command::new(bin);
        cmd.arg("--name")
            .arg("lab")
            .arg("--data-dir")
            .arg(d.join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("lab={peer}"))
            .arg("--log-level")
            .arg("warn")
            .current_dir(d)
            // Debian's etcd 3.4 refuses to start on some platforms without it.
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        if self.tls {
            cmd.arg("--cert-file")
                .arg(d.join("server.pem"))
                .arg("--key-file")
                .arg(d.join("server-key.pem"));
        }
        let mut daemon = Daemon::spawn(
            "etcd",
            cmd,
            &d.join("etcd.log"),
            vec![self.client.port(), self.peer.port()],
        );
        let health = format!("{client}/health");
        if self.tls {
            let ctl = find_binary("etcdctl", "etcd-client");
            daemon.wait_ready(|| {
                Command::new(&ctl)
                    .arg("--endpoints")
                    .arg(&client)
                    .arg("--cacert")
                    .arg(d.join("ca.pem"))
                    .args(["endpoint", "health"])
                    .env("ETCDCTL_API", "3")
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        } else {
            daemon.wait_ready(|| {
                http::get(&health)
                    .map(|r| r.status == 200 && r.body.contains("true"))
                    .unwrap_or(false)
            });
        }
        daemon
    }

    /// Starts etcd with authentication on: user `root` (every permission)
    /// with `password`, set up with etcdctl.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and when etcdctl (`apt-get install
    /// etcd-client`) is missing or fails.
    pub fn start_with_auth(password: &str) -> Etcd {
        let e = Etcd::start();
        let ctl = find_binary("etcdctl", "etcd-client");
        let run = |args: &[&str]| {
            let out = Command::new(&ctl)
                .arg("--endpoints")
                .arg(e.endpoint())
                .args(args)
                .env("ETCDCTL_API", "3")
                .output()
                .expect("run etcdctl");
            assert!(
                out.status.success(),
                "lb-lab: etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["user", "add", &format!("root:{password}")]);
        run(&["auth", "enable"]);
        e
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), the endpoint
    /// clients use.
    pub fn endpoint(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.client.addr()
        )
    }

    /// How many leases etcd holds now (`etcdctl lease list`; no TLS or
    /// authentication).
    ///
    /// # Panics
    ///
    /// When etcdctl (`apt-get install etcd-client`) is missing or fails.
    pub fn leases(&self) -> usize {
        let ctl = find_binary("etcdctl", "etcd-client");
        let out = Command::new(&ctl)
            .arg("--endpoints")
            .arg(self.endpoint())
            .args(["lease", "list"])
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "lb-lab: etcdctl lease list: {text}");
        // "found N leases", then one line per lease.
        text.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("lb-lab: etcdctl lease list said {text:?}"))
    }

    /// Kills etcd (SIGKILL to its process group): the endpoint stops
    /// answering, its data stays.
    pub fn kill(&mut self) {
        if let Some(d) = &self.daemon {
            d.signal(Signal::SIGKILL);
        }
        self.daemon = None;
    }

    /// Starts etcd again on the same ports and data, after [`kill`](Self::kill).
    pub fn restart(&mut self) {
        self.kill();
        self.daemon = Some(self.spawn());
    }
}
