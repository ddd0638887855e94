//! Drain and undrain: guard, change through one transaction, wait, report.

use std::collections::BTreeSet;
use std::time::Duration;

use lb_core::{AdminState, Health, Member};
use tokio::time::Instant;

use super::reach::{Down, Reach, describe};
use super::{Fleet, FleetBalancer, Node, Target};
use crate::engine::Snapshot;
use crate::engine::journal::EndStatus;
use crate::error::{Error, Result};
use crate::fleet::{DrainOptions, UndrainOptions};
use crate::report::*;
use crate::wait::{WaitError, WaitOptions, await_condition_paced};

/// How often a drain looks once every member it waits for has at most
/// one connection left (else: `poll_interval`).
pub const FAST_POLL: Duration = Duration::from_millis(20);

impl Fleet {
    fn report(
        &self,
        nodes: &[&Node],
        targets: &[Target],
        fresh: Option<&Snapshot>,
        changed: &BTreeSet<usize>,
        done: NodeOutcome,
    ) -> Vec<NodeResult> {
        nodes
            .iter()
            .map(|n| {
                let mut any = false;
                let members = targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.node == n.name)
                    .map(|(i, t)| {
                        let m = fresh
                            .and_then(|s| s[t.bal].iter().find(|m| m.is(&t.r())))
                            .unwrap_or(&t.member);
                        let applied = changed.contains(&i);
                        any |= applied;
                        MemberResult {
                            status: self.status_of(t.bal, m),
                            change: if applied {
                                MemberChange::Applied
                            } else {
                                MemberChange::Unchanged
                            },
                        }
                    })
                    .collect();
                NodeResult {
                    node: n.name.clone(),
                    result: if any { done } else { NodeOutcome::Unchanged },
                    members,
                }
            })
            .collect()
    }

    /// Waits until `ok` holds for every target. Returns the final read.
    ///
    /// A balancer that stops answering is retried for
    /// [`UNREACHABLE_GRACE`](super::reach::UNREACHABLE_GRACE), then the
    /// wait ends with [`Error::Unreachable`] naming it, since when and
    /// what this run left on it; its figures from before are never shown
    /// as current.
    async fn wait_for(
        &self,
        what: &str,
        targets: &[&Target],
        timeout: Duration,
        ok: impl Fn(&Member) -> bool,
    ) -> std::result::Result<Snapshot, (Option<Snapshot>, Option<Error>)> {
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
        let r = await_condition_paced(
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
        )
        .await;
        if let Some(p) = &self.progress {
            p.finished();
        }
        match r {
            Ok(s) => Ok(s),
            Err(WaitError::TimedOut(_)) if let Some(e) = unreachable(true) => Err((None, Some(e))),
            Err(WaitError::TimedOut(last)) => Err((last, None)),
            Err(WaitError::Failed(e)) => Err((None, Some(e))),
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

    fn describe_pending(
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

    /// Takes `names` out of rotation on every balancer at once: guard,
    /// drain, wait until nothing is in flight, then maint (unless `soft`).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] and [`Error::Config`] (exit 2),
    /// [`Error::Guard`] (exit 4, nothing changed), [`Error::RolledBack`]
    /// (exit 5), [`Error::Timeout`] (exit 3, the members stay draining),
    /// [`Error::Balancer`] (exit 1).
    pub async fn drain<S: AsRef<str>>(
        &self,
        names: &[S],
        opts: &DrainOptions,
    ) -> Result<ChangeReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes = self.nodes_named(names)?;
        let mut warnings = Vec::new();
        let lock = if opts.dry_run {
            None
        } else {
            self.engine.lock().await?
        };
        let snap = self.read_all().await?;
        self.refuse_unmatched(&nodes, &snap)?;
        let targets = self.resolve_all(&nodes, &snap)?;
        let refusals = self.guard(&targets, &snap);
        if !refusals.is_empty() {
            if !opts.force {
                return Err(Error::Guard(join(&refusals)));
            }
            for r in refusals {
                warnings.push(format!("guard overridden by --force: {r}"));
            }
        }
        self.driver_warnings(&targets, &mut warnings);
        for b in self.involved(&targets) {
            if !b.lb.capabilities().active_connections {
                warnings.push(format!(
                    "{} cannot report connections: not waited for",
                    b.name
                ));
            }
        }
        // Members already in maint stay there: drain would let persistent
        // traffic back in.
        let to_drain: Vec<usize> = (0..targets.len())
            .filter(|i| targets[*i].member.admin == AdminState::Ready)
            .collect();
        let to_maint: Vec<usize> = if opts.soft || opts.no_wait {
            Vec::new()
        } else {
            (0..targets.len())
                .filter(|i| targets[*i].member.admin != AdminState::Maint)
                .collect()
        };
        if opts.dry_run {
            let changed: BTreeSet<usize> = to_drain.iter().chain(&to_maint).copied().collect();
            let mut nodes_out = self.report(&nodes, &targets, None, &changed, NodeOutcome::Drained);
            for n in &mut nodes_out {
                for m in &mut n.members {
                    if m.change == MemberChange::Applied {
                        m.status.admin = if opts.soft || opts.no_wait {
                            AdminState::Drain
                        } else {
                            AdminState::Maint
                        };
                    }
                }
            }
            return Ok(ChangeReport {
                nodes: nodes_out,
                waited_ms: 0,
                dry_run: true,
                warnings,
            });
        }
        let txn = self.engine.begin(&format!("drain {}", names.join(" ")))?;
        txn.apply_or_roll_back(&writes(&targets, &to_drain, AdminState::Drain))
            .await?;
        drop(lock);

        let mut waited = Duration::ZERO;
        if !opts.no_wait {
            let started = Instant::now();
            let timeout = opts.timeout.unwrap_or(self.settings.drain_timeout);
            let waiting: Vec<&Target> = targets
                .iter()
                .filter(|t| self.balancers()[t.bal].lb.capabilities().active_connections)
                .collect();
            let drained = |m: &Member| m.active == Some(0);
            if let Err((last, err)) = self.wait_for("draining", &waiting, timeout, drained).await {
                if let Some(e) = err {
                    return Err(e);
                }
                txn.end(EndStatus::Timeout)?;
                return Err(Error::Timeout(format!(
                    "timed out after {} waiting for connections to end on {}; {} left draining \
                     (run `lbctl undrain {}` to put it back, or drain again to keep waiting)",
                    crate::format_duration(timeout),
                    self.describe_pending(&waiting, last.as_ref(), drained),
                    names.join(", "),
                    names.join(" ")
                )));
            }
            waited = started.elapsed();
            if !to_maint.is_empty() {
                let _lock = self.engine.lock().await?;
                txn.apply_or_roll_back(&writes(&targets, &to_maint, AdminState::Maint))
                    .await?;
            }
        }
        txn.end(EndStatus::Ok)?;
        let fresh = self.read_all().await.ok();
        self.driver_warnings(&targets, &mut warnings);
        Ok(ChangeReport {
            nodes: self.report(
                &nodes,
                &targets,
                fresh.as_ref(),
                &changed(&txn, &targets),
                NodeOutcome::Drained,
            ),
            waited_ms: waited.as_millis() as u64,
            dry_run: false,
            warnings,
        })
    }

    /// Puts `names` back into rotation on every balancer at once, then
    /// waits until no balancer that reports health sees them down (up, or
    /// unknown where the balancer does not check the member).
    ///
    /// # Errors
    ///
    /// As [`drain`](Self::drain), without the guard.
    pub async fn undrain<S: AsRef<str>>(
        &self,
        names: &[S],
        opts: &UndrainOptions,
    ) -> Result<ChangeReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes = self.nodes_named(names)?;
        let lock = if opts.dry_run {
            None
        } else {
            self.engine.lock().await?
        };
        let snap = self.read_all().await?;
        let targets = self.resolve_all(&nodes, &snap)?;
        let mut warnings = Vec::new();
        self.driver_warnings(&targets, &mut warnings);
        let to_ready: Vec<usize> = (0..targets.len())
            .filter(|i| targets[*i].member.admin != AdminState::Ready)
            .collect();
        if opts.dry_run {
            let changed: BTreeSet<usize> = to_ready.iter().copied().collect();
            let mut nodes_out =
                self.report(&nodes, &targets, None, &changed, NodeOutcome::Undrained);
            for n in &mut nodes_out {
                for m in &mut n.members {
                    m.status.admin = AdminState::Ready;
                }
            }
            return Ok(ChangeReport {
                nodes: nodes_out,
                waited_ms: 0,
                dry_run: true,
                warnings,
            });
        }
        let txn = self.engine.begin(&format!("undrain {}", names.join(" ")))?;
        txn.apply_or_roll_back(&writes(&targets, &to_ready, AdminState::Ready))
            .await?;
        txn.end(EndStatus::Ok)?;
        drop(lock);
        let mut waited = Duration::ZERO;
        if !opts.no_wait {
            let started = Instant::now();
            let timeout = opts.timeout.unwrap_or(self.settings.undrain_timeout);
            let watched: Vec<&Target> = targets
                .iter()
                .filter(|t| self.balancers()[t.bal].lb.capabilities().health)
                .collect();
            // Up, or unknown where the balancer does not check this member
            // (HAProxy without `check`, an Azure pool no rule routes to):
            // only a balancer that sees it down is waited for.
            let healthy = |m: &Member| m.health != Health::Down;
            if let Err((last, err)) = self.wait_for("coming up", &watched, timeout, healthy).await {
                if let Some(e) = err {
                    return Err(e);
                }
                return Err(Error::Timeout(format!(
                    "timed out after {} waiting for the balancers to see {} healthy: {}; it is in rotation \
                     (ready) but down",
                    crate::format_duration(timeout),
                    names.join(", "),
                    self.describe_pending(&watched, last.as_ref(), healthy)
                )));
            }
            waited = started.elapsed();
        }
        let fresh = self.read_all().await.ok();
        self.driver_warnings(&targets, &mut warnings);
        Ok(ChangeReport {
            nodes: self.report(
                &nodes,
                &targets,
                fresh.as_ref(),
                &changed(&txn, &targets),
                NodeOutcome::Undrained,
            ),
            waited_ms: waited.as_millis() as u64,
            dry_run: false,
            warnings,
        })
    }

    /// Adds what the drivers involved warn about (as of their last read),
    /// each once.
    fn driver_warnings(&self, targets: &[Target], out: &mut Vec<String>) {
        for b in self.involved(targets) {
            for w in b.lb.warnings() {
                let w = if w.starts_with(&format!("{}: ", b.name)) {
                    w
                } else {
                    format!("{}: {w}", b.name)
                };
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
    }

    fn involved(&self, targets: &[Target]) -> Vec<&FleetBalancer> {
        let idx: BTreeSet<usize> = targets.iter().map(|t| t.bal).collect();
        idx.into_iter().map(|i| &self.balancers()[i]).collect()
    }
}

/// Whether a failed read is worth another try within the wait.
fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Balancer(b) if b.is_transient())
}

/// The writes that set `to` on `targets[i]` for each `i` of `which`.
fn writes(targets: &[Target], which: &[usize], to: AdminState) -> Vec<crate::engine::Write> {
    which.iter().map(|i| targets[*i].set(to)).collect()
}

/// The targets the transaction changed, by position.
fn changed(txn: &crate::engine::Transaction<'_>, targets: &[Target]) -> BTreeSet<usize> {
    (0..targets.len())
        .filter(|i| txn.changed(targets[*i].bal, &targets[*i].r()))
        .collect()
}

/// The guard's refusals, as one message.
fn join(refusals: &[super::Refusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
