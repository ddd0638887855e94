#![doc = include_str!("../README.md")]

mod arm;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod settings;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Error, Member, MemberRef, Result,
};
use time::OffsetDateTime;
use tracing::{info, warn};

pub use config::{
    AppGatewayBuilder, Credential, CredentialKeys, DEFAULT_API_VERSION, DEFAULT_ENDPOINT,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_TIMEOUT,
};
pub use lb_http::SecretSource;
pub use settings::Config;

use arm::{Arm, End, Put, SUPERSEDED};
use error::{ArmSays, AzureError};
use gateway::{Place, Plan};

/// How many times one `set_state` reads the gateway and tries its PUT
/// when someone else changes the gateway in between.
const WRITE_ATTEMPTS: u32 = 5;

/// An Azure Application Gateway whose backend address pools are the pools
/// and whose addresses (IP or FQDN) are the members. See the crate docs.
pub struct AppGateway {
    name: String,
    credential_kind: &'static str,
    arm: Arm,
    /// Removals made by this process: (recorded time, time the update was
    /// seen finished), by (pool, address) in lower case.
    finished: Mutex<HashMap<gateway::Key, (OffsetDateTime, OffsetDateTime)>>,
    warnings: Mutex<Vec<String>>,
}

impl std::fmt::Debug for AppGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppGateway")
            .field("name", &self.name)
            .field("gateway", &self.arm.label)
            .field("endpoint", &self.arm.endpoint.as_str())
            .field("credential", &self.credential_kind)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppGateway {
    /// A builder for the balancer called `name` in the inventory.
    pub fn builder(name: &str) -> AppGatewayBuilder {
        AppGatewayBuilder::new(name)
    }

    fn context(&self, m: &MemberRef) -> String {
        format!(
            "gateway {}, pool {}, member {}",
            self.arm.label, m.pool, m.member
        )
    }

    async fn write(&self, m: &MemberRef, target: AdminState) -> Result<Change, AzureError> {
        let mut wrote = false;
        let mut last = String::new();
        let mut throttled = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let read = self.arm.get().await?;
            let body = match gateway::plan(&read.body, m, target, read.now, &self.arm.label)? {
                // After a superseded update of ours, the newer one may
                // have carried our change.
                Plan::Already if wrote => return self.confirm(m, target).await,
                Plan::Already => return Ok(Change::AlreadyInState),
                Plan::Write(b) => b,
            };
            if attempt > WRITE_ATTEMPTS {
                break;
            }
            let again = match self.arm.put(&body, &read.etag).await? {
                Put::Again { why, wait } => {
                    throttled = why.starts_with("429");
                    last = why;
                    wait
                }
                Put::Accepted { operation, wait } => {
                    wrote = true;
                    let end = match operation {
                        Some(url) => self.arm.follow(&url, wait).await?,
                        None => End::Succeeded,
                    };
                    match end {
                        End::Succeeded => return self.confirm(m, target).await,
                        End::Failed { status, code, .. } if code == SUPERSEDED => {
                            throttled = false;
                            last = format!("{status} {code}");
                            None
                        }
                        End::Failed {
                            status,
                            code,
                            message,
                        } => {
                            let after = self.now_shows(m).await;
                            return Err(AzureError::Operation {
                                status,
                                code,
                                message,
                                after,
                            });
                        }
                    }
                }
            };
            let d = again.map_or_else(|| self.arm.backoff(attempt), |w| self.arm.capped(w));
            info!(
                balancer = %self.name, pool = %m.pool, member = %m.member, attempt,
                reason = %last, "the gateway changed or was busy: reading it again"
            );
            tokio::time::sleep(d).await;
        }
        if throttled {
            return Err(AzureError::Busy {
                what: format!("updating gateway {}", self.arm.label),
                says: ArmSays {
                    status: 429,
                    code: "TooManyRequests".into(),
                    message: format!("still throttled after {WRITE_ATTEMPTS} attempts"),
                },
            });
        }
        Err(AzureError::Conflict {
            attempts: WRITE_ATTEMPTS,
            last,
        })
    }

    /// Reads the gateway again (waiting while it is `Updating`) and checks
    /// that `m` is where it was put.
    async fn confirm(&self, m: &MemberRef, target: AdminState) -> Result<Change, AzureError> {
        let deadline = tokio::time::Instant::now() + self.arm.operation_timeout;
        loop {
            let read = self.arm.get().await?;
            let state = gateway::provisioning(&read.body);
            if state.eq_ignore_ascii_case("Updating") {
                let d = self.arm.capped(Duration::from_secs(5));
                if tokio::time::Instant::now() + d > deadline {
                    return Err(AzureError::OperationTimeout(self.arm.operation_timeout));
                }
                tokio::time::sleep(d).await;
                continue;
            }
            let place = gateway::locate(&read.body, m, &self.arm.label).map_err(|e| {
                AzureError::Protocol(format!(
                    "after the update, the gateway lost the member: {e}"
                ))
            })?;
            let got = gateway::state_of(&place);
            let want = self.capabilities().reads_back_as(target);
            if got != want {
                return Err(AzureError::Protocol(format!(
                    "the update succeeded, but the gateway reads the member as {got}, not {want} (provisioningState {state})"
                )));
            }
            let k = gateway::key(&m.pool, &m.member);
            match place {
                Place::Removed(r) => {
                    lock(&self.finished).insert(k, (r.removed, read.now));
                }
                Place::InPool(_) => {
                    lock(&self.finished).remove(&k);
                }
            }
            info!(balancer = %self.name, pool = %m.pool, member = %m.member, state = %want, "gateway updated");
            return Ok(Change::Applied);
        }
    }

    /// "; the gateway now shows …", for the message of a failed update.
    async fn now_shows(&self, m: &MemberRef) -> String {
        match self.arm.get().await {
            Ok(read) => {
                let ps = gateway::provisioning(&read.body).to_owned();
                match gateway::locate(&read.body, m, &self.arm.label) {
                    Ok(Place::InPool(_)) => format!(
                        "; the gateway (provisioningState {ps}) now has the member in the pool (ready)"
                    ),
                    Ok(Place::Removed(_)) => format!(
                        "; the gateway (provisioningState {ps}) now has the member removed from the pool (maint)"
                    ),
                    Err(e) => format!("; the gateway (provisioningState {ps}): {e}"),
                }
            }
            Err(e) => format!("; the gateway could not be read afterwards: {e}"),
        }
    }
}

#[async_trait]
impl Balancer for AppGateway {
    fn name(&self) -> &str {
        &self.name
    }

    /// Health from the backend-health API; no weights; `Drain` and `Maint`
    /// both remove the address (a member set to `Drain` reads back as
    /// `Maint`); drained once the draining timeout has passed.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            active_connections: true,
            health: true,
            weight_range: None,
            distinct_drain: false,
            drain_signal: DrainSignal::Timer,
        }
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let (read, health) = tokio::join!(self.arm.get(), self.arm.backend_health());
        let ctx = format!("gateway {}", self.arm.label);
        let read = read.map_err(|e| e.into_core(&self.name, &ctx))?;
        let mut warnings = Vec::new();
        // Health is informative: without it members read `unknown`, and
        // the reason is a warning, not a failure of the whole read.
        let health = match health {
            Ok(h) => gateway::health_map(&h),
            Err(e) => {
                warnings.push(format!("health unknown: {e}"));
                HashMap::new()
            }
        };
        let finished = lock(&self.finished).clone();
        let view = gateway::View {
            health: &health,
            now: read.now,
            finished: &finished,
        };
        let list = gateway::members(&read.body, &view, &mut warnings);
        for w in &warnings {
            warn!(balancer = %self.name, "{w}");
        }
        *lock(&self.warnings) = warnings;
        Ok(list)
    }

    async fn set_state(&self, member: &MemberRef, state: AdminState) -> Result<Change> {
        member.validate(&self.name)?;
        self.write(member, state)
            .await
            .map_err(|e| e.into_core(&self.name, &self.context(member)))
    }

    async fn set_weight(&self, member: &MemberRef, _weight: u32) -> Result<Change> {
        member.validate(&self.name)?;
        Err(Error::unsupported(
            &self.name,
            format!(
                "{}: Application Gateway backend pools have no weights",
                self.context(member)
            ),
        ))
    }

    fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }
}
