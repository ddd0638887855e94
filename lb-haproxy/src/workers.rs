//! Every HAProxy process that may still hold connections: after a reload
//! the old worker finishes the requests it has while the new one answers
//! the stats socket with `scur` 0. Either the master CLI lists the old
//! workers and counts their connections, or the driver notices the worker
//! changed and waits for the old one to exit, or says it cannot tell.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::HapError;
use crate::parse;
use crate::transport::{Endpoint, master_command};

/// How many times a refused connection to the master CLI is tried again
/// (50 ms apart) within one read: a reload's re-exec takes that long.
const MASTER_RETRIES: u32 = 10;

/// What the workers other than the one answering the stats socket add to
/// its figures.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Others {
    /// Connections per (backend, server) of the old workers, from the
    /// master CLI (empty when there is none).
    Counted(HashMap<(String, String), u64>),
    /// Old workers still run whose connections cannot be counted (no
    /// master CLI): every `active` is unknown until they exit.
    Uncounted(Vec<u32>),
}

/// The workers seen so far.
#[derive(Debug, Default)]
struct Seen {
    /// The worker that answered the last read.
    current: Option<u32>,
    /// Workers replaced since, not yet seen to exit.
    old: BTreeSet<u32>,
    /// What happened, for the driver's warnings.
    notes: Vec<String>,
}

/// Keeps track of HAProxy's workers for one driver.
#[derive(Debug)]
pub(crate) struct Workers {
    master: Option<Endpoint>,
    /// Whether HAProxy's PIDs are this host's (the stats socket is local).
    local: bool,
    seen: Mutex<Seen>,
}

impl Workers {
    pub(crate) fn new(master: Option<Endpoint>, stats: &Endpoint) -> Workers {
        Workers {
            master,
            local: stats.is_local(),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// What the reloads noticed so far, for [`lb_core::Balancer::warnings`].
    pub(crate) fn notes(&self) -> Vec<String> {
        self.lock().notes.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The other workers' share, given the `show info` answer of the one
    /// that answered the stats socket.
    ///
    /// # Errors
    ///
    /// [`HapError::ReloadUnseen`] when the worker changed since the last
    /// read and, without a master CLI, this host cannot see whether the
    /// old one still runs; the master CLI's errors.
    pub(crate) async fn others(
        &self,
        show_info: &str,
        timeout: Duration,
    ) -> Result<Others, HapError> {
        let pid = pid_of(show_info)?;
        if let Some(master) = &self.master {
            return counted(master, timeout).await.map(Others::Counted);
        }
        let mut seen = self.lock();
        uncounted(&mut seen, pid, self.local, |p| {
            is_haproxy(Path::new("/proc"), p)
        })
    }
}

/// The `Pid:` of a `show info` answer.
fn pid_of(show_info: &str) -> Result<u32, HapError> {
    show_info
        .lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| HapError::parse("show info", "no Pid: line"))
}

/// Whether `pid` is a running haproxy process, as `/proc` (`proc`) shows.
fn is_haproxy(proc: &Path, pid: u32) -> bool {
    std::fs::read_to_string(proc.join(pid.to_string()).join("comm"))
        .is_ok_and(|c| c.trim() == "haproxy")
}

/// Without a master CLI: notes a change of worker, forgets old workers
/// that exited (`alive` says), and says which still run.
fn uncounted(
    seen: &mut Seen,
    pid: u32,
    local: bool,
    alive: impl Fn(u32) -> bool,
) -> Result<Others, HapError> {
    if let Some(before) = seen.current
        && before != pid
    {
        seen.old.insert(before);
        seen.notes.push(format!(
            "HAProxy reloaded during this run (worker {before} → {pid}); connections on \
             the old worker cannot be counted without master_socket, so waits go on until \
             it exits"
        ));
    }
    seen.current = Some(pid);
    if seen.old.is_empty() {
        return Ok(Others::Counted(HashMap::new()));
    }
    if !local || !alive(pid) {
        let old = seen.old.iter().map(u32::to_string).collect::<Vec<_>>();
        return Err(HapError::ReloadUnseen {
            old: old.join(", "),
            new: pid,
        });
    }
    seen.old.retain(|p| alive(*p));
    if seen.old.is_empty() {
        Ok(Others::Counted(HashMap::new()))
    } else {
        Ok(Others::Uncounted(seen.old.iter().copied().collect()))
    }
}

/// Through the master CLI: the connections of every old worker, per
/// (backend, server).
async fn counted(
    master: &Endpoint,
    timeout: Duration,
) -> Result<HashMap<(String, String), u64>, HapError> {
    // The master re-executes itself on a reload and refuses connections
    // for that moment: look again a few times before calling it down.
    let mut tries = 0;
    let procs = loop {
        match master_command(master, timeout, "show proc").await {
            Err(HapError::Connect { .. }) if tries < MASTER_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => break r?,
        }
    };
    let mut sum = HashMap::new();
    for pid in old_workers(&procs)? {
        let cmd = format!("@!{pid} show stat -1 4 -1");
        let stat = master_command(master, timeout, &cmd).await?;
        if stat.trim_start().starts_with("Can't find the target PID") {
            continue; // it exited since `show proc`
        }
        if stat.trim().is_empty() {
            // A worker that exits as it is asked answers nothing: gone if
            // the master no longer lists it, else ask again later.
            let procs = master_command(master, timeout, "show proc").await?;
            if !old_workers(&procs)?.contains(&pid) {
                continue;
            }
            return Err(HapError::Closed {
                endpoint: master.to_string(),
                command: cmd,
            });
        }
        for r in parse::stat_rows(&stat)? {
            *sum.entry((r.pool, r.name)).or_insert(0) += r.scur.unwrap_or(0);
        }
    }
    Ok(sum)
}

/// The PIDs under `# old workers` in a `show proc` answer.
fn old_workers(show_proc: &str) -> Result<Vec<u32>, HapError> {
    if !show_proc.starts_with("#<PID>") {
        return Err(HapError::unexpected("show proc", show_proc));
    }
    let mut out = Vec::new();
    let mut in_old = false;
    for l in show_proc.lines() {
        if let Some(section) = l.strip_prefix('#') {
            in_old = section.trim() == "old workers";
            continue;
        }
        if in_old && let Some(pid) = l.split_whitespace().next() {
            out.push(
                pid.parse()
                    .map_err(|_| HapError::parse("show proc", format!("PID {pid:?}")))?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
        12508           master          1 [failed: 0]   0d00h00m03s     2.6.12-1+deb12u4\n\
        # workers\n\
        12573           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n\
        # old workers\n\
        12512           worker          1               0d00h00m03s     2.6.12-1+deb12u4\n\
        # programs\n\n";

    #[test]
    fn finds_the_old_workers_of_show_proc() {
        assert_eq!(old_workers(PROC).unwrap(), [12512]);
        assert!(old_workers("Unknown command.\n").is_err());
    }

    #[test]
    fn a_changed_worker_is_waited_for_while_it_runs_and_refused_when_unseen() {
        let mut seen = Seen::default();
        let none = Others::Counted(HashMap::new());
        assert_eq!(uncounted(&mut seen, 10, true, |_| true).unwrap(), none);
        assert_eq!(uncounted(&mut seen, 10, true, |_| true).unwrap(), none);
        // Reloaded: 10 still runs.
        assert_eq!(
            uncounted(&mut seen, 11, true, |_| true).unwrap(),
            Others::Uncounted(vec![10])
        );
        assert!(seen.notes[0].contains("worker 10 → 11"), "{:?}", seen.notes);
        // 10 exited.
        assert_eq!(uncounted(&mut seen, 11, true, |p| p == 11).unwrap(), none);

        // A remote HAProxy, or PIDs of another namespace: cannot tell.
        let mut seen = Seen::default();
        uncounted(&mut seen, 10, false, |_| true).unwrap();
        let e = uncounted(&mut seen, 11, false, |_| true).unwrap_err();
        assert!(e.to_string().contains("master_socket"), "{e}");
        let mut seen = Seen::default();
        uncounted(&mut seen, 10, true, |_| false).unwrap();
        assert!(uncounted(&mut seen, 11, true, |_| false).is_err());
    }

    #[test]
    fn reads_the_pid_of_show_info() {
        assert_eq!(
            pid_of("Name: HAProxy\nPid: 12573\nUptime: 1\n").unwrap(),
            12573
        );
        assert!(pid_of("Name: HAProxy\n").is_err());
    }

    #[test]
    fn only_haproxy_processes_count_as_alive() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("7")).unwrap();
        std::fs::write(proc.path().join("7/comm"), "haproxy\n").unwrap();
        std::fs::create_dir(proc.path().join("8")).unwrap();
        std::fs::write(proc.path().join("8/comm"), "bash\n").unwrap();
        assert!(is_haproxy(proc.path(), 7));
        assert!(!is_haproxy(proc.path(), 8));
        assert!(!is_haproxy(proc.path(), 9));
    }
}
