//! The fleet: every balancer and node of an inventory, and the operations
//! that take nodes out of rotation and put them back on all balancers at
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lb_core::{AdminState, Balancer, Change, Health, Member, MemberRef};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::journal::{Journal, LockGuard, Run};
use crate::report::*;
use crate::wait::{WaitError, WaitOptions, await_condition};

/// One balancer of the fleet: its inventory name, its kind and its driver.
#[derive(Debug, Clone)]
pub struct FleetBalancer {
    /// The inventory name.
    pub name: String,
    /// The kind, as the inventory writes it.
    pub kind: String,
    /// The driver.
    pub lb: Arc<dyn Balancer>,
}

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
    balancers: Vec<FleetBalancer>,
    nodes: BTreeMap<String, Node>,
    settings: Settings,
    journal: Option<Journal>,
    progress: Option<Arc<dyn Progress>>,
}

/// Builds a [`Fleet`] in code.
#[derive(Debug, Default)]
pub struct FleetBuilder {
    balancers: Vec<FleetBalancer>,
    nodes: Vec<Node>,
    settings: Settings,
    state_dir: Option<PathBuf>,
    progress: Option<Arc<dyn Progress>>,
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
        let journal = self.state_dir.as_deref().map(Journal::open).transpose()?;
        Ok(Fleet {
            balancers: self.balancers,
            nodes,
            settings: self.settings,
            journal,
            progress: self.progress,
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
}

pub(crate) type Snapshot = Vec<Vec<Member>>;

/// What one command has changed so far, to report and to roll back.
struct Ledger<'t> {
    all: &'t [Target],
    original: BTreeMap<usize, AdminState>,
    current: BTreeMap<usize, AdminState>,
    changed: Vec<usize>,
}

impl<'t> Ledger<'t> {
    fn new(all: &'t [Target]) -> Self {
        let original: BTreeMap<usize, AdminState> = all
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.member.admin))
            .collect();
        Ledger {
            all,
            current: original.clone(),
            original,
            changed: Vec::new(),
        }
    }

    fn index(&self, t: &Target) -> usize {
        self.all
            .iter()
            .position(|x| std::ptr::eq(x, t))
            .expect("a target of this command")
    }

    fn changed_set(&self) -> BTreeSet<usize> {
        self.changed.iter().copied().collect()
    }
}

impl Fleet {
    /// Starts building a fleet in code.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// The balancers.
    pub fn balancers(&self) -> &[FleetBalancer] {
        &self.balancers
    }

    /// The nodes, by name.
    pub fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The journal, when the fleet keeps one.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.get(name).ok_or_else(|| Error::UnknownNode {
            name: lb_core::escape_name(name),
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
        let reads = join_all(self.balancers.iter().map(|b| b.lb.members())).await;
        reads
            .into_iter()
            .map(|r| r.map_err(Error::Balancer))
            .collect()
    }

    fn resolve(&self, node: &Node, snap: &Snapshot) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        for (i, b) in self.balancers.iter().enumerate() {
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
                    for m in snap[i].iter().filter(|m| node.matches(m)) {
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
                    self.balancers
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

    fn status_of(&self, bal: usize, m: &Member) -> MemberStatus {
        let b = &self.balancers[bal];
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
        Ok(StatusReport { nodes: out })
    }

    /// The guard: for every pool a target is in, the members that stay
    /// ready and not down must number at least `min_active`.
    pub(crate) fn guard(&self, targets: &[Target], snap: &Snapshot) -> Vec<String> {
        let leaving: BTreeSet<(usize, &str, &str)> = targets
            .iter()
            .map(|t| (t.bal, t.member.pool.as_str(), t.member.name.as_str()))
            .collect();
        let pools: BTreeSet<(usize, &str)> = leaving.iter().map(|(b, p, _)| (*b, *p)).collect();
        let mut refusals = Vec::new();
        for (b, pool) in pools {
            let members: Vec<&Member> = snap[b].iter().filter(|m| m.pool == pool).collect();
            let staying = members
                .iter()
                .filter(|m| !leaving.contains(&(b, pool, m.name.as_str())))
                .filter(|m| m.admin == AdminState::Ready && m.health != Health::Down)
                .count();
            if staying < self.settings.min_active {
                let others: Vec<String> = members
                    .iter()
                    .filter(|m| !leaving.contains(&(b, pool, m.name.as_str())))
                    .map(|m| format!("{} is {}/{}", m.name, m.admin, m.health))
                    .collect();
                refusals.push(format!(
                    "{} pool {pool} would keep {staying} member(s) ready and not down, fewer than min_active {}{}",
                    self.balancers[b].name,
                    self.settings.min_active,
                    if others.is_empty() { String::new() } else { format!(" ({})", others.join(", ")) }
                ));
            }
        }
        refusals
    }

    pub(crate) async fn lock(&self) -> Result<Option<LockGuard>> {
        match &self.journal {
            Some(j) => Ok(Some(j.lock(self.settings.lock_timeout).await?)),
            None => Ok(None),
        }
    }

    pub(crate) fn start_run(&self, command: &str) -> Result<Option<Run<'_>>> {
        self.journal
            .as_ref()
            .map(|j| Run::start(j, command))
            .transpose()
    }

    /// Sets `to` on every target concurrently, journaling before and
    /// after. Returns each target's outcome, in order.
    pub(crate) async fn apply(
        &self,
        run: Option<&Run<'_>>,
        targets: &[&Target],
        from: &[AdminState],
        to: AdminState,
    ) -> Result<Vec<lb_core::Result<Change>>> {
        let mut seqs = Vec::new();
        for (t, f) in targets.iter().zip(from) {
            let b = &self.balancers[t.bal];
            seqs.push(match run {
                Some(run) => {
                    Some(run.intent(&t.node, &b.name, &t.r(), "state", f.as_str(), to.as_str())?)
                }
                None => None,
            });
        }
        if let Some(run) = run {
            run.sync()?;
        }
        let results = join_all(targets.iter().map(|t| {
            let b = &self.balancers[t.bal];
            let r = t.r();
            async move {
                let res = b.lb.set_state(&r, to).await;
                tracing::info!(balancer = %b.name, member = %r, state = %to, ok = res.is_ok(), "set_state");
                res
            }
        }))
        .await;
        if let Some(run) = run {
            for (seq, res) in seqs.iter().zip(&results) {
                if let Some(seq) = seq {
                    run.done(*seq, res)?;
                }
            }
        }
        Ok(results)
    }

    /// Puts every `(target, state)` back; returns a description for the
    /// error message.
    async fn roll_back(
        &self,
        run: Option<&Run<'_>>,
        back: &[(&Target, AdminState, AdminState)],
    ) -> (String, bool) {
        let mut said = Vec::new();
        let mut complete = true;
        for (t, now, before) in back {
            let b = &self.balancers[t.bal];
            let res = match run.map(|r| {
                r.intent(
                    &t.node,
                    &b.name,
                    &t.r(),
                    "state",
                    now.as_str(),
                    before.as_str(),
                )
                .and_then(|_| r.sync())
            }) {
                Some(Err(e)) => Err(lb_core::Error::unavailable(&b.name, e.to_string())),
                _ => b.lb.set_state(&t.r(), *before).await,
            };
            match &res {
                Ok(_) => said.push(format!("{} {} back to {before}", b.name, t.r())),
                Err(e) => {
                    complete = false;
                    said.push(format!(
                        "{} {} NOT put back to {before} ({e}); run `lbctl recover`",
                        b.name,
                        t.r()
                    ));
                }
            }
        }
        if said.is_empty() {
            said.push("nothing had changed".into());
        }
        (said.join("; "), complete)
    }

    /// Applies one phase to `targets`; on any failure puts back everything
    /// the command changed so far (earlier phases included) and fails.
    async fn phase(
        &self,
        run: Option<&Run<'_>>,
        targets: &[&Target],
        to: AdminState,
        ledger: &mut Ledger<'_>,
    ) -> Result<()> {
        let from: Vec<AdminState> = targets
            .iter()
            .map(|t| ledger.current[&ledger.index(t)])
            .collect();
        let results = self.apply(run, targets, &from, to).await?;
        let mut failures = Vec::new();
        for (t, res) in targets.iter().zip(results) {
            match res {
                Ok(Change::Applied) => {
                    let i = ledger.index(t);
                    ledger
                        .current
                        .insert(i, self.balancers[t.bal].lb.capabilities().reads_back_as(to));
                    if !ledger.changed.contains(&i) {
                        ledger.changed.push(i);
                    }
                }
                Ok(Change::AlreadyInState) => {}
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        let first = failures.remove(0);
        if ledger.changed.is_empty() {
            if let Some(run) = run {
                run.end("failed", None)?;
            }
            return Err(Error::Balancer(first));
        }
        let back: Vec<(&Target, AdminState, AdminState)> = ledger
            .changed
            .iter()
            .map(|i| (&ledger.all[*i], ledger.current[i], ledger.original[i]))
            .collect();
        let (rolled_back, complete) = self.roll_back(run, &back).await;
        if complete && let Some(run) = run {
            run.end("rolled_back", None)?;
        }
        let mut message = format!("setting {to} failed: {first}");
        for e in failures {
            message.push_str(&format!("; {e}"));
        }
        Err(Error::RolledBack {
            message,
            rolled_back,
        })
    }

    fn report(
        &self,
        nodes: &[&Node],
        targets: &[Target],
        fresh: Option<&Snapshot>,
        changed: &BTreeSet<usize>,
        done: NodeOutcome,
    ) -> Vec<NodeResult> {
        nodes
            .iter()
            .map(|n| {
                let mut any = false;
                let members = targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.node == n.name)
                    .map(|(i, t)| {
                        let m = fresh
                            .and_then(|s| s[t.bal].iter().find(|m| m.is(&t.r())))
                            .unwrap_or(&t.member);
                        let applied = changed.contains(&i);
                        any |= applied;
                        MemberResult {
                            status: self.status_of(t.bal, m),
                            change: if applied {
                                MemberChange::Applied
                            } else {
                                MemberChange::Unchanged
                            },
                        }
                    })
                    .collect();
                NodeResult {
                    node: n.name.clone(),
                    result: if any { done } else { NodeOutcome::Unchanged },
                    members,
                }
            })
            .collect()
    }

    /// Waits until `ok` holds for every target (those `skip` leaves out
    /// aside). Returns the final read.
    async fn wait_for(
        &self,
        what: &str,
        targets: &[&Target],
        timeout: Duration,
        ok: impl Fn(&Member) -> bool,
    ) -> std::result::Result<Snapshot, (Option<Snapshot>, Option<Error>)> {
        let pending = |snap: &Snapshot| -> Vec<(String, Option<u64>)> {
            targets
                .iter()
                .filter_map(|t| {
                    let m = snap[t.bal].iter().find(|m| m.is(&t.r()));
                    match m {
                        Some(m) if ok(m) => None,
                        Some(m) => Some((
                            format!("{} {}", self.balancers[t.bal].name, t.r()),
                            m.active,
                        )),
                        None => Some((
                            format!("{} {} (missing)", self.balancers[t.bal].name, t.r()),
                            None,
                        )),
                    }
                })
                .collect()
        };
        let opts = WaitOptions {
            timeout,
            poll: self.settings.poll_interval,
        };
        let r = await_condition(
            opts,
            || self.read_all(),
            |snap| pending(snap).is_empty(),
            |e: &Error| matches!(e, Error::Balancer(b) if b.is_transient()),
            |snap| {
                if let Some(p) = &self.progress {
                    p.waiting(what, &pending(snap));
                }
            },
        )
        .await;
        if let Some(p) = &self.progress {
            p.finished();
        }
        match r {
            Ok(s) => Ok(s),
            Err(WaitError::TimedOut(last)) => Err((last, None)),
            Err(WaitError::Failed(e)) => Err((None, Some(e))),
        }
    }

    fn describe_pending(
        &self,
        targets: &[&Target],
        snap: Option<&Snapshot>,
        ok: impl Fn(&Member) -> bool,
    ) -> String {
        let Some(snap) = snap else {
            return "no balancer could be read".into();
        };
        targets
            .iter()
            .filter_map(|t| {
                let m = snap[t.bal].iter().find(|m| m.is(&t.r()))?;
                (!ok(m)).then(|| {
                    format!(
                        "{} {} ({}, {}, active {})",
                        self.balancers[t.bal].name,
                        t.r(),
                        m.admin,
                        m.health,
                        m.active.map_or("unknown".into(), |a| a.to_string())
                    )
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Takes `names` out of rotation on every balancer at once: guard,
    /// drain, wait until nothing is in flight, then maint (unless `soft`).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] and [`Error::Config`] (exit 2),
    /// [`Error::Guard`] (exit 4, nothing changed), [`Error::RolledBack`]
    /// (exit 5), [`Error::Timeout`] (exit 3, the members stay draining),
    /// [`Error::Balancer`] (exit 1).
    pub async fn drain<S: AsRef<str>>(
        &self,
        names: &[S],
        opts: &DrainOptions,
    ) -> Result<ChangeReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes = self.nodes_named(names)?;
        let mut warnings = Vec::new();
        let lock = if opts.dry_run {
            None
        } else {
            self.lock().await?
        };
        let snap = self.read_all().await?;
        let targets = self.resolve_all(&nodes, &snap)?;
        let refusals = self.guard(&targets, &snap);
        if !refusals.is_empty() {
            if !opts.force {
                return Err(Error::Guard(refusals.join("; ")));
            }
            for r in refusals {
                warnings.push(format!("guard overridden by --force: {r}"));
            }
        }
        self.driver_warnings(&targets, &mut warnings);
        for b in self.involved(&targets) {
            if !b.lb.capabilities().active_connections {
                warnings.push(format!(
                    "{} cannot report connections: not waited for",
                    b.name
                ));
            }
        }
        let mut ledger = Ledger::new(&targets);
        // Members already in maint stay there: drain would let persistent
        // traffic back in.
        let to_drain: Vec<&Target> = targets
            .iter()
            .filter(|t| t.member.admin == AdminState::Ready)
            .collect();
        let to_maint: Vec<&Target> = if opts.soft || opts.no_wait {
            Vec::new()
        } else {
            targets
                .iter()
                .filter(|t| t.member.admin != AdminState::Maint)
                .collect()
        };
        if opts.dry_run {
            let changed: BTreeSet<usize> = to_drain
                .iter()
                .chain(&to_maint)
                .map(|t| ledger.index(t))
                .collect();
            let mut nodes_out = self.report(&nodes, &targets, None, &changed, NodeOutcome::Drained);
            for n in &mut nodes_out {
                for m in &mut n.members {
                    if m.change == MemberChange::Applied {
                        m.status.admin = if opts.soft || opts.no_wait {
                            AdminState::Drain
                        } else {
                            AdminState::Maint
                        };
                    }
                }
            }
            return Ok(ChangeReport {
                nodes: nodes_out,
                waited_ms: 0,
                dry_run: true,
                warnings,
            });
        }
        let run = self.start_run(&format!("drain {}", names.join(" ")))?;
        let run = run.as_ref();
        self.phase(run, &to_drain, AdminState::Drain, &mut ledger)
            .await?;
        drop(lock);

        let mut waited = Duration::ZERO;
        if !opts.no_wait {
            let started = Instant::now();
            let timeout = opts.timeout.unwrap_or(self.settings.drain_timeout);
            let waiting: Vec<&Target> = targets
                .iter()
                .filter(|t| self.balancers[t.bal].lb.capabilities().active_connections)
                .collect();
            let drained = |m: &Member| m.active == Some(0);
            if let Err((last, err)) = self.wait_for("draining", &waiting, timeout, drained).await {
                if let Some(e) = err {
                    return Err(e);
                }
                if let Some(run) = run {
                    run.end("timeout", None)?;
                }
                return Err(Error::Timeout(format!(
                    "timed out after {} waiting for connections to end on {}; {} left draining \
                     (run `lbctl undrain {}` to put it back, or drain again to keep waiting)",
                    crate::duration::format_duration(timeout),
                    self.describe_pending(&waiting, last.as_ref(), drained),
                    names.join(", "),
                    names.join(" ")
                )));
            }
            waited = started.elapsed();
            if !to_maint.is_empty() {
                let _lock = self.lock().await?;
                self.phase(run, &to_maint, AdminState::Maint, &mut ledger)
                    .await?;
            }
        }
        if let Some(run) = run {
            run.end("ok", None)?;
        }
        let fresh = self.read_all().await.ok();
        self.driver_warnings(&targets, &mut warnings);
        Ok(ChangeReport {
            nodes: self.report(
                &nodes,
                &targets,
                fresh.as_ref(),
                &ledger.changed_set(),
                NodeOutcome::Drained,
            ),
            waited_ms: waited.as_millis() as u64,
            dry_run: false,
            warnings,
        })
    }

    /// Puts `names` back into rotation on every balancer at once, then
    /// waits until no balancer that reports health sees them down (up, or
    /// unknown where the balancer does not check the member).
    ///
    /// # Errors
    ///
    /// As [`drain`](Self::drain), without the guard.
    pub async fn undrain<S: AsRef<str>>(
        &self,
        names: &[S],
        opts: &UndrainOptions,
    ) -> Result<ChangeReport> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let names = &names[..];
        let nodes = self.nodes_named(names)?;
        let lock = if opts.dry_run {
            None
        } else {
            self.lock().await?
        };
        let snap = self.read_all().await?;
        let targets = self.resolve_all(&nodes, &snap)?;
        let mut warnings = Vec::new();
        self.driver_warnings(&targets, &mut warnings);
        let mut ledger = Ledger::new(&targets);
        let to_ready: Vec<&Target> = targets
            .iter()
            .filter(|t| t.member.admin != AdminState::Ready)
            .collect();
        if opts.dry_run {
            let changed: BTreeSet<usize> = to_ready.iter().map(|t| ledger.index(t)).collect();
            let mut nodes_out =
                self.report(&nodes, &targets, None, &changed, NodeOutcome::Undrained);
            for n in &mut nodes_out {
                for m in &mut n.members {
                    m.status.admin = AdminState::Ready;
                }
            }
            return Ok(ChangeReport {
                nodes: nodes_out,
                waited_ms: 0,
                dry_run: true,
                warnings,
            });
        }
        let run = self.start_run(&format!("undrain {}", names.join(" ")))?;
        let run = run.as_ref();
        self.phase(run, &to_ready, AdminState::Ready, &mut ledger)
            .await?;
        if let Some(run) = run {
            run.end("ok", None)?;
        }
        drop(lock);
        let mut waited = Duration::ZERO;
        if !opts.no_wait {
            let started = Instant::now();
            let timeout = opts.timeout.unwrap_or(self.settings.undrain_timeout);
            let watched: Vec<&Target> = targets
                .iter()
                .filter(|t| self.balancers[t.bal].lb.capabilities().health)
                .collect();
            // Up, or unknown where the balancer does not check this member
            // (HAProxy without `check`, an Azure pool no rule routes to):
            // only a balancer that sees it down is waited for.
            let healthy = |m: &Member| m.health != Health::Down;
            if let Err((last, err)) = self.wait_for("coming up", &watched, timeout, healthy).await {
                if let Some(e) = err {
                    return Err(e);
                }
                return Err(Error::Timeout(format!(
                    "timed out after {} waiting for the balancers to see {} healthy: {}; it is in rotation \
                     (ready) but down",
                    crate::duration::format_duration(timeout),
                    names.join(", "),
                    self.describe_pending(&watched, last.as_ref(), healthy)
                )));
            }
            waited = started.elapsed();
        }
        let fresh = self.read_all().await.ok();
        self.driver_warnings(&targets, &mut warnings);
        Ok(ChangeReport {
            nodes: self.report(
                &nodes,
                &targets,
                fresh.as_ref(),
                &ledger.changed_set(),
                NodeOutcome::Undrained,
            ),
            waited_ms: waited.as_millis() as u64,
            dry_run: false,
            warnings,
        })
    }

    /// Puts one leftover back, journaled. The intent records the value
    /// being restored as both `from` and `to`, so an interrupted recover
    /// is itself recovered harmlessly.
    async fn restore(
        &self,
        run: Option<&Run<'_>>,
        l: &crate::journal::Leftover,
        b: &FleetBalancer,
        r: &MemberRef,
    ) -> Result<lb_core::Result<Change>> {
        let seq = match run {
            Some(run) => {
                let seq = run.intent(&l.node, &b.name, r, &l.what, &l.restore, &l.restore)?;
                run.sync()?;
                Some(seq)
            }
            None => None,
        };
        let res = match l.what.as_str() {
            "weight" => match l.restore.parse::<u32>() {
                Ok(w) => b.lb.set_weight(r, w).await,
                Err(_) => Err(lb_core::Error::protocol(
                    &b.name,
                    format!(
                        "the journal's weight {:?} for {r} is not a number",
                        l.restore
                    ),
                )),
            },
            _ => match l.restore.parse::<AdminState>() {
                Ok(s) => b.lb.set_state(r, s).await,
                Err(e) => Err(e.for_balancer(&b.name)),
            },
        };
        if let (Some(run), Some(seq)) = (run, seq) {
            run.done(seq, &res)?;
        }
        Ok(res)
    }

    /// Adds what the drivers involved warn about (as of their last read),
    /// each once.
    fn driver_warnings(&self, targets: &[Target], out: &mut Vec<String>) {
        for b in self.involved(targets) {
            for w in b.lb.warnings() {
                let w = if w.starts_with(&format!("{}: ", b.name)) {
                    w
                } else {
                    format!("{}: {w}", b.name)
                };
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
    }

    fn involved(&self, targets: &[Target]) -> Vec<&FleetBalancer> {
        let idx: BTreeSet<usize> = targets.iter().map(|t| t.bal).collect();
        idx.into_iter().map(|i| &self.balancers[i]).collect()
    }

    /// Puts back every member that an interrupted run left changed, to the
    /// state (or weight) it had before that run.
    ///
    /// # Errors
    ///
    /// [`Error::State`] without a journal; [`Error::Balancer`] when a
    /// balancer fails (what could be put back is, and the run stays
    /// recoverable).
    pub async fn recover(&self, dry_run: bool) -> Result<RecoverReport> {
        let journal = self
            .journal
            .as_ref()
            .ok_or_else(|| Error::State("recover needs a state directory (--state-dir)".into()))?;
        let _lock = if dry_run { None } else { self.lock().await? };
        let (left, running) = crate::journal::leftovers(&journal.records()?);
        let mut recovered = Vec::new();
        let run = if dry_run || left.is_empty() {
            None
        } else {
            Some(Run::start(journal, "recover")?)
        };
        let mut failed = Vec::new();
        let mut failed_runs = BTreeSet::new();
        let mut runs_done: Vec<String> = Vec::new();
        for l in &left {
            let Some(b) = self.balancers.iter().find(|b| b.name == l.balancer) else {
                failed.push(format!(
                    "balancer {} is no longer in the inventory",
                    l.balancer
                ));
                failed_runs.insert(l.run.clone());
                continue;
            };
            let r = MemberRef::new(&l.pool, &l.member);
            let change = if dry_run {
                MemberChange::Applied
            } else {
                let res = self.restore(run.as_ref(), l, b, &r).await?;
                match res {
                    Ok(Change::Applied) => MemberChange::Applied,
                    Ok(Change::AlreadyInState) => MemberChange::Unchanged,
                    Err(e) => {
                        failed.push(format!("{} {r}: {e}", b.name));
                        failed_runs.insert(l.run.clone());
                        continue;
                    }
                }
            };
            if !runs_done.contains(&l.run) {
                runs_done.push(l.run.clone());
            }
            recovered.push(Recovered {
                run: l.run.clone(),
                command: l.command.clone(),
                node: l.node.clone(),
                balancer: l.balancer.clone(),
                pool: l.pool.clone(),
                member: l.member.clone(),
                what: l.what.clone(),
                restore: l.restore.clone(),
                change,
            });
        }
        if let Some(run) = &run {
            // A run is closed only when all it left was put back; recover's
            // own run always ends (it only restores).
            for id in runs_done.iter().filter(|id| !failed_runs.contains(*id)) {
                run.end("recovered", Some(id))?;
            }
            run.end(if failed.is_empty() { "ok" } else { "failed" }, None)?;
        }
        if !failed.is_empty() {
            return Err(Error::Failed(format!(
                "recover could not put back: {}; run `lbctl recover` again once the balancer answers",
                failed.join("; ")
            )));
        }
        Ok(RecoverReport {
            recovered,
            running,
            dry_run,
        })
    }
}
