//! Open-source nginx: edit the upstream file, `nginx -t`, reload.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lb_core::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Error, Health, Member, MemberRef,
};

use crate::config::{Edit, Server};
use crate::error::NgxError;
use crate::fsio;
use crate::includes::{Entry, Tree};
use crate::procs::{self, BuildInfo};

mod reload;

use reload::Reload;

/// The highest weight `set_weight` accepts (the lowest is 1).
///
/// nginx itself puts no upper bound on `weight=`, but its round robin adds
/// the weights of a group in a machine integer; 1000 gives proportions as
/// fine as a tenth of a percent and keeps any realistic group far from
/// overflow.
pub const MAX_WEIGHT: u32 = 1000;

/// How long a reload may take to show new workers, unless
/// [`NginxBuilder::reload_timeout`] says otherwise.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// After an `[emerg]` from the master, how long the log must stay quiet
/// with no new worker before the reload counts as failed. nginx retries a
/// failing `bind()` every 500 ms, logging each time, so this is longer.
const SETTLE_AFTER_EMERG: Duration = Duration::from_millis(1200);

/// nginx tells the old workers to shut down 100 ms after it started the
/// new ones; until then an old worker still looks current. A `down`
/// member is not reported drained until the upstream file is at least
/// this old.
const RETITLE_DELAY: Duration = Duration::from_millis(500);

/// An open-source nginx, driven by editing the file that holds its upstream
/// blocks. See the [crate documentation](crate) for the whole procedure.
///
/// Cloning is cheap; clones share the configuration.
#[derive(Debug, Clone)]
pub struct Nginx {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    upstream_file: PathBuf,
    conf: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    prefix: Option<PathBuf>,
    bin: PathBuf,
    reload_command: Option<String>,
    grace: Option<Duration>,
    reload_timeout: Duration,
    build: BuildInfo,
    /// Workers that served before one of our reloads and may still run.
    old_workers: Mutex<Vec<procs::Child>>,
}

/// Builds an [`Nginx`]; see [`Nginx::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct NginxBuilder {
    name: String,
    upstream_file: Option<PathBuf>,
    conf: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    prefix: Option<PathBuf>,
    nginx_bin: Option<PathBuf>,
    reload_command: Option<String>,
    grace: Option<Duration>,
    reload_timeout: Duration,
}

impl Nginx {
    /// Starts building the driver for the balancer called `name` in the
    /// inventory.
    pub fn builder(name: &str) -> NginxBuilder {
        NginxBuilder {
            name: name.to_owned(),
            upstream_file: None,
            conf: None,
            pid_file: None,
            prefix: None,
            nginx_bin: None,
            reload_command: None,
            grace: None,
            reload_timeout: DEFAULT_RELOAD_TIMEOUT,
        }
    }

    /// The nginx version `nginx -V` reported when the driver was built.
    pub fn version(&self) -> (u32, u32, u32) {
        self.inner.build.version
    }

    /// The upstream file the driver edits.
    pub fn upstream_file(&self) -> &Path {
        &self.inner.upstream_file
    }
}

impl NginxBuilder {
    /// The file holding the `upstream` blocks, the one file lbctl edits
    /// (inventory key `upstream_file`). Required.
    pub fn upstream_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.upstream_file = Some(p.into());
        self
    }

    /// The main configuration `nginx -t -c` checks (inventory key `conf`).
    /// Default: nginx's built-in `--conf-path`.
    pub fn conf(mut self, p: impl Into<PathBuf>) -> Self {
        self.conf = Some(p.into());
        self
    }

    /// The master's pid file (inventory key `pid_file`): the reload is a
    /// SIGHUP to that process, confirmed by its new workers, and the
    /// drained signal watches its old workers exit.
    pub fn pid_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(p.into());
        self
    }

    /// nginx's prefix, passed as `-p` (inventory key `prefix`).
    pub fn prefix(mut self, p: impl Into<PathBuf>) -> Self {
        self.prefix = Some(p.into());
        self
    }

    /// The nginx binary (inventory key `nginx_bin`). Default: `nginx` from
    /// `PATH`, else `/usr/sbin`, `/usr/local/sbin` or `/sbin`.
    pub fn nginx_bin(mut self, p: impl Into<PathBuf>) -> Self {
        self.nginx_bin = Some(p.into());
        self
    }

    /// A command that reloads nginx, run with `sh -c` instead of the SIGHUP
    /// (inventory key `reload_command`, e.g. `systemctl reload nginx`). A
    /// non-zero exit is a failed reload. With a pid file as well, the
    /// reload is still confirmed by new workers.
    pub fn reload_command(mut self, c: &str) -> Self {
        self.reload_command = Some(c.to_owned());
        self
    }

    /// The drained fallback without a pid file (inventory key `grace`): a
    /// `down` member reports `active = Some(0)` once this long has passed
    /// since the upstream file was last written.
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = Some(d);
        self
    }

    /// How long a reload may take to show new workers (default 10 s).
    pub fn reload_timeout(mut self, d: Duration) -> Self {
        self.reload_timeout = d;
        self
    }

    /// Checks everything and runs `nginx -V` once (for its version, and
    /// its built-in paths).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad name, a missing `upstream_file`,
    /// neither `pid_file` nor `reload_command`, an empty path or command,
    /// a zero reload timeout, or an nginx binary that cannot be found or
    /// run.
    pub fn build(self) -> lb_core::Result<Nginx> {
        let name = self.name;
        lb_core::validate_name(&name, "balancer", &name)?;
        let bad = |m: String| Error::invalid_input(&name, m);
        let upstream_file = self.upstream_file.ok_or_else(|| {
            bad("upstream_file is required: the file that holds the upstream blocks".into())
        })?;
        for (key, p) in [
            ("upstream_file", Some(&upstream_file)),
            ("conf", self.conf.as_ref()),
            ("pid_file", self.pid_file.as_ref()),
            ("prefix", self.prefix.as_ref()),
            ("nginx_bin", self.nginx_bin.as_ref()),
        ] {
            if p.is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(bad(format!("{key} is empty")));
            }
        }
        if let Some(c) = &self.reload_command
            && c.trim().is_empty()
        {
            return Err(bad("reload_command is empty".into()));
        }
        if self.pid_file.is_none() && self.reload_command.is_none() {
            return Err(bad(
                "set pid_file (the reload is a SIGHUP to the master) or reload_command".into(),
            ));
        }
        if self.reload_timeout.is_zero() {
            return Err(bad("the reload timeout is zero".into()));
        }
        let bin = match self.nginx_bin {
            Some(b) => b,
            None => find_nginx().ok_or_else(|| {
                bad("no nginx binary on PATH or in /usr/sbin, /usr/local/sbin, /sbin; set nginx_bin".into())
            })?,
        };
        let out = Command::new(&bin)
            .arg("-V")
            .output()
            .map_err(|e| bad(format!("cannot run {} -V: {e}", bin.display())))?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let build = BuildInfo::parse(&text).ok_or_else(|| {
            bad(format!(
                "{} -V does not report an nginx version: {:?}",
                bin.display(),
                text.trim()
            ))
        })?;
        Ok(Nginx {
            inner: Arc::new(Inner {
                name,
                upstream_file,
                conf: self.conf,
                pid_file: self.pid_file,
                prefix: self.prefix,
                bin,
                reload_command: self.reload_command,
                grace: self.grace,
                reload_timeout: self.reload_timeout,
                build,
                old_workers: Mutex::new(Vec::new()),
            }),
        })
    }
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// The admin state a server line says.
fn admin_of(e: &Entry) -> AdminState {
    if e.down {
        AdminState::Maint
    } else if e.drain {
        AdminState::Drain
    } else {
        AdminState::Ready
    }
}

impl Inner {
    fn caps(&self) -> Capabilities {
        Capabilities {
            active_connections: self.pid_file.is_some() || self.grace.is_some(),
            health: false,
            weight_range: Some((1, MAX_WEIGHT)),
            distinct_drain: self.build.has_drain(),
            drain_signal: if self.pid_file.is_some() {
                DrainSignal::WorkersExited
            } else if self.grace.is_some() {
                DrainSignal::Timer
            } else {
                DrainSignal::None
            },
        }
    }

    /// The upstream file and the files its upstream blocks include.
    fn tree(&self) -> Result<Tree, NgxError> {
        Tree::read(&self.upstream_file, &self.conf_prefix())
    }

    /// How long ago `written` was.
    fn file_age(written: Option<SystemTime>) -> Option<Duration> {
        let written = written?;
        Some(
            SystemTime::now()
                .duration_since(written)
                .unwrap_or(Duration::ZERO),
        )
    }

    /// Whether every worker older than the last reload has exited (or, with
    /// no running master to look at, whether the grace period has passed
    /// since the upstream file, or a file it includes, was written). `None` when neither signal is
    /// available.
    ///
    /// Old workers are the ones this driver saw before its own reloads
    /// (exact), and any worker whose title says it is shutting down (which
    /// also covers reloads made by others, once nginx has told its old
    /// workers to stop: hence the short [`RETITLE_DELAY`] after a write).
    fn drained_now(&self, written: Option<SystemTime>) -> Option<bool> {
        if let Some(pf) = &self.pid_file
            && let Ok(master) = procs::master_pid(pf)
        {
            let kids = procs::children(master);
            let mut old = self.old_workers.lock().unwrap_or_else(|p| p.into_inner());
            old.retain(|o| procs::was_there(&kids, o));
            if !old.is_empty() || kids.iter().any(|c| c.is_shutting_down()) {
                return Some(false);
            }
            return Some(Self::file_age(written).is_some_and(|a| a >= RETITLE_DELAY));
        }
        let grace = self.grace?;
        Some(Self::file_age(written)? >= grace)
    }

    fn members(&self) -> Result<Vec<Member>, NgxError> {
        let mut tree = self.tree()?;
        let written = tree.last_written();
        let mut drained: Option<Option<bool>> = None;
        let servers = std::mem::take(&mut tree.servers);
        let mut out = Vec::with_capacity(servers.len());
        for e in servers {
            let admin = admin_of(&e);
            let active = if admin == AdminState::Ready {
                None
            } else {
                let d = *drained.get_or_insert_with(|| self.drained_now(written));
                (d == Some(true)).then_some(0)
            };
            out.push(Member {
                pool: e.pool,
                name: e.address.clone(),
                address: e.address,
                admin,
                health: Health::Unknown,
                active,
                weight: Some(e.weight.unwrap_or(1)),
            });
        }
        Ok(out)
    }

    fn state_edit(&self, s: &Server<'_>, src: &[u8], state: AdminState) -> Edit {
        let (down, drain) = match (state, self.build.has_drain()) {
            (AdminState::Ready, _) => (false, false),
            (AdminState::Drain, true) => (false, true),
            (AdminState::Drain, false) | (AdminState::Maint, _) => (true, false),
        };
        s.set_flag(src, "down", down)
            .and(s.set_flag(src, "drain", drain))
    }

    fn set_state(&self, m: &MemberRef, state: AdminState) -> Result<Change, NgxError> {
        let want = self.caps().reads_back_as(state);
        self.transact(
            m,
            &format!("set {m} {state}"),
            |s, src| self.state_edit(s, src, state),
            |e| {
                let got = admin_of(e);
                (got == want)
                    .then_some(())
                    .ok_or(format!("reads {got}, expected {want}"))
            },
        )
    }

    fn set_weight(&self, m: &MemberRef, weight: u32) -> Result<Change, NgxError> {
        self.transact(
            m,
            &format!("set the weight of {m} to {weight}"),
            |s, src| s.set_weight(src, weight),
            |e| {
                let got = e.weight.unwrap_or(1);
                (got == weight)
                    .then_some(())
                    .ok_or(format!("weight reads {got}, expected {weight}"))
            },
        )
    }

    /// Reads the tree under the upstream file's lock (which the caller
    /// holds) and, when `m` is in a file the upstream file includes, locks
    /// that file too, reading again until it is as read (someone may have
    /// written it between the read and the lock). Returns the tree, the
    /// index of the file holding `m`, and the second lock.
    fn read_locked(&self, m: &MemberRef) -> Result<(Tree, usize, Option<fsio::Locked>), NgxError> {
        for _ in 0..5 {
            let tree = self.tree()?;
            let index = tree.find(m)?.file;
            if index == 0 {
                return Ok((tree, 0, None));
            }
            let src = &tree.files[index];
            let held = fsio::lock(&src.real)
                .map_err(|e| NgxError::io(format!("cannot lock {}", src.real.display()), e))?;
            let now = fs::read(&src.real)
                .map_err(|e| NgxError::io(format!("cannot read {}", src.real.display()), e))?;
            if now == src.bytes {
                return Ok((tree, index, Some(held)));
            }
        }
        Err(NgxError::io(
            format!("cannot change {m}: the file that holds it keeps changing"),
            std::io::Error::other("rewritten while lbctl was locking it"),
        ))
    }

    /// The whole write: lock, read, edit, write, `nginx -t`, reload, read
    /// back, restoring the original bytes on any failure after the write.
    /// The server line edited is in the upstream file or in a file one of
    /// its upstream blocks includes: only that file is written (the
    /// upstream file is locked either way, the file written as well).
    fn transact(
        &self,
        m: &MemberRef,
        what: &str,
        edit: impl Fn(&Server<'_>, &[u8]) -> Edit,
        check: impl Fn(&Entry) -> Result<(), String>,
    ) -> Result<Change, NgxError> {
        // Edit the real file: renaming over a symlink would replace the link.
        let main = fs::canonicalize(&self.upstream_file).map_err(|e| {
            NgxError::io(format!("cannot open {}", self.upstream_file.display()), e)
        })?;
        let _lock = fsio::lock(&main)
            .map_err(|e| NgxError::io(format!("cannot lock {}", main.display()), e))?;
        let (tree, index, _held) = self.read_locked(m)?;
        let path = tree.files[index].real.clone();
        let original = &tree.files[index].bytes;
        let server = tree.server(tree.find(m)?, original).ok_or_else(|| {
            NgxError::ReadBack(format!("{what}: the server line moved while it was read"))
        })?;
        let e = edit(&server, original);
        if e.is_empty() {
            return Ok(Change::AlreadyInState);
        }
        let new = e.apply(original);
        // Check our own edit before anyone sees it.
        let reparsed = tree.reparse(index, &new).map_err(|err| {
            NgxError::ReadBack(format!("{what}: the edited file would not parse: {err}"))
        })?;
        let edited = reparsed
            .iter()
            .find(|e| e.pool == m.pool && e.address == m.member)
            .ok_or_else(|| NgxError::ReadBack(format!("{what}: the edited file lost {m}")))?;
        check(edited)
            .map_err(|why| NgxError::ReadBack(format!("{what}: the edited file {why}")))?;

        fsio::replace(&path, &new)
            .map_err(|e| NgxError::io(format!("{what}: cannot write {}", path.display()), e))?;
        // nginx reads the new bytes from the page cache: let it check them
        // while the rename is made durable and the reload prepared.
        let test = self.start_test();
        let synced = fsio::sync_dir(&path);
        let prepared = self.prepare_reload();
        let tested = Self::finish_test(test);
        let restore = |why: &str| -> Result<(), NgxError> {
            fsio::write_atomic(&path, original).map_err(|e| {
                NgxError::io(
                    format!(
                        "{what}: {why}, and restoring {} failed (it holds the change)",
                        path.display()
                    ),
                    e,
                )
            })
        };
        if let Err(e) = synced {
            restore("the directory could not be synced")?;
            return Err(NgxError::io(
                format!("{what}: cannot sync the directory of {}", path.display()),
                e,
            ));
        }
        if let Err(msg) = tested {
            restore("nginx -t failed")?;
            return Err(match self.nginx_test() {
                Err(before) => NgxError::AlreadyBroken(format!(
                    "{what}: nginx -t fails even without this change, so nothing was changed \
                     ({} is as it was, nginx was not reloaded): {before}",
                    path.display()
                )),
                Ok(()) => NgxError::TestFailed(format!(
                    "{what}: nginx -t refused the change, so nothing was changed \
                     ({} is as it was, nginx was not reloaded): {msg}",
                    path.display()
                )),
            });
        }
        let old = match prepared.and_then(|p| self.reload(p)) {
            Ok(old) => old,
            Err(e) => {
                restore("the reload failed")?;
                if matches!(e, Reload::Unconfirmed(_)) {
                    // nginx may still load the edited file late: reload once
                    // more so it converges on the restored one.
                    let _ = self.signal_reload();
                }
                let msg = e.message();
                let msg = format!("{what}: {msg} ({} is as it was)", path.display());
                return Err(match e {
                    Reload::Denied(_) => NgxError::Denied(msg),
                    Reload::NotRunning(_) => NgxError::NotRunning(msg),
                    _ => NgxError::ReloadFailed(msg),
                });
            }
        };
        self.old_workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(old);
        let back = self.tree()?;
        check(back.find(m)?).map_err(|why| {
            NgxError::ReadBack(format!(
                "{what}: after the reload {} {why} (changed by someone else?)",
                path.display()
            ))
        })?;
        tracing::info!(balancer = %self.name, "{what}: applied and reloaded");
        Ok(Change::Applied)
    }
}

async fn blocking<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, NgxError> + Send + 'static,
) -> lb_core::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.into_core(name)),
        Err(e) => Err(Error::unavailable(
            name,
            format!("the nginx operation did not complete: {e}"),
        )),
    }
}

#[async_trait]
impl Balancer for Nginx {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.caps()
    }

    async fn members(&self) -> lb_core::Result<Vec<Member>> {
        let inner = self.inner.clone();
        blocking(&self.inner.name, move || inner.members()).await
    }

    /// Edits the member's `server` line, checks, reloads and confirms.
    /// The operation runs to its end on a thread of its own even when the
    /// future is dropped, so the file is never left half-done.
    async fn set_state(&self, m: &MemberRef, state: AdminState) -> lb_core::Result<Change> {
        m.validate(&self.inner.name)?;
        let (inner, m) = (self.inner.clone(), m.clone());
        blocking(&self.inner.name, move || inner.set_state(&m, state)).await
    }

    async fn set_weight(&self, m: &MemberRef, weight: u32) -> lb_core::Result<Change> {
        m.validate(&self.inner.name)?;
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(Error::invalid_input(
                &self.inner.name,
                format!("weight {weight} for {m} is out of range 1..={MAX_WEIGHT}"),
            ));
        }
        let (inner, m) = (self.inner.clone(), m.clone());
        blocking(&self.inner.name, move || inner.set_weight(&m, weight)).await
    }

    fn warnings(&self) -> Vec<String> {
        let i = &self.inner;
        let mut w = Vec::new();
        if !i.build.has_drain() {
            let (a, b, c) = i.build.version;
            w.push(format!(
                "nginx {a}.{b}.{c} has no `drain` server parameter (1.29.6+): drain marks the server `down`, as maint does"
            ));
        }
        if i.pid_file.is_none() && i.grace.is_none() {
            w.push(
                "no pid_file and no grace: lbctl cannot tell when a drained member's requests have finished".into(),
            );
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(version: (u32, u32, u32)) -> Inner {
        Inner {
            name: "front".into(),
            upstream_file: "/x".into(),
            conf: None,
            pid_file: Some("/p".into()),
            prefix: None,
            bin: "nginx".into(),
            reload_command: None,
            grace: None,
            reload_timeout: DEFAULT_RELOAD_TIMEOUT,
            build: BuildInfo {
                version,
                ..BuildInfo::default()
            },
            old_workers: Mutex::new(Vec::new()),
        }
    }

    /// The server line after `state`, starting from `line`.
    fn after(i: &Inner, line: &str, state: AdminState) -> String {
        let src = format!("upstream u {{ {line} }}");
        let f = crate::config::UpstreamFile::parse(src.as_bytes()).unwrap();
        let s = f.find("u", "a:1").unwrap();
        let out = i.state_edit(s, src.as_bytes(), state).apply(src.as_bytes());
        let out = String::from_utf8(out).unwrap();
        out["upstream u { ".len()..out.len() - 2].to_string()
    }

    #[test]
    fn drain_uses_the_drain_parameter_from_nginx_1_29_6() {
        let new = inner((1, 29, 6));
        assert!(new.caps().distinct_drain);
        assert_eq!(
            after(&new, "server a:1;", AdminState::Drain),
            "server a:1 drain;"
        );
        assert_eq!(
            after(&new, "server a:1 down;", AdminState::Drain),
            "server a:1 drain;"
        );
        assert_eq!(
            after(&new, "server a:1 drain;", AdminState::Maint),
            "server a:1 down;"
        );
        assert_eq!(
            after(&new, "server a:1 drain;", AdminState::Ready),
            "server a:1;"
        );
        assert_eq!(
            after(&new, "server a:1 down;", AdminState::Ready),
            "server a:1;"
        );

        let old = inner((1, 22, 1));
        assert!(!old.caps().distinct_drain);
        assert_eq!(
            old.caps().reads_back_as(AdminState::Drain),
            AdminState::Maint
        );
        assert_eq!(
            after(&old, "server a:1;", AdminState::Drain),
            "server a:1 down;"
        );
        assert_eq!(
            after(&old, "server a:1 down;", AdminState::Drain),
            "server a:1 down;"
        );
        assert_eq!(
            after(&old, "server a:1;", AdminState::Maint),
            "server a:1 down;"
        );
        assert_eq!(
            after(&old, "server a:1 down;", AdminState::Ready),
            "server a:1;"
        );
    }

    #[test]
    fn admin_state_from_the_parameters() {
        let f = crate::config::UpstreamFile::parse(
            b"upstream u { server a down; server b drain; server c; server d drain down; }",
        )
        .unwrap();
        let got: Vec<_> = f.upstreams()[0]
            .servers()
            .iter()
            .map(|s| admin_of(&Entry::new("u", 0, s)))
            .collect();
        assert_eq!(
            got,
            [
                AdminState::Maint,
                AdminState::Drain,
                AdminState::Ready,
                AdminState::Maint
            ]
        );
    }
}
