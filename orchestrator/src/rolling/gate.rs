//! Health gates: what a node must pass before it returns to rotation,
//! checked with the one wait helper ([`await_condition`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::hooks::{self, HookLog, Vars};
use super::zdu::{NodeState, Zdu};
use crate::error::{Error, Result};
use crate::plan::{Condition, Gate, GateCheck};
use crate::wait::{WaitError, WaitOptions, await_condition};

/// What a gate found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateReport {
    /// `http`, `tcp`, `command`, `zdu` or `prometheus`.
    pub kind: String,
    /// What it checked (the URL, address, command or ZDU node id).
    pub target: String,
    /// Whether it passed.
    pub passed: bool,
    /// How many times it looked.
    pub attempts: u32,
    /// What the last look found (`status 200`, `connection refused`,
    /// `STARTING`, `exit 1`…).
    pub last: String,
    /// `healthy_for`: how long it had to keep passing once it passed
    /// (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_for_ms: Option<u64>,
}

/// One look.
#[derive(Debug, Clone)]
struct Look {
    passed: bool,
    detail: String,
}

/// A look taken during a run of passing looks: whether the gate has kept
/// passing for `healthy_for` yet.
#[derive(Debug, Clone)]
struct Soaked {
    look: Look,
    done: bool,
}

pub(crate) struct Ctx<'a> {
    pub http: &'a reqwest::Client,
    pub zdu: Option<&'a Zdu>,
    pub log: &'a Arc<HookLog>,
    pub cwd: &'a Path,
    /// SIGTERM to SIGKILL for a stopped command (the plan's `hook_grace`).
    pub grace: Duration,
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

async fn look_http(
    client: &reqwest::Client,
    url: &str,
    expect: u16,
    body: Option<&str>,
    per_try: Duration,
) -> Look {
    match client.get(url).timeout(per_try).send().await {
        Err(e) => Look {
            passed: false,
            detail: describe_reqwest(&e),
        },
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let body_ok = body.is_none_or(|b| text.contains(b));
            Look {
                passed: status == expect && body_ok,
                detail: if status != expect {
                    format!("status {status} (expected {expect})")
                } else if !body_ok {
                    format!(
                        "status {status} but the body lacks {:?}: {:?}",
                        body.unwrap_or_default(),
                        text.chars().take(120).collect::<String>()
                    )
                } else {
                    format!("status {status}")
                },
            }
        }
    }
}

async fn look_tcp(address: &str, per_try: Duration) -> Look {
    match tokio::time::timeout(per_try, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => Look {
            passed: true,
            detail: "connected".into(),
        },
        Ok(Err(e)) => Look {
            passed: false,
            detail: e.to_string(),
        },
        Err(_) => Look {
            passed: false,
            detail: format!(
                "no answer within {}",
                crate::duration::format_duration(per_try)
            ),
        },
    }
}

/// A Prometheus instant query: passes when it returns at least one sample
/// and every sample meets `cond` (`no data` is "not yet").
async fn look_prometheus(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    cond: Condition,
    per_try: Duration,
) -> Look {
    let not = |detail: String| Look {
        passed: false,
        detail,
    };
    let url =
        match reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), &[("query", query)])
        {
            Ok(u) => u,
            Err(e) => return not(format!("bad URL {base}: {e}")),
        };
    let resp = match client.get(url).timeout(per_try).send().await {
        Ok(r) => r,
        Err(e) => return not(describe_reqwest(&e)),
    };
    let status = resp.status().as_u16();
    let body: serde_json::Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return not(format!("status {status}, not JSON: {e}")),
    };
    if body["status"] != "success" {
        return not(format!(
            "status {status}: {} {}",
            body["errorType"].as_str().unwrap_or(""),
            body["error"].as_str().unwrap_or("")
        ));
    }
    // `vector`: [{metric, value: [t, "v"]}]; `scalar`: [t, "v"].
    let data = &body["data"];
    let samples: Vec<(String, f64)> = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let labels = r["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default();
                        (labels, sample_value(&r["value"]))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some("scalar") => vec![(String::new(), sample_value(&data["result"]))],
        other => {
            return not(format!(
                "result type {} (a gate reads a vector or a scalar)",
                other.unwrap_or("none")
            ));
        }
    };
    if samples.is_empty() {
        return not("no data".into());
    }
    let bad: Vec<String> = samples
        .iter()
        .filter(|(_, v)| !cond.holds(*v))
        .map(|(l, v)| {
            if l.is_empty() {
                format!("{v}")
            } else {
                format!("{{{l}}} {v}")
            }
        })
        .collect();
    if bad.is_empty() {
        let values: Vec<String> = samples.iter().map(|(_, v)| v.to_string()).collect();
        Look {
            passed: true,
            detail: format!("{} {cond}", values.join(", ")),
        }
    } else {
        not(format!("{} not {cond}", bad.join(", ")))
    }
}

/// A sample's `[time, "value"]` as a number (NaN when it is none).
fn sample_value(v: &serde_json::Value) -> f64 {
    v[1].as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Checks `gate` for the node `vars` describes, until it passes, its time
/// runs out, or `stop` turns true.
///
/// Returns the report, and the error that failed the gate.
pub(crate) async fn check(
    gate: &Gate,
    vars: &Vars,
    cx: &Ctx<'_>,
    stop: &mut watch::Receiver<bool>,
) -> (GateReport, Option<Error>) {
    let (kind, target) = match &gate.check {
        GateCheck::Http { url, .. } => ("http", vars.substitute(url)),
        GateCheck::Tcp { address } => ("tcp", vars.substitute(address)),
        GateCheck::Command { command } => ("command", vars.substitute(command)),
        GateCheck::Zdu => (
            "zdu",
            cx.zdu
                .map_or(String::new(), |z| vars.substitute(z.node_id_template())),
        ),
        GateCheck::Prometheus { query, .. } => ("prometheus", vars.substitute(query)),
    };
    let per_try = gate.timeout.min(Duration::from_secs(10));
    let mut attempts = 0u32;
    let mut last = String::from("not checked");
    // The soak comes on top of the time to pass.
    let opts = WaitOptions {
        timeout: gate.timeout + gate.healthy_for.unwrap_or_default(),
        poll: gate.interval,
    };
    let since = std::cell::Cell::new(None);
    let since = &since;
    let stop_src = stop.clone();
    let waited = {
        let fetch = || {
            attempts += 1;
            let target = target.clone();
            let mut cmd_stop = stop_src.clone();
            async move {
                let look = match &gate.check {
                    GateCheck::Http {
                        expect_status,
                        body,
                        ..
                    } => {
                        look_http(cx.http, &target, *expect_status, body.as_deref(), per_try).await
                    }
                    GateCheck::Tcp { .. } => look_tcp(&target, per_try).await,
                    GateCheck::Prometheus { url, condition, .. } => {
                        look_prometheus(cx.http, url, &target, *condition, per_try).await
                    }
                    GateCheck::Command { command } => {
                        let mut v = vars.clone();
                        v.step = "gate".into();
                        match hooks::run(
                            command,
                            &v,
                            hooks::Limits {
                                timeout: per_try,
                                grace: cx.grace,
                            },
                            cx.cwd,
                            cx.log,
                            None,
                            &mut cmd_stop,
                        )
                        .await
                        {
                            Ok(o) => Look {
                                passed: o.ok(),
                                detail: o.describe(per_try),
                            },
                            Err(e) => return Err(e),
                        }
                    }
                    GateCheck::Zdu => {
                        let Some(z) = cx.zdu else {
                            return Err(Error::Config("a zdu gate needs a [zdu] section".into()));
                        };
                        match z.node(&target).await {
                            Ok(n) if n.state == NodeState::Error => {
                                return Err(Error::Failed(format!(
                                    "ZDU node {target} is in ERROR"
                                )));
                            }
                            Ok(n) => Look {
                                passed: n.state == NodeState::Active,
                                detail: n.state.to_string(),
                            },
                            Err(e) => Look {
                                passed: false,
                                detail: e.to_string(),
                            },
                        }
                    }
                };
                // Soak: once passing, a failing look fails the gate.
                let now = tokio::time::Instant::now();
                let done = match (look.passed, since.get()) {
                    (true, None) => {
                        since.set(Some(now));
                        gate.healthy_for.is_none_or(|d| d.is_zero())
                    }
                    (true, Some(t)) => gate.healthy_for.is_none_or(|d| now - t >= d),
                    (false, Some(t)) => {
                        return Err(Error::Failed(format!(
                            "the {kind} gate on {target} passed, then failed {} into its healthy_for of {}: {}",
                            crate::duration::format_duration(now - t),
                            crate::duration::format_duration(gate.healthy_for.unwrap_or_default()),
                            look.detail
                        )));
                    }
                    (false, None) => false,
                };
                Ok::<Soaked, Error>(Soaked { look, done })
            }
        };
        let wait = await_condition(
            opts,
            fetch,
            |l: &Soaked| l.done,
            |_| false,
            |l: &Soaked| {
                last = l.look.detail.clone();
            },
        );
        tokio::select! {
            r = wait => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        }
    };
    let mut report = GateReport {
        kind: kind.into(),
        target: target.clone(),
        passed: false,
        attempts,
        last,
        healthy_for_ms: gate.healthy_for.map(|d| d.as_millis() as u64),
    };
    let err = match waited {
        Some(Ok(_)) => {
            report.passed = true;
            None
        }
        Some(Err(WaitError::TimedOut(_))) => Some(Error::Timeout(format!(
            "the {kind} gate on {target} did not pass within {} ({} attempts); last: {}",
            crate::duration::format_duration(gate.timeout),
            report.attempts,
            report.last
        ))),
        Some(Err(WaitError::Failed(e))) => {
            report.last = e.to_string();
            Some(e)
        }
        None => Some(Error::Failed("stopped (lbctl was interrupted)".into())),
    };
    (report, err)
}

/// A gate's report for a plan that was only printed.
pub(crate) fn planned(gate: &Gate, vars: &Vars, zdu_node_id: Option<&str>) -> GateReport {
    let (kind, target) = match &gate.check {
        GateCheck::Http {
            url,
            expect_status,
            body,
        } => (
            "http",
            format!(
                "{} -> {expect_status}{}",
                vars.substitute(url),
                body.as_ref()
                    .map_or(String::new(), |b| format!(" with {b:?}"))
            ),
        ),
        GateCheck::Tcp { address } => ("tcp", vars.substitute(address)),
        GateCheck::Command { command } => ("command", vars.substitute(command)),
        GateCheck::Zdu => ("zdu", vars.substitute(zdu_node_id.unwrap_or("{node}"))),
        GateCheck::Prometheus {
            url,
            query,
            condition,
        } => (
            "prometheus",
            format!("{url}: {} {condition}", vars.substitute(query)),
        ),
    };
    GateReport {
        kind: kind.into(),
        target,
        passed: false,
        attempts: 0,
        last: String::new(),
        healthy_for_ms: gate.healthy_for.map(|d| d.as_millis() as u64),
    }
}

pub(crate) fn http_client() -> Result<reqwest::Client> {
    lb_http::ClientOptions::default()
        .build()
        .map_err(|e| Error::Config(format!("cannot build an HTTP client: {e}")))
}
