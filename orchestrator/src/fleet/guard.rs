//! The guard: no pool keeps fewer than `min_active` members in rotation.

use std::collections::BTreeSet;
use std::fmt;

use lb_core::{AdminState, Health, Member};

use super::{Fleet, Target};
use crate::engine::Snapshot;

/// A pool the guard refuses to thin out further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The balancer.
    pub balancer: String,
    /// The pool.
    pub pool: String,
    /// Members that would stay ready and not down.
    pub staying: usize,
    /// What the pool must keep.
    pub min_active: usize,
    /// Every other member of the pool, with its admin state and health.
    pub others: Vec<(String, AdminState, Health)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pool {} would keep {} member(s) ready and not down, fewer than min_active {}",
            self.balancer, self.pool, self.staying, self.min_active
        )?;
        if !self.others.is_empty() {
            let others: Vec<String> = self
                .others
                .iter()
                .map(|(m, a, h)| format!("{m} is {a}/{h}"))
                .collect();
            write!(f, " ({})", others.join(", "))?;
        }
        Ok(())
    }
}

impl Fleet {
    /// The guard: for every pool a target is in, the members that stay
    /// ready and not down must number at least `min_active`.
    pub(crate) fn guard(&self, targets: &[Target], snap: &Snapshot) -> Vec<Refusal> {
        let leaving: BTreeSet<(usize, &str, &str)> = targets
            .iter()
            .map(|t| (t.bal, t.member.pool.as_str(), t.member.name.as_str()))
            .collect();
        let pools: BTreeSet<(usize, &str)> = leaving.iter().map(|(b, p, _)| (*b, *p)).collect();
        let mut refusals = Vec::new();
        for (b, pool) in pools {
            let others: Vec<&Member> = snap[b]
                .iter()
                .filter(|m| m.pool == pool && !leaving.contains(&(b, pool, m.name.as_str())))
                .collect();
            let staying = others
                .iter()
                .filter(|m| m.admin == AdminState::Ready && m.health != Health::Down)
                .count();
            if staying < self.settings.min_active {
                refusals.push(Refusal {
                    balancer: self.balancers()[b].name.clone(),
                    pool: pool.to_string(),
                    staying,
                    min_active: self.settings.min_active,
                    others: others
                        .iter()
                        .map(|m| (m.name.clone(), m.admin, m.health))
                        .collect(),
                });
            }
        }
        refusals
    }
}
