//! Hooks that outlived the lbctl that started them: a rolling run's
//! `hook` records whose step never ended, whose lbctl is gone, and whose
//! process group still has a process that carries the run's `LBCTL_RUN`.

use std::collections::BTreeMap;
use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::journal::{Event, Record, Step, StepStatus, hostname, process_alive};
use crate::error::{Error, Result};

/// A hook still running for a run whose lbctl is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleHook {
    /// The run that started it.
    pub run: String,
    /// Its group (none for the plan's own steps).
    pub group: Option<String>,
    /// Its node (none for group and plan steps).
    pub node: Option<String>,
    /// Its step.
    pub step: Step,
    /// Its process group.
    pub pgid: u32,
    /// The processes of the group still there.
    pub pids: Vec<u32>,
}

impl std::fmt::Display for StaleHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match (&self.group, &self.node) {
            (Some(g), Some(n)) => format!("{g}/{n} "),
            (Some(g), None) => format!("{g} "),
            _ => String::new(),
        };
        write!(
            f,
            "{at}step {} of run {}: hook process group {} (pid {}) still runs",
            self.step,
            self.run,
            self.pgid,
            self.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

type Key = (String, Option<String>, Option<String>, Step);

/// The hooks of `records` (of the runs `only` names, or all) that still
/// run on this machine although the lbctl that started them is gone and
/// their step never ended.
pub fn stale_hooks(records: &[Record], only: Option<&[String]>) -> Vec<StaleHook> {
    let me = hostname();
    let mut lbctl_alive: BTreeMap<&str, bool> = BTreeMap::new();
    let mut hooks: BTreeMap<Key, u32> = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::Start { pid, host, .. } => {
                lbctl_alive.insert(&r.run, *host == me && process_alive(*pid));
            }
            Event::Hook {
                group,
                node,
                step,
                pgid,
                host,
            } if *host == me => {
                hooks.insert((r.run.clone(), group.clone(), node.clone(), *step), *pgid);
            }
            Event::Step {
                group,
                node,
                step,
                status,
                ..
            } if *status != StepStatus::Started => {
                hooks.remove(&(r.run.clone(), group.clone(), node.clone(), *step));
            }
            _ => {}
        }
    }
    hooks
        .into_iter()
        .filter(|((run, ..), _)| only.is_none_or(|o| o.contains(run)))
        .filter(|((run, ..), _)| !lbctl_alive.get(run.as_str()).copied().unwrap_or(false))
        .filter_map(|((run, group, node, step), pgid)| {
            let pids = group_members(pgid, &run);
            (!pids.is_empty()).then_some(StaleHook {
                run,
                group,
                node,
                step,
                pgid,
                pids,
            })
        })
        .collect()
}

/// The live processes of group `pgid` that carry `LBCTL_RUN=run` (a pid
/// reused since by something else is not one of them).
fn group_members(pgid: u32, run: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mark = format!("LBCTL_RUN={run}");
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command's `)`: state, ppid, pgrp.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let mut f = rest.split_whitespace();
            let state = f.next();
            let pgrp = f.nth(1).and_then(|p| p.parse::<u32>().ok());
            state != Some("Z") && pgrp == Some(pgid)
        })
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == mark.as_bytes()))
                .unwrap_or(false)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Kills (SIGKILL) the processes of `hook` that are still there.
pub fn kill_stale(hook: &StaleHook) {
    for pid in group_members(hook.pgid, &hook.run) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Refuses (exit 4) while a hook of the runs `only` names (or of any run)
/// still runs although the lbctl that started it is gone, unless `kill`:
/// then its processes are killed (SIGKILL) and its step may run again.
///
/// # Errors
///
/// [`Error::Claimed`] naming each hook's step, process group and pids.
pub fn refuse_stale(records: &[Record], only: Option<&[String]>, kill: bool) -> Result<()> {
    let stale = stale_hooks(records, only);
    if stale.is_empty() {
        return Ok(());
    }
    if kill {
        for h in &stale {
            tracing::warn!("killing a hook that outlived its lbctl: {h}");
            kill_stale(h);
        }
        return Ok(());
    }
    Err(Error::Claimed(format!(
        "{}; the lbctl that started it is gone, and its step must not run twice at once nor its \
         node go back into rotation under it; nothing changed. Wait for it to end, or add \
         --kill-stale-hooks to kill it first",
        stale
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = r#"{"ts":"2026-11-30T02:00:00Z","run":"1-2-3","event":"hook","group":"app","node":"node1","step":"upgrade","pgid":4000000001,"host":"elsewhere"}"#;

    #[test]
    fn a_hook_record_reads_and_writes_as_one_json_line() {
        let r: Record = serde_json::from_str(HOOK).unwrap();
        assert_eq!(
            r.event,
            Event::Hook {
                group: Some("app".into()),
                node: Some("node1".into()),
                step: Step::Upgrade,
                pgid: 4_000_000_001,
                host: "elsewhere".into(),
            }
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), HOOK);
    }

    #[test]
    fn a_hook_on_another_machine_or_whose_step_ended_is_not_stale() {
        let mut records: Vec<Record> = vec![serde_json::from_str(HOOK).unwrap()];
        assert_eq!(stale_hooks(&records, None), Vec::new(), "another machine");
        // This machine, this process's own group and run mark: ended step.
        let me = std::process::id();
        records[0].event = Event::Hook {
            group: None,
            node: None,
            step: Step::Finally,
            pgid: me,
            host: hostname(),
        };
        records.push(Record {
            ts: String::new(),
            run: "1-2-3".into(),
            event: Event::Step {
                group: None,
                node: None,
                step: Step::Finally,
                status: StepStatus::Failed,
                detail: None,
            },
        });
        assert_eq!(stale_hooks(&records, None), Vec::new(), "its step ended");
    }
}
