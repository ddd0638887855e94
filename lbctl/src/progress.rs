//! What a person sees while lbctl works, on a terminal: the live progress
//! line on stderr (indicatif), and the line per finished step of a rolling
//! run on stdout.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use orchestrator::rolling::{ProgressEvent, StepReport, StepResult};

use crate::render::secs;

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

/// One line for a finished step: `rails/rails2 upgrade ok (1.2 s) exit 0`.
fn step_line(group: &str, node: &str, s: &StepReport) -> String {
    let place = match (group.is_empty(), node.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!("{group} "),
        (false, false) => format!("{group}/{node} "),
    };
    let result = serde_json::to_value(s.result)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let mut line = format!("{place}{} {result}", s.step);
    if let Some(ms) = s.ms {
        line.push_str(&format!(" ({})", secs(ms)));
    }
    if let Some(w) = s.waited_ms {
        line.push_str(&format!(", waited {w} ms"));
    }
    if let Some(c) = s.exit_code
        && c != 0
    {
        line.push_str(&format!(", exit {c}"));
    }
    if let Some(g) = &s.gate {
        line.push_str(&format!(
            ", {} {}: {} after {} look(s)",
            g.kind, g.target, g.last, g.attempts
        ));
    }
    if s.result == StepResult::Ok
        && let Some(m) = &s.message
    {
        line.push_str(&format!(": {m}"));
    }
    line
}

/// What `lbctl rolling` shows while it runs: a line per finished step on
/// stdout, and on a terminal a live line on stderr (group, node, step,
/// nodes done, elapsed, and what a wait still waits for).
#[derive(Debug)]
pub struct RollingDisplay {
    bar: Option<ProgressBar>,
    status: Mutex<String>,
}

impl RollingDisplay {
    pub fn new(terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("template"),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        RollingDisplay {
            bar,
            status: Mutex::new(String::new()),
        }
    }

    /// Whether a live line is shown.
    pub fn live(&self) -> bool {
        self.bar.is_some()
    }

    /// A line on stdout (above the live line, which stays on stderr).
    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl orchestrator::RollingProgress for RollingDisplay {
    fn step(&self, e: &ProgressEvent<'_>) {
        match e.finished {
            Some(s) => self.say(step_line(e.group, e.node, s)),
            None => {
                let place = match (e.group.is_empty(), e.node.is_empty()) {
                    (true, _) => String::new(),
                    (false, true) => format!("group {} · ", e.group),
                    (false, false) => format!("group {} · node {} · ", e.group, e.node),
                };
                let status = format!(
                    "{place}{} · {}/{} nodes done",
                    e.step, e.nodes_done, e.nodes_total
                );
                if let Some(b) = &self.bar {
                    b.set_message(status.clone());
                }
                *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
            }
        }
    }
}

impl orchestrator::Progress for RollingDisplay {
    fn waiting(&self, what: &str, pending: &[(String, Option<u64>)]) {
        if let Some(b) = &self.bar {
            let list: Vec<String> = pending
                .iter()
                .map(|(m, a)| match a {
                    Some(a) => format!("{m}: {a} active"),
                    None => format!("{m}: waiting"),
                })
                .collect();
            let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            b.set_message(format!("{status} · {what}: {}", list.join(", ")));
        }
    }

    fn finished(&self) {
        if let Some(b) = &self.bar {
            b.set_message(
                self.status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            );
        }
    }
}
