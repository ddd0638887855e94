//! `[coordination]` with `backend = "etcd"`: the inventory's keys.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[coordination]` with `backend = "etcd"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// The client URLs, e.g. `["https://etcd1:2379"]`.
    pub endpoints: Vec<String>,
    /// Every key lbctl writes starts with it (default `/lbctl`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long a crashed lbctl's claims outlive it (default 15s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub lease_ttl: Option<Duration>,
    /// Each request's bound (default 5s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
    /// An etcd user (authentication on).
    pub username: Option<String>,
    /// The environment variable holding its password.
    pub password_env: Option<String>,
    /// A file holding its password.
    pub password_file: Option<PathBuf>,
    /// The CA certificate (PEM) of `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM), for etcd's client certificate
    /// authentication, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key_file: Option<PathBuf>,
}

fn default_prefix() -> String {
    "/lbctl".into()
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .finish_non_exhaustive()
    }
}
