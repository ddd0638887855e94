//! Rebalancing: measure each pool's per-member load over a short window,
//! decide whether it is skewed (busiest member against the mean), and even
//! it out by briefly taking the busiest members out of rotation (`drain`)
//! or by temporary weights (`weight`). Every change goes through the
//! journal, so `lbctl recover` puts states and weights back after a kill.

//!
//! `ctx` measures and makes each change through the engine's transaction;
//! `drain` and `weight` are the two strategies.

mod ctx;
mod drain;
mod weight;

use std::time::Duration;

use lb_core::{AdminState, Health};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::journal::{EndStatus, Value, What};
use crate::error::{Error, ExitCode, Result};
use crate::fleet::Fleet;
use ctx::Ctx;

/// How to even the load out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Take the busiest members briefly out of rotation, one at a time, so
    /// the balancer places their users on the others.
    #[default]
    Drain,
    /// Lower the busiest members' weights for a while, then restore them.
    Weight,
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "drain" => Ok(Strategy::Drain),
            "weight" => Ok(Strategy::Weight),
            _ => Err(Error::Usage(format!(
                "unknown strategy {s:?}: drain or weight"
            ))),
        }
    }
}

/// What `rebalance` does.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceOptions {
    /// Only this pool (on every balancer that has it).
    pub pool: Option<String>,
    /// Act when max/mean load is above this.
    pub threshold: f64,
    /// Act only when the busiest member carries more than this.
    pub min_load: f64,
    /// How to act.
    pub strategy: Strategy,
    /// Each measurement averages reads over this long.
    pub window: Duration,
    /// Reads per measurement at least (one every 100 ms over the window
    /// when that is more).
    pub samples: u32,
    /// `drain`: the longest one member stays out of rotation, all its
    /// pulses together.
    pub max_drain: Duration,
    /// The whole run's deadline per pool (`weight`: how long weights are
    /// held at most).
    pub duration: Duration,
    /// Measure and say what would be done; change nothing.
    pub dry_run: bool,
}

impl Default for RebalanceOptions {
    fn default() -> Self {
        RebalanceOptions {
            pool: None,
            threshold: 1.5,
            min_load: 1.0,
            strategy: Strategy::Drain,
            window: Duration::from_secs(2),
            samples: 5,
            max_drain: Duration::from_secs(30),
            duration: Duration::from_secs(120),
            dry_run: false,
        }
    }
}

/// One member's measured load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberLoad {
    /// The member.
    pub member: String,
    /// The inventory node it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its admin state when measured.
    pub admin: AdminState,
    /// Its health when measured.
    pub health: Health,
    /// Mean active connections over the window.
    pub load: f64,
    /// Its weight, where the balancer has weights.
    pub weight: Option<u32>,
    /// Whether it counts for the skew (ready and not down).
    pub counted: bool,
}

/// A pool's load at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    /// Every member.
    pub members: Vec<MemberLoad>,
    /// Mean load over the counted members.
    pub mean: f64,
    /// The busiest counted member's load.
    pub max: f64,
    /// max / mean (1 when the mean is 0 or fewer than two members count).
    pub skew: f64,
    /// Coefficient of variation (standard deviation / mean).
    pub cv: f64,
}

/// One change `rebalance` made (or, with `--dry-run`, would make).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// The member.
    pub member: String,
    /// `state` or `weight`.
    pub what: What,
    /// The value before.
    pub from: Value,
    /// The value set for a while.
    pub to: Value,
    /// Its load before.
    pub load_before: f64,
    /// Its load when put back (none with `--dry-run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_after: Option<f64>,
    /// How long it was in place (ms).
    pub held_ms: u64,
}

/// How one pool ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolOutcome {
    /// Within the threshold (or too little load); nothing done.
    Balanced,
    /// Was skewed, now within the threshold.
    Rebalanced,
    /// Still skewed at the deadline.
    StillSkewed,
    /// Skewed, and the guard (or missing weights) prevented any action.
    Prevented,
    /// Skewed; `--dry-run` says what would be done.
    WouldAct,
    /// The balancer reports no per-member load.
    NotMeasurable,
}

/// One pool on one balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolReport {
    /// The balancer.
    pub balancer: String,
    /// Its kind.
    pub kind: String,
    /// The pool.
    pub pool: String,
    /// How it ended.
    pub outcome: PoolOutcome,
    /// Why (guard refusal, not measurable, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The first measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Measure>,
    /// The last measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Measure>,
    /// What was changed (and put back).
    pub actions: Vec<Action>,
    /// Time spent on this pool (ms).
    pub elapsed_ms: u64,
}

/// `lbctl rebalance`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebalanceReport {
    /// The strategy.
    pub strategy: Strategy,
    /// The threshold.
    pub threshold: f64,
    /// Every pool looked at.
    pub pools: Vec<PoolReport>,
    /// True when nothing was changed because of `--dry-run`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// True when a signal stopped the run (every member was put back and
    /// every weight restored first).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// Time spent (ms).
    pub elapsed_ms: u64,
}

impl RebalanceReport {
    /// 1 when a signal stopped the run, else 3 when a pool is still
    /// skewed, else 4 when the guard prevented action, else 0.
    pub fn exit_code(&self) -> ExitCode {
        if self.stopped {
            ExitCode::Failed
        } else if self
            .pools
            .iter()
            .any(|p| p.outcome == PoolOutcome::StillSkewed)
        {
            ExitCode::Timeout
        } else if self
            .pools
            .iter()
            .any(|p| p.outcome == PoolOutcome::Prevented)
        {
            ExitCode::Guard
        } else {
            ExitCode::Ok
        }
    }
}

pub(crate) fn measure_of(members: Vec<MemberLoad>) -> Measure {
    let counted: Vec<f64> = members
        .iter()
        .filter(|m| m.counted)
        .map(|m| m.load)
        .collect();
    let n = counted.len() as f64;
    let mean = if counted.is_empty() {
        0.0
    } else {
        counted.iter().sum::<f64>() / n
    };
    let max = counted.iter().copied().fold(0.0, f64::max);
    let (skew, cv) = if counted.len() < 2 || mean <= 0.0 {
        (1.0, 0.0)
    } else {
        let var = counted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (max / mean, var.sqrt() / mean)
    };
    Measure {
        members,
        mean,
        max,
        skew,
        cv,
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Fleet {
    /// Measures every pool whose balancer reports per-member load (or only
    /// `opts.pool`), and evens out the skewed ones.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for bad options or a pool no balancer has;
    /// [`Error::Balancer`] when a balancer fails (what was changed is put
    /// back first where possible; otherwise `lbctl recover` does);
    /// [`Error::State`] for the journal.
    pub async fn rebalance(&self, opts: &RebalanceOptions) -> Result<RebalanceReport> {
        let (_never, stop) = watch::channel(false);
        self.rebalance_until(opts, stop).await
    }

    /// [`rebalance`](Fleet::rebalance) that ends early once `stop` turns
    /// true (lbctl sends it on SIGINT and SIGTERM): the member out of
    /// rotation is put back and lowered weights are restored at once, no
    /// further pool is looked at, and the report says `stopped`.
    ///
    /// # Errors
    ///
    /// As [`rebalance`](Fleet::rebalance).
    pub async fn rebalance_until(
        &self,
        opts: &RebalanceOptions,
        stop: watch::Receiver<bool>,
    ) -> Result<RebalanceReport> {
        if opts.threshold.is_nan() || opts.threshold < 1.0 {
            return Err(Error::Usage(format!(
                "--threshold must be at least 1, not {}",
                opts.threshold
            )));
        }
        if opts.min_load < 0.0 {
            return Err(Error::Usage("--min-load cannot be negative".into()));
        }
        if let Some(p) = &opts.pool {
            lb_core::validate_name("", "pool", p).map_err(|e| Error::Usage(e.message().into()))?;
        }
        let started = Instant::now();
        let snap = self.read_all().await?;
        let mut pools: Vec<(usize, String)> = Vec::new();
        for (i, ms) in snap.iter().enumerate() {
            for m in ms {
                if opts.pool.as_ref().is_none_or(|p| *p == m.pool)
                    && !pools.contains(&(i, m.pool.clone()))
                {
                    pools.push((i, m.pool.clone()));
                }
            }
        }
        if let Some(p) = &opts.pool
            && pools.is_empty()
        {
            return Err(Error::Usage(format!("no balancer has a pool named {p:?}")));
        }
        let command = format!(
            "rebalance{}",
            opts.pool
                .as_ref()
                .map(|p| format!(" --pool {p}"))
                .unwrap_or_default()
        );
        let txn = if opts.dry_run {
            None
        } else {
            Some(self.engine().begin(&command).await?)
        };
        let ctx = Ctx {
            fleet: self,
            opts,
            txn: txn.as_ref(),
            command,
            claims: Default::default(),
            stop,
        };
        let mut reports = Vec::new();
        let mut failure = None;
        for (bal, pool) in pools {
            if ctx.stopped() {
                break;
            }
            let b = &self.balancers()[bal];
            let mut report = PoolReport {
                balancer: b.name.clone(),
                kind: b.kind.clone(),
                pool: pool.clone(),
                outcome: PoolOutcome::Balanced,
                reason: None,
                before: None,
                after: None,
                actions: Vec::new(),
                elapsed_ms: 0,
            };
            let t0 = Instant::now();
            let reported = snap[bal]
                .iter()
                .any(|m| m.pool == pool && m.active.is_some());
            if !b.lb.capabilities().active_connections || !reported {
                report.outcome = PoolOutcome::NotMeasurable;
                report.reason = Some(format!(
                    "{} ({}) reports no per-member load",
                    b.name, b.kind
                ));
                reports.push(report);
                continue;
            }
            let res: Result<()> = async {
                let (before, snap) = ctx.measure(bal, &pool).await?;
                report.before = Some(before.clone());
                if !ctx.skewed(&before) {
                    return Ok(());
                }
                let deadline = t0 + opts.duration;
                let after = match opts.strategy {
                    Strategy::Drain => {
                        ctx.drain(bal, &pool, before, snap, &mut report, deadline)
                            .await?
                    }
                    Strategy::Weight => {
                        ctx.weight(bal, &pool, before, snap, &mut report, deadline)
                            .await?
                    }
                };
                if ctx.stopped() {
                    report.outcome = PoolOutcome::StillSkewed;
                    report.reason = Some(
                        "stopped by a signal; every member is back in rotation with its weight"
                            .into(),
                    );
                    return Ok(());
                }
                report.outcome = if opts.dry_run && !report.actions.is_empty() {
                    PoolOutcome::WouldAct
                } else if report.actions.is_empty() {
                    PoolOutcome::Prevented
                } else if ctx.skewed(&after) {
                    PoolOutcome::StillSkewed
                } else {
                    PoolOutcome::Rebalanced
                };
                if !opts.dry_run {
                    report.after = Some(after);
                }
                Ok(())
            }
            .await;
            report.elapsed_ms = t0.elapsed().as_millis() as u64;
            reports.push(report);
            if let Err(e) = res {
                failure = Some(e);
                break;
            }
        }
        if let Some(txn) = &txn {
            match &failure {
                // Whatever is still changed stays recoverable.
                Some(_) => {}
                None => txn.end(EndStatus::Ok).await?,
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(RebalanceReport {
            strategy: opts.strategy,
            threshold: opts.threshold,
            pools: reports,
            dry_run: opts.dry_run,
            stopped: ctx.stopped(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(load: f64, counted: bool) -> MemberLoad {
        MemberLoad {
            member: "x".into(),
            node: None,
            admin: AdminState::Ready,
            health: Health::Up,
            load,
            weight: None,
            counted,
        }
    }

    #[test]
    fn skew_is_max_over_mean_of_counted_members_with_the_cv() {
        let x = measure_of(vec![
            m(6.0, true),
            m(0.0, true),
            m(0.0, true),
            m(50.0, false),
        ]);
        assert_eq!((x.mean, x.max, x.skew), (2.0, 6.0, 3.0));
        assert!((x.cv - 2f64.sqrt()).abs() < 1e-9, "{}", x.cv);
        let y = measure_of(vec![m(0.0, true), m(0.0, true)]);
        assert_eq!((y.skew, y.cv), (1.0, 0.0));
        let z = measure_of(vec![m(9.0, true)]);
        assert_eq!(z.skew, 1.0);
    }
}
