//! The plan as data: [`steps`] builds, once, the ordered list of what a
//! run does: the plan's and the groups' own steps, and the batches of
//! nodes with each node's steps, every hook and gate resolved (a group
//! without a gate gets the node's `health` URL as an HTTP gate) and every
//! step marked when the run it resumes did it. `--dry-run` renders that
//! list ([`planned`]), the executor (`exec/`) runs it.
//!
//! The order: `preflight` (each check) → `zdu_start` → for each group,
//! its batches (for each node: `drain`, `before`, `upgrade` or
//! `first_node`, `after`, `gate`, `undrain` — none for a `hold` group,
//! whose nodes a later `revisit` group takes up again), then
//! `after_group` → `zdu_approve` → `rebalance` → `finally`. A node's
//! `on_failure` runs only when one of its steps fails. A batch's nodes are drained together and undrained
//! together; their steps in between run concurrently.
//!
//! **A new kind of step** is added here: a variant of [`Step`] (with its
//! journal name in [`Step::as_str`]), its place in [`steps`] with the
//! [`Action`] that runs it; the compiler then asks for what the action
//! does in `Exec::action` (`exec/mod.rs`) and for its dry-run words in
//! [`planned_step`].
//!
//! Resume: a step the resumed runs did is skipped (reported `skipped`),
//! except the re-checks ([`Step::reruns`]): a node not finished is drained
//! again first, never trusted to be still out. A node finished is skipped
//! whole.

use super::gate::{self, GateReport};
use super::history::History;
use super::hooks::Vars;
use super::rebalance;
use super::report::{NodeReport, RollingReport, RunResult, StepReport, StepResult};
use super::zdu;
use crate::fleet::{Fleet, Node};
use crate::plan::{
    DEFAULT_GATE_INTERVAL, DEFAULT_GATE_TIMEOUT, Gate, GateCheck, Group, Hook, Pause, Plan,
    ZduConfig,
};
use crate::rebalance::RebalanceOptions;

pub use crate::engine::journal::Step;

/// Runs again on resume even when an earlier run did it: re-checks that
/// are safe to repeat. A node not finished is drained again (a no-op when
/// it is still out) and so undrained again; Confluence's upgrade mode is
/// looked at again (entered only if the cluster is `STABLE`).
fn reruns(step: Step) -> bool {
    matches!(
        step,
        Step::Preflight | Step::ZduStart | Step::Drain | Step::Undrain
    )
}

/// Runs one of the plan's hooks (its time counts as the hooks').
pub(super) fn is_hook(step: Step) -> bool {
    matches!(
        step,
        Step::Preflight
            | Step::OnFailure
            | Step::Before
            | Step::Upgrade
            | Step::FirstNode
            | Step::After
            | Step::AfterGroup
            | Step::Finally
    )
}

/// One step of the list, resolved.
#[derive(Debug)]
pub(super) struct Item<'p> {
    /// Which step.
    pub step: Step,
    /// What runs it.
    pub action: Action<'p>,
    /// What the report names as its command: a hook's command substituted,
    /// a gate's kind and target, the rebalance in words.
    pub command: Option<String>,
    /// The run this one resumes did it: skip it.
    pub done: bool,
}

/// What runs a step.
#[derive(Debug)]
pub(super) enum Action<'p> {
    /// Take the batch's nodes out of rotation ([`Fleet::drain`]).
    Drain,
    /// A hook of the group or of the plan.
    Hook(&'p Hook),
    /// A health gate, and what `--dry-run` says it checks.
    Gate(Gate, GateReport),
    /// Put the batch's nodes that passed back ([`Fleet::undrain`]).
    Undrain,
    /// Confluence: enable upgrade mode.
    ZduStart(&'p ZduConfig),
    /// Confluence: approve the upgrade tasks.
    ZduApprove(&'p ZduConfig),
    /// [`Fleet::rebalance`] over every pool.
    Rebalance(&'p RebalanceOptions),
    /// A pause point: the run stops here (exit 0) until `--resume`.
    Pause(Pause),
}

/// One entry of the ordered list.
#[derive(Debug)]
pub(super) enum Unit<'p> {
    /// A step of the plan (`group` is `None`) or of a group.
    Step {
        /// The group, for a group's step.
        group: Option<&'p Group>,
        /// The step.
        item: Box<Item<'p>>,
    },
    /// Nodes of one group out of rotation at once.
    Batch {
        /// Their group.
        group: &'p Group,
        /// The nodes, in order.
        nodes: Vec<NodeSteps<'p>>,
    },
}

/// One node of a batch and its steps, in order.
#[derive(Debug)]
pub(super) struct NodeSteps<'p> {
    /// Its place among the plan's nodes (and the report's).
    pub index: usize,
    /// Its name.
    pub name: &'p str,
    /// The runs this one resumes finished it: skip it whole.
    pub done: bool,
    /// `--skip` (now or in a run this one resumes): left out of the rest
    /// of the run, as it is.
    pub skip: bool,
    /// Its steps.
    pub steps: Vec<Item<'p>>,
    /// The group's `on_failure` hook for this node: runs only when one
    /// of its steps fails.
    pub on_failure: Option<Item<'p>>,
}

/// The values hooks and gates see for step `step` of node `node` of group
/// `g` (the run's id left empty).
pub(super) fn vars(fleet: &Fleet, g: Option<&Group>, node: Option<&str>, step: Step) -> Vars {
    let n = node.and_then(|n| fleet.nodes().get(n));
    Vars {
        node: n.map(|n| n.name.clone()).unwrap_or_default(),
        address: n.map(|n| n.address.clone()).unwrap_or_default(),
        group: g.map(|g| g.name.clone()).unwrap_or_default(),
        step: step.as_str().into(),
        run: String::new(),
    }
}

/// The gate a node of `g` passes: the group's, else an HTTP gate on the
/// node's `health` URL, else none.
fn gate_for(g: &Group, node: &Node) -> Option<Gate> {
    g.gate.clone().or_else(|| {
        node.health.as_ref().map(|url| Gate {
            check: GateCheck::Http {
                url: url.clone(),
                expect_status: 200,
                body: None,
            },
            timeout: DEFAULT_GATE_TIMEOUT,
            interval: DEFAULT_GATE_INTERVAL,
            healthy_for: None,
        })
    })
}

/// The group's batches (indexes into its nodes): the first node alone
/// when it has its own hook (a deploy node), then `batch` nodes at a time.
fn batches(g: &Group) -> Vec<Vec<usize>> {
    let idx: Vec<usize> = (0..g.nodes.len()).collect();
    let (head, rest) = if g.first_node.is_some() {
        (vec![vec![0]], &idx[1..])
    } else {
        (Vec::new(), &idx[..])
    };
    head.into_iter()
        .chain(rest.chunks(g.batch.max(1)).map(<[usize]>::to_vec))
        .collect()
}

/// Every step of `plan` over `fleet`, in order, marked done where `hist`
/// says the resumed runs did it.
///
/// `skip`: nodes `--skip` leaves out (`group/node` or `node`, for every
/// group the node is in); so are those a resumed run skipped.
pub(super) fn steps<'p>(
    plan: &'p Plan,
    fleet: &Fleet,
    hist: &History,
    skip: &[String],
) -> Vec<Unit<'p>> {
    let own = |group: Option<&'p Group>, step: Step, action: Action<'p>, command| Unit::Step {
        group,
        item: Box::new(Item {
            step,
            action,
            command,
            done: !reruns(step) && hist.done(group.map_or("", |g| &g.name), "", step),
        }),
    };
    let mut units = Vec::new();
    for h in &plan.preflight {
        let command = h.command.clone();
        units.push(own(None, Step::Preflight, Action::Hook(h), Some(command)));
    }
    for gt in &plan.preflight_gates {
        let vars = vars(fleet, None, None, Step::Preflight);
        let rep = gate::planned(gt, &vars, plan.zdu.as_ref().map(|z| z.node_id.as_str()));
        let command = format!("{} {}", rep.kind, rep.target);
        units.push(own(
            None,
            Step::Preflight,
            Action::Gate(gt.clone(), rep),
            Some(command),
        ));
    }
    if let Some(z) = &plan.zdu {
        units.push(own(None, Step::ZduStart, Action::ZduStart(z), None));
    }
    let mut first = 0;
    for (gi, g) in plan.groups.iter().enumerate() {
        for (bi, batch) in batches(g).into_iter().enumerate() {
            let nodes: Vec<NodeSteps<'p>> = batch
                .into_iter()
                .map(|ni| node_steps(plan, fleet, hist, g, ni, first + ni, skip))
                .collect();
            let after = format!("after {}/{}", g.name, nodes[0].name);
            units.push(Unit::Batch { group: g, nodes });
            // The plan's first node (unless its group pauses there
            // itself), or the group's own.
            if bi == 0 && gi == 0 && plan.pause == Some(Pause::AfterFirstNode) && g.pause.is_none()
            {
                let p = Action::Pause(Pause::AfterFirstNode);
                units.push(own(None, Step::Pause, p, Some(after.clone())));
            }
            if bi == 0 && g.pause == Some(Pause::AfterFirstNode) {
                let p = Action::Pause(Pause::AfterFirstNode);
                units.push(own(Some(g), Step::Pause, p, Some(after)));
            }
        }
        first += g.nodes.len();
        if let Some(h) = &g.after_group {
            let command = vars(fleet, Some(g), None, Step::AfterGroup).substitute(&h.command);
            units.push(own(
                Some(g),
                Step::AfterGroup,
                Action::Hook(h),
                Some(command),
            ));
        }
        if g.pause.or(plan.pause) == Some(Pause::AfterGroup) {
            let p = Action::Pause(Pause::AfterGroup);
            let at = format!("after group {}", g.name);
            units.push(own(Some(g), Step::Pause, p, Some(at)));
        }
    }
    if let Some(z) = &plan.zdu {
        units.push(own(None, Step::ZduApprove, Action::ZduApprove(z), None));
    }
    if let Some(o) = &plan.rebalance {
        let command = rebalance::describe(o);
        units.push(own(
            None,
            Step::Rebalance,
            Action::Rebalance(o),
            Some(command),
        ));
    }
    if let Some(h) = &plan.finally {
        let command = h.command.clone();
        units.push(own(None, Step::Finally, Action::Hook(h), Some(command)));
    }
    // Nothing to pause before.
    while matches!(units.last(), Some(Unit::Step { item, .. }) if item.step == Step::Pause) {
        units.pop();
    }
    units
}

/// The steps of node `ni` of group `g`, the plan's node `index`.
fn node_steps<'p>(
    plan: &'p Plan,
    fleet: &Fleet,
    hist: &History,
    g: &'p Group,
    ni: usize,
    index: usize,
    skip: &[String],
) -> NodeSteps<'p> {
    let n = g.nodes[ni].as_str();
    let node_done = hist.node_done(&g.name, n);
    let skip = !node_done && (hist.node_skipped(&g.name, n) || skip_named(skip, &g.name, n));
    let mut steps = Vec::new();
    let mut push = |step: Step, action: Action<'p>| {
        let command = match &action {
            Action::Hook(h) => Some(vars(fleet, Some(g), Some(n), step).substitute(&h.command)),
            Action::Gate(gt, planned) => Some(format!(
                "{} {}{}",
                planned.kind,
                planned.target,
                gt.healthy_for.map_or(String::new(), |d| format!(
                    ", then healthy for {}",
                    crate::duration::format_duration(d)
                ))
            )),
            _ => None,
        };
        let done = node_done || (!reruns(step) && hist.done(&g.name, n, step));
        steps.push(Item {
            step,
            action,
            command,
            done,
        });
    };
    if g.balanced {
        push(Step::Drain, Action::Drain);
    }
    if let Some(h) = &g.before {
        push(Step::Before, Action::Hook(h));
    }
    match (&g.first_node, &g.upgrade) {
        (Some(h), _) if ni == 0 => push(Step::FirstNode, Action::Hook(h)),
        (_, Some(h)) => push(Step::Upgrade, Action::Hook(h)),
        _ => {}
    }
    if let Some(h) = &g.after {
        push(Step::After, Action::Hook(h));
    }
    // No gate when the group has none and the node no health URL.
    if let Some(gt) = fleet.nodes().get(n).and_then(|node| gate_for(g, node)) {
        let planned = gate::planned(
            &gt,
            &vars(fleet, Some(g), Some(n), Step::Gate),
            plan.zdu.as_ref().map(|z| z.node_id.as_str()),
        );
        push(Step::Gate, Action::Gate(gt, planned));
    }
    // A held node stays out until a later group revisits it.
    if g.balanced && !g.hold {
        push(Step::Undrain, Action::Undrain);
    }
    let on_failure = g.on_failure.as_ref().map(|h| Item {
        step: Step::OnFailure,
        action: Action::Hook(h),
        command: Some(vars(fleet, Some(g), Some(n), Step::OnFailure).substitute(&h.command)),
        done: false,
    });
    NodeSteps {
        index,
        name: n,
        done: node_done,
        skip,
        steps,
        on_failure,
    }
}

/// Whether `--skip` names node `n` of group `g` (`NODE` or `GROUP/NODE`).
pub(super) fn skip_named(skip: &[String], g: &str, n: &str) -> bool {
    skip.iter()
        .any(|s| s == n || s.split_once('/') == Some((g, n)))
}

/// `--dry-run`: `units` written into the report `rep` (made for the plan,
/// with each balanced node's members), every step `planned` or `skipped`.
pub(super) fn planned(units: &[Unit<'_>], rep: &mut RollingReport) {
    rep.result = RunResult::Planned;
    for u in units {
        match u {
            Unit::Step { group, item } => {
                let mut s = planned_step(item, &[]);
                s.group = group.map(|g| g.name.clone());
                rep.steps.push(s);
            }
            Unit::Batch { nodes, .. } => {
                for n in nodes {
                    let node: &mut NodeReport = &mut rep.nodes[n.index];
                    node.steps = n
                        .steps
                        .iter()
                        .map(|i| planned_step(i, &node.members))
                        .collect();
                    if let Some(i) = &n.on_failure {
                        let mut s = planned_step(i, &[]);
                        s.message = Some("only if a step of this node fails".into());
                        node.steps.push(s);
                    }
                    node.result = if n.done {
                        RunResult::Skipped
                    } else if n.skip {
                        RunResult::LeftOut
                    } else {
                        RunResult::Planned
                    };
                    if n.done {
                        rep.nodes_done += 1;
                    }
                }
            }
        }
    }
}

/// One step as `--dry-run` shows it: what it will do, in words.
fn planned_step(item: &Item<'_>, members: &[String]) -> StepReport {
    let mut s = StepReport::new(item.step, item.command.clone(), StepResult::Planned);
    match &item.action {
        Action::Drain => {
            s.command = Some(format!(
                "guard, drain, wait until no connection is left, maint: {}",
                members.join(", ")
            ));
        }
        Action::Undrain => {
            s.command = Some("ready everywhere, wait until every balancer sees it up".into());
        }
        Action::Gate(_, planned) => s.gate = Some(planned.clone()),
        Action::ZduStart(z) => s.command = Some(zdu::describe_start(z)),
        Action::ZduApprove(z) => s.command = Some(zdu::describe_approve(z)),
        Action::Pause(p) => {
            s.message = Some(format!(
                "stop here (pause = {:?}); `--resume` goes on",
                p.as_str()
            ));
        }
        Action::Hook(_) | Action::Rebalance(_) => {}
    }
    if item.done {
        s.result = StepResult::Skipped;
        s.message = Some("done in an earlier run".into());
    }
    s
}
