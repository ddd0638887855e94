//! Text and JSON rendering. JSON goes to stdout as exactly one document;
//! everything else a person reads in text mode goes to stdout, warnings
//! and errors to stderr.

use crate::error::CliError;
use orchestrator::report::{
    ChangeReport, HistoryReport, MemberChange, MemberStatus, RecoverReport, StatusReport,
};
use orchestrator::rolling::{RollingReport, RunResult, Step, StepReport, StepResult};
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

fn json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).expect("reports serialize"));
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn table(rows: Vec<Vec<String>>) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn member_cells(m: &MemberStatus) -> Vec<String> {
    vec![
        m.balancer.clone(),
        m.kind.clone(),
        m.pool.clone(),
        m.member.clone(),
        m.admin.to_string(),
        m.health.to_string(),
        opt(m.active),
        opt(m.weight),
    ]
}

const HEAD: [&str; 8] = [
    "BALANCER", "KIND", "POOL", "MEMBER", "ADMIN", "HEALTH", "ACTIVE", "WEIGHT",
];

pub fn status(out: &Output, r: &StatusReport) {
    if out.json {
        return json(r);
    }
    let mut rows = vec![
        std::iter::once("NODE")
            .chain(HEAD)
            .map(String::from)
            .collect(),
    ];
    for n in &r.nodes {
        if n.members.is_empty() {
            rows.push(vec![n.node.clone(), "(no member on any balancer)".into()]);
        }
        for m in &n.members {
            let mut row = vec![n.node.clone()];
            row.extend(member_cells(m));
            rows.push(row);
        }
    }
    table(rows);
    for u in &r.unmatched {
        println!(
            "unmatched: {} {} pool {}: server `{}` ({}); no node can be told from it",
            u.kind, u.balancer, u.pool, u.server, u.why
        );
    }
}

fn warnings(out: &Output, w: &[String]) {
    if !out.quiet {
        for w in w {
            eprintln!("lbctl: warning: {w}");
        }
    }
}

pub fn change(out: &Output, r: &ChangeReport) {
    if out.json {
        warnings(out, &r.warnings);
        return json(r);
    }
    warnings(out, &r.warnings);
    if out.quiet {
        return;
    }
    for n in &r.nodes {
        let what = serde_json::to_value(n.result)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        if r.dry_run {
            println!("{}: dry run, nothing changed; would be {what}", n.node);
        } else {
            println!("{}: {what} (waited {} ms)", n.node, r.waited_ms);
        }
        let mut rows = vec![
            std::iter::once("")
                .chain(HEAD)
                .chain(["CHANGE"])
                .map(String::from)
                .collect::<Vec<_>>(),
        ];
        for m in &n.members {
            let mut row = vec![String::new()];
            row.extend(member_cells(&m.status));
            row.push(match (m.change, r.dry_run) {
                (MemberChange::Applied, false) => "applied".into(),
                (MemberChange::Applied, true) => "would apply".into(),
                (MemberChange::Unchanged, _) => "unchanged".into(),
            });
            rows.push(row);
        }
        table(rows);
    }
}

pub fn recover(out: &Output, r: &RecoverReport) {
    if out.json {
        return json(r);
    }
    for b in &r.running {
        eprintln!("lbctl: warning: run {b} is unfinished but its process still runs: left alone");
    }
    if out.quiet {
        return;
    }
    if r.skipped_lines > 0 {
        println!(
            "{} unreadable journal line(s) skipped (torn or not UTF-8); every other line was read",
            r.skipped_lines
        );
    }
    if r.recovered.is_empty() {
        println!("nothing to recover: no interrupted run left a member changed");
        return;
    }
    let verb = if r.dry_run {
        "would put back"
    } else {
        "put back"
    };
    for x in &r.recovered {
        let note = if x.change == MemberChange::Unchanged {
            " (already so)"
        } else {
            ""
        };
        println!(
            "{verb} {} {}/{} {} to {}{note}  [node {}, interrupted: {}]",
            x.balancer, x.pool, x.member, x.what, x.restore, x.node, x.command
        );
    }
}

fn loads(m: &orchestrator::rebalance::Measure) -> String {
    m.members
        .iter()
        .map(|x| {
            let mark = if x.counted {
                String::new()
            } else {
                format!(" ({}, not counted)", x.admin)
            };
            format!("{} {}{mark}", x.member, x.load)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn rebalance(out: &Output, r: &orchestrator::RebalanceReport) {
    if out.json {
        return json(r);
    }
    if out.quiet {
        return;
    }
    rebalance_lines(r);
}

/// The per-pool lines of a rebalance (`lbctl rebalance`, and the rolling
/// plan's `rebalance` step).
fn rebalance_lines(r: &orchestrator::RebalanceReport) {
    use orchestrator::rebalance::PoolOutcome;
    if r.dry_run {
        println!("dry run, nothing changed");
    }
    for p in &r.pools {
        let what = serde_json::to_value(p.outcome)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default();
        println!("{} pool {} ({}): {what}", p.balancer, p.pool, p.kind);
        if let Some(why) = &p.reason {
            println!("  {why}");
        }
        if p.outcome == PoolOutcome::NotMeasurable {
            continue;
        }
        for (label, m) in [("before", &p.before), ("after", &p.after)] {
            if let Some(m) = m {
                println!(
                    "  {label}: skew {:.2} (max {:.2} / mean {:.2}), cv {:.2}; load: {}",
                    m.skew,
                    m.max,
                    m.mean,
                    m.cv,
                    loads(m)
                );
            }
        }
        for a in &p.actions {
            let verb = if r.dry_run { "would set" } else { "set" };
            let after = a
                .load_after
                .map(|l| format!(", load {} -> {l}", a.load_before))
                .unwrap_or_else(|| format!(", load {}", a.load_before));
            let held = if r.dry_run {
                String::new()
            } else {
                format!(" for {} ms, then back to {}", a.held_ms, a.from)
            };
            println!(
                "  {verb} {} {} {} -> {}{held}{after}",
                a.member, a.what, a.from, a.to
            );
        }
        println!("  time: {} ms", p.elapsed_ms);
    }
    if r.pools.is_empty() {
        println!("no pool to look at");
    }
}

pub fn error(out: &Output, e: &CliError) {
    if let Some(r) = e.report() {
        warnings(out, &r.warnings);
    }
    if out.json {
        let err = serde_json::json!({"kind": e.kind(), "message": e.to_string()});
        match e.report() {
            // A rolling run's report says where it stopped: it is the document.
            Some(r) => {
                let mut v = serde_json::to_value(r).expect("reports serialize");
                v["error"] = err;
                json(&v);
            }
            None => json(&serde_json::json!({ "error": err })),
        }
    }
    eprintln!("lbctl: error: {e}");
}

/// `850 ms`, `1.2 s`.
pub fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

pub fn rolling(out: &Output, r: &RollingReport) {
    if out.json {
        warnings(out, &r.warnings);
        return json(r);
    }
    warnings(out, &r.warnings);
    if out.quiet {
        return;
    }
    if r.paused.is_some() {
        println!("{}", r.summary());
        return;
    }
    if r.result != RunResult::Planned {
        let t = &r.timing;
        println!(
            "rolling upgrade done: {}/{} nodes in {} (hooks {}, waiting for connections {}, \
             gates {}, health {}; orchestration {} = {} ms per node)",
            r.nodes_done,
            r.nodes_total,
            secs(t.elapsed_ms),
            secs(t.hooks_ms),
            secs(t.drain_wait_ms),
            secs(t.gate_ms),
            secs(t.health_wait_ms),
            secs(t.overhead_ms),
            t.overhead_per_node_ms
        );
        if let Some(l) = &r.hook_log {
            println!("hook log: {l}");
        }
        if let Some(rb) = &r.rebalance {
            println!(
                "rebalance once the last node was back ({}, threshold {}), in {}:",
                serde_json::to_value(rb.strategy)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                rb.threshold,
                secs(t.rebalance_ms)
            );
            rebalance_lines(rb);
        }
        return;
    }
    println!(
        "plan {}: {} nodes in {} groups (dry run: nothing changed)",
        r.plan,
        r.nodes_total,
        r.nodes
            .iter()
            .map(|n| n.group.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    let planned = |s: &StepReport| {
        let mark = match s.result {
            StepResult::Skipped => " [done earlier, skipped]".to_string(),
            _ if s.step == Step::OnFailure => " [only if a step of this node fails]".to_string(),
            _ if s.step == Step::Pause => format!(": {}", s.message.clone().unwrap_or_default()),
            _ => String::new(),
        };
        format!(
            "{:<12}{}{mark}",
            s.step.as_str(),
            s.command.clone().or(s.message.clone()).unwrap_or_default()
        )
    };
    let plan_steps = |pred: &dyn Fn(&StepReport) -> bool| {
        for s in r.steps.iter().filter(|s| pred(s)) {
            println!("  {}", planned(s));
        }
    };
    let first = |s: &StepReport| matches!(s.step, Step::Preflight | Step::ZduStart);
    // A pause after a node shows after that node.
    let inline = |s: &StepReport| {
        s.step == Step::Pause && s.command.as_deref().is_some_and(|c| c.contains('/'))
    };
    plan_steps(&|s| s.group.is_none() && first(s));
    let mut group: Option<&str> = None;
    for n in &r.nodes {
        if group != Some(n.group.as_str()) {
            if let Some(g) = group {
                plan_steps(&|s| s.group.as_deref() == Some(g) && !inline(s));
            }
            group = Some(&n.group);
            println!(
                "group {}{}",
                n.group,
                if n.balanced {
                    ""
                } else {
                    " (not balanced: hooks and gates only)"
                }
            );
        }
        println!(
            "  {} ({}){}",
            n.node,
            n.address,
            match n.result {
                RunResult::Skipped => " [done earlier, skipped]",
                RunResult::LeftOut => " [left out: --skip]",
                _ => "",
            }
        );
        for (i, s) in n.steps.iter().enumerate() {
            println!("    {}. {}", i + 1, planned(s));
        }
        let here = format!("after {}/{}", n.group, n.node);
        for s in r
            .steps
            .iter()
            .filter(|s| inline(s) && s.command.as_ref() == Some(&here))
        {
            println!("  {}", planned(s));
        }
    }
    if let Some(g) = group {
        plan_steps(&|s| s.group.as_deref() == Some(g) && !inline(s));
    }
    plan_steps(&|s| s.group.is_none() && !first(s) && !inline(s));
}

pub fn history(out: &Output, r: &HistoryReport) {
    if out.json {
        return json(r);
    }
    if out.quiet {
        return;
    }
    if r.skipped_lines > 0 {
        println!(
            "{} unreadable journal line(s) skipped (torn or not UTF-8)",
            r.skipped_lines
        );
    }
    if r.runs.is_empty() {
        println!("no run in the journal matches");
        return;
    }
    for run in &r.runs {
        let result = serde_json::to_value(run.result)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{}  {}  {}  {}{}",
            run.started,
            run.who,
            run.command,
            result,
            run.reason
                .as_ref()
                .map_or(String::new(), |r| format!("  reason: {r}"))
        );
        for c in &run.changes {
            let res = c
                .result
                .and_then(|o| serde_json::to_value(o).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "no outcome".into());
            println!(
                "    {} {}/{} {} {} -> {} ({res})",
                c.balancer, c.pool, c.member, c.what, c.from, c.to
            );
        }
    }
}

/// `lbctl discover`: the proposal as TOML on stdout (or the JSON
/// document); with `--write`, where it went on stderr.
pub fn discover(out: &Output, d: &crate::discover::Discovery) {
    if out.json {
        json(d);
        return;
    }
    print!("{}", d.toml());
    if d.written && !out.quiet {
        eprintln!("lbctl: {} node(s) appended to the inventory", d.nodes.len());
    }
    if d.nodes.is_empty() && !out.quiet {
        eprintln!("lbctl: no member left to attribute to a new node");
    }
}
