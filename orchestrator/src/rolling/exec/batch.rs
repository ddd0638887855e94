//! A batch of a group's nodes: drained with one [`Fleet::drain`] call
//! (guarded and waited for together), then each node's steps up to its
//! gate concurrently, then those that passed undrained together with one
//! [`Fleet::undrain`] call. When one node fails the others still finish,
//! and the run stops after the batch.
//!
//! [`Fleet::drain`]: crate::Fleet::drain
//! [`Fleet::undrain`]: crate::Fleet::undrain

use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::{Done, Exec, Fail, StepOutcome, Stopped};
use crate::fleet::{DrainOptions, UndrainOptions};
use crate::journal::now_rfc3339;
use crate::plan::Group;
use crate::rolling::history::Status;
use crate::rolling::report::{RunResult, StepReport, StepResult};
use crate::rolling::steps::{Action, Item, NodeSteps, Step};

/// How a node's steps between drain and undrain ended.
enum Middle {
    /// Every step passed.
    Passed,
    /// A step failed, then its `on_failure` hook and its gate passed: it
    /// may return to rotation, but the run stops.
    RolledBack,
    /// A step failed (or the run was stopped): it stays out.
    Failed,
}

impl Exec<'_> {
    /// One batch of a group: drain them together (guarded together), run
    /// each node's hooks and gate concurrently, undrain those that passed.
    ///
    /// The batch's nodes are claimed first, and stay claimed through
    /// their hooks and gates until they are back (or the run stops): no
    /// other lbctl changes them meanwhile.
    pub(super) async fn batch(&self, g: &Group, nodes: &[&NodeSteps<'_>]) -> StepOutcome {
        let names: Vec<&str> = nodes.iter().map(|n| n.name).collect();
        let keys: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let command = format!("rolling --plan {}", self.r.plan.origin());
        let _claims = match self
            .r
            .fleet
            .engine()
            .claim(&keys, &self.run_id, &command)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let first = if g.balanced {
                    Step::Drain
                } else {
                    nodes[0].steps.first().map_or(Step::Gate, |i| i.step)
                };
                return self
                    .fail_now(&g.name, names[0], first, None, Fail::new(e.to_string()))
                    .await;
            }
        };
        if g.balanced {
            self.drain(g, &names).await?;
        }
        let results = join_all(nodes.iter().map(|n| self.node_middle(g, n))).await;
        let passed: Vec<&str> = names
            .iter()
            .zip(&results)
            .filter(|(_, r)| matches!(r, Middle::Passed))
            .map(|(n, _)| *n)
            .collect();
        // Back in rotation: those that passed, and those whose on_failure
        // and gate passed after a failure (the run still stops).
        let back: Vec<&str> = names
            .iter()
            .zip(&results)
            .filter(|(_, r)| !matches!(r, Middle::Failed))
            .map(|(n, _)| *n)
            .collect();
        let mut failed = results.iter().any(|r| !matches!(r, Middle::Passed));
        let returns = g.balanced && !g.hold;
        if returns && !back.is_empty() && !self.stopped() {
            if self.undrain(g, &back).await.is_err() {
                failed = true;
            } else {
                for n in &passed {
                    self.node_finished(&g.name, n).await;
                }
            }
        } else if returns && !back.is_empty() {
            // Stopped: nothing new begins; they stay out of rotation.
            for n in &back {
                let _ = self
                    .fail_now(&g.name, n, Step::Undrain, None, Fail::interrupted())
                    .await;
            }
            failed = true;
        }
        if !returns {
            for n in &passed {
                self.node_finished(&g.name, n).await;
            }
        }
        if failed { Err(Stopped) } else { Ok(()) }
    }

    async fn node_finished(&self, g: &str, n: &str) {
        let _ = self.journal.node_done(g, n).await;
        let mut st = self.st();
        if let Some(i) = st.report.node_index(g, n) {
            st.report.nodes[i].result = RunResult::Ok;
        }
        st.report.nodes_done += 1;
    }

    /// One node's steps between the batch's drain and undrain; after a
    /// failure, its `on_failure` hook and the gate again.
    async fn node_middle(&self, g: &Group, node: &NodeSteps<'_>) -> Middle {
        let n = node.name;
        let mut gate = None;
        for item in &node.steps {
            if matches!(item.action, Action::Drain | Action::Undrain) {
                continue;
            }
            if matches!(item.action, Action::Gate(..)) {
                gate = Some(item);
            }
            if item.done {
                // A skipped gate names no command in the report.
                let command = match item.action {
                    Action::Gate(..) => None,
                    _ => item.command.clone(),
                };
                self.skipped(&g.name, n, item.step, command);
                continue;
            }
            let res = self
                .step(
                    &g.name,
                    n,
                    item.step,
                    item.command.clone(),
                    self.action(Some(g), Some(n), item),
                )
                .await;
            if res.is_err() {
                return self.on_failure(g, node, gate).await;
            }
        }
        Middle::Passed
    }

    /// A step of `node` failed: runs its group's `on_failure` hook (not
    /// after a stop), then the gate (the node's own, even when the
    /// failure came before it). Both pass: the node may return to
    /// rotation.
    async fn on_failure(&self, g: &Group, node: &NodeSteps<'_>, gate: Option<&Item<'_>>) -> Middle {
        let Some(item) = &node.on_failure else {
            return Middle::Failed;
        };
        if self.stopped() {
            return Middle::Failed;
        }
        let n = node.name;
        let hook = self
            .step(
                &g.name,
                n,
                item.step,
                item.command.clone(),
                self.action(Some(g), Some(n), item),
            )
            .await;
        if hook.is_err() {
            return Middle::Failed;
        }
        let gate = gate.or_else(|| {
            node.steps
                .iter()
                .find(|i| matches!(i.action, Action::Gate(..)))
        });
        if let Some(gt) = gate {
            let res = self
                .step(
                    &g.name,
                    n,
                    gt.step,
                    gt.command.clone(),
                    self.action(Some(g), Some(n), gt),
                )
                .await;
            if res.is_err() {
                return Middle::Failed;
            }
        }
        let msg = format!(
            "{}/{n}: on_failure passed{}; {n} returns to rotation as the hook left it",
            g.name,
            if gate.is_some() {
                " and so did its gate"
            } else {
                ""
            }
        );
        if g.balanced && !g.hold {
            self.warn(&[msg]);
        }
        Middle::RolledBack
    }

    async fn drain(&self, g: &Group, names: &[&str]) -> StepOutcome {
        if self.stopped() {
            return self
                .fail_now(&g.name, names[0], Step::Drain, None, Fail::interrupted())
                .await;
        }
        for n in names {
            if let Err(e) = self
                .journal
                .step(&g.name, n, Step::Drain, Status::Started, None)
                .await
            {
                return self
                    .fail_now(&g.name, n, Step::Drain, None, Fail::new(e.to_string()))
                    .await;
            }
            self.st().worked.insert(n.to_string());
            self.progress(&g.name, n, Step::Drain, None);
        }
        let t0 = Instant::now();
        let started = now_rfc3339();
        let mut stop = self.stop.clone();
        let opts = DrainOptions::default();
        let res = tokio::select! {
            r = self.fleet().drain(names, &opts) => r.map_err(|e| Fail::new(e.to_string())),
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
        self.each(g, names, Step::Drain, started, took, res).await
    }

    async fn undrain(&self, g: &Group, names: &[&str]) -> StepOutcome {
        for n in names {
            if let Err(e) = self
                .journal
                .step(&g.name, n, Step::Undrain, Status::Started, None)
                .await
            {
                return self
                    .fail_now(&g.name, n, Step::Undrain, None, Fail::new(e.to_string()))
                    .await;
            }
            self.progress(&g.name, n, Step::Undrain, None);
        }
        let t0 = Instant::now();
        let started = now_rfc3339();
        let mut stop = self.stop.clone();
        let opts = UndrainOptions::default();
        let res = tokio::select! {
            r = self.fleet().undrain(names, &opts) => r.map_err(|e| Fail::new(e.to_string())),
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
        self.each(g, names, Step::Undrain, started, took, res).await
    }

    /// Records one drain/undrain outcome for every node it covered.
    async fn each(
        &self,
        g: &Group,
        names: &[&str],
        step: Step,
        started: String,
        took: Duration,
        res: Result<Done, Fail>,
    ) -> StepOutcome {
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
            if self.record(&g.name, n, s, &r).await.is_err() {
                return Err(Stopped);
            }
        }
        if failed { Err(Stopped) } else { Ok(()) }
    }
}
