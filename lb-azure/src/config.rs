//! The builder, the credential kinds and their validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use lb_core::Error;
use lb_http::SecretSource;
use url::Url;

use crate::AppGateway;
use crate::arm::{Arm, Auth};

/// The default ARM endpoint (Azure public cloud).
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The default api-version of `Microsoft.Network/applicationGateways`.
pub const DEFAULT_API_VERSION: &str = "2025-07-01";
/// The default timeout of one HTTP request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default bound on one gateway update (real updates take 30 s to
/// several minutes).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How lbctl gets its Entra ID token for ARM. Chosen explicitly: there is
/// no default chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A service principal with a client secret
    /// (`credential = "client-secret"`, with `tenant_id`, `client_id`, and
    /// `secret_env` or `secret_file`).
    ClientSecret {
        /// The directory (tenant) id.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// Where the secret is.
        secret: SecretSource,
    },
    /// The managed identity of the VM, App Service, … lbctl runs on
    /// (`credential = "managed-identity"`, optional `client_id` of a
    /// user-assigned identity).
    ManagedIdentity {
        /// The client id of a user-assigned identity; `None`: system-assigned.
        client_id: Option<String>,
    },
    /// Kubernetes workload identity (`credential = "workload-identity"`),
    /// configured by the environment the cluster injects:
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
    /// The account logged in with `az login` (`credential = "azure-cli"`).
    AzureCli,
    /// A bearer token taken as is from an environment variable
    /// (`credential = "static-token"`, `token_env`): for tests and
    /// air-gapped use; nothing renews it.
    StaticToken {
        /// The environment variable's name.
        token_env: String,
    },
}

impl Credential {
    /// The inventory spelling: `client-secret`, `managed-identity`,
    /// `workload-identity`, `azure-cli` or `static-token`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret { .. } => "client-secret",
            Credential::ManagedIdentity { .. } => "managed-identity",
            Credential::WorkloadIdentity => "workload-identity",
            Credential::AzureCli => "azure-cli",
            Credential::StaticToken { .. } => "static-token",
        }
    }

    /// The credential described by an inventory's keys (see
    /// [`CredentialKeys`]), checking that each kind has the keys it needs
    /// and no key it does not use.
    ///
    /// ```
    /// use lb_azure::{Credential, CredentialKeys, SecretSource};
    ///
    /// let keys = CredentialKeys {
    ///     credential: "client-secret".into(),
    ///     tenant_id: Some("00000000-0000-0000-0000-000000000001".into()),
    ///     client_id: Some("00000000-0000-0000-0000-000000000002".into()),
    ///     secret_env: Some("LBCTL_AGW_SECRET".into()),
    ///     ..Default::default()
    /// };
    /// let c = Credential::from_keys("agw", &keys).unwrap();
    /// assert_eq!(c.kind(), "client-secret");
    /// let bad = CredentialKeys { credential: "azure-cli".into(), token_env: Some("X".into()), ..Default::default() };
    /// assert!(Credential::from_keys("agw", &bad).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the missing or unexpected key.
    pub fn from_keys(balancer: &str, k: &CredentialKeys) -> lb_core::Result<Credential> {
        let bad = |m: String| Err(Error::invalid_input(balancer, m));
        let kind = k.credential.as_str();
        let given: Vec<(&str, bool)> = vec![
            ("tenant_id", k.tenant_id.is_some()),
            ("client_id", k.client_id.is_some()),
            ("secret_env", k.secret_env.is_some()),
            ("secret_file", k.secret_file.is_some()),
            ("token_env", k.token_env.is_some()),
        ];
        let allowed: &[&str] = match kind {
            "client-secret" => &["tenant_id", "client_id", "secret_env", "secret_file"],
            "managed-identity" => &["client_id"],
            "workload-identity" | "azure-cli" => &[],
            "static-token" => &["token_env"],
            other => {
                return bad(format!(
                    "unknown credential {other:?} (expected client-secret, managed-identity, workload-identity, azure-cli or static-token)"
                ));
            }
        };
        if let Some((key, _)) = given.iter().find(|(n, set)| *set && !allowed.contains(n)) {
            return bad(format!("credential {kind} does not use the key {key}"));
        }
        let need = |v: &Option<String>, key: &str| match v {
            Some(s) => Ok(s.clone()),
            None => Err(Error::invalid_input(
                balancer,
                format!("credential {kind} needs the key {key}"),
            )),
        };
        Ok(match kind {
            "client-secret" => {
                let secret = match (&k.secret_env, &k.secret_file) {
                    (Some(e), None) => SecretSource::Env(e.clone()),
                    (None, Some(f)) => SecretSource::File(f.clone()),
                    _ => {
                        return bad(
                            "credential client-secret needs exactly one of secret_env and secret_file"
                                .into(),
                        );
                    }
                };
                Credential::ClientSecret {
                    tenant_id: need(&k.tenant_id, "tenant_id")?,
                    client_id: need(&k.client_id, "client_id")?,
                    secret,
                }
            }
            "managed-identity" => Credential::ManagedIdentity {
                client_id: k.client_id.clone(),
            },
            "workload-identity" => Credential::WorkloadIdentity,
            "azure-cli" => Credential::AzureCli,
            _ => Credential::StaticToken {
                token_env: need(&k.token_env, "token_env")?,
            },
        })
    }
}

/// The credential keys of an `[balancers.NAME]` table of kind
/// `azure-appgw`, as `lbctl.toml` spells them (for
/// [`Credential::from_keys`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialKeys {
    /// `credential`: the kind.
    pub credential: String,
    /// `tenant_id`.
    pub tenant_id: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `secret_env`.
    pub secret_env: Option<String>,
    /// `secret_file`.
    pub secret_file: Option<PathBuf>,
    /// `token_env`.
    pub token_env: Option<String>,
}

/// Builds an [`AppGateway`]; [`build`](Self::build) checks everything
/// before any request is made.
#[derive(Debug, Clone)]
pub struct AppGatewayBuilder {
    name: String,
    subscription: Option<String>,
    resource_group: Option<String>,
    gateway: Option<String>,
    credential: Option<Credential>,
    endpoint: String,
    api_version: String,
    scope: Option<String>,
    authority_host: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    poll_interval_cap: Option<Duration>,
    operation_timeout: Duration,
}

impl AppGatewayBuilder {
    pub(crate) fn new(name: &str) -> Self {
        AppGatewayBuilder {
            name: name.to_owned(),
            subscription: None,
            resource_group: None,
            gateway: None,
            credential: None,
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            scope: None,
            authority_host: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            poll_interval_cap: None,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// The subscription id (inventory key `subscription`). Required.
    pub fn subscription(mut self, s: &str) -> Self {
        self.subscription = Some(s.to_owned());
        self
    }

    /// The resource group (key `resource_group`). Required.
    pub fn resource_group(mut self, s: &str) -> Self {
        self.resource_group = Some(s.to_owned());
        self
    }

    /// The Application Gateway's name (key `gateway`). Required.
    pub fn gateway(mut self, s: &str) -> Self {
        self.gateway = Some(s.to_owned());
        self
    }

    /// How to get tokens (key `credential` and its keys, see
    /// [`Credential::from_keys`]). Required.
    pub fn credential(mut self, c: Credential) -> Self {
        self.credential = Some(c);
        self
    }

    /// The ARM endpoint (key `endpoint`, default
    /// `https://management.azure.com`; e.g.
    /// `https://management.usgovcloudapi.net`). `https://` only, except
    /// `http://` to a loopback address (tests).
    pub fn endpoint(mut self, u: &str) -> Self {
        self.endpoint = u.to_owned();
        self
    }

    /// The api-version (key `api_version`, default `2025-07-01`).
    pub fn api_version(mut self, v: &str) -> Self {
        self.api_version = v.to_owned();
        self
    }

    /// The token scope (key `scope`, default the endpoint's origin +
    /// `/.default`).
    pub fn scope(mut self, s: &str) -> Self {
        self.scope = Some(s.to_owned());
        self
    }

    /// The Entra ID authority host for `client-secret`, `managed-identity`
    /// and `workload-identity` (key `authority_host`, default
    /// `AZURE_AUTHORITY_HOST` or `https://login.microsoftonline.com`; e.g.
    /// `https://login.microsoftonline.us` with a government endpoint).
    /// `https://` only.
    pub fn authority_host(mut self, u: &str) -> Self {
        self.authority_host = Some(u.to_owned());
        self
    }

    /// A PEM file of further CA certificates to trust, besides the
    /// system's (key `ca_file`; TLS-inspecting proxies, Azure Stack Hub).
    pub fn ca_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(p.into());
        self
    }

    /// The timeout of each HTTP request (key `timeout`, default 30 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// An upper bound on every wait between requests: `Retry-After`
    /// while following an update or backend health, and the backoff
    /// between attempts (key `poll_interval_cap`, default none: ARM's
    /// `Retry-After` is honoured as sent).
    pub fn poll_interval_cap(mut self, d: Duration) -> Self {
        self.poll_interval_cap = Some(d);
        self
    }

    /// How long one gateway update (or backend-health query) may take
    /// before `set_state` gives up waiting with `Unavailable` (key
    /// `operation_timeout`, default 30 min). The update may still finish.
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// Checks the configuration, reads the secret or token it names, and
    /// builds the balancer. Nothing is sent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming what is wrong (the secret itself is
    /// never shown).
    pub fn build(self) -> lb_core::Result<AppGateway> {
        let name = self.name.clone();
        let bad = |m: String| Error::invalid_input(&name, m);
        lb_core::validate_name(&name, "balancer", &name)?;
        let subscription = required(&self.subscription, "subscription").map_err(&bad)?;
        check_chars(&subscription, "subscription", 64, |c| {
            c.is_ascii_alphanumeric() || c == '-'
        })
        .map_err(&bad)?;
        let rg = required(&self.resource_group, "resource_group").map_err(&bad)?;
        check_chars(&rg, "resource_group", 90, |c| {
            c.is_alphanumeric() || "-_.()".contains(c)
        })
        .map_err(&bad)?;
        if rg.ends_with('.') {
            return Err(bad(format!("resource_group {rg:?} cannot end with '.'")));
        }
        let gw = required(&self.gateway, "gateway").map_err(&bad)?;
        check_chars(&gw, "gateway", 80, |c| {
            c.is_ascii_alphanumeric() || "-_.".contains(c)
        })
        .map_err(&bad)?;
        let credential = self
            .credential
            .clone()
            .ok_or_else(|| bad("credential is required (no default chain is tried)".into()))?;

        let endpoint = Url::parse(&self.endpoint)
            .map_err(|e| bad(format!("endpoint {:?} is not a URL: {e}", self.endpoint)))?;
        let loopback = match endpoint.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match endpoint.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(bad(format!(
                    "endpoint {:?} must use https:// (http:// only to a loopback address)",
                    self.endpoint
                )));
            }
        }
        if endpoint.query().is_some() || endpoint.fragment().is_some() || endpoint.path() != "/" {
            return Err(bad(format!(
                "endpoint {:?} must be a bare origin such as https://management.azure.com",
                self.endpoint
            )));
        }
        let v = &self.api_version;
        let date_ok = v.len() >= 10
            && v[..10].chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            })
            && (v.len() == 10 || v[10..].starts_with('-'))
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !date_ok {
            return Err(bad(format!(
                "api_version {v:?} is not of the form YYYY-MM-DD (e.g. 2025-07-01)"
            )));
        }
        let origin = endpoint.origin().ascii_serialization();
        let scope = self
            .scope
            .clone()
            .unwrap_or_else(|| format!("{origin}/.default"));
        if scope.is_empty() || scope.chars().any(char::is_whitespace) {
            return Err(bad(format!("scope {scope:?} is not a scope")));
        }
        if let Some(a) = &self.authority_host {
            let u = Url::parse(a).map_err(|e| bad(format!("authority_host {a:?}: {e}")))?;
            if u.scheme() != "https" {
                return Err(bad(format!("authority_host {a:?} must use https://")));
            }
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be more than 0".into()));
        }
        if self.operation_timeout.is_zero() {
            return Err(bad("operation_timeout must be more than 0".into()));
        }

        let http = lb_http::ClientOptions {
            ca_file: self.ca_file.clone(),
            timeout: Some(self.timeout),
            connect_timeout: Some(self.timeout.min(Duration::from_secs(10))),
            read_timeout: None,
        }
        .build_with(|b| {
            // A PUT must never be sent twice by the transport; reads are
            // retried by the driver itself.
            b.retry(reqwest::retry::never())
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("lbctl-lb-azure/", env!("CARGO_PKG_VERSION")))
        })
        .map_err(|e| bad(e.to_string()))?;

        let auth = self.auth(&credential, &http).map_err(&bad)?;

        let mut gateway_url = endpoint.clone();
        gateway_url
            .path_segments_mut()
            .map_err(|_| bad("endpoint cannot hold a path".into()))?
            .pop_if_empty()
            .extend([
                "subscriptions",
                &subscription,
                "resourceGroups",
                &rg,
                "providers",
                "Microsoft.Network",
                "applicationGateways",
                &gw,
            ]);
        let mut health_url = gateway_url.clone();
        health_url
            .path_segments_mut()
            .map_err(|_| bad("endpoint cannot hold a path".into()))?
            .push("backendhealth");
        for u in [&mut gateway_url, &mut health_url] {
            u.query_pairs_mut().append_pair("api-version", v);
        }
        Ok(AppGateway {
            name: self.name.clone(),
            credential_kind: credential.kind(),
            arm: Arm {
                http,
                auth,
                scope,
                endpoint,
                gateway_url,
                health_url,
                label: format!("{rg}/{gw}"),
                cap: self.poll_interval_cap,
                operation_timeout: self.operation_timeout,
            },
            finished: Mutex::new(HashMap::new()),
            warnings: Mutex::new(Vec::new()),
        })
    }

    fn auth(&self, c: &Credential, http: &reqwest::Client) -> Result<Auth, String> {
        let client_options = || {
            let mut o = ClientOptions {
                transport: Some(Transport::new(Arc::new(http.clone()))),
                ..Default::default()
            };
            if let Some(a) = &self.authority_host {
                let mut custom = CustomConfiguration::default();
                custom.authority_host = a.clone();
                o.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
            }
            o
        };
        let azure = |kind: &'static str, r: azure_core::Result<Arc<dyn TokenCredential>>| {
            r.map(|credential| Auth::Credential { kind, credential })
                .map_err(|e| format!("credential {kind}: {e}"))
        };
        match c {
            Credential::StaticToken { token_env } => {
                let t = SecretSource::Env(token_env.clone())
                    .read("token")
                    .map_err(|e| e.to_string())?;
                Ok(Auth::Static(Secret::new(t.into_inner())))
            }
            Credential::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => {
                if tenant_id.is_empty() || client_id.is_empty() {
                    return Err("credential client-secret needs tenant_id and client_id".into());
                }
                let s = secret.read("secret").map_err(|e| e.to_string())?;
                let options = ClientSecretCredentialOptions {
                    client_options: client_options(),
                };
                azure(
                    c.kind(),
                    ClientSecretCredential::new(
                        tenant_id,
                        client_id.clone(),
                        Secret::new(s.into_inner()),
                        Some(options),
                    )
                    .map(|x| x as Arc<dyn TokenCredential>),
                )
            }
            Credential::ManagedIdentity { client_id } => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options: client_options(),
                };
                azure(
                    c.kind(),
                    ManagedIdentityCredential::new(Some(options))
                        .map(|x| x as Arc<dyn TokenCredential>),
                )
            }
            Credential::WorkloadIdentity => {
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    ..Default::default()
                };
                azure(
                    c.kind(),
                    WorkloadIdentityCredential::new(Some(options))
                        .map(|x| x as Arc<dyn TokenCredential>),
                )
            }
            Credential::AzureCli => azure(
                c.kind(),
                AzureCliCredential::new(None).map(|x| x as Arc<dyn TokenCredential>),
            ),
        }
    }
}

fn required(v: &Option<String>, key: &str) -> Result<String, String> {
    match v {
        Some(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("{key} is required")),
    }
}

fn check_chars(v: &str, key: &str, max: usize, ok: impl Fn(char) -> bool) -> Result<(), String> {
    if v.chars().count() > max {
        return Err(format!("{key} is longer than {max} characters"));
    }
    match v.chars().find(|c| !ok(*c)) {
        Some(c) => Err(format!(
            "{key} {:?} holds {c:?}, which Azure does not allow there",
            lb_core::escape_name(v)
        )),
        None => Ok(()),
    }
}
