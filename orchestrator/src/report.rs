//! What commands report, in the shapes `--output json` prints.

use serde::Serialize;

use lb_core::{AdminState, Health};

use crate::engine::journal::{EndStatus, Outcome, Value, What};

/// One member of one node on one balancer, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The balancer's inventory name.
    pub balancer: String,
    /// Its kind (`haproxy`, `apache`, `nginx`, `nginx-plus`, `azure-appgw`, `aws-elbv2`).
    pub kind: String,
    /// The pool.
    pub pool: String,
    /// The member's name in the pool.
    pub member: String,
    /// `ready`, `drain` or `maint`.
    pub admin: AdminState,
    /// `up`, `down` or `unknown`.
    pub health: Health,
    /// In-flight connections, where reported.
    pub active: Option<u64>,
    /// The weight, where the balancer has weights.
    pub weight: Option<u32>,
}

/// One node in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The node's inventory name.
    pub node: String,
    /// Its address.
    pub address: String,
    /// Its members on every balancer.
    pub members: Vec<MemberStatus>,
}

/// `lbctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// Every node asked for.
    pub nodes: Vec<NodeStatus>,
    /// What the balancers route to that no node can be told from (left
    /// out of the JSON when there is none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<Unmatched>,
}

/// A server a balancer routes to that lbctl cannot attribute to a node:
/// a unix socket, a host name that does not resolve, an nginx `include`
/// inside an upstream block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// The balancer's inventory name.
    pub balancer: String,
    /// Its kind.
    pub kind: String,
    /// The pool.
    pub pool: String,
    /// The server as the balancer has it.
    pub server: String,
    /// Why it cannot be attributed.
    pub why: String,
}

/// Whether a member was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    /// It was changed (or, with `--dry-run`, would be).
    Applied,
    /// It already was as asked.
    Unchanged,
}

/// A member in a drain/undrain report: its state after the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberResult {
    /// The member as it is now.
    #[serde(flatten)]
    pub status: MemberStatus,
    /// Whether the command changed it.
    pub change: MemberChange,
}

/// What a command did to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    /// Taken out of rotation.
    Drained,
    /// Put back into rotation.
    Undrained,
    /// Already as asked.
    Unchanged,
}

/// One node in a drain/undrain report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeResult {
    /// The node's inventory name.
    pub node: String,
    /// What happened to it.
    pub result: NodeOutcome,
    /// Each of its members.
    pub members: Vec<MemberResult>,
}

/// `lbctl drain` and `lbctl undrain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeReport {
    /// Every node asked for.
    pub nodes: Vec<NodeResult>,
    /// How long the command waited for balancers (ms).
    pub waited_ms: u64,
    /// True when nothing was changed because of `--dry-run`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Things the operator should know (a guard overridden with `--force`,
    /// a balancer that cannot report connections, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One member put back (or, with `--dry-run`, to be put back) by `recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// The interrupted run.
    pub run: String,
    /// Its command.
    pub command: String,
    /// The node.
    pub node: String,
    /// The balancer.
    pub balancer: String,
    /// The pool.
    pub pool: String,
    /// The member.
    pub member: String,
    /// `state` or `weight`.
    pub what: What,
    /// The value put back.
    pub restore: String,
    /// Whether it had to change.
    pub change: MemberChange,
}

/// `lbctl recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoverReport {
    /// What was (or would be) put back.
    pub recovered: Vec<Recovered>,
    /// Unfinished runs left alone because their process still runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<String>,
    /// Journal lines that could not be read (torn, not UTF-8, not a
    /// record) and were skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_lines: usize,
    /// True when nothing was changed because of `--dry-run`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How a run in `history` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// Its own `end` record says how.
    Ended(EndStatus),
    /// No end, but `recover` put back what it left.
    Recovered,
    /// No end, and its process still runs on this machine.
    Running,
    /// No end, and its process is gone: `recover` puts back what it left.
    Interrupted,
}

impl Serialize for RunResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            RunResult::Ended(e) => e.as_str(),
            RunResult::Recovered => "recovered",
            RunResult::Running => "running",
            RunResult::Interrupted => "interrupted",
        })
    }
}

/// One change a run made (or meant to make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The node it served (null for none).
    pub node: Option<String>,
    /// The balancer.
    pub balancer: String,
    /// The pool.
    pub pool: String,
    /// The member.
    pub member: String,
    /// `state` or `weight`.
    pub what: What,
    /// The value before.
    pub from: Value,
    /// The value set.
    pub to: Value,
    /// `applied`, `unchanged` or `failed` (null: the run never said).
    pub result: Option<Outcome>,
}

/// One run in `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Its journal id.
    pub run: String,
    /// When it began (RFC 3339).
    pub started: String,
    /// When it ended, if it did.
    pub ended: Option<String>,
    /// `user@host`.
    pub who: String,
    /// Its process.
    pub pid: u32,
    /// The command, e.g. `drain node2`.
    pub command: String,
    /// Why, as the operator said it (`--reason`).
    pub reason: Option<String>,
    /// How it ended: an `end` status, or `recovered`, `running`,
    /// `interrupted`.
    pub result: RunResult,
    /// What it changed, in order.
    pub changes: Vec<Change>,
}

/// `lbctl history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryReport {
    /// The runs, oldest first.
    pub runs: Vec<RunSummary>,
    /// Journal lines that could not be read and were skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_lines: usize,
}
