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
//!
//! [`Rolling::run`] checks the plan against the fleet (`preflight`),
//! reads the journal (`history`), builds the ordered list of steps once
//! (`steps`, which says where a new kind of step goes), and then either
//! renders it (`--dry-run`) or runs it (`exec`). Confluence's
//! zero-downtime-upgrade protocol is in `zdu`, health gates in `gate`,
//! hooks in `hooks`, the rebalance step's words in `rebalance`; what a run
//! reports is [`RollingReport`], and how it fails [`RollingError`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

mod error;
mod exec;
mod gate;
mod history;
mod hooks;
mod notify;
mod preflight;
mod rebalance;
mod report;
mod steps;
mod zdu;

pub use error::RollingError;
pub use gate::GateReport;
pub use report::{
    Failure, NodeReport, Paused, RollingReport, RunResult, StepReport, StepResult, Timing,
};
pub use steps::Step;

use self::history::History;
use crate::fleet::Fleet;
use crate::journal::now_rfc3339;
use crate::plan::Plan;

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
    /// With `resume`: nodes (`NODE` or `GROUP/NODE`) a resumed run
    /// stopped on, left out of the rest of the run as they are (out of
    /// rotation), each named in a warning.
    pub skip: Vec<String>,
    /// With `resume`: kill (SIGKILL) the hooks of the resumed runs that
    /// still run although their lbctl is gone, instead of refusing.
    pub kill_stale_hooks: bool,
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

    fn resume_hint(&self) -> String {
        self.opts
            .resume_hint
            .clone()
            .unwrap_or_else(|| format!("lbctl rolling --plan {} --resume", self.plan.origin()))
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
    ///
    /// [`Error::Config`]: crate::Error::Config
    /// [`Error::Usage`]: crate::Error::Usage
    /// [`Error::Guard`]: crate::Error::Guard
    /// [`Error::State`]: crate::Error::State
    pub async fn run(&self) -> Result<RollingReport, RollingError> {
        let members = preflight::check(self.plan, self.fleet).await?;
        let hist = History::load(self.fleet.journal(), self.plan, &self.opts).await?;
        self.check_skip(&hist)?;
        let units = steps::steps(self.plan, self.fleet, &hist, &self.opts.skip);
        if self.opts.dry_run {
            let mut rep = self.skeleton(&members, hist.resumes.clone(), None);
            steps::planned(&units, &mut rep);
            return Ok(rep);
        }
        exec::run(self, &units, hist, &members).await
    }

    /// `--skip` only with `--resume`, and only nodes the resumed runs
    /// began and did not finish.
    fn check_skip(&self, hist: &History) -> Result<(), crate::Error> {
        if self.opts.skip.is_empty() {
            return Ok(());
        }
        if !self.opts.resume {
            return Err(crate::Error::Usage(
                "--skip goes with --resume: it leaves out a node the last run stopped on".into(),
            ));
        }
        for s in &self.opts.skip {
            let named: Vec<(&str, &str)> = self
                .plan
                .nodes()
                .filter(|(g, n)| steps::skip_named(std::slice::from_ref(s), &g.name, n))
                .map(|(g, n)| (g.name.as_str(), n))
                .collect();
            if named.is_empty() {
                return Err(crate::Error::Usage(format!(
                    "--skip {s}: no such node in {}",
                    self.plan.origin()
                )));
            }
            if !named.iter().any(|(g, n)| hist.node_touched(g, n)) {
                return Err(crate::Error::Usage(format!(
                    "--skip {s}: the last run did not stop on it (it is finished, or was never \
                     begun); --skip leaves out a node that failed"
                )));
            }
        }
        Ok(())
    }

    /// The report before any step: every node of the plan `pending` (with
    /// its members, for `--dry-run`).
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
            paused: None,
            warnings: Vec::new(),
        }
    }
}
