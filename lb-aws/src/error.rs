//! The driver's own errors, converted into [`lb_core::Error`] at the API
//! boundary with the balancer's name and the target group and member
//! involved.

use aws_sdk_elasticloadbalancingv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes AWS answers when it is throttling or briefly failing; the
/// SDK's standard retry mode already retried them with backoff.
const BUSY: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
];

/// Error codes AWS answers when the caller may not do what it asked.
const REFUSED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
];

/// Error codes for a resource that does not exist.
const MISSING: &[&str] = &[
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "InvalidTarget",
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    /// The pool is not one of this balancer's target groups.
    #[error("target group {0} is not one of this balancer's target groups{1}")]
    PoolNotFound(String, String),
    /// The member is neither registered nor recorded as deregistered.
    #[error(
        "member {member} not found in target group {pool} (neither registered nor recorded as deregistered by lbctl)"
    )]
    MemberNotFound { pool: String, member: String },
    /// A value lbctl cannot send.
    #[error("{0}")]
    Invalid(String),
    /// AWS refused the caller (IAM, credentials).
    #[error("{action} was refused ({code}: {message}); the IAM policy must allow {action}")]
    Refused {
        action: &'static str,
        code: String,
        message: String,
    },
    /// No credentials or no region.
    #[error("{0}")]
    Credentials(String),
    /// AWS says the resource does not exist.
    #[error("{action}: {code}: {message}")]
    Missing {
        action: &'static str,
        code: String,
        message: String,
    },
    /// Throttled or failing after the SDK's retries.
    #[error("{action}: AWS is busy or failing after retries with backoff ({code}: {message})")]
    Busy {
        action: &'static str,
        code: String,
        message: String,
    },
    /// The request got no answer.
    #[error("{action}: no answer: {message}")]
    Transport {
        action: &'static str,
        message: String,
    },
    /// AWS said something else, or a write did not read back as written.
    #[error("{0}")]
    Protocol(String),
}

impl AwsError {
    /// Classifies an SDK error of the call `action` (its IAM action name,
    /// e.g. `elasticloadbalancing:DeregisterTargets`).
    pub(crate) fn from_sdk<E, R>(action: &'static str, e: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let (code, message) = (
            e.code().unwrap_or_default().to_owned(),
            e.message().unwrap_or_default().to_owned(),
        );
        match &e {
            SdkError::ServiceError(_) => {
                let c = code.as_str();
                if BUSY.contains(&c) {
                    AwsError::Busy {
                        action,
                        code,
                        message,
                    }
                } else if REFUSED.contains(&c) {
                    AwsError::Refused {
                        action,
                        code,
                        message,
                    }
                } else if MISSING.contains(&c) {
                    AwsError::Missing {
                        action,
                        code,
                        message,
                    }
                } else {
                    AwsError::Protocol(format!("{action}: {code}: {message}"))
                }
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                let text = DisplayErrorContext(&e).to_string();
                if text.contains("credentials") || text.contains("Credentials") {
                    AwsError::Credentials(format!(
                        "{action}: no AWS credentials from the SDK's default chain (environment, profile, web identity, instance metadata): {text}"
                    ))
                } else {
                    AwsError::Transport {
                        action,
                        message: text,
                    }
                }
            }
            _ => AwsError::Protocol(format!("{action}: {}", DisplayErrorContext(&e))),
        }
    }

    /// Converts into [`lb_core::Error`] for `balancer`, prefixing `context`
    /// (the target group and member) to the message.
    pub(crate) fn into_core(self, balancer: &str, context: &str) -> lb_core::Error {
        use lb_core::Error as E;
        let message = if context.is_empty() {
            self.to_string()
        } else {
            format!("{context}: {self}")
        };
        match self {
            AwsError::PoolNotFound(..)
            | AwsError::MemberNotFound { .. }
            | AwsError::Missing { .. } => E::not_found(balancer, message),
            AwsError::Invalid(_) => E::invalid_input(balancer, message),
            AwsError::Refused { .. } | AwsError::Credentials(_) => {
                E::unauthorized(balancer, message)
            }
            AwsError::Busy { .. } | AwsError::Transport { .. } => E::unavailable(balancer, message),
            AwsError::Protocol(_) => E::protocol(balancer, message),
        }
    }
}

pub(crate) type Result<T, E = AwsError> = std::result::Result<T, E>;
