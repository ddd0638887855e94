//! `lbctl discover`: propose the inventory's `[nodes.*]` from what the
//! balancers hold.
//!
//! One node per distinct server address, named after the server (HAProxy)
//! or route (Apache) where there is one. A node gets a `members` override
//! for a balancer only where the default rules (name, address, bare host)
//! would not pick exactly its members there. Members with no address
//! cannot be attributed and are listed as comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use orchestrator::engine::Snapshot;
use orchestrator::{Error, Fleet, FleetBalancer, Inventory, Node};
use serde::Serialize;

/// The balancers named on the command line (instead of the inventory's).
#[derive(Debug, Default)]
pub struct Sources {
    /// HAProxy runtime API sockets.
    pub haproxy: Vec<PathBuf>,
    /// Apache balancer-manager URLs.
    pub apache: Vec<String>,
    /// nginx upstream files.
    pub nginx: Vec<PathBuf>,
}

impl Sources {
    fn is_empty(&self) -> bool {
        self.haproxy.is_empty() && self.apache.is_empty() && self.nginx.is_empty()
    }

    /// A fleet of these balancers, named after their kind (`haproxy`,
    /// `haproxy2`, …), built through the driver registry.
    fn fleet(&self) -> Result<Fleet, Error> {
        let mut b = Fleet::builder();
        let mut add = |kind: &str, i: usize, settings: toml::Table| -> Result<(), Error> {
            let name = if i == 0 {
                kind.to_string()
            } else {
                format!("{kind}{}", i + 1)
            };
            let lb = orchestrator::build_balancer(kind, &name, settings)?;
            b = std::mem::take(&mut b).balancer(kind, lb);
            Ok(())
        };
        for (i, s) in self.haproxy.iter().enumerate() {
            add("haproxy", i, table(&[("socket", &s.to_string_lossy())]))?;
        }
        for (i, u) in self.apache.iter().enumerate() {
            add("apache", i, table(&[("url", u)]))?;
        }
        for (i, f) in self.nginx.iter().enumerate() {
            // Discover only reads the upstream file; the driver wants a way
            // to reload, which must never run: `false` would fail loudly.
            add(
                "nginx",
                i,
                table(&[
                    ("upstream_file", &f.to_string_lossy()),
                    ("reload_command", "false"),
                ]),
            )?;
        }
        b.build()
    }
}

fn table(pairs: &[(&str, &str)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), toml::Value::String((*v).to_string())))
        .collect()
}

/// A proposed node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposed {
    /// Its name.
    pub node: String,
    /// Its address.
    pub address: String,
    /// `members` overrides, per balancer (`pool/member`), where the
    /// default rules would pick other members.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Vec<String>>,
}

/// A member no node could be proposed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unattributed {
    /// The balancer.
    pub balancer: String,
    /// The pool.
    pub pool: String,
    /// The member.
    pub member: String,
    /// Why.
    pub reason: String,
}

/// `lbctl discover`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovery {
    /// The balancers read.
    pub balancers: Vec<String>,
    /// The proposed nodes.
    pub nodes: Vec<Proposed>,
    /// Members left out.
    pub unattributed: Vec<Unattributed>,
    /// Whether it was appended to the inventory (`--write`).
    pub written: bool,
}

impl Discovery {
    /// The proposal as TOML: `[nodes.*]` tables, and comments for members
    /// left out.
    pub fn toml(&self) -> String {
        let mut s = format!(
            "# [nodes.*] proposed by lbctl discover from {}\n",
            self.balancers.join(", ")
        );
        for n in &self.nodes {
            let _ = write!(
                s,
                "\n[nodes.{}]\naddress = {}\n",
                key(&n.node),
                quote(&n.address)
            );
            if !n.members.is_empty() {
                let list: Vec<String> = n
                    .members
                    .iter()
                    .map(|(b, refs)| {
                        let refs: Vec<String> = refs.iter().map(|r| quote(r)).collect();
                        format!("{} = [{}]", key(b), refs.join(", "))
                    })
                    .collect();
                let _ = writeln!(s, "members = {{ {} }}", list.join(", "));
            }
        }
        if !self.unattributed.is_empty() {
            s.push_str("\n# not attributed to any node:\n");
            for u in &self.unattributed {
                let _ = writeln!(
                    s,
                    "#   {}: {}/{}: {}",
                    u.balancer, u.pool, u.member, u.reason
                );
            }
        }
        s
    }
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare where it can be, quoted otherwise.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        quote(s)
    }
}

/// Reads the balancers (those of `sources`, else the inventory's) and
/// proposes nodes for every member no inventory node already has. With
/// `write`, appends the proposal to the inventory at `path`, checked first
/// as a whole inventory; every byte already there stays as it was.
///
/// # Errors
///
/// [`Error::Config`] for an unreadable inventory or a proposal the
/// inventory would refuse (nothing written); [`Error::Balancer`] when a
/// balancer cannot be read.
pub async fn run(path: &Path, sources: &Sources, write: bool) -> Result<Discovery, Error> {
    let inventory = if path.exists() || write || sources.is_empty() {
        Some(Inventory::load(path)?)
    } else {
        None
    };
    let fleet = match (&inventory, sources.is_empty()) {
        (Some(inv), true) => Fleet::from_inventory(inv, None)?.build()?,
        _ => sources.fleet()?,
    };
    let snap = fleet.engine().read_all().await?;
    let existing: Vec<&Node> = if sources.is_empty() {
        fleet.nodes().values().collect()
    } else {
        Vec::new()
    };
    let taken_names: BTreeSet<String> = inventory
        .as_ref()
        .map(|i| i.nodes.keys().cloned().collect())
        .unwrap_or_default();
    let mut d = propose(fleet.balancers(), &snap, &existing, &taken_names);
    if write && !d.nodes.is_empty() {
        append(path, &d.toml())?;
        d.written = true;
    }
    Ok(d)
}

/// Appends `proposal` to the inventory at `path` once the whole is a valid
/// inventory; nothing is written otherwise.
fn append(path: &Path, proposal: &str) -> Result<(), Error> {
    let old = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let sep = match old.as_slice() {
        [] => "",
        [.., b'\n', b'\n'] => "",
        [.., b'\n'] => "\n",
        _ => "\n\n",
    };
    let addition = format!("{sep}{proposal}");
    let mut whole = String::from_utf8_lossy(&old).into_owned();
    whole.push_str(&addition);
    Inventory::parse(&whole).map_err(|e| {
        Error::Config(format!(
            "{}: the proposal would not make a valid inventory, nothing written: {e}",
            path.display()
        ))
    })?;
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(addition.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
}

/// One distinct server address and its members on every balancer
/// (balancer index, pool, member name).
struct Group {
    address: String,
    members: Vec<(usize, String, String)>,
}

/// The proposal for `snap` (read from `balancers`), leaving out what the
/// `existing` nodes already have and avoiding the `taken` names.
pub fn propose(
    balancers: &[FleetBalancer],
    snap: &Snapshot,
    existing: &[&Node],
    taken: &BTreeSet<String>,
) -> Discovery {
    let mut unattributed = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, members) in snap.iter().enumerate() {
        for m in members {
            let owned = existing
                .iter()
                .any(|n| match n.members.get(&balancers[i].name) {
                    Some(refs) => refs.iter().any(|r| m.is(r)),
                    None => n.matches(m),
                });
            if owned {
                continue;
            }
            if m.address.trim().is_empty() {
                unattributed.push(Unattributed {
                    balancer: balancers[i].name.clone(),
                    pool: m.pool.clone(),
                    member: m.name.clone(),
                    reason: "the balancer reports no address".into(),
                });
                continue;
            }
            let entry = (i, m.pool.clone(), m.name.clone());
            match groups.iter_mut().find(|g| g.address == m.address) {
                Some(g) => g.members.push(entry),
                None => groups.push(Group {
                    address: m.address.clone(),
                    members: vec![entry],
                }),
            }
        }
    }
    // A bare host (Azure) joins the one group on that host, if only one.
    for g in (0..groups.len()).rev() {
        if groups[g].address.contains(':') {
            continue;
        }
        let (i, pool, name) = &groups[g].members[0];
        let Some(m) = snap[*i].iter().find(|m| &m.pool == pool && &m.name == name) else {
            continue;
        };
        let on_host: Vec<usize> = (0..groups.len())
            .filter(|&o| o != g && Node::new("", &groups[o].address).matches(m))
            .collect();
        if let [o] = on_host[..] {
            let moved = groups.remove(g).members;
            let o = if o > g { o - 1 } else { o };
            groups[o].members.extend(moved);
        }
    }
    let mut used = taken.clone();
    let mut nodes = Vec::new();
    for g in &groups {
        let name = unique(&name_for(g, snap), &mut used);
        let node = Node::new(&name, &g.address);
        let mut overrides = BTreeMap::new();
        for (i, b) in balancers.iter().enumerate() {
            let mine: BTreeSet<(&str, &str)> = g
                .members
                .iter()
                .filter(|(bi, ..)| *bi == i)
                .map(|(_, p, m)| (p.as_str(), m.as_str()))
                .collect();
            let by_rules: BTreeSet<(&str, &str)> = snap[i]
                .iter()
                .filter(|m| node.matches(m))
                .map(|m| (m.pool.as_str(), m.name.as_str()))
                .collect();
            if mine != by_rules {
                overrides.insert(
                    b.name.clone(),
                    mine.iter().map(|(p, m)| format!("{p}/{m}")).collect(),
                );
            }
        }
        nodes.push(Proposed {
            node: name,
            address: g.address.clone(),
            members: overrides,
        });
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Discovery {
        balancers: balancers.iter().map(|b| b.name.clone()).collect(),
        nodes,
        unattributed,
        written: false,
    }
}

/// The name its members agree on most (a server or route name that is not
/// an address), else one made from its address.
fn name_for(g: &Group, snap: &Snapshot) -> String {
    let mut votes: Vec<(&str, usize)> = Vec::new();
    for (i, pool, name) in &g.members {
        let is_address = snap[*i]
            .iter()
            .any(|m| &m.pool == pool && &m.name == name && m.address == *name)
            || name.contains(':')
            || name.contains('/');
        if is_address || !usable(name) {
            continue;
        }
        match votes.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => votes.push((name, 1)),
        }
    }
    // The most votes; on a tie, the first balancer's name.
    if let Some((n, _)) = votes.iter().rev().max_by_key(|(_, c)| *c) {
        return (*n).to_string();
    }
    g.address
        .trim_matches(|c| c == '[' || c == ']')
        .replace(['.', ':', '[', ']'], "-")
}

/// A name a node can take as it is: letters, digits, `-`, `_`, `.`.
fn usable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `name`, or `name-2`, `name-3`… if taken; marks it taken.
fn unique(name: &str, used: &mut BTreeSet<String>) -> String {
    let mut n = name.to_string();
    let mut i = 2;
    while used.contains(&n) {
        n = format!("{name}-{i}");
        i += 1;
    }
    used.insert(n.clone());
    n
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lb_core::InMemoryBalancer;

    use super::*;

    async fn read(bals: Vec<InMemoryBalancer>) -> (Vec<FleetBalancer>, Snapshot) {
        let mut b = Fleet::builder();
        for lb in bals {
            b = b.balancer("memory", Arc::new(lb));
        }
        let fleet = b.build().unwrap();
        let snap = fleet.engine().read_all().await.unwrap();
        (fleet.balancers().to_vec(), snap)
    }

    #[tokio::test]
    async fn members_named_by_address_give_names_from_the_address_and_no_address_a_comment() {
        let (bals, snap) = read(vec![
            InMemoryBalancer::new("front")
                .with_member("app", "10.0.0.1:8080", "10.0.0.1:8080")
                .with_member("app", "10.0.0.2:8080", "10.0.0.2:8080")
                .with_member("app", "unix-sock", ""),
        ])
        .await;
        let d = propose(&bals, &snap, &[], &BTreeSet::new());
        assert_eq!(
            d.toml(),
            "# [nodes.*] proposed by lbctl discover from front\n\
             \n[nodes.10-0-0-1-8080]\naddress = \"10.0.0.1:8080\"\n\
             \n[nodes.10-0-0-2-8080]\naddress = \"10.0.0.2:8080\"\n\
             \n# not attributed to any node:\n\
             #   front: app/unix-sock: the balancer reports no address\n"
        );
    }

    #[tokio::test]
    async fn a_bare_host_joins_its_node_existing_nodes_are_left_out_and_taken_names_avoided() {
        let (bals, snap) = read(vec![
            InMemoryBalancer::new("edge")
                .with_member("app", "node1", "10.0.0.1:8080")
                .with_member("app", "node2", "10.0.0.2:8080"),
            InMemoryBalancer::new("agw")
                .with_member("pool", "10.0.0.1", "10.0.0.1")
                .with_member("pool", "10.0.0.2", "10.0.0.2"),
        ])
        .await;
        let existing = Node::new("web2", "10.0.0.2:8080");
        let taken = BTreeSet::from(["web2".to_string(), "node1".to_string()]);
        let d = propose(&bals, &snap, &[&existing], &taken);
        assert_eq!(
            d.nodes,
            [Proposed {
                node: "node1-2".into(),
                address: "10.0.0.1:8080".into(),
                // Named node1-2, HAProxy's node1 is no longer reached by
                // name: by address it still is, so no override.
                members: BTreeMap::new(),
            }]
        );
        assert!(d.unattributed.is_empty());
    }
}
