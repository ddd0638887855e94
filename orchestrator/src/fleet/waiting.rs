//! The waits of `drain` and `undrain`: until every member's signal says
//! so, a stop, the deadline, or a balancer that stopped answering.

use std::time::Duration;

use lb_core::Member;
use tokio::sync::watch;

use super::reach::{Down, Reach, describe};
use super::{Fleet, FleetBalancer, Target};
use crate::engine::Snapshot;
use crate::error::Error;
use crate::wait::{WaitError, WaitOptions, await_condition_paced, unless_stopped};

/// How often a drain looks once every member it waits for has at most
/// one connection left (else: `poll_interval`).
pub const FAST_POLL: Duration = Duration::from_millis(20);

/// How a wait of `drain` or `undrain` ended without its condition holding.
pub(super) enum Waited {
    /// The deadline passed; the last read, if any.
    TimedOut(Option<Snapshot>),
    /// A read failed.
    Failed(Error),
    /// SIGINT or SIGTERM: the wait was abandoned.
    Stopped,
}

impl Fleet {
    /// Waits until `ok` holds for every target, or until `stop`. Returns
    /// the final read.
    ///
    /// A balancer that stops answering is retried for
    /// [`UNREACHABLE_GRACE`](super::reach::UNREACHABLE_GRACE), then the
    /// wait ends with [`Error::Unreachable`] naming it, since when and
    /// what this run left on it; its figures from before are never shown
    /// as current.
    pub(super) async fn wait_for(
        &self,
        what: &str,
        targets: &[&Target],
        timeout: Duration,
        stop: &mut watch::Receiver<bool>,
        ok: impl Fn(&Member) -> bool,
    ) -> std::result::Result<Snapshot, Waited> {
        let pending = |snap: &Snapshot| -> Vec<(String, Option<u64>)> {
            targets
                .iter()
                .filter_map(|t| {
                    let m = snap[t.bal].iter().find(|m| m.is(&t.r()));
                    match m {
                        Some(m) if ok(m) => None,
                        Some(m) => Some((
                            format!("{} {}", self.balancers()[t.bal].name, t.r()),
                            m.active,
                        )),
                        None => Some((
                            format!("{} {} (missing)", self.balancers()[t.bal].name, t.r()),
                            None,
                        )),
                    }
                })
                .collect()
        };
        let opts = WaitOptions {
            timeout,
            poll: self.settings.poll_interval,
        };
        let reach = Reach::new(self.balancers(), targets.iter().map(|t| t.bal).collect());
        let unreachable = |at_deadline: bool| {
            reach
                .unreachable(at_deadline)
                .map(|(b, down)| self.unreachable(what, b, &down, targets))
        };
        // Draining, with at most one connection left on each member still
        // waited for: the end is near, look often (a read is cheap); with
        // more left, at the configured interval.
        let pace = |snap: &Snapshot| {
            let p = pending(snap);
            let near = what == "draining"
                && !p.is_empty()
                && p.iter().all(|(_, a)| matches!(a, Some(n) if *n <= 1));
            if near {
                FAST_POLL.min(opts.poll)
            } else {
                opts.poll
            }
        };
        let r = unless_stopped(
            stop,
            await_condition_paced(
                opts,
                || async {
                    match reach.read().await {
                        Err(e) if is_transient(&e) => Err(unreachable(false).unwrap_or(e)),
                        r => r,
                    }
                },
                |snap| pending(snap).is_empty(),
                is_transient,
                |snap| {
                    if let Some(p) = &self.progress {
                        p.waiting(what, &pending(snap));
                    }
                },
                pace,
            ),
        )
        .await;
        if let Some(p) = &self.progress {
            p.finished();
        }
        match r {
            None => Err(Waited::Stopped),
            Some(Ok(s)) => Ok(s),
            Some(Err(WaitError::TimedOut(_))) if let Some(e) = unreachable(true) => {
                Err(Waited::Failed(e))
            }
            Some(Err(WaitError::TimedOut(last))) => Err(Waited::TimedOut(last)),
            Some(Err(WaitError::Failed(e))) => Err(Waited::Failed(e)),
        }
    }

    /// The error for balancer `b`, down since `down`, in a wait for
    /// `what`: what this run left on it and how to recover.
    fn unreachable(
        &self,
        what: &str,
        b: &FleetBalancer,
        down: &Down,
        targets: &[&Target],
    ) -> Error {
        let on_b: Vec<&&Target> = targets
            .iter()
            .filter(|t| self.balancers()[t.bal].name == b.name)
            .collect();
        let members = on_b
            .iter()
            .map(|t| format!("{} {}", b.name, t.r()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes: Vec<&str> = on_b.iter().map(|t| t.node.as_str()).collect();
        nodes.dedup();
        let nodes = nodes.join(" ");
        let left = if what == "draining" {
            format!(
                "left out of rotation (drain): {members}; once {} answers again, run `lbctl drain \
                 {nodes}` to finish draining or `lbctl undrain {nodes}` to put it back",
                b.name
            )
        } else {
            format!(
                "set ready before it stopped answering: {members}; once {} answers again, \
                 `lbctl status {nodes}` shows whether it routes to them (`lbctl undrain {nodes}` \
                 again if not)",
                b.name
            )
        };
        Error::Unreachable(format!("{} while {what}; {left}", describe(b, down)))
    }

    pub(super) fn describe_pending(
        &self,
        targets: &[&Target],
        snap: Option<&Snapshot>,
        ok: impl Fn(&Member) -> bool,
    ) -> String {
        let Some(snap) = snap else {
            return "no balancer could be read".into();
        };
        targets
            .iter()
            .filter_map(|t| {
                let m = snap[t.bal].iter().find(|m| m.is(&t.r()))?;
                (!ok(m)).then(|| {
                    format!(
                        "{} {} ({}, {}, active {})",
                        self.balancers()[t.bal].name,
                        t.r(),
                        m.admin,
                        m.health,
                        m.active.map_or("unknown".into(), |a| a.to_string())
                    )
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a failed read is worth another try within the wait.
fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Balancer(b) if b.is_transient())
}
