//! Rolling upgrades: a [`Plan`] run node by node over a [`Fleet`].
//!
//! For each node, in the plan's order and within its group's batch size:
//! drain on every balancer (guard, drain, wait until nothing is in
//! flight, maint: [`Fleet::drain`]) → `before` → `upgrade` (or
//! `first_node`) → `after` → health gate → undrain and wait until every
//! balancer sees it healthy ([`Fleet::undrain`]). Groups with
//! `balanced = false` run hooks and gates only. Any failure stops the run
//! and leaves the failing node out of rotation; the journal records every
//! step, so [`RollingOptions::resume`] continues at the step that failed.
//!
//! Once every group is done (and Confluence's upgrade approved), a plan
//! with `rebalance` runs [`Fleet::rebalance`] once, as a step of its own,
//! before `finally`. A pool it leaves skewed, or that the guard kept it
//! from touching, is a warning: the upgrade itself succeeded. A balancer
//! failing during it fails the step like a failing hook.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

mod error;
mod gate;
mod hooks;
mod zdu;

pub use error::RollingError;
pub use gate::GateReport;

use self::hooks::{HookLog, Vars};
use self::zdu::{Halt, Zdu};
use crate::error::{Error, Result};
use crate::fleet::{DrainOptions, Fleet, Node, UndrainOptions};

use crate::journal::{Event, Record, Run, now_rfc3339};
use crate::plan::{
    DEFAULT_GATE_INTERVAL, DEFAULT_GATE_TIMEOUT, Gate, GateCheck, Group, Hook, Plan,
};
use crate::rebalance::{PoolOutcome, RebalanceOptions, RebalanceReport, Strategy};

/// One step of a rolling upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Confluence ZDU: enable upgrade mode (before the first node).
    ZduStart,
    /// Take the node out of rotation everywhere and wait until its
    /// connections are gone.
    Drain,
    /// The `before` hook.
    Before,
    /// The `upgrade` hook.
    Upgrade,
    /// The `first_node` hook (instead of `upgrade` on a group's first node).
    FirstNode,
    /// The `after` hook.
    After,
    /// The health gate.
    Gate,
    /// Put the node back and wait until every balancer sees it healthy.
    Undrain,
    /// The group's `after_group` hook.
    AfterGroup,
    /// Confluence ZDU: wait for READY_TO_RUN_UPGRADE_TASKS and approve.
    ZduApprove,
    /// The plan's `rebalance`: [`Fleet::rebalance`] once the last node is
    /// back.
    Rebalance,
    /// The plan's `finally` hook.
    Finally,
    /// Confluence ZDU: leave upgrade mode (a run abandoned before any
    /// node was upgraded).
    ZduCancel,
}

impl Step {
    /// Its name, as the journal and the report write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::ZduStart => "zdu_start",
            Step::Drain => "drain",
            Step::Before => "before",
            Step::Upgrade => "upgrade",
            Step::FirstNode => "first_node",
            Step::After => "after",
            Step::Gate => "gate",
            Step::Undrain => "undrain",
            Step::AfterGroup => "after_group",
            Step::ZduApprove => "zdu_approve",
            Step::Rebalance => "rebalance",
            Step::Finally => "finally",
            Step::ZduCancel => "zdu_cancel",
        }
    }

    fn is_hook(self) -> bool {
        matches!(
            self,
            Step::Before
                | Step::Upgrade
                | Step::FirstNode
                | Step::After
                | Step::AfterGroup
                | Step::Finally
        )
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    fn new(step: Step, command: Option<String>, result: StepResult) -> StepReport {
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
    /// Things the operator should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RollingReport {
    /// One paragraph saying where the run stopped, the hook's output tail
    /// and how to continue (or that it finished).
    pub fn summary(&self) -> String {
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
            let balanced = self.nodes.iter().any(|x| &x.node == n && x.balanced);
            if balanced {
                s.push_str(&format!("; {n} is left out of rotation"));
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

/// What a progress display is told.
#[derive(Debug, Clone)]
pub struct ProgressEvent<'a> {
    /// The group (empty for the plan's own steps).
    pub group: &'a str,
    /// The node (empty for group and plan steps).
    pub node: &'a str,
    /// The step.
    pub step: Step,
    /// `None` when the step begins; its report when it ends.
    pub finished: Option<&'a StepReport>,
    /// Nodes done so far.
    pub nodes_done: usize,
    /// Nodes in the plan.
    pub nodes_total: usize,
    /// Since the run began.
    pub elapsed: Duration,
}

/// Told about every step as it begins and ends (for a live display).
pub trait RollingProgress: Send + Sync + std::fmt::Debug {
    /// A step began or ended.
    fn step(&self, e: &ProgressEvent<'_>);
}

/// How to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollingOptions {
    /// Continue the last run of this plan at the step where it stopped.
    pub resume: bool,
    /// Start from the beginning even though the last run of this plan
    /// stopped half way.
    pub restart: bool,
    /// Print the whole ordered plan; touch nothing.
    pub dry_run: bool,
    /// Where hooks' output goes (default: `STATE_DIR/rolling/RUN.log`).
    pub hook_log: Option<PathBuf>,
    /// The command a failure message tells the operator to run to
    /// continue (default `lbctl rolling --plan PLAN --resume`).
    pub resume_hint: Option<String>,
}

/// Asks a running upgrade to stop: nothing new begins, the running hook is
/// killed, the current node stays out of rotation.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Stops the run.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// A rolling upgrade of `plan` over `fleet`.
#[derive(Debug)]
pub struct Rolling<'a> {
    fleet: &'a Fleet,
    plan: &'a Plan,
    opts: RollingOptions,
    progress: Option<Arc<dyn RollingProgress>>,
    stop: Arc<watch::Sender<bool>>,
}

type Key = (String, String, String);

/// What the journal says about earlier runs of the plan.
#[derive(Debug, Default)]
struct History {
    /// The run to resume.
    last: Option<PastRun>,
    /// Steps done (ok) by the resumed chain: (group, node, step).
    done: BTreeSet<Key>,
    /// Some node's upgrade step began in the chain.
    upgrade_began: bool,
}

#[derive(Debug, Clone)]
struct PastRun {
    id: String,
    ended: Option<String>,
    progressed: bool,
    stopped_at: Option<String>,
}

/// The earlier runs of a plan: the last one, which run each resumed, and
/// each run's step records `((group, node, step), status)`.
struct Past {
    last: Option<PastRun>,
    resumes: BTreeMap<String, Option<String>>,
    steps: BTreeMap<String, Vec<(Key, String)>>,
}

fn history(records: &[Record], plan: &str) -> Past {
    let mut runs: Vec<String> = Vec::new();
    let mut resumes: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut ended: BTreeMap<String, String> = BTreeMap::new();
    let mut steps: BTreeMap<String, Vec<(Key, String)>> = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::Rolling {
                plan: p,
                resumes: from,
            } if p == plan => {
                runs.push(r.run.clone());
                resumes.insert(r.run.clone(), from.clone());
            }
            Event::Step {
                group,
                node,
                step,
                status,
                ..
            } if resumes.contains_key(&r.run) => {
                steps
                    .entry(r.run.clone())
                    .or_default()
                    .push(((group.clone(), node.clone(), step.clone()), status.clone()));
            }
            Event::End { status, .. } if resumes.contains_key(&r.run) => {
                ended.insert(r.run.clone(), status.clone());
            }
            _ => {}
        }
    }
    let last = runs.last().map(|id| {
        let s = steps.get(id).map(Vec::as_slice).unwrap_or_default();
        let progressed = s
            .iter()
            .any(|((_, node, _), st)| !node.is_empty() && (st == "ok" || st == "started"));
        let stopped_at = s
            .iter()
            .rev()
            .find(|(_, st)| st != "ok")
            .map(|((g, n, step), st)| {
                let place = match (g.is_empty(), n.is_empty()) {
                    (true, _) => String::new(),
                    (false, true) => format!("{g} "),
                    (false, false) => format!("{g}/{n} "),
                };
                format!("{place}{step} ({st})")
            });
        PastRun {
            id: id.clone(),
            ended: ended.get(id).cloned(),
            progressed,
            stopped_at,
        }
    });
    Past {
        last,
        resumes,
        steps,
    }
}

impl<'a> Rolling<'a> {
    /// A run of `plan` over `fleet`, with default options.
    pub fn new(fleet: &'a Fleet, plan: &'a Plan) -> Rolling<'a> {
        let (tx, _) = watch::channel(false);
        Rolling {
            fleet,
            plan,
            opts: RollingOptions::default(),
            progress: None,
            stop: Arc::new(tx),
        }
    }

    /// Replaces the options.
    pub fn options(mut self, opts: RollingOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Reports every step to `p`.
    pub fn progress(mut self, p: Arc<dyn RollingProgress>) -> Self {
        self.progress = Some(p);
        self
    }

    /// A handle that stops the run (for SIGINT/SIGTERM handlers).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    fn plan_id(&self) -> String {
        self.plan.path.as_ref().map_or_else(
            || self.plan.origin().to_string(),
            |p| p.display().to_string(),
        )
    }

    fn resume_hint(&self) -> String {
        self.opts
            .resume_hint
            .clone()
            .unwrap_or_else(|| format!("lbctl rolling --plan {} --resume", self.plan.origin()))
    }

    fn gate_for(&self, g: &Group, node: &Node) -> Option<Gate> {
        g.gate.clone().or_else(|| {
            node.health.as_ref().map(|url| Gate {
                check: GateCheck::Http {
                    url: url.clone(),
                    expect_status: 200,
                    body: None,
                },
                timeout: DEFAULT_GATE_TIMEOUT,
                interval: DEFAULT_GATE_INTERVAL,
            })
        })
    }

    /// The steps of node `ni` of group `g`, in order, with their hooks.
    fn node_steps<'p>(&self, g: &'p Group, ni: usize) -> Vec<(Step, Option<&'p Hook>)> {
        let mut v = Vec::new();
        if g.balanced {
            v.push((Step::Drain, None));
        }
        if let Some(h) = &g.before {
            v.push((Step::Before, Some(h)));
        }
        match (&g.first_node, &g.upgrade) {
            (Some(h), _) if ni == 0 => v.push((Step::FirstNode, Some(h))),
            (_, Some(h)) => v.push((Step::Upgrade, Some(h))),
            _ => {}
        }
        if let Some(h) = &g.after {
            v.push((Step::After, Some(h)));
        }
        v.push((Step::Gate, None));
        if g.balanced {
            v.push((Step::Undrain, None));
        }
        v
    }

    /// The group's batches: the first node alone when it has its own hook
    /// (a deploy node), then `batch` nodes at a time.
    fn batches(g: &Group) -> Vec<Vec<usize>> {
        let idx: Vec<usize> = (0..g.nodes.len()).collect();
        let (head, rest) = if g.first_node.is_some() {
            (vec![vec![0]], &idx[1..])
        } else {
            (Vec::new(), &idx[..])
        };
        head.into_iter()
            .chain(rest.chunks(g.batch.max(1)).map(<[usize]>::to_vec))
            .collect()
    }

    /// Checks what can be checked before anything changes: the plan
    /// against the inventory, every balanced node matched by some
    /// balancer, no unbalanced node fronted by one.
    async fn preflight(&self) -> Result<BTreeMap<String, Vec<String>>> {
        self.plan.check(self.fleet)?;
        let names: Vec<&str> = self.plan.nodes().map(|(_, n)| n).collect();
        let mut members = BTreeMap::new();
        if self.fleet.balancers().is_empty() {
            if let Some((gi, g)) = self
                .plan
                .groups
                .iter()
                .enumerate()
                .find(|(_, g)| g.balanced)
            {
                return Err(Error::Config(format!(
                    "{}: group {} is balanced but the inventory has no balancer; set balanced = false",
                    self.plan.describe_group(gi),
                    g.name
                )));
            }
            return Ok(members);
        }
        let status = self.fleet.status(&names).await?;
        for (gi, g) in self.plan.groups.iter().enumerate() {
            for (ni, n) in g.nodes.iter().enumerate() {
                let st = status.nodes.iter().find(|s| &s.node == n);
                let m: Vec<String> = st
                    .map(|s| {
                        s.members
                            .iter()
                            .map(|m| format!("{} {}/{}", m.balancer, m.pool, m.member))
                            .collect()
                    })
                    .unwrap_or_default();
                if g.balanced && m.is_empty() {
                    return Err(Error::Config(format!(
                        "{}: group {}: node {n} matches no member on any balancer; set `members` for it \
                         in the inventory, or balanced = false for its group if no balancer fronts it",
                        self.plan.describe_node(gi, ni),
                        g.name
                    )));
                }
                if !g.balanced && !m.is_empty() {
                    return Err(Error::Config(format!(
                        "{}: group {} has balanced = false, but node {n} is in rotation on {}; \
                         lbctl would stop it while it takes traffic. Set balanced = true",
                        self.plan.describe_node(gi, ni),
                        g.name,
                        m.join(", ")
                    )));
                }
                members.insert(n.clone(), m);
            }
        }
        Ok(members)
    }

    /// Runs the plan (or, with `dry_run`, reports it).
    ///
    /// # Errors
    ///
    /// [`RollingError::Setup`] before any step ran: [`Error::Config`] /
    /// [`Error::Usage`] (exit 2) for a plan that does not fit the
    /// inventory or a resume with nothing to resume; [`Error::Guard`]
    /// (exit 4) when Confluence has a node in `ERROR` or an upgrade
    /// already under way; [`Error::State`] for the journal.
    /// [`RollingError::Stopped`] (exit 1) when a step failed or the run
    /// was stopped, with the report saying where.
    pub async fn run(&self) -> std::result::Result<RollingReport, RollingError> {
        let members = self.preflight().await?;
        let plan_id = self.plan_id();
        let journal = self.fleet.journal();
        let mut hist = History::default();
        let mut resumes = None;
        if let Some(j) = journal {
            let Past {
                last,
                resumes: chain_of,
                steps,
            } = history(&j.records()?, &plan_id);
            if self.opts.resume {
                let Some(last) = last.clone() else {
                    return Err(Error::Usage(format!(
                        "nothing to resume: the journal in {} has no run of {}",
                        j.dir().display(),
                        self.plan.origin()
                    ))
                    .into());
                };
                if last.ended.as_deref() == Some("ok") {
                    return Err(Error::Usage(format!(
                        "nothing to resume: the last run of {} (run {}) finished",
                        self.plan.origin(),
                        last.id
                    ))
                    .into());
                }
                // The chain: the last run and the runs it resumed.
                let mut at = Some(last.id.clone());
                while let Some(id) = at {
                    for ((g, n, s), st) in steps.get(&id).map(Vec::as_slice).unwrap_or_default() {
                        if st == "ok" {
                            hist.done.insert((g.clone(), n.clone(), s.clone()));
                        }
                        if (s == "upgrade" || s == "first_node") && !n.is_empty() {
                            hist.upgrade_began = true;
                        }
                    }
                    at = chain_of.get(&id).cloned().flatten();
                }
                resumes = Some(last.id.clone());
            } else if let Some(last) = &last
                && last.ended.as_deref() != Some("ok")
                && last.progressed
                && !self.opts.restart
                && !self.opts.dry_run
            {
                return Err(Error::Usage(format!(
                    "the last run of {} (run {}) stopped{}; continue it with --resume, or start over with --restart",
                    self.plan.origin(),
                    last.id,
                    last.stopped_at
                        .as_ref()
                        .map_or(String::new(), |s| format!(" at {s}"))
                )).into());
            }
            hist.last = last;
        } else if self.opts.resume {
            return Err(
                Error::State("--resume needs a state directory (--state-dir)".into()).into(),
            );
        }
        if self.opts.dry_run {
            return Ok(self.planned(&hist, &members, resumes));
        }
        let _rolling_lock = match journal {
            Some(j) => Some(
                j.lock_file("rolling.lock", "another lbctl rolling", Duration::ZERO)
                    .await?,
            ),
            None => None,
        };
        let zdu = self.plan.zdu.as_ref().map(Zdu::new).transpose()?;
        if let Some(z) = &zdu {
            z.check_ready(self.opts.resume).await?;
        }
        let run = match journal {
            Some(j) => {
                let run = Run::start(j, &format!("rolling --plan {plan_id}"))?;
                j.append(
                    run.id(),
                    Event::Rolling {
                        plan: plan_id.clone(),
                        resumes: resumes.clone(),
                    },
                    true,
                )?;
                Some(run)
            }
            None => None,
        };
        let run_id = run.as_ref().map_or_else(
            || format!("{}-{}", now_rfc3339().replace(':', ""), std::process::id()),
            |r| r.id().to_string(),
        );
        let log_path = self.opts.hook_log.clone().unwrap_or_else(|| match journal {
            Some(j) => j.dir().join("rolling").join(format!("{run_id}.log")),
            None => std::env::temp_dir().join(format!("lbctl-rolling-{run_id}.log")),
        });
        let log = Arc::new(HookLog::open(&log_path)?);
        let cwd = self
            .plan
            .path
            .as_ref()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let exec = Exec {
            r: self,
            run: run.as_ref(),
            run_id,
            log,
            http: gate::http_client()?,
            zdu,
            cwd,
            done: hist.done,
            started: Instant::now(),
            stop: self.stop.subscribe(),
            state: Mutex::new(State {
                report: self.skeleton(&members, resumes, Some(log_path.display().to_string())),
                upgrade_began: hist.upgrade_began,
                zdu_started: false,
                hooks: Duration::ZERO,
                drain_wait: Duration::ZERO,
                gate: Duration::ZERO,
                health_wait: Duration::ZERO,
                rebalance: Duration::ZERO,
                worked: BTreeSet::new(),
            }),
        };
        exec.go().await
    }

    fn skeleton(
        &self,
        members: &BTreeMap<String, Vec<String>>,
        resumes: Option<String>,
        hook_log: Option<String>,
    ) -> RollingReport {
        let now = now_rfc3339();
        RollingReport {
            plan: self.plan.origin().to_string(),
            run: None,
            resumes,
            result: RunResult::Pending,
            started: now.clone(),
            ended: now,
            hook_log,
            nodes_total: self.plan.nodes().count(),
            nodes_done: 0,
            steps: Vec::new(),
            nodes: self
                .plan
                .nodes()
                .map(|(g, n)| NodeReport {
                    group: g.name.clone(),
                    node: n.to_string(),
                    address: self
                        .fleet
                        .nodes()
                        .get(n)
                        .map(|x| x.address.clone())
                        .unwrap_or_default(),
                    balanced: g.balanced,
                    result: RunResult::Pending,
                    members: if self.opts.dry_run {
                        members.get(n).cloned().unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    steps: Vec::new(),
                })
                .collect(),
            timing: Timing::default(),
            rebalance: None,
            failure: None,
            warnings: Vec::new(),
        }
    }

    fn vars(&self, g: Option<&Group>, node: Option<&str>, step: Step) -> Vars {
        let n = node.and_then(|n| self.fleet.nodes().get(n));
        Vars {
            node: n.map(|n| n.name.clone()).unwrap_or_default(),
            address: n.map(|n| n.address.clone()).unwrap_or_default(),
            group: g.map(|g| g.name.clone()).unwrap_or_default(),
            step: step.as_str().into(),
            run: String::new(),
        }
    }

    fn planned(
        &self,
        hist: &History,
        members: &BTreeMap<String, Vec<String>>,
        resumes: Option<String>,
    ) -> RollingReport {
        let mut rep = self.skeleton(members, resumes, None);
        rep.result = RunResult::Planned;
        let done = |g: &str, n: &str, s: &str| {
            self.opts.resume
                && hist
                    .done
                    .contains(&(g.to_string(), n.to_string(), s.to_string()))
        };
        let mark = |s: &mut StepReport, skip: bool| {
            if skip {
                s.result = StepResult::Skipped;
                s.message = Some("done in an earlier run".into());
            }
        };
        if let Some(z) = &self.plan.zdu {
            let mut s = StepReport::new(
                Step::ZduStart,
                Some(zdu::describe_start(z)),
                StepResult::Planned,
            );
            mark(&mut s, done("", "", "zdu_start"));
            rep.steps.push(s);
        }
        let mut i = 0;
        for g in &self.plan.groups {
            for (ni, n) in g.nodes.iter().enumerate() {
                let node_done = done(&g.name, n, "node");
                let node = self.fleet.nodes().get(n);
                let mut steps = Vec::new();
                for (step, hook) in self.node_steps(g, ni) {
                    let vars = self.vars(Some(g), Some(n), step);
                    let mut s = StepReport::new(
                        step,
                        hook.map(|h| vars.substitute(&h.command)),
                        StepResult::Planned,
                    );
                    match step {
                        Step::Drain => {
                            s.command = Some(format!(
                                "guard, drain, wait until no connection is left, maint: {}",
                                rep.nodes[i].members.join(", ")
                            ));
                        }
                        Step::Undrain => {
                            s.command = Some(
                                "ready everywhere, wait until every balancer sees it up".into(),
                            );
                        }
                        Step::Gate => match node.and_then(|nd| self.gate_for(g, nd)) {
                            Some(gt) => {
                                s.gate = Some(gate::planned(
                                    &gt,
                                    &vars,
                                    self.plan.zdu.as_ref().map(|z| z.node_id.as_str()),
                                ));
                                s.command =
                                    s.gate.as_ref().map(|r| format!("{} {}", r.kind, r.target));
                            }
                            // No gate: the group has none and the node no
                            // health URL.
                            None => continue,
                        },
                        _ => {}
                    }
                    // A node not finished is drained again on resume.
                    let skip =
                        node_done || (step != Step::Drain && done(&g.name, n, step.as_str()));
                    mark(&mut s, skip);
                    steps.push(s);
                }
                rep.nodes[i].steps = steps;
                rep.nodes[i].result = if node_done {
                    RunResult::Skipped
                } else {
                    RunResult::Planned
                };
                if node_done {
                    rep.nodes_done += 1;
                }
                i += 1;
            }
            if let Some(h) = &g.after_group {
                let vars = self.vars(Some(g), None, Step::AfterGroup);
                let mut s = StepReport::new(
                    Step::AfterGroup,
                    Some(vars.substitute(&h.command)),
                    StepResult::Planned,
                );
                s.group = Some(g.name.clone());
                mark(&mut s, done(&g.name, "", "after_group"));
                rep.steps.push(s);
            }
        }
        if let Some(z) = &self.plan.zdu {
            let mut s = StepReport::new(
                Step::ZduApprove,
                Some(zdu::describe_approve(z)),
                StepResult::Planned,
            );
            mark(&mut s, done("", "", "zdu_approve"));
            rep.steps.push(s);
        }
        if let Some(o) = &self.plan.rebalance {
            let mut s = StepReport::new(
                Step::Rebalance,
                Some(describe_rebalance(o)),
                StepResult::Planned,
            );
            mark(&mut s, done("", "", "rebalance"));
            rep.steps.push(s);
        }
        if let Some(h) = &self.plan.finally {
            let mut s =
                StepReport::new(Step::Finally, Some(h.command.clone()), StepResult::Planned);
            mark(&mut s, done("", "", "finally"));
            rep.steps.push(s);
        }
        rep
    }
}

struct State {
    report: RollingReport,
    upgrade_began: bool,
    zdu_started: bool,
    hooks: Duration,
    drain_wait: Duration,
    gate: Duration,
    health_wait: Duration,
    rebalance: Duration,
    worked: BTreeSet<String>,
}

/// What the rebalance step does, in words (`--dry-run`, the report).
fn describe_rebalance(o: &RebalanceOptions) -> String {
    let (strategy, hold) = match o.strategy {
        Strategy::Drain => (
            "drain",
            format!(
                ", max_drain {}",
                crate::duration::format_duration(o.max_drain)
            ),
        ),
        Strategy::Weight => ("weight", String::new()),
    };
    format!(
        "rebalance all measurable pools, threshold {}, strategy {strategy} \
         (min_load {}, window {}{hold}, duration {} per pool)",
        o.threshold,
        o.min_load,
        crate::duration::format_duration(o.window),
        crate::duration::format_duration(o.duration),
    )
}

/// The warnings a rebalance's outcome gives the operator: pools it could
/// not even out. They do not fail the upgrade.
fn rebalance_warnings(r: &RebalanceReport) -> Vec<String> {
    r.pools
        .iter()
        .filter_map(|p| {
            let skew = p
                .after
                .as_ref()
                .or(p.before.as_ref())
                .map_or(String::new(), |m| format!(" (skew {:.2})", m.skew));
            let what = match p.outcome {
                PoolOutcome::StillSkewed => format!(
                    "still skewed{skew} after {} ms, above the threshold {}",
                    p.elapsed_ms, r.threshold
                ),
                PoolOutcome::Prevented => format!(
                    "skewed{skew} but not rebalanced: {}",
                    p.reason.as_deref().unwrap_or("no action was possible")
                ),
                _ => return None,
            };
            Some(format!(
                "rebalance: {} pool {}: {what}; the upgrade itself is done",
                p.balancer, p.pool
            ))
        })
        .collect()
}

/// The step's message, pool by pool: `edge pool app: rebalanced`.
fn rebalance_summary(r: &RebalanceReport) -> String {
    if r.pools.is_empty() {
        return "no pool to look at".into();
    }
    r.pools
        .iter()
        .map(|p| {
            let what = serde_json::to_value(p.outcome)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default();
            format!("{} pool {}: {what}", p.balancer, p.pool)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a step produced.
#[derive(Debug, Default)]
struct Done {
    exit_code: Option<i32>,
    waited_ms: Option<u64>,
    gate: Option<GateReport>,
    message: Option<String>,
}

impl Done {
    fn message(m: String) -> Done {
        Done {
            message: Some(m),
            ..Done::default()
        }
    }
}

/// Why a step stopped the run.
#[derive(Debug)]
struct Fail {
    interrupted: bool,
    message: String,
    tail: Vec<String>,
    done: Done,
}

impl Fail {
    fn new(message: impl Into<String>) -> Fail {
        Fail {
            interrupted: false,
            message: message.into(),
            tail: Vec::new(),
            done: Done::default(),
        }
    }

    fn interrupted() -> Fail {
        Fail {
            interrupted: true,
            message: "lbctl was stopped (SIGINT/SIGTERM)".into(),
            tail: Vec::new(),
            done: Done::default(),
        }
    }
}

impl From<Halt> for Fail {
    fn from(h: Halt) -> Fail {
        match h {
            Halt::Stopped => Fail::interrupted(),
            Halt::Failed(m) => Fail::new(m),
        }
    }
}

struct Exec<'r> {
    r: &'r Rolling<'r>,
    run: Option<&'r Run<'r>>,
    run_id: String,
    log: Arc<HookLog>,
    http: reqwest::Client,
    zdu: Option<Zdu>,
    cwd: PathBuf,
    done: BTreeSet<Key>,
    started: Instant,
    stop: watch::Receiver<bool>,
    state: Mutex<State>,
}

/// The run stopped (the failure is in the report).
struct Stopped;

impl Exec<'_> {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the balancers' warnings, each once.
    fn warn(&self, w: &[String]) {
        let mut st = self.st();
        for w in w {
            if !st.report.warnings.contains(w) {
                st.report.warnings.push(w.clone());
            }
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn is_done(&self, g: &str, n: &str, s: &str) -> bool {
        self.done
            .contains(&(g.to_string(), n.to_string(), s.to_string()))
    }

    fn journal(
        &self,
        g: &str,
        n: &str,
        step: &str,
        status: &str,
        detail: Option<String>,
    ) -> Result<()> {
        if let (Some(run), Some(j)) = (self.run, self.r.fleet.journal()) {
            j.append(
                run.id(),
                Event::Step {
                    group: g.into(),
                    node: n.into(),
                    step: step.into(),
                    status: status.into(),
                    detail,
                },
                true,
            )?;
        }
        Ok(())
    }

    fn progress(&self, g: &str, n: &str, step: Step, finished: Option<&StepReport>) {
        if let Some(p) = &self.r.progress {
            let done = self.st().report.nodes_done;
            p.step(&ProgressEvent {
                group: g,
                node: n,
                step,
                finished,
                nodes_done: done,
                nodes_total: self.st().report.nodes_total,
                elapsed: self.started.elapsed(),
            });
        }
    }

    /// Records a finished step in the report (a node's, or the plan's when
    /// `node` is empty), the journal and the progress display.
    fn record(
        &self,
        g: &str,
        n: &str,
        mut s: StepReport,
        res: &std::result::Result<Done, Fail>,
    ) -> Result<()> {
        let (status, detail) = match res {
            Ok(d) => {
                s.result = StepResult::Ok;
                s.exit_code = d.exit_code;
                s.waited_ms = d.waited_ms;
                s.gate = d.gate.clone();
                s.message = d.message.clone();
                ("ok", None)
            }
            Err(f) => {
                s.result = if f.interrupted {
                    StepResult::Interrupted
                } else {
                    StepResult::Failed
                };
                s.exit_code = f.done.exit_code;
                s.waited_ms = f.done.waited_ms;
                s.gate = f.done.gate.clone();
                s.message = Some(f.message.clone());
                (
                    if f.interrupted {
                        "interrupted"
                    } else {
                        "failed"
                    },
                    Some(f.message.clone()),
                )
            }
        };
        self.journal(g, n, s.step.as_str(), status, detail)?;
        {
            let mut st = self.st();
            if let Err(f) = res
                && st.report.failure.is_none()
            {
                st.report.failure = Some(Failure {
                    group: (!g.is_empty()).then(|| g.to_string()),
                    node: (!n.is_empty()).then(|| n.to_string()),
                    step: s.step,
                    interrupted: f.interrupted,
                    message: f.message.clone(),
                    output_tail: f.tail.clone(),
                    resume: self.r.resume_hint(),
                });
            }
            if n.is_empty() {
                if !g.is_empty() {
                    s.group = Some(g.to_string());
                }
                st.report.steps.push(s.clone());
            } else if let Some(i) = st.report.nodes.iter().position(|x| x.node == n) {
                st.report.nodes[i].steps.push(s.clone());
                if res.is_err() {
                    st.report.nodes[i].result = if s.result == StepResult::Interrupted {
                        RunResult::Interrupted
                    } else {
                        RunResult::Failed
                    };
                }
            }
        }
        self.progress(g, n, s.step, Some(&s));
        Ok(())
    }

    /// Runs one step of `g`/`n` (either may be empty), timing, journaling
    /// and reporting it.
    async fn step<F>(
        &self,
        g: &str,
        n: &str,
        step: Step,
        command: Option<String>,
        f: F,
    ) -> std::result::Result<(), Stopped>
    where
        F: std::future::Future<Output = std::result::Result<Done, Fail>>,
    {
        if self.stopped() {
            return self.fail_now(g, n, step, command, Fail::interrupted());
        }
        if let Err(e) = self.journal(g, n, step.as_str(), "started", None) {
            return self.fail_now(g, n, step, command, Fail::new(e.to_string()));
        }
        if (step == Step::Upgrade || step == Step::FirstNode) && !n.is_empty() {
            self.st().upgrade_began = true;
        }
        if !n.is_empty() {
            self.st().worked.insert(n.to_string());
        }
        self.progress(g, n, step, None);
        let t0 = Instant::now();
        let started = now_rfc3339();
        let res = f.await;
        let took = t0.elapsed();
        let mut s = StepReport::new(step, command, StepResult::Ok);
        s.started = Some(started);
        s.ended = Some(now_rfc3339());
        s.ms = Some(took.as_millis() as u64);
        {
            let mut st = self.st();
            if step.is_hook() {
                st.hooks += took;
            }
            if step == Step::Gate {
                st.gate += took;
            }
        }
        let failed = res.is_err();
        if let Err(e) = self.record(g, n, s, &res) {
            tracing::warn!("cannot journal: {e}");
            return Err(Stopped);
        }
        if failed { Err(Stopped) } else { Ok(()) }
    }

    fn fail_now(
        &self,
        g: &str,
        n: &str,
        step: Step,
        command: Option<String>,
        f: Fail,
    ) -> std::result::Result<(), Stopped> {
        let s = StepReport::new(step, command, StepResult::Failed);
        let _ = self.record(g, n, s, &Err(f));
        Err(Stopped)
    }

    fn skipped(&self, g: &str, n: &str, step: Step, command: Option<String>) {
        let mut s = StepReport::new(step, command, StepResult::Skipped);
        s.message = Some("done in an earlier run".into());
        let mut st = self.st();
        if n.is_empty() {
            if !g.is_empty() {
                s.group = Some(g.to_string());
            }
            st.report.steps.push(s);
        } else if let Some(i) = st.report.nodes.iter().position(|x| x.node == n) {
            st.report.nodes[i].steps.push(s);
        }
    }

    async fn hook(
        &self,
        g: Option<&Group>,
        n: Option<&str>,
        step: Step,
        hook: &Hook,
    ) -> std::result::Result<Done, Fail> {
        let mut vars = self.r.vars(g, n, step);
        vars.run = self.run_id.clone();
        let mut stop = self.stop.clone();
        let o = hooks::run(
            &hook.command,
            &vars,
            hook.timeout,
            &self.cwd,
            &self.log,
            &mut stop,
        )
        .await
        .map_err(|e| Fail::new(e.to_string()))?;
        if o.ok() {
            return Ok(Done {
                exit_code: o.exit_code,
                ..Done::default()
            });
        }
        Err(Fail {
            interrupted: o.interrupted,
            message: format!(
                "hook `{}` {}",
                vars.substitute(&hook.command),
                o.describe(hook.timeout)
            ),
            tail: o.tail,
            done: Done {
                exit_code: o.exit_code,
                ..Done::default()
            },
        })
    }

    async fn go(&self) -> std::result::Result<RollingReport, RollingError> {
        let ok = self.all().await.is_ok();
        if !ok {
            self.maybe_cancel_zdu().await;
        }
        let (status, result) = match (ok, self.st().report.failure.as_ref().map(|f| f.interrupted))
        {
            (true, _) => ("ok", RunResult::Ok),
            (false, Some(true)) => ("interrupted", RunResult::Interrupted),
            _ => ("failed", RunResult::Failed),
        };
        if let Some(run) = self.run {
            run.end(status, None)?;
        }
        let mut st = self.st();
        let elapsed = self.started.elapsed();
        let nodes = st.worked.len();
        let overhead = elapsed.saturating_sub(st.hooks + st.drain_wait + st.rebalance);
        st.report.timing = Timing {
            elapsed_ms: elapsed.as_millis() as u64,
            hooks_ms: st.hooks.as_millis() as u64,
            drain_wait_ms: st.drain_wait.as_millis() as u64,
            gate_ms: st.gate.as_millis() as u64,
            health_wait_ms: st.health_wait.as_millis() as u64,
            rebalance_ms: st.rebalance.as_millis() as u64,
            overhead_ms: overhead.as_millis() as u64,
            nodes,
            overhead_per_node_ms: if nodes == 0 {
                0
            } else {
                (overhead.as_millis() / nodes as u128) as u64
            },
        };
        st.report.run = self.run.map(|r| r.id().to_string());
        st.report.result = result;
        st.report.ended = now_rfc3339();
        let report = st.report.clone();
        drop(st);
        if ok {
            Ok(report)
        } else {
            Err(RollingError::Stopped(Box::new(report)))
        }
    }

    async fn all(&self) -> std::result::Result<(), Stopped> {
        // Nodes finished by earlier runs.
        {
            let mut st = self.st();
            let done: Vec<usize> = st
                .report
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, x)| self.is_done(&x.group, &x.node, "node"))
                .map(|(i, _)| i)
                .collect();
            for i in done {
                st.report.nodes[i].result = RunResult::Skipped;
                st.report.nodes_done += 1;
            }
        }
        if self.zdu.is_some() {
            self.zdu_start().await?;
        }
        for g in &self.r.plan.groups {
            for batch in Rolling::batches(g) {
                let todo: Vec<usize> = batch
                    .into_iter()
                    .filter(|i| !self.is_done(&g.name, &g.nodes[*i], "node"))
                    .collect();
                if !todo.is_empty() {
                    self.batch(g, &todo).await?;
                }
            }
            if let Some(h) = &g.after_group {
                let cmd = Some(
                    self.r
                        .vars(Some(g), None, Step::AfterGroup)
                        .substitute(&h.command),
                );
                if self.is_done(&g.name, "", "after_group") {
                    self.skipped(&g.name, "", Step::AfterGroup, cmd);
                } else {
                    self.step(
                        &g.name,
                        "",
                        Step::AfterGroup,
                        cmd,
                        self.hook(Some(g), None, Step::AfterGroup, h),
                    )
                    .await?;
                }
            }
        }
        if self.zdu.is_some() {
            if self.is_done("", "", "zdu_approve") {
                self.skipped("", "", Step::ZduApprove, None);
            } else {
                self.step("", "", Step::ZduApprove, None, self.zdu_approve())
                    .await?;
            }
        }
        if let Some(o) = &self.r.plan.rebalance {
            let cmd = Some(describe_rebalance(o));
            if self.is_done("", "", "rebalance") {
                self.skipped("", "", Step::Rebalance, cmd);
            } else {
                self.step("", "", Step::Rebalance, cmd, self.rebalance(o))
                    .await?;
            }
        }
        if let Some(h) = &self.r.plan.finally {
            if self.is_done("", "", "finally") {
                self.skipped("", "", Step::Finally, Some(h.command.clone()));
            } else {
                self.step(
                    "",
                    "",
                    Step::Finally,
                    Some(h.command.clone()),
                    self.hook(None, None, Step::Finally, h),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// One batch of a group: drain them together (guarded together), run
    /// each node's hooks and gate concurrently, undrain those that passed.
    async fn batch(&self, g: &Group, idx: &[usize]) -> std::result::Result<(), Stopped> {
        let names: Vec<&str> = idx.iter().map(|i| g.nodes[*i].as_str()).collect();
        if g.balanced {
            self.drain(g, &names).await?;
        }
        let results = join_all(idx.iter().map(|i| self.node_middle(g, *i))).await;
        let passed: Vec<&str> = names
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| *n)
            .collect();
        let mut failed = results.iter().any(Result::is_err);
        if g.balanced && !passed.is_empty() && !self.stopped() {
            if self.undrain(g, &passed).await.is_err() {
                failed = true;
            }
        } else if g.balanced && !passed.is_empty() {
            // Stopped: nothing new begins; they stay out of rotation.
            for n in &passed {
                let _ = self.fail_now(&g.name, n, Step::Undrain, None, Fail::interrupted());
            }
            failed = true;
        }
        if !g.balanced {
            for n in &passed {
                self.node_finished(&g.name, n);
            }
        }
        if failed { Err(Stopped) } else { Ok(()) }
    }

    fn node_finished(&self, g: &str, n: &str) {
        let _ = self.journal(g, n, "node", "ok", None);
        let mut st = self.st();
        if let Some(i) = st.report.nodes.iter().position(|x| x.node == n) {
            st.report.nodes[i].result = RunResult::Ok;
        }
        st.report.nodes_done += 1;
    }

    /// Hooks and gate of one node.
    async fn node_middle(&self, g: &Group, ni: usize) -> std::result::Result<(), Stopped> {
        let n = g.nodes[ni].as_str();
        for (step, hook) in self.r.node_steps(g, ni) {
            match step {
                Step::Drain | Step::Undrain => {}
                Step::Gate => {
                    let node = &self.r.fleet.nodes()[n];
                    let Some(gt) = self.r.gate_for(g, node) else {
                        continue;
                    };
                    if self.is_done(&g.name, n, "gate") {
                        self.skipped(&g.name, n, Step::Gate, None);
                        continue;
                    }
                    let mut vars = self.r.vars(Some(g), Some(n), Step::Gate);
                    vars.run = self.run_id.clone();
                    let f = async {
                        let cx = gate::Ctx {
                            http: &self.http,
                            zdu: self.zdu.as_ref(),
                            log: &self.log,
                            cwd: &self.cwd,
                        };
                        let mut stop = self.stop.clone();
                        let (rep, err) = gate::check(&gt, &vars, &cx, &mut stop).await;
                        let done = Done {
                            gate: Some(rep),
                            ..Done::default()
                        };
                        match err {
                            None => Ok(done),
                            Some(e) => Err(Fail {
                                interrupted: self.stopped(),
                                message: e.to_string(),
                                tail: Vec::new(),
                                done,
                            }),
                        }
                    };
                    let cmd = Some(gate::planned(
                        &gt,
                        &vars,
                        self.zdu.as_ref().map(|z| z.node_id_template()),
                    ))
                    .map(|r| format!("{} {}", r.kind, r.target));
                    self.step(&g.name, n, Step::Gate, cmd, f).await?;
                }
                _ => {
                    let hook = hook.expect("hook steps have hooks");
                    let cmd = Some(
                        self.r
                            .vars(Some(g), Some(n), step)
                            .substitute(&hook.command),
                    );
                    if self.is_done(&g.name, n, step.as_str()) {
                        self.skipped(&g.name, n, step, cmd);
                        continue;
                    }
                    self.step(
                        &g.name,
                        n,
                        step,
                        cmd,
                        self.hook(Some(g), Some(n), step, hook),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn drain(&self, g: &Group, names: &[&str]) -> std::result::Result<(), Stopped> {
        if self.stopped() {
            return self.fail_now(&g.name, names[0], Step::Drain, None, Fail::interrupted());
        }
        for n in names {
            if let Err(e) = self.journal(&g.name, n, "drain", "started", None) {
                return self.fail_now(&g.name, n, Step::Drain, None, Fail::new(e.to_string()));
            }
            self.st().worked.insert(n.to_string());
            self.progress(&g.name, n, Step::Drain, None);
        }
        let t0 = Instant::now();
        let started = now_rfc3339();
        let mut stop = self.stop.clone();
        let opts = DrainOptions::default();
        let res = tokio::select! {
            r = self.r.fleet.drain(names, &opts) => r.map_err(|e| Fail::new(e.to_string())),
            _ = stop.wait_for(|s| *s) => Err(Fail::interrupted()),
        };
        let took = t0.elapsed();
        let res = res.map(|rep| {
            self.st().drain_wait += Duration::from_millis(rep.waited_ms);
            self.warn(&rep.warnings);
            Done {
                waited_ms: Some(rep.waited_ms),
                ..Done::default()
            }
        });
        self.each(g, names, Step::Drain, started, took, res)
    }

    async fn undrain(&self, g: &Group, names: &[&str]) -> std::result::Result<(), Stopped> {
        for n in names {
            if let Err(e) = self.journal(&g.name, n, "undrain", "started", None) {
                return self.fail_now(&g.name, n, Step::Undrain, None, Fail::new(e.to_string()));
            }
            self.progress(&g.name, n, Step::Undrain, None);
        }
        let t0 = Instant::now();
        let started = now_rfc3339();
        let mut stop = self.stop.clone();
        let opts = UndrainOptions::default();
        let res = tokio::select! {
            r = self.r.fleet.undrain(names, &opts) => r.map_err(|e| Fail::new(e.to_string())),
            _ = stop.wait_for(|s| *s) => Err(Fail::interrupted()),
        };
        let took = t0.elapsed();
        let res = res.map(|rep| {
            self.warn(&rep.warnings);
            self.st().health_wait += Duration::from_millis(rep.waited_ms);
            Done {
                waited_ms: Some(rep.waited_ms),
                ..Done::default()
            }
        });
        let ok = res.is_ok();
        let out = self.each(g, names, Step::Undrain, started, took, res);
        if ok {
            for n in names {
                self.node_finished(&g.name, n);
            }
        }
        out
    }

    /// Records one drain/undrain outcome for every node it covered.
    fn each(
        &self,
        g: &Group,
        names: &[&str],
        step: Step,
        started: String,
        took: Duration,
        res: std::result::Result<Done, Fail>,
    ) -> std::result::Result<(), Stopped> {
        let ended = now_rfc3339();
        let failed = res.is_err();
        for n in names {
            let mut s = StepReport::new(step, None, StepResult::Ok);
            s.started = Some(started.clone());
            s.ended = Some(ended.clone());
            s.ms = Some(took.as_millis() as u64);
            let r = match &res {
                Ok(d) => Ok(Done {
                    waited_ms: d.waited_ms,
                    message: d.message.clone(),
                    ..Done::default()
                }),
                Err(f) => Err(Fail {
                    interrupted: f.interrupted,
                    message: f.message.clone(),
                    tail: Vec::new(),
                    done: Done::default(),
                }),
            };
            if self.record(&g.name, n, s, &r).is_err() {
                return Err(Stopped);
            }
        }
        if failed { Err(Stopped) } else { Ok(()) }
    }

    /// The plan's `rebalance` step: once, every pool, after the last node
    /// is back.
    async fn rebalance(&self, opts: &RebalanceOptions) -> std::result::Result<Done, Fail> {
        let fleet = self.r.fleet;
        self.check_no_rebalance_left().await?;
        let t0 = Instant::now();
        // A stop puts back what the rebalance changed before it returns.
        let res = fleet.rebalance_until(opts, self.stop.clone()).await;
        self.st().rebalance += t0.elapsed();
        let report = match res {
            Ok(r) if r.stopped => {
                let mut f = Fail::interrupted();
                f.message.push_str(
                    " during the rebalance; every member it had changed is back in \
                     rotation with its weight",
                );
                return Err(f);
            }
            Ok(r) => r,
            Err(e) => {
                return Err(Fail::new(format!(
                    "{e}; `lbctl recover` puts back whatever the rebalance left changed"
                )));
            }
        };
        self.warn(&rebalance_warnings(&report));
        let message = rebalance_summary(&report);
        self.st().report.rebalance = Some(report);
        Ok(Done {
            message: Some(message),
            ..Done::default()
        })
    }

    /// Refuses to rebalance over what an interrupted rebalance left
    /// changed: it would take a lowered weight for the original, or never
    /// count a member it left out of rotation. `lbctl recover` first.
    async fn check_no_rebalance_left(&self) -> std::result::Result<(), Fail> {
        let fleet = self.r.fleet;
        let Some(j) = fleet.journal() else {
            return Ok(());
        };
        let records = j.records().map_err(|e| Fail::new(e.to_string()))?;
        let (left, _) = crate::journal::leftovers(&records);
        let left: Vec<_> = left
            .into_iter()
            .filter(|l| l.command.starts_with("rebalance"))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        let snap = fleet
            .read_all()
            .await
            .map_err(|e| Fail::new(e.to_string()))?;
        let changed: Vec<String> = left
            .iter()
            // Only what is still there and still differs: a member gone
            // since has nothing to be mistaken for.
            .filter(|l| {
                let now = fleet
                    .balancers()
                    .iter()
                    .position(|b| b.name == l.balancer)
                    .and_then(|i| {
                        snap[i]
                            .iter()
                            .find(|m| m.pool == l.pool && m.name == l.member)
                    })
                    .and_then(|m| match l.what.as_str() {
                        "weight" => m.weight.map(|w| w.to_string()),
                        _ => Some(m.admin.to_string()),
                    });
                now.is_some_and(|v| v != l.restore)
            })
            .map(|l| {
                format!(
                    "{} {}/{} {} (was {})",
                    l.balancer, l.pool, l.member, l.what, l.restore
                )
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        Err(Fail::new(format!(
            "an interrupted rebalance left {} changed; run `lbctl recover` to put it back, \
             then resume",
            changed.join(", ")
        )))
    }

    async fn zdu_start(&self) -> std::result::Result<(), Stopped> {
        let z = self.zdu.as_ref().expect("zdu");
        let f = async { z.start().await.map(Done::message).map_err(Fail::from) };
        let r = self.step("", "", Step::ZduStart, None, f).await;
        if r.is_ok() {
            self.st().zdu_started = true;
        }
        r
    }

    async fn zdu_approve(&self) -> std::result::Result<Done, Fail> {
        let z = self.zdu.as_ref().expect("zdu");
        z.approve(&self.stop)
            .await
            .map(Done::message)
            .map_err(Fail::from)
    }

    /// A run abandoned before any node's upgrade began leaves upgrade mode
    /// (never in MIXED).
    async fn maybe_cancel_zdu(&self) {
        let (began, started) = {
            let st = self.st();
            (st.upgrade_began, st.zdu_started)
        };
        let Some(z) = &self.zdu else { return };
        if began || !started {
            return;
        }
        let t0 = Instant::now();
        let at = now_rfc3339();
        let res = z.cancel_if_ready().await;
        let mut s = StepReport::new(Step::ZduCancel, None, StepResult::Ok);
        s.started = Some(at);
        s.ended = Some(now_rfc3339());
        s.ms = Some(t0.elapsed().as_millis() as u64);
        let status = match res {
            Ok(m) => {
                s.message = Some(m);
                "ok"
            }
            Err(m) => {
                s.result = StepResult::Failed;
                s.message = Some(m);
                "failed"
            }
        };
        let _ = self.journal("", "", "zdu_cancel", status, s.message.clone());
        self.st().report.steps.push(s);
    }
}
