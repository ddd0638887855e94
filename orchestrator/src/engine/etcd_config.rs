//! `[coordination]` with `backend = "etcd"`: the inventory's keys.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::ConnectOptions;
use serde::Deserialize;

use crate::error::{Error, Result};

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
    /// Finished runs older than this leave the journal (default 30d).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub retention: Option<Duration>,
    /// At most about this many finished runs are kept (default: no limit
    /// but `retention`).
    pub keep_runs: Option<usize>,
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

impl EtcdConfig {
    /// Checks the keys and reads the password, if one is given.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key.
    pub(super) fn checked(&self) -> Result<Option<String>> {
        let bad = |m: String| Error::Config(format!("[coordination]: {m}"));
        if self.endpoints.is_empty() {
            return Err(bad("`endpoints` names no etcd endpoint".into()));
        }
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(bad(format!(
                    "endpoint {e:?} is not an http:// or https:// URL"
                )));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err(bad(format!(
                "`prefix` {:?} must start with / and not end with one (e.g. /lbctl/prod)",
                self.prefix
            )));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(bad("`cert_file` and `key_file` go together".into()));
        }
        let source = lb_http::SecretSource::one_of(
            "password",
            [
                self.password_env.clone().map(lb_http::SecretSource::Env),
                self.password_file.clone().map(lb_http::SecretSource::File),
            ],
        )
        .map_err(|e| bad(e.to_string()))?;
        let password = source
            .map(|s| s.read("password").map(|p| p.expose().to_owned()))
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        if password.is_some() && self.username.is_none() {
            return Err(bad("a password is given but no `username`".into()));
        }
        Ok(password)
    }

    /// How to connect: the timeouts, the user, TLS.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a certificate or key file cannot be read.
    pub(super) fn connect_options(
        &self,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<ConnectOptions> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        if let Some(u) = &self.username {
            opts = opts.with_user(u, password.unwrap_or_default());
        }
        if self.ca_file.is_some() || self.cert_file.is_some() {
            let read = |p: &PathBuf, key: &str| {
                std::fs::read(p).map_err(|e| {
                    Error::Config(format!(
                        "[coordination]: cannot read `{key}` {}: {e}",
                        p.display()
                    ))
                })
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "ca_file")?));
            }
            if let (Some(c), Some(k)) = (&self.cert_file, &self.key_file) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(c, "cert_file")?,
                    read(k, "key_file")?,
                ));
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }
}
