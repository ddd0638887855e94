//! A real Prometheus (Debian's `prometheus` package) on a loopback port,
//! scraping the lab's application nodes (`/metrics`) every 200 ms, its
//! data in a temp dir. Stopped by PID (its process group) on drop.

use std::net::SocketAddr;
use std::process::Command;

use crate::daemon::{Daemon, find_binary, lab_dir};
use crate::ports::{PortLease, lease_port};

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    daemon: Daemon,
    _dir: tempfile::TempDir,
    port: PortLease,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `app`, every 200 ms) and
    /// waits until it is ready.
    ///
    /// # Panics
    ///
    /// When Prometheus is not installed (naming `apt-get install
    /// prometheus`) or does not start (with its log).
    pub fn start(targets: &[SocketAddr]) -> Prometheus {
        let bin = find_binary("prometheus", "prometheus");
        let dir = lab_dir("lb-prom-");
        let port = lease_port();
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: app\n    scrape_interval: 200ms\n    scrape_timeout: 150ms\n    \
             static_configs:\n      - targets: [{list}]\n"
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).expect("write prometheus.yml");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={}", port.addr()))
            .current_dir(dir.path());
        let log = dir.path().join("prometheus.log");
        let mut daemon = Daemon::spawn("prometheus", cmd, &log, vec![port.addr().port()]);
        // Ready, and scraping every target (Prometheus hands new targets
        // to its scrapers a few seconds after it starts).
        let up = format!("http://{}/api/v1/query?query=up", port.addr());
        daemon.wait_ready(|| {
            crate::http::get(&up).is_ok_and(|r| {
                r.status == 200 && r.body.matches("\"instance\"").count() == targets.len()
            })
        });
        Prometheus {
            daemon,
            _dir: dir,
            port,
        }
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.port.addr())
    }

    /// The PID of its process.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }
}
