use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;

use rand::Rng;

/// A loopback port reserved for one daemon or backend of one test.
///
/// Ports are drawn from 20000–31999 (below the kernel's ephemeral range, so
/// an outgoing connection never takes one first) and held by an exclusive
/// lock on `/tmp/lb-lab-ports/PORT.lock`, so tests in other processes never
/// draw the same port while this lease lives.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    _lock: File,
}

impl PortLease {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

fn lock_dir() -> PathBuf {
    let d = PathBuf::from("/tmp/lb-lab-ports");
    let _ = fs::create_dir_all(&d);
    d
}

/// Reserves a free loopback port.
///
/// # Panics
///
/// When no free port is found after many attempts.
pub fn lease_port() -> PortLease {
    let dir = lock_dir();
    let mut rng = rand::rng();
    for _ in 0..2000 {
        let port: u16 = rng.random_range(20000..32000);
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return PortLease { port, _lock: file };
        }
    }
    panic!("lb-lab: no free loopback port in 20000..32000")
}
