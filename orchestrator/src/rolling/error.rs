//! How a rolling run fails: with the crate's [`Error`] before any step
//! ran, or stopped part way with the report of what ran.

use super::report::{RollingReport, RunResult};
use crate::error::{Error, ExitCode};

/// Why [`Rolling::run`](super::Rolling::run) returned no finished run.
#[derive(Debug, thiserror::Error)]
pub enum RollingError {
    /// Nothing ran: the plan does not fit the inventory, there is nothing
    /// to resume, a guard refused, the state directory or journal failed
    /// (also when the journal cannot record the end of a run whose steps
    /// all passed).
    #[error(transparent)]
    Setup(#[from] Error),
    /// A step failed or a signal stopped the run (exit 1); the report says
    /// where, and how to continue.
    #[error("{}", .0.summary())]
    Stopped(Box<RollingReport>),
}

impl RollingError {
    /// The exit code lbctl ends with: the [`Error`]'s own for `Setup`,
    /// [`ExitCode::Failed`] for `Stopped`.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RollingError::Setup(e) => e.exit_code(),
            RollingError::Stopped(_) => ExitCode::Failed,
        }
    }

    /// A stable name for the kind, as in `{"error":{"kind":…}}`: the
    /// [`Error`]'s own for `Setup`; `interrupted` for a run a signal
    /// stopped, `failed` for one a step failed.
    pub fn kind(&self) -> &'static str {
        match self {
            RollingError::Setup(e) => e.kind(),
            RollingError::Stopped(r) => match r.result {
                RunResult::Interrupted => "interrupted",
                _ => "failed",
            },
        }
    }

    /// The report of a run that stopped part way.
    pub fn report(&self) -> Option<&RollingReport> {
        match self {
            RollingError::Setup(_) => None,
            RollingError::Stopped(r) => Some(r),
        }
    }
}
