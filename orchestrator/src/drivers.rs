//! Builds each inventory balancer through its driver's builder.

use std::sync::Arc;

use lb_core::Balancer;

use crate::error::{Error, Result};
use crate::inventory::BalancerConfig;

/// Builds the driver for `[balancers.NAME]`.
///
/// # Errors
///
/// [`Error::Config`] naming the balancer when its settings are incomplete
/// or invalid.
pub fn build(name: &str, cfg: &BalancerConfig) -> Result<Arc<dyn Balancer>> {
    let config = |e: lb_core::Error| Error::Config(format!("[balancers.{name}]: {}", e.message()));
    match cfg {
        BalancerConfig::Haproxy(c) => {
            let mut b = lb_haproxy::Haproxy::builder(name).socket(&c.socket);
            if let Some(t) = c.timeout {
                b = b.timeout(t);
            }
            if let Some(p) = &c.state_file {
                b = b.state_file(p);
            }
            Ok(Arc::new(b.build().map_err(config)?))
        }
        BalancerConfig::Nginx(c) => {
            let mut b = lb_nginx::Nginx::builder(name)
                .upstream_file(&c.upstream_file)
                .conf(&c.conf);
            if let Some(p) = &c.pid_file {
                b = b.pid_file(p);
            }
            if let Some(p) = &c.prefix {
                b = b.prefix(p);
            }
            if let Some(p) = &c.nginx_bin {
                b = b.nginx_bin(p);
            }
            if let Some(cmd) = &c.reload_command {
                b = b.reload_command(cmd);
            }
            if let Some(g) = c.grace {
                b = b.grace(g);
            }
            Ok(Arc::new(b.build().map_err(config)?))
        }
        BalancerConfig::NginxPlus(c) => {
            let mut b = lb_nginx::NginxPlus::builder(name).url(&c.url);
            if let Some(t) = c.timeout {
                b = b.timeout(t);
            }
            Ok(Arc::new(b.build().map_err(config)?))
        }
        BalancerConfig::AzureAppgw(c) => {
            let keys = lb_azure::CredentialKeys {
                credential: c.credential.clone(),
                tenant_id: c.tenant_id.clone(),
                client_id: c.client_id.clone(),
                secret_env: c.secret_env.clone(),
                secret_file: c.secret_file.clone(),
                token_env: c.token_env.clone(),
            };
            let credential = lb_azure::Credential::from_keys(name, &keys).map_err(config)?;
            let mut b = lb_azure::AppGateway::builder(name)
                .subscription(&c.subscription)
                .resource_group(&c.resource_group)
                .gateway(&c.gateway)
                .credential(credential);
            if let Some(v) = &c.endpoint {
                b = b.endpoint(v);
            }
            if let Some(v) = &c.api_version {
                b = b.api_version(v);
            }
            if let Some(v) = &c.scope {
                b = b.scope(v);
            }
            if let Some(v) = &c.authority_host {
                b = b.authority_host(v);
            }
            if let Some(v) = &c.ca_file {
                b = b.ca_file(v);
            }
            if let Some(t) = c.timeout {
                b = b.timeout(t);
            }
            if let Some(t) = c.operation_timeout {
                b = b.operation_timeout(t);
            }
            Ok(Arc::new(b.build().map_err(config)?))
        }
        BalancerConfig::Apache(c) => {
            let mut b = lb_apache::Apache::builder(name).url(&c.url);
            if let Some(u) = &c.username {
                b = b.username(u);
            }
            if let Some(v) = &c.password_env {
                b = b.password_env(v);
            }
            if let Some(p) = &c.password_file {
                b = b.password_file(p);
            }
            if let Some(p) = &c.ca_file {
                b = b.ca_file(p);
            }
            if let Some(t) = c.timeout {
                b = b.timeout(t);
            }
            Ok(Arc::new(b.build().map_err(config)?))
        }
    }
}
