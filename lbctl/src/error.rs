//! Why a command failed, with its exit code and its JSON kind.

use orchestrator::rolling::RollingReport;
use orchestrator::{Error, RollingError};

/// Why a command failed: the library's error, or a rolling run's (which
/// may carry the report of a run that stopped part way).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Any command but `rolling`.
    #[error(transparent)]
    Lib(#[from] Error),
    /// `rolling`.
    #[error(transparent)]
    Rolling(#[from] RollingError),
}

impl CliError {
    /// The exit code lbctl ends with.
    pub fn exit_code(&self) -> orchestrator::ExitCode {
        match self {
            CliError::Lib(e) => e.exit_code(),
            CliError::Rolling(e) => e.exit_code(),
        }
    }

    /// A stable name for the kind, as in `{"error":{"kind":…}}`.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Lib(e) => e.kind(),
            CliError::Rolling(e) => e.kind(),
        }
    }

    /// The report of a rolling run that stopped part way.
    pub fn report(&self) -> Option<&RollingReport> {
        match self {
            CliError::Lib(_) => None,
            CliError::Rolling(e) => e.report(),
        }
    }
}
