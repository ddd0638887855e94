//! The runs in progress, as the journal tells them: the watch's header.

use std::collections::BTreeMap;

use lb_core::AdminState;
use orchestrator::journal::{Event, Record, Step, StepStatus, Value, process_lives};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A run that has started, not ended, and whose process still lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInProgress {
    /// Its id in the journal.
    pub id: String,
    /// Its command (`rolling /srv/plan.toml`, `rebalance`, `drain node2`).
    pub command: String,
    /// A rolling run's plan.
    pub plan: Option<String>,
    /// A rolling run's last step: group, node, step and where it is.
    pub step: Option<(Option<String>, Option<String>, Step, StepStatus)>,
    /// When it started.
    pub started: Option<OffsetDateTime>,
    /// The nodes it holds out of rotation now (its last state change for
    /// one of their members was not `ready`).
    pub claims: Vec<String>,
}

impl RunInProgress {
    /// Seconds since it started.
    pub fn elapsed(&self, now: OffsetDateTime) -> Option<u64> {
        self.started
            .map(|s| (now - s).whole_seconds().max(0).unsigned_abs())
    }
}

/// The runs in progress in `records`: started, not ended, and their
/// process alive on this machine. This is the one place the watch reads
/// runs from, so claims kept elsewhere can be added here.
///
/// A run's claims are the nodes it holds out of rotation: for a rolling
/// run, the nodes whose `drain` step began and that are not done yet; for
/// others, the nodes whose last state change in the run was not `ready`.
pub fn in_progress(records: &[Record]) -> Vec<RunInProgress> {
    let mut runs: BTreeMap<&str, RunInProgress> = BTreeMap::new();
    let mut order = Vec::new();
    // Per run and node: whether it is out of rotation now.
    let mut out: BTreeMap<(&str, String), bool> = BTreeMap::new();
    for r in records {
        let id = r.run.as_str();
        match &r.event {
            Event::Start {
                pid, host, command, ..
            } if process_lives(*pid, host) => {
                order.push(id);
                runs.insert(
                    id,
                    RunInProgress {
                        id: id.to_string(),
                        command: command.clone(),
                        plan: None,
                        step: None,
                        started: OffsetDateTime::parse(&r.ts, &Rfc3339).ok(),
                        claims: Vec::new(),
                    },
                );
            }
            Event::End { recovered, .. } => {
                runs.remove(id);
                if let Some(other) = recovered {
                    runs.remove(other.as_str());
                }
            }
            Event::Rolling { plan, .. } => {
                if let Some(run) = runs.get_mut(id) {
                    run.plan = Some(plan.clone());
                }
            }
            Event::Step {
                group,
                node,
                step,
                status,
                ..
            } => {
                if let Some(run) = runs.get_mut(id) {
                    run.step = Some((group.clone(), node.clone(), *step, *status));
                    match (node, step) {
                        (Some(n), Step::Drain) => {
                            out.insert((id, n.clone()), true);
                        }
                        (Some(n), Step::Node) => {
                            out.insert((id, n.clone()), false);
                        }
                        _ => {}
                    }
                }
            }
            Event::Intent {
                node: Some(node),
                change,
                ..
            } => {
                if let (Some(run), Value::State(s)) = (runs.get(id), change.to())
                    && run.plan.is_none()
                {
                    out.insert((id, node.clone()), s != AdminState::Ready);
                }
            }
            _ => {}
        }
    }
    for ((id, node), is_out) in out {
        if let Some(run) = runs.get_mut(id)
            && is_out
        {
            run.claims.push(node);
        }
    }
    order.into_iter().filter_map(|id| runs.remove(id)).collect()
}

/// Adds what the coordination backend says is claimed now (`claims`:
/// key and holder, every machine's with etcd) to `runs`: a claimed node
/// goes to its holder's run, and a holder whose run the journal does not
/// show in progress here (another machine's, with etcd) gets a run of its
/// own from what the claim says.
pub fn with_claims(
    mut runs: Vec<RunInProgress>,
    claims: &[(String, orchestrator::engine::Holder)],
) -> Vec<RunInProgress> {
    for (key, h) in claims {
        let i = match runs.iter().position(|r| r.id == h.run) {
            Some(i) => i,
            None => {
                runs.push(RunInProgress {
                    id: h.run.clone(),
                    command: format!("{} ({}@{})", h.command, h.user, h.host),
                    plan: None,
                    step: None,
                    started: OffsetDateTime::parse(&h.since, &Rfc3339).ok(),
                    claims: Vec::new(),
                });
                runs.len() - 1
            }
        };
        if !runs[i].claims.contains(key) {
            runs[i].claims.push(key.clone());
        }
    }
    runs
}
