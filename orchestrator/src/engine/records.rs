//! The journal's records, typed: what each line of `journal.jsonl` says.
//! On disk they are the JSON lines lbctl has always written (a `""` for
//! "none", weights as strings), so an older journal reads back the same.

use lb_core::AdminState;
use serde::{Deserialize, Serialize};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When (RFC 3339, UTC).
    pub ts: String,
    /// The run it belongs to.
    pub run: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a journal record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began.
    Start {
        /// The process.
        pid: u32,
        /// The machine.
        host: String,
        /// Who ran it.
        user: String,
        /// The command, e.g. `drain node2`.
        command: String,
        /// Why, as the operator said it (`--reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A change is about to be made.
    Intent {
        /// Its number within the run.
        seq: u64,
        /// The node it serves, if any (written `""` for none).
        #[serde(with = "empty_is_none")]
        node: Option<String>,
        /// The balancer's inventory name.
        balancer: String,
        /// The pool.
        pool: String,
        /// The member.
        member: String,
        /// What changes, from what to what (`what`, `from`, `to`).
        #[serde(flatten)]
        change: Setting,
    },
    /// A change was made, or failed.
    Done {
        /// The intent's number.
        seq: u64,
        /// How it went.
        result: Outcome,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The run ended, leaving what it meant to leave.
    End {
        /// How.
        status: EndStatus,
        /// For [`EndStatus::Recovered`]: the run that was put back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<String>,
    },
    /// A rolling upgrade: the plan it runs, and the run it resumes.
    Rolling {
        /// The plan (its canonical path).
        plan: String,
        /// The earlier run of the same plan this one continues.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumes: Option<String>,
    },
    /// One step of a rolling upgrade began or ended.
    Step {
        /// The group (none for the plan's own steps; written `""`).
        #[serde(with = "empty_is_none")]
        group: Option<String>,
        /// The node (none for group and plan steps; written `""`).
        #[serde(with = "empty_is_none")]
        node: Option<String>,
        /// Which step.
        step: Step,
        /// Where it is.
        status: StepStatus,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A step's hook began: its process group, so that a `--resume` or a
    /// `recover` after lbctl was killed can tell whether it still runs.
    Hook {
        /// The group (written `""` for none).
        #[serde(with = "empty_is_none")]
        group: Option<String>,
        /// The node (written `""` for none).
        #[serde(with = "empty_is_none")]
        node: Option<String>,
        /// Which step.
        step: Step,
        /// Its process group (the pid of the `sh -c` that leads it).
        pgid: u32,
        /// The machine it runs on.
        host: String,
    },
}

/// A value lbctl sets on a member: its admin state or its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// An admin state.
    State(AdminState),
    /// A weight.
    Weight(u32),
}

/// Which kind of [`Value`]: the journal's `what`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// The admin state.
    State,
    /// The weight.
    Weight,
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl What {
    /// As the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            What::State => "state",
            What::Weight => "weight",
        }
    }
}

impl Value {
    /// Its kind.
    pub fn what(self) -> What {
        match self {
            Value::State(_) => What::State,
            Value::Weight(_) => What::Weight,
        }
    }
}

/// Written as the journal and the reports write it: `"ready"`, `"100"`.
impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::State(s) => write!(f, "{s}"),
            Value::Weight(w) => write!(f, "{w}"),
        }
    }
}

/// One change of one member's setting, as an intent records it: on disk
/// `"what":"state","from":"ready","to":"drain"` (weights as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Setting {
    /// The admin state.
    State {
        /// Before.
        from: AdminState,
        /// Asked for.
        to: AdminState,
    },
    /// The weight.
    Weight {
        /// Before.
        #[serde(with = "number_as_string")]
        from: u32,
        /// Asked for.
        #[serde(with = "number_as_string")]
        to: u32,
    },
}

impl Setting {
    /// From `from` to `to`.
    ///
    /// # Panics
    ///
    /// When the two are of different kinds (a bug of the caller).
    pub fn new(from: Value, to: Value) -> Setting {
        match (from, to) {
            (Value::State(from), Value::State(to)) => Setting::State { from, to },
            (Value::Weight(from), Value::Weight(to)) => Setting::Weight { from, to },
            _ => panic!("a change from {from:?} to {to:?} mixes kinds"),
        }
    }

    /// The kind.
    pub fn what(self) -> What {
        self.from().what()
    }

    /// The value before.
    pub fn from(self) -> Value {
        match self {
            Setting::State { from, .. } => Value::State(from),
            Setting::Weight { from, .. } => Value::Weight(from),
        }
    }

    /// The value asked for.
    pub fn to(self) -> Value {
        match self {
            Setting::State { to, .. } => Value::State(to),
            Setting::Weight { to, .. } => Value::Weight(to),
        }
    }
}

/// How a change went (`done`'s `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Made.
    Applied,
    /// Already so.
    Unchanged,
    /// Not made.
    Failed,
}

/// How a run ended (`end`'s `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// It did what it was asked.
    Ok,
    /// A wait ran out; what it changed stays changed on purpose.
    Timeout,
    /// A guard refused.
    Guard,
    /// A change failed and what it had made was put back.
    RolledBack,
    /// It failed.
    Failed,
    /// `recover`: the run in `recovered` was put back.
    Recovered,
    /// A signal stopped it.
    Interrupted,
}

impl EndStatus {
    /// As the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndStatus::Ok => "ok",
            EndStatus::Timeout => "timeout",
            EndStatus::Guard => "guard",
            EndStatus::RolledBack => "rolled_back",
            EndStatus::Failed => "failed",
            EndStatus::Recovered => "recovered",
            EndStatus::Interrupted => "interrupted",
        }
    }
}

/// One step of a rolling upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// One of the plan's `preflight` checks (before anything changes).
    Preflight,
    /// Confluence ZDU: enable upgrade mode (before the first node).
    ZduStart,
    /// Take the node out of rotation everywhere and wait until its
    /// connections are gone.
    Drain,
    /// The `before` hook.
    Before,
    /// The `upgrade` hook.
    Upgrade,
    /// The `first_node` hook (instead of `upgrade` on a group's first node).
    FirstNode,
    /// The `after` hook.
    After,
    /// The health gate.
    Gate,
    /// Put the node back and wait until every balancer sees it healthy.
    Undrain,
    /// The group's `after_group` hook.
    AfterGroup,
    /// Confluence ZDU: wait for READY_TO_RUN_UPGRADE_TASKS and approve.
    ZduApprove,
    /// The plan's `rebalance`: a rebalance of every pool once the last
    /// node is back.
    Rebalance,
    /// The plan's `finally` hook.
    Finally,
    /// Confluence ZDU: leave upgrade mode (a run abandoned before any
    /// node was upgraded).
    ZduCancel,
    /// The journal's mark that every step of a node is done (never a step
    /// of a report).
    Node,
    /// The group's `on_failure` hook, after a node's step failed.
    OnFailure,
    /// A pause point of the plan (`pause`): the run stopped there, to be
    /// continued with `--resume`.
    Pause,
    /// `--resume --skip NODE`: the node is left out of the rest of the
    /// run (and of the runs that resume it).
    Skip,
}

impl Step {
    /// Its name, as the journal and the report write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::ZduStart => "zdu_start",
            Step::Drain => "drain",
            Step::Before => "before",
            Step::Upgrade => "upgrade",
            Step::FirstNode => "first_node",
            Step::After => "after",
            Step::Gate => "gate",
            Step::Undrain => "undrain",
            Step::AfterGroup => "after_group",
            Step::ZduApprove => "zdu_approve",
            Step::Rebalance => "rebalance",
            Step::Finally => "finally",
            Step::ZduCancel => "zdu_cancel",
            Step::Node => "node",
            Step::OnFailure => "on_failure",
            Step::Pause => "pause",
            Step::Skip => "skip",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step is (`step`'s `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It began.
    Started,
    /// It ended well.
    Ok,
    /// It failed.
    Failed,
    /// A signal stopped it.
    Interrupted,
}

impl StepStatus {
    /// As the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Interrupted => "interrupted",
        }
    }
}

/// `""` on disk for "none", as the journal has always written it.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.is_empty()).then_some(s))
    }
}

/// Weights are written as strings (`"from":"100"`).
mod number_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("weight {s:?} is not a number")))
    }
}
