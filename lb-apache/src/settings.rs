//! The inventory's `[balancers.NAME]` table of kind `apache`.

use std::path::PathBuf;
use std::time::Duration;

use lb_core::{Driver, Result, SetSome};
use serde::Deserialize;

use crate::{Apache, ApacheBuilder};

/// The keys of a `[balancers.NAME]` table with `kind = "apache"`; each
/// stands for the [`ApacheBuilder`] method of the same name, which checks
/// it when [`Driver::build`] drives the builder. The password is named
/// here (a variable or a file), never held.
///
/// ```
/// let c: lb_apache::Config = toml::from_str(r#"
///     url = "https://lb1.example/balancer-manager"
///     username = "ops"
///     password_env = "LBCTL_WEB_PASSWORD"
///     timeout = "5s"
/// "#).unwrap();
/// assert_eq!(c.timeout, Some(std::time::Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The balancer-manager, e.g. `http://127.0.0.1/balancer-manager`;
    /// `http` or `https`, without credentials, query or fragment.
    pub url: String,
    /// The user for HTTP basic authentication.
    pub username: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password (one trailing newline dropped).
    pub password_file: Option<PathBuf>,
    /// A PEM bundle of extra CAs to trust; verification is always on.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout and read timeout (default 10 s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
    /// How long a worker out of rotation must show unchanged counters
    /// before its `busy` is judged stuck (default 30 s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub busy_settle: Option<Duration>,
}

impl Driver for Apache {
    const KIND: &'static str = "apache";
    type Config = Config;

    /// Builds the driver through [`Apache::builder`], reading the password
    /// and the CA file.
    fn build(name: &str, c: Config) -> Result<Apache> {
        Apache::builder(name)
            .url(&c.url)
            .set_some(c.username.as_deref(), ApacheBuilder::username)
            .set_some(c.password_env.as_deref(), ApacheBuilder::password_env)
            .set_some(c.password_file, ApacheBuilder::password_file)
            .set_some(c.ca_file, ApacheBuilder::ca_file)
            .set_some(c.timeout, ApacheBuilder::timeout)
            .set_some(c.busy_settle, ApacheBuilder::busy_settle)
            .build()
    }
}
