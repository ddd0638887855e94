#![doc = include_str!("../README.md")]

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_core::SetSome;

/// What went wrong, in one message that names the key and the variable or
/// file (never a secret), e.g. ``cannot read `ca_file` /etc/ca.pem: …``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl Error {
    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// How to set up an HTTP client: timeouts and an extra CA bundle.
///
/// Unset timeouts are reqwest's defaults (none). Anything else a caller
/// needs (redirects, retries, a user agent) goes through
/// [`build_with`](Self::build_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// A PEM file of further CA certificates to trust, besides the
    /// system's (inventory key `ca_file`). Verification is always on.
    pub ca_file: Option<PathBuf>,
    /// A bound on each whole request, answer included.
    pub timeout: Option<Duration>,
    /// A bound on connecting.
    pub connect_timeout: Option<Duration>,
    /// A bound on each read of the answer.
    pub read_timeout: Option<Duration>,
}

impl ClientOptions {
    /// The client, with nothing else set.
    ///
    /// # Errors
    ///
    /// As [`build_with`](Self::build_with).
    pub fn build(&self) -> Result<reqwest::Client> {
        self.build_with(|b| b)
    }

    /// The client, after `more` has set what else the caller needs.
    ///
    /// # Errors
    ///
    /// An unreadable `ca_file`, one that is not PEM or holds no
    /// certificate ([`ca_certificates`]), or a client reqwest cannot set
    /// up.
    pub fn build_with(
        &self,
        more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .set_some(self.timeout, reqwest::ClientBuilder::timeout)
            .set_some(
                self.connect_timeout,
                reqwest::ClientBuilder::connect_timeout,
            )
            .set_some(self.read_timeout, reqwest::ClientBuilder::read_timeout);
        if let Some(p) = &self.ca_file {
            b = b.tls_certs_merge(ca_certificates(p)?);
        }
        more(b)
            .build()
            .map_err(|e| Error(format!("cannot set up the HTTP client: {e}")))
    }
}

/// The certificates of a PEM bundle (inventory key `ca_file`).
///
/// # Errors
///
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let p = path.display();
    let pem = std::fs::read(path).map_err(|e| Error(format!("cannot read `ca_file` {p}: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        Error(format!(
            "`ca_file` {p} is not a PEM certificate bundle: {e}"
        ))
    })?;
    if certs.is_empty() {
        return Err(Error(format!("`ca_file` {p} holds no PEM certificate")));
    }
    Ok(certs)
}

/// A password, token or client secret: never printed (`Debug` shows
/// `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret the program already holds.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret itself, for an API that takes it by value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret is. Settings hold this, not the secret: only the
/// variable's name or the file's path, so their `Debug` shows no secret.
///
/// A secret called `what` in messages (`"password"`, `"secret"`,
/// `"token"`) comes from the inventory keys `{what}_env` and
/// `{what}_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name (key `{what}_env`).
    Env(String),
    /// A file holding the secret; one trailing newline (`\n` or `\r\n`) is
    /// dropped (key `{what}_file`).
    File(PathBuf),
    /// The secret itself, for programs that hold it already.
    Value(Secret),
}

impl SecretSource {
    /// The one source given among `sources`, or `None` when none is.
    ///
    /// # Errors
    ///
    /// More than one is given:
    /// ``give the password one way only: `password_env` or `password_file` ``.
    pub fn one_of(
        what: &str,
        sources: impl IntoIterator<Item = Option<SecretSource>>,
    ) -> Result<Option<SecretSource>> {
        let mut given = sources.into_iter().flatten();
        let first = given.next();
        if given.next().is_some() {
            return Err(Error(format!(
                "give the {what} one way only: `{what}_env` or `{what}_file`"
            )));
        }
        Ok(first)
    }

    /// Reads the secret now.
    ///
    /// # Errors
    ///
    /// Naming the key (`{what}_env`, `{what}_file`) and the variable or
    /// file: a variable that is unnamed, unset, empty or not UTF-8; a file
    /// that cannot be read, is not UTF-8, or is empty (but for the newline).
    pub fn read(&self, what: &str) -> Result<Secret> {
        match self {
            SecretSource::Env(var) => {
                let key = format!("{what}_env");
                if var.is_empty() {
                    return Err(Error(format!("`{key}` names no environment variable")));
                }
                match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Ok(Secret(v)),
                    Ok(_) => Err(Error(format!("`{key}`: {var} is empty"))),
                    Err(std::env::VarError::NotPresent) => Err(Error(format!(
                        "`{key}`: environment variable {var} is not set"
                    ))),
                    Err(std::env::VarError::NotUnicode(_)) => {
                        Err(Error(format!("`{key}`: {var} is not valid UTF-8")))
                    }
                }
            }
            SecretSource::File(path) => {
                let key = format!("{what}_file");
                let p = path.display();
                let bytes = std::fs::read(path)
                    .map_err(|e| Error(format!("cannot read `{key}` {p}: {e}")))?;
                let s = String::from_utf8(bytes)
                    .map_err(|_| Error(format!("`{key}` {p} is not valid UTF-8")))?;
                let s = s
                    .strip_suffix('\n')
                    .map(|s| s.strip_suffix('\r').unwrap_or(s))
                    .unwrap_or(&s);
                if s.is_empty() {
                    return Err(Error(format!("`{key}` {p} is empty")));
                }
                Ok(Secret(s.to_owned()))
            }
            SecretSource::Value(s) => Ok(s.clone()),
        }
    }
}

/// A user and a password for HTTP basic authentication. `Debug` shows the
/// user, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    username: String,
    password: Option<Secret>,
}

impl BasicAuth {
    /// Checks the user name.
    ///
    /// # Errors
    ///
    /// A user name that is empty or holds `:` or a control character
    /// (basic authentication cannot carry it).
    pub fn new(username: impl Into<String>, password: Option<Secret>) -> Result<Self> {
        let username = username.into();
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            return Err(Error(format!(
                "`username` {:?} is not usable for basic authentication \
                 (empty, or holds ':' or a control character)",
                lb_core::escape_name(&username)
            )));
        }
        Ok(BasicAuth { username, password })
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Adds the `Authorization` header to a request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.basic_auth(&self.username, self.password.as_ref().map(Secret::expose))
    }
}
