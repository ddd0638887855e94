//! Rebalancing: measure each pool's per-member load over a short window,
//! decide whether it is skewed (busiest member against the mean), and even
//! it out by briefly taking the busiest members out of rotation (`drain`)
//! or by temporary weights (`weight`). Every change goes through the
//! journal, so `lbctl recover` puts states and weights back after a kill.

use std::collections::BTreeMap;
use std::time::Duration;

use lb_core::{AdminState, Change, Health, Member};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, ExitCode, Result};
use crate::fleet::{Fleet, Snapshot, Target};
use crate::journal::Run;

/// The first pulse out of rotation of a member, before its users' request
/// period is known.
const FIRST_PULSE: Duration = Duration::from_millis(50);
/// The shortest pulse.
const MIN_PULSE: Duration = Duration::from_millis(10);
/// At most this many pulses per pool.
const MAX_PULSES: usize = 24;
/// A measurement reads at least every this long.
const SAMPLE_GAP: Duration = Duration::from_millis(100);

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
    pub what: String,
    /// The value before.
    pub from: String,
    /// The value set for a while.
    pub to: String,
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

fn measure_of(members: Vec<MemberLoad>) -> Measure {
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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A pulse of `m` out of rotation (maint and back), as reported.
fn pulse(m: &MemberLoad, load_after: Option<f64>, held: Duration) -> Action {
    Action {
        member: m.member.clone(),
        what: "state".into(),
        from: AdminState::Ready.to_string(),
        to: AdminState::Maint.to_string(),
        load_before: m.load,
        load_after,
        held_ms: held.as_millis() as u64,
    }
}

struct Ctx<'a> {
    fleet: &'a Fleet,
    opts: &'a RebalanceOptions,
    run: Option<&'a Run<'a>>,
    stop: watch::Receiver<bool>,
}

impl Ctx<'_> {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d`, or less when the run is stopped.
    async fn pause(&self, d: Duration) {
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

    fn node_of(&self, bal: usize, m: &Member) -> Option<String> {
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
    async fn measure(&self, bal: usize, pool: &str) -> Result<(Measure, Snapshot)> {
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

    fn skewed(&self, m: &Measure) -> bool {
        m.skew > self.opts.threshold && m.max > self.opts.min_load
    }

    fn target(&self, bal: usize, snap: &Snapshot, pool: &str, member: &str) -> Option<Target> {
        let m = snap[bal]
            .iter()
            .find(|m| m.pool == pool && m.name == member)?;
        Some(Target {
            node: self.node_of(bal, m).unwrap_or_default(),
            bal,
            member: m.clone(),
        })
    }

    async fn set_state(&self, t: &Target, from: AdminState, to: AdminState) -> Result<()> {
        let _lock = self.fleet.lock().await?;
        let res = self.fleet.apply(self.run, &[t], &[from], to).await?;
        match res.into_iter().next() {
            Some(Err(e)) => Err(Error::Balancer(e)),
            _ => Ok(()),
        }
    }

    async fn set_weight(&self, t: &Target, from: u32, to: u32) -> Result<Change> {
        let _lock = self.fleet.lock().await?;
        let b = &self.fleet.balancers()[t.bal];
        let seq = match self.run {
            Some(run) => {
                let seq = run.intent(
                    &t.node,
                    &b.name,
                    &t.r(),
                    "weight",
                    &from.to_string(),
                    &to.to_string(),
                )?;
                run.sync()?;
                Some(seq)
            }
            None => None,
        };
        let res = b.lb.set_weight(&t.r(), to).await;
        tracing::info!(balancer = %b.name, member = %t.r(), weight = to, ok = res.is_ok(), "set_weight");
        if let (Some(run), Some(seq)) = (self.run, seq) {
            run.done(seq, &res)?;
        }
        res.map_err(Error::Balancer)
    }

    /// The `drain` strategy on one pool: pulses out of rotation.
    ///
    /// Each pulse takes the busiest member to maint for a while and puts it
    /// back; every user that sends a request meanwhile is placed on another
    /// member (maint, unlike drain, also breaks cookie persistence) and
    /// stays there. The windowed
    /// measure after the pulse says which share of the member's load left;
    /// treating requests as arriving at random, that share gives the users'
    /// request period, and the next pulse is made as long as it takes to
    /// move what is still in excess, no more.
    async fn drain(
        &self,
        bal: usize,
        pool: &str,
        mut now: Measure,
        mut snap: Snapshot,
        report: &mut PoolReport,
        deadline: Instant,
    ) -> Result<Measure> {
        // The users' request period, as last estimated (the same users
        // and application behind every member), each member's time out and
        // last pulse, and the run of pulses on one member: its load before
        // the first and their time together.
        let mut period: Option<Duration> = None;
        let mut spent: BTreeMap<String, Duration> = BTreeMap::new();
        let mut last: BTreeMap<String, Duration> = BTreeMap::new();
        let mut streak: Option<(String, f64, Duration)> = None;
        let mut rounds = 0;
        // Once acting, settle well inside the threshold (halfway between
        // even and the threshold), so that a pool left just under it does
        // not read as skewed again a moment later.
        let settle = 1.0 + (self.opts.threshold - 1.0) / 2.0;
        let unsettled = |m: &Measure| m.skew > settle && m.max > self.opts.min_load;
        while unsettled(&now) && Instant::now() < deadline && rounds < MAX_PULSES && !self.stopped()
        {
            rounds += 1;
            let hot = now
                .members
                .iter()
                .filter(|m| m.counted)
                .max_by(|a, c| a.load.total_cmp(&c.load))
                .expect("a skewed pool has counted members")
                .clone();
            let Some(t) = self.target(bal, &snap, pool, &hot.member) else {
                break;
            };
            let refusals = self.fleet.guard(std::slice::from_ref(&t), &snap);
            if !refusals.is_empty() {
                report.reason = Some(format!("refused by the guard: {}", refusals.join("; ")));
                break;
            }
            if self.opts.dry_run {
                report.actions.push(pulse(&hot, None, Duration::ZERO));
                return Ok(now);
            }
            let used = spent.get(&hot.member).copied().unwrap_or_default();
            let left = self
                .opts
                .max_drain
                .saturating_sub(used)
                .min(deadline.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                report.reason = Some(format!(
                    "{} was out of rotation for --max-drain {} in all and still carries {:.1} \
                     against a mean of {:.1}: its users come back when it is back in rotation, \
                     or send too few requests to be moved in that time",
                    hot.member,
                    crate::duration::format_duration(self.opts.max_drain),
                    hot.load,
                    now.mean
                ));
                break;
            }
            // The share of the member's users that should go elsewhere;
            // aimed a little short, as moving too many makes a new hot spot
            // while moving too few only takes another pulse. An estimate
            // from pulses that moved little is rough: at most four times
            // the member's last pulse.
            let share = ((hot.load - now.mean) / hot.load).clamp(0.0, 0.95) * 0.8;
            let width = match period {
                Some(p) => {
                    let w = p.mul_f64(-(1.0 - share).ln());
                    // A member not pulsed yet: at most four times the
                    // longest pulse so far.
                    let cap = last
                        .get(&hot.member)
                        .or_else(|| last.values().max())
                        .map_or(FIRST_PULSE, |l| *l * 4);
                    w.min(cap)
                }
                None => FIRST_PULSE,
            }
            .max(MIN_PULSE)
            .min(left);
            let started = Instant::now();
            self.set_state(&t, AdminState::Ready, AdminState::Maint)
                .await?;
            self.pause(width).await;
            let r = t.r();
            let cur = self
                .fleet
                .read_all()
                .await
                .ok()
                .and_then(|s| s[bal].iter().find(|m| m.is(&r)).map(|m| m.admin))
                .unwrap_or(AdminState::Maint);
            let back = self.set_state(&t, cur, AdminState::Ready).await;
            let held = started.elapsed();
            *spent.entry(hot.member.clone()).or_default() += held;
            if back.is_err() || self.stopped() {
                report.actions.push(pulse(&hot, None, held));
                back?;
                break;
            }
            (now, snap) = self.measure(bal, pool).await?;
            let after = now
                .members
                .iter()
                .find(|m| m.member == hot.member)
                .map_or(0.0, |m| m.load);
            report.actions.push(pulse(&hot, Some(after), held));
            // The share that left during the member's pulses in a row:
            // 1 - e^(-time out/period). Taken over the whole run of pulses,
            // so that one noisy measure does not throw the estimate off.
            last.insert(hot.member.clone(), held);
            let (load0, out) = match streak.take() {
                Some((m, l0, t)) if m == hot.member => (l0, t + held),
                _ => (hot.load, held),
            };
            streak = Some((hot.member.clone(), load0, out));
            let moved = (1.0 - after / load0).clamp(0.02, 0.98);
            period = Some(out.div_f64(-(1.0 - moved).ln()));
        }
        Ok(now)
    }

    /// The `weight` strategy on one pool.
    async fn weight(
        &self,
        bal: usize,
        pool: &str,
        mut now: Measure,
        snap: Snapshot,
        report: &mut PoolReport,
        deadline: Instant,
    ) -> Result<Measure> {
        let b = &self.fleet.balancers()[bal];
        let caps = b.lb.capabilities();
        let Some((lo, hi)) = caps.weight_range else {
            report.reason = Some(format!("{} ({}) has no weights", b.name, b.kind));
            return Ok(now);
        };
        let original: BTreeMap<String, u32> = now
            .members
            .iter()
            .filter_map(|m| Some((m.member.clone(), m.weight?)))
            .collect();
        let mut current = original.clone();
        let mut changed: Vec<String> = Vec::new();
        let started = Instant::now();
        let mut before_load: BTreeMap<String, f64> = BTreeMap::new();
        let result: Result<()> = async {
            while self.skewed(&now) && Instant::now() < deadline && !self.stopped() {
                let mut any = false;
                for m in now.members.iter().filter(|m| m.counted) {
                    let Some(&w) = current.get(&m.member) else {
                        continue;
                    };
                    if m.load <= now.mean * 1.05 || m.load <= 0.0 {
                        continue;
                    }
                    let to = ((w as f64 * now.mean / m.load).round() as u32).clamp(lo.max(1), hi);
                    if to >= w {
                        continue;
                    }
                    before_load.entry(m.member.clone()).or_insert(m.load);
                    if self.opts.dry_run {
                        report.actions.push(Action {
                            member: m.member.clone(),
                            what: "weight".into(),
                            from: w.to_string(),
                            to: to.to_string(),
                            load_before: m.load,
                            load_after: None,
                            held_ms: 0,
                        });
                        continue;
                    }
                    let Some(t) = self.target(bal, &snap, pool, &m.member) else {
                        continue;
                    };
                    self.set_weight(&t, w, to).await?;
                    current.insert(m.member.clone(), to);
                    if !changed.contains(&m.member) {
                        changed.push(m.member.clone());
                    }
                    any = true;
                }
                if self.opts.dry_run || !any && changed.is_empty() {
                    return Ok(());
                }
                (now, _) = self.measure(bal, pool).await?;
            }
            Ok(())
        }
        .await;
        // Every original weight back, exactly.
        let mut restore_err = None;
        for name in &changed {
            let (Some(t), Some(&w), Some(&c)) = (
                self.target(bal, &snap, pool, name),
                original.get(name),
                current.get(name),
            ) else {
                continue;
            };
            if let Err(e) = self.set_weight(&t, c, w).await {
                restore_err.get_or_insert(e);
            }
            report.actions.push(Action {
                member: name.clone(),
                what: "weight".into(),
                from: w.to_string(),
                to: c.to_string(),
                load_before: before_load.get(name).copied().unwrap_or(0.0),
                load_after: now
                    .members
                    .iter()
                    .find(|m| &m.member == name)
                    .map(|m| m.load),
                held_ms: started.elapsed().as_millis() as u64,
            });
        }
        result?;
        if let Some(e) = restore_err {
            return Err(e);
        }
        Ok(now)
    }
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
        let run = if opts.dry_run {
            None
        } else {
            self.start_run(&format!(
                "rebalance{}",
                opts.pool
                    .as_ref()
                    .map(|p| format!(" --pool {p}"))
                    .unwrap_or_default()
            ))?
        };
        let ctx = Ctx {
            fleet: self,
            opts,
            run: run.as_ref(),
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
        if let Some(run) = &run {
            match &failure {
                // Whatever is still changed stays recoverable.
                Some(_) => {}
                None => run.end("ok", None)?,
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
