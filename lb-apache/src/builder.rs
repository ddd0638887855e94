use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use lb_core::{Error, Result, validate_name};
use lb_http::{BasicAuth, ClientOptions, Secret, SecretSource};
use url::Url;

use crate::{Apache, Persist};

/// The default connect and read timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures an [`Apache`] driver; [`build`](Self::build) checks
/// everything before anything is sent.
///
/// Each method matches a key of the `[balancers.NAME]` table of
/// `lbctl.toml` (`kind = "apache"`): `url`, `username`, `password_env`,
/// `password_file`, `ca_file`, `timeout`.
#[derive(Clone)]
pub struct ApacheBuilder {
    name: String,
    url: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    password: Option<Secret>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    busy_settle: Duration,
}

impl fmt::Debug for ApacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApacheBuilder")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ApacheBuilder {
    pub(crate) fn new(name: &str) -> Self {
        ApacheBuilder {
            name: name.to_owned(),
            url: None,
            username: None,
            password_env: None,
            password_file: None,
            password: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            busy_settle: crate::stuck::DEFAULT_BUSY_SETTLE,
        }
    }

    /// The balancer-manager's URL, e.g. `http://127.0.0.1/balancer-manager`
    /// (key `url`). `http` or `https`; no credentials, query or fragment.
    pub fn url(mut self, u: &str) -> Self {
        self.url = Some(u.to_owned());
        self
    }

    /// The user for HTTP basic authentication (key `username`).
    pub fn username(mut self, u: &str) -> Self {
        self.username = Some(u.to_owned());
        self
    }

    /// The environment variable holding the password (key `password_env`);
    /// read by [`build`](Self::build).
    pub fn password_env(mut self, var: &str) -> Self {
        self.password_env = Some(var.to_owned());
        self
    }

    /// A file holding the password (key `password_file`); read by
    /// [`build`](Self::build), one trailing newline removed.
    pub fn password_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.password_file = Some(p.into());
        self
    }

    /// The password itself, for programs that hold it already.
    pub fn password(mut self, secret: String) -> Self {
        self.password = Some(Secret::new(secret));
        self
    }

    /// A PEM file of further CA certificates to trust, besides the
    /// system's (key `ca_file`). Certificate verification is always on.
    pub fn ca_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(p.into());
        self
    }

    /// The connect timeout, and the read timeout of each answer (key
    /// `timeout`); [`DEFAULT_TIMEOUT`] unless set.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// How long a worker out of rotation must show the same `busy`,
    /// `elected`, `transferred` and `read` before its `busy` is judged
    /// stuck and read as 0 (key `busy_settle`;
    /// [`DEFAULT_BUSY_SETTLE`](crate::DEFAULT_BUSY_SETTLE), 30 s, unless
    /// set). httpd's count drifts (`docs/apache-busy.md`); a request that
    /// sends and receives nothing for longer than this is cut by the maint
    /// that follows, so set it above the longest silent request.
    pub fn busy_settle(mut self, d: Duration) -> Self {
        self.busy_settle = d;
        self
    }

    /// Checks the configuration, reads the password and the CA file, and
    /// makes the driver. Nothing is sent to the balancer yet.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`], naming the balancer and what is wrong: a
    /// missing or unusable `url`, a password without a user (or the
    /// reverse), more than one password source, an unset environment
    /// variable (named), an unreadable password or CA file, a zero timeout.
    pub fn build(self) -> Result<Apache> {
        let name = self.name.clone();
        let bad = |m: String| Error::invalid_input(&name, m);
        validate_name(&name, "balancer", &name)?;
        let raw = self.url.as_deref().ok_or_else(|| {
            bad("no `url`: give the balancer-manager's address, \
                 e.g. http://127.0.0.1/balancer-manager"
                .into())
        })?;
        let url = Url::parse(raw).map_err(|e| bad(format!("`url` {raw:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "`url` {raw:?} must be http:// or https://, not {}://",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "`url` must not carry credentials: set `username` and `password_env` \
                 or `password_file` instead"
                    .into(),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad(format!("`url` {raw:?} has no host")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(format!(
                "`url` {raw:?} must not have a query or a fragment (the driver adds ?xml=1)"
            )));
        }
        if self.timeout.is_zero() {
            return Err(bad("`timeout` must be more than 0".into()));
        }
        let http = |e: lb_http::Error| bad(e.to_string());
        let auth = self.auth(&bad)?;
        let client = ClientOptions {
            ca_file: self.ca_file.clone(),
            connect_timeout: Some(self.timeout),
            read_timeout: Some(self.timeout),
            timeout: None,
        }
        .build_with(|b| {
            b.redirect(reqwest::redirect::Policy::none())
                // No kept-alive connections: after a graceful restart an old
                // httpd child keeps serving the connection it holds, with the
                // old generation's balancer state, so a read could be stale
                // and a write could land where the new generation never sees
                // it. A new connection always reaches the current generation.
                .pool_max_idle_per_host(0)
                .user_agent(concat!("lbctl-lb-apache/", env!("CARGO_PKG_VERSION")))
        })
        .map_err(http)?;
        let mut xml_url = url.clone();
        xml_url.set_query(Some("xml=1"));
        Ok(Apache {
            name: self.name,
            referer: url.to_string(),
            url,
            xml_url,
            auth,
            ca_file: self.ca_file,
            timeout: self.timeout,
            client,
            persist: Mutex::new(Persist::default()),
            stuck: crate::stuck::Stuck::new(self.busy_settle),
        })
    }

    fn auth(&self, bad: &dyn Fn(String) -> Error) -> Result<Option<BasicAuth>> {
        let http = |e: lb_http::Error| bad(e.to_string());
        let source = SecretSource::one_of(
            "password",
            [
                self.password_env.clone().map(SecretSource::Env),
                self.password_file.clone().map(SecretSource::File),
                self.password.clone().map(SecretSource::Value),
            ],
        )
        .map_err(http)?;
        let password = source
            .map(|s| s.read("password"))
            .transpose()
            .map_err(http)?;
        match (&self.username, password) {
            (None, None) => Ok(None),
            (Some(u), Some(password)) => BasicAuth::new(u, Some(password)).map(Some).map_err(http),
            (Some(u), None) => Err(bad(format!(
                "`username` {u:?} is set but no password: set `password_env` or `password_file`"
            ))),
            (None, Some(_)) => Err(bad(
                "a password is set but no `username` for basic authentication".into(),
            )),
        }
    }
}
