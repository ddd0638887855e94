//! Every read and write of the journal that a rolling run makes, in one
//! place: what the journal says about a plan's earlier runs
//! ([`History::load`], for `--resume`), the run's own records
//! ([`RunLog`]: `start`, `rolling`, a `step` record when each step begins
//! and ends, `end`), and what an interrupted rebalance left changed
//! ([`check_no_rebalance_left`]).
//!
//! The journal's records are typed ([`crate::journal::Event::Step`]): a
//! step of the plan or of a group has no node (and the plan's, no group).
//! A node whose steps all passed gets one more record, [`Step::Node`],
//! status `ok`: resume skips that node whole.

use std::collections::{BTreeMap, BTreeSet};

use super::RollingOptions;
use super::report::RunResult;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::journal::Step;
use crate::journal::{EndStatus, Event, Journal, Record, Run, Value, What};
use crate::plan::Plan;

/// A step as the journal keys it: (group, node, step), none for the
/// plan's own steps (and a group's, for its node).
type Key = (Option<String>, Option<String>, Step);

/// The key of step `s` of group `g`, node `n` (`""` for none).
fn key(g: &str, n: &str, s: Step) -> Key {
    let name = |x: &str| (!x.is_empty()).then(|| x.to_string());
    (name(g), name(n), s)
}

/// How a step stands, as a `step` record says.
pub(super) use crate::journal::StepStatus as Status;

/// The plan as the journal names it: its canonical path (or, for a plan
/// parsed from text, its origin).
fn plan_id(plan: &Plan) -> String {
    plan.path
        .as_ref()
        .map_or_else(|| plan.origin().to_string(), |p| p.display().to_string())
}

/// What the journal says about the runs a new run of the plan continues.
#[derive(Debug, Default)]
pub(super) struct History {
    /// The run this one resumes.
    pub resumes: Option<String>,
    /// Some node's upgrade step began in the resumed chain (so
    /// Confluence's upgrade mode is not cancelled).
    pub upgrade_began: bool,
    /// Steps done (ok) by the resumed chain.
    done: BTreeSet<Key>,
    /// Nodes some step of the resumed chain began on: (group, node).
    touched: BTreeSet<(String, String)>,
}

impl History {
    /// Reads what the journal says about `plan` for a run with `opts`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for `--resume` with nothing to resume, and for a
    /// new run of a plan whose last run stopped half way (neither
    /// `--resume` nor `--restart`); [`Error::State`] for `--resume`
    /// without a journal, or a journal that cannot be read.
    pub async fn load(
        journal: Option<&Journal>,
        plan: &Plan,
        opts: &RollingOptions,
    ) -> Result<History> {
        let mut hist = History::default();
        let Some(j) = journal else {
            if opts.resume {
                return Err(Error::State(
                    "--resume needs a state directory (--state-dir)".into(),
                ));
            }
            return Ok(hist);
        };
        let records = j.records().await?;
        let Past {
            last,
            resumes: chain_of,
            steps,
        } = past(&records, &plan_id(plan));
        if opts.resume {
            let Some(last) = last else {
                return Err(Error::Usage(format!(
                    "nothing to resume: the journal in {} has no run of {}",
                    j.dir().display(),
                    plan.origin()
                )));
            };
            if last.ended == Some(EndStatus::Ok) {
                return Err(Error::Usage(format!(
                    "nothing to resume: the last run of {} (run {}) finished",
                    plan.origin(),
                    last.id
                )));
            }
            // The chain: the last run and the runs it resumed.
            let mut at = Some(last.id.clone());
            let mut chain = Vec::new();
            while let Some(id) = at {
                chain.push(id.clone());
                for ((g, n, s), st) in steps.get(&id).map(Vec::as_slice).unwrap_or_default() {
                    if *st == Status::Ok {
                        hist.done.insert((g.clone(), n.clone(), *s));
                    }
                    if let (Some(g), Some(n)) = (g, n) {
                        hist.touched.insert((g.clone(), n.clone()));
                    }
                    if matches!(s, Step::Upgrade | Step::FirstNode) && n.is_some() {
                        hist.upgrade_began = true;
                    }
                }
                at = chain_of.get(&id).cloned().flatten();
            }
            if !opts.dry_run {
                crate::engine::stale::refuse_stale(&records, Some(&chain), opts.kill_stale_hooks)?;
            }
            hist.resumes = Some(last.id);
        } else if let Some(last) = &last
            && last.ended != Some(EndStatus::Ok)
            && last.progressed
            && !opts.restart
            && !opts.dry_run
        {
            return Err(Error::Usage(format!(
                "the last run of {} (run {}) stopped{}; continue it with --resume, or start over with --restart",
                plan.origin(),
                last.id,
                last.stopped_at
                    .as_ref()
                    .map_or(String::new(), |s| format!(" at {s}"))
            )));
        }
        Ok(hist)
    }

    /// Whether the resumed chain did `step` of group `g`, node `n` (`""`
    /// for a group's or the plan's own step).
    pub fn done(&self, g: &str, n: &str, step: Step) -> bool {
        self.done.contains(&key(g, n, step))
    }

    /// Whether the resumed chain finished node `n` of group `g`.
    pub fn node_done(&self, g: &str, n: &str) -> bool {
        self.done(g, n, Step::Node)
    }

    /// Whether a run of the resumed chain left node `n` of group `g` out
    /// (`--skip`).
    pub fn node_skipped(&self, g: &str, n: &str) -> bool {
        self.done(g, n, Step::Skip)
    }

    /// Whether some step of the resumed chain began on node `n` of group
    /// `g` (and the node is not finished).
    pub fn node_touched(&self, g: &str, n: &str) -> bool {
        self.touched.contains(&(g.to_string(), n.to_string())) && !self.node_done(g, n)
    }
}

/// The last run of a plan, as far as resuming it goes.
#[derive(Debug, Clone)]
struct PastRun {
    id: String,
    /// Its `end` status, if it ended.
    ended: Option<EndStatus>,
    /// Some node's step began or passed.
    progressed: bool,
    /// Its last step that did not pass, as `group/node step (status)`.
    stopped_at: Option<String>,
}

/// The earlier runs of a plan: the last one, which run each resumed, and
/// each run's step records `((group, node, step), status)`.
struct Past {
    last: Option<PastRun>,
    resumes: BTreeMap<String, Option<String>>,
    steps: BTreeMap<String, Vec<(Key, Status)>>,
}

fn past(records: &[Record], plan: &str) -> Past {
    let mut runs: Vec<String> = Vec::new();
    let mut resumes: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut ended: BTreeMap<String, EndStatus> = BTreeMap::new();
    let mut steps: BTreeMap<String, Vec<(Key, Status)>> = BTreeMap::new();
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
                    .push(((group.clone(), node.clone(), *step), *status));
            }
            Event::End { status, .. } if resumes.contains_key(&r.run) => {
                ended.insert(r.run.clone(), *status);
            }
            _ => {}
        }
    }
    let last = runs.last().map(|id| {
        let s = steps.get(id).map(Vec::as_slice).unwrap_or_default();
        let progressed = s
            .iter()
            .any(|((_, node, _), st)| node.is_some() && matches!(st, Status::Ok | Status::Started));
        let stopped_at =
            s.iter()
                .rev()
                .find(|(_, st)| *st != Status::Ok)
                .map(|((g, n, step), st)| {
                    let place = match (g, n) {
                        (None, _) => String::new(),
                        (Some(g), None) => format!("{g} "),
                        (Some(g), Some(n)) => format!("{g}/{n} "),
                    };
                    format!("{place}{step} ({})", st.as_str())
                });
        PastRun {
            id: id.clone(),
            ended: ended.get(id).copied(),
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

/// A rolling run's own journal run; without a journal (no state
/// directory) every write is a no-op.
#[derive(Debug)]
pub(super) struct RunLog<'j> {
    run: Option<(&'j Journal, Run<'j>)>,
}

impl<'j> RunLog<'j> {
    /// Starts the run (`start`, then `rolling` naming the plan and the run
    /// it resumes).
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn start(
        journal: Option<&'j Journal>,
        plan: &Plan,
        resumes: Option<&str>,
    ) -> Result<RunLog<'j>> {
        let Some(j) = journal else {
            return Ok(RunLog { run: None });
        };
        let plan_id = plan_id(plan);
        let run = Run::start(j, &format!("rolling --plan {plan_id}")).await?;
        j.append(
            run.id(),
            Event::Rolling {
                plan: plan_id,
                resumes: resumes.map(str::to_owned),
            },
            true,
        )
        .await?;
        Ok(RunLog {
            run: Some((j, run)),
        })
    }

    /// The journal's id of the run.
    pub fn id(&self) -> Option<&str> {
        self.run.as_ref().map(|(_, r)| r.id())
    }

    /// Records that `step` of group `g`, node `n` (`""` for none) began
    /// or ended; `detail` says why it failed.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn step(
        &self,
        g: &str,
        n: &str,
        step: Step,
        status: Status,
        detail: Option<String>,
    ) -> Result<()> {
        self.append(g, n, step, status, detail).await
    }

    /// Records the process group `pgid` of the hook that runs `step` of
    /// group `g`, node `n` (`""` for none).
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn hook(&self, g: &str, n: &str, step: Step, pgid: u32) -> Result<()> {
        let Some((j, run)) = &self.run else {
            return Ok(());
        };
        let (group, node, step) = key(g, n, step);
        j.append(
            run.id(),
            Event::Hook {
                group,
                node,
                step,
                pgid,
                host: crate::journal::hostname(),
            },
            true,
        )
        .await
    }

    /// Records that node `n` of group `g` is back with every step done.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn node_done(&self, g: &str, n: &str) -> Result<()> {
        self.append(g, n, Step::Node, Status::Ok, None).await
    }

    async fn append(
        &self,
        g: &str,
        n: &str,
        step: Step,
        status: Status,
        detail: Option<String>,
    ) -> Result<()> {
        let Some((j, run)) = &self.run else {
            return Ok(());
        };
        let (group, node, step) = key(g, n, step);
        j.append(
            run.id(),
            Event::Step {
                group,
                node,
                step,
                status,
                detail,
            },
            true,
        )
        .await
    }

    /// Ends the run: `ok`, `interrupted` or `failed`.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    pub async fn end(&self, result: RunResult) -> Result<()> {
        let Some((_, run)) = &self.run else {
            return Ok(());
        };
        let status = match result {
            RunResult::Ok => EndStatus::Ok,
            // A pause stops the run on purpose, to be resumed: the journal
            // has no word of its own for it (the `pause` step says why).
            RunResult::Interrupted | RunResult::Paused => EndStatus::Interrupted,
            _ => EndStatus::Failed,
        };
        run.end(status).await
    }
}

/// Refuses to rebalance over what an interrupted rebalance left changed:
/// it would take a lowered weight for the original, or never count a
/// member it left out of rotation. `lbctl recover` first.
///
/// Returns the step's failure message.
pub(super) async fn check_no_rebalance_left(fleet: &Fleet) -> std::result::Result<(), String> {
    let Some(j) = fleet.journal() else {
        return Ok(());
    };
    let records = j.records().await.map_err(|e| e.to_string())?;
    let (left, _) = crate::journal::leftovers(&records);
    let left: Vec<_> = left
        .into_iter()
        .filter(|l| l.command.starts_with("rebalance"))
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    let snap = fleet.read_all().await.map_err(|e| e.to_string())?;
    let changed: Vec<String> = left
        .iter()
        // Only what is still there and still differs: a member gone
        // since has nothing to be mistaken for.
        .filter(|l| {
            let now = fleet
                .engine()
                .position(&l.balancer)
                .and_then(|i| snap[i].iter().find(|m| m.is(&l.member)))
                .and_then(|m| match l.restore.what() {
                    What::Weight => m.weight.map(Value::Weight),
                    What::State => Some(Value::State(m.admin)),
                });
            now.is_some_and(|v| v != l.restore)
        })
        .map(|l| {
            format!(
                "{} {} {} (was {})",
                l.balancer,
                l.member,
                l.restore.what(),
                l.restore
            )
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "an interrupted rebalance left {} changed; run `lbctl recover` to put it back, \
         then resume",
        changed.join(", ")
    ))
}
