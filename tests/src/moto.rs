//! `moto` in server mode: an AWS API emulator (ELBv2, EC2, …) run as a
//! process on a loopback port, for the `aws-elbv2` driver's tests.

use std::fmt::Write as _;
use std::process::Command;

use crate::daemon::{Daemon, lab_dir};
use crate::http::{Response, request};
use crate::ports::{PortLease, lease_port};

/// The environment a process needs to talk to the lab's moto with the AWS
/// SDK: fake credentials (moto accepts any), a region, and no instance
/// metadata lookups.
pub const AWS_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The region the lab's resources are made in.
pub const MOTO_REGION: &str = "us-east-1";

/// One target as moto's `DescribeTargetHealth` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MotoTarget {
    /// The target id.
    pub id: String,
    /// Its port.
    pub port: Option<u16>,
    /// Its health state (`healthy`, `unused`, …).
    pub state: String,
}

/// A real `moto_server` on a loopback port, in a temp dir; stopped by PID
/// (its process group) on drop.
#[derive(Debug)]
pub struct Moto {
    daemon: Daemon,
    _dir: tempfile::TempDir,
    port: PortLease,
}

impl Moto {
    /// Starts moto and waits until it answers.
    ///
    /// # Panics
    ///
    /// When `moto_server` is not installed (says how to install it), or
    /// does not start (with its log).
    pub fn start() -> Moto {
        let bin = which("moto_server").unwrap_or_else(|| {
            panic!(
                "lb-lab: `moto_server` is not installed; the aws-elbv2 tests run against moto in \
                 server mode. Install it with `pip install 'moto[server]'`, or run scripts/test, \
                 which installs it."
            )
        });
        let dir = lab_dir("lb-moto-");
        let port = lease_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.port().to_string()])
            .current_dir(dir.path());
        let log = dir.path().join("moto.log");
        let mut daemon = Daemon::spawn("moto_server", cmd, &log, vec![port.port()]);
        let url = format!("http://{}/moto-api/", port.addr());
        daemon.wait_ready(|| crate::http::get(&url).is_ok_and(|r| r.status == 200));
        Moto {
            daemon,
            _dir: dir,
            port,
        }
    }

    /// `http://127.0.0.1:PORT`, the `endpoint_url` for every service.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.port.addr())
    }

    /// The daemon handle (PID, log).
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Sends one query-API call (`Action=…&Version=…` and `params`) to
    /// `service` (`elasticloadbalancing` or `ec2`) and returns the answer.
    ///
    /// # Panics
    ///
    /// When moto does not answer.
    pub fn try_call(&self, service: &str, action: &str, params: &[(&str, &str)]) -> Response {
        let version = match service {
            "ec2" => "2016-11-15",
            _ => "2015-12-01",
        };
        let mut body = format!("Action={action}&Version={version}");
        for (k, v) in params {
            let _ = write!(body, "&{}={}", encode(k), encode(v));
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{MOTO_REGION}/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        request(
            "POST",
            &format!("{}/", self.endpoint()),
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &auth),
            ],
            &body,
        )
        .unwrap_or_else(|e| panic!("lb-lab: moto did not answer {action}: {e}"))
    }

    /// As [`try_call`](Self::try_call), and returns the body.
    ///
    /// # Panics
    ///
    /// When moto answers with an error.
    pub fn call(&self, service: &str, action: &str, params: &[(&str, &str)]) -> String {
        let r = self.try_call(service, action, params);
        assert!(
            r.status == 200,
            "lb-lab: moto refused {action}: {} {}",
            r.status,
            r.body
        );
        r.body
    }

    /// A VPC (10.0.0.0/16) with a subnet (10.0.1.0/24 in us-east-1a);
    /// returns (vpc id, subnet id).
    pub fn network(&self) -> (String, String) {
        let vpc = first(
            &self.call("ec2", "CreateVpc", &[("CidrBlock", "10.0.0.0/16")]),
            "vpcId",
        );
        let subnet = first(
            &self.call(
                "ec2",
                "CreateSubnet",
                &[
                    ("VpcId", &vpc),
                    ("CidrBlock", "10.0.1.0/24"),
                    ("AvailabilityZone", "us-east-1a"),
                ],
            ),
            "subnetId",
        );
        (vpc, subnet)
    }

    /// Starts an EC2 instance with `private_ip` in `subnet`; returns its id.
    pub fn run_instance(&self, subnet: &str, private_ip: &str) -> String {
        first(
            &self.call(
                "ec2",
                "RunInstances",
                &[
                    ("ImageId", "ami-12c6146b"),
                    ("MinCount", "1"),
                    ("MaxCount", "1"),
                    ("SubnetId", subnet),
                    ("PrivateIpAddress", private_ip),
                ],
            ),
            "instanceId",
        )
    }

    /// A target group of `target_type` (`ip`, `instance`) on HTTP `port`
    /// in `vpc`; returns its ARN.
    pub fn create_target_group(
        &self,
        name: &str,
        vpc: &str,
        target_type: &str,
        port: u16,
    ) -> String {
        first(
            &self.call(
                "elasticloadbalancing",
                "CreateTargetGroup",
                &[
                    ("Name", name),
                    ("Protocol", "HTTP"),
                    ("Port", &port.to_string()),
                    ("VpcId", vpc),
                    ("TargetType", target_type),
                ],
            ),
            "TargetGroupArn",
        )
    }

    /// An application load balancer in `subnet` with an HTTP listener
    /// forwarding to `target_group`; returns the load balancer's ARN.
    pub fn create_load_balancer(&self, name: &str, subnet: &str, target_group: &str) -> String {
        let lb = first(
            &self.call(
                "elasticloadbalancing",
                "CreateLoadBalancer",
                &[("Name", name), ("Subnets.member.1", subnet)],
            ),
            "LoadBalancerArn",
        );
        self.call(
            "elasticloadbalancing",
            "CreateListener",
            &[
                ("LoadBalancerArn", &lb),
                ("Protocol", "HTTP"),
                ("Port", "80"),
                ("DefaultActions.member.1.Type", "forward"),
                ("DefaultActions.member.1.TargetGroupArn", target_group),
            ],
        );
        lb
    }

    /// Registers `(id, port, availability zone)` targets.
    pub fn register(&self, arn: &str, targets: &[(&str, Option<u16>, Option<&str>)]) {
        let mut params = vec![("TargetGroupArn".to_owned(), arn.to_owned())];
        for (i, (id, port, az)) in targets.iter().enumerate() {
            let n = i + 1;
            params.push((format!("Targets.member.{n}.Id"), (*id).to_owned()));
            if let Some(p) = port {
                params.push((format!("Targets.member.{n}.Port"), p.to_string()));
            }
            if let Some(az) = az {
                params.push((
                    format!("Targets.member.{n}.AvailabilityZone"),
                    (*az).to_owned(),
                ));
            }
        }
        let p: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.call("elasticloadbalancing", "RegisterTargets", &p);
    }

    /// The targets `DescribeTargetHealth` lists.
    pub fn targets(&self, arn: &str) -> Vec<MotoTarget> {
        let body = self.call(
            "elasticloadbalancing",
            "DescribeTargetHealth",
            &[("TargetGroupArn", arn)],
        );
        elements(&body, "member")
            .iter()
            .filter(|m| m.contains("<TargetHealth>"))
            .map(|m| MotoTarget {
                id: first(m, "Id"),
                port: elements(m, "Port").first().and_then(|p| p.parse().ok()),
                state: first(m, "State"),
            })
            .collect()
    }

    /// The target group's tags, as (key, value).
    pub fn tags(&self, arn: &str) -> Vec<(String, String)> {
        let body = self.call(
            "elasticloadbalancing",
            "DescribeTags",
            &[("ResourceArns.member.1", arn)],
        );
        elements(&body, "Tags")
            .iter()
            .flat_map(|t| elements(t, "member"))
            .map(|m| (first(&m, "Key"), elements(&m, "Value").concat()))
            .collect()
    }

    /// Sets `deregistration_delay.timeout_seconds`.
    pub fn set_deregistration_delay(&self, arn: &str, seconds: u32) {
        self.call(
            "elasticloadbalancing",
            "ModifyTargetGroupAttributes",
            &[
                ("TargetGroupArn", arn),
                (
                    "Attributes.member.1.Key",
                    "deregistration_delay.timeout_seconds",
                ),
                ("Attributes.member.1.Value", &seconds.to_string()),
            ],
        );
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Form-encodes a value (`application/x-www-form-urlencoded`).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The text of every `<tag>…</tag>` in `xml` (not nested in one another).
pub fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_owned());
        rest = &after[j + close.len()..];
    }
    out
}

/// The first `<tag>…</tag>` of `xml`.
///
/// # Panics
///
/// When there is none.
fn first(xml: &str, tag: &str) -> String {
    elements(xml, tag)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("lb-lab: no <{tag}> in moto's answer: {xml}"))
}
