//! The runs in progress, as the journal tells them: the watch's header.

use std::collections::BTreeMap;

use orchestrator::journal::{Event, Record, Step, StepStatus, Value, leftovers};
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

/// The runs in progress in `records`: those [`leftovers`] finds busy
/// (started, not ended, their process alive on this machine). This is the
/// one place the watch reads runs from, so claims kept elsewhere can be
/// added here.
pub fn in_progress(records: &[Record]) -> Vec<RunInProgress> {
    let (_, busy) = leftovers(records);
    let busy: Vec<&str> = busy
        .iter()
        .map(|b| b.split_once(' ').map_or(b.as_str(), |(id, _)| id))
        .collect();
    let mut runs: BTreeMap<&str, RunInProgress> = BTreeMap::new();
    let mut order = Vec::new();
    // The last state each (node, member) of a run was set to.
    let mut last: BTreeMap<(&str, String, String, String), bool> = BTreeMap::new();
    for r in records {
        let id = r.run.as_str();
        if !busy.contains(&id) {
            continue;
        }
        match &r.event {
            Event::Start { command, .. } => {
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
                }
            }
            Event::Intent {
                node: Some(node),
                balancer,
                pool,
                member,
                change,
                ..
            } => {
                if let Value::State(s) = change.to() {
                    let out = s != lb_core::AdminState::Ready;
                    last.insert(
                        (
                            id,
                            node.clone(),
                            balancer.clone(),
                            format!("{pool}/{member}"),
                        ),
                        out,
                    );
                }
            }
            _ => {}
        }
    }
    for ((id, node, ..), out) in last {
        if let Some(run) = runs.get_mut(id)
            && out
            && !run.claims.contains(&node)
        {
            run.claims.push(node);
        }
    }
    order.into_iter().filter_map(|id| runs.remove(id)).collect()
}
