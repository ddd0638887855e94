use std::fmt;

/// The result of orchestrator operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an orchestrator operation failed; each kind maps to one of lbctl's
/// exit codes ([`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The inventory or plan is malformed (exit 2).
    #[error("{0}")]
    Config(String),
    /// A node name that the inventory does not hold (exit 2).
    #[error("unknown node \"{}\"; the inventory has: {}", lb_core::escape_name(name), known.join(", "))]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The names the inventory holds.
        known: Vec<String>,
    },
    /// Bad input that never reached a balancer (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A safety guard refused; nothing was changed (exit 4).
    #[error("refused by the guard, nothing changed: {0}")]
    Guard(String),
    /// Another run holds a claim on a node this command changes, and did
    /// not release it within the lock timeout; nothing changed (exit 4).
    #[error("{0}")]
    Claimed(String),
    /// A wait ran out of time (exit 3). What was changed stays changed, and
    /// the message says so.
    #[error("{0}")]
    Timeout(String),
    /// A change failed on some balancer after others had applied theirs;
    /// those were put back (exit 5).
    #[error("{message}; rolled back: {rolled_back}")]
    RolledBack {
        /// What failed.
        message: String,
        /// What was put back (or could not be).
        rolled_back: String,
    },
    /// A balancer failed (exit 1).
    #[error(transparent)]
    Balancer(#[from] lb_core::Error),
    /// A balancer stopped answering during a wait and did not come back
    /// within [`UNREACHABLE_GRACE`](crate::UNREACHABLE_GRACE)
    /// (exit 1). The message names it, since when, and what the run left
    /// on it.
    #[error("{0}")]
    Unreachable(String),
    /// The state directory, journal or lock failed (exit 1).
    #[error("{0}")]
    State(String),
    /// Anything else that failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// SIGINT or SIGTERM stopped the command (exit 1): nothing new began,
    /// a wait was abandoned, what was out of rotation stays out, and the
    /// message names the nodes and the command to run next.
    #[error("{0}")]
    Interrupted(String),
}

/// lbctl's exit codes, stable for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done.
    Ok = 0,
    /// Failed.
    Failed = 1,
    /// Bad usage, bad configuration or unknown node.
    Usage = 2,
    /// Timed out waiting.
    Timeout = 3,
    /// Refused by a safety guard (nothing changed).
    Guard = 4,
    /// Partially applied, then rolled back.
    RolledBack = 5,
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

impl Error {
    /// The exit code lbctl ends with for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::UnknownNode { .. } | Error::Usage(_) => ExitCode::Usage,
            Error::Balancer(lb_core::Error::InvalidInput { .. }) => ExitCode::Usage,
            Error::Guard(_) | Error::Claimed(_) => ExitCode::Guard,
            Error::Timeout(_) => ExitCode::Timeout,
            Error::RolledBack { .. } => ExitCode::RolledBack,
            _ => ExitCode::Failed,
        }
    }

    /// A stable name for the kind, as in `{"error":{"kind":…}}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::UnknownNode { .. } => "unknown_node",
            Error::Usage(_) => "usage",
            Error::Guard(_) => "guard",
            Error::Claimed(_) => "claimed",
            Error::Timeout(_) => "timeout",
            Error::RolledBack { .. } => "rolled_back",
            Error::Balancer(e) => e.kind(),
            Error::Unreachable(_) => "unreachable",
            Error::State(_) => "state",
            Error::Failed(_) => "failed",
            Error::Interrupted(_) => "interrupted",
        }
    }
}
