//! What commands report, in the shapes `--output json` prints.

use serde::Serialize;

use lb_core::{AdminState, Health};

use crate::engine::journal::What;

/// One member of one node on one balancer, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The balancer's inventory name.
    pub balancer: String,
    /// Its kind (`haproxy`, `apache`, `nginx`, `nginx-plus`, `azure-appgw`).
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
    /// True when nothing was changed because of `--dry-run`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}
