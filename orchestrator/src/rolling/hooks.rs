//! Running hooks: `sh -c` in a process group of its own, with `{node}`,
//! `{address}`, `{group}` substituted and the same values in the
//! environment, output streamed line by line to the run's log file (and
//! its tail kept for the failure message), killed (the whole group) when
//! its time runs out or the run is stopped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// How many lines of a failed hook's output the failure shows.
pub(crate) const TAIL_LINES: usize = 20;
/// How many characters of one output line the failure shows (a screen of
/// 80 × 25); the hook log keeps the whole line.
pub(crate) const TAIL_LINE_CHARS: usize = 2000;

/// `line` as the failure's tail shows it: cut after [`TAIL_LINE_CHARS`]
/// characters, saying how much was left out.
fn tail_line(line: String) -> String {
    match line.char_indices().nth(TAIL_LINE_CHARS) {
        None => line,
        Some((at, _)) => format!(
            "{}… ({} more bytes; the whole line is in the hook log)",
            &line[..at],
            line.len() - at
        ),
    }
}

/// The values a hook sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    pub node: String,
    pub address: String,
    pub group: String,
    pub step: String,
    pub run: String,
}

impl Vars {
    pub fn substitute(&self, template: &str) -> String {
        template
            .replace("{node}", &self.node)
            .replace("{address}", &self.address)
            .replace("{group}", &self.group)
    }

    fn label(&self) -> String {
        match (self.group.is_empty(), self.node.is_empty()) {
            (true, _) => self.step.clone(),
            (false, true) => format!("{} {}", self.group, self.step),
            (false, false) => format!("{}/{} {}", self.group, self.node, self.step),
        }
    }
}

/// The run's hook log: every hook's output, line by line, prefixed with
/// the time and what ran it.
#[derive(Debug)]
pub(crate) struct HookLog {
    file: Mutex<File>,
}

impl HookLog {
    pub fn open(path: &Path) -> Result<HookLog> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| {
                Error::State(format!("cannot create hook log dir {}: {e}", d.display()))
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::State(format!("cannot open hook log {}: {e}", path.display())))?;
        Ok(HookLog {
            file: Mutex::new(file),
        })
    }

    pub fn line(&self, label: &str, text: &str) {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{} [{label}] {text}", crate::journal::now_rfc3339());
    }
}

/// How a hook ended.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The exit code, when it exited.
    pub exit_code: Option<i32>,
    /// It ran out of time and was killed.
    pub timed_out: bool,
    /// The run was stopped and the hook killed.
    pub interrupted: bool,
    /// The last lines of its output.
    pub tail: Vec<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.interrupted
    }

    /// `exit 3`, `timed out after 30s`, `killed by signal 9`.
    pub fn describe(&self, timeout: Duration) -> String {
        if self.timed_out {
            format!(
                "timed out after {} and was killed",
                crate::duration::format_duration(timeout)
            )
        } else if self.interrupted {
            "stopped (lbctl was interrupted)".into()
        } else {
            match self.exit_code {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".into(),
            }
        }
    }
}

fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    r: R,
    log: Arc<HookLog>,
    label: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            log.line(&label, &l);
            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(tail_line(l));
        }
    })
}

/// SIGTERM to the process group `pgid` of `child`, then SIGKILL once
/// `grace` has passed since the SIGTERM while any process of the group is
/// left; nothing of the group outlives this call. Returns the shell's
/// status.
async fn stop_group(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    let Some(pg) = pgid else {
        let _ = child.start_kill();
        return child.wait().await.ok();
    };
    let deadline = Instant::now() + grace;
    let _ = killpg(pg, Signal::SIGTERM);
    let mut status = None;
    let mut reaped = false;
    loop {
        let tick =
            Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now()));
        if reaped {
            tokio::time::sleep(tick).await;
        } else if let Ok(s) = tokio::time::timeout(tick, child.wait()).await {
            status = s.ok();
            reaped = true;
        }
        // Signal 0: does any process of the group (the shell once reaped
        // aside) still exist?
        let left = killpg(pg, None).is_ok();
        if reaped && !left {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = killpg(pg, Signal::SIGKILL);
            if !reaped {
                status = child.wait().await.ok();
            }
            return status;
        }
    }
}

/// How long a hook may run, and how long it gets to go once stopped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Its time limit.
    pub timeout: Duration,
    /// From SIGTERM to SIGKILL (the plan's `hook_grace`).
    pub grace: Duration,
}

/// Runs `template` (substituted with `vars`) under `sh -c` in `cwd`, for
/// at most `timeout`, streaming its output into `log`; `spawned` is sent
/// the shell's pid (its process group) as soon as it runs. `stop` turning true
/// (or the timeout) stops it: SIGTERM to its process group, then SIGKILL
/// once `grace` has passed since the SIGTERM if any process of the group
/// is still there (the shell may go at once while what it started traps
/// TERM to clean up).
///
/// # Errors
///
/// [`Error::Failed`] when the shell cannot be started.
pub(crate) async fn run(
    template: &str,
    vars: &Vars,
    Limits { timeout, grace }: Limits,
    cwd: &Path,
    log: &Arc<HookLog>,
    spawned: Option<oneshot::Sender<u32>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Outcome> {
    let command = vars.substitute(template);
    let label = vars.label();
    log.line(&label, &format!("$ {command}"));
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(cwd)
        .env("LBCTL_NODE", &vars.node)
        .env("LBCTL_ADDRESS", &vars.address)
        .env("LBCTL_GROUP", &vars.group)
        .env("LBCTL_STEP", &vars.step)
        .env("LBCTL_RUN", &vars.run)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Failed(format!("{label}: cannot run sh -c {command:?}: {e}")))?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    if let (Some(tx), Some(pid)) = (spawned, child.id()) {
        let _ = tx.send(pid);
    }
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|o| spawn_reader(o, log.clone(), label.clone(), tail.clone())),
        child
            .stderr
            .take()
            .map(|e| spawn_reader(e, log.clone(), label.clone(), tail.clone())),
    ];
    let (mut timed_out, mut interrupted) = (false, false);
    let already_stopped = *stop.borrow();
    let status = if already_stopped {
        interrupted = true;
        None
    } else {
        tokio::select! {
            s = child.wait() => s.ok(),
            _ = tokio::time::sleep(timeout) => { timed_out = true; None }
            _ = stop.wait_for(|s| *s) => { interrupted = true; None }
        }
    };
    let status = match status {
        Some(s) => Some(s),
        None => {
            // Out of time or stopped: the whole process group goes.
            stop_group(&mut child, pgid, grace).await
        }
    };
    // A background process the hook started may keep its output open: do
    // not wait for it for long.
    for r in readers.into_iter().flatten() {
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), r)
            .await
            .is_err()
        {
            abort.abort();
            log.line(
                &label,
                "(its output is still held open by a background process; not waited for)",
            );
        }
    }
    let outcome = Outcome {
        exit_code: if timed_out || interrupted {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        interrupted,
        tail: tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect(),
        elapsed: started.elapsed(),
    };
    log.line(
        &label,
        &format!(
            "{} after {} ms",
            outcome.describe(timeout),
            outcome.elapsed.as_millis()
        ),
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            node: "node2".into(),
            address: "127.0.0.1:8082".into(),
            group: "rails".into(),
            step: "upgrade".into(),
            run: "r1".into(),
        }
    }

    #[tokio::test]
    async fn substitutes_sets_env_streams_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hooks.log");
        let log = Arc::new(HookLog::open(&path).unwrap());
        let (_tx, mut rx) = watch::channel(false);
        let o = run(
            "echo {node} {address} {group}; echo \"$LBCTL_NODE $LBCTL_ADDRESS $LBCTL_GROUP $LBCTL_STEP\" >&2; for i in $(seq 1 30); do echo line$i; done; exit 3",
            &vars(),
            Limits { timeout: Duration::from_secs(10), grace: Duration::from_millis(500) },
            dir.path(),
            &log,
            None,
            &mut rx,
        )
        .await
        .unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert!(!o.ok());
        assert_eq!(o.tail.len(), TAIL_LINES);
        // stdout and stderr are two pipes read apart: the stderr line may
        // arrive anywhere among stdout's; stdout's own lines keep their order.
        let stdout: Vec<&String> = o.tail.iter().filter(|l| l.starts_with("line")).collect();
        assert_eq!(stdout.last().unwrap().as_str(), "line30", "{:?}", o.tail);
        assert!(
            stdout.windows(2).all(|w| {
                let n = |l: &str| l.trim_start_matches("line").parse::<u32>().unwrap();
                n(w[1]) == n(w[0]) + 1
            }),
            "{:?}",
            o.tail
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("[rails/node2 upgrade] node2 127.0.0.1:8082 rails"),
            "{text}"
        );
        assert!(
            text.contains("[rails/node2 upgrade] node2 127.0.0.1:8082 rails upgrade"),
            "{text}"
        );
        assert!(text.contains("exit 3 after"), "{text}");
    }

    #[tokio::test]
    async fn one_huge_output_line_is_cut_in_the_tail_and_whole_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.log");
        let log = Arc::new(HookLog::open(&path).unwrap());
        let (_tx, mut rx) = watch::channel(false);
        // One 10 MB line, then a short one.
        let o = run(
            "head -c 10000000 /dev/zero | tr '\\0' x; echo; echo done; exit 1",
            &vars(),
            Limits {
                timeout: Duration::from_secs(30),
                grace: Duration::from_millis(500),
            },
            dir.path(),
            &log,
            None,
            &mut rx,
        )
        .await
        .unwrap();
        assert_eq!(o.exit_code, Some(1));
        assert_eq!(
            o.tail.len(),
            2,
            "{:?}",
            o.tail.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(
            o.tail[0].len() < 2 * TAIL_LINE_CHARS + 100,
            "cut to a screen: {} bytes",
            o.tail[0].len()
        );
        assert!(
            o.tail[0].ends_with("… (9998000 more bytes; the whole line is in the hook log)"),
            "{}",
            &o.tail[0][o.tail[0].len().saturating_sub(120)..]
        );
        assert_eq!(o.tail[1], "done");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&"x".repeat(10_000_000)),
            "the log keeps it whole"
        );
    }

    #[tokio::test]
    async fn a_hook_out_of_time_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(HookLog::open(&dir.path().join("hooks.log")).unwrap());
        let (_tx, mut rx) = watch::channel(false);
        let pidfile = dir.path().join("child.pid");
        let o = run(
            // The child ignores SIGTERM: only the group's SIGKILL ends it.
            &format!(
                "(trap '' TERM; exec sleep 60) & echo $! > {}; wait",
                pidfile.display()
            ),
            &vars(),
            Limits {
                timeout: Duration::from_millis(300),
                grace: Duration::from_millis(500),
            },
            dir.path(),
            &log,
            None,
            &mut rx,
        )
        .await
        .unwrap();
        assert!(o.timed_out && !o.ok(), "{o:?}");
        assert!(
            o.describe(Duration::from_millis(300))
                .contains("timed out after 300ms")
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        // A killed process takes a moment to become a zombie or vanish.
        let gone = || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z")
        };
        let mut waited = 0;
        while !gone() && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert!(
            gone(),
            "the hook's child {pid} still runs 5s after the kill"
        );
    }

    #[tokio::test]
    async fn stopping_kills_the_running_hook() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(HookLog::open(&dir.path().join("hooks.log")).unwrap());
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(true);
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let t = Instant::now();
        let o = run(
            "sleep 30",
            &vars(),
            Limits {
                timeout: Duration::from_secs(60),
                grace: Duration::from_millis(500),
            },
            dir.path(),
            &log,
            None,
            &mut rx,
        )
        .await
        .unwrap();
        assert!(o.interrupted && !o.ok(), "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(20));
    }
}
