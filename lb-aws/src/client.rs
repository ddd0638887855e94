//! The ELBv2 (and EC2 `DescribeInstances`) calls the driver makes, each
//! named by its IAM action in errors, through the official AWS SDK for
//! Rust with its default credential chain and standard retry mode
//! (throttling and 5xx retried with exponential backoff and jitter).

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::TargetDescription;

use crate::error::{AwsError, Result};
use crate::record::Registration;
use crate::view::{Group, Target};

/// How many attempts the SDK makes for one call (standard retry mode).
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// ELBv2 takes at most this many ARNs per `DescribeTags` and names per
/// `DescribeTargetGroups`.
const CHUNK: usize = 20;

/// Where to connect and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connect {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    pub timeout: Option<Duration>,
    pub credentials: Option<elbv2::config::Credentials>,
}

/// The clients, made once from the SDK's configuration.
#[derive(Debug)]
pub(crate) struct Aws {
    elb: elbv2::Client,
    ec2: aws_sdk_ec2::Client,
}

fn sdk<E, R>(action: &'static str) -> impl FnOnce(elbv2::error::SdkError<E, R>) -> AwsError
where
    E: elbv2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    move |e| AwsError::from_sdk(action, e)
}

impl Aws {
    /// Loads the SDK's configuration: the credential chain (environment,
    /// profile, web identity, instance metadata), the region, the endpoint.
    pub(crate) async fn load(c: &Connect) -> Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(r) = &c.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &c.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        if let Some(p) = &c.profile {
            loader = loader.profile_name(p);
        }
        if let Some(k) = &c.credentials {
            loader = loader.credentials_provider(k.clone());
        }
        if let Some(t) = c.timeout {
            loader = loader.timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(t)
                    .build(),
            );
        }
        let conf = loader.load().await;
        if conf.region().is_none() {
            return Err(AwsError::Credentials(
                "no AWS region: set `region` in the inventory, AWS_REGION, or a region in the profile"
                    .into(),
            ));
        }
        Ok(Aws {
            elb: elbv2::Client::new(&conf),
            ec2: aws_sdk_ec2::Client::new(&conf),
        })
    }

    /// The target groups named (names or ARNs), and every target group of
    /// `load_balancer` (name or ARN).
    pub(crate) async fn groups(
        &self,
        target_groups: &[String],
        load_balancer: Option<&str>,
    ) -> Result<Vec<Group>> {
        const ACTION: &str = "elasticloadbalancing:DescribeTargetGroups";
        let (arns, names): (Vec<String>, Vec<String>) = target_groups
            .iter()
            .cloned()
            .partition(|t| t.starts_with("arn:"));
        let mut out = Vec::new();
        for chunk in arns.chunks(CHUNK) {
            let r = self
                .elb
                .describe_target_groups()
                .set_target_group_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk(ACTION))?;
            out.extend(r.target_groups().iter().map(Group::from_sdk));
        }
        for chunk in names.chunks(CHUNK) {
            let r = self
                .elb
                .describe_target_groups()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk(ACTION))?;
            out.extend(r.target_groups().iter().map(Group::from_sdk));
        }
        if let Some(lb) = load_balancer {
            let arn = self.load_balancer_arn(lb).await?;
            let mut marker = None;
            loop {
                let r = self
                    .elb
                    .describe_target_groups()
                    .load_balancer_arn(&arn)
                    .set_marker(marker)
                    .send()
                    .await
                    .map_err(sdk(ACTION))?;
                out.extend(r.target_groups().iter().map(Group::from_sdk));
                marker = r.next_marker().map(str::to_owned);
                if marker.is_none() {
                    break;
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|g| seen.insert(g.arn.clone()));
        Ok(out)
    }

    async fn load_balancer_arn(&self, lb: &str) -> Result<String> {
        const ACTION: &str = "elasticloadbalancing:DescribeLoadBalancers";
        let req = self.elb.describe_load_balancers();
        let req = if lb.starts_with("arn:") {
            req.load_balancer_arns(lb)
        } else {
            req.names(lb)
        };
        let r = req.send().await.map_err(sdk(ACTION))?;
        r.load_balancers()
            .iter()
            .find_map(|l| l.load_balancer_arn().map(str::to_owned))
            .ok_or_else(|| AwsError::Missing {
                action: ACTION,
                code: "LoadBalancerNotFound".into(),
                message: format!("no load balancer {lb}"),
            })
    }

    /// Every target `DescribeTargetHealth` lists (registered, or still
    /// draining).
    pub(crate) async fn targets(&self, arn: &str) -> Result<Vec<Target>> {
        let r = self
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:DescribeTargetHealth"))?;
        Ok(r.target_health_descriptions()
            .iter()
            .filter_map(Target::from_sdk)
            .collect())
    }

    /// The registrations lbctl recorded on each of `arns`.
    pub(crate) async fn records(
        &self,
        arns: &[String],
    ) -> Result<HashMap<String, Vec<Registration>>> {
        let mut out: HashMap<String, Vec<Registration>> = HashMap::new();
        for chunk in arns.chunks(CHUNK) {
            let r = self
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk("elasticloadbalancing:DescribeTags"))?;
            for d in r.tag_descriptions() {
                let Some(arn) = d.resource_arn() else {
                    continue;
                };
                let recs = d.tags().iter().filter_map(|t| {
                    Registration::parse(t.key().unwrap_or_default(), t.value().unwrap_or_default())
                });
                out.entry(arn.to_owned()).or_default().extend(recs);
            }
        }
        Ok(out)
    }

    /// The target group's `deregistration_delay.timeout_seconds`.
    pub(crate) async fn deregistration_delay(&self, arn: &str) -> Result<Option<u64>> {
        let r = self
            .elb
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:DescribeTargetGroupAttributes"))?;
        Ok(r.attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value()?.parse().ok()))
    }

    /// The private IPv4 address of each of `ids` (EC2 instances) that has
    /// one.
    pub(crate) async fn private_ips(&self, ids: &[String]) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(100) {
            let r = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ec2:DescribeInstances", e))?;
            for i in r.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(id), Some(ip)) = (i.instance_id(), i.private_ip_address()) {
                    out.insert(id.to_owned(), ip.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// `RegisterTargets` with exactly the recorded id, port and zone.
    pub(crate) async fn register(&self, arn: &str, r: &Registration) -> Result<()> {
        let t = TargetDescription::builder()
            .id(&r.id)
            .set_port(r.port)
            .set_availability_zone(r.az.clone())
            .build();
        self.elb
            .register_targets()
            .target_group_arn(arn)
            .targets(t)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:RegisterTargets"))?;
        Ok(())
    }

    /// `DeregisterTargets` of one target.
    pub(crate) async fn deregister(&self, arn: &str, id: &str, port: Option<i32>) -> Result<()> {
        let t = TargetDescription::builder().id(id).set_port(port).build();
        self.elb
            .deregister_targets()
            .target_group_arn(arn)
            .targets(t)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:DeregisterTargets"))?;
        Ok(())
    }

    /// Records `r` on the target group.
    pub(crate) async fn record(&self, arn: &str, r: &Registration) -> Result<()> {
        let tag = elbv2::types::Tag::builder()
            .key(r.key()?)
            .value(r.value())
            .build();
        self.elb
            .add_tags()
            .resource_arns(arn)
            .tags(tag)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:AddTags"))?;
        Ok(())
    }

    /// Drops the record of `r` from the target group.
    pub(crate) async fn forget(&self, arn: &str, r: &Registration) -> Result<()> {
        self.elb
            .remove_tags()
            .resource_arns(arn)
            .tag_keys(r.key()?)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:RemoveTags"))?;
        Ok(())
    }
}
