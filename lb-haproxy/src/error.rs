//! The driver's own errors, converted into [`lb_core::Error`] at the edge.

use std::path::PathBuf;
use std::time::Duration;

use lb_core::AdminState;

/// Everything that can go wrong talking to HAProxy.
///
/// Each variant maps onto one [`lb_core::Error`] kind in [`HapError::into_core`];
/// the message there is prefixed with the operation (`drain app/node2`,
/// `list members`, …) and the balancer's inventory name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HapError {
    /// Already an lb-core error (a name refused by the validator).
    #[error(transparent)]
    Core(lb_core::Error),

    /// A weight outside 0–256, refused before anything was sent.
    #[error("weight {weight} is out of range: HAProxy accepts 0 to 256")]
    WeightOutOfRange { weight: u32 },

    #[error(
        "{path} is not a socket (it is {kind}): `socket` must name HAProxy's runtime API \
         socket (`stats socket {path} level admin`)"
    )]
    NotASocket { path: String, kind: &'static str },

    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },

    #[error("{endpoint} did not {what} within {after:?}")]
    Timeout {
        endpoint: String,
        what: &'static str,
        after: Duration,
    },

    #[error("lost the connection to {endpoint}: {source}")]
    Io {
        endpoint: String,
        source: std::io::Error,
    },

    #[error(
        "HAProxy reloaded during this run (worker {old} → {new}) and this host cannot see \
         whether the old worker still serves connections (the stats socket is not local, or \
         HAProxy's PIDs are another namespace's): it is never called drained on the new \
         worker's figures alone; set master_socket to HAProxy's master CLI (`haproxy -W -S \
         /run/haproxy-master.sock`) so every worker's connections are counted"
    )]
    ReloadUnseen { old: String, new: u32 },

    #[error("{endpoint} closed the connection before answering `{command}`")]
    Closed { endpoint: String, command: String },

    #[error("HAProxy has no backend {pool} (asked for {pool}/{member})")]
    NoSuchPool { pool: String, member: String },

    #[error("HAProxy has no server {member} in backend {pool} ({pool}/{member})")]
    NoSuchMember { pool: String, member: String },

    #[error(
        "HAProxy refused `{command}` on {endpoint}: Permission denied \
         (writes need a stats socket with `level admin`)"
    )]
    PermissionDenied { endpoint: String, command: String },

    #[error("HAProxy refused weight {weight} for {pool}/{member}: {text}")]
    WeightRefused {
        pool: String,
        member: String,
        weight: u32,
        text: String,
    },

    #[error("unexpected answer to `{command}`: \"{text}\"")]
    Unexpected { command: String, text: String },

    #[error("cannot parse the answer to `{what}`: {detail}")]
    Parse { what: &'static str, detail: String },

    #[error(
        "HAProxy accepted `{command}` but {pool}/{member} reads back as {got} \
         (srv_admin_state {bits:#04x}{why})"
    )]
    StateReadBack {
        command: String,
        pool: String,
        member: String,
        got: AdminState,
        bits: u32,
        why: &'static str,
    },

    #[error("HAProxy accepted `{command}` but {pool}/{member} reads back with weight {got}")]
    WeightReadBack {
        command: String,
        pool: String,
        member: String,
        got: u32,
    },

    #[error(
        "{pool}/{member} is {what} on HAProxy, but the state file {} could not be \
         written ({source}): a reload would undo it; retrying writes it again",
        path.display()
    )]
    StateFile {
        pool: String,
        member: String,
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HapError {
    /// A parse error for the answer to `what`.
    pub(crate) fn parse(what: &'static str, detail: impl Into<String>) -> Self {
        HapError::Parse {
            what,
            detail: detail.into(),
        }
    }

    /// An unexpected answer, shown escaped and cut short.
    pub(crate) fn unexpected(command: &str, text: &str) -> Self {
        HapError::Unexpected {
            command: command.to_owned(),
            text: shown(text),
        }
    }

    /// The lb-core error, for balancer `balancer`, with `op` (what was being
    /// done) in front of the message.
    pub(crate) fn into_core(self, balancer: &str, op: &str) -> lb_core::Error {
        use lb_core::Error as E;
        let msg = || {
            if op.is_empty() {
                self.to_string()
            } else {
                format!("{op}: {self}")
            }
        };
        match &self {
            HapError::Core(e) => e.clone().for_balancer(balancer),
            HapError::WeightOutOfRange { .. }
            | HapError::WeightRefused { .. }
            | HapError::NotASocket { .. } => E::invalid_input(balancer, msg()),
            HapError::Connect { .. }
            | HapError::Timeout { .. }
            | HapError::Io { .. }
            | HapError::Closed { .. }
            | HapError::StateFile { .. } => E::unavailable(balancer, msg()),
            HapError::ReloadUnseen { .. } => E::conflict(balancer, msg()),
            HapError::NoSuchPool { .. } | HapError::NoSuchMember { .. } => {
                E::not_found(balancer, msg())
            }
            HapError::PermissionDenied { .. } => E::unauthorized(balancer, msg()),
            HapError::Unexpected { .. }
            | HapError::Parse { .. }
            | HapError::StateReadBack { .. }
            | HapError::WeightReadBack { .. } => E::protocol(balancer, msg()),
        }
    }
}

impl From<lb_core::Error> for HapError {
    fn from(e: lb_core::Error) -> Self {
        HapError::Core(e)
    }
}

/// HAProxy's text for an error message: trimmed, escaped, at most 200
/// characters.
pub(crate) fn shown(text: &str) -> String {
    const SHOWN: usize = 200;
    let t = text.trim();
    let mut out = String::new();
    for c in t.chars().take(SHOWN) {
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if t.chars().nth(SHOWN).is_some() {
        out.push_str(&format!("…({} bytes in all)", t.len()));
    }
    out
}
