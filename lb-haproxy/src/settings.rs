//! The inventory's `[balancers.NAME]` table of kind `haproxy`.

use std::path::PathBuf;
use std::time::Duration;

use lb_core::{Driver, Result, SetSome};
use serde::Deserialize;

use crate::{Haproxy, HaproxyBuilder};

/// The keys of a `[balancers.NAME]` table with `kind = "haproxy"`; each
/// stands for the [`HaproxyBuilder`] method of the same name, which checks
/// it when [`Driver::build`] drives the builder.
///
/// ```
/// let c: lb_haproxy::Config = toml::from_str(r#"
///     socket = "/run/haproxy/admin.sock"
///     timeout = "2s"
/// "#).unwrap();
/// assert_eq!(c.socket, "/run/haproxy/admin.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The runtime API socket, with `level admin`: `/path`,
    /// `unix:///path` or `tcp://host:port`.
    pub socket: String,
    /// The connect timeout, and the longest wait for each answer (default
    /// 5 s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
    /// Where to write `show servers state` after every change.
    pub state_file: Option<PathBuf>,
    /// HAProxy's master CLI (`haproxy -W -S PATH`): count the connections
    /// of every worker, old ones after a reload included.
    pub master_socket: Option<String>,
}

impl Driver for Haproxy {
    const KIND: &'static str = "haproxy";
    type Config = Config;

    /// Builds the driver through [`Haproxy::builder`].
    fn build(name: &str, c: Config) -> Result<Haproxy> {
        Haproxy::builder(name)
            .socket(&c.socket)
            .set_some(c.timeout, HaproxyBuilder::timeout)
            .set_some(c.state_file, HaproxyBuilder::state_file)
            .set_some(c.master_socket.as_deref(), HaproxyBuilder::master_socket)
            .build()
    }
}
