//! The rolling plan (`plan.toml`): ordered groups of nodes, the hooks that
//! upgrade them, the health gates they pass before they return to
//! rotation, optionally Confluence's zero-downtime-upgrade API, and
//! optionally a rebalance once the last node is back (`rebalance = true`,
//! or a table with the knobs of `lbctl rebalance`).
//!
//! Parsed with serde and `deny_unknown_fields`: a misspelt key is an error
//! naming the file, the line and the key. A rolling run then checks the
//! plan against the fleet (every node in the inventory, shell-safe names),
//! naming the line again ([`Plan::describe_node`]).
//!
//! ```
//! use orchestrator::Strategy;
//! use orchestrator::plan::{GateCheck, Plan};
//!
//! let plan = Plan::parse(r#"
//! finally = "echo all done"
//! rebalance = { strategy = "weight", threshold = 1.3 }
//!
//! [[group]]
//! name = "rails"
//! nodes = ["rails1", "rails2"]
//!
//! [group.hooks]
//! before = "ssh {node} sudo gitlab-ctl stop puma"
//! upgrade = "ssh {node} sudo apt-get install -y gitlab-ee"
//! after = "ssh {node} sudo gitlab-ctl start"
//! timeout = "30m"
//!
//! [group.gate]
//! http = "http://{address}/-/readiness"
//! body = "ok"
//! "#, "plan.toml").unwrap();
//! let g = &plan.groups[0];
//! assert_eq!((g.batch, g.balanced), (1, true));
//! assert!(matches!(&g.gate.as_ref().unwrap().check, GateCheck::Http { expect_status: 200, .. }));
//! let r = plan.rebalance.as_ref().unwrap();
//! assert_eq!((r.strategy, r.threshold, r.pool.as_deref()), (Strategy::Weight, 1.3, None));
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::duration::{parse_duration, serde_opt};
use crate::error::{Error, Result};
use crate::rebalance::{RebalanceOptions, Strategy};

/// How long a hook may run unless the plan says otherwise.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a gate waits unless the plan says otherwise.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How often a gate looks unless the plan says otherwise.
pub const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(2);

/// A whole plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The file it was read from (`None` when parsed from text).
    pub path: Option<PathBuf>,
    /// The groups, in the order they run.
    pub groups: Vec<Group>,
    /// Runs once after every group (GitLab's post-deployment migrations).
    pub finally: Option<Hook>,
    /// Confluence Data Center's zero-downtime-upgrade API.
    pub zdu: Option<ZduConfig>,
    /// `rebalance = true` or `rebalance = { … }`: [`Fleet::rebalance`](crate::Fleet::rebalance) over
    /// every pool once the last node is back (before `finally`). `None`
    /// when the key is absent or `false`.
    pub rebalance: Option<RebalanceOptions>,
    /// The file's name in messages.
    origin: String,
    /// Where groups and their nodes are written, for messages.
    lines: Lines,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Lines {
    groups: Vec<usize>,
    nodes: Vec<Vec<usize>>,
}

/// A shell command with a time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The command, run with `sh -c`; `{node}`, `{address}` and `{group}`
    /// are replaced (also given as `LBCTL_NODE`, `LBCTL_ADDRESS`,
    /// `LBCTL_GROUP`).
    pub command: String,
    /// Killed (its whole process group) after this long.
    pub timeout: Duration,
}

/// One `[[group]]`: nodes upgraded the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name (`{group}` in hooks).
    pub name: String,
    /// Inventory node names, in order.
    pub nodes: Vec<String>,
    /// How many of its nodes may be out of rotation at once (≥ 1).
    pub batch: usize,
    /// `false`: no balancer fronts these nodes (a database, Consul…):
    /// hooks and gates only, never a drain.
    pub balanced: bool,
    /// After the node is out of rotation (e.g. stop the service).
    pub before: Option<Hook>,
    /// The upgrade itself.
    pub upgrade: Option<Hook>,
    /// Replaces `upgrade` on the group's first node (a deploy node that
    /// runs the migrations); that node then runs alone.
    pub first_node: Option<Hook>,
    /// After the upgrade (e.g. start the service).
    pub after: Option<Hook>,
    /// Once, after the group's last node is back.
    pub after_group: Option<Hook>,
    /// What a node must pass before it returns to rotation.
    pub gate: Option<Gate>,
}

impl Group {
    /// A balanced group of `nodes`, batch 1, no hooks and no gate.
    pub fn new<S: AsRef<str>>(name: &str, nodes: &[S]) -> Group {
        Group {
            name: name.into(),
            nodes: nodes.iter().map(|n| n.as_ref().to_owned()).collect(),
            batch: 1,
            balanced: true,
            before: None,
            upgrade: None,
            first_node: None,
            after: None,
            after_group: None,
            gate: None,
        }
    }
}

/// A health gate: checked every `interval` until it passes or `timeout`
/// runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// What is checked.
    pub check: GateCheck,
    /// How long to keep trying.
    pub timeout: Duration,
    /// How often to try.
    pub interval: Duration,
}

/// What a gate checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateCheck {
    /// `GET url` answers `expect_status`, its body holding `body` if set.
    Http {
        /// The URL (templated).
        url: String,
        /// The status expected (default 200).
        expect_status: u16,
        /// A substring the body must hold.
        body: Option<String>,
    },
    /// A TCP connection to `address` (templated `host:port`) succeeds.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A shell command (templated) exits 0.
    Command {
        /// The command.
        command: String,
    },
    /// The node's Confluence ZDU state is `ACTIVE` (waiting through
    /// `STARTING`; `ERROR` fails at once).
    Zdu,
}

/// `[zdu]`: Confluence Data Center's zero-downtime-upgrade REST API.
#[derive(Clone, PartialEq, Eq)]
pub struct ZduConfig {
    /// Base URL of one node or of the cluster, e.g.
    /// `https://confluence.example:8090`.
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// The node's id in the ZDU API (templated; default `{node}`).
    pub node_id: String,
    /// How long to wait for the cluster to reach a state (default 10m).
    pub timeout: Duration,
    /// How often to look (default 2s).
    pub interval: Duration,
    /// One request's time limit (default 30s).
    pub request_timeout: Duration,
    /// `GET` the cluster state (default `/rest/zdu/cluster/zdu/state`).
    pub state_path: String,
    /// `POST` to enable upgrade mode (default `/rest/zdu/cluster/zdu/start`).
    pub start_path: String,
    /// `GET` one node (`{id}`; default `/rest/zdu/cluster/zdu/nodes/{id}`).
    pub node_path: String,
    /// `POST` to finalize (default `/rest/zdu/cluster/zdu/approve`).
    pub approve_path: String,
    /// `POST` to leave upgrade mode (default `/rest/zdu/cluster/zdu/cancel`).
    pub cancel_path: String,
}

impl std::fmt::Debug for ZduConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZduConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ZduConfig {
    /// The API at `url` with the default paths and waits.
    pub fn new(url: &str) -> ZduConfig {
        ZduConfig {
            url: url.trim_end_matches('/').into(),
            username: None,
            password_env: None,
            node_id: "{node}".into(),
            timeout: Duration::from_secs(600),
            interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            state_path: "/rest/zdu/cluster/zdu/state".into(),
            start_path: "/rest/zdu/cluster/zdu/start".into(),
            node_path: "/rest/zdu/cluster/zdu/nodes/{id}".into(),
            approve_path: "/rest/zdu/cluster/zdu/approve".into(),
            cancel_path: "/rest/zdu/cluster/zdu/cancel".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    finally: Option<Spanned<String>>,
    #[serde(default, with = "serde_opt")]
    hook_timeout: Option<Duration>,
    zdu: Option<Spanned<RawZdu>>,
    rebalance: Option<Spanned<RawRebalance>>,
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
}

/// `rebalance = true | false | { … }`.
#[derive(Debug)]
enum RawRebalance {
    Flag(bool),
    Table(Box<RawRebalanceTable>),
}

impl<'de> Deserialize<'de> for RawRebalance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawRebalance;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "true, false or a table such as { threshold = 1.5, strategy = \"weight\" }",
                )
            }
            fn visit_bool<E: serde::de::Error>(
                self,
                v: bool,
            ) -> std::result::Result<RawRebalance, E> {
                Ok(RawRebalance::Flag(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<RawRebalance, A::Error> {
                RawRebalanceTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawRebalance::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The knobs of `lbctl rebalance`, but `pool`: every pool is looked at.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRebalanceTable {
    threshold: Option<Spanned<f64>>,
    strategy: Option<Spanned<String>>,
    min_load: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
    max_drain: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    nodes: Spanned<Vec<Spanned<String>>>,
    batch: Option<Spanned<i64>>,
    #[serde(default = "yes")]
    balanced: bool,
    #[serde(default)]
    hooks: RawHooks,
    gate: Option<Spanned<RawGate>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    before: Option<Spanned<String>>,
    upgrade: Option<Spanned<String>>,
    first_node: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
    after_group: Option<Spanned<String>>,
    #[serde(default, with = "serde_opt")]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    http: Option<String>,
    tcp: Option<String>,
    command: Option<String>,
    zdu: Option<bool>,
    expect_status: Option<u16>,
    body: Option<String>,
    #[serde(default, with = "serde_opt")]
    timeout: Option<Duration>,
    #[serde(default, with = "serde_opt")]
    interval: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZdu {
    url: String,
    username: Option<String>,
    password_env: Option<String>,
    node_id: Option<String>,
    #[serde(default, with = "serde_opt")]
    timeout: Option<Duration>,
    #[serde(default, with = "serde_opt")]
    interval: Option<Duration>,
    #[serde(default, with = "serde_opt")]
    request_timeout: Option<Duration>,
    state_path: Option<String>,
    start_path: Option<String>,
    node_path: Option<String>,
    approve_path: Option<String>,
    cancel_path: Option<String>,
}

/// Characters a substituted value may hold: enough for host names,
/// addresses (IPv6 in brackets too) and node names, nothing a shell reads
/// specially.
pub(crate) fn shell_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '_' | '-' | ':' | '[' | ']' | '@' | '%' | '+' | '=' | ',' | '/'
                )
        })
}

struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        Error::Config(format!("{}: line {}: {msg}", self.origin, self.line(at)))
    }
}

impl Plan {
    /// A plan of `groups`, built in code.
    pub fn new(groups: Vec<Group>) -> Plan {
        Plan {
            path: None,
            groups,
            finally: None,
            zdu: None,
            rebalance: None,
            origin: "plan".into(),
            lines: Lines::default(),
        }
    }

    /// The name messages give the plan (its path, or what
    /// [`parse`](Self::parse) was told).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Reads and checks `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file, the line and the key.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read plan {}: {e}", path.display())))?;
        let mut plan = Plan::parse(&text, &path.display().to_string())?;
        plan.path = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
        Ok(plan)
    }

    /// Parses and checks plan text; `origin` names it in messages.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `origin`, the line and the key.
    pub fn parse(text: &str, origin: &str) -> Result<Plan> {
        let raw: RawPlan = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().trim_end())))?;
        let cx = Ctx { origin, text };
        let hook_default = raw.hook_timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT);
        if hook_default.is_zero() {
            return Err(Error::Config(format!(
                "{origin}: hook_timeout must be more than 0"
            )));
        }
        let zdu = raw.zdu.map(|z| zdu_config(&cx, z)).transpose()?;
        let rebalance = match raw.rebalance {
            None => None,
            Some(r) => rebalance_options(&cx, r)?,
        };
        if raw.group.is_empty() {
            return Err(Error::Config(format!(
                "{origin}: the plan has no [[group]]; add at least one with name and nodes"
            )));
        }
        let mut groups = Vec::new();
        let mut lines = Lines::default();
        let mut seen_nodes: BTreeMap<String, String> = BTreeMap::new();
        for g in raw.group {
            let at = g.span().start;
            let g = g.into_inner();
            let name_at = g.name.span().start;
            let name = g.name.into_inner();
            lb_core::validate_name("", "group", &name).map_err(|e| cx.err(name_at, e.message()))?;
            if !shell_safe(&name) {
                return Err(cx.err(
                    name_at,
                    format!("group name {name:?} holds characters a shell reads specially (it is substituted for {{group}} in hooks)"),
                ));
            }
            if groups.iter().any(|x: &Group| x.name == name) {
                return Err(cx.err(name_at, format!("two groups are named {name:?}")));
            }
            let nodes_at = g.nodes.span().start;
            let raw_nodes = g.nodes.into_inner();
            if raw_nodes.is_empty() {
                return Err(cx.err(nodes_at, format!("group {name}: nodes is empty")));
            }
            let mut nodes = Vec::new();
            let mut node_lines = Vec::new();
            for n in raw_nodes {
                let n_at = n.span().start;
                let n = n.into_inner();
                if let Some(other) = seen_nodes.insert(n.clone(), name.clone()) {
                    return Err(cx.err(
                        n_at,
                        format!("group {name}: node {n:?} is already in group {other}; a node is upgraded once"),
                    ));
                }
                nodes.push(n);
                node_lines.push(cx.line(n_at));
            }
            let batch = match g.batch {
                None => 1,
                Some(b) => {
                    let v = *b.get_ref();
                    if v < 1 {
                        return Err(cx.err(
                            b.span().start,
                            format!("group {name}: batch must be 1 or more, not {v}"),
                        ));
                    }
                    v as usize
                }
            };
            let timeout = g.hooks.timeout.unwrap_or(hook_default);
            if timeout.is_zero() {
                return Err(Error::Config(format!(
                    "{origin}: group {name}: hooks.timeout must be more than 0"
                )));
            }
            let hook = |h: Option<Spanned<String>>,
                        key: &str,
                        node_scoped: bool|
             -> Result<Option<Hook>> {
                let Some(h) = h else { return Ok(None) };
                let h_at = h.span().start;
                let command = h.into_inner();
                if command.trim().is_empty() {
                    return Err(cx.err(h_at, format!("group {name}: hooks.{key} is empty")));
                }
                if !node_scoped {
                    for p in ["{node}", "{address}"] {
                        if command.contains(p) {
                            return Err(cx.err(
                                h_at,
                                format!("group {name}: hooks.{key} runs once for the group, so it cannot use {p}"),
                            ));
                        }
                    }
                }
                Ok(Some(Hook { command, timeout }))
            };
            let before = hook(g.hooks.before, "before", true)?;
            let upgrade = hook(g.hooks.upgrade, "upgrade", true)?;
            let first_node = hook(g.hooks.first_node, "first_node", true)?;
            let after = hook(g.hooks.after, "after", true)?;
            let after_group = hook(g.hooks.after_group, "after_group", false)?;
            let gate = g
                .gate
                .map(|gt| gate(&cx, &name, gt, zdu.is_some()))
                .transpose()?;
            lines.groups.push(cx.line(at));
            lines.nodes.push(node_lines);
            groups.push(Group {
                name,
                nodes,
                batch,
                balanced: g.balanced,
                before,
                upgrade,
                first_node,
                after,
                after_group,
                gate,
            });
        }
        let finally = match raw.finally {
            None => None,
            Some(f) => {
                let f_at = f.span().start;
                let command = f.into_inner();
                if command.trim().is_empty() {
                    return Err(cx.err(f_at, "finally is empty"));
                }
                for p in ["{node}", "{address}", "{group}"] {
                    if command.contains(p) {
                        return Err(cx.err(
                            f_at,
                            format!("finally runs once for the plan, so it cannot use {p}"),
                        ));
                    }
                }
                Some(Hook {
                    command,
                    timeout: hook_default,
                })
            }
        };
        Ok(Plan {
            path: None,
            groups,
            finally,
            zdu,
            rebalance,
            origin: origin.into(),
            lines,
        })
    }

    /// Every node of every group, in the order they run.
    pub fn nodes(&self) -> impl Iterator<Item = (&Group, &str)> {
        self.groups
            .iter()
            .flat_map(|g| g.nodes.iter().map(move |n| (g, n.as_str())))
    }

    fn at(&self, group: usize, node: Option<usize>) -> String {
        let line = match node {
            Some(n) => self.lines.nodes.get(group).and_then(|l| l.get(n)).copied(),
            None => self.lines.groups.get(group).copied(),
        };
        match line {
            Some(l) => format!("{}: line {l}", self.origin),
            None => self.origin.clone(),
        }
    }

    /// Where group `g` (an index into `groups`) is written, for messages.
    pub fn describe_group(&self, g: usize) -> String {
        self.at(g, None)
    }

    /// Where node `n` of group `g` is written, for messages.
    pub fn describe_node(&self, g: usize, n: usize) -> String {
        self.at(g, Some(n))
    }
}

fn gate(cx: &Ctx<'_>, group: &str, g: Spanned<RawGate>, have_zdu: bool) -> Result<Gate> {
    let at = g.span().start;
    let g = g.into_inner();
    let bad = |m: String| cx.err(at, format!("group {group}: gate: {m}"));
    let mut kinds = Vec::new();
    if g.http.is_some() {
        kinds.push("http");
    }
    if g.tcp.is_some() {
        kinds.push("tcp");
    }
    if g.command.is_some() {
        kinds.push("command");
    }
    match g.zdu {
        Some(true) => kinds.push("zdu"),
        Some(false) => {
            return Err(bad(
                "zdu = false is not a gate; write zdu = true or leave it out".into(),
            ));
        }
        None => {}
    }
    if kinds.len() != 1 {
        return Err(bad(format!(
            "give exactly one of http, tcp, command or zdu (found {})",
            if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            }
        )));
    }
    if kinds[0] != "http" && (g.expect_status.is_some() || g.body.is_some()) {
        return Err(bad("expect_status and body go with an http gate".into()));
    }
    let timeout = g.timeout.unwrap_or(DEFAULT_GATE_TIMEOUT);
    let interval = g.interval.unwrap_or(DEFAULT_GATE_INTERVAL);
    if timeout.is_zero() || interval.is_zero() {
        return Err(bad("timeout and interval must be more than 0".into()));
    }
    let check = if let Some(url) = g.http {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!(
                "http = {url:?} is not an http:// or https:// URL"
            )));
        }
        let expect_status = g.expect_status.unwrap_or(200);
        if !(100..=599).contains(&expect_status) {
            return Err(bad(format!(
                "expect_status {expect_status} is not an HTTP status"
            )));
        }
        GateCheck::Http {
            url,
            expect_status,
            body: g.body,
        }
    } else if let Some(address) = g.tcp {
        if address.trim().is_empty() {
            return Err(bad("tcp is empty".into()));
        }
        GateCheck::Tcp { address }
    } else if let Some(command) = g.command {
        if command.trim().is_empty() {
            return Err(bad("command is empty".into()));
        }
        GateCheck::Command { command }
    } else {
        if !have_zdu {
            return Err(bad("zdu = true needs a [zdu] section".into()));
        }
        GateCheck::Zdu
    };
    Ok(Gate {
        check,
        timeout,
        interval,
    })
}

fn rebalance_options(cx: &Ctx<'_>, r: Spanned<RawRebalance>) -> Result<Option<RebalanceOptions>> {
    let t = match r.into_inner() {
        RawRebalance::Flag(false) => return Ok(None),
        RawRebalance::Flag(true) => return Ok(Some(RebalanceOptions::default())),
        RawRebalance::Table(t) => t,
    };
    let mut o = RebalanceOptions::default();
    if let Some(v) = t.threshold {
        let x = *v.get_ref();
        if !x.is_finite() || x < 1.0 {
            return Err(cx.err(
                v.span().start,
                format!("rebalance: threshold must be at least 1 (max/mean load), not {x}"),
            ));
        }
        o.threshold = x;
    }
    if let Some(v) = t.min_load {
        let x = *v.get_ref();
        if !x.is_finite() || x < 0.0 {
            return Err(cx.err(
                v.span().start,
                format!("rebalance: min_load must be 0 or more, not {x}"),
            ));
        }
        o.min_load = x;
    }
    if let Some(v) = t.strategy {
        o.strategy = v.get_ref().parse::<Strategy>().map_err(|_| {
            cx.err(
                v.span().start,
                format!(
                    "rebalance: unknown strategy {:?}: drain or weight",
                    v.get_ref()
                ),
            )
        })?;
    }
    for (key, d, v) in [
        ("window", &mut o.window, t.window),
        ("max_drain", &mut o.max_drain, t.max_drain),
        ("duration", &mut o.duration, t.duration),
    ] {
        if let Some(v) = v {
            let at = v.span().start;
            let x = parse_duration(v.get_ref())
                .map_err(|e| cx.err(at, format!("rebalance: {key}: {e}")))?;
            if x.is_zero() {
                return Err(cx.err(at, format!("rebalance: {key} must be more than 0")));
            }
            *d = x;
        }
    }
    Ok(Some(o))
}

fn zdu_config(cx: &Ctx<'_>, z: Spanned<RawZdu>) -> Result<ZduConfig> {
    let at = z.span().start;
    let z = z.into_inner();
    let bad = |m: String| cx.err(at, format!("[zdu]: {m}"));
    if !(z.url.starts_with("http://") || z.url.starts_with("https://")) {
        return Err(bad(format!(
            "url {:?} is not an http:// or https:// URL",
            z.url
        )));
    }
    if z.username.is_some() != z.password_env.is_some() {
        return Err(bad("username and password_env go together".into()));
    }
    let mut c = ZduConfig::new(&z.url);
    c.username = z.username;
    c.password_env = z.password_env;
    if let Some(n) = z.node_id {
        c.node_id = n;
    }
    for (d, v) in [
        (&mut c.timeout, z.timeout),
        (&mut c.interval, z.interval),
        (&mut c.request_timeout, z.request_timeout),
    ] {
        if let Some(v) = v {
            if v.is_zero() {
                return Err(bad(
                    "timeout, interval and request_timeout must be more than 0".into(),
                ));
            }
            *d = v;
        }
    }
    for (key, d, v) in [
        ("state_path", &mut c.state_path, z.state_path),
        ("start_path", &mut c.start_path, z.start_path),
        ("node_path", &mut c.node_path, z.node_path),
        ("approve_path", &mut c.approve_path, z.approve_path),
        ("cancel_path", &mut c.cancel_path, z.cancel_path),
    ] {
        if let Some(v) = v {
            if !v.starts_with('/') {
                return Err(bad(format!("{key} {v:?} must start with /")));
            }
            *d = v;
        }
    }
    if !c.node_path.contains("{id}") {
        return Err(bad(format!("node_path {:?} must hold {{id}}", c.node_path)));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITLAB: &str = r#"
finally = "ssh rails1 sudo gitlab-rake db:migrate"
hook_timeout = "10m"

[[group]]
name = "postgres"
nodes = ["pg1", "pg2"]
balanced = false

[group.hooks]
upgrade = "ssh {node} sudo apt-get install -y gitlab-ee"

[group.gate]
tcp = "{address}"
timeout = "1m"
interval = "1s"

[[group]]
name = "rails"
nodes = ["rails1", "rails2", "rails3"]
batch = 2

[group.hooks]
before = "ssh {node} sudo gitlab-ctl stop puma"
upgrade = "ssh {node} sudo apt-get install -y gitlab-ee"
first_node = "ssh {node} sudo SKIP_POST_DEPLOYMENT_MIGRATIONS=true gitlab-ctl reconfigure"
after = "ssh {node} sudo gitlab-ctl restart"
after_group = "echo {group} done"
timeout = "30m"

[group.gate]
http = "http://{address}/-/readiness"
expect_status = 200
body = "\"status\":\"ok\""
"#;

    #[test]
    fn parses_groups_hooks_gates_and_defaults() {
        let p = Plan::parse(GITLAB, "gitlab.toml").unwrap();
        assert_eq!(p.groups.len(), 2);
        let pg = &p.groups[0];
        assert!(!pg.balanced);
        assert_eq!(pg.batch, 1);
        assert_eq!(
            pg.upgrade.as_ref().unwrap().timeout,
            Duration::from_secs(600),
            "hook_timeout"
        );
        assert_eq!(
            pg.gate,
            Some(Gate {
                check: GateCheck::Tcp {
                    address: "{address}".into()
                },
                timeout: Duration::from_secs(60),
                interval: Duration::from_secs(1),
            })
        );
        let rails = &p.groups[1];
        assert_eq!((rails.batch, rails.balanced), (2, true));
        assert_eq!(
            rails.before.as_ref().unwrap().timeout,
            Duration::from_secs(1800)
        );
        assert!(
            rails
                .first_node
                .as_ref()
                .unwrap()
                .command
                .contains("SKIP_POST")
        );
        match &rails.gate.as_ref().unwrap().check {
            GateCheck::Http {
                url,
                expect_status,
                body,
            } => {
                assert_eq!(url, "http://{address}/-/readiness");
                assert_eq!(*expect_status, 200);
                assert_eq!(body.as_deref(), Some("\"status\":\"ok\""));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rails.gate.as_ref().unwrap().interval, DEFAULT_GATE_INTERVAL);
        assert_eq!(
            p.finally.as_ref().unwrap().timeout,
            Duration::from_secs(600)
        );
        assert_eq!(
            p.nodes().map(|(_, n)| n).collect::<Vec<_>>(),
            ["pg1", "pg2", "rails1", "rails2", "rails3"]
        );
        assert_eq!(p.describe_node(1, 2), "gitlab.toml: line 20");
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let e = Plan::parse(&GITLAB.replace("batch = 2", "bacth = 2"), "gitlab.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gitlab.toml") && e.contains("line 21") && e.contains("bacth"),
            "{e}"
        );
        let e = Plan::parse(&GITLAB.replace("expect_status", "expect"), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expect") && e.contains("line 33"), "{e}");
        let e = Plan::parse(
            "rebalanse = true\n[[group]]\nname = \"a\"\nnodes = [\"n\"]\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rebalanse") && e.contains("line 1"), "{e}");
        let e = Plan::parse(
            "[[group]]\nname = \"a\"\nnodes = [\"n\"]\ntimeout = \"5x\"\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("timeout") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "batch = 2",
                "batch = 0",
                "line 21: group rails: batch must be 1 or more",
            ),
            (
                "tcp = \"{address}\"",
                "tcp = \"{address}\"\ncommand = \"true\"",
                "line 13: group postgres: gate: give exactly one",
            ),
            (
                "expect_status = 200",
                "expect_status = 200\ntcp = \"x:1\"",
                "exactly one of http, tcp, command or zdu (found http, tcp)",
            ),
            (
                "after_group = \"echo {group} done\"",
                "after_group = \"echo {node}\"",
                "line 28: group rails: hooks.after_group runs once for the group, so it cannot use {node}",
            ),
            (
                "finally = \"ssh rails1",
                "finally = \"ssh {node}",
                "line 2: finally runs once for the plan",
            ),
            (
                "nodes = [\"rails1\", \"rails2\", \"rails3\"]",
                "nodes = [\"rails1\", \"pg2\"]",
                "line 20: group rails: node \"pg2\" is already in group postgres",
            ),
            (
                "name = \"rails\"",
                "name = \"postgres\"",
                "line 19: two groups are named \"postgres\"",
            ),
            (
                "name = \"rails\"",
                "name = \"rails$(id)\"",
                "line 19: group name \"rails$(id)\" holds characters",
            ),
            (
                "tcp = \"{address}\"",
                "zdu = true",
                "zdu = true needs a [zdu] section",
            ),
            (
                "http = \"http://",
                "http = \"ftp://",
                "is not an http:// or https:// URL",
            ),
            (
                "nodes = [\"pg1\", \"pg2\"]",
                "nodes = []",
                "line 7: group postgres: nodes is empty",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GITLAB.contains(from), "{from}");
            let e = Plan::parse(&GITLAB.replacen(from, to, 1), "g.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{to}: {e}");
            assert!(e.starts_with("g.toml: "), "{e}");
        }
        let e = Plan::parse("finally = \"x\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [[group]]"), "{e}");
    }

    const ONE_GROUP: &str = "\n[[group]]\nname = \"app\"\nnodes = [\"node1\"]\n";

    fn with_rebalance(line: &str) -> Result<Plan> {
        Plan::parse(
            &format!("finally = \"true\"\n{line}\n{ONE_GROUP}"),
            "r.toml",
        )
    }

    #[test]
    fn rebalance_is_a_bool_or_a_table_of_the_cli_knobs() {
        let p = Plan::parse(ONE_GROUP, "r.toml").unwrap();
        assert_eq!(p.rebalance, None, "absent");
        assert_eq!(with_rebalance("rebalance = false").unwrap().rebalance, None);
        assert_eq!(
            with_rebalance("rebalance = true").unwrap().rebalance,
            Some(RebalanceOptions::default()),
            "the defaults of lbctl rebalance"
        );
        let o = with_rebalance(
            "rebalance = { threshold = 1.3, strategy = \"weight\", min_load = 2, window = \"2s\", max_drain = \"45s\", duration = \"3m\" }",
        )
        .unwrap()
        .rebalance
        .unwrap();
        assert_eq!(
            o,
            RebalanceOptions {
                pool: None,
                threshold: 1.3,
                min_load: 2.0,
                strategy: Strategy::Weight,
                window: Duration::from_secs(2),
                max_drain: Duration::from_secs(45),
                duration: Duration::from_secs(180),
                ..RebalanceOptions::default()
            }
        );
        let o = with_rebalance("rebalance = { strategy = \"drain\" }")
            .unwrap()
            .rebalance
            .unwrap();
        assert_eq!(o, RebalanceOptions::default(), "every key is optional");
        // The same as a table of its own, after the groups.
        let p = Plan::parse(
            &format!("{ONE_GROUP}\n[rebalance]\nstrategy = \"weight\"\nthreshold = 2\n"),
            "r.toml",
        )
        .unwrap();
        let o = p.rebalance.unwrap();
        assert_eq!((o.strategy, o.threshold), (Strategy::Weight, 2.0));
        assert_eq!(p.groups.len(), 1);
    }

    #[test]
    fn rebalance_errors_name_the_file_the_line_and_the_key() {
        let cases: &[(&str, &[&str])] = &[
            (
                "rebalance = { pool = \"app\" }",
                &["line 2", "unknown field `pool`"],
            ),
            (
                "rebalance = { strategy = \"weight\", treshold = 1.2 }",
                &["line 2", "unknown field `treshold`"],
            ),
            (
                "rebalance = { threshold = 0.8 }",
                &["line 2: rebalance: threshold must be at least 1", "not 0.8"],
            ),
            (
                "rebalance = { min_load = -1 }",
                &["line 2: rebalance: min_load must be 0 or more, not -1"],
            ),
            (
                "rebalance = { strategy = \"fast\" }",
                &["line 2: rebalance: unknown strategy \"fast\": drain or weight"],
            ),
            (
                "rebalance = { window = \"5x\" }",
                &["line 2: rebalance: window: invalid duration \"5x\""],
            ),
            (
                "rebalance = { duration = \"0s\" }",
                &["line 2: rebalance: duration must be more than 0"],
            ),
            (
                "rebalance = \"yes\"",
                &["line 2", "rebalance", "true, false or a table"],
            ),
        ];
        for (line, want) in cases {
            let e = with_rebalance(line).unwrap_err().to_string();
            assert!(e.starts_with("r.toml: "), "{line}: {e}");
            for w in *want {
                assert!(e.contains(w), "{line}: want {w:?} in: {e}");
            }
        }
        // A key on a line of its own is named at its own line.
        let e = Plan::parse(
            &format!("{ONE_GROUP}\n[rebalance]\nstrategy = \"weight\"\nthreshold = 0.5\n"),
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 8: rebalance: threshold"), "{e}");
    }

    #[test]
    fn zdu_section_defaults_and_checks() {
        let text = "[zdu]\nurl = \"https://c.example:8090/\"\nusername = \"admin\"\npassword_env = \"CONF_PW\"\n\n[[group]]\nname = \"confluence\"\nnodes = [\"c1\"]\n[group.gate]\nzdu = true\n";
        let p = Plan::parse(text, "c.toml").unwrap();
        let z = p.zdu.as_ref().unwrap();
        assert_eq!(z.url, "https://c.example:8090");
        assert_eq!(z.state_path, "/rest/zdu/cluster/zdu/state");
        assert_eq!(z.node_path, "/rest/zdu/cluster/zdu/nodes/{id}");
        assert_eq!(z.node_id, "{node}");
        assert_eq!(p.groups[0].gate.as_ref().unwrap().check, GateCheck::Zdu);
        assert!(!format!("{z:?}").contains("CONF_PW") || format!("{z:?}").contains("password_env"));
        let e = Plan::parse(&text.replace("username = \"admin\"\n", ""), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1: [zdu]: username and password_env go together"),
            "{e}"
        );
        let e = Plan::parse(
            &text.replace("[zdu]\n", "[zdu]\nnode_path = \"/nodes\"\n"),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must hold {id}"), "{e}");
        let e = Plan::parse(
            &text.replace("[zdu]\n", "[zdu]\npasword = \"x\"\n"),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pasword") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn shell_safety() {
        for s in ["node1", "10.0.0.1:8080", "[::1]:80", "rails-1.example.com"] {
            assert!(shell_safe(s), "{s}");
        }
        for s in [
            "", "a b", "a;b", "$(id)", "a`b`", "a|b", "a'b", "a&b", "a>b",
        ] {
            assert!(!shell_safe(s), "{s}");
        }
    }
}
