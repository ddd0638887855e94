#![doc = include_str!("../README.md")]

mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod parse;
mod settings;
mod transport;
mod workers;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{AdminState, Balancer, Capabilities, Change, DrainSignal, Member, MemberRef, Result};

use crate::error::HapError;
use crate::parse::ServerState;
use crate::transport::{Endpoint, Session};
use crate::workers::{Others, Workers};

pub use settings::Config;

/// The default connect and read timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The highest weight HAProxy accepts (`set server B/S weight N`).
pub const MAX_WEIGHT: u32 = 256;

/// An HAProxy (≥ 2.0), driven through its runtime API.
///
/// Built with [`Haproxy::builder`]; see the crate documentation for what
/// each operation sends.
pub struct Haproxy {
    name: String,
    endpoint: Endpoint,
    /// `endpoint` as shown in messages.
    socket: String,
    timeout: Duration,
    state_file: Option<PathBuf>,
    /// The master CLI, as shown in messages.
    master_socket: Option<String>,
    /// Every worker that may still hold connections.
    workers: Workers,
    /// Serialises changes while a state file is kept, so that the file is
    /// always written from the newest state.
    state_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Haproxy")
            .field("name", &self.name)
            .field("socket", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("state_file", &self.state_file)
            .field("master_socket", &self.master_socket)
            .finish()
    }
}

/// Settings for a [`Haproxy`], checked by [`build`](HaproxyBuilder::build).
#[derive(Debug, Clone)]
pub struct HaproxyBuilder {
    name: String,
    socket: Option<String>,
    timeout: Duration,
    state_file: Option<PathBuf>,
    master_socket: Option<String>,
}

impl HaproxyBuilder {
    /// The runtime API socket (inventory key `socket`): a unix socket path
    /// (`/run/haproxy/admin.sock` or `unix:///run/haproxy/admin.sock`) or
    /// `tcp://host:port`. Required. Writes need `level admin` on it.
    pub fn socket(mut self, s: &str) -> Self {
        self.socket = Some(s.to_owned());
        self
    }

    /// The connect timeout, and the longest wait for HAProxy's answer to
    /// each batch of commands (inventory key `timeout`; default 5 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// A file to write `show servers state` to, atomically, after every
    /// change (inventory key `state_file`; optional). Point HAProxy's
    /// `server-state-file` at it and set `load-server-state-from-file
    /// global`, and drains survive reloads.
    pub fn state_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.state_file = Some(p.into());
        self
    }

    /// HAProxy's master CLI (inventory key `master_socket`; optional): the
    /// socket given to `haproxy -W -S`, as `/path`, `unix:///path` or
    /// `tcp://host:port`. With it, a member's `active` counts the
    /// connections of every worker, the old ones still finishing after a
    /// reload included (`show proc`, `@!PID show stat`). Without it, a
    /// reload seen during a run makes `active` unknown until the old
    /// worker exits (when its PID is visible on this host), or is an
    /// error (when it is not).
    pub fn master_socket(mut self, s: &str) -> Self {
        self.master_socket = Some(s.to_owned());
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`lb_core::Error::InvalidInput`] for an invalid balancer name, a
    /// missing or malformed socket, a zero timeout, or a state file whose
    /// directory does not exist.
    pub fn build(self) -> Result<Haproxy> {
        let name = self.name;
        lb_core::validate_name(&name, "balancer", &name)?;
        let bad = |m: String| lb_core::Error::invalid_input(&name, m);
        let socket = self.socket.as_deref().ok_or_else(|| {
            bad("no socket: set it to /path, unix:///path or tcp://host:port".into())
        })?;
        let endpoint = Endpoint::parse(socket).map_err(bad)?;
        if self.timeout.is_zero() {
            return Err(bad("the timeout must be longer than zero".into()));
        }
        if let Some(p) = &self.state_file {
            check_state_file(p).map_err(bad)?;
        }
        let master = match &self.master_socket {
            Some(m) => Some(Endpoint::parse(m).map_err(|e| bad(format!("master_socket: {e}")))?),
            None => None,
        };
        Ok(Haproxy {
            name,
            socket: endpoint.to_string(),
            master_socket: master.as_ref().map(Endpoint::to_string),
            workers: Workers::new(master, &endpoint),
            endpoint,
            timeout: self.timeout,
            state_file: self.state_file,
            state_lock: tokio::sync::Mutex::new(()),
        })
    }
}

fn check_state_file(p: &Path) -> std::result::Result<(), String> {
    if p.file_name().is_none() {
        return Err(format!("state file {}: not a file name", p.display()));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "state file {}: the directory {} does not exist",
            p.display(),
            dir.display()
        ));
    }
    if p.is_dir() {
        return Err(format!("state file {}: is a directory", p.display()));
    }
    Ok(())
}

/// A member whose names passed lb-core's validator: the only input the
/// runtime API commands are built from.
struct Target {
    pool: String,
    member: String,
}

impl Target {
    fn new(balancer: &str, m: &MemberRef) -> Result<Target> {
        m.validate(balancer)?;
        Ok(Target {
            pool: m.pool.clone(),
            member: m.member.clone(),
        })
    }

    fn show_state(&self) -> String {
        format!("show servers state {}", self.pool)
    }

    fn set_state(&self, s: AdminState) -> String {
        format!(
            "set server {}/{} state {}",
            self.pool,
            self.member,
            s.as_str()
        )
    }

    fn set_weight(&self, w: u32) -> String {
        format!("set server {}/{} weight {w}", self.pool, self.member)
    }

    fn shutdown_sessions(&self) -> String {
        format!("shutdown sessions server {}/{}", self.pool, self.member)
    }

    /// This member's row in the answer to `show servers state POOL`.
    fn find(&self, answer: &str, endpoint: &str) -> std::result::Result<ServerState, HapError> {
        if answer.trim() == "Can't find backend." {
            return Err(self.no_pool());
        }
        if let Some(e) = refusal(answer, &self.show_state(), endpoint) {
            return Err(e);
        }
        parse::state_row(answer, &self.pool, &self.member)?.ok_or_else(|| self.no_member())
    }

    fn no_member(&self) -> HapError {
        HapError::NoSuchMember {
            pool: self.pool.clone(),
            member: self.member.clone(),
        }
    }

    fn no_pool(&self) -> HapError {
        HapError::NoSuchPool {
            pool: self.pool.clone(),
            member: self.member.clone(),
        }
    }

    /// Checks the answer to a write: nothing but the terminating newline
    /// is a success, every other text is mapped.
    fn check_write(
        &self,
        command: &str,
        answer: &str,
        endpoint: &str,
        weight: Option<u32>,
    ) -> std::result::Result<(), HapError> {
        if answer.is_empty() {
            return Ok(());
        }
        let text = answer.trim();
        if text == "No such server." {
            return Err(self.no_member());
        }
        if text == "No such backend." {
            return Err(self.no_pool());
        }
        if let Some(w) = weight
            && (text.contains("weight can only be between")
                || text.contains("weight string")
                || text.contains("only accepts weights"))
        {
            return Err(HapError::WeightRefused {
                pool: self.pool.clone(),
                member: self.member.clone(),
                weight: w,
                text: error::shown(text),
            });
        }
        Err(refusal(answer, command, endpoint)
            .unwrap_or_else(|| HapError::unexpected(command, answer)))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.member)
    }
}

/// The answers any command may get instead of its output.
fn refusal(answer: &str, command: &str, endpoint: &str) -> Option<HapError> {
    let text = answer.trim_start();
    if text.starts_with("Permission denied") {
        Some(HapError::PermissionDenied {
            endpoint: endpoint.to_owned(),
            command: command.to_owned(),
        })
    } else if text.starts_with("Unknown command") {
        Some(HapError::unexpected(command, answer))
    } else {
        None
    }
}

impl Haproxy {
    /// A builder for the balancer called `name` in the inventory.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lb = lb_haproxy::Haproxy::builder("edge")
    ///     .socket("unix:///run/haproxy/admin.sock")
    ///     .timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(
    ///     format!("{lb:?}"),
    ///     r#"Haproxy { name: "edge", socket: "unix:///run/haproxy/admin.sock", timeout: 2s, state_file: None, master_socket: None }"#
    /// );
    /// ```
    pub fn builder(name: &str) -> HaproxyBuilder {
        HaproxyBuilder {
            name: name.to_owned(),
            socket: None,
            timeout: DEFAULT_TIMEOUT,
            state_file: None,
            master_socket: None,
        }
    }

    /// The runtime API socket, as `unix:///path` or `tcp://host:port`.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Closes every session the member has now (`shutdown sessions server
    /// B/S`): the escalation for a drain that does not finish in time.
    /// Requests in flight on it are cut.
    ///
    /// # Errors
    ///
    /// [`lb_core::Error::InvalidInput`] for an invalid name (nothing is
    /// sent), [`lb_core::Error::NotFound`] for an unknown pool or member,
    /// [`lb_core::Error::Unauthorized`] without `level admin`,
    /// [`lb_core::Error::Unavailable`] when the socket does not answer.
    pub async fn shutdown_sessions(&self, m: &MemberRef) -> Result<()> {
        let t = Target::new(&self.name, m)?;
        let op = format!("shutdown sessions of {t}");
        let cmd = t.shutdown_sessions();
        let run = async {
            let mut s = self.session().await?;
            let a = s.run(std::slice::from_ref(&cmd)).await?;
            t.check_write(&cmd, &a[0], &self.socket, None)
        };
        run.await.map_err(|e| e.into_core(&self.name, &op))
    }

    async fn session(&self) -> std::result::Result<Session, HapError> {
        Session::open(&self.endpoint, self.timeout).await
    }

    /// The reads that go with a read of `t`: its backend, and everything
    /// when a state file is kept.
    fn reads(&self, t: &Target) -> Vec<String> {
        let mut v = vec![t.show_state()];
        if self.state_file.is_some() {
            v.push("show servers state".into());
        }
        v
    }

    /// One change in one round trip: read, write, read back in one batch,
    /// then decide from the first read; keep the state file.
    ///
    /// `write` is the command, `done` tells from a row whether the member
    /// is as asked, `mismatch` explains a read-back that is not. The write
    /// goes out before the answer to the first read is known; when the
    /// member already was as asked and the write still changed its row
    /// (an inherited drain or maintenance gets a forced one on top), `undo`
    /// gives the command that puts the row back, sent in a second batch.
    #[allow(clippy::too_many_arguments)]
    async fn change(
        &self,
        t: &Target,
        write: String,
        weight: Option<u32>,
        done: impl Fn(&ServerState) -> bool,
        undo: impl Fn(&ServerState, &ServerState) -> Option<String>,
        mismatch: impl Fn(&ServerState) -> HapError,
        what: &str,
    ) -> std::result::Result<Change, HapError> {
        let _guard = match self.state_file {
            Some(_) => Some(self.state_lock.lock().await),
            None => None,
        };
        let mut s = self.session().await?;
        let mut cmds = vec![t.show_state(), write.clone()];
        cmds.extend(self.reads(t));
        let a = s.run(&cmds).await?;
        let now = t.find(&a[0], &self.socket)?;
        if done(&now) {
            tracing::debug!(balancer = %self.name, member = %t, "{what} already");
            let after = t.find(&a[2], &self.socket)?;
            if let Some(back) = undo(&now, &after) {
                let mut cmds = vec![back.clone()];
                cmds.extend(self.reads(t));
                let b = s.run(&cmds).await?;
                t.check_write(&back, &b[0], &self.socket, None)?;
                self.keep_state(t, b.get(2), what).await?;
            } else {
                self.keep_state(t, a.get(3), what).await?;
            }
            return Ok(Change::AlreadyInState);
        }
        t.check_write(&write, &a[1], &self.socket, weight)?;
        let after = t.find(&a[2], &self.socket)?;
        if !done(&after) {
            return Err(mismatch(&after));
        }
        tracing::info!(balancer = %self.name, member = %t, command = %write, "applied");
        self.keep_state(t, a.get(3), what).await?;
        Ok(Change::Applied)
    }

    /// Writes `dump` (a `show servers state` answer) to the state file.
    async fn keep_state(
        &self,
        t: &Target,
        dump: Option<&String>,
        what: &str,
    ) -> std::result::Result<(), HapError> {
        let (Some(path), Some(dump)) = (&self.state_file, dump) else {
            return Ok(());
        };
        let fail = |source: std::io::Error| HapError::StateFile {
            pool: t.pool.clone(),
            member: t.member.clone(),
            what: what.to_owned(),
            path: path.clone(),
            source,
        };
        // Only a well-formed dump goes to the file HAProxy loads.
        parse::state_rows(dump)?;
        write_atomically(path, dump.as_bytes()).await.map_err(fail)
    }
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames
/// it over `path`: HAProxy reads either the old file or the new one.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[async_trait]
impl Balancer for Haproxy {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            active_connections: true,
            health: true,
            weight_range: Some((0, MAX_WEIGHT)),
            distinct_drain: true,
            drain_signal: DrainSignal::ActiveCount,
        }
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let run = async {
            let mut s = self.session().await?;
            let cmds = [
                "show stat -1 4 -1".to_owned(),
                "show servers state".to_owned(),
                "show info".to_owned(),
            ];
            let a = s.run(&cmds).await?;
            let ep = &self.socket;
            for (c, x) in cmds.iter().zip(&a) {
                if let Some(e) = refusal(x, c, ep) {
                    return Err(e);
                }
            }
            let mut members = parse::join(&a[0], &a[1])?;
            match self.workers.others(&a[2], self.timeout).await? {
                Others::Counted(old) => {
                    for m in &mut members {
                        let key = (m.pool.clone(), m.name.clone());
                        if let (Some(a), Some(o)) = (&mut m.active, old.get(&key)) {
                            *a += o;
                        }
                    }
                }
                Others::Uncounted(_) => {
                    for m in &mut members {
                        m.active = None;
                    }
                }
            }
            Ok(members)
        };
        run.await
            .map_err(|e| e.into_core(&self.name, "list members"))
    }

    async fn set_state(&self, m: &MemberRef, state: AdminState) -> Result<Change> {
        let t = Target::new(&self.name, m)?;
        let op = format!("{state} {t}");
        let write = t.set_state(state);
        let cmd = write.clone();
        self.change(
            &t,
            write,
            None,
            |r| r.admin() == state,
            |before, after| {
                // `ready` clears both forced bits, `drain` sets the drain
                // one and clears the maintenance one.
                (before.admin_bits != after.admin_bits).then(|| {
                    t.set_state(if before.admin_bits & parse::ADMIN_FORCED_DRAIN != 0 {
                        AdminState::Drain
                    } else {
                        AdminState::Ready
                    })
                })
            },
            |r| HapError::StateReadBack {
                command: cmd.clone(),
                pool: t.pool.clone(),
                member: t.member.clone(),
                got: r.admin(),
                bits: r.admin_bits,
                why: why(r.admin_bits),
            },
            match state {
                AdminState::Ready => "ready",
                AdminState::Drain => "drained",
                AdminState::Maint => "in maintenance",
            },
        )
        .await
        .map_err(|e| e.into_core(&self.name, &op))
    }

    async fn set_weight(&self, m: &MemberRef, weight: u32) -> Result<Change> {
        let t = Target::new(&self.name, m)?;
        let op = format!("set the weight of {t} to {weight}");
        if weight > MAX_WEIGHT {
            return Err(HapError::WeightOutOfRange { weight }.into_core(&self.name, &op));
        }
        let write = t.set_weight(weight);
        let cmd = write.clone();
        self.change(
            &t,
            write,
            Some(weight),
            |r| r.weight == weight,
            |_, _| None,
            |r| HapError::WeightReadBack {
                command: cmd.clone(),
                pool: t.pool.clone(),
                member: t.member.clone(),
                got: r.weight,
            },
            &format!("at weight {weight}"),
        )
        .await
        .map_err(|e| e.into_core(&self.name, &op))
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = match self.state_file {
            Some(_) => Vec::new(),
            None => vec![format!(
                "{}: no state_file is set: drains, maintenance and weights set at runtime \
                 are lost when HAProxy reloads",
                self.name
            )],
        };
        w.extend(
            self.workers
                .notes()
                .into_iter()
                .map(|n| format!("{}: {n}", self.name)),
        );
        w
    }
}

/// Why an admin bitmask holds a server where it was not asked to be.
fn why(bits: u32) -> &'static str {
    use parse::*;
    if bits & ADMIN_INHERITED_MAINT != 0 {
        ": maintenance inherited from the server it tracks"
    } else if bits & ADMIN_RESOLUTION_MAINT != 0 {
        ": its address does not resolve"
    } else if bits & ADMIN_INHERITED_DRAIN != 0 {
        ": drain inherited from the server it tracks"
    } else {
        ""
    }
}
