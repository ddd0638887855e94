//! This crate's own errors, converted into [`lb_core::Error`] at the trait
//! boundary (where the balancer's inventory name is added).

use lb_core::{Error, escape_name};

use crate::xml::ParseError;

/// What can go wrong talking to one balancer-manager.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApacheError {
    #[error("cannot reach the balancer-manager at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("the balancer-manager at {url} did not answer within {secs:.1} s ({cause})")]
    Timeout {
        url: String,
        secs: f64,
        cause: String,
    },
    #[error("TLS to {url} failed: {cause}{hint}")]
    Tls {
        url: String,
        cause: String,
        hint: &'static str,
    },
    #[error("{what} {url}: HTTP {status}: {hint}")]
    Refused {
        what: &'static str,
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{what} {url}: HTTP {status}{hint}")]
    Status {
        what: &'static str,
        url: String,
        status: u16,
        hint: String,
    },
    #[error(
        "{url}?xml=1 answered {content_type} instead of XML: httpd ignored the request's \
         parameters, which it does (log AH10187) when the Referer's host is not the server's \
         name; check `UseCanonicalName`/`ServerName` against the host in `url`"
    )]
    NotXml { url: String, content_type: String },
    #[error("cannot understand the balancer-manager's XML from {url}: {source}")]
    Parse {
        url: String,
        #[source]
        source: ParseError,
    },
    #[error("pool {pool} not found (member {pool}/{member}); pools: {known}")]
    PoolNotFound {
        pool: String,
        member: String,
        known: String,
    },
    #[error("member {pool}/{member} not found; members of {pool}: {known}")]
    MemberNotFound {
        pool: String,
        member: String,
        known: String,
    },
    #[error(
        "member {pool}/{member} is ambiguous: workers {urls} all answer to it; name it by its URL"
    )]
    Ambiguous {
        pool: String,
        member: String,
        urls: String,
    },
    #[error("weight {weight} for {pool}/{member} is out of range 1..=100 (httpd's load factor)")]
    WeightOutOfRange {
        pool: String,
        member: String,
        weight: u32,
    },
    #[error(
        "worker {url} of {pool}/{member} is gone from the balancer-manager after the write \
         (was httpd restarted with another configuration?)"
    )]
    Vanished {
        pool: String,
        member: String,
        url: String,
    },
    #[error(
        "the balancer-manager ignored the change of {pool}/{member} to {wanted}: it answered \
         200 but the worker still reads {got} (status {status:?}). httpd silently ignores a \
         write when the Referer is missing or names another host (a proxy in front may strip \
         it), when the nonce is stale, when a rule blocks the form's parameters, or when a \
         value is out of range; see httpd's error log"
    )]
    Ignored {
        pool: String,
        member: String,
        wanted: String,
        got: String,
        status: String,
    },
}

impl ApacheError {
    /// Into the shared error type, naming `balancer`.
    pub(crate) fn into_core(self, balancer: &str) -> Error {
        let msg = self.to_string();
        match self {
            ApacheError::Ambiguous { .. } | ApacheError::WeightOutOfRange { .. } => {
                Error::invalid_input(balancer, msg)
            }
            ApacheError::Unreachable { .. } | ApacheError::Timeout { .. } => {
                Error::unavailable(balancer, msg)
            }
            ApacheError::Refused { .. } => Error::unauthorized(balancer, msg),
            ApacheError::Status { status, .. } if status == 429 || status >= 500 => {
                Error::unavailable(balancer, msg)
            }
            ApacheError::PoolNotFound { .. } | ApacheError::MemberNotFound { .. } => {
                Error::not_found(balancer, msg)
            }
            ApacheError::Tls { .. }
            | ApacheError::Status { .. }
            | ApacheError::NotXml { .. }
            | ApacheError::Parse { .. }
            | ApacheError::Vanished { .. }
            | ApacheError::Ignored { .. } => Error::protocol(balancer, msg),
        }
    }

    pub(crate) fn ignored(
        pool: &str,
        member: &str,
        wanted: String,
        got: String,
        status: &str,
    ) -> Self {
        ApacheError::Ignored {
            pool: pool.to_owned(),
            member: escape_name(member),
            wanted,
            got,
            status: status.trim().to_owned(),
        }
    }
}
