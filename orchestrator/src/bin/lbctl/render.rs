//! Text and JSON rendering. JSON goes to stdout as exactly one document;
//! everything else a person reads in text mode goes to stdout, warnings
//! and errors to stderr.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use orchestrator::Error;
use orchestrator::report::{ChangeReport, MemberChange, MemberStatus, RecoverReport, StatusReport};
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

pub fn error(out: &Output, e: &Error) {
    if out.json {
        json(&serde_json::json!({"error": {"kind": e.kind(), "message": e.to_string()}}));
    }
    eprintln!("lbctl: error: {e}");
}

/// The live progress line on a terminal: what a wait still waits for.
#[derive(Debug)]
pub struct ProgressLine {
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressLine {
    pub fn new() -> Self {
        ProgressLine {
            bar: Mutex::new(None),
        }
    }
}

impl orchestrator::Progress for ProgressLine {
    fn waiting(&self, what: &str, pending: &[(String, Option<u64>)]) {
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("template"),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let list: Vec<String> = pending
            .iter()
            .map(|(m, a)| match a {
                Some(a) => format!("{m}: {a} active"),
                None => format!("{m}: waiting"),
            })
            .collect();
        b.set_message(format!(
            "{what}: {}",
            if list.is_empty() {
                "done".into()
            } else {
                list.join(", ")
            }
        ));
    }

    fn finished(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}
