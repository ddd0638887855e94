//! Application nodes that run as processes of their own (the `lab-app`
//! binary), so that a rolling upgrade's shell hooks can really stop one
//! and start it again on the same port, at a new version.
//!
//! Each node's state lives in a directory: `ID.addr` (where it listens),
//! `ID.version` (what `start` runs; `install` changes it), `ID.pid`,
//! `ID.log`, and `ssh.log` (every command the `ssh` stand-in was given).
//!
//! ```text
//! lab-app serve   --id ID --listen ADDR [--version V] [--starting-ms N]
//! lab-app start   --dir DIR --id ID     start it in the background; wait until it listens
//! lab-app stop    --dir DIR --id ID     SIGTERM: close the port, finish requests in flight, exit
//! lab-app install --dir DIR --id ID --version V
//! lab-app ssh     --dir DIR NODE COMMAND…   what `ssh NODE COMMAND` does to a lab node
//! ```
//!
//! The `ssh` stand-in records every command with the lbctl step that ran
//! it and understands the remote commands of the example plans:
//! `[sudo] [VAR=value…] gitlab-ctl stop|start|restart|restart-except
//! [service…]` (the node's process is touched unless only side services
//! such as `consul` on a non-Consul node, `node-exporter`, `logrotate`
//! or `geo-logcursor` are named), `gitlab-ctl reconfigure`, `gitlab-ctl
//! status` (exit 1 when down), `gitlab-ctl patroni members` (the node as
//! leader), `gitlab-rake …`, `gitlab-rails runner …` (the background
//! migrations still queued), `dpkg-query -W -f=… gitlab-ee` (the
//! installed version), `touch`, `sed -i` and `scp` (recorded only),
//! `apt-get install -y PACKAGE[=VERSION]`,
//! `/etc/init.d/confluence stop|start`, Confluence's installer
//! `atlassian-confluence-VERSION-x64.bin …` and `systemctl
//! stop|start|restart|is-active SERVICE`. Anything else fails (exit 127),
//! so a plan cannot pass by accident.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::backend::{AppMode, serve};
use crate::daemon::port_is_open;
use crate::ports::{PortLease, lease_port};

/// Application nodes started as `lab-app` processes, in a directory of
/// their own. `Drop` kills whatever still runs.
#[derive(Debug)]
pub struct AppNodes {
    dir: tempfile::TempDir,
    bin: PathBuf,
    nodes: Vec<(String, PortLease)>,
}

impl AppNodes {
    /// Starts one node per id, each on a fresh port, at version `1`.
    ///
    /// # Panics
    ///
    /// When the `lab-app` binary cannot be built or a node does not start.
    pub fn start(ids: &[&str]) -> AppNodes {
        AppNodes::start_with(ids, Duration::ZERO)
    }

    /// Starts `node1` … `nodeN`.
    pub fn start_many(n: usize) -> AppNodes {
        let ids: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
        AppNodes::start(&ids.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// As [`start`](Self::start), each node "starting" for `starting` after
    /// every start (`/health` and `/-/readiness` 503, `/status` STARTING).
    pub fn start_with(ids: &[&str], starting: Duration) -> AppNodes {
        let bin = crate::lab_binary("lab-app");
        let dir = crate::daemon::lab_dir("lb-app-");
        let nodes: Vec<(String, PortLease)> = ids
            .iter()
            .map(|id| (id.to_string(), lease_port()))
            .collect();
        for (id, lease) in &nodes {
            fs::write(
                dir.path().join(format!("{id}.addr")),
                lease.addr().to_string(),
            )
            .expect("write addr");
            fs::write(dir.path().join(format!("{id}.version")), "1").expect("write version");
            fs::write(
                dir.path().join(format!("{id}.starting_ms")),
                starting.as_millis().to_string(),
            )
            .expect("write starting_ms");
        }
        let apps = AppNodes { dir, bin, nodes };
        for (id, _) in &apps.nodes {
            apps.start_node(id);
        }
        apps
    }

    /// Their directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `lab-app` binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Every node id, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.nodes.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Where node `id` listens.
    ///
    /// # Panics
    ///
    /// For an unknown id.
    pub fn addr(&self, id: &str) -> SocketAddr {
        self.nodes
            .iter()
            .find(|(n, _)| n == id)
            .unwrap_or_else(|| panic!("lb-lab: no app node {id}"))
            .1
            .addr()
    }

    /// The shell command that runs `lab-app ACTION` for the node a hook
    /// names: `ACTION` is `start`, `stop` or `install --version V`; the
    /// node is `{node}`, substituted by lbctl.
    pub fn hook(&self, action: &str) -> String {
        format!(
            "'{}' {} --dir '{}' --id {{node}}",
            self.bin.display(),
            action.split(' ').next().unwrap_or(action),
            self.dir.path().display()
        ) + &action
            .split_once(' ')
            .map_or(String::new(), |(_, rest)| format!(" {rest}"))
    }

    /// A directory holding an `ssh` that acts on these nodes (see the
    /// module docs): put it first on a hook's `PATH`.
    pub fn ssh_path(&self) -> PathBuf {
        let d = self.dir.path().join("bin");
        if !d.join("ssh").exists() {
            use std::os::unix::fs::PermissionsExt;
            fs::create_dir_all(&d).expect("create bin dir");
            let script = format!(
                "#!/bin/sh\nexec '{}' ssh --dir '{}' \"$@\"\n",
                self.bin.display(),
                self.dir.path().display()
            );
            fs::write(d.join("ssh"), script).expect("write ssh");
            fs::set_permissions(d.join("ssh"), fs::Permissions::from_mode(0o755))
                .expect("chmod ssh");
        }
        d
    }

    /// Every command the `ssh` stand-in was given, as `NODE COMMAND`.
    pub fn ssh_log(&self) -> Vec<String> {
        self.ssh_steps()
            .into_iter()
            .map(|(node, _, command)| format!("{node} {command}"))
            .collect()
    }

    /// Every command the `ssh` stand-in was given, as (node, the lbctl
    /// step whose hook ran it, command).
    pub fn ssh_steps(&self) -> Vec<(String, String, String)> {
        fs::read_to_string(self.dir.path().join("ssh.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '\t');
                Some((f.next()?.into(), f.next()?.into(), f.next()?.into()))
            })
            .collect()
    }

    /// Sets how many background migrations `gitlab-rails runner` reports
    /// still queued (0 until set).
    pub fn set_background_migrations(&self, n: u32) {
        fs::write(self.dir.path().join("background_migrations"), n.to_string())
            .expect("write background_migrations");
    }

    /// Sets the version node `id` runs from its next start (as a package
    /// installed before the lab began).
    pub fn set_installed_version(&self, id: &str, version: &str) {
        fs::write(self.dir.path().join(format!("{id}.version")), version).expect("write version");
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .args(args)
            .output()
            .expect("run lab-app");
        assert!(
            out.status.success(),
            "lab-app {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_node(&self, id: &str) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.run(&["start", "--dir", &dir, "--id", id]);
    }

    /// Starts node `id` again (at its installed version).
    pub fn start_again(&self, id: &str) {
        self.start_node(id);
    }

    /// Stops node `id` gracefully.
    pub fn stop(&self, id: &str) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.run(&["stop", "--dir", &dir, "--id", id]);
    }

    /// The pid of node `id`'s process, while it runs.
    pub fn pid(&self, id: &str) -> Option<u32> {
        running_pid(self.dir.path(), id)
    }

    /// The version node `id` would start at (what was installed last).
    pub fn installed_version(&self, id: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{id}.version")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for AppNodes {
    fn drop(&mut self) {
        for (id, _) in &self.nodes {
            if let Some(pid) = running_pid(self.dir.path(), id) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let deadline = Instant::now() + Duration::from_secs(5);
                while alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    crate::daemon::proc_stat(pid).is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

fn running_pid(dir: &Path, id: &str) -> Option<u32> {
    let pid: u32 = fs::read_to_string(dir.join(format!("{id}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

fn read(dir: &Path, id: &str, what: &str) -> Result<String, String> {
    let p = dir.join(format!("{id}.{what}"));
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            format!(
                "lab-app: cannot read {}: {e} (is {id} a node of this lab?)",
                p.display()
            )
        })
}

/// `lab-app start`: starts node `id` in the background (its own process
/// group, output to `ID.log`) and returns once it listens.
fn start(dir: &Path, id: &str) -> Result<String, String> {
    if let Some(pid) = running_pid(dir, id) {
        return Ok(format!("{id} already runs (pid {pid})"));
    }
    let addr = read(dir, id, "addr")?;
    let version = read(dir, id, "version").unwrap_or_else(|_| "1".into());
    let starting = read(dir, id, "starting_ms").unwrap_or_else(|_| "0".into());
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{id}.log")))
        .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args([
            "serve",
            "--id",
            id,
            "--listen",
            &addr,
            "--version",
            &version,
        ])
        .args(["--starting-ms", &starting])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("lab-app: cannot start {id}: {e}"))?;
    let pid = child.id();
    fs::write(dir.join(format!("{id}.pid")), pid.to_string()).map_err(|e| e.to_string())?;
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("lab-app: bad address {addr}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_is_open(port) {
        if !alive(pid) || Instant::now() > deadline {
            let log = crate::daemon::tail(&dir.join(format!("{id}.log")), 10);
            return Err(format!("lab-app: {id} did not listen on {addr}:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The child is waited for by nobody: it is a daemon now.
    std::mem::forget(child);
    Ok(format!(
        "{id} started (pid {pid}, version {version}, {addr})"
    ))
}

/// `lab-app stop`: SIGTERM, then waits until the process is gone.
fn stop(dir: &Path, id: &str) -> Result<String, String> {
    let Some(pid) = running_pid(dir, id) else {
        return Ok(format!("{id} is not running"));
    };
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(40);
    while alive(pid) {
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            return Err(format!(
                "lab-app: {id} (pid {pid}) did not stop within 40 s; killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = fs::remove_file(dir.join(format!("{id}.pid")));
    Ok(format!("{id} stopped"))
}

fn install(dir: &Path, id: &str, version: &str) -> Result<String, String> {
    read(dir, id, "addr")?;
    fs::write(dir.join(format!("{id}.version")), version).map_err(|e| e.to_string())?;
    Ok(format!("{id}: version {version} installed"))
}

/// Services a lab node stands for besides its own component: restarting
/// or stopping one of them leaves the node's process alone.
const SIDE_SERVICES: [&str; 4] = ["consul", "node-exporter", "logrotate", "geo-logcursor"];

/// The component a node stands for: its name after the last `-`, without
/// trailing digits (`secondary-rails2` → `rails`).
fn component(node: &str) -> &str {
    node.rsplit('-')
        .next()
        .unwrap_or(node)
        .trim_end_matches(|c: char| c.is_ascii_digit())
}

/// Whether `gitlab-ctl stop|start|restart SERVICES…` touches the node's
/// process: no service named (all of them), or one that is not a side
/// service (or is the node's own component, as `consul` on `consul1`).
fn touches(node: &str, services: &[&str]) -> bool {
    services.is_empty()
        || services
            .iter()
            .any(|s| *s == component(node) || !SIDE_SERVICES.contains(s))
}

/// `ssh NODE COMMAND…` on a lab node: logged to `ssh.log` as
/// `NODE<TAB>STEP<TAB>COMMAND` (the step from `LBCTL_STEP`, which lbctl
/// gives every hook), then acted out.
fn ssh(dir: &Path, node: &str, words: &[String]) -> Result<String, String> {
    let line = words.join(" ");
    let step = std::env::var("LBCTL_STEP").unwrap_or_else(|_| "-".into());
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ssh.log"))
    {
        let _ = writeln!(f, "{node}\t{step}\t{line}");
    }
    let mut out = Vec::new();
    for cmd in line.split("&&").map(str::trim).filter(|c| !c.is_empty()) {
        let mut w: Vec<&str> = cmd.split_whitespace().collect();
        if w.first() == Some(&"sudo") {
            w.remove(0);
        }
        while w
            .first()
            .is_some_and(|x| x.contains('=') && !x.starts_with('-'))
        {
            w.remove(0);
        }
        let r = match w.as_slice() {
            ["gitlab-ctl", "stop", services @ ..] if !touches(node, services) => {
                format!("{node}: {cmd}: done")
            }
            ["gitlab-ctl", "start", services @ ..] | ["gitlab-ctl", "restart", services @ ..]
                if !touches(node, services) =>
            {
                format!("{node}: {cmd}: done")
            }
            ["gitlab-ctl", "restart-except", services @ ..]
                if services.contains(&component(node)) =>
            {
                format!("{node}: {cmd}: done")
            }
            ["gitlab-ctl", "stop", ..]
            | ["/etc/init.d/confluence", "stop"]
            | ["systemctl", "stop", ..] => stop(dir, node)?,
            ["gitlab-ctl", "start", ..]
            | ["/etc/init.d/confluence", "start"]
            | ["systemctl", "start", ..] => start(dir, node)?,
            ["gitlab-ctl", "restart", ..]
            | ["gitlab-ctl", "restart-except", ..]
            | ["systemctl", "restart", ..] => {
                stop(dir, node)?;
                start(dir, node)?
            }
            ["gitlab-ctl", "reconfigure"] | ["gitlab-rake", ..] => format!("{node}: {cmd}: done"),
            ["gitlab-ctl", "patroni", "members"] => {
                let addr = read(dir, node, "addr")?;
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                format!("| {node} | {host} | Leader | running | 1 | |")
            }
            // Background migrations still queued: `DIR/background_migrations`
            // (0 when absent).
            ["gitlab-rails", "runner", ..] => fs::read_to_string(dir.join("background_migrations"))
                .map_or_else(|_| "0".into(), |s| s.trim().to_string()),
            ["dpkg-query", "-W", format, "gitlab-ee"] if format.starts_with("-f=") => {
                read(dir, node, "version")?
            }
            // Files on the node: created, edited, copied (nothing to act out).
            ["touch", _] | ["sed", "-i", .., _] | ["scp", _, _] => format!("{node}: {cmd}: done"),
            ["gitlab-ctl", "status", ..] | ["systemctl", "is-active", ..] => {
                read(dir, node, "addr")?;
                match running_pid(dir, node) {
                    Some(pid) => format!("run: {node}: (pid {pid})"),
                    None => return Err(format!("down: {node}")),
                }
            }
            [installer, ..] if installer.ends_with(".bin") => {
                // atlassian-confluence-9.2.1-x64.bin -q -varfile …
                let name = installer.rsplit('/').next().unwrap_or(installer);
                let version = name
                    .strip_prefix("atlassian-confluence-")
                    .and_then(|v| v.strip_suffix(".bin"))
                    .map(|v| v.trim_end_matches("-x64"))
                    .ok_or_else(|| format!("lab ssh: unknown installer {name} (exit 127)"))?;
                install(dir, node, version)?
            }
            ["apt-get", "install", rest @ ..] | ["yum", "install", rest @ ..] => {
                let pkg = rest
                    .iter()
                    .find(|x| !x.starts_with('-'))
                    .ok_or("apt-get install: no package")?;
                let version = pkg.split_once('=').map_or("2", |(_, v)| v);
                install(dir, node, version)?
            }
            _ => {
                return Err(format!(
                    "lab ssh: {node}: unknown remote command {cmd:?} (exit 127)"
                ));
            }
        };
        out.push(r);
    }
    Ok(out.join("\n"))
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The `lab-app` binary: see the module docs. Returns its exit code.
pub fn main_from_args(args: &[String]) -> i32 {
    let need = |name: &str| flag(args, name).ok_or_else(|| format!("lab-app: {name} is missing"));
    let res = match args.first().map(String::as_str) {
        Some("serve") => return serve_main(args),
        Some("start") => {
            need("--dir").and_then(|d| need("--id").and_then(|id| start(Path::new(&d), &id)))
        }
        Some("stop") => {
            need("--dir").and_then(|d| need("--id").and_then(|id| stop(Path::new(&d), &id)))
        }
        Some("install") => need("--dir").and_then(|d| {
            need("--id")
                .and_then(|id| need("--version").and_then(|v| install(Path::new(&d), &id, &v)))
        }),
        Some("ssh") => need("--dir").and_then(|d| {
            let rest: Vec<String> = args.iter().skip(3).cloned().collect();
            match rest.split_first() {
                Some((node, words)) if !words.is_empty() => ssh(Path::new(&d), node, words),
                _ => Err("usage: lab-app ssh --dir DIR NODE COMMAND…".into()),
            }
        }),
        _ => Err("usage: lab-app serve|start|stop|install|ssh …".into()),
    };
    match res {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            if e.contains("exit 127") { 127 } else { 1 }
        }
    }
}

fn serve_main(args: &[String]) -> i32 {
    let (Some(id), Some(listen)) = (flag(args, "--id"), flag(args, "--listen")) else {
        eprintln!("usage: lab-app serve --id ID --listen ADDR [--version V] [--starting-ms N]");
        return 2;
    };
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        eprintln!("lab-app: bad --listen {listen}");
        return 2;
    };
    let version = flag(args, "--version").unwrap_or_else(|| "1".into());
    let starting = flag(args, "--starting-ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let app = Arc::new(AppMode {
        version: Some(version),
        starting_until: (starting > 0).then(|| Instant::now() + Duration::from_millis(starting)),
        ..AppMode::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = tokio::spawn(serve(
            id.clone(),
            addr,
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            app,
            stop_rx,
            ready_tx,
        ));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        match tokio::task::spawn_blocking(move || ready_rx.recv()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                eprintln!("lab-app: {id} cannot listen on {addr}: {e}");
                return 1;
            }
            _ => {
                eprintln!("lab-app: {id} did not start");
                return 1;
            }
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        // Graceful: the port closes at once, requests in flight finish.
        let _ = stop_tx.send(Duration::from_secs(30));
        let _ = server.await;
        0
    })
}
