//! What a rolling run reports: every node's steps with their results,
//! where the time went, and where and why it stopped
//! ([`RollingReport::summary`] says it in one paragraph).

use serde::Serialize;

use super::gate::GateReport;
use crate::journal::Step;
use crate::rebalance::RebalanceReport;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Done.
    Ok,
    /// Failed: the run stopped here.
    Failed,
    /// The run was stopped (SIGINT/SIGTERM) during this step.
    Interrupted,
    /// Done by an earlier run that this one resumes.
    Skipped,
    /// `--dry-run`: would run.
    Planned,
}

/// Where a node (or the whole run) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Every step done.
    Ok,
    /// A step failed.
    Failed,
    /// Stopped by a signal.
    Interrupted,
    /// Not reached (the run stopped before it).
    Pending,
    /// Done by an earlier run that this one resumes.
    Skipped,
    /// `--dry-run`.
    Planned,
    /// The run stopped at a pause point of the plan (exit 0).
    Paused,
    /// `--skip`: left out of the run as it was (out of rotation).
    LeftOut,
}

/// One step in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Which step.
    pub step: Step,
    /// The group, for group steps (`after_group`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The hook command as run (substituted), or what the step does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How it ended.
    pub result: StepResult,
    /// When it began (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When it ended (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// How long it took (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// A hook's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// `drain`: how long connections took to end; `undrain`: how long the
    /// balancers took to see the node healthy (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    /// `gate`: what it checked and found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateReport>,
    /// Why it failed, or a note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepReport {
    pub(super) fn new(step: Step, command: Option<String>, result: StepResult) -> StepReport {
        StepReport {
            step,
            group: None,
            command,
            result,
            started: None,
            ended: None,
            ms: None,
            exit_code: None,
            waited_ms: None,
            gate: None,
            message: None,
        }
    }
}

/// One node in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// Its group.
    pub group: String,
    /// The node.
    pub node: String,
    /// Its address.
    pub address: String,
    /// Whether balancers front it (drained and undrained).
    pub balanced: bool,
    /// Where it ended.
    pub result: RunResult,
    /// `--dry-run`: the members the drain would take out of rotation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Its steps, in order.
    pub steps: Vec<StepReport>,
}

/// Where the time went, for the overhead figure: everything that is not
/// a hook and not waiting for real connections to finish is
/// orchestration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// The whole run (ms).
    pub elapsed_ms: u64,
    /// In hooks (ms; summed over nodes).
    pub hooks_ms: u64,
    /// Waiting for connections to end while draining (ms).
    pub drain_wait_ms: u64,
    /// In health gates (ms).
    pub gate_ms: u64,
    /// Waiting for balancers to see nodes healthy after undrain (ms).
    pub health_wait_ms: u64,
    /// In the plan's `rebalance` step (ms): measuring and waiting for
    /// users to move.
    pub rebalance_ms: u64,
    /// `elapsed - hooks - drain_wait - rebalance` (ms): gates and health
    /// waits count as orchestration.
    pub overhead_ms: u64,
    /// Nodes this run worked on.
    pub nodes: usize,
    /// `overhead / nodes` (ms).
    pub overhead_per_node_ms: u64,
}

/// Where and why the run stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The node (left out of rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The step.
    pub step: Step,
    /// Whether a signal stopped the run (rather than a failure).
    pub interrupted: bool,
    /// What went wrong.
    pub message: String,
    /// The last lines of the hook's output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_tail: Vec<String>,
    /// The command that continues the run.
    pub resume: String,
}

/// Where a run paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paused {
    /// `after_first_node` or `after_group`.
    pub pause: String,
    /// The group it paused in (or after).
    pub group: String,
    /// The node it paused after (`after_first_node`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The command that continues the run.
    pub resume: String,
}

/// `lbctl rolling`: what ran, step by step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollingReport {
    /// The plan.
    pub plan: String,
    /// The journal's id of this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The run this one resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumes: Option<String>,
    /// How it ended.
    pub result: RunResult,
    /// When it began (RFC 3339).
    pub started: String,
    /// When it ended (RFC 3339).
    pub ended: String,
    /// Every hook's output, line by line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_log: Option<String>,
    /// Nodes in the plan.
    pub nodes_total: usize,
    /// Nodes upgraded and back (in this run or the ones it resumes).
    pub nodes_done: usize,
    /// The plan's and the groups' own steps (ZDU, `after_group`,
    /// `rebalance`, `finally`).
    pub steps: Vec<StepReport>,
    /// Every node of the plan, in order.
    pub nodes: Vec<NodeReport>,
    /// Where the time went.
    pub timing: Timing,
    /// What the plan's `rebalance` step found and did (absent when the
    /// plan has none, or an earlier run did it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceReport>,
    /// Where and why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Where it paused (a pause point of the plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RollingReport {
    /// Where node `n` of group `g` is in [`nodes`](Self::nodes) (a node
    /// a `revisit` group takes up again is there once per group).
    pub(super) fn node_index(&self, g: &str, n: &str) -> Option<usize> {
        self.nodes.iter().position(|x| x.node == n && x.group == g)
    }

    /// One paragraph saying where the run stopped, the hook's output tail
    /// and how to continue (or that it finished).
    pub fn summary(&self) -> String {
        if let Some(p) = &self.paused {
            let at = match &p.node {
                Some(n) => format!("{}/{n}", p.group),
                None => format!("group {}", p.group),
            };
            return format!(
                "rolling upgrade of {} paused after {at} (pause = {:?}): {}/{} nodes done; \
                 continue with `{}`",
                self.plan, p.pause, self.nodes_done, self.nodes_total, p.resume
            );
        }
        let Some(f) = &self.failure else {
            return format!(
                "rolling upgrade of {} {}: {}/{} nodes",
                self.plan,
                match self.result {
                    RunResult::Planned => "planned",
                    _ => "done",
                },
                self.nodes_done,
                self.nodes_total
            );
        };
        let place = match (&f.group, &f.node) {
            (Some(g), Some(n)) => format!("{g}/{n}: "),
            (Some(g), None) => format!("group {g}: "),
            _ => String::new(),
        };
        let what = if f.interrupted {
            "interrupted during"
        } else {
            "failed at"
        };
        let mut s = format!("{place}{what} step {}: {}", f.step, f.message);
        if let Some(n) = &f.node {
            let node = f
                .group
                .as_deref()
                .and_then(|g| self.node_index(g, n))
                .map(|i| &self.nodes[i]);
            // Back when its on_failure and gate passed and it was undrained.
            let back = node.is_some_and(|x| {
                x.steps
                    .iter()
                    .any(|s| s.step == Step::Undrain && s.result == StepResult::Ok)
            });
            if node.is_some_and(|x| x.balanced) {
                s.push_str(&if back {
                    format!("; {n} is back in rotation after its on_failure hook and gate passed")
                } else {
                    format!("; {n} is left out of rotation")
                });
            }
        }
        if !f.output_tail.is_empty() {
            s.push_str(&format!(
                "\n--- last {} lines of its output{} ---\n{}\n---",
                f.output_tail.len(),
                self.hook_log
                    .as_ref()
                    .map_or(String::new(), |p| format!(" (full log: {p})")),
                f.output_tail.join("\n")
            ));
        }
        s.push_str(&format!(
            "\n{}/{} nodes done; {} `{}`",
            self.nodes_done,
            self.nodes_total,
            if f.interrupted {
                "continue with"
            } else {
                "fix it, then continue with"
            },
            f.resume
        ));
        s
    }
}
