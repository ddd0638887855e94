//! The `drain` strategy: measured pulses out of rotation.

use std::collections::BTreeMap;
use std::time::Duration;

use lb_core::AdminState;
use tokio::time::Instant;

use super::{Action, Ctx, Measure, MemberLoad, PoolReport};
use crate::engine::Snapshot;
use crate::engine::journal::{Value, What};
use crate::error::Result;

/// The first pulse out of rotation of a member, before its users' request
/// period is known.
const FIRST_PULSE: Duration = Duration::from_millis(50);
/// The shortest pulse.
const MIN_PULSE: Duration = Duration::from_millis(10);
/// At most this many pulses per pool.
const MAX_PULSES: usize = 24;

/// A pulse of `m` out of rotation (maint and back), as reported.
fn pulse(m: &MemberLoad, load_after: Option<f64>, held: Duration) -> Action {
    Action {
        member: m.member.clone(),
        what: What::State,
        from: Value::State(AdminState::Ready),
        to: Value::State(AdminState::Maint),
        load_before: m.load,
        load_after,
        held_ms: held.as_millis() as u64,
    }
}

impl Ctx<'_> {
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
    pub(super) async fn drain(
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
            let claimed = {
                let _lock = self.fleet.engine().lock().await?;
                self.fleet.claimed_out(&snap).await?
            };
            let refusals = self.fleet.guard(std::slice::from_ref(&t), &snap, &claimed);
            if !refusals.is_empty() {
                report.reason = Some(format!(
                    "refused by the guard: {}",
                    refusals
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
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
}
