use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Whether a member takes traffic, as its balancer's administrator set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// In rotation.
    Ready,
    /// No new connections; existing ones finish.
    Drain,
    /// Out of rotation entirely.
    Maint,
}

impl AdminState {
    /// The lower-case word used in JSON, the CLI and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "ready" => Ok(AdminState::Ready),
            "drain" => Ok(AdminState::Drain),
            "maint" => Ok(AdminState::Maint),
            other => Err(Error::InvalidInput {
                balancer: String::new(),
                message: format!(
                    "unknown admin state {:?} (expected ready, drain or maint)",
                    other
                ),
            }),
        }
    }
}

/// Whether the balancer sees a member as able to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Checks pass.
    Up,
    /// Checks fail.
    Down,
    /// The balancer does not know (no checks, or it does not report them).
    Unknown,
}

impl Health {
    /// The lower-case word used in JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a pool routes to that is not a member lbctl can name: see
/// [`Balancer::unattributed`](crate::Balancer::unattributed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unattributed {
    /// The pool it is in.
    pub pool: String,
    /// Its text in the balancer's configuration, e.g.
    /// `server unix:/run/app.sock`.
    pub server: String,
    /// Why it cannot be attributed.
    pub why: String,
}

/// One server line in one pool, as its balancer reports it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The pool (HAProxy backend, Apache balancer, nginx upstream, Azure pool).
    pub pool: String,
    /// The member's name within its pool.
    pub name: String,
    /// `host:port` (or a bare host where the balancer has no port).
    pub address: String,
    /// The administrative state.
    pub admin: AdminState,
    /// The balancer's view of its health.
    pub health: Health,
    /// In-flight connections or requests; `None` where the balancer cannot
    /// tell (never read that as zero).
    pub active: Option<u64>,
    /// The current weight, where the balancer has weights.
    pub weight: Option<u32>,
}

impl Member {
    /// The reference to this member.
    pub fn reference(&self) -> MemberRef {
        MemberRef::new(&self.pool, &self.name)
    }

    /// Whether this is the member `r` names.
    pub fn is(&self, r: &MemberRef) -> bool {
        self.pool == r.pool && self.name == r.member
    }
}

/// Names one member: its pool and its name in that pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberRef {
    /// The pool.
    pub pool: String,
    /// The member's name within the pool.
    pub member: String,
}

impl MemberRef {
    /// A reference to `member` in `pool`. Nothing is validated here: drivers
    /// validate with [`crate::validate_name`] before use.
    pub fn new(pool: impl Into<String>, member: impl Into<String>) -> Self {
        MemberRef {
            pool: pool.into(),
            member: member.into(),
        }
    }

    /// Checks both names with [`crate::validate_name`], naming `balancer`
    /// in the error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for the first name that fails.
    pub fn validate(&self, balancer: &str) -> Result<(), Error> {
        crate::validate_name(balancer, "pool", &self.pool)?;
        crate::validate_name(balancer, "member", &self.member)
    }
}

impl fmt::Display for MemberRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.member)
    }
}

/// The outcome of a write that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The balancer was changed.
    Applied,
    /// The member already was in the requested state; nothing on the
    /// balancer changed. (A driver may have sent a write that found it so,
    /// in the same round trip as its read: lb-haproxy does; it never
    /// leaves the member otherwise than it found it.)
    AlreadyInState,
}

/// How a balancer tells that a draining member has nothing left in flight.
///
/// Whatever the signal, drivers express it through [`Member::active`]:
/// `Some(0)` once the signal says drained, `None` while it cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainSignal {
    /// The balancer counts the member's connections or requests.
    ActiveCount,
    /// The workers that predate a configuration reload have exited
    /// (open-source nginx).
    WorkersExited,
    /// A configured draining time has passed since the member was removed
    /// (Azure Application Gateway).
    Timer,
    /// The balancer offers no signal; the orchestrator must not assume one.
    None,
}

impl fmt::Display for DrainSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrainSignal::ActiveCount => "its active count reaches 0",
            DrainSignal::WorkersExited => "the workers older than the reload have exited",
            DrainSignal::Timer => "the draining timeout has passed",
            DrainSignal::None => "(no signal)",
        })
    }
}

/// What one kind of balancer can report and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `Member::active` is reported (at least once drained).
    pub active_connections: bool,
    /// `Member::health` is meaningful (else always `Unknown`).
    pub health: bool,
    /// The inclusive range `set_weight` accepts; `None`: no weights.
    pub weight_range: Option<(u32, u32)>,
    /// Whether `Drain` and `Maint` are distinct states on this balancer.
    /// Where they are not, a member set to `Drain` reads back as `Maint`.
    pub distinct_drain: bool,
    /// How a drained member is recognised.
    pub drain_signal: DrainSignal,
}

impl Capabilities {
    /// Whether `set_weight` is supported.
    pub fn weights(&self) -> bool {
        self.weight_range.is_some()
    }

    /// The state a member reads back as after `set_state(s)`.
    pub fn reads_back_as(&self, s: AdminState) -> AdminState {
        if s == AdminState::Drain && !self.distinct_drain {
            AdminState::Maint
        } else {
            s
        }
    }
}
