//! Drain and undrain: guard, change through one transaction, wait, report.

use std::collections::BTreeSet;
use std::time::Duration;

use lb_core::{AdminState, Health, Member};
use tokio::sync::watch;
use tokio::time::Instant;

use super::waiting::Waited;
use super::{Fleet, FleetBalancer, Node, Target};
use crate::engine::journal::{EndStatus, new_run_id};
use crate::engine::{ClaimSet, Snapshot, Transaction};
use crate::error::{Error, Result};
use crate::fleet::{DrainOptions, UndrainOptions};
use crate::report::*;
use crate::wait::unless_stopped;

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
        let (_never, stop) = watch::channel(false);
        self.drain_until(names, opts, stop).await
    }

    /// [`drain`](Self::drain), stopped when `stop` turns true (lbctl sets
    /// it on SIGINT or SIGTERM): nothing new begins, a wait for claims, the
    /// lock or connections is abandoned, what is out of rotation stays
    /// out, and the run ends `interrupted` (so `recover` leaves it to the
    /// operator, as after a timeout).
    ///
    /// # Errors
    ///
    /// As [`drain`](Self::drain), and [`Error::Interrupted`] (exit 1)
    /// naming the members left draining and the commands to run next.
    pub async fn drain_until<S: AsRef<str>>(
        &self,
        names: &[S],
        opts: &DrainOptions,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ChangeReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes = self.nodes_named(names)?;
        let mut warnings = Vec::new();
        let command = format!("drain {}", names.join(" "));
        let run = new_run_id();
        // Held until the command ends: through the wait, and the maint.
        let (_claims, lock) = self
            .claim_and_lock(&nodes, &run, &command, opts.dry_run, &mut stop)
            .await?;
        let snap = self.read_all().await?;
        self.refuse_unmatched(&nodes, &snap)?;
        let targets = self.resolve_all(&nodes, &snap)?;
        let claimed = match lock {
            Some(_) => self.claimed_out(&snap).await?,
            None => Vec::new(),
        };
        let refusals = self.guard(&targets, &snap, &claimed);
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
        let txn = self.engine.begin_as(&run, &command).await?;
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
            let res = self
                .wait_for("draining", &waiting, timeout, &mut stop, drained)
                .await;
            if let Err(Waited::Stopped) = res {
                return Err(self
                    .drain_stopped(&txn, &waiting, names, "waiting for connections to end")
                    .await);
            }
            if let Err(Waited::Failed(e)) = res {
                return Err(e);
            }
            if let Err(Waited::TimedOut(last)) = res {
                txn.end(EndStatus::Timeout).await?;
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
            if *stop.borrow() {
                return Err(self
                    .drain_stopped(&txn, &waiting, names, "before maint")
                    .await);
            }
            if !to_maint.is_empty() {
                let _lock = self.engine.lock().await?;
                self.unchanged_since(&txn, &targets, names).await?;
                txn.apply_or_roll_back(&writes(&targets, &to_maint, AdminState::Maint))
                    .await?;
            }
        }
        txn.end(EndStatus::Ok).await?;
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
        let (_never, stop) = watch::channel(false);
        self.undrain_until(names, opts, stop).await
    }

    /// [`undrain`](Self::undrain), stopped when `stop` turns true: a wait
    /// for claims or the lock is abandoned with nothing changed; once the
    /// members are ready (the run has ended `ok`), the wait for health is
    /// abandoned and they stay in rotation.
    ///
    /// # Errors
    ///
    /// As [`undrain`](Self::undrain), and [`Error::Interrupted`] (exit 1).
    pub async fn undrain_until<S: AsRef<str>>(
        &self,
        names: &[S],
        opts: &UndrainOptions,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ChangeReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes = self.nodes_named(names)?;
        let command = format!("undrain {}", names.join(" "));
        let run = new_run_id();
        let (_claims, lock) = self
            .claim_and_lock(&nodes, &run, &command, opts.dry_run, &mut stop)
            .await?;
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
        let txn = self.engine.begin_as(&run, &command).await?;
        txn.apply_or_roll_back(&writes(&targets, &to_ready, AdminState::Ready))
            .await?;
        txn.end(EndStatus::Ok).await?;
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
            let res = self
                .wait_for("coming up", &watched, timeout, &mut stop, healthy)
                .await;
            if let Err(Waited::Stopped) = res {
                let last = self.read_all().await.ok();
                return Err(Error::Interrupted(format!(
                    "undrain {} interrupted (SIGINT or SIGTERM) while waiting for the balancers to \
                     see it healthy: {}; it is in rotation (ready), the run ended ok; run `lbctl \
                     status {}` to see its health",
                    names.join(" "),
                    self.describe_pending(&watched, last.as_ref(), healthy),
                    names.join(" ")
                )));
            }
            if let Err(Waited::Failed(e)) = res {
                return Err(e);
            }
            if let Err(Waited::TimedOut(last)) = res {
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

impl Fleet {
    /// Claims `nodes` for run `run` of `command` and takes the state
    /// directory's lock (neither for a dry run); both waits end at `stop`,
    /// with nothing changed.
    async fn claim_and_lock(
        &self,
        nodes: &[&Node],
        run: &str,
        command: &str,
        dry_run: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(ClaimSet, Option<crate::engine::journal::LockGuard>)> {
        let taken = unless_stopped(stop, async {
            if dry_run {
                return Ok((ClaimSet::default(), None));
            }
            let keys: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
            self.engine.claim_locked(&keys, run, command).await
        })
        .await;
        taken.unwrap_or_else(|| {
            Err(Error::Interrupted(format!(
                "{command} interrupted (SIGINT or SIGTERM) while waiting for other runs' claims \
                 or the lock; nothing changed; run `lbctl {command}` again"
            )))
        })
    }

    /// Ends a drain that `stop` interrupted after its drain began: the run
    /// ends `interrupted`, the members stay as they are; the error names
    /// them and what to run next.
    async fn drain_stopped(
        &self,
        txn: &Transaction<'_>,
        waiting: &[&Target],
        names: &[String],
        when: &str,
    ) -> Error {
        if let Err(e) = txn.end(EndStatus::Interrupted).await {
            return e;
        }
        let last = self.read_all().await.ok();
        let pending = self.describe_pending(waiting, last.as_ref(), |m| m.active == Some(0));
        Error::Interrupted(format!(
            "drain {} interrupted (SIGINT or SIGTERM) {when}{}; {} left draining, not in maint \
             (the run ended interrupted; recover leaves it): run `lbctl undrain {}` to put it \
             back, or `lbctl drain {}` to finish",
            names.join(" "),
            if pending.is_empty() {
                String::new()
            } else {
                format!(" on {pending}")
            },
            names.join(", "),
            names.join(" "),
            names.join(" ")
        ))
    }

    /// Before a step acts on members again: re-reads them, and stops when
    /// one was changed outside lbctl since this run set it (or, if this
    /// run did not change it, since it was first read).
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] (exit 1) naming what changed and what this run
    /// still has out of rotation; the run ends: nothing more is changed,
    /// and `recover` will not fight the other party.
    async fn unchanged_since(
        &self,
        txn: &Transaction<'_>,
        targets: &[Target],
        names: &[String],
    ) -> Result<()> {
        let snap = self.read_all().await?;
        let mut changed = Vec::new();
        let mut ours = Vec::new();
        for t in targets {
            let b = &self.balancers()[t.bal];
            let mine = txn.changed(t.bal, &t.r());
            let expected = if mine {
                b.lb.capabilities().reads_back_as(AdminState::Drain)
            } else {
                t.member.admin
            };
            match snap[t.bal].iter().find(|m| m.is(&t.r())) {
                Some(m) if m.admin == expected => {
                    if mine {
                        ours.push(format!("{} {} ({expected})", b.name, t.r()));
                    }
                }
                Some(m) => changed.push(format!(
                    "{} {} is {} (lbctl had it {expected})",
                    b.name,
                    t.r(),
                    m.admin
                )),
                None => changed.push(format!("{} {} is gone", b.name, t.r())),
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        txn.end(EndStatus::Failed).await?;
        Err(Error::Failed(format!(
            "changed outside lbctl while lbctl waited for {} to drain: {}; lbctl stopped and \
             changed nothing more{}",
            names.join(", "),
            changed.join(", "),
            if ours.is_empty() {
                String::new()
            } else {
                format!(
                    " (as this run left them: {}; `lbctl undrain {}` puts them back)",
                    ours.join(", "),
                    names.join(" ")
                )
            }
        )))
    }
}
