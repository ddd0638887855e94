//! What one rebalance run works with: the fleet, the options, its
//! transaction and the stop signal; measuring a pool; one journaled change.

use std::collections::BTreeMap;
use std::time::Duration;

use lb_core::{AdminState, Change, Health, Member};
use tokio::sync::watch;

use super::{Measure, MemberLoad, RebalanceOptions, measure_of, round2};
use crate::engine::journal::Value;
use crate::engine::{ClaimSet, Snapshot, Transaction, Write};
use crate::error::{Error, Result};
use crate::fleet::MEMBER_KEY;
use crate::fleet::{Fleet, Target};

/// A measurement reads at least every this long.
const SAMPLE_GAP: Duration = Duration::from_millis(100);

pub(super) struct Ctx<'a> {
    pub(super) fleet: &'a Fleet,
    pub(super) opts: &'a RebalanceOptions,
    pub(super) txn: Option<&'a Transaction<'a>>,
    /// The command, as claims name it.
    pub(super) command: String,
    /// What the run has claimed so far: every member it changed (or its
    /// node) stays claimed until the run ends.
    pub(super) claims: std::sync::Mutex<Vec<ClaimSet>>,
    pub(super) stop: watch::Receiver<bool>,
}

impl Ctx<'_> {
    pub(super) fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d`, or less when the run is stopped.
    pub(super) async fn pause(&self, d: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            r = stop.wait_for(|s| *s) => {
                if r.is_err() {
                    // Nobody can stop the run any more.
                    tokio::time::sleep(d).await;
                }
            }
        }
    }

    pub(super) fn node_of(&self, bal: usize, m: &Member) -> Option<String> {
        let b = &self.fleet.balancers()[bal];
        self.fleet
            .nodes()
            .values()
            .find(|n| match n.members.get(&b.name) {
                Some(refs) => refs.iter().any(|r| m.is(r)),
                None => n.matches(m),
            })
            .map(|n| n.name.clone())
    }

    /// Averages the pool's active counts over the window.
    pub(super) async fn measure(&self, bal: usize, pool: &str) -> Result<(Measure, Snapshot)> {
        let samples = self
            .opts
            .samples
            .max(1)
            .max((self.opts.window.as_millis() / SAMPLE_GAP.as_millis()) as u32);
        let gap = self.opts.window / samples;
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut last = None;
        let mut taken = 0;
        for i in 0..samples {
            if i > 0 {
                if self.stopped() {
                    break;
                }
                self.pause(gap).await;
            }
            let snap = self.fleet.read_all().await?;
            for m in snap[bal].iter().filter(|m| m.pool == pool) {
                *sums.entry(m.name.clone()).or_default() += m.active.unwrap_or(0) as f64;
            }
            taken += 1;
            last = Some(snap);
        }
        let snap = last.expect("at least one sample");
        let members = snap[bal]
            .iter()
            .filter(|m| m.pool == pool)
            .map(|m| MemberLoad {
                member: m.name.clone(),
                node: self.node_of(bal, m),
                admin: m.admin,
                health: m.health,
                load: round2(sums.get(&m.name).copied().unwrap_or(0.0) / taken as f64),
                weight: m.weight,
                counted: m.admin == AdminState::Ready && m.health != Health::Down,
            })
            .collect();
        Ok((measure_of(members), snap))
    }

    pub(super) fn skewed(&self, m: &Measure) -> bool {
        m.skew > self.opts.threshold && m.max > self.opts.min_load
    }

    pub(super) fn target(
        &self,
        bal: usize,
        snap: &Snapshot,
        pool: &str,
        member: &str,
    ) -> Option<Target> {
        let m = snap[bal]
            .iter()
            .find(|m| m.pool == pool && m.name == member)?;
        Some(Target {
            node: self.node_of(bal, m).unwrap_or_default(),
            bal,
            member: m.clone(),
        })
    }

    /// Sets one value on `t`, journaled, under the lock.
    pub(super) async fn set(&self, t: &Target, from: Value, to: Value) -> Result<Change> {
        let Some(txn) = self.txn else {
            return Err(Error::Failed(
                "rebalance changes nothing without a transaction (dry run)".into(),
            ));
        };
        let key = if t.node.is_empty() {
            let b = &self.fleet.balancers()[t.bal];
            format!("{MEMBER_KEY}{}/{}", b.name, t.r())
        } else {
            t.node.clone()
        };
        let (claim, _lock) = self
            .fleet
            .engine()
            .claim_locked(&[key], txn.id().unwrap_or_default(), &self.command)
            .await?;
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(claim);
        let write = Write {
            node: (!t.node.is_empty()).then(|| t.node.clone()),
            bal: t.bal,
            member: t.r(),
            from,
            to,
        };
        txn.apply(&[write])
            .await?
            .remove(0)
            .map_err(Error::Balancer)
    }

    pub(super) async fn set_state(
        &self,
        t: &Target,
        from: AdminState,
        to: AdminState,
    ) -> Result<()> {
        self.set(t, Value::State(from), Value::State(to))
            .await
            .map(|_| ())
    }

    pub(super) async fn set_weight(&self, t: &Target, from: u32, to: u32) -> Result<Change> {
        self.set(t, Value::Weight(from), Value::Weight(to)).await
    }
}
