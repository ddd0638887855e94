//! `notify = "URL"`: every step event of a run POSTed as JSON to a
//! webhook, in order, from a task of its own: a slow or failing receiver
//! never holds the upgrade back or fails it. Each event is tried three
//! times (backoff 200 ms, then 1 s); what could not be delivered is
//! counted, and the run's report warns about it. The URL is a secret
//! (webhook URLs carry tokens): messages name its scheme and host only.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Attempts per event.
const ATTEMPTS: usize = 3;
/// One attempt's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the end of a run waits for what is still queued.
const FLUSH: Duration = Duration::from_secs(5);

/// What the sender saw.
#[derive(Debug, Default)]
struct Tally {
    failed: usize,
    last_error: Option<String>,
}

/// The queue to the webhook and its sender task.
#[derive(Debug)]
pub(super) struct Notifier {
    tx: mpsc::UnboundedSender<Value>,
    task: JoinHandle<Tally>,
    shown: String,
}

/// `url` as messages show it: scheme and host, never the path or query.
fn shown(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(
        |_| "the notify URL".into(),
        |u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("")),
    )
}

impl Notifier {
    /// Starts the sender for `url`.
    pub fn start(url: &str, client: reqwest::Client) -> Notifier {
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let shown = shown(url);
        let url = url.to_string();
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some(ev) = rx.recv().await {
                let mut delivered = false;
                for attempt in 0..ATTEMPTS {
                    if attempt > 0 {
                        let wait = if attempt == 1 { 200 } else { 1000 };
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    let res = client
                        .post(&url)
                        .timeout(REQUEST_TIMEOUT)
                        .json(&ev)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            delivered = true;
                            break;
                        }
                        Ok(r) => tally.last_error = Some(format!("status {}", r.status().as_u16())),
                        // Without the URL: reqwest's message names it.
                        Err(e) if e.is_timeout() => {
                            tally.last_error = Some("no answer within 2s".into());
                        }
                        Err(e) if e.is_connect() => {
                            tally.last_error = Some("cannot connect".into());
                        }
                        Err(_) => tally.last_error = Some("request failed".into()),
                    }
                }
                if !delivered {
                    tally.failed += 1;
                }
            }
            tally
        });
        Notifier { tx, task, shown }
    }

    /// Queues `event` (never waits).
    pub fn send(&self, event: Value) {
        let _ = self.tx.send(event);
    }

    /// Closes the queue and waits (at most 5 s) for the sender; returns a
    /// warning when events were not delivered.
    pub async fn finish(self) -> Option<String> {
        let Notifier { tx, task, shown } = self;
        drop(tx);
        let abort = task.abort_handle();
        match tokio::time::timeout(FLUSH, task).await {
            Ok(Ok(t)) if t.failed == 0 => None,
            Ok(Ok(t)) => Some(format!(
                "notify: {} event(s) not delivered to {shown} after {ATTEMPTS} attempts each (last: {}); the upgrade went on",
                t.failed,
                t.last_error.unwrap_or_default()
            )),
            _ => {
                abort.abort();
                Some(format!(
                    "notify: {shown} still had events queued after {}s; they were dropped, the upgrade went on",
                    FLUSH.as_secs()
                ))
            }
        }
    }
}
