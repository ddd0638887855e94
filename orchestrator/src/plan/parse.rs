//! `plan.toml` to a [`Plan`]: serde with `deny_unknown_fields` into raw
//! types that keep where each value is written, then every check, each
//! error naming the file, the line and the key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Bound, Condition};
use super::{
    DEFAULT_GATE_INTERVAL, DEFAULT_GATE_TIMEOUT, DEFAULT_HOOK_GRACE, DEFAULT_HOOK_TIMEOUT, Gate,
    GateCheck, Group, Hook, Lines, Pause, Plan, ZduConfig, shell_safe,
};
use crate::duration::{parse_duration, serde_opt};
use crate::error::{Error, Result};
use crate::rebalance::{RebalanceOptions, Strategy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(default)]
    preflight: Vec<Spanned<RawPreflight>>,
    finally: Option<Spanned<String>>,
    #[serde(default, with = "serde_opt")]
    hook_timeout: Option<Duration>,
    #[serde(default, with = "serde_opt")]
    hook_grace: Option<Duration>,
    zdu: Option<Spanned<RawZdu>>,
    pause: Option<Spanned<String>>,
    notify: Option<Spanned<String>>,
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
    hold: bool,
    #[serde(default)]
    revisit: bool,
    pause: Option<Spanned<String>>,
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
    on_failure: Option<Spanned<String>>,
    #[serde(default, with = "serde_opt")]
    timeout: Option<Duration>,
}

/// One `preflight` entry: a command, or a gate table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPreflight {
    Command(String),
    Gate(Box<RawGate>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    http: Option<String>,
    tcp: Option<String>,
    command: Option<String>,
    zdu: Option<bool>,
    prometheus: Option<String>,
    query: Option<String>,
    below: Option<f64>,
    above: Option<f64>,
    expect_status: Option<u16>,
    body: Option<String>,
    #[serde(default, with = "serde_opt")]
    timeout: Option<Duration>,
    #[serde(default, with = "serde_opt")]
    interval: Option<Duration>,
    #[serde(default, with = "serde_opt")]
    healthy_for: Option<Duration>,
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

struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    /// `pause = "after_first_node" | "after_group"`.
    fn pause(&self, p: Option<Spanned<String>>, whose: &str) -> Result<Option<Pause>> {
        let Some(p) = p else { return Ok(None) };
        match p.get_ref().as_str() {
            "after_first_node" => Ok(Some(Pause::AfterFirstNode)),
            "after_group" => Ok(Some(Pause::AfterGroup)),
            other => Err(self.err(
                p.span().start,
                format!("{whose}pause = {other:?}: after_first_node or after_group"),
            )),
        }
    }

    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        Error::Config(format!("{}: line {}: {msg}", self.origin, self.line(at)))
    }
}

impl Plan {
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
        let pause = cx.pause(raw.pause, "")?;
        let notify = match raw.notify {
            None => None,
            Some(u) => {
                let at = u.span().start;
                let u = u.into_inner();
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    // The URL is a secret: not repeated.
                    return Err(cx.err(at, "notify is not an http:// or https:// URL"));
                }
                Some(u)
            }
        };
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
        // Nodes a `hold` group keeps out of rotation, not yet revisited:
        // node → (group, where the group is written).
        let mut held: BTreeMap<String, (String, usize)> = BTreeMap::new();
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
            let mut nodes: Vec<String> = Vec::new();
            let mut node_lines = Vec::new();
            for n in raw_nodes {
                let n_at = n.span().start;
                let n = n.into_inner();
                if nodes.contains(&n) {
                    return Err(cx.err(n_at, format!("group {name}: node {n:?} is listed twice")));
                }
                match seen_nodes.get(&n) {
                    Some(other) if !g.revisit => {
                        return Err(cx.err(
                            n_at,
                            format!("group {name}: node {n:?} is already in group {other}; a node is upgraded once (a group that comes back to it says revisit = true)"),
                        ));
                    }
                    None if g.revisit => {
                        return Err(cx.err(
                            n_at,
                            format!("group {name}: revisit = true, but node {n:?} is in no earlier group"),
                        ));
                    }
                    _ => {}
                }
                seen_nodes.insert(n.clone(), name.clone());
                held.remove(&n);
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
            let on_failure = hook(g.hooks.on_failure, "on_failure", true)?;
            let group_pause = cx.pause(g.pause, &format!("group {name}: "))?;
            let gate = g
                .gate
                .map(|gt| gate(&cx, &name, gt, zdu.is_some()))
                .transpose()?;
            if g.hold {
                if !g.balanced {
                    return Err(cx.err(
                        at,
                        format!("group {name}: hold = true keeps nodes out of rotation, but balanced = false nodes are never in it"),
                    ));
                }
                for n in &nodes {
                    held.insert(n.clone(), (name.clone(), at));
                }
            }
            lines.groups.push(cx.line(at));
            lines.nodes.push(node_lines);
            groups.push(Group {
                name,
                nodes,
                batch,
                balanced: g.balanced,
                hold: g.hold,
                revisit: g.revisit,
                before,
                upgrade,
                first_node,
                after,
                after_group,
                on_failure,
                gate,
                pause: group_pause,
            });
        }
        if let Some((n, (g, at))) = held.into_iter().next() {
            return Err(cx.err(
                at,
                format!("group {g}: hold = true, but node {n:?} is in no later group with revisit = true; it would stay out of rotation"),
            ));
        }
        let mut preflight = Vec::new();
        let mut preflight_gates = Vec::new();
        for p in raw.preflight {
            let span = p.span();
            let p = match p.into_inner() {
                RawPreflight::Command(c) => Spanned::new(span, c),
                RawPreflight::Gate(g) => {
                    let g_at = span.start;
                    let gate = gate(&cx, "preflight", Spanned::new(span, *g), zdu.is_some())?;
                    let said = format!("{:?}", gate.check);
                    for v in ["{node}", "{address}", "{group}"] {
                        if said.contains(v) {
                            return Err(cx.err(
                                g_at,
                                format!(
                                    "preflight runs once for the plan, so its gate cannot use {v}"
                                ),
                            ));
                        }
                    }
                    preflight_gates.push(gate);
                    continue;
                }
            };
            let p_at = p.span().start;
            let command = p.into_inner();
            if command.trim().is_empty() {
                return Err(cx.err(p_at, "preflight: a command is empty"));
            }
            for v in ["{node}", "{address}", "{group}"] {
                if command.contains(v) {
                    return Err(cx.err(
                        p_at,
                        format!("preflight runs once for the plan, so it cannot use {v}"),
                    ));
                }
            }
            preflight.push(Hook {
                command,
                timeout: hook_default,
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
            preflight,
            preflight_gates,
            groups,
            finally,
            zdu,
            pause,
            notify,
            rebalance,
            hook_grace: raw.hook_grace.unwrap_or(DEFAULT_HOOK_GRACE),
            origin: origin.into(),
            lines,
        })
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
    if g.prometheus.is_some() {
        kinds.push("prometheus");
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
            "give exactly one of http, tcp, command, zdu or prometheus (found {})",
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
    if kinds[0] != "prometheus" && (g.query.is_some() || g.below.is_some() || g.above.is_some()) {
        return Err(bad(
            "query, below and above go with a prometheus gate".into()
        ));
    }
    let timeout = g.timeout.unwrap_or(DEFAULT_GATE_TIMEOUT);
    let interval = g.interval.unwrap_or(DEFAULT_GATE_INTERVAL);
    if timeout.is_zero() || interval.is_zero() {
        return Err(bad("timeout and interval must be more than 0".into()));
    }
    if g.healthy_for.is_some_and(|d| d.is_zero()) {
        return Err(bad("healthy_for must be more than 0".into()));
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
    } else if let Some(url) = g.prometheus {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!(
                "prometheus = {url:?} is not an http:// or https:// URL"
            )));
        }
        let query = match g.query {
            Some(q) if !q.trim().is_empty() => q,
            _ => return Err(bad("a prometheus gate needs a query".into())),
        };
        let condition = match (g.below, g.above) {
            (Some(x), None) if x.is_finite() => Condition::Below(Bound(x)),
            (None, Some(x)) if x.is_finite() => Condition::Above(Bound(x)),
            (None, None) | (Some(_), Some(_)) => {
                return Err(bad(
                    "a prometheus gate needs one of below or above (the value every sample must be under, or over)".into(),
                ));
            }
            _ => return Err(bad("below and above must be finite numbers".into())),
        };
        GateCheck::Prometheus {
            url: url.trim_end_matches('/').to_string(),
            query,
            condition,
        }
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
        healthy_for: g.healthy_for,
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
