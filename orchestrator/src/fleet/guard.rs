//! The guard: no pool keeps fewer than `min_active` members in rotation.

use std::collections::BTreeSet;
use std::fmt;

use lb_core::{AdminState, Health, Member};

use super::{Fleet, Target};
use crate::engine::Snapshot;
use crate::error::Result;

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
    /// Members counted out because another run claims their node, and by
    /// whom.
    pub claimed: Vec<(String, String)>,
}

/// A member counted out of rotation because another run claims it (or
/// its node), though its balancer may not show it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimedOut {
    pub(crate) bal: usize,
    pub(crate) pool: String,
    pub(crate) member: String,
    /// `node2 (claimed by run R …)`.
    pub(crate) by: String,
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
        for (m, by) in &self.claimed {
            write!(f, "; {m} counted out: {by}")?;
        }
        Ok(())
    }
}

impl Fleet {
    /// The guard: for every pool a target is in, the members that stay
    /// ready and not down must number at least `min_active`.
    ///
    /// Members of nodes other runs claim (`claimed`) count as out of
    /// rotation, whatever their balancer shows yet.
    pub(crate) fn guard(
        &self,
        targets: &[Target],
        snap: &Snapshot,
        claimed: &[ClaimedOut],
    ) -> Vec<Refusal> {
        let out: BTreeSet<(usize, &str, &str)> = claimed
            .iter()
            .map(|c| (c.bal, c.pool.as_str(), c.member.as_str()))
            .collect();
        let leaving: BTreeSet<(usize, &str, &str)> = targets
            .iter()
            .map(|t| (t.bal, t.member.pool.as_str(), t.member.name.as_str()))
            .collect();
        let pools: BTreeSet<(usize, &str)> = leaving.iter().map(|(b, p, _)| (*b, *p)).collect();
        let mut refusals = Vec::new();
        for (b, pool) in pools {
            let gone = |m: &Member| {
                let k = (b, pool, m.name.as_str());
                leaving.contains(&k) || out.contains(&k)
            };
            let others: Vec<&Member> = snap[b]
                .iter()
                .filter(|m| m.pool == pool && !gone(m))
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
                    claimed: claimed
                        .iter()
                        .filter(|c| c.bal == b && c.pool == pool)
                        .map(|c| (c.member.clone(), c.by.clone()))
                        .collect(),
                });
            }
        }
        refusals
    }

    /// The members of what other runs claim now, as `snap` shows them:
    /// call it under the engine's lock.
    pub(crate) async fn claimed_out(&self, snap: &Snapshot) -> Result<Vec<ClaimedOut>> {
        let mut out = Vec::new();
        for (key, holder) in self.engine.others().await? {
            let by = format!("claimed by {holder}");
            if let Some(m) = key.strip_prefix(MEMBER_KEY) {
                let mut parts = m.splitn(3, '/');
                if let (Some(b), Some(pool), Some(member)) =
                    (parts.next(), parts.next(), parts.next())
                    && let Some(bal) = self.engine.position(b)
                {
                    out.push(ClaimedOut {
                        bal,
                        pool: pool.into(),
                        member: member.into(),
                        by: by.clone(),
                    });
                }
                continue;
            }
            let Some(node) = self.nodes().get(&key) else {
                continue;
            };
            // A node whose override names a member that is gone is
            // counted by what it still matches.
            for t in self.resolve(node, snap).unwrap_or_default() {
                out.push(ClaimedOut {
                    bal: t.bal,
                    pool: t.member.pool.clone(),
                    member: t.member.name.clone(),
                    by: format!("{key} {by}"),
                });
            }
        }
        Ok(out)
    }
}

/// The claim key of a member that belongs to no node:
/// `member:BALANCER/POOL/MEMBER`.
pub(crate) const MEMBER_KEY: &str = "member:";
