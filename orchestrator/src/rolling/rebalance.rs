//! The plan's `rebalance` step in words: what it will do (`--dry-run`,
//! the report's command), the step's message, and the warnings its
//! outcome gives (a pool left skewed does not fail the upgrade).

use crate::duration::format_duration;
use crate::rebalance::{PoolOutcome, RebalanceOptions, RebalanceReport, Strategy};

/// What the rebalance step does, in words (`--dry-run`, the report).
pub(super) fn describe(o: &RebalanceOptions) -> String {
    let (strategy, hold) = match o.strategy {
        Strategy::Drain => (
            "drain",
            format!(", max_drain {}", format_duration(o.max_drain)),
        ),
        Strategy::Weight => ("weight", String::new()),
    };
    format!(
        "rebalance all measurable pools, threshold {}, strategy {strategy} \
         (min_load {}, window {}{hold}, duration {} per pool)",
        o.threshold,
        o.min_load,
        format_duration(o.window),
        format_duration(o.duration),
    )
}

/// The warnings a rebalance's outcome gives the operator: pools it could
/// not even out. They do not fail the upgrade.
pub(super) fn warnings(r: &RebalanceReport) -> Vec<String> {
    r.pools
        .iter()
        .filter_map(|p| {
            let skew = p
                .after
                .as_ref()
                .or(p.before.as_ref())
                .map_or(String::new(), |m| format!(" (skew {:.2})", m.skew));
            let what = match p.outcome {
                PoolOutcome::StillSkewed => format!(
                    "still skewed{skew} after {} ms, above the threshold {}",
                    p.elapsed_ms, r.threshold
                ),
                PoolOutcome::Prevented => format!(
                    "skewed{skew} but not rebalanced: {}",
                    p.reason.as_deref().unwrap_or("no action was possible")
                ),
                _ => return None,
            };
            Some(format!(
                "rebalance: {} pool {}: {what}; the upgrade itself is done",
                p.balancer, p.pool
            ))
        })
        .collect()
}

/// The step's message, pool by pool: `edge pool app: rebalanced`.
pub(super) fn summary(r: &RebalanceReport) -> String {
    if r.pools.is_empty() {
        return "no pool to look at".into();
    }
    r.pools
        .iter()
        .map(|p| {
            let what = serde_json::to_value(p.outcome)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default();
            format!("{} pool {}: {what}", p.balancer, p.pool)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
