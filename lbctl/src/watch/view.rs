//! Drawing the watch: a title, the runs in progress, the members' table
//! and the keys.

use std::time::Instant;

use lb_core::{AdminState, Health};
use orchestrator::format_duration;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use time::OffsetDateTime;

use super::model::{HISTORY, Model, sparkline};
use super::runs::RunInProgress;

/// Draws `model` as of `now` (highlights) and `wall` (elapsed times).
pub fn draw(frame: &mut Frame<'_>, model: &Model, now: Instant, wall: OffsetDateTime) {
    let runs = run_lines(&model.runs, wall);
    let [title, header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(runs.len() as u16),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let nodes = {
        let mut n: Vec<&str> = model.rows.iter().map(|r| r.key.0.as_str()).collect();
        n.dedup();
        n.sort_unstable();
        n.dedup();
        n.len()
    };
    let balancers = {
        let mut b: Vec<&str> = model.rows.iter().map(|r| r.key.1.as_str()).collect();
        b.sort_unstable();
        b.dedup();
        b.len()
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("lbctl watch", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  {nodes} nodes  {balancers} balancers  every {}  sorted by {}  {:02}:{:02}:{:02} UTC",
                format_duration(model.interval),
                model.sort.as_str(),
                wall.hour(),
                wall.minute(),
                wall.second()
            )),
        ])),
        title,
    );
    frame.render_widget(Paragraph::new(runs), header);

    let head = TableRow::new(
        [
            "NODE", "BALANCER", "POOL", "MEMBER", "ADMIN", "HEALTH", "ACTIVE", "HISTORY", "WEIGHT",
        ]
        .map(|h| Cell::from(h).style(Style::new().add_modifier(Modifier::BOLD))),
    );
    let peak = model.peak();
    let rows = model.rows.iter().map(|r| {
        let admin = match r.admin {
            AdminState::Ready => Style::new().fg(Color::Green),
            AdminState::Drain => Style::new().fg(Color::Yellow),
            _ => Style::new().fg(Color::Red),
        };
        let health = match r.health {
            Health::Up => Style::new().fg(Color::Green),
            Health::Down => Style::new().fg(Color::Red),
            _ => Style::new(),
        };
        let row = TableRow::new(vec![
            Cell::from(r.key.0.clone()),
            Cell::from(r.key.1.clone()),
            Cell::from(r.key.2.clone()),
            Cell::from(r.key.3.clone()),
            Cell::from(r.admin.to_string()).style(admin),
            Cell::from(r.health.to_string()).style(health),
            Cell::from(opt(r.active)),
            Cell::from(sparkline(&r.history, peak)),
            Cell::from(opt(r.weight)),
        ]);
        if Model::highlighted(r, now) {
            row.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let width = |head: &str, cell: fn(&super::model::Row) -> &str| {
        let w = model
            .rows
            .iter()
            .map(|r| cell(r).chars().count())
            .chain([head.len()])
            .max()
            .unwrap_or(0);
        Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX))
    };
    let widths = [
        width("NODE", |r| &r.key.0),
        width("BALANCER", |r| &r.key.1),
        width("POOL", |r| &r.key.2),
        width("MEMBER", |r| &r.key.3),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(HISTORY as u16),
        Constraint::Length(6),
    ];
    frame.render_widget(Table::new(rows, widths).header(head), body);

    let other = model.sort.toggled();
    let mut keys = vec![Span::raw(format!(
        "q quit  s sort by {}  (read only: watch changes nothing)",
        other.as_str()
    ))];
    if let Some(e) = &model.error {
        keys = vec![Span::styled(
            format!("last read failed: {e}"),
            Style::new().fg(Color::Red),
        )];
    }
    frame.render_widget(Paragraph::new(Line::from(keys)), footer);
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// One line per run in progress, or one saying there is none.
fn run_lines(runs: &[RunInProgress], wall: OffsetDateTime) -> Vec<Line<'static>> {
    if runs.is_empty() {
        return vec![Line::from("no rolling or rebalance run in progress")];
    }
    runs.iter()
        .map(|r| {
            let mut s = match &r.plan {
                Some(plan) => format!("rolling {plan}"),
                None => r.command.clone(),
            };
            if let Some((group, node, step, status)) = &r.step {
                if let Some(g) = group {
                    s.push_str(&format!("  group {g}"));
                }
                if let Some(n) = node {
                    s.push_str(&format!("  node {n}"));
                }
                s.push_str(&format!("  step {step} ({})", status.as_str()));
            }
            if let Some(e) = r.elapsed(wall) {
                s.push_str(&format!("  {}", elapsed(e)));
            }
            if !r.claims.is_empty() {
                s.push_str(&format!("  claims {}", r.claims.join(", ")));
            }
            Line::styled(s, Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
        })
        .collect()
}

/// `1h02m03s`, `2m03s`, `3s`.
fn elapsed(s: u64) -> String {
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}
