//! Checking (`nginx -t`) and reloading nginx after an edit of the
//! upstream file, and what a reload that failed says.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Inner, SETTLE_AFTER_EMERG};
use crate::config;
use crate::procs::{self, LogTail};

impl Inner {
    pub(super) fn conf_path(&self) -> Option<PathBuf> {
        self.conf.clone().or_else(|| self.build.conf_path.clone())
    }

    /// The directory nginx reads a relative `include` path under
    /// (`cycle->conf_prefix`): the main configuration's (`conf`, else the
    /// built-in `--conf-path`, else nginx's default `conf/nginx.conf`),
    /// itself under the prefix when relative (`prefix`, else the built-in
    /// `--prefix`, else `/usr/local/nginx/`), as `ngx_process_options`
    /// resolves them for the `nginx -t -c conf -p prefix` this driver runs.
    pub(super) fn conf_prefix(&self) -> PathBuf {
        let prefix = self
            .prefix
            .clone()
            .or_else(|| self.build.prefix.clone())
            .unwrap_or_else(|| PathBuf::from("/usr/local/nginx/"));
        let conf = self
            .conf_path()
            .unwrap_or_else(|| PathBuf::from("conf/nginx.conf"));
        let conf = prefix.join(conf);
        let conf = std::path::absolute(&conf).unwrap_or(conf);
        conf.parent()
            .map_or_else(|| PathBuf::from("/"), PathBuf::from)
    }

    /// Runs `nginx -t`; `Err` carries nginx's own message.
    pub(super) fn nginx_test(&self) -> Result<(), String> {
        Self::finish_test(self.start_test())
    }

    /// Starts `nginx -t`, which then runs while we do other work.
    pub(super) fn start_test(&self) -> Result<std::process::Child, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-t").arg("-q");
        if let Some(c) = &self.conf {
            cmd.arg("-c").arg(c);
        }
        if let Some(p) = &self.prefix {
            cmd.arg("-p").arg(p);
        }
        if self.build.has_e_flag() {
            cmd.arg("-e").arg("stderr");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))
    }

    /// Waits for `nginx -t`; `Err` carries nginx's own message.
    pub(super) fn finish_test(child: Result<std::process::Child, String>) -> Result<(), String> {
        let out = child?
            .wait_with_output()
            .map_err(|e| format!("nginx -t: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Err(if lines.is_empty() {
            format!("nginx -t exited with {}", out.status)
        } else {
            lines.join("; ")
        })
    }

    /// The error log the master writes to: the first file-based
    /// `error_log` of the main context of the configuration, else nginx's
    /// built-in one; relative paths are under the prefix.
    pub(super) fn error_log(&self) -> Option<PathBuf> {
        let from_conf = self.conf_path().and_then(|c| {
            let text = fs::read(&c).ok()?;
            let ds = config::main_context(&text).ok()?;
            ds.into_iter()
                .filter(|d| d.words[0].value() == "error_log" && d.words.len() >= 2)
                .map(|d| d.words[1].value().to_owned())
                .find(|v| v != "stderr" && !v.starts_with("syslog:") && !v.starts_with("memory:"))
                .map(PathBuf::from)
        });
        let p = from_conf.or_else(|| self.build.error_log_path.clone())?;
        if p.is_absolute() {
            return Some(p);
        }
        let prefix = self.prefix.clone().or_else(|| self.build.prefix.clone())?;
        Some(prefix.join(p))
    }

    /// What the reload confirmation compares against, taken before the
    /// reload (while `nginx -t` runs). `None` without a pid file.
    pub(super) fn prepare_reload(&self) -> Result<Option<Prepared>, Reload> {
        let Some(pf) = &self.pid_file else {
            return Ok(None);
        };
        let master = procs::master_pid(pf).map_err(|e| Reload::NotRunning(e.to_string()))?;
        Ok(Some(Prepared {
            master,
            before: procs::children(master),
            log: self.error_log().and_then(|p| LogTail::open(&p)),
        }))
    }

    /// Sends the reload: the command, or SIGHUP to the master.
    pub(super) fn signal_reload(&self) -> Result<(), Reload> {
        if let Some(cmd) = &self.reload_command {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .output()
                .map_err(|e| Reload::Failed(format!("cannot run reload_command {cmd:?}: {e}")))?;
            if !out.status.success() {
                let text = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
                return Err(Reload::Failed(format!(
                    "reload_command {cmd:?} failed ({}): {}",
                    out.status,
                    text.trim()
                )));
            }
            return Ok(());
        }
        let pf = self
            .pid_file
            .as_ref()
            .expect("build() requires one of the two");
        let master = procs::master_pid(pf).map_err(|e| Reload::NotRunning(e.to_string()))?;
        kill(Pid::from_raw(master as i32), Signal::SIGHUP).map_err(|e| match e {
            Errno::EPERM => Reload::Denied(format!(
                "not allowed to signal the nginx master (pid {master}): run as its user or root, or set reload_command"
            )),
            Errno::ESRCH => Reload::NotRunning(format!("the nginx master (pid {master}) has exited")),
            e => Reload::Failed(format!("cannot signal the nginx master (pid {master}): {e}")),
        })
    }

    /// Reloads and confirms: a new worker under the same master, and no
    /// worker from before the reload still accepting (each has exited or
    /// retitled itself `worker process is shutting down`, which nginx does
    /// as it closes its listening sockets), or nginx's own error. Returns
    /// the workers that served before the reload (they finish their
    /// requests and exit).
    pub(super) fn reload(&self, prepared: Option<Prepared>) -> Result<Vec<procs::Child>, Reload> {
        let Some(Prepared {
            master,
            before,
            mut log,
        }) = prepared
        else {
            return self.signal_reload().map(|()| Vec::new());
        };
        self.signal_reload()?;
        let start = Instant::now();
        let mut emerg: Vec<String> = Vec::new();
        let mut last_growth = start;
        loop {
            let kids = procs::children(master);
            let fresh = kids
                .iter()
                .any(|c| c.is_current_worker() && !procs::was_there(&before, c));
            // Until an old worker takes its QUIT, it accepts connections
            // and routes them by the old configuration.
            let old_accepting = kids
                .iter()
                .any(|c| c.is_current_worker() && procs::was_there(&before, c));
            if fresh && !old_accepting {
                return Ok(before
                    .into_iter()
                    .filter(|c| c.is_current_worker() || c.is_shutting_down())
                    .collect());
            }
            if procs::title(master).is_none() {
                return Err(Reload::Failed(format!(
                    "the nginx master (pid {master}) exited during the reload"
                )));
            }
            if let Some(l) = &mut log {
                let (lines, grew) = l.poll(master);
                if grew {
                    last_growth = Instant::now();
                }
                emerg.extend(lines);
            }
            let waited = start.elapsed();
            if !emerg.is_empty() && last_growth.elapsed() >= SETTLE_AFTER_EMERG {
                return Err(Reload::Refused(format!(
                    "nginx refused the reload and keeps its old configuration: {}",
                    emerg.join("; ")
                )));
            }
            if waited >= self.reload_timeout {
                let said = if emerg.is_empty() {
                    match self.error_log() {
                        Some(p) => format!("see {}", p.display()),
                        None => "see nginx's error log".into(),
                    }
                } else {
                    format!("nginx says: {}", emerg.join("; "))
                };
                let what = if fresh {
                    format!(
                        "a worker from before the reload still accepted connections {:?} after it",
                        self.reload_timeout
                    )
                } else {
                    format!(
                        "no new nginx worker appeared within {:?} after the reload",
                        self.reload_timeout
                    )
                };
                return Err(Reload::Unconfirmed(format!("{what}; {said}",)));
            }
            std::thread::sleep(Duration::from_millis(
                if waited < Duration::from_millis(200) {
                    2
                } else {
                    20
                },
            ));
        }
    }
}

/// The master and its workers before a reload, and its error log.
#[derive(Debug)]
pub(super) struct Prepared {
    master: u32,
    before: Vec<procs::Child>,
    log: Option<LogTail>,
}

/// How a reload went wrong.
#[derive(Debug)]
pub(super) enum Reload {
    /// nginx said no (its `[emerg]` lines).
    Refused(String),
    /// Nothing happened in time, and nginx said nothing we could read.
    Unconfirmed(String),
    /// The command failed, or the signal could not be sent.
    Failed(String),
    /// Not allowed to signal.
    Denied(String),
    /// No master to signal.
    NotRunning(String),
}

impl Reload {
    pub(super) fn message(&self) -> &str {
        match self {
            Reload::Refused(m)
            | Reload::Unconfirmed(m)
            | Reload::Failed(m)
            | Reload::Denied(m)
            | Reload::NotRunning(m) => m,
        }
    }
}
