//! `recover`: put back what interrupted runs left changed.

use std::collections::BTreeSet;

use lb_core::Change;
use tokio::sync::watch;

use super::Fleet;
use crate::engine::ClaimSet;
use crate::engine::Write;
use crate::engine::journal::{EndStatus, leftovers, new_run_id};
use crate::error::{Error, Result};
use crate::fleet::{MEMBER_KEY, RecoverOptions};
use crate::report::*;
use crate::wait::unless_stopped;

impl Fleet {
    /// Puts back every member that an interrupted run left changed, to the
    /// state (or weight) it had before that run.
    ///
    /// # Errors
    ///
    /// [`Error::State`] without a journal; [`Error::Balancer`] when a
    /// balancer fails (what could be put back is, and the run stays
    /// recoverable).
    pub async fn recover(&self, dry_run: bool) -> Result<RecoverReport> {
        let (_never, stop) = watch::channel(false);
        let opts = RecoverOptions {
            dry_run,
            ..RecoverOptions::default()
        };
        self.recover_until(&opts, stop).await
    }

    /// [`recover`](Self::recover), stopped when `stop` turns true (lbctl
    /// sets it on SIGINT or SIGTERM): a wait for claims or the lock is
    /// abandoned with nothing changed; between two members nothing new
    /// begins. What was put back stays back, the runs it finished are
    /// closed, recover's own run ends `interrupted`, and what is left is
    /// left for the next `recover`.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover), [`Error::Interrupted`] (exit 1)
    /// naming what is still out of rotation, and [`Error::Claimed`] (exit
    /// 4, nothing changed) while a hook of an interrupted rolling run
    /// still runs (unless `opts.kill_stale_hooks`).
    pub async fn recover_until(
        &self,
        opts: &RecoverOptions,
        mut stop: watch::Receiver<bool>,
    ) -> Result<RecoverReport> {
        let dry_run = opts.dry_run;
        let journal = self
            .journal()
            .ok_or_else(|| Error::State("recover needs a state directory (--state-dir)".into()))?;
        // A node a killed lbctl's hook still upgrades is not put back
        // under it.
        let kill = opts.kill_stale_hooks && !dry_run;
        crate::engine::stale::refuse_stale(&journal.records().await?, None, kill)?;
        let run = new_run_id();
        // What recover puts back is claimed first, like any change: a node
        // another run works on now is waited for.
        let mut waiting_for = Vec::new();
        let taken = unless_stopped(&mut stop, async {
            if dry_run {
                Ok::<_, Error>((ClaimSet::default(), None))
            } else {
                let (left, _) = leftovers(&journal.records().await?);
                let mut keys: Vec<String> = left
                    .iter()
                    .map(|l| match &l.node {
                        Some(n) => n.clone(),
                        None => format!("{MEMBER_KEY}{}/{}", l.balancer, l.member),
                    })
                    .collect();
                keys.sort();
                keys.dedup();
                waiting_for.clone_from(&keys);
                self.engine.claim_locked(&keys, &run, "recover").await
            }
        })
        .await;
        let Some(taken) = taken else {
            return Err(Error::Interrupted(format!(
                "recover interrupted (SIGINT or SIGTERM) while waiting for other runs' claims \
                 or the lock; nothing was put back ({} still left out); run `lbctl recover` again",
                waiting_for.join(", ")
            )));
        };
        let (_claims, _lock) = taken?;
        let read = journal.read().await?;
        let (left, running) = leftovers(&read.records);
        let mut recovered = Vec::new();
        let txn = if dry_run || left.is_empty() {
            None
        } else {
            Some(self.engine.begin_as(&run, "recover").await?)
        };
        let mut failed = Vec::new();
        let mut failed_runs = BTreeSet::new();
        let mut runs_done: Vec<String> = Vec::new();
        let mut not_begun = Vec::new();
        for l in &left {
            if txn.is_some() && *stop.borrow() {
                not_begun.push(format!(
                    "{} {} ({})",
                    l.balancer,
                    l.member,
                    l.node.as_deref().unwrap_or("no node")
                ));
                failed_runs.insert(l.run.clone());
                continue;
            }
            let Some(bal) = self.engine.position(&l.balancer) else {
                failed.push(format!(
                    "balancer {} is no longer in the inventory",
                    l.balancer
                ));
                failed_runs.insert(l.run.clone());
                continue;
            };
            let r = &l.member;
            let change = match &txn {
                None => MemberChange::Applied,
                Some(txn) => {
                    // The intent records the value being restored as both
                    // from and to, so an interrupted recover is itself
                    // recovered harmlessly.
                    let write = Write {
                        node: l.node.clone(),
                        bal,
                        member: r.clone(),
                        from: l.restore,
                        to: l.restore,
                    };
                    let res = txn.apply(&[write]).await?.remove(0);
                    match res {
                        Ok(Change::Applied) => MemberChange::Applied,
                        Ok(Change::AlreadyInState) => MemberChange::Unchanged,
                        Err(e) => {
                            failed.push(format!("{} {r}: {e}", l.balancer));
                            failed_runs.insert(l.run.clone());
                            continue;
                        }
                    }
                }
            };
            if !runs_done.contains(&l.run) {
                runs_done.push(l.run.clone());
            }
            recovered.push(Recovered {
                run: l.run.clone(),
                command: l.command.clone(),
                node: l.node.clone().unwrap_or_default(),
                balancer: l.balancer.clone(),
                pool: r.pool.clone(),
                member: r.member.clone(),
                what: l.restore.what(),
                restore: l.restore.to_string(),
                change,
            });
        }
        if let Some(txn) = &txn {
            // A run is closed only when all it left was put back; recover's
            // own run always ends (it only restores).
            for id in runs_done.iter().filter(|id| !failed_runs.contains(*id)) {
                txn.recovered(id).await?;
            }
            txn.end(if !not_begun.is_empty() {
                EndStatus::Interrupted
            } else if failed.is_empty() {
                EndStatus::Ok
            } else {
                EndStatus::Failed
            })
            .await?;
        }
        if !not_begun.is_empty() {
            return Err(Error::Interrupted(format!(
                "recover interrupted (SIGINT or SIGTERM): put back {} member(s){}; still left \
                 out: {}; run `lbctl recover` again",
                recovered.len(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(", could not put back {}", failed.join("; "))
                },
                not_begun.join(", ")
            )));
        }
        if !failed.is_empty() {
            return Err(Error::Failed(format!(
                "recover could not put back: {}; run `lbctl recover` again once the balancer answers",
                failed.join("; ")
            )));
        }
        Ok(RecoverReport {
            recovered,
            running,
            dry_run,
            skipped_lines: read.skipped,
        })
    }
}
