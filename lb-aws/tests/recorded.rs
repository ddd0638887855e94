//! lb-aws against AWS's published responses (`tests/fixtures/`, see its
//! README), for what moto does not model: the `draining` state, the
//! availability zone of a registration, IAM refusals, throttling.
//!
//! A small HTTP server on a loopback port answers each action with its
//! recorded response and keeps every request, so the tests see exactly
//! what the real AWS SDK sent.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use lb_aws::{Credentials, TargetGroups};
use lb_core::{AdminState, Balancer, Change, Error, Health, MemberRef};

type Script = HashMap<&'static str, VecDeque<(u16, String)>>;

/// The recorded answers, by action; the last answer of each action repeats.
struct Recorded {
    endpoint: String,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    _lease: lb_lab::PortLease,
}

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn ok(name: &str) -> (u16, String) {
    (200, fixture(name))
}

/// The actions every read makes, answered from the fixtures.
fn reads(health: &[&str]) -> Script {
    let mut s = Script::new();
    s.insert(
        "DescribeTargetGroups",
        [ok("describe-target-groups.xml")].into(),
    );
    s.insert(
        "DescribeTargetHealth",
        health.iter().map(|h| ok(h)).collect(),
    );
    s.insert("DescribeTags", [ok("describe-tags.xml")].into());
    s.insert(
        "DescribeTargetGroupAttributes",
        [ok("describe-target-group-attributes.xml")].into(),
    );
    s.insert(
        "DescribeInstances",
        [(403, fixture("error-ec2-unauthorized.xml"))].into(),
    );
    for a in [
        "RegisterTargets",
        "DeregisterTargets",
        "AddTags",
        "RemoveTags",
    ] {
        s.insert(a, [ok(&format!("empty-{a}.xml"))].into());
    }
    s
}

impl Recorded {
    fn serve(script: Script) -> Recorded {
        let lease = lb_lab::lease_port();
        let listener = TcpListener::bind(lease.addr()).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let script = Mutex::new(script);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    continue;
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                let action = param(&body, "Action").unwrap_or_default();
                seen.lock().unwrap().push((action.clone(), body));
                let (status, answer) = {
                    let mut s = script.lock().unwrap();
                    match s.get_mut(action.as_str()) {
                        Some(q) if q.len() > 1 => q.pop_front().unwrap(),
                        Some(q) if !q.is_empty() => q[0].clone(),
                        _ => (
                            400,
                            format!(
                                "<ErrorResponse><Error><Type>Sender</Type><Code>NotRecorded</Code><Message>no recorded response for {action}</Message></Error></ErrorResponse>"
                            ),
                        ),
                    }
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Recorded {
            endpoint: format!("http://{}", lease.addr()),
            requests,
            _lease: lease,
        }
    }

    fn driver(&self) -> TargetGroups {
        TargetGroups::builder("alb")
            .target_group("my-targets")
            .region("us-west-2")
            .endpoint_url(&self.endpoint)
            .credentials(Credentials::new("testing", "testing", None, None, "lab"))
            .build()
            .unwrap()
    }

    /// The form bodies of the requests for `action`, in order.
    fn sent(&self, action: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The actions of the writes sent, in order.
    fn writes(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .filter(|a| !a.starts_with("Describe"))
            .collect()
    }
}

/// The decoded value of `key` in a form body.
fn param(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| decode(v))
    })
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() + 1 => {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_draining_target_is_out_and_counts_as_drained_only_past_the_delay() {
    let aws = Recorded::serve(reads(&["describe-target-health-draining.xml"]));
    let lb = aws.driver();
    let all = lb.members().await.unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|m| {
            (
                m.pool.as_str(),
                m.name.as_str(),
                m.address.as_str(),
                m.admin,
                m.health,
                m.active,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "my-targets",
                "i-0376fadf:80",
                "i-0376fadf",
                AdminState::Ready,
                Health::Up,
                None
            ),
            // Deregistered by lbctl long ago (at=1): past the 300 s delay.
            (
                "my-targets",
                "i-0f76fade:80",
                "i-0f76fade",
                AdminState::Maint,
                Health::Down,
                Some(0)
            ),
            // Deregistered by someone else: draining, nothing known.
            (
                "my-targets",
                "i-0a1b2c3d:80",
                "i-0a1b2c3d",
                AdminState::Maint,
                Health::Down,
                None
            ),
        ]
    );
    let w = lb.warnings().join("\n");
    assert!(w.contains("past the deregistration delay (300 s)"), "{w}");
    assert!(
        w.contains("ec2:DescribeInstances was refused") && w.contains("listed by instance id"),
        "{w}"
    );

    // Draining already: nothing to send but the record undrain needs.
    let m = MemberRef::new("my-targets", "i-0a1b2c3d:80");
    assert_eq!(
        lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(aws.writes(), ["AddTags"]);
    let tag = &aws.sent("AddTags")[0];
    assert_eq!(
        param(tag, "Tags.member.1.Key").as_deref(),
        Some("lbctl:deregistered:i-0a1b2c3d:80")
    );
    assert!(
        param(tag, "Tags.member.1.Value")
            .unwrap()
            .starts_with("id=i-0a1b2c3d port=80 at=")
    );
}

#[tokio::test]
async fn ready_registers_exactly_the_recorded_id_port_and_zone() {
    let aws = Recorded::serve(reads(&[
        "describe-target-health-draining.xml",
        "describe-target-health-healthy.xml",
    ]));
    let lb = aws.driver();
    let m = MemberRef::new("my-targets", "i-0f76fade:80");
    assert_eq!(
        lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(aws.writes(), ["RegisterTargets", "RemoveTags"]);
    let reg = &aws.sent("RegisterTargets")[0];
    assert_eq!(
        (
            param(reg, "Targets.member.1.Id").as_deref(),
            param(reg, "Targets.member.1.Port").as_deref(),
            param(reg, "Targets.member.1.AvailabilityZone").as_deref(),
        ),
        (Some("i-0f76fade"), Some("80"), Some("all"))
    );
    let rm = &aws.sent("RemoveTags")[0];
    assert_eq!(
        param(rm, "TagKeys.member.1").as_deref(),
        Some("lbctl:deregistered:i-0f76fade:80")
    );
}

#[tokio::test]
async fn a_drain_refused_by_iam_names_the_action_and_leaves_no_record() {
    let mut script = reads(&["describe-target-health-healthy.xml"]);
    script.insert(
        "DeregisterTargets",
        [(403, fixture("error-access-denied.xml"))].into(),
    );
    let aws = Recorded::serve(script);
    let lb = aws.driver();
    let e = lb
        .set_state(
            &MemberRef::new("my-targets", "i-0376fadf:80"),
            AdminState::Drain,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("alb: target group my-targets, member i-0376fadf:80: elasticloadbalancing:DeregisterTargets was refused (AccessDenied"),
        "{text}"
    );
    assert!(
        text.contains("the IAM policy must allow elasticloadbalancing:DeregisterTargets"),
        "{text}"
    );
    assert_eq!(aws.writes(), ["AddTags", "DeregisterTargets", "RemoveTags"]);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_unavailable() {
    let mut script = reads(&["describe-target-health-healthy.xml"]);
    script.insert(
        "DescribeTargetGroups",
        [(400, fixture("error-throttling.xml"))].into(),
    );
    let aws = Recorded::serve(script);
    let e = aws.driver().members().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("elasticloadbalancing:DescribeTargetGroups: AWS is busy or failing after retries with backoff (Throttling: Rate exceeded)"),
        "{e}"
    );
    assert_eq!(
        aws.sent("DescribeTargetGroups").len(),
        5,
        "the SDK's standard retry mode, 5 attempts"
    );
}
