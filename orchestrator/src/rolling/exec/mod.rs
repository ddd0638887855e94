//! The executor: runs the list [`steps`](super::steps) built, unit by
//! unit, timing, journaling ([`RunLog`]) and reporting every step, until
//! one fails or the run is stopped. The plan's and the groups' own steps
//! run here, a batch of nodes in `batch`. A run abandoned before any
//! node's upgrade began leaves Confluence's upgrade mode
//! ([`Zdu::cancel_if_ready`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

mod batch;
mod own;

use super::error::RollingError;
use super::gate;
use super::history::{History, RunLog, Status};
use super::hooks::{self, HookLog};
use super::notify::Notifier;
use super::report::{Failure, Paused, RollingReport, RunResult, StepReport, StepResult, Timing};
use super::steps::{Action, Item, NodeSteps, Step, Unit, is_hook, vars};
use super::zdu::{Halt, Zdu};
use super::{ProgressEvent, Rolling};
use crate::fleet::Fleet;
use crate::journal::now_rfc3339;
use crate::plan::{Gate, Group, Hook};

/// Runs `units` for `r`: takes the rolling lock, checks Confluence,
/// starts the journal run and the hook log, then every step.
///
/// # Errors
///
/// [`RollingError::Setup`] before the first step (lock, Confluence's
/// state, journal, hook log); [`RollingError::Stopped`] with the report
/// when a step failed or the run was stopped.
pub(super) async fn run(
    r: &Rolling<'_>,
    units: &[Unit<'_>],
    hist: History,
    members: &BTreeMap<String, Vec<String>>,
) -> Result<RollingReport, RollingError> {
    let journal = r.fleet.journal();
    let _rolling_lock = match journal {
        Some(j) => Some(
            j.lock_file("rolling.lock", "another lbctl rolling", Duration::ZERO)
                .await?,
        ),
        None => None,
    };
    let zdu = r.plan.zdu.as_ref().map(Zdu::new).transpose()?;
    if let Some(z) = &zdu {
        z.check_ready(r.opts.resume).await?;
    }
    let runlog = RunLog::start(journal, r.plan, hist.resumes.as_deref()).await?;
    let run_id = runlog.id().map_or_else(
        || format!("{}-{}", now_rfc3339().replace(':', ""), std::process::id()),
        str::to_string,
    );
    let log_path = r.opts.hook_log.clone().unwrap_or_else(|| match journal {
        Some(j) => j.dir().join("rolling").join(format!("{run_id}.log")),
        None => std::env::temp_dir().join(format!("lbctl-rolling-{run_id}.log")),
    });
    let log = Arc::new(HookLog::open(&log_path)?);
    let cwd = r
        .plan
        .path
        .as_ref()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let report = r.skeleton(
        members,
        hist.resumes.clone(),
        Some(log_path.display().to_string()),
    );
    let http = gate::http_client()?;
    let notify = r
        .plan
        .notify
        .as_deref()
        .map(|u| Notifier::start(u, http.clone()));
    if let Some(n) = &notify {
        n.send(serde_json::json!({
            "event": "start",
            "run": runlog.id(),
            "plan": r.plan.origin(),
            "resumes": hist.resumes,
            "nodes_total": report.nodes_total,
        }));
    }
    let exec = Exec {
        r,
        notify: Mutex::new(notify),
        journal: runlog,
        run_id,
        log,
        http,
        zdu,
        cwd,
        started: Instant::now(),
        stop: r.stop.subscribe(),
        state: Mutex::new(State {
            report,
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
    exec.go(units).await
}

/// What the run found so far.
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

/// What a step produced.
#[derive(Debug, Default)]
struct Done {
    exit_code: Option<i32>,
    waited_ms: Option<u64>,
    gate: Option<super::GateReport>,
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
    /// `notify`: the webhook's queue (taken when the run ends).
    notify: Mutex<Option<Notifier>>,
    journal: RunLog<'r>,
    run_id: String,
    log: Arc<HookLog>,
    http: reqwest::Client,
    zdu: Option<Zdu>,
    cwd: PathBuf,
    started: Instant,
    stop: watch::Receiver<bool>,
    state: Mutex<State>,
}

/// The run stopped (the failure is in the report).
struct Stopped;

type StepOutcome = Result<(), Stopped>;

impl Exec<'_> {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fleet(&self) -> &Fleet {
        self.r.fleet
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
    async fn record(
        &self,
        g: &str,
        n: &str,
        mut s: StepReport,
        res: &Result<Done, Fail>,
    ) -> crate::Result<()> {
        let (status, detail) = match res {
            Ok(d) => {
                s.result = StepResult::Ok;
                s.exit_code = d.exit_code;
                s.waited_ms = d.waited_ms;
                s.gate = d.gate.clone();
                s.message = d.message.clone();
                (Status::Ok, None)
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
                        Status::Interrupted
                    } else {
                        Status::Failed
                    },
                    Some(f.message.clone()),
                )
            }
        };
        self.journal.step(g, n, s.step, status, detail).await?;
        self.notify_step(g, n, &s);
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
            } else if let Some(i) = st.report.node_index(g, n) {
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
    ) -> StepOutcome
    where
        F: std::future::Future<Output = Result<Done, Fail>>,
    {
        if self.stopped() {
            return self
                .fail_now(g, n, step, command, Fail::interrupted())
                .await;
        }
        if let Err(e) = self.journal.step(g, n, step, Status::Started, None).await {
            return self
                .fail_now(g, n, step, command, Fail::new(e.to_string()))
                .await;
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
            if is_hook(step) {
                st.hooks += took;
            }
            if step == Step::Gate {
                st.gate += took;
            }
        }
        let failed = res.is_err();
        if let Err(e) = self.record(g, n, s, &res).await {
            tracing::warn!("cannot journal: {e}");
            return Err(Stopped);
        }
        if failed { Err(Stopped) } else { Ok(()) }
    }

    async fn fail_now(
        &self,
        g: &str,
        n: &str,
        step: Step,
        command: Option<String>,
        f: Fail,
    ) -> StepOutcome {
        let s = StepReport::new(step, command, StepResult::Failed);
        let _ = self.record(g, n, s, &Err(f)).await;
        Err(Stopped)
    }

    /// Reports a step the resumed runs did.
    fn skipped(&self, g: &str, n: &str, step: Step, command: Option<String>) {
        let mut s = StepReport::new(step, command, StepResult::Skipped);
        s.message = Some("done in an earlier run".into());
        let mut st = self.st();
        if n.is_empty() {
            if !g.is_empty() {
                s.group = Some(g.to_string());
            }
            st.report.steps.push(s);
        } else if let Some(i) = st.report.node_index(g, n) {
            st.report.nodes[i].steps.push(s);
        }
    }

    async fn go(&self, units: &[Unit<'_>]) -> Result<RollingReport, RollingError> {
        let ok = self.all(units).await.is_ok();
        if !ok {
            self.maybe_cancel_zdu().await;
        }
        let paused = self.st().report.paused.is_some();
        let result = match (ok, self.st().report.failure.as_ref().map(|f| f.interrupted)) {
            (true, _) if paused => RunResult::Paused,
            (true, _) => RunResult::Ok,
            (false, Some(true)) => RunResult::Interrupted,
            _ => RunResult::Failed,
        };
        self.journal.end(result).await?;
        self.finish_report(result);
        self.notify_end().await;
        let report = self.st().report.clone();
        if let Some(f) = &report.failure
            && f.step == Step::Preflight
            && !f.interrupted
        {
            return Err(RollingError::Setup(crate::Error::Guard(
                own::preflight_refusal(f),
            )));
        }
        if ok {
            Ok(report)
        } else {
            Err(RollingError::Stopped(Box::new(report)))
        }
    }

    /// The report's timing, run id, result and end.
    fn finish_report(&self, result: RunResult) {
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
        st.report.run = self.journal.id().map(str::to_string);
        st.report.result = result;
        st.report.ended = now_rfc3339();
    }

    async fn all(&self, units: &[Unit<'_>]) -> StepOutcome {
        // Every check before anything changes, even when one fails.
        let mut refused = false;
        for u in units {
            if let Unit::Step { group, item } = u
                && item.step == Step::Preflight
            {
                refused |= self.own_step(*group, item).await.is_err();
            }
        }
        if refused {
            return Err(Stopped);
        }
        // Nodes finished by earlier runs.
        {
            let mut st = self.st();
            for u in units {
                let Unit::Batch { nodes, .. } = u else {
                    continue;
                };
                for n in nodes.iter().filter(|n| n.done) {
                    st.report.nodes[n.index].result = RunResult::Skipped;
                    st.report.nodes_done += 1;
                }
            }
        }
        for u in units {
            match u {
                Unit::Step { item, .. } if item.step == Step::Preflight => {}
                Unit::Step { group, item } => {
                    self.own_step(*group, item).await?;
                    if self.st().report.paused.is_some() {
                        return Ok(());
                    }
                }
                Unit::Batch { group, nodes } => {
                    for n in nodes.iter().filter(|n| n.skip && !n.done) {
                        self.left_out(&group.name, n).await?;
                    }
                    let todo: Vec<&NodeSteps<'_>> =
                        nodes.iter().filter(|n| !n.done && !n.skip).collect();
                    if !todo.is_empty() {
                        self.batch(group, &todo).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A step of the plan or of a group.
    async fn own_step(&self, group: Option<&Group>, item: &Item<'_>) -> StepOutcome {
        let g = group.map_or("", |g| g.name.as_str());
        let command = item.command.clone();
        if item.done {
            self.skipped(g, "", item.step, command);
            return Ok(());
        }
        let r = self
            .step(g, "", item.step, command, self.action(group, None, item))
            .await;
        if r.is_ok() && item.step == Step::ZduStart {
            self.st().zdu_started = true;
        }
        r
    }

    /// What runs a step, but the batch-wide drain and undrain.
    async fn action(
        &self,
        g: Option<&Group>,
        n: Option<&str>,
        item: &Item<'_>,
    ) -> Result<Done, Fail> {
        match &item.action {
            Action::Hook(h) => self.hook(g, n, item.step, h).await,
            Action::Gate(gt, _) => self.gate(g, n, gt).await,
            Action::ZduStart(_) => {
                let z = self.zdu.as_ref().expect("a plan with [zdu] has a client");
                z.start().await.map(Done::message).map_err(Fail::from)
            }
            Action::ZduApprove(_) => {
                let z = self.zdu.as_ref().expect("a plan with [zdu] has a client");
                z.approve(&self.stop)
                    .await
                    .map(Done::message)
                    .map_err(Fail::from)
            }
            Action::Rebalance(o) => self.rebalance(o).await,
            Action::Pause(p) => {
                let node = item
                    .command
                    .as_deref()
                    .and_then(|c| c.strip_prefix("after "))
                    .and_then(|c| c.split_once('/'))
                    .map(|(_, n)| n.to_string());
                let group = g.map_or_else(
                    || {
                        self.r
                            .plan
                            .groups
                            .first()
                            .map(|g| g.name.clone())
                            .unwrap_or_default()
                    },
                    |g| g.name.clone(),
                );
                self.st().report.paused = Some(Paused {
                    pause: p.as_str().into(),
                    group,
                    node,
                    resume: self.r.resume_hint(),
                });
                Ok(Done::message(format!(
                    "paused ({}); continue with `{}`",
                    p.as_str(),
                    self.r.resume_hint()
                )))
            }
            Action::Drain | Action::Undrain => {
                unreachable!("a batch drains and undrains its nodes together")
            }
        }
    }

    async fn hook(
        &self,
        g: Option<&Group>,
        n: Option<&str>,
        step: Step,
        hook: &Hook,
    ) -> Result<Done, Fail> {
        let mut vars = vars(self.fleet(), g, n, step);
        vars.run = self.run_id.clone();
        let mut stop = self.stop.clone();
        // The hook's process group goes into the journal as soon as it
        // runs: a --resume or recover after lbctl is killed looks for it.
        let (spawned, pgid) = tokio::sync::oneshot::channel();
        let record = async {
            match pgid.await {
                Ok(pgid) => {
                    let (gn, nn) = (g.map_or("", |g| g.name.as_str()), n.unwrap_or(""));
                    self.journal.hook(gn, nn, step, pgid).await
                }
                Err(_) => Ok(()),
            }
        };
        let limits = hooks::Limits {
            timeout: hook.timeout,
            grace: self.r.plan.hook_grace,
        };
        let (o, recorded) = tokio::join!(
            hooks::run(
                &hook.command,
                &vars,
                limits,
                &self.cwd,
                &self.log,
                Some(spawned),
                &mut stop,
            ),
            record
        );
        if let Err(e) = recorded {
            tracing::warn!("cannot journal the hook's process group: {e}");
        }
        let o = o.map_err(|e| Fail::new(e.to_string()))?;
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

    async fn gate(&self, g: Option<&Group>, n: Option<&str>, gt: &Gate) -> Result<Done, Fail> {
        let mut vars = vars(self.fleet(), g, n, Step::Gate);
        vars.run = self.run_id.clone();
        let cx = gate::Ctx {
            http: &self.http,
            zdu: self.zdu.as_ref(),
            log: &self.log,
            cwd: &self.cwd,
            grace: self.r.plan.hook_grace,
        };
        let mut stop = self.stop.clone();
        let (rep, err) = gate::check(gt, &vars, &cx, &mut stop).await;
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
    }
}
