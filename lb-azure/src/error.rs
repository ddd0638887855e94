//! The driver's own errors, converted into [`lb_core::Error`] at the API
//! boundary with the balancer's name and the pool and member involved.

/// What ARM said in an error body (`{"error":{"code","message"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArmSays {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ArmSays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code.is_empty() {
            write!(f, "HTTP {}: {}", self.status, self.message)
        } else {
            write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AzureError {
    /// The pool is not on the gateway.
    #[error("pool {pool} not found on gateway {gateway}")]
    PoolNotFound { pool: String, gateway: String },
    /// The member is neither in the pool nor recorded as removed from it.
    #[error(
        "member {member} not found in pool {pool} (neither in its backend addresses nor recorded as removed by lbctl)"
    )]
    MemberNotFound { pool: String, member: String },
    /// This driver cannot do that.
    #[error("{0}")]
    Unsupported(String),
    /// 401/403 from ARM.
    #[error("{what}: access refused ({says})")]
    Unauthorized { what: String, says: ArmSays },
    /// No token could be had from the credential.
    #[error("no access token from the {credential} credential: {message}")]
    Token {
        credential: &'static str,
        message: String,
    },
    /// 404 from ARM.
    #[error("{what}: not found ({says})")]
    ArmNotFound { what: String, says: ArmSays },
    /// 429 or 5xx from ARM (after the retries allowed for that request).
    #[error("{what}: Azure is busy or failing ({says})")]
    Busy { what: String, says: ArmSays },
    /// The request did not get an answer.
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    /// A PUT whose outcome is unknown; it is not sent again.
    #[error(
        "{what}: {message}; the update may or may not have been applied, and is not sent again: read the gateway and retry"
    )]
    Unknown { what: String, message: String },
    /// The asynchronous operation ended `Failed` or `Canceled`.
    #[error("the gateway update ended {status}: {code}: {message}{after}")]
    Operation {
        status: String,
        code: String,
        message: String,
        after: String,
    },
    /// The operation did not end in time.
    #[error(
        "the gateway update did not finish within {0:?}; it may still complete (check with members())"
    )]
    OperationTimeout(std::time::Duration),
    /// Someone else kept changing the gateway.
    #[error("the gateway kept changing under us: {attempts} attempts ended in {last}")]
    Conflict { attempts: u32, last: String },
    /// ARM said something this driver does not understand, or the gateway
    /// did not read back as written.
    #[error("{0}")]
    Protocol(String),
}

impl AzureError {
    /// Converts into [`lb_core::Error`] for `balancer`, prefixing `context`
    /// (the pool and member, or the gateway) to the message.
    pub(crate) fn into_core(self, balancer: &str, context: &str) -> lb_core::Error {
        use lb_core::Error as E;
        let message = if context.is_empty() {
            self.to_string()
        } else {
            format!("{context}: {self}")
        };
        match self {
            AzureError::PoolNotFound { .. }
            | AzureError::MemberNotFound { .. }
            | AzureError::ArmNotFound { .. } => E::not_found(balancer, message),
            AzureError::Unsupported(_) => E::unsupported(balancer, message),
            AzureError::Unauthorized { .. } | AzureError::Token { .. } => {
                E::unauthorized(balancer, message)
            }
            AzureError::Busy { .. }
            | AzureError::Transport { .. }
            | AzureError::Unknown { .. }
            | AzureError::OperationTimeout(_) => E::unavailable(balancer, message),
            AzureError::Conflict { .. } => E::conflict(balancer, message),
            AzureError::Operation { .. } | AzureError::Protocol(_) => {
                E::protocol(balancer, message)
            }
        }
    }
}

pub(crate) type Result<T, E = AzureError> = std::result::Result<T, E>;
