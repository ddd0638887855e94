//! The crate's own errors, converted into [`lb_core::Error`] at the edge.

use std::io;
use std::path::PathBuf;

use lb_core::Error;

use crate::config::ParseError;

/// Everything that can go wrong in this crate, before it is classified into
/// one of lb-core's kinds.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NgxError {
    /// A file could not be read, written or locked.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The upstream file is not valid nginx syntax.
    #[error("{} is not valid nginx syntax: {err}", file.display())]
    Parse { file: PathBuf, err: ParseError },
    /// A configuration nginx would refuse beyond its syntax (a file that
    /// includes itself).
    #[error("{0}")]
    Config(String),
    /// No such pool or member (the message names it).
    #[error("{0}")]
    NotFound(String),
    /// The request is not possible on this configuration.
    #[error("{0}")]
    Unsupported(String),
    /// `nginx -t` refused the configuration; the upstream file was restored.
    #[error("{0}")]
    TestFailed(String),
    /// The configuration was broken before our change.
    #[error("{0}")]
    AlreadyBroken(String),
    /// nginx could not be reloaded (or did not confirm the reload); the
    /// upstream file was restored.
    #[error("{0}")]
    ReloadFailed(String),
    /// nginx is not running, or the pid file does not name its master.
    #[error("{0}")]
    NotRunning(String),
    /// We may not signal the master or run the command.
    #[error("{0}")]
    Denied(String),
    /// A write did not read back as written.
    #[error("{0}")]
    ReadBack(String),
    /// The NGINX Plus API could not be reached.
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// The NGINX Plus API answered with an error object (or a bare status).
    #[error("{message}")]
    Api {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The NGINX Plus API said something we cannot read.
    #[error("{0}")]
    Decode(String),
}

impl NgxError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> NgxError {
        NgxError::Io {
            what: what.into(),
            source,
        }
    }

    /// The lb-core error for balancer `balancer`.
    pub(crate) fn into_core(self, balancer: &str) -> Error {
        let message = full_message(&self);
        match self {
            NgxError::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => Error::unauthorized(balancer, message),
                _ => Error::unavailable(balancer, message),
            },
            NgxError::Parse { .. } | NgxError::Config(_) => Error::protocol(balancer, message),
            NgxError::NotFound(_) => Error::not_found(balancer, message),
            NgxError::Unsupported(_) => Error::unsupported(balancer, message),
            NgxError::TestFailed(_) => Error::unsupported(balancer, message),
            NgxError::AlreadyBroken(_) => Error::protocol(balancer, message),
            NgxError::ReloadFailed(_) | NgxError::NotRunning(_) => {
                Error::unavailable(balancer, message)
            }
            NgxError::Denied(_) => Error::unauthorized(balancer, message),
            NgxError::ReadBack(_) | NgxError::Decode(_) => Error::protocol(balancer, message),
            NgxError::Http { .. } => Error::unavailable(balancer, message),
            NgxError::Api { status, code, .. } => match code.as_deref() {
                Some("UpstreamNotFound" | "UpstreamServerNotFound") => {
                    Error::not_found(balancer, message)
                }
                Some("UpstreamStatic") => Error::unsupported(balancer, message),
                Some("MethodDisabled") => Error::unauthorized(balancer, message),
                Some(_) => Error::protocol(balancer, message),
                None if status == 401 || status == 403 => Error::unauthorized(balancer, message),
                None if status >= 500 => Error::unavailable(balancer, message),
                None => Error::protocol(balancer, message),
            },
        }
    }
}

/// The message with its sources, on one line.
fn full_message(e: &NgxError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let api = |code: Option<&str>, status| NgxError::Api {
            status,
            code: code.map(str::to_string),
            message: "m".into(),
        };
        for (e, kind) in [
            (api(Some("UpstreamNotFound"), 404), "not_found"),
            (api(Some("UpstreamServerNotFound"), 404), "not_found"),
            (api(Some("UpstreamStatic"), 400), "unsupported"),
            (api(Some("MethodDisabled"), 405), "unauthorized"),
            (api(Some("UpstreamBadWeight"), 400), "protocol"),
            (api(None, 401), "unauthorized"),
            (api(None, 502), "unavailable"),
            (
                NgxError::io(
                    "write f",
                    io::Error::new(io::ErrorKind::PermissionDenied, "no"),
                ),
                "unauthorized",
            ),
            (NgxError::TestFailed("x".into()), "unsupported"),
            (NgxError::ReloadFailed("x".into()), "unavailable"),
        ] {
            let c = e.into_core("front");
            assert_eq!((c.kind(), c.balancer()), (kind, "front"), "{c}");
        }
    }
}
