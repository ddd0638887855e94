//! The inventory's `[balancers.NAME]` table of kind `azure-appgw`.

use std::path::PathBuf;
use std::time::Duration;

use lb_core::{Driver, Result, SetSome};
use serde::Deserialize;

use crate::{AppGateway, AppGatewayBuilder, Credential, CredentialKeys};

/// The keys of a `[balancers.NAME]` table with `kind = "azure-appgw"`;
/// each stands for the [`AppGatewayBuilder`] method of the same name, which
/// checks it when [`Driver::build`] drives the builder, and the credential
/// keys for [`Credential::from_keys`]. Secrets are named here (variables, a
/// file), never held.
///
/// ```
/// let c: lb_azure::Config = toml::from_str(r#"
///     subscription = "8f3c2a1e-4b5d-4e6f-9a7b-0c1d2e3f4a5b"
///     resource_group = "rg-web-prod"
///     gateway = "agw-web-prod"
///     credential = "static-token"
///     token_env = "LBCTL_AZURE_TOKEN"
///     poll_interval_cap = "15s"
/// "#).unwrap();
/// assert_eq!(c.poll_interval_cap, Some(std::time::Duration::from_secs(15)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The subscription id.
    pub subscription: String,
    /// The resource group.
    pub resource_group: String,
    /// The Application Gateway's name.
    pub gateway: String,
    /// How to get tokens: `client-secret`, `managed-identity`,
    /// `workload-identity`, `azure-cli` or `static-token` (no default
    /// chain).
    pub credential: String,
    /// `client-secret`: the directory (tenant) id.
    pub tenant_id: Option<String>,
    /// `client-secret`: the application id; `managed-identity`: the client
    /// id of a user-assigned identity.
    pub client_id: Option<String>,
    /// `client-secret`: the environment variable holding the secret.
    pub secret_env: Option<String>,
    /// `client-secret`: a file holding the secret (one trailing newline
    /// dropped).
    pub secret_file: Option<PathBuf>,
    /// `static-token`: the environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// The ARM endpoint (default `https://management.azure.com`).
    pub endpoint: Option<String>,
    /// The api-version (default `2025-07-01`).
    pub api_version: Option<String>,
    /// The token scope (default: the endpoint's origin + `/.default`).
    pub scope: Option<String>,
    /// The Entra ID sign-in host, for sovereign clouds (default
    /// `AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com`).
    pub authority_host: Option<String>,
    /// A PEM bundle of extra CAs to trust.
    pub ca_file: Option<PathBuf>,
    /// The timeout of each HTTP request (default 30 s).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
    /// An upper bound on every wait between requests (`Retry-After`,
    /// backoff); default none: ARM's `Retry-After` as sent.
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub poll_interval_cap: Option<Duration>,
    /// How long one gateway update may take (default 30 min).
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub operation_timeout: Option<Duration>,
}

impl Driver for AppGateway {
    const KIND: &'static str = "azure-appgw";
    type Config = Config;

    /// Builds the driver through [`AppGateway::builder`], with the
    /// credential [`Credential::from_keys`] makes of the credential keys,
    /// reading the secret or token it names.
    fn build(name: &str, c: Config) -> Result<AppGateway> {
        let keys = CredentialKeys {
            credential: c.credential,
            tenant_id: c.tenant_id,
            client_id: c.client_id,
            secret_env: c.secret_env,
            secret_file: c.secret_file,
            token_env: c.token_env,
        };
        AppGateway::builder(name)
            .subscription(&c.subscription)
            .resource_group(&c.resource_group)
            .gateway(&c.gateway)
            .credential(Credential::from_keys(name, &keys)?)
            .set_some(c.endpoint.as_deref(), AppGatewayBuilder::endpoint)
            .set_some(c.api_version.as_deref(), AppGatewayBuilder::api_version)
            .set_some(c.scope.as_deref(), AppGatewayBuilder::scope)
            .set_some(
                c.authority_host.as_deref(),
                AppGatewayBuilder::authority_host,
            )
            .set_some(c.ca_file, AppGatewayBuilder::ca_file)
            .set_some(c.timeout, AppGatewayBuilder::timeout)
            .set_some(c.poll_interval_cap, AppGatewayBuilder::poll_interval_cap)
            .set_some(c.operation_timeout, AppGatewayBuilder::operation_timeout)
            .build()
    }
}
