//! The inventory's `[balancers.NAME]` tables of kinds `nginx` and
//! `nginx-plus`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lb_core::{Driver, Result, SetSome};
use serde::Deserialize;

use crate::plus::redacted_url;
use crate::{Nginx, NginxBuilder, NginxPlus, NginxPlusBuilder};

/// The keys of a `[balancers.NAME]` table with `kind = "nginx"`; each
/// stands for the [`NginxBuilder`] method of the same name, which checks it
/// when [`Driver::build`] drives the builder.
///
/// ```
/// let c: lb_nginx::NginxConfig = toml::from_str(r#"
///     upstream_file = "/etc/nginx/conf.d/app-upstream.conf"
///     conf = "/etc/nginx/nginx.conf"
///     pid_file = "/run/nginx.pid"
/// "#).unwrap();
/// assert_eq!(c.grace, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    /// The file holding the `upstream` blocks: the one file lbctl edits.
    pub upstream_file: PathBuf,
    /// The main configuration `nginx -t -c` checks (default: nginx's
    /// built-in `--conf-path`).
    pub conf: Option<PathBuf>,
    /// The master's pid file: reload = SIGHUP to it, drained = its old
    /// workers exited.
    pub pid_file: Option<PathBuf>,
    /// nginx's prefix, passed as `-p`.
    pub prefix: Option<PathBuf>,
    /// The nginx binary (default `nginx` from `PATH`, else `/usr/sbin`,
    /// `/usr/local/sbin`, `/sbin`).
    pub nginx_bin: Option<PathBuf>,
    /// A command run with `sh -c` instead of the SIGHUP, e.g.
    /// `systemctl reload nginx`.
    pub reload_command: Option<String>,
    /// Without a pid file: how long after the upstream file was last
    /// written a `down` member counts as drained.
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub grace: Option<Duration>,
}

impl Driver for Nginx {
    const KIND: &'static str = "nginx";
    type Config = NginxConfig;

    /// Builds the driver through [`Nginx::builder`] (which runs `nginx -V`
    /// once).
    fn build(name: &str, c: NginxConfig) -> Result<Nginx> {
        Nginx::builder(name)
            .upstream_file(c.upstream_file)
            .set_some(c.conf, NginxBuilder::conf)
            .set_some(c.pid_file, NginxBuilder::pid_file)
            .set_some(c.prefix, NginxBuilder::prefix)
            .set_some(c.nginx_bin, NginxBuilder::nginx_bin)
            .set_some(c.reload_command.as_deref(), NginxBuilder::reload_command)
            .set_some(c.grace, NginxBuilder::grace)
            .build()
    }
}

/// The keys of a `[balancers.NAME]` table with `kind = "nginx-plus"`;
/// each stands for the [`NginxPlusBuilder`] method of the same name, which
/// checks it when [`Driver::build`] drives the builder. `Debug` hides the
/// password of a `user:password@` in `url`.
///
/// ```
/// let c: lb_nginx::NginxPlusConfig = toml::from_str(r#"
///     url = "http://ops:s3cret@127.0.0.1:8080/api/9"
///     timeout = "3s"
/// "#).unwrap();
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxPlusConfig {
    /// The API with its version, e.g. `http://127.0.0.1:8080/api/9`; a
    /// `user:password@` in it is sent as basic authentication.
    pub url: String,
    /// The timeout of each request (default 10 s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
}

impl fmt::Debug for NginxPlusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NginxPlusConfig")
            .field("url", &redacted_url(&self.url))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Driver for NginxPlus {
    const KIND: &'static str = "nginx-plus";
    type Config = NginxPlusConfig;

    /// Builds the driver through [`NginxPlus::builder`].
    fn build(name: &str, c: NginxPlusConfig) -> Result<NginxPlus> {
        NginxPlus::builder(name)
            .url(&c.url)
            .set_some(c.timeout, NginxPlusBuilder::timeout)
            .build()
    }
}
