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

mod parse;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::rebalance::RebalanceOptions;

/// How long a hook may run unless the plan says otherwise.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a stopped hook's process group gets between SIGTERM and
/// SIGKILL unless the plan says otherwise (`hook_grace`).
pub const DEFAULT_HOOK_GRACE: Duration = Duration::from_secs(5);
/// How long a gate waits unless the plan says otherwise.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How often a gate looks unless the plan says otherwise.
pub const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(2);

/// A whole plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The file it was read from (`None` when parsed from text).
    pub path: Option<PathBuf>,
    /// `preflight = ["…"]`: commands run before anything changes (before
    /// Confluence's upgrade mode and the first drain); one that fails
    /// refuses the run (exit 4).
    pub preflight: Vec<Hook>,
    /// `preflight = [{ http = "…" }, …]`: gates checked once, after the
    /// preflight commands, before anything changes; one that does not
    /// pass refuses the run (exit 4).
    pub preflight_gates: Vec<Gate>,
    /// The groups, in the order they run.
    pub groups: Vec<Group>,
    /// Runs once after every group (GitLab's post-deployment migrations).
    pub finally: Option<Hook>,
    /// Confluence Data Center's zero-downtime-upgrade API.
    pub zdu: Option<ZduConfig>,
    /// `pause = "after_first_node" | "after_group"`: where the run stops
    /// for a person to look (exit 0, result `paused`; `--resume` goes on).
    /// A group's own `pause` replaces this one for that group.
    pub pause: Option<Pause>,
    /// `notify = "URL"`: every step event POSTed there as JSON (retried,
    /// never holding the upgrade back). The URL is treated as a secret.
    pub notify: Option<String>,
    /// `rebalance = true` or `rebalance = { … }`: [`Fleet::rebalance`](crate::Fleet::rebalance) over
    /// every pool once the last node is back (before `finally`). `None`
    /// when the key is absent or `false`.
    pub rebalance: Option<RebalanceOptions>,
    /// `hook_grace = "5s"`: when a hook (or a gate's command) is stopped
    /// (SIGINT, SIGTERM, its timeout), how long its process group gets
    /// between SIGTERM and SIGKILL, counted from the SIGTERM.
    pub hook_grace: Duration,
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
    /// `hold = true`: its nodes stay out of rotation after their gate,
    /// until a later `revisit` group (GitLab's deploy node, left drained
    /// until its post-deployment migrations).
    pub hold: bool,
    /// `revisit = true`: its nodes were in an earlier group, and run once
    /// more (a deploy node's post-deployment migrations).
    pub revisit: bool,
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
    /// When a node's hook or gate fails: run with that node's values (a
    /// rollback). The node returns to rotation only when this passes and
    /// so does the gate after it; the run still stops.
    pub on_failure: Option<Hook>,
    /// What a node must pass before it returns to rotation.
    pub gate: Option<Gate>,
    /// Where the run pauses in this group (else the plan's `pause`).
    pub pause: Option<Pause>,
}

/// A pause point: the run stops there cleanly for a person to look, and
/// `--resume` goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Once the first node (the first batch) is back in rotation: the
    /// plan's first node, or a group's.
    AfterFirstNode,
    /// Once a group (its `after_group` included) is done.
    AfterGroup,
}

impl Pause {
    /// As the plan writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pause::AfterFirstNode => "after_first_node",
            Pause::AfterGroup => "after_group",
        }
    }
}

impl Group {
    /// A balanced group of `nodes`, batch 1, no hooks and no gate.
    pub fn new<S: AsRef<str>>(name: &str, nodes: &[S]) -> Group {
        Group {
            name: name.into(),
            nodes: nodes.iter().map(|n| n.as_ref().to_owned()).collect(),
            batch: 1,
            balanced: true,
            hold: false,
            revisit: false,
            before: None,
            upgrade: None,
            first_node: None,
            after: None,
            after_group: None,
            on_failure: None,
            gate: None,
            pause: None,
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
    /// `healthy_for`: once it passes, it must keep passing (every
    /// `interval`) for this long; a failure within it fails the node.
    pub healthy_for: Option<Duration>,
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
    /// A Prometheus instant query (templated) whose every sample meets
    /// `condition`; no sample is "not yet".
    Prometheus {
        /// The server's base URL, e.g. `http://prometheus:9090`.
        url: String,
        /// The PromQL expression.
        query: String,
        /// What every sample must meet.
        condition: Condition,
    },
}

/// What a metric gate's samples must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `below = X`: every sample `< X`.
    Below(Bound),
    /// `above = X`: every sample `> X`.
    Above(Bound),
}

impl Condition {
    /// Whether `v` meets it (NaN never does).
    pub fn holds(self, v: f64) -> bool {
        match self {
            Condition::Below(b) => v < b.0,
            Condition::Above(b) => v > b.0,
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::Below(b) => write!(f, "< {}", b.0),
            Condition::Above(b) => write!(f, "> {}", b.0),
        }
    }
}

/// A finite threshold (compared bit for bit, so that plans compare).
#[derive(Debug, Clone, Copy)]
pub struct Bound(pub f64);

impl PartialEq for Bound {
    fn eq(&self, o: &Bound) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}

impl Eq for Bound {}

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

impl Plan {
    /// A plan of `groups`, built in code.
    pub fn new(groups: Vec<Group>) -> Plan {
        Plan {
            path: None,
            preflight: Vec::new(),
            preflight_gates: Vec::new(),
            groups,
            finally: None,
            zdu: None,
            pause: None,
            notify: None,
            rebalance: None,
            hook_grace: DEFAULT_HOOK_GRACE,
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
