//! What the driver read from AWS, in plain types, and how it becomes
//! [`Member`]s: the part of the driver that needs no network.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{TargetGroup, TargetHealthDescription};
use lb_core::{AdminState, Health, Member};

use crate::record::{Registration, member_name};

/// One target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub arn: String,
    /// Its name: the pool's name.
    pub name: String,
    /// `instance`, `ip`, `lambda` or `alb`.
    pub target_type: String,
}

impl Group {
    pub(crate) fn from_sdk(g: &TargetGroup) -> Group {
        Group {
            arn: g.target_group_arn().unwrap_or_default().to_owned(),
            name: g.target_group_name().unwrap_or_default().to_owned(),
            target_type: g
                .target_type()
                .map_or("instance", |t| t.as_str())
                .to_owned(),
        }
    }
}

/// One target as `DescribeTargetHealth` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub id: String,
    pub port: Option<i32>,
    pub az: Option<String>,
    /// `initial`, `healthy`, `unhealthy`, `unhealthy.draining`, `unused`,
    /// `draining` or `unavailable`.
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
}

impl Target {
    pub(crate) fn from_sdk(d: &TargetHealthDescription) -> Option<Target> {
        let t = d.target()?;
        let h = d.target_health();
        Some(Target {
            id: t.id()?.to_owned(),
            port: t.port(),
            az: t.availability_zone().map(str::to_owned),
            state: h
                .and_then(|h| h.state())
                .map_or("", |s| s.as_str())
                .to_owned(),
            reason: h.and_then(|h| h.reason()).map(|r| r.as_str().to_owned()),
            description: h.and_then(|h| h.description()).map(str::to_owned),
        })
    }

    /// Its member name.
    pub(crate) fn member(&self) -> String {
        member_name(&self.id, self.port)
    }

    /// Deregistration is in progress.
    pub(crate) fn draining(&self) -> bool {
        matches!(self.state.as_str(), "draining" | "unhealthy.draining")
    }

    /// What `RegisterTargets` needs to put it back as it is.
    pub(crate) fn registration(&self, at: u64) -> Registration {
        Registration {
            id: self.id.clone(),
            port: self.port,
            az: self.az.clone(),
            at,
        }
    }

    /// `state (Reason: description)`.
    pub(crate) fn says(&self) -> String {
        match (&self.reason, &self.description) {
            (Some(r), Some(d)) => format!("{} ({r}: {d})", self.state),
            (Some(r), None) => format!("{} ({r})", self.state),
            _ => self.state.clone(),
        }
    }
}

/// One target group as read, with what lbctl recorded on it.
#[derive(Debug, Clone)]
pub(crate) struct GroupRead {
    pub group: Group,
    pub targets: Vec<Target>,
    pub records: Vec<Registration>,
    /// `deregistration_delay.timeout_seconds` (read only when a target
    /// lbctl deregistered is still draining).
    pub delay: Option<u64>,
}

/// What else the members need: instances' private IPs, and the time.
pub(crate) struct Context<'a> {
    pub private_ips: &'a HashMap<String, String>,
    pub now: u64,
}

impl GroupRead {
    /// The record of `member`, if lbctl made one.
    pub(crate) fn record(&self, member: &str) -> Option<&Registration> {
        self.records.iter().find(|r| r.member() == member)
    }

    fn address(&self, id: &str, cx: &Context<'_>) -> String {
        match self.group.target_type.as_str() {
            "instance" => cx
                .private_ips
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.to_owned()),
            _ => id.to_owned(),
        }
    }

    /// The members: every listed target, and every recorded one that is
    /// no longer listed (deregistered: `maint`, drained).
    pub(crate) fn members(&self, cx: &Context<'_>, warnings: &mut Vec<String>) -> Vec<Member> {
        let pool = &self.group.name;
        let mut out = Vec::new();
        for t in &self.targets {
            let name = t.member();
            let (admin, health) = match t.state.as_str() {
                "healthy" => (AdminState::Ready, Health::Up),
                "draining" | "unhealthy.draining" => (AdminState::Maint, Health::Down),
                "unavailable" => {
                    warnings.push(format!(
                        "target group {pool}, member {name}: health unknown: {}; ELBv2 does not check it (health checks disabled), yet routes to it",
                        t.says()
                    ));
                    (AdminState::Ready, Health::Unknown)
                }
                "unused" => {
                    warnings.push(format!(
                        "target group {pool}, member {name}: {}; no load balancer sends it traffic (a target group without a listener rule, a zone the load balancer does not use, or a stopped instance)",
                        t.says()
                    ));
                    (AdminState::Ready, Health::Down)
                }
                "initial" | "unhealthy" => (AdminState::Ready, Health::Down),
                _ => (AdminState::Ready, Health::Unknown),
            };
            let active = if admin == AdminState::Maint {
                self.past_delay(&name, cx, warnings)
            } else {
                None
            };
            out.push(Member {
                pool: pool.clone(),
                name,
                address: self.address(&t.id, cx),
                admin,
                health,
                active,
                weight: None,
            });
        }
        for r in &self.records {
            let name = r.member();
            if self.targets.iter().any(|t| t.member() == name) {
                continue;
            }
            out.push(Member {
                pool: pool.clone(),
                name,
                address: self.address(&r.id, cx),
                admin: AdminState::Maint,
                health: Health::Unknown,
                active: Some(0),
                weight: None,
            });
        }
        out
    }

    /// `Some(0)` for a target still `draining` when the deregistration
    /// delay has passed since lbctl deregistered it (ELBv2 has closed its
    /// connections by then; the state lags); `None` while it may still
    /// carry requests.
    fn past_delay(&self, name: &str, cx: &Context<'_>, warnings: &mut Vec<String>) -> Option<u64> {
        let (r, delay) = (self.record(name)?, self.delay?);
        let since = cx.now.saturating_sub(r.at);
        (since >= delay).then(|| {
            warnings.push(format!(
                "target group {}, member {name}: still draining {since} s after lbctl deregistered it, past the deregistration delay ({delay} s): counted as drained",
                self.group.name
            ));
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, state: &str) -> Target {
        Target {
            id: id.into(),
            port: Some(80),
            az: None,
            state: state.into(),
            reason: None,
            description: None,
        }
    }

    fn read(kind: &str, targets: Vec<Target>, records: Vec<Registration>) -> GroupRead {
        GroupRead {
            group: Group {
                arn: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app/1".into(),
                name: "app".into(),
                target_type: kind.into(),
            },
            targets,
            records,
            delay: Some(300),
        }
    }

    #[test]
    fn a_draining_target_is_out_and_drained_only_after_the_delay() {
        let rec = Registration {
            id: "10.0.0.1".into(),
            port: Some(80),
            az: None,
            at: 1000,
        };
        let g = read("ip", vec![target("10.0.0.1", "draining")], vec![rec]);
        let ips = HashMap::new();
        let mut w = Vec::new();
        let m = g.members(
            &Context {
                private_ips: &ips,
                now: 1299,
            },
            &mut w,
        );
        assert_eq!((m[0].admin, m[0].active), (AdminState::Maint, None));
        assert!(w.is_empty());
        let m = g.members(
            &Context {
                private_ips: &ips,
                now: 1300,
            },
            &mut w,
        );
        assert_eq!((m[0].admin, m[0].active), (AdminState::Maint, Some(0)));
        assert!(
            w[0].contains("past the deregistration delay (300 s)"),
            "{w:?}"
        );
    }

    #[test]
    fn instance_targets_take_the_private_ip_as_address() {
        let g = read("instance", vec![target("i-0abc", "healthy")], Vec::new());
        let ips = HashMap::from([("i-0abc".to_owned(), "10.0.3.4".to_owned())]);
        let m = g.members(
            &Context {
                private_ips: &ips,
                now: 0,
            },
            &mut Vec::new(),
        );
        assert_eq!(
            (m[0].name.as_str(), m[0].address.as_str()),
            ("i-0abc:80", "10.0.3.4")
        );
    }

    #[test]
    fn unused_and_unavailable_are_explained() {
        let mut unused = target("10.0.0.2", "unused");
        unused.reason = Some("Target.NotInUse".into());
        unused.description =
            Some("Target group is not configured to receive traffic from the load balancer".into());
        let g = read(
            "ip",
            vec![unused, target("10.0.0.3", "unavailable")],
            Vec::new(),
        );
        let mut w = Vec::new();
        let m = g.members(
            &Context {
                private_ips: &HashMap::new(),
                now: 0,
            },
            &mut w,
        );
        assert_eq!((m[0].health, m[1].health), (Health::Down, Health::Unknown));
        assert!(
            w[0].contains("Target.NotInUse") && w[0].contains("no load balancer sends it traffic"),
            "{w:?}"
        );
        assert!(w[1].contains("health checks disabled"), "{w:?}");
    }
}
