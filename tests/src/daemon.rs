use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Finds a daemon's binary on `PATH` or in the sbin directories.
///
/// # Panics
///
/// When it is not installed, with the `apt-get install` line that fixes it.
pub fn find_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "lb-lab: `{name}` is not installed; the tests run against the real daemon. \
         Install it with `apt-get install {package}` (as root), or run scripts/test, \
         which installs it."
    )
}

/// The path of one of the lab's own binaries (`lab-app`, `lbctl-lab`),
/// next to the running program in the target directory. It is built
/// first (`cargo build -p lb-lab --bin NAME`, in the same profile) when
/// it is missing or older than a source file of the lab, so tests of
/// other packages can use it.
///
/// # Panics
///
/// When the build fails.
pub fn lab_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the running program's path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match modified(&path) {
        None => true,
        Some(bin) => {
            let src = Path::new(env!("CARGO_MANIFEST_DIR"));
            newest(&src.join("src"))
                .into_iter()
                .chain(modified(&src.join("Cargo.toml")))
                .any(|t| t > bin)
        }
    };
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if stale && !built.iter().any(|b| b == name) {
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-q", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .args(["-p", "lb-lab", "--bin", name]);
        if dir.ends_with("release") {
            c.arg("--release");
        }
        if let Some(target) = dir.parent() {
            c.env("CARGO_TARGET_DIR", target);
        }
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("lb-lab: cannot run cargo to build {name}: {e}"));
        assert!(
            out.status.success() && path.exists(),
            "lb-lab: building {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        built.push(name.to_string());
    }
    path
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in fs::read_dir(dir).ok()?.flatten() {
        let t = if e.path().is_dir() {
            newest(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        best = best.max(t);
    }
    best
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_is_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The live (not zombie) processes whose process group is `pgid`.
pub fn pids_in_group(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((state, _ppid, pgrp)) = proc_stat(pid)
            && pgrp == pgid
            && state != 'Z'
            && state != 'X'
        {
            out.push(pid);
        }
    }
    out
}

/// `(state, ppid, pgrp)` from `/proc/PID/stat`.
pub(crate) fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// The live children of `pid`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(c) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some((state, ppid, _)) = proc_stat(c)
                && ppid == pid
                && state != 'Z'
            {
                out.push(c);
            }
        }
    }
    out.sort_unstable();
    out
}

/// A daemon process started in a process group of its own, with its output
/// in a log file. `Drop` stops the whole group (TERM, then KILL) and waits
/// until its ports are closed.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    ports: Vec<u16>,
}

impl Daemon {
    /// Starts `cmd` with stdin closed and stdout/stderr appended to `log`.
    ///
    /// # Panics
    ///
    /// When the process cannot be spawned.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, ports: Vec<u16>) -> Daemon {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("lb-lab: cannot open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("lb-lab: cannot start {name} ({cmd:?}): {e}"));
        Daemon {
            name: name.into(),
            child,
            log: log.to_owned(),
            ports,
        }
    }

    /// The PID of the process started (nginx's and HAProxy's master,
    /// Apache's parent); also its process group.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The ports it listens on.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Waits until every port accepts connections and `extra` holds.
    ///
    /// # Panics
    ///
    /// When the daemon exits first or 15 s pass, with its log's tail.
    pub fn wait_ready(&mut self, extra: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "lb-lab: {} exited during start-up ({status}); its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if self.ports.iter().all(|p| port_is_open(*p)) && extra() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "lb-lab: {} did not answer on ports {:?} within 15 s; its log:\n{}",
                    self.name,
                    self.ports,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the daemon's first process.
    ///
    /// # Panics
    ///
    /// When the signal cannot be delivered.
    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.pid() as i32), sig)
            .unwrap_or_else(|e| panic!("lb-lab: cannot signal {}: {e}", self.name));
    }

    fn stop(&mut self) {
        let pg = Pid::from_raw(self.pid() as i32);
        let _ = killpg(pg, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) && pids_in_group(self.pid()).is_empty()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !pids_in_group(self.pid()).is_empty() {
            let _ = killpg(pg, Signal::SIGKILL);
        }
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && (self.ports.iter().any(|p| port_is_open(*p))
                || !pids_in_group(self.pid()).is_empty())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn tail(path: &Path, n: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A temp dir under `/tmp` (short, so unix socket paths stay under the
/// 97-character limit HAProxy enforces), readable by the unprivileged
/// users the daemons' workers switch to when the tests run as root.
pub(crate) fn lab_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create lab temp dir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).expect("chmod lab dir");
    d
}

pub(crate) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}
