//! The inventory (`lbctl.toml`): the balancers, the nodes, and defaults.
//!
//! Parsed with serde and `deny_unknown_fields`: a misspelt key is an error
//! that names the file, the line and the key, never a silent default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lb_core::Balancer;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::duration::serde_opt;
use crate::engine::compact::Retention;
use crate::error::{Error, Result};
use crate::registry;

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
    /// Where runs are journaled and claims held (default: files in the
    /// state directory).
    #[serde(default)]
    pub coordination: CoordinationConfig,
}

/// `[coordination]`: `backend = "file"` (the default: the state
/// directory) or `backend = "etcd"` with its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum CoordinationConfig {
    /// Files in the state directory, shared by the lbctl processes that use
    /// that directory.
    File(FileConfig),
    /// etcd, shared by every lbctl on every machine that names it.
    Etcd(Box<crate::engine::EtcdConfig>),
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig::File(FileConfig::default())
    }
}

impl CoordinationConfig {
    /// How long finished runs are kept (`retention`, `keep_runs`).
    pub fn retention(&self) -> Retention {
        match self {
            CoordinationConfig::File(c) => Retention::from_keys(c.retention, c.keep_runs),
            CoordinationConfig::Etcd(c) => Retention::from_keys(c.retention, c.keep_runs),
        }
    }
}

/// `[coordination]` with `backend = "file"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Finished runs older than this leave the journal (default 30d).
    #[serde(default, with = "serde_opt")]
    pub retention: Option<Duration>,
    /// At most about this many finished runs are kept (default: no limit
    /// but `retention`).
    pub keep_runs: Option<usize>,
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

/// `[balancers.NAME]`: `kind`, and the rest of the table, which belongs to
/// the driver of that kind.
///
/// Each driver crate documents and checks its own keys (its
/// [`lb_core::Driver::Config`], e.g. [`lb_haproxy::Config`]);
/// [`Inventory::parse`] has them checked at their lines, and
/// [`build`](Self::build) hands them to the driver.
#[derive(Clone, PartialEq, Deserialize)]
pub struct BalancerConfig {
    /// The driver, e.g. `"haproxy"`.
    #[serde(deserialize_with = "registry::known_kind")]
    pub kind: String,
    /// Every other key of the table.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl fmt::Debug for BalancerConfig {
    /// The kind and the keys; values stay out (a URL may hold a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerConfig")
            .field("kind", &self.kind)
            .field("keys", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl BalancerConfig {
    /// The `kind` as written in the inventory.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Builds the balancer called `name` through its kind's driver.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the balancer: an unknown kind, a key the
    /// driver does not know, settings it refuses.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Balancer>> {
        registry::find(&self.kind)
            .map_err(|m| registry::balancer_error(name, &m))?
            .build(name, self.settings.clone())
    }
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
        let doc = DeTable::parse(text).map_err(|e| toml_error(text, e))?;
        check_balancers(text, &doc)?;
        let inv = Inventory::deserialize(toml::de::Deserializer::from(doc))
            .map_err(|e| toml_error(text, e))?;
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
            lb_core::validate_name("", "balancer", name).map_err(|e| {
                Error::Config(format!(
                    "[balancers.{}]: {}",
                    lb_core::escape_name(name),
                    e.message()
                ))
            })?;
        }
        for (name, node) in &self.nodes {
            lb_core::validate_name("", "node", name).map_err(|e| {
                Error::Config(format!(
                    "[nodes.{}]: {}",
                    lb_core::escape_name(name),
                    e.message()
                ))
            })?;
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
        same_address(&self.nodes)?;
        if self.defaults.poll_interval == Some(Duration::ZERO) {
            return Err(Error::Config(
                "[defaults] poll_interval must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

/// How long resolving the nodes' host names may take in all; a name not
/// resolved by then is compared as written.
const RESOLVE_WITHIN: Duration = Duration::from_secs(2);

/// Refuses two nodes with one address, as written or once their host
/// names are resolved (`localhost:8080` and `127.0.0.1:8080`): a drain of
/// one would take the other's members out too.
fn same_address(nodes: &BTreeMap<String, NodeConfig>) -> Result<()> {
    use std::net::ToSocketAddrs;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut resolved: BTreeMap<String, Vec<std::net::SocketAddr>> = BTreeMap::new();
    for (name, node) in nodes {
        let (tx, name, addr) = (tx.clone(), name.clone(), node.address.trim().to_owned());
        // An address written as IP:port needs no lookup (nor a thread).
        if let Ok(a) = addr.parse::<std::net::SocketAddr>() {
            resolved.insert(name, vec![a]);
            continue;
        }
        std::thread::spawn(move || {
            let resolved: Vec<std::net::SocketAddr> = addr
                .to_socket_addrs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let _ = tx.send((name, resolved));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + RESOLVE_WITHIN;
    while resolved.len() < nodes.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, addrs)) => {
                resolved.insert(name, addrs);
            }
            Err(_) => break,
        }
    }
    let names: Vec<&String> = nodes.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let (na, nb) = (&nodes[*a], &nodes[*b]);
            let (ra, rb) = (
                resolved.get(*a).map(Vec::as_slice).unwrap_or_default(),
                resolved.get(*b).map(Vec::as_slice).unwrap_or_default(),
            );
            let shared = ra.iter().find(|x| rb.contains(x));
            if na.address.trim() == nb.address.trim() || shared.is_some() {
                let via = shared.map_or(String::new(), |s| format!(" ({s} once resolved)"));
                return Err(Error::Config(format!(
                    "[nodes.{a}] and [nodes.{b}] have the same address: {:?} and {:?}{via}; a \
                     drain of one would take the other's members out too: give each node its \
                     own address",
                    na.address, nb.address
                )));
            }
        }
    }
    Ok(())
}

/// Has each `[balancers.NAME]` table read by its kind's driver, from the
/// parsed document, so that an error points at the line of the key.
fn check_balancers(text: &str, doc: &Spanned<DeTable<'_>>) -> Result<()> {
    let Some(DeValue::Table(balancers)) = doc.get_ref().get("balancers").map(Spanned::get_ref)
    else {
        return Ok(());
    };
    for (name, table) in balancers {
        let name = name.get_ref();
        let at = |e| registry::balancer_error(name, &toml_message(text, e));
        let mut table = table.clone();
        let cfg =
            BalancerConfig::deserialize(ValueDeserializer::from(table.clone())).map_err(at)?;
        let driver = registry::find(cfg.kind()).map_err(|m| registry::balancer_error(name, &m))?;
        if let DeValue::Table(t) = table.get_mut() {
            t.remove("kind");
        }
        driver.check(ValueDeserializer::from(table)).map_err(at)?;
    }
    Ok(())
}

/// A TOML error, with the line and the text it points at.
fn toml_error(text: &str, e: toml::de::Error) -> Error {
    Error::Config(toml_message(text, e))
}

fn toml_message(text: &str, mut e: toml::de::Error) -> String {
    e.set_input(Some(text));
    e.to_string().trim_end().to_string()
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
poll_interval_cap = "15s"

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
        // Every key reaches its driver's settings.
        fn settings<C: serde::de::DeserializeOwned>(inv: &Inventory, name: &str) -> C {
            inv.balancers[name].settings.clone().try_into().unwrap()
        }
        let edge: lb_haproxy::Config = settings(&inv, "edge");
        assert_eq!(edge.socket, "/run/haproxy/admin.sock");
        let web: lb_apache::Config = settings(&inv, "web");
        assert_eq!(web.url, "http://127.0.0.1/balancer-manager");
        assert_eq!(web.username.as_deref(), Some("ops"));
        assert_eq!(web.password_env.as_deref(), Some("LBCTL_WEB_PASSWORD"));
        let front: lb_nginx::NginxConfig = settings(&inv, "front");
        assert_eq!(
            front.upstream_file,
            Path::new("/etc/nginx/conf.d/app-upstream.conf")
        );
        assert_eq!(
            front.conf.as_deref(),
            Some(Path::new("/etc/nginx/nginx.conf"))
        );
        assert_eq!(front.pid_file.as_deref(), Some(Path::new("/run/nginx.pid")));
        let plus: lb_nginx::NginxPlusConfig = settings(&inv, "plus");
        assert_eq!(plus.url, "http://127.0.0.1:8080/api/9");
        let agw: lb_azure::Config = settings(&inv, "agw");
        assert_eq!(
            (agw.subscription.as_str(), agw.resource_group.as_str()),
            ("sub", "rg1")
        );
        assert_eq!(
            (agw.gateway.as_str(), agw.credential.as_str()),
            ("appgw", "static-token")
        );
        assert_eq!(agw.token_env.as_deref(), Some("LBCTL_AZURE_TOKEN"));
        assert_eq!(agw.poll_interval_cap, Some(Duration::from_secs(15)));
        assert!(!inv.balancers["web"].settings.contains_key("kind"));
        let shown = format!("{:?}", inv.balancers["web"]);
        assert!(
            shown.contains("password_env") && !shown.contains("LBCTL_WEB_PASSWORD"),
            "{shown}"
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
    fn coordination_is_file_by_default_or_etcd_with_checked_keys() {
        let inv = Inventory::parse(FULL).unwrap();
        assert!(matches!(inv.coordination, CoordinationConfig::File(_)));
        assert_eq!(inv.coordination.retention(), Retention::default());
        let file = Inventory::parse(
            "[coordination]\nbackend = \"file\"\nretention = \"90d\"\nkeep_runs = 5000\n",
        )
        .unwrap();
        assert_eq!(
            file.coordination.retention(),
            Retention {
                retention: Duration::from_secs(90 * 86_400),
                keep_runs: Some(5000)
            }
        );
        let e = Inventory::parse("[coordination]\nbackend = \"file\"\nretention = \"a month\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a month"), "{e}");
        let e = Inventory::parse("[coordination]\nbackend = \"file\"\nkeep_run = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("keep_run"), "{e}");
        let etcd = "[coordination]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/lbctl/prod\"\nlease_ttl = \"5s\"\n";
        let inv = Inventory::parse(etcd).unwrap();
        let CoordinationConfig::Etcd(cfg) = &inv.coordination else {
            panic!("{:?}", inv.coordination)
        };
        assert_eq!(cfg.lease_ttl, Some(Duration::from_secs(5)));
        assert_eq!(inv.coordination.retention(), Retention::default());
        let kept =
            Inventory::parse(&format!("{etcd}retention = \"7d\"\nkeep_runs = 10\n")).unwrap();
        assert_eq!(
            kept.coordination.retention(),
            Retention::from_keys(Some(Duration::from_secs(7 * 86_400)), Some(10))
        );
        crate::engine::EtcdBackend::new((**cfg).clone()).unwrap();
        let e = Inventory::parse(&etcd.replace("lease_ttl", "lease_tll"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease_tll"), "{e}");
        let e = Inventory::parse("[coordination]\nbackend = \"zookeeper\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("zookeeper") && e.contains("etcd"), "{e}");
        for (bad, says) in [
            (
                etcd.replace("http://127.0.0.1:2379", "127.0.0.1:2379"),
                "http://",
            ),
            (etcd.replace("/lbctl/prod", "lbctl"), "prefix"),
            (
                format!("{etcd}password_env = \"LBCTL_TEST_UNSET_VARIABLE\"\nusername = \"u\"\n"),
                "LBCTL_TEST_UNSET_VARIABLE",
            ),
        ] {
            let inv = Inventory::parse(&bad).unwrap();
            let CoordinationConfig::Etcd(cfg) = inv.coordination else {
                panic!()
            };
            let e = crate::engine::EtcdBackend::new(*cfg)
                .unwrap_err()
                .to_string();
            assert!(e.contains("[coordination]") && e.contains(says), "{e}");
        }
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
