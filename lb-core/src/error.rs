use std::fmt;

/// The result of every balancer operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a balancer operation can fail, for callers to match on.
///
/// Each driver keeps its own error type and converts into this one. Every
/// variant carries the balancer's inventory name and a message that names
/// the pool and member involved; `Display` prints `balancer: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pool or member does not exist on this balancer.
    #[error("{}", Prefixed(balancer, message))]
    NotFound {
        /// The balancer's inventory name.
        balancer: String,
        /// What was not found.
        message: String,
    },
    /// The request was refused before anything was sent (bad name, weight
    /// out of range, …).
    #[error("{}", Prefixed(balancer, message))]
    InvalidInput {
        /// The balancer's inventory name.
        balancer: String,
        /// What is wrong with the input.
        message: String,
    },
    /// This kind of balancer cannot do that.
    #[error("{}", Prefixed(balancer, message))]
    Unsupported {
        /// The balancer's inventory name.
        balancer: String,
        /// What is not supported, and why.
        message: String,
    },
    /// Someone else changed the balancer at the same time, and retrying did
    /// not resolve it.
    #[error("{}", Prefixed(balancer, message))]
    Conflict {
        /// The balancer's inventory name.
        balancer: String,
        /// What conflicted.
        message: String,
    },
    /// The balancer refused our credentials or our access level.
    #[error("{}", Prefixed(balancer, message))]
    Unauthorized {
        /// The balancer's inventory name.
        balancer: String,
        /// What was refused, and what access is needed.
        message: String,
    },
    /// The balancer could not be reached or was busy; a retry may help.
    #[error("{}", Prefixed(balancer, message))]
    Unavailable {
        /// The balancer's inventory name.
        balancer: String,
        /// What failed.
        message: String,
    },
    /// The balancer said something we do not understand, or a write did not
    /// read back as written.
    #[error("{}", Prefixed(balancer, message))]
    Protocol {
        /// The balancer's inventory name.
        balancer: String,
        /// What was said, or what disagreed.
        message: String,
    },
}

struct Prefixed<'a>(&'a str, &'a str);

impl fmt::Display for Prefixed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(self.1)
        } else {
            write!(f, "{}: {}", self.0, self.1)
        }
    }
}

macro_rules! constructors {
    ($($fn:ident => $variant:ident),* $(,)?) => {
        $(
            #[doc = concat!("An [`Error::", stringify!($variant), "`] for `balancer`.")]
            pub fn $fn(balancer: impl Into<String>, message: impl Into<String>) -> Self {
                Error::$variant { balancer: balancer.into(), message: message.into() }
            }
        )*
    };
}

impl Error {
    constructors! {
        not_found => NotFound,
        invalid_input => InvalidInput,
        unsupported => Unsupported,
        conflict => Conflict,
        unauthorized => Unauthorized,
        unavailable => Unavailable,
        protocol => Protocol,
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// A stable lower-case name for the kind, as used in JSON output:
    /// `not_found`, `invalid_input`, `unsupported`, `conflict`,
    /// `unauthorized`, `unavailable`, `protocol`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::InvalidInput { .. } => "invalid_input",
            Error::Unsupported { .. } => "unsupported",
            Error::Conflict { .. } => "conflict",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Unavailable { .. } => "unavailable",
            Error::Protocol { .. } => "protocol",
        }
    }

    /// The balancer this error is about.
    pub fn balancer(&self) -> &str {
        self.parts().0
    }

    /// The message, without the balancer's name.
    pub fn message(&self) -> &str {
        self.parts().1
    }

    fn parts(&self) -> (&str, &str) {
        match self {
            Error::NotFound { balancer, message }
            | Error::InvalidInput { balancer, message }
            | Error::Unsupported { balancer, message }
            | Error::Conflict { balancer, message }
            | Error::Unauthorized { balancer, message }
            | Error::Unavailable { balancer, message }
            | Error::Protocol { balancer, message } => (balancer, message),
        }
    }

    /// The same error, attributed to `balancer` (for errors raised before
    /// the balancer's name was known, such as parsing a state name).
    pub fn for_balancer(self, name: &str) -> Self {
        let (kind, message) = (self.kind(), self.message().to_owned());
        let b = name.to_owned();
        match kind {
            "not_found" => Error::NotFound {
                balancer: b,
                message,
            },
            "invalid_input" => Error::InvalidInput {
                balancer: b,
                message,
            },
            "unsupported" => Error::Unsupported {
                balancer: b,
                message,
            },
            "conflict" => Error::Conflict {
                balancer: b,
                message,
            },
            "unauthorized" => Error::Unauthorized {
                balancer: b,
                message,
            },
            "unavailable" => Error::Unavailable {
                balancer: b,
                message,
            },
            _ => Error::Protocol {
                balancer: b,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_balancer() {
        let e = Error::not_found("edge", "member app/node9 not found");
        assert_eq!(e.to_string(), "edge: member app/node9 not found");
        assert_eq!(e.kind(), "not_found");
        assert!(!e.is_transient());
        assert!(Error::unavailable("edge", "connection refused").is_transient());
        let moved = Error::invalid_input("", "bad").for_balancer("web");
        assert_eq!(moved, Error::invalid_input("web", "bad"));
    }
}
