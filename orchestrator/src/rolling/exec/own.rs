//! The executor's work that is not a node's steps: the `notify` events,
//! leaving a `--skip` node out, the plan's `rebalance`, leaving
//! Confluence's upgrade mode, the message of a run a preflight check
//! refused.

use tokio::time::Instant;

use super::{Done, Exec, Fail, StepOutcome};
use crate::journal::now_rfc3339;
use crate::rebalance::RebalanceOptions;
use crate::rolling::history::{Status, check_no_rebalance_left};
use crate::rolling::rebalance;
use crate::rolling::report::{Failure, RunResult, StepReport, StepResult};
use crate::rolling::steps::{NodeSteps, Step};

/// The message of a run a preflight check refused: the check, how it
/// ended, its last lines of output.
pub(super) fn preflight_refusal(f: &Failure) -> String {
    let mut m = format!("preflight check failed, nothing changed: {}", f.message);
    if !f.output_tail.is_empty() {
        m.push_str(&format!(
            "\n--- last {} lines of its output ---\n{}\n---",
            f.output_tail.len(),
            f.output_tail.join("\n")
        ));
    }
    m
}

impl Exec<'_> {
    /// `notify`: a step's report, with where it ran.
    pub(super) fn notify_step(&self, g: &str, n: &str, s: &StepReport) {
        let q = self.notify.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = q.as_ref() else { return };
        let mut ev = serde_json::json!({
            "event": "step",
            "run": self.journal.id(),
            "plan": self.r.plan.origin(),
            "group": (!g.is_empty()).then_some(g),
            "node": (!n.is_empty()).then_some(n),
        });
        if let (Some(m), Ok(serde_json::Value::Object(step))) =
            (ev.as_object_mut(), serde_json::to_value(s))
        {
            for (k, v) in step {
                m.entry(k).or_insert(v);
            }
        }
        q.send(ev);
    }

    /// `notify`: the run's end, then waits (a little) for the queue; what
    /// was not delivered becomes a warning.
    pub(super) async fn notify_end(&self) {
        let q = self.notify.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(q) = q else { return };
        let ev = {
            let st = self.st();
            let r = &st.report;
            serde_json::json!({
                "event": "end",
                "run": r.run,
                "plan": r.plan,
                "result": r.result,
                "nodes_done": r.nodes_done,
                "nodes_total": r.nodes_total,
                "failure": r.failure,
                "paused": r.paused,
                "warnings": r.warnings,
            })
        };
        q.send(ev);
        if let Some(w) = q.finish().await {
            self.st().report.warnings.push(w);
        }
    }

    /// `--skip`: node `n` is left out as it is; the journal says so (so
    /// that later resumes leave it out too), the report and a warning
    /// name it.
    pub(super) async fn left_out(&self, g: &str, n: &NodeSteps<'_>) -> StepOutcome {
        if let Err(e) = self
            .journal
            .step(g, n.name, Step::Skip, Status::Ok, None)
            .await
        {
            return self
                .fail_now(g, n.name, Step::Skip, None, Fail::new(e.to_string()))
                .await;
        }
        let balanced = self.r.plan.groups.iter().any(|x| x.name == g && x.balanced);
        let mut st = self.st();
        st.report.nodes[n.index].result = RunResult::LeftOut;
        let mut s = StepReport::new(Step::Skip, None, StepResult::Skipped);
        s.message = Some("--skip: left out of the run as it was".into());
        st.report.nodes[n.index].steps.push(s);
        let w = format!(
            "{g}/{}: skipped (--skip): its remaining steps did not run{}",
            n.name,
            if balanced {
                "; it stays out of rotation"
            } else {
                ""
            }
        );
        if !st.report.warnings.contains(&w) {
            st.report.warnings.push(w);
        }
        Ok(())
    }

    /// The plan's `rebalance` step: once, every pool, after the last node
    /// is back.
    pub(super) async fn rebalance(&self, opts: &RebalanceOptions) -> Result<Done, Fail> {
        let fleet = self.fleet();
        check_no_rebalance_left(fleet).await.map_err(Fail::new)?;
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
        self.warn(&rebalance::warnings(&report));
        let message = rebalance::summary(&report);
        self.st().report.rebalance = Some(report);
        Ok(Done::message(message))
    }

    /// A run abandoned before any node's upgrade began leaves upgrade mode
    /// (never in MIXED).
    pub(super) async fn maybe_cancel_zdu(&self) {
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
                Status::Ok
            }
            Err(m) => {
                s.result = StepResult::Failed;
                s.message = Some(m);
                Status::Failed
            }
        };
        let _ = self
            .journal
            .step("", "", Step::ZduCancel, status, s.message.clone())
            .await;
        self.st().report.steps.push(s);
    }
}
