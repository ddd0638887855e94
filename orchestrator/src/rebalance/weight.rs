//! The `weight` strategy: lower the busiest members' weights for a while.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::{Action, Ctx, Measure, PoolReport};
use crate::engine::Snapshot;
use crate::engine::journal::{Value, What};
use crate::error::Result;

impl Ctx<'_> {
    /// The `weight` strategy on one pool.
    pub(super) async fn weight(
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
                            what: What::Weight,
                            from: Value::Weight(w),
                            to: Value::Weight(to),
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
                what: What::Weight,
                from: Value::Weight(w),
                to: Value::Weight(c),
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
