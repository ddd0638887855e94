//! The inventory's `[balancers.NAME]` table of kind `aws-elbv2`.

use std::time::Duration;

use lb_core::{Driver, Result, SetSome};
use serde::Deserialize;

use crate::{TargetGroups, TargetGroupsBuilder};

/// The keys of a `[balancers.NAME]` table with `kind = "aws-elbv2"`; each
/// stands for the [`TargetGroupsBuilder`] method of the same name, which
/// checks it when [`Driver::build`] drives the builder. There are no
/// credential keys: the AWS SDK's default chain finds them (environment,
/// `profile`, web identity, instance metadata).
///
/// ```
/// let c: lb_aws::Config = toml::from_str(r#"
///     target_groups = ["app-tg"]
///     region = "eu-west-1"
///     timeout = "10s"
/// "#).unwrap();
/// assert_eq!(c.timeout, Some(std::time::Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Target groups, by name or ARN.
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// A load balancer (name or ARN): every target group it forwards to.
    pub load_balancer: Option<String>,
    /// The region (default: the SDK's).
    pub region: Option<String>,
    /// Another endpoint for every call (an emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// The profile of the shared AWS config files.
    pub profile: Option<String>,
    /// The timeout of each attempt of each call.
    #[serde(default, with = "lb_core::duration::serde_opt")]
    pub timeout: Option<Duration>,
}

impl Driver for TargetGroups {
    const KIND: &'static str = "aws-elbv2";
    type Config = Config;

    /// Builds the driver through [`TargetGroups::builder`].
    fn build(name: &str, c: Config) -> Result<TargetGroups> {
        c.target_groups
            .iter()
            .fold(TargetGroups::builder(name), |b, t| b.target_group(t))
            .set_some(
                c.load_balancer.as_deref(),
                TargetGroupsBuilder::load_balancer,
            )
            .set_some(c.region.as_deref(), TargetGroupsBuilder::region)
            .set_some(c.endpoint_url.as_deref(), TargetGroupsBuilder::endpoint_url)
            .set_some(c.profile.as_deref(), TargetGroupsBuilder::profile)
            .set_some(c.timeout, TargetGroupsBuilder::timeout)
            .build()
    }
}
