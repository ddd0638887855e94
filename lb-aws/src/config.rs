//! The builder and the validation of every setting.

use std::time::Duration;

use lb_core::Error;
use url::Url;

pub use aws_sdk_elasticloadbalancingv2::config::Credentials;

use crate::TargetGroups;
use crate::client::Connect;

/// Builds a [`TargetGroups`]; every value is checked in
/// [`build`](Self::build), before anything is sent to AWS.
#[derive(Debug, Clone)]
pub struct TargetGroupsBuilder {
    name: String,
    target_groups: Vec<String>,
    load_balancer: Option<String>,
    connect: Connect,
}

impl TargetGroupsBuilder {
    pub(crate) fn new(name: &str) -> Self {
        TargetGroupsBuilder {
            name: name.into(),
            target_groups: Vec::new(),
            load_balancer: None,
            connect: Connect::default(),
        }
    }

    /// Adds a target group, by name (`app-tg`) or ARN.
    pub fn target_group(mut self, t: &str) -> Self {
        self.target_groups.push(t.into());
        self
    }

    /// Adds every target group of this load balancer (name or ARN), as
    /// found at each read.
    pub fn load_balancer(mut self, lb: &str) -> Self {
        self.load_balancer = Some(lb.into());
        self
    }

    /// The region (default: the SDK's: `AWS_REGION`, the profile's).
    pub fn region(mut self, r: &str) -> Self {
        self.connect.region = Some(r.into());
        self
    }

    /// Another endpoint than AWS's for every service (an emulator, a VPC
    /// endpoint); `https://`, or `http://` to a loopback address only.
    pub fn endpoint_url(mut self, u: &str) -> Self {
        self.connect.endpoint_url = Some(u.into());
        self
    }

    /// The profile of `~/.aws/config` to use (default: `AWS_PROFILE`, else
    /// `default`).
    pub fn profile(mut self, p: &str) -> Self {
        self.connect.profile = Some(p.into());
        self
    }

    /// Credentials to use instead of the SDK's default chain, for a
    /// program that holds its own (from a vault, say). The inventory has
    /// no key for them: there, the chain finds them.
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.connect.credentials = Some(c);
        self
    }

    /// The timeout of each attempt of each call (default: the SDK's).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.connect.timeout = Some(d);
        self
    }

    /// Checks every setting and makes the balancer. Nothing is sent yet:
    /// credentials are found at the first call.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the balancer and the setting at fault.
    pub fn build(self) -> lb_core::Result<TargetGroups> {
        let name = self.name.clone();
        let bad = |m: String| Error::invalid_input(&name, m);
        lb_core::validate_name(&name, "balancer", &name)?;
        if self.target_groups.is_empty() && self.load_balancer.is_none() {
            return Err(bad(
                "give target_groups (names or ARNs), load_balancer, or both".into(),
            ));
        }
        for t in &self.target_groups {
            check_resource(t, "target_groups", "targetgroup/").map_err(&bad)?;
        }
        if let Some(lb) = &self.load_balancer {
            check_resource(lb, "load_balancer", "loadbalancer/").map_err(&bad)?;
        }
        if let Some(r) = &self.connect.region {
            let ok = !r.is_empty()
                && r.len() <= 32
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(bad(format!(
                    "region {:?} is not a region name such as eu-west-1",
                    lb_core::escape_name(r)
                )));
            }
        }
        if let Some(u) = &self.connect.endpoint_url {
            check_endpoint(u).map_err(&bad)?;
        }
        if let Some(p) = &self.connect.profile
            && (p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(bad(format!(
                "profile {:?} is not a profile name",
                lb_core::escape_name(p)
            )));
        }
        if self.connect.timeout == Some(Duration::ZERO) {
            return Err(bad("timeout must be more than 0".into()));
        }
        Ok(TargetGroups::new(
            name,
            self.target_groups,
            self.load_balancer,
            self.connect,
        ))
    }
}

/// A target group's or load balancer's name (1–32 letters, digits and
/// hyphens, not at either end) or its ARN.
fn check_resource(v: &str, key: &str, arn_kind: &str) -> Result<(), String> {
    let shown = lb_core::escape_name(v);
    if v.starts_with("arn:") {
        let ok = v.contains(":elasticloadbalancing:")
            && v.contains(arn_kind)
            && v.len() <= 256
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ":/-_.".contains(c));
        return if ok {
            Ok(())
        } else {
            Err(format!(
                "{key}: {shown:?} is not an ELBv2 ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:{arn_kind}…)"
            ))
        };
    }
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: {shown:?} is neither a name (1 to 32 letters, digits and hyphens, no hyphen at either end) nor an ARN"
        ))
    }
}

fn check_endpoint(u: &str) -> Result<(), String> {
    let url = Url::parse(u).map_err(|e| format!("endpoint_url {u:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "endpoint_url {u:?} must use https:// (http:// only to a loopback address)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert!(check_resource("app-tg", "target_groups", "targetgroup/").is_ok());
        let arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app-tg/73e2d6bc24d8a067";
        assert!(check_resource(arn, "target_groups", "targetgroup/").is_ok());
        for bad in ["", "-app", "app tg", "a;b", &"x".repeat(33)] {
            assert!(
                check_resource(bad, "target_groups", "targetgroup/").is_err(),
                "{bad:?}"
            );
        }
        let lb_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
        assert!(check_resource(lb_arn, "target_groups", "targetgroup/").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let b = TargetGroupsBuilder::new("alb")
            .target_group("app")
            .credentials(Credentials::new(
                "AKIDEXAMPLE",
                "s3cr3t-key",
                Some("t0ken".into()),
                None,
                "vault",
            ));
        let shown = format!("{b:?} {:?}", b.clone().build().unwrap());
        assert!(
            !shown.contains("s3cr3t-key") && !shown.contains("t0ken"),
            "{shown}"
        );
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("http://127.0.0.1:5000").is_ok());
        assert!(check_endpoint("https://elasticloadbalancing.eu-west-1.amazonaws.com").is_ok());
        assert!(check_endpoint("http://example.com").is_err());
        assert!(check_endpoint("not a url").is_err());
    }
}
