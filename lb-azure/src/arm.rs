//! The four ARM calls (GET and PUT of the gateway, the asynchronous
//! operation, backend health), with tokens, retries for reads only, and
//! `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tracing::{debug, info};
use url::Url;

use crate::error::{ArmSays, AzureError, Result};

/// Where tokens come from.
pub(crate) enum Auth {
    /// A token given as is (from an environment variable).
    Static(Secret),
    /// An `azure_identity` credential.
    Credential {
        kind: &'static str,
        credential: Arc<dyn TokenCredential>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Static(_) => f.write_str("Auth::Static(..)"),
            Auth::Credential { kind, .. } => write!(f, "Auth::Credential({kind})"),
        }
    }
}

/// How many times a read is tried when ARM is busy or unreachable.
const READ_ATTEMPTS: u32 = 4;
/// The wait before the next poll when ARM sends no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// Reads and writes one gateway.
#[derive(Debug)]
pub(crate) struct Arm {
    pub http: reqwest::Client,
    pub auth: Auth,
    pub scope: String,
    /// The ARM endpoint: only URLs on its origin get the token.
    pub endpoint: Url,
    pub gateway_url: Url,
    pub health_url: Url,
    /// `resource_group/gateway`, for messages.
    pub label: String,
    pub cap: Option<Duration>,
    pub operation_timeout: Duration,
}

/// A read of the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub body: Value,
    pub etag: String,
    /// ARM's clock (the `Date` header), or ours when it sent none.
    pub now: OffsetDateTime,
}

/// What a PUT came to.
#[derive(Debug)]
pub(crate) enum Put {
    /// Accepted: follow the operation (if any) after `wait`.
    Accepted {
        operation: Option<Url>,
        wait: Duration,
    },
    /// Refused because the gateway changed or is busy (412, 409
    /// superseded / another operation, 429): re-read and re-apply.
    Again { why: String, wait: Option<Duration> },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    Succeeded,
    /// `Failed` or `Canceled`, with Azure's code and message.
    Failed {
        status: String,
        code: String,
        message: String,
    },
}

/// The error code under which ARM cancels an operation that a newer one
/// replaced.
pub(crate) const SUPERSEDED: &str = "CanceledAndSupersededDueToAnotherOperation";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    /// The body (never logged).
    body: Vec<u8>,
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = OffsetDateTime::parse(v, &Rfc2822).ok()?;
    let d = at - OffsetDateTime::now_utc();
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

fn arm_says(status: StatusCode, body: &[u8]) -> ArmSays {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let err = v.as_ref().map(|v| v.get("error").unwrap_or(v));
    let field = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (code, mut message) = (field("code"), field("message"));
    if code.is_empty() && message.is_empty() {
        let text = String::from_utf8_lossy(body);
        message = text.chars().take(300).collect::<String>().trim().to_owned();
        if message.is_empty() {
            message = status
                .canonical_reason()
                .unwrap_or("no explanation")
                .to_owned();
        }
    }
    ArmSays {
        status: status.as_u16(),
        code,
        message,
    }
}

fn transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The error for an answer that is neither success nor handled.
fn failure(what: &str, a: &Answer) -> AzureError {
    let says = arm_says(a.status, &a.body);
    let what = what.to_owned();
    match a.status.as_u16() {
        401 | 403 => AzureError::Unauthorized { what, says },
        404 => AzureError::ArmNotFound { what, says },
        s if s == 429 || s >= 500 => AzureError::Busy { what, says },
        _ => AzureError::Protocol(format!("{what}: unexpected answer ({says})")),
    }
}

/// A polled operation that ARM no longer knows: not a missing pool or
/// member, so not `NotFound`.
fn lost(what: &str, a: &Answer) -> AzureError {
    AzureError::Protocol(format!(
        "{what}: ARM no longer knows the operation ({})",
        arm_says(a.status, &a.body)
    ))
}

fn now_of(h: &HeaderMap) -> OffsetDateTime {
    h.get("date")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| OffsetDateTime::parse(s, &Rfc2822).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

pub(crate) fn parse_json(what: &str, body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| AzureError::Protocol(format!("{what}: the answer is not JSON ({e})")))
}

impl Arm {
    /// A wait of `d`, bounded by the configured cap.
    pub(crate) fn capped(&self, d: Duration) -> Duration {
        self.cap.map_or(d, |c| d.min(c))
    }

    /// The backoff before attempt `n` (1-based) of a retry: 1 s, 2 s, 4 s,
    /// 8 s…, at most 30 s, bounded by the cap.
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        let secs = 1u64 << n.saturating_sub(1).min(5);
        self.capped(Duration::from_secs(secs.min(30)))
    }

    async fn token(&self) -> Result<String> {
        match &self.auth {
            Auth::Static(s) => Ok(s.secret().to_owned()),
            Auth::Credential { kind, credential } => credential
                .get_token(&[self.scope.as_str()], None)
                .await
                .map(|t| t.token.secret().to_owned())
                .map_err(|e| AzureError::Token {
                    credential: kind,
                    message: e.to_string().replace('\n', " "),
                }),
        }
    }

    /// Refuses to send the token anywhere but the configured endpoint.
    fn check_origin(&self, url: &Url) -> Result<()> {
        if url.origin() == self.endpoint.origin() {
            Ok(())
        } else {
            Err(AzureError::Protocol(format!(
                "ARM pointed to {}, which is not the configured endpoint {}; the token is not sent there",
                url.origin().ascii_serialization(),
                self.endpoint.origin().ascii_serialization()
            )))
        }
    }

    /// One request, no retry.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        if_match: Option<&str>,
        what: &str,
    ) -> Result<Answer> {
        self.check_origin(url)?;
        let token = self.token().await?;
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token)
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        } else if method == Method::POST {
            // An empty body of known length: `Content-Length: 0`, which
            // ARM wants on a POST.
            req = req.body("");
        }
        if let Some(e) = if_match {
            let v = HeaderValue::from_str(e).map_err(|_| {
                AzureError::Protocol(format!("{what}: the etag {e:?} cannot be sent back"))
            })?;
            req = req.header("If-Match", v);
        }
        let rsp = req.send().await.map_err(|e| AzureError::Transport {
            what: what.to_owned(),
            message: describe(&e),
        })?;
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let body = rsp.bytes().await.map_err(|e| AzureError::Transport {
            what: what.to_owned(),
            message: describe(&e),
        })?;
        debug!(
            method = %method,
            path = url.path(),
            status = status.as_u16(),
            request_id = headers.get("x-ms-request-id").and_then(|v| v.to_str().ok()).unwrap_or(""),
            "ARM answered"
        );
        Ok(Answer {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    /// A read, tried again (up to [`READ_ATTEMPTS`]) on 429, 5xx and
    /// transport errors, honouring `Retry-After`.
    async fn read(&self, method: Method, url: &Url, what: &str) -> Result<Answer> {
        let mut n = 1;
        loop {
            let r = self.send(method.clone(), url, None, None, what).await;
            let wait = match &r {
                Ok(a) if transient(a.status) => retry_after(&a.headers),
                Err(AzureError::Transport { .. }) => None,
                _ => return r,
            };
            if n >= READ_ATTEMPTS {
                return match r {
                    Ok(a) => Err(failure(what, &a)),
                    Err(e) => Err(e),
                };
            }
            let d = wait.map_or_else(|| self.backoff(n), |w| self.capped(w));
            debug!(
                attempt = n,
                wait_ms = d.as_millis() as u64,
                "{what}: trying again"
            );
            tokio::time::sleep(d).await;
            n += 1;
        }
    }

    /// GET the gateway.
    pub(crate) async fn get(&self) -> Result<Read> {
        let what = format!("reading gateway {}", self.label);
        let a = self.read(Method::GET, &self.gateway_url, &what).await?;
        if a.status != StatusCode::OK {
            return Err(failure(&what, &a));
        }
        let body = parse_json(&what, &a.body)?;
        let etag = body
            .get("etag")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                a.headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                AzureError::Protocol(format!(
                    "{what}: the gateway has no etag, so it cannot be updated safely"
                ))
            })?;
        if !body.is_object() {
            return Err(AzureError::Protocol(format!(
                "{what}: the answer is not a JSON object"
            )));
        }
        Ok(Read {
            body,
            etag,
            now: now_of(&a.headers),
        })
    }

    /// PUT the gateway with `If-Match: etag`. Sent once: never repeated.
    pub(crate) async fn put(&self, body: &Value, etag: &str) -> Result<Put> {
        let what = format!("updating gateway {}", self.label);
        let a = match self
            .send(
                Method::PUT,
                &self.gateway_url,
                Some(body),
                Some(etag),
                &what,
            )
            .await
        {
            Ok(a) => a,
            Err(AzureError::Transport { what, message }) => {
                return Err(AzureError::Unknown { what, message });
            }
            Err(e) => return Err(e),
        };
        let says = || arm_says(a.status, &a.body);
        match a.status.as_u16() {
            200..=202 => {
                let operation = match a
                    .headers
                    .get("azure-asyncoperation")
                    .or_else(|| a.headers.get("location"))
                    .and_then(|v| v.to_str().ok())
                {
                    Some(u) => Some(Url::parse(u).map_err(|e| {
                        AzureError::Protocol(format!("{what}: bad Azure-AsyncOperation URL: {e}"))
                    })?),
                    None => None,
                };
                let wait = self.capped(retry_after(&a.headers).unwrap_or(DEFAULT_POLL));
                info!(gateway = %self.label, status = a.status.as_u16(), "gateway update accepted");
                Ok(Put::Accepted { operation, wait })
            }
            412 => Ok(Put::Again {
                why: format!("412 {}", says().code),
                wait: None,
            }),
            409 => {
                let s = says();
                let busy = s.code == SUPERSEDED
                    || s.code.eq_ignore_ascii_case("AnotherOperationInProgress")
                    || s.message.to_ascii_lowercase().contains("another operation");
                if busy {
                    Ok(Put::Again {
                        why: format!("409 {}", s.code),
                        wait: retry_after(&a.headers),
                    })
                } else {
                    Err(AzureError::Protocol(format!("{what}: refused ({s})")))
                }
            }
            429 => Ok(Put::Again {
                why: format!("429 {}", says().code),
                wait: Some(retry_after(&a.headers).unwrap_or(DEFAULT_POLL)),
            }),
            s if s >= 500 => Err(AzureError::Unknown {
                what,
                message: format!("Azure failed ({})", says()),
            }),
            400 => Err(AzureError::Protocol(format!(
                "{what}: Azure refused the gateway ({})",
                says()
            ))),
            _ => Err(failure(&what, &a)),
        }
    }

    /// Follows an `Azure-AsyncOperation` URL until it ends, first waiting
    /// `wait`, then each `Retry-After` (capped), for at most the operation
    /// timeout.
    pub(crate) async fn follow(&self, url: &Url, wait: Duration) -> Result<End> {
        let what = format!("following the update of gateway {}", self.label);
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let mut wait = wait;
        loop {
            if tokio::time::Instant::now() + wait > deadline {
                return Err(AzureError::OperationTimeout(self.operation_timeout));
            }
            tokio::time::sleep(wait).await;
            let a = self.read(Method::GET, url, &what).await?;
            match a.status.as_u16() {
                200..=202 => {}
                404 => return Err(lost(&what, &a)),
                _ => return Err(failure(&what, &a)),
            }
            // A `Location` URL answers 202 while running and the resource
            // when done; `Azure-AsyncOperation` answers a status document.
            let v = match a.status.as_u16() {
                202 if a.body.is_empty() => Value::Null,
                _ => parse_json(&what, &a.body)?,
            };
            let status = match v.get("status").and_then(Value::as_str) {
                Some(s) => s,
                None if a.status == StatusCode::ACCEPTED => "InProgress",
                None => "Succeeded",
            };
            match status {
                "Succeeded" => return Ok(End::Succeeded),
                "Failed" | "Canceled" => {
                    let field = |k: &str| {
                        v.pointer(&format!("/error/{k}"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    return Ok(End::Failed {
                        status: status.to_owned(),
                        code: field("code"),
                        message: field("message"),
                    });
                }
                _ => {
                    debug!(status, "{what}: still running");
                    wait = self.capped(retry_after(&a.headers).unwrap_or(DEFAULT_POLL));
                }
            }
        }
    }

    /// `POST …/backendhealth`: 200 with the body, or 202 + `Location`
    /// polled until 200.
    pub(crate) async fn backend_health(&self) -> Result<Value> {
        let what = format!("reading backend health of gateway {}", self.label);
        let a = self.read(Method::POST, &self.health_url, &what).await?;
        match a.status.as_u16() {
            200 => return parse_json(&what, &a.body),
            202 => {}
            _ => return Err(failure(&what, &a)),
        }
        let location = a
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| AzureError::Protocol(format!("{what}: 202 without Location")))?;
        let url = Url::parse(location)
            .map_err(|e| AzureError::Protocol(format!("{what}: bad Location URL: {e}")))?;
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let mut wait = self.capped(retry_after(&a.headers).unwrap_or(DEFAULT_POLL));
        loop {
            if tokio::time::Instant::now() + wait > deadline {
                return Err(AzureError::OperationTimeout(self.operation_timeout));
            }
            tokio::time::sleep(wait).await;
            let a = self.read(Method::GET, &url, &what).await?;
            match a.status.as_u16() {
                200 => return parse_json(&what, &a.body),
                202 => wait = self.capped(retry_after(&a.headers).unwrap_or(DEFAULT_POLL)),
                404 => return Err(lost(&what, &a)),
                _ => return Err(failure(&what, &a)),
            }
        }
    }
}

/// A transport error in words, with its causes (reqwest's own display is
/// terse), without the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
