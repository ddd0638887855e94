#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
mod record;
mod settings;
mod view;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lb_core::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Error, Member, MemberRef, Result,
};
use tokio::sync::OnceCell;
use tracing::{info, warn};

pub use config::{Credentials, TargetGroupsBuilder};
pub use settings::Config;

use client::{Aws, Connect};
use error::AwsError;
use record::Registration;
use view::{Context, Group, GroupRead};

/// How many times a write is read back while ELBv2 (eventually
/// consistent) may still show the state before it.
const READ_BACK_ATTEMPTS: u32 = 6;

/// AWS Elastic Load Balancing v2 target groups (of Application, Network
/// or Gateway Load Balancers): each target group is a pool, each target a
/// member. See the crate docs.
pub struct TargetGroups {
    name: String,
    target_groups: Vec<String>,
    load_balancer: Option<String>,
    connect: Connect,
    aws: OnceCell<Aws>,
    warnings: Mutex<Vec<String>>,
}

impl std::fmt::Debug for TargetGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetGroups")
            .field("name", &self.name)
            .field("target_groups", &self.target_groups)
            .field("load_balancer", &self.load_balancer)
            .field("region", &self.connect.region)
            .field("endpoint_url", &self.connect.endpoint_url)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a read-back found for one member.
enum Seen {
    /// Registered and not draining.
    InRotation,
    /// Draining, or deregistered.
    Out,
}

impl TargetGroups {
    /// A builder for the balancer called `name` in the inventory.
    pub fn builder(name: &str) -> TargetGroupsBuilder {
        TargetGroupsBuilder::new(name)
    }

    pub(crate) fn new(
        name: String,
        target_groups: Vec<String>,
        load_balancer: Option<String>,
        connect: Connect,
    ) -> TargetGroups {
        TargetGroups {
            name,
            target_groups,
            load_balancer,
            connect,
            aws: OnceCell::new(),
            warnings: Mutex::new(Vec::new()),
        }
    }

    async fn aws(&self) -> Result<&Aws, AwsError> {
        self.aws.get_or_try_init(|| Aws::load(&self.connect)).await
    }

    async fn groups(&self) -> Result<Vec<Group>, AwsError> {
        self.aws()
            .await?
            .groups(&self.target_groups, self.load_balancer.as_deref())
            .await
    }

    /// The target group called `pool`, with its targets and records.
    async fn read_group(&self, pool: &str) -> Result<GroupRead, AwsError> {
        let groups = self.groups().await?;
        let Some(group) = groups.iter().find(|g| g.name == pool).cloned() else {
            let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
            return Err(AwsError::PoolNotFound(
                pool.to_owned(),
                format!(" (they are: {})", names.join(", ")),
            ));
        };
        let aws = self.aws().await?;
        let arns = [group.arn.clone()];
        let (targets, records) = tokio::try_join!(aws.targets(&group.arn), aws.records(&arns))?;
        let records = records.get(&group.arn).cloned().unwrap_or_default();
        Ok(GroupRead {
            group,
            targets,
            records,
            delay: None,
        })
    }

    async fn read_all(&self, warnings: &mut Vec<String>) -> Result<Vec<Member>, AwsError> {
        let aws = self.aws().await?;
        let groups = self.groups().await?;
        let arns: Vec<String> = groups.iter().map(|g| g.arn.clone()).collect();
        let healths = futures::future::try_join_all(groups.iter().map(|g| aws.targets(&g.arn)));
        let (healths, mut records) = tokio::try_join!(healths, aws.records(&arns))?;
        let mut reads = Vec::new();
        for (group, targets) in groups.into_iter().zip(healths) {
            let records = records.remove(&group.arn).unwrap_or_default();
            let waiting = targets
                .iter()
                .any(|t| t.draining() && records.iter().any(|r| r.member() == t.member()));
            let delay = if waiting {
                aws.deregistration_delay(&group.arn).await?
            } else {
                None
            };
            reads.push(GroupRead {
                group,
                targets,
                records,
                delay,
            });
        }
        let instances: Vec<String> = reads
            .iter()
            .filter(|g| g.group.target_type == "instance")
            .flat_map(|g| {
                let ids = g.targets.iter().map(|t| t.id.clone());
                ids.chain(g.records.iter().map(|r| r.id.clone()))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Addresses are informative: without them instance targets are
        // matched by `members` overrides, and the reason is a warning.
        let private_ips = if instances.is_empty() {
            HashMap::new()
        } else {
            aws.private_ips(&instances).await.unwrap_or_else(|e| {
                warnings.push(format!(
                    "instance targets are listed by instance id, not private IP: {e}"
                ));
                HashMap::new()
            })
        };
        let cx = Context {
            private_ips: &private_ips,
            now: now(),
        };
        Ok(reads
            .iter()
            .flat_map(|g| g.members(&cx, warnings))
            .collect())
    }

    /// `target groups a, b` and/or `load balancer c`: what `members()`
    /// reads, for its errors.
    fn selection(&self) -> String {
        let mut parts = Vec::new();
        if !self.target_groups.is_empty() {
            parts.push(format!("target groups {}", self.target_groups.join(", ")));
        }
        if let Some(lb) = &self.load_balancer {
            parts.push(format!("load balancer {lb}"));
        }
        parts.join(", ")
    }

    fn context(&self, m: &MemberRef) -> String {
        format!("target group {}, member {}", m.pool, m.member)
    }

    async fn write(&self, m: &MemberRef, state: AdminState) -> Result<Change, AwsError> {
        let aws = self.aws().await?;
        let read = self.read_group(&m.pool).await?;
        let arn = &read.group.arn;
        let target = read.targets.iter().find(|t| t.member() == m.member);
        let record = read.record(&m.member);
        match (state, target, record) {
            (_, None, None) => Err(AwsError::MemberNotFound {
                pool: m.pool.clone(),
                member: m.member.clone(),
            }),
            (AdminState::Drain | AdminState::Maint, Some(t), _) if !t.draining() => {
                // Recorded first: a run killed in between leaves a record
                // of a target still registered, which reads as ready.
                let r = t.registration(now());
                aws.record(arn, &r).await?;
                if let Err(e) = aws.deregister(arn, &t.id, t.port).await {
                    // Nothing changed: the record goes again.
                    if let Err(f) = aws.forget(arn, &r).await {
                        warn!(balancer = %self.name, pool = %m.pool, member = %m.member, "the record of a failed deregistration stays: {f}");
                    }
                    return Err(e);
                }
                info!(balancer = %self.name, pool = %m.pool, member = %m.member, record = %r.value(), "deregistered");
                self.read_back(m, Seen::Out).await?;
                Ok(Change::Applied)
            }
            (AdminState::Drain | AdminState::Maint, Some(t), None) => {
                // Someone else deregistered it: record it, so that undrain
                // can put it back once it is gone from the list.
                aws.record(arn, &t.registration(now())).await?;
                Ok(Change::AlreadyInState)
            }
            (AdminState::Drain | AdminState::Maint, _, Some(_)) => Ok(Change::AlreadyInState),
            (AdminState::Ready, Some(t), r) if !t.draining() => {
                if let Some(r) = r {
                    aws.forget(arn, r).await?;
                }
                Ok(Change::AlreadyInState)
            }
            (AdminState::Ready, t, r) => {
                let reg: Registration = match (r, t) {
                    (Some(r), _) => r.clone(),
                    (None, Some(t)) => t.registration(0),
                    (None, None) => unreachable!("matched above"),
                };
                aws.register(arn, &reg).await?;
                info!(balancer = %self.name, pool = %m.pool, member = %m.member, record = %reg.value(), "registered");
                self.read_back(m, Seen::InRotation).await?;
                if r.is_some() {
                    aws.forget(arn, &reg).await?;
                }
                Ok(Change::Applied)
            }
        }
    }

    /// Reads the target group until `m` shows as written (ELBv2 is
    /// eventually consistent), with a doubling pause from 200 ms.
    async fn read_back(&self, m: &MemberRef, want: Seen) -> Result<(), AwsError> {
        let mut pause = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=READ_BACK_ATTEMPTS {
            let read = self.read_group(&m.pool).await?;
            let t = read.targets.iter().find(|t| t.member() == m.member);
            let ok = match (&want, t) {
                (Seen::Out, None) => true,
                (Seen::Out, Some(t)) => t.draining(),
                (Seen::InRotation, Some(t)) => !t.draining(),
                (Seen::InRotation, None) => false,
            };
            if ok {
                return Ok(());
            }
            last = t.map_or_else(|| "not registered".to_owned(), |t| t.says());
            if attempt < READ_BACK_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        let wanted = match want {
            Seen::Out => "deregistered or draining",
            Seen::InRotation => "registered",
        };
        Err(AwsError::Protocol(format!(
            "the call succeeded, but after {READ_BACK_ATTEMPTS} reads the target is {last}, not {wanted}"
        )))
    }
}

#[async_trait]
impl Balancer for TargetGroups {
    fn name(&self) -> &str {
        &self.name
    }

    /// Health from `DescribeTargetHealth`; no weights (ELBv2 has none per
    /// target); `Drain` and `Maint` both deregister the target (a member
    /// set to `Drain` reads back as `Maint`); drained once the target is
    /// no longer `draining`, or the deregistration delay has passed.
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
        let mut warnings = Vec::new();
        let list = self
            .read_all(&mut warnings)
            .await
            .map_err(|e| e.into_core(&self.name, &self.selection()))?;
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
                "{}: ELBv2 target groups have no per-target weights",
                self.context(member)
            ),
        ))
    }

    fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }
}
