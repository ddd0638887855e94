//! `lbctl watch`: a full-screen live view of every member on every
//! balancer, and of the runs in progress. It only reads: no journal
//! record, no compaction, no change to any balancer (with the file
//! backend it takes the state directory's lock for a moment to list
//! claims).

mod model;
mod runs;
mod view;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use orchestrator::{Error, Fleet};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use time::OffsetDateTime;

use model::Model;
pub use model::Sort;

/// Reads the runs in progress from the fleet's journal (none when there
/// is no journal yet), with the nodes each claims now, listed so that
/// looking never makes another lbctl's claim fail (in a state directory,
/// under its short lock; in etcd, by a plain read); where they cannot be
/// listed (read-only state), the journal alone says.
async fn runs(fleet: &Fleet) -> Vec<runs::RunInProgress> {
    let Some(j) = fleet.journal() else {
        return Vec::new();
    };
    let runs = j
        .records()
        .await
        .map(|r| runs::in_progress(&r))
        .unwrap_or_default();
    let claims = fleet.engine().peek().await.unwrap_or_default();
    runs::with_claims(runs, &claims)
}

/// Runs the view until `q`: reads every `interval` (the inventory's
/// poll interval unless given), redraws, and reads keys in between.
///
/// # Errors
///
/// [`Error::Usage`] without a terminal; the first read's error (a
/// balancer that cannot be read, an unknown node) before the screen is
/// taken; later read errors are shown in the view.
pub async fn run(
    fleet: &Fleet,
    nodes: &[String],
    sort: Sort,
    interval: Option<Duration>,
) -> Result<(), Error> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "watch needs a terminal; for one snapshot use `lbctl watch --once` \
             (with `--output json` for the status document)"
                .into(),
        ));
    }
    let interval = interval.unwrap_or(fleet.settings().poll_interval);
    let mut model = Model::new(sort, interval);
    let first = fleet.status(nodes).await?;
    model.update(&first, Instant::now());
    model.runs = runs(fleet).await;
    let mut terminal = ratatui::init();
    let res = async {
        loop {
            terminal
                .draw(|f| view::draw(f, &model, Instant::now(), OffsetDateTime::now_utc()))
                .map_err(|e| Error::State(format!("cannot draw on the terminal: {e}")))?;
            let next = Instant::now() + interval;
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                if !event::poll(left)
                    .map_err(|e| Error::State(format!("cannot read the terminal: {e}")))?
                {
                    break;
                }
                if let Ok(Event::Key(k)) = event::read() {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(());
                        }
                        KeyCode::Char('s') => model.set_sort(model.sort.toggled()),
                        KeyCode::Char('n') => model.set_sort(Sort::Node),
                        KeyCode::Char('b') => model.set_sort(Sort::Balancer),
                        _ => continue,
                    }
                    terminal
                        .draw(|f| view::draw(f, &model, Instant::now(), OffsetDateTime::now_utc()))
                        .map_err(|e| Error::State(format!("cannot draw on the terminal: {e}")))?;
                }
            }
            match fleet.status(nodes).await {
                Ok(report) => model.update(&report, Instant::now()),
                Err(e) => model.error = Some(e.to_string()),
            }
            model.runs = runs(fleet).await;
        }
    }
    .await;
    ratatui::restore();
    res
}

#[cfg(test)]
mod tests;
