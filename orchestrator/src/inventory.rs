//! The inventory (`lbctl.toml`): the balancers, the nodes, and defaults.
//!
//! Parsed with serde and `deny_unknown_fields`: a misspelt key is an error
//! that names the file, the line and the key, never a silent default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::serde_opt;
use crate::error::{Error, Result};

/// The whole inventory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Settings that apply to every command.
    #[serde(default)]
    pub defaults: Defaults,
    /// The balancers, by inventory name.
    #[serde(default)]
    pub balancers: BTreeMap<String, BalancerConfig>,
    /// The nodes, by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeConfig>,
}

/// `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Ready, not-down members each pool must keep (default 1).
    pub min_active: Option<usize>,
    /// How long `drain` waits for connections to end (default 5m).
    #[serde(default, with = "serde_opt")]
    pub drain_timeout: Option<Duration>,
    /// How long `undrain` waits for balancers to see the node healthy
    /// (default 2m).
    #[serde(default, with = "serde_opt")]
    pub undrain_timeout: Option<Duration>,
    /// How often waits poll the balancers (default 100ms).
    #[serde(default, with = "serde_opt")]
    pub poll_interval: Option<Duration>,
    /// How long to wait for another lbctl's lock (default 1m).
    #[serde(default, with = "serde_opt")]
    pub lock_timeout: Option<Duration>,
}

/// `[balancers.NAME]`: `kind` and its connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BalancerConfig {
    /// `kind = "haproxy"`: the runtime API.
    Haproxy(HaproxyConfig),
    /// `kind = "apache"`: the balancer-manager.
    Apache(ApacheConfig),
    /// `kind = "nginx"`: open-source nginx, by editing the upstream file.
    Nginx(NginxConfig),
    /// `kind = "nginx-plus"`: the NGINX Plus REST API.
    NginxPlus(NginxPlusConfig),
    /// `kind = "azure-appgw"`: Azure Application Gateway.
    AzureAppgw(Box<AzureConfig>),
}

impl BalancerConfig {
    /// The `kind` as written in the inventory.
    pub fn kind(&self) -> &'static str {
        match self {
            BalancerConfig::Haproxy(_) => "haproxy",
            BalancerConfig::Apache(_) => "apache",
            BalancerConfig::Nginx(_) => "nginx",
            BalancerConfig::NginxPlus(_) => "nginx-plus",
            BalancerConfig::AzureAppgw(_) => "azure-appgw",
        }
    }
}

/// `kind = "haproxy"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConfig {
    /// `/path`, `unix:///path` or `tcp://host:port` of a `level admin` socket.
    pub socket: String,
    /// Connect and read timeout.
    #[serde(default, with = "serde_opt")]
    pub timeout: Option<Duration>,
    /// Where to dump `show servers state` after every change.
    pub state_file: Option<PathBuf>,
}

/// `kind = "apache"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApacheConfig {
    /// The balancer-manager URL.
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// An extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Connect and read timeout.
    #[serde(default, with = "serde_opt")]
    pub timeout: Option<Duration>,
}

/// `kind = "nginx"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    /// The file holding the upstream blocks (the one lbctl edits).
    pub upstream_file: PathBuf,
    /// The main configuration `nginx -t -c` checks.
    pub conf: PathBuf,
    /// The master's pid file (reload = SIGHUP to it).
    pub pid_file: Option<PathBuf>,
    /// `-p` prefix.
    pub prefix: Option<PathBuf>,
    /// The nginx binary.
    pub nginx_bin: Option<PathBuf>,
    /// A command that reloads nginx instead of SIGHUP.
    pub reload_command: Option<String>,
    /// Without a pid file: how long after a reload a member counts as drained.
    #[serde(default, with = "serde_opt")]
    pub grace: Option<Duration>,
}

/// `kind = "nginx-plus"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxPlusConfig {
    /// The API base, e.g. `http://127.0.0.1:8080/api/9`.
    pub url: String,
    /// Connect and read timeout.
    #[serde(default, with = "serde_opt")]
    pub timeout: Option<Duration>,
}

/// `kind = "azure-appgw"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Application Gateway name.
    pub gateway: String,
    /// `client-secret`, `managed-identity`, `workload-identity`,
    /// `azure-cli` or `static-token`.
    pub credential: String,
    /// ARM endpoint (default `https://management.azure.com`).
    pub endpoint: Option<String>,
    /// ARM api-version (default `2025-07-01`).
    pub api_version: Option<String>,
    /// Token scope (default: the endpoint + `/.default`).
    pub scope: Option<String>,
    /// `client-secret`: tenant id.
    pub tenant_id: Option<String>,
    /// `client-secret`, `managed-identity`: client id.
    pub client_id: Option<String>,
    /// `client-secret`: the environment variable holding the secret.
    pub secret_env: Option<String>,
    /// `client-secret`: a file holding the secret.
    pub secret_file: Option<PathBuf>,
    /// `static-token`: the environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// The Entra ID sign-in host (sovereign clouds).
    pub authority_host: Option<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    #[serde(default, with = "serde_opt")]
    pub timeout: Option<Duration>,
    /// How long one gateway update may take (default 30m).
    #[serde(default, with = "serde_opt")]
    pub operation_timeout: Option<Duration>,
}

/// `[nodes.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `host:port` the balancers send the node traffic on.
    pub address: String,
    /// Per-balancer members (`"pool/member"`, or a list of them), replacing
    /// the matching rules for that balancer.
    #[serde(default)]
    pub members: BTreeMap<String, Members>,
    /// A health URL for the node (used by rolling upgrades' default gate).
    pub health: Option<String>,
}

/// One `pool/member` or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Members {
    /// `"pool/member"`.
    One(String),
    /// `["pool/a", "pool/b"]`.
    Many(Vec<String>),
}

impl Members {
    /// Every `pool/member` written.
    pub fn all(&self) -> Vec<&str> {
        match self {
            Members::One(s) => vec![s.as_str()],
            Members::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl Inventory {
    /// Reads and checks `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file, and for syntax errors and unknown
    /// keys the line and the key.
    pub fn load(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read inventory {}: {e}", path.display())))?;
        Inventory::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and checks inventory text.
    ///
    /// # Errors
    ///
    /// [`Error::Config`].
    pub fn parse(text: &str) -> Result<Inventory> {
        let inv: Inventory = toml::from_str(text)
            .map_err(|e| Error::Config(e.to_string().trim_end().to_string()))?;
        inv.check()?;
        Ok(inv)
    }

    /// Checks what serde cannot: names, references between sections.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the section and the key.
    pub fn check(&self) -> Result<()> {
        for name in self.balancers.keys() {
            lb_core::validate_name("", "balancer", name)
                .map_err(|e| Error::Config(format!("[balancers.{name}]: {}", e.message())))?;
        }
        for (name, node) in &self.nodes {
            lb_core::validate_name("", "node", name)
                .map_err(|e| Error::Config(format!("[nodes.{name}]: {}", e.message())))?;
            if node.address.trim().is_empty() {
                return Err(Error::Config(format!("[nodes.{name}]: address is empty")));
            }
            for (b, members) in &node.members {
                if !self.balancers.contains_key(b) {
                    return Err(Error::Config(format!(
                        "[nodes.{name}] members: no balancer {b:?} in the inventory (balancers: {})",
                        self.balancers
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                for m in members.all() {
                    parse_member_ref(m)
                        .map_err(|e| Error::Config(format!("[nodes.{name}] members.{b}: {e}")))?;
                }
            }
        }
        if self.defaults.poll_interval == Some(Duration::ZERO) {
            return Err(Error::Config(
                "[defaults] poll_interval must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

/// Parses `"pool/member"` into a validated reference.
///
/// # Errors
///
/// A message naming what is wrong.
pub fn parse_member_ref(s: &str) -> std::result::Result<lb_core::MemberRef, String> {
    let Some((pool, member)) = s.split_once('/') else {
        return Err(format!(
            "{:?} is not \"pool/member\"",
            lb_core::escape_name(s)
        ));
    };
    let r = lb_core::MemberRef::new(pool, member);
    // Member names may themselves hold slashes (Apache workers are URLs).
    r.validate("").map_err(|e| e.message().to_string())?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[defaults]
min_active = 2
drain_timeout = "5m"
poll_interval = "50ms"

[balancers.edge]
kind = "haproxy"
socket = "/run/haproxy/admin.sock"

[balancers.web]
kind = "apache"
url = "http://127.0.0.1/balancer-manager"
username = "ops"
password_env = "LBCTL_WEB_PASSWORD"

[balancers.front]
kind = "nginx"
upstream_file = "/etc/nginx/conf.d/app-upstream.conf"
conf = "/etc/nginx/nginx.conf"
pid_file = "/run/nginx.pid"

[balancers.plus]
kind = "nginx-plus"
url = "http://127.0.0.1:8080/api/9"

[balancers.agw]
kind = "azure-appgw"
subscription = "sub"
resource_group = "rg1"
gateway = "appgw"
credential = "static-token"
token_env = "LBCTL_AZURE_TOKEN"

[nodes.node1]
address = "10.0.0.1:8080"
members = { edge = "app/node1", web = ["app/node1", "api/http://10.0.0.1:8080"] }
health = "http://10.0.0.1:8080/-/readiness"

[nodes.node2]
address = "10.0.0.2:8080"
"#;

    #[test]
    fn parses_every_kind_and_key() {
        let inv = Inventory::parse(FULL).unwrap();
        assert_eq!(inv.defaults.min_active, Some(2));
        assert_eq!(inv.defaults.poll_interval, Some(Duration::from_millis(50)));
        let kinds: Vec<_> = inv.balancers.values().map(BalancerConfig::kind).collect();
        assert_eq!(
            kinds,
            ["azure-appgw", "haproxy", "nginx", "nginx-plus", "apache"]
        );
        let n1 = &inv.nodes["node1"];
        assert_eq!(
            n1.members["web"].all(),
            ["app/node1", "api/http://10.0.0.1:8080"]
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_line_and_key() {
        let text = FULL.replace("socket = ", "sockt = ");
        let e = Inventory::parse(&text).unwrap_err().to_string();
        assert!(e.contains("sockt"), "{e}");
        assert!(e.contains("line"), "{e}");
        let text = FULL.replace("min_active = 2", "min_actve = 2");
        let e = Inventory::parse(&text).unwrap_err().to_string();
        assert!(e.contains("min_actve") && e.contains("line 3"), "{e}");
        let e = Inventory::parse("[balancers.x]\nkind = \"f5\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f5") && e.contains("haproxy"), "{e}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let e = Inventory::parse("[nodes.node1]\naddress = \"10.0.0.1:80\"\nbroken line\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn hostile_and_dangling_names_are_refused() {
        let e = Inventory::parse("[nodes.\"node1;show info\"]\naddress = \"a:1\"\n").unwrap_err();
        assert!(e.to_string().contains("invalid node name"), "{e}");
        let e = Inventory::parse(
            "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"/x\"\n[nodes.n]\naddress = \"a:1\"\nmembers = { edge = \"app/n1\\nshow info\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("members.edge"), "{e}");
        let e = Inventory::parse("[nodes.n]\naddress = \"a:1\"\nmembers = { nope = \"app/n\" }\n")
            .unwrap_err();
        assert!(e.to_string().contains("no balancer \"nope\""), "{e}");
        let e = parse_member_ref("nopool").unwrap_err();
        assert!(e.contains("pool/member"), "{e}");
    }
}
