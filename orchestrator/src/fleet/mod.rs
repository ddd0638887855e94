//! The fleet: every balancer and node of an inventory, and the operations
//! that take nodes out of rotation and put them back on all balancers at
//! once (`ops`), the guard that keeps pools served (`guard`), and `recover`.
//! Every change goes through the engine's [`Transaction`](crate::engine::Transaction).

mod attribute;
mod guard;
mod history;
mod ops;
mod reach;
mod recover;
mod waiting;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lb_core::{Balancer, Member, MemberRef};

use crate::engine::Coordination;
use crate::engine::compact::Retention;
use crate::engine::journal::{Journal, Value};
use crate::engine::{Engine, Snapshot, Write};
use crate::error::{Error, Result};
use crate::report::*;

pub use crate::engine::FleetBalancer;
pub(crate) use guard::MEMBER_KEY;
pub use guard::Refusal;
pub use history::HistoryFilter;
pub use reach::UNREACHABLE_GRACE;
pub use waiting::FAST_POLL;

/// One node: a server that balancers send traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its inventory name.
    pub name: String,
    /// `host:port` the balancers send it traffic on.
    pub address: String,
    /// Per-balancer members replacing the matching rules for that balancer.
    pub members: BTreeMap<String, Vec<MemberRef>>,
    /// A health URL (used by rolling upgrades' default gate).
    pub health: Option<String>,
}

impl Node {
    /// A node matched by the default rules.
    pub fn new(name: &str, address: &str) -> Node {
        Node {
            name: name.into(),
            address: address.into(),
            members: BTreeMap::new(),
            health: None,
        }
    }

    /// Whether `m` (on a balancer with no override for this node) belongs
    /// to it: its name is the node's name, or its address is the node's
    /// address, or its address is a bare host equal to the node's host
    /// (balancers that know no ports, such as Azure pools).
    pub fn matches(&self, m: &Member) -> bool {
        m.name == self.name || m.address == self.address || m.address == host_of(&self.address)
    }
}

fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    }
}

/// Settings every command uses (the inventory's `[defaults]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Ready, not-down members each pool must keep.
    pub min_active: usize,
    /// How long `drain` waits for connections to end.
    pub drain_timeout: Duration,
    /// How long `undrain` waits for balancers to see the node healthy.
    pub undrain_timeout: Duration,
    /// How often waits poll.
    pub poll_interval: Duration,
    /// How long to wait for another lbctl's lock.
    pub lock_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_active: 1,
            drain_timeout: Duration::from_secs(300),
            undrain_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(100),
            lock_timeout: Duration::from_secs(60),
        }
    }
}

/// How to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainOptions {
    /// Overrides `Settings::drain_timeout`.
    pub timeout: Option<Duration>,
    /// Set drain and return without waiting (and so without maint).
    pub no_wait: bool,
    /// Stop after the wait: leave members in drain, not maint.
    pub soft: bool,
    /// Go on when the guard refuses, and say so.
    pub force: bool,
    /// Report what would change; change nothing.
    pub dry_run: bool,
}

/// How to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoverOptions {
    /// Report what would be put back; change nothing.
    pub dry_run: bool,
    /// Kill (SIGKILL) the hooks of interrupted rolling runs that still run
    /// although their lbctl is gone, instead of refusing.
    pub kill_stale_hooks: bool,
}

/// How to undrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UndrainOptions {
    /// Overrides `Settings::undrain_timeout`.
    pub timeout: Option<Duration>,
    /// Set ready and return without waiting for health.
    pub no_wait: bool,
    /// Report what would change; change nothing.
    pub dry_run: bool,
}

/// Told about waits as they go, for progress displays.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A wait read the balancers; `pending` lists what it still waits for
    /// (`"edge app/node2"`, and the member's active count if known).
    fn waiting(&self, what: &str, pending: &[(String, Option<u64>)]);
    /// The wait ended.
    fn finished(&self);
}

/// Every balancer and node, with settings, a journal and a progress sink.
#[derive(Debug)]
pub struct Fleet {
    engine: Engine,
    nodes: BTreeMap<String, Node>,
    settings: Settings,
    progress: Option<Arc<dyn Progress>>,
    /// Host-name lookups for matching members to nodes.
    resolver: attribute::Resolver,
}

/// Builds a [`Fleet`] in code.
#[derive(Debug, Default)]
pub struct FleetBuilder {
    balancers: Vec<FleetBalancer>,
    nodes: Vec<Node>,
    settings: Settings,
    state_dir: Option<PathBuf>,
    progress: Option<Arc<dyn Progress>>,
    reason: Option<String>,
    coordination: Option<Arc<dyn Coordination>>,
    retention: Retention,
}

impl FleetBuilder {
    /// Adds a balancer of `kind` (its name is the driver's `name()`).
    pub fn balancer(mut self, kind: &str, lb: Arc<dyn Balancer>) -> Self {
        self.balancers.push(FleetBalancer {
            name: lb.name().to_string(),
            kind: kind.into(),
            lb,
        });
        self
    }

    /// Adds a node.
    pub fn node(mut self, node: Node) -> Self {
        self.nodes.push(node);
        self
    }

    /// Replaces the settings.
    pub fn settings(mut self, s: Settings) -> Self {
        self.settings = s;
        self
    }

    /// Replaces only the lock timeout.
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        self.settings.lock_timeout = d;
        self
    }

    /// Keeps a journal and a lock in `dir` (without one, nothing is
    /// journaled, `recover` has nothing to work from, and two processes are
    /// not kept apart).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Keeps finished runs in the state directory's journal as
    /// `retention` says (default: 30 days); a backend given to
    /// [`coordination`](Self::coordination) keeps its own.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Journals runs and holds claims in `backend` (etcd, say) instead of
    /// files in the state directory; the state directory still holds this
    /// machine's own files (hook logs).
    pub fn coordination(mut self, backend: Arc<dyn Coordination>) -> Self {
        self.coordination = Some(backend);
        self
    }

    /// Why the commands of this fleet run (`--reason`): kept with every
    /// run in the journal, and with every claim.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Reports waits' progress to `p`.
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = Some(p);
        self
    }

    /// Checks names and builds the fleet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for duplicate or invalid names, or overrides that
    /// name unknown balancers; [`Error::State`] when the state dir cannot
    /// be opened.
    pub fn build(self) -> Result<Fleet> {
        let mut seen = BTreeSet::new();
        for b in &self.balancers {
            if !seen.insert(b.name.clone()) {
                return Err(Error::Config(format!(
                    "two balancers are named {:?}",
                    b.name
                )));
            }
        }
        let mut nodes = BTreeMap::new();
        for n in self.nodes {
            lb_core::validate_name("", "node", &n.name)
                .map_err(|e| Error::Config(e.message().into()))?;
            for (b, refs) in &n.members {
                if !seen.contains(b) {
                    return Err(Error::Config(format!(
                        "node {}: members name unknown balancer {b:?}",
                        n.name
                    )));
                }
                for r in refs {
                    r.validate(b)
                        .map_err(|e| Error::Config(format!("node {}: {e}", n.name)))?;
                }
            }
            if nodes.insert(n.name.clone(), n).is_some() {
                return Err(Error::Config("two nodes have the same name".into()));
            }
        }
        if self.settings.poll_interval.is_zero() {
            return Err(Error::Config("poll_interval must be more than 0".into()));
        }
        let journal = match (self.state_dir.as_deref(), self.coordination) {
            (Some(dir), None) => Some(Journal::open_with(dir, self.retention)?),
            (Some(dir), Some(backend)) => Some(Journal::with_backend(dir, backend)?),
            (None, Some(_)) => {
                return Err(Error::Config(
                    "a coordination backend needs a state directory too (for this machine's \
                     hook logs)"
                        .into(),
                ));
            }
            (None, None) => None,
        };
        Ok(Fleet {
            engine: Engine::new(self.balancers, journal, self.settings.lock_timeout)
                .with_reason(self.reason),
            nodes,
            settings: self.settings,
            progress: self.progress,
            resolver: attribute::Resolver::default(),
        })
    }
}

/// One member of one node on one balancer, as read before a command.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) node: String,
    pub(crate) bal: usize,
    pub(crate) member: Member,
}

impl Target {
    pub(crate) fn r(&self) -> MemberRef {
        self.member.reference()
    }

    /// The write that sets its admin state to `to`.
    pub(crate) fn set(&self, to: lb_core::AdminState) -> Write {
        Write {
            node: Some(self.node.clone()),
            bal: self.bal,
            member: self.r(),
            from: Value::State(self.member.admin),
            to: Value::State(to),
        }
    }
}

impl Fleet {
    /// Starts building a fleet in code.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// The balancers.
    pub fn balancers(&self) -> &[FleetBalancer] {
        self.engine.balancers()
    }

    /// The engine: the balancers, the journal, the lock, and the one way
    /// to change a balancer.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The nodes, by name.
    pub fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Gives back what this process holds in the coordination backend
    /// (for etcd: revokes its lease, so its lock and claims go at once).
    /// Call it once the commands are done.
    pub async fn close(&self) {
        self.engine.close().await;
    }

    /// The journal, when the fleet keeps one.
    pub fn journal(&self) -> Option<&Journal> {
        self.engine.journal()
    }

    fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.get(name).ok_or_else(|| Error::UnknownNode {
            name: name.to_owned(),
            known: self.nodes.keys().cloned().collect(),
        })
    }

    fn nodes_named(&self, names: &[String]) -> Result<Vec<&Node>> {
        if names.is_empty() {
            return Err(Error::Usage("name at least one node".into()));
        }
        let mut out: Vec<&Node> = Vec::new();
        for n in names {
            let node = self.node(n)?;
            if !out.iter().any(|x| x.name == node.name) {
                out.push(node);
            }
        }
        Ok(out)
    }

    pub(crate) async fn read_all(&self) -> Result<Snapshot> {
        self.engine.read_all().await
    }

    fn resolve(&self, node: &Node, snap: &Snapshot) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        for (i, b) in self.balancers().iter().enumerate() {
            match node.members.get(&b.name) {
                Some(refs) => {
                    for r in refs {
                        let m = snap[i].iter().find(|m| m.is(r)).ok_or_else(|| {
                            Error::Config(format!(
                                "node {}: {}: member {r} (from the node's members override) does not exist",
                                node.name, b.name
                            ))
                        })?;
                        out.push(Target {
                            node: node.name.clone(),
                            bal: i,
                            member: m.clone(),
                        });
                    }
                }
                None => {
                    for m in snap[i]
                        .iter()
                        .filter(|m| node.matches(m) || self.resolver.same_host(node, m))
                    {
                        out.push(Target {
                            node: node.name.clone(),
                            bal: i,
                            member: m.clone(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn resolve_all(&self, nodes: &[&Node], snap: &Snapshot) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        for n in nodes {
            let t = self.resolve(n, snap)?;
            if t.is_empty() {
                return Err(Error::Config(format!(
                    "node {} ({}) matches no member on any balancer ({}); set `members` for it in the inventory",
                    n.name,
                    n.address,
                    self.balancers()
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            out.extend(t);
        }
        Ok(out)
    }

    /// What the balancers route to that none of `nodes` can be told
    /// from, on the balancers where not every one of them has a `members`
    /// override: unix sockets, host names that do not resolve, and what
    /// the drivers report as unattributed.
    fn unmatched(&self, nodes: &[&Node], snap: &Snapshot) -> Vec<Unmatched> {
        let mut out = Vec::new();
        for (i, b) in self.balancers().iter().enumerate() {
            if nodes.iter().all(|n| n.members.contains_key(&b.name)) {
                continue;
            }
            let found =
                b.lb.unattributed()
                    .into_iter()
                    .map(|u| (u.pool, u.server, u.why));
            let members = snap[i].iter().filter_map(|m| {
                let claimed = self.nodes.values().any(|n| n.matches(m));
                let why = (!claimed)
                    .then(|| self.resolver.unattributable(m))
                    .flatten()?;
                Some((m.pool.clone(), m.address.clone(), why))
            });
            out.extend(found.chain(members).map(|(pool, server, why)| Unmatched {
                balancer: b.name.clone(),
                kind: b.kind.clone(),
                pool,
                server,
                why,
            }));
        }
        out
    }

    /// Refuses to go on while a balancer routes to something `nodes`
    /// cannot be told from: the node may be behind it, and a drain would
    /// leave its traffic flowing.
    fn refuse_unmatched(&self, nodes: &[&Node], snap: &Snapshot) -> Result<()> {
        let found = self.unmatched(nodes, snap);
        if found.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        Err(Error::Config(format!(
            "cannot tell whether {} is behind {}; nothing changed. Give the node a `members` \
             override for that balancer in the inventory, or write the servers out in the pool",
            names.join(", "),
            found
                .iter()
                .map(|u| format!(
                    "{} `{}` pool {} server `{}` ({})",
                    u.kind, u.balancer, u.pool, u.server, u.why
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn status_of(&self, bal: usize, m: &Member) -> MemberStatus {
        let b = &self.balancers()[bal];
        MemberStatus {
            balancer: b.name.clone(),
            kind: b.kind.clone(),
            pool: m.pool.clone(),
            member: m.name.clone(),
            admin: m.admin,
            health: m.health,
            active: m.active,
            weight: m.weight,
        }
    }

    /// Every named node (all when `names` is empty) with its members on
    /// every balancer, read now.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`]; [`Error::Balancer`] when a balancer cannot be
    /// read.
    pub async fn status<S: AsRef<str>>(&self, names: &[S]) -> Result<StatusReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes: Vec<&Node> = if names.is_empty() {
            self.nodes.values().collect()
        } else {
            self.nodes_named(names)?
        };
        let snap = self.read_all().await?;
        let mut out = Vec::new();
        for n in nodes {
            let members = self
                .resolve(n, &snap)?
                .iter()
                .map(|t| self.status_of(t.bal, &t.member))
                .collect();
            out.push(NodeStatus {
                node: n.name.clone(),
                address: n.address.clone(),
                members,
            });
        }
        let all: Vec<&Node> = self.nodes.values().collect();
        Ok(StatusReport {
            nodes: out,
            unmatched: self.unmatched(&all, &snap),
        })
    }
}
