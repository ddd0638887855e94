//! `history`: who changed what, when and why, from the journal.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Fleet;
use crate::engine::journal::{EndStatus, Event, Record, hostname, process_alive};
use crate::error::{Error, Result};
use crate::report::{Change as ChangeSummary, HistoryReport, RunResult, RunSummary};

/// Which runs `history` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only runs that changed this node or name it in their command.
    pub node: Option<String>,
    /// Only runs started this long ago or less.
    pub since: Option<Duration>,
}

impl Fleet {
    /// Every run the journal holds (oldest first), as `filter` selects
    /// them. Reads only: needs no lock, and changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::State`] without a journal, or one that cannot be read.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<HistoryReport> {
        let journal = self
            .journal()
            .ok_or_else(|| Error::State("history needs a state directory (--state-dir)".into()))?;
        let read = journal.read_all().await?;
        let cutoff = filter.since.map(|d| time::OffsetDateTime::now_utc() - d);
        let mut runs = summarize(&read.records);
        runs.retain(|r| {
            let recent = match (cutoff, parse_ts(&r.started)) {
                (Some(c), Some(t)) => t >= c,
                _ => true,
            };
            let about = filter.node.as_ref().is_none_or(|n| {
                r.changes
                    .iter()
                    .any(|c| c.node.as_deref() == Some(n.as_str()))
                    || r.command.split_whitespace().any(|w| w == n)
            });
            recent && about
        });
        Ok(HistoryReport {
            runs,
            skipped_lines: read.skipped,
        })
    }
}

fn parse_ts(ts: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()
}

/// One summary per run, in the order runs started.
fn summarize(records: &[Record]) -> Vec<RunSummary> {
    let me = hostname();
    let mut order: Vec<String> = Vec::new();
    let mut runs: BTreeMap<String, RunSummary> = BTreeMap::new();
    let mut alive: BTreeMap<String, bool> = BTreeMap::new();
    let mut seqs: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut recovered_by: BTreeMap<String, String> = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::Start {
                pid,
                host,
                user,
                command,
                reason,
            } => {
                order.push(r.run.clone());
                alive.insert(r.run.clone(), *host == me && process_alive(*pid));
                runs.insert(
                    r.run.clone(),
                    RunSummary {
                        run: r.run.clone(),
                        started: r.ts.clone(),
                        ended: None,
                        who: format!("{user}@{host}"),
                        pid: *pid,
                        command: command.clone(),
                        reason: reason.clone(),
                        result: RunResult::Interrupted,
                        changes: Vec::new(),
                    },
                );
            }
            Event::Intent {
                seq,
                node,
                balancer,
                pool,
                member,
                change,
            } => {
                if let Some(run) = runs.get_mut(&r.run) {
                    seqs.insert((r.run.clone(), *seq), run.changes.len());
                    run.changes.push(ChangeSummary {
                        node: node.clone(),
                        balancer: balancer.clone(),
                        pool: pool.clone(),
                        member: member.clone(),
                        what: change.what(),
                        from: change.from(),
                        to: change.to(),
                        result: None,
                    });
                }
            }
            Event::Done { seq, result, .. } => {
                if let (Some(i), Some(run)) =
                    (seqs.get(&(r.run.clone(), *seq)), runs.get_mut(&r.run))
                {
                    run.changes[*i].result = Some(*result);
                }
            }
            Event::End { status, recovered } => {
                if let Some(run) = runs.get_mut(&r.run)
                    && run.ended.is_none()
                {
                    run.ended = Some(r.ts.clone());
                    run.result = RunResult::Ended(*status);
                }
                if let (EndStatus::Recovered, Some(other)) = (status, recovered) {
                    recovered_by.insert(other.clone(), r.run.clone());
                }
            }
            Event::Rolling { .. } | Event::Step { .. } | Event::Hook { .. } => {}
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let mut run = runs.remove(&id)?;
            if run.ended.is_none() {
                run.result = if recovered_by.contains_key(&id) {
                    RunResult::Recovered
                } else if alive.get(&id).copied().unwrap_or(false) {
                    RunResult::Running
                } else {
                    RunResult::Interrupted
                };
            }
            Some(run)
        })
        .collect()
}
