//! What the watch shows: every member's row, a short history of its
//! active connections, what changed lately, and the runs in progress.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use lb_core::{AdminState, Health};
use orchestrator::report::StatusReport;

use super::runs::RunInProgress;

/// How many reads of active connections a row's sparkline shows.
pub const HISTORY: usize = 16;
/// How long a row that changed stays highlighted.
pub const HIGHLIGHT: Duration = Duration::from_secs(3);

/// The order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Node, then balancer, pool, member.
    Node,
    /// Balancer, pool, member, then node.
    Balancer,
}

impl Sort {
    /// The other order.
    pub fn toggled(self) -> Sort {
        match self {
            Sort::Node => Sort::Balancer,
            Sort::Balancer => Sort::Node,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Node => "node",
            Sort::Balancer => "balancer",
        }
    }
}

/// A row's identity: node, balancer, pool, member.
pub type Key = (String, String, String, String);

/// One member of one node on one balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Node, balancer, pool, member.
    pub key: Key,
    /// Admin state.
    pub admin: AdminState,
    /// Health.
    pub health: Health,
    /// Active connections, where reported.
    pub active: Option<u64>,
    /// Weight, where reported.
    pub weight: Option<u32>,
    /// Active connections over the last reads, oldest first.
    pub history: VecDeque<Option<u64>>,
    /// When its admin, health or weight last changed (not at the first
    /// read).
    pub changed: Option<Instant>,
}

/// The whole view's state.
#[derive(Debug, Clone)]
pub struct Model {
    /// The rows, in `sort` order.
    pub rows: Vec<Row>,
    /// The order.
    pub sort: Sort,
    /// The runs in progress.
    pub runs: Vec<RunInProgress>,
    /// The last read's failure, if it failed (the rows are the read
    /// before).
    pub error: Option<String>,
    /// How often it reads.
    pub interval: Duration,
    /// How many reads so far.
    pub reads: u64,
}

impl Model {
    /// An empty view.
    pub fn new(sort: Sort, interval: Duration) -> Model {
        Model {
            rows: Vec::new(),
            sort,
            runs: Vec::new(),
            error: None,
            interval,
            reads: 0,
        }
    }

    /// Takes a new read of every member: keeps each row's history, and
    /// marks rows whose admin, health or weight changed since the last
    /// read.
    pub fn update(&mut self, report: &StatusReport, now: Instant) {
        let mut old: BTreeMap<Key, Row> = self.rows.drain(..).map(|r| (r.key.clone(), r)).collect();
        let first = self.reads == 0;
        for n in &report.nodes {
            for m in &n.members {
                let key = (
                    n.node.clone(),
                    m.balancer.clone(),
                    m.pool.clone(),
                    m.member.clone(),
                );
                let before = old.remove(&key);
                let mut history = before
                    .as_ref()
                    .map(|r| r.history.clone())
                    .unwrap_or_default();
                history.push_back(m.active);
                while history.len() > HISTORY {
                    history.pop_front();
                }
                let changed = match &before {
                    Some(b) if (b.admin, b.health, b.weight) != (m.admin, m.health, m.weight) => {
                        Some(now)
                    }
                    Some(b) => b.changed,
                    None if first => None,
                    None => Some(now),
                };
                self.rows.push(Row {
                    key,
                    admin: m.admin,
                    health: m.health,
                    active: m.active,
                    weight: m.weight,
                    history,
                    changed,
                });
            }
        }
        self.reads += 1;
        self.error = None;
        self.sort_rows();
    }

    /// Sets the order.
    pub fn set_sort(&mut self, sort: Sort) {
        self.sort = sort;
        self.sort_rows();
    }

    fn sort_rows(&mut self) {
        match self.sort {
            Sort::Node => self.rows.sort_by(|a, b| a.key.cmp(&b.key)),
            Sort::Balancer => self.rows.sort_by(|a, b| {
                let k = |r: &Row| {
                    (
                        r.key.1.clone(),
                        r.key.2.clone(),
                        r.key.3.clone(),
                        r.key.0.clone(),
                    )
                };
                k(a).cmp(&k(b))
            }),
        }
    }

    /// The most active connections any row's history holds.
    pub fn peak(&self) -> u64 {
        self.rows
            .iter()
            .flat_map(|r| r.history.iter().flatten())
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Whether a row is highlighted at `now`.
    pub fn highlighted(row: &Row, now: Instant) -> bool {
        row.changed
            .is_some_and(|t| now.duration_since(t) < HIGHLIGHT)
    }
}

/// A sparkline of `history`, one character per read, scaled to `max`
/// (the most any row shows, so rows compare); `·` where the balancer did
/// not report.
pub fn sparkline(history: &VecDeque<Option<u64>>, max: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    history
        .iter()
        .map(|v| match v {
            None => '·',
            Some(_) if max == 0 => BARS[0],
            Some(v) => BARS[((v * 7 + max / 2) / max).min(7) as usize],
        })
        .collect()
}
