//! lbctl end to end with an AWS ELBv2 target group (moto in server mode)
//! beside a real HAProxy.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{Env, admin_bits, aws_section, drain_while_busy, haproxy_section, stderr};
use lb_lab::{Backend, Haproxy, Moto, Pools};

/// The target of node `i` (1-based) in the target group.
fn target_ip(i: usize) -> String {
    format!("10.0.1.{}", 10 + i)
}

/// moto with an `ip` target group `app` holding one target per backend,
/// at `10.0.1.1I:8080`; returns it and the group's ARN.
fn moto_with(backends: &[Backend]) -> (Moto, String) {
    let moto = Moto::start();
    let (vpc, _) = moto.network();
    let arn = moto.create_target_group("app", &vpc, "ip", 80);
    let ips: Vec<String> = (1..=backends.len()).map(target_ip).collect();
    let targets: Vec<_> = ips
        .iter()
        .map(|ip| (ip.as_str(), Some(8080), None))
        .collect();
    moto.register(&arn, &targets);
    (moto, arn)
}

/// Node `nodeI` at the target's address; HAProxy knows it by name.
fn nodes(backends: &[Backend]) -> String {
    let mut s = String::from(
        "[defaults]\npoll_interval = \"50ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\n\n",
    );
    for (i, b) in backends.iter().enumerate() {
        let _ = writeln!(
            s,
            "[nodes.{}]\naddress = \"{}:8080\"\n",
            b.id(),
            target_ip(i + 1)
        );
    }
    s
}

/// (`a`, `b`) of each object of a JSON array.
fn pairs(list: &serde_json::Value, a: &str, b: &str) -> Vec<(String, String)> {
    let field = |o: &serde_json::Value, k: &str| o[k].as_str().unwrap_or_default().to_owned();
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|o| (field(o, a), field(o, b)))
        .collect()
}

/// Three nodes behind one HAProxy (`edge`) and one target group (`alb`).
struct Lab {
    backends: Vec<Backend>,
    hap: Haproxy,
    moto: Moto,
    arn: String,
    env: Env,
}

impl Lab {
    fn start() -> Lab {
        let backends = Backend::start_many(3);
        let hap = Haproxy::start(&Pools::new().pool("app", &backends));
        let (moto, arn) = moto_with(&backends);
        let inv = nodes(&backends)
            + &haproxy_section("edge", &hap.admin_socket())
            + &aws_section("alb", &moto, &["app"]);
        let env = Env::new(&inv).with_aws();
        Lab {
            backends,
            hap,
            moto,
            arn,
            env,
        }
    }
}

fn registered(moto: &Moto, arn: &str) -> Vec<(String, Option<u16>)> {
    moto.targets(arn)
        .into_iter()
        .map(|t| (t.id, t.port))
        .collect()
}

#[test]
fn one_command_drains_a_node_behind_haproxy_and_a_target_group() {
    let lab = Lab::start();
    let (hap, moto, arn, env) = (&lab.hap, &lab.moto, lab.arn.as_str(), &lab.env);

    let v = env.json(&["status", "node2"]);
    let mut kinds = pairs(&v["nodes"][0]["members"], "kind", "member");
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("aws-elbv2".into(), "10.0.1.12:8080".into()),
            ("haproxy".into(), "node2".into())
        ]
    );

    let v = env.json(&["drain", "node2"]);
    assert_eq!(v["nodes"][0]["result"], "drained");
    for m in v["nodes"][0]["members"].as_array().unwrap() {
        assert_eq!(
            (m["admin"].as_str(), m["change"].as_str()),
            (Some("maint"), Some("applied")),
            "{m}"
        );
    }
    assert_eq!(admin_bits(hap, "node2") & 0x01, 0x01, "maint in HAProxy");
    assert!(
        !registered(moto, arn).contains(&("10.0.1.12".into(), Some(8080))),
        "deregistered"
    );
    assert_eq!(moto.tags(arn)[0].0, "lbctl:deregistered:10.0.1.12:8080");

    let v = env.json(&["undrain", "node2"]);
    assert_eq!(v["nodes"][0]["result"], "undrained");
    for m in v["nodes"][0]["members"].as_array().unwrap() {
        assert_eq!(
            (m["admin"].as_str(), m["health"].as_str()),
            (Some("ready"), Some("up")),
            "{m}"
        );
    }
    assert_eq!(admin_bits(hap, "node2"), 0);
    assert!(
        registered(moto, arn).contains(&("10.0.1.12".into(), Some(8080))),
        "registered again"
    );
    assert!(moto.tags(arn).is_empty(), "record dropped");
}

#[test]
fn the_guard_keeps_the_last_target_of_a_target_group() {
    let backends = Backend::start_many(2);
    let (moto, arn) = moto_with(&backends);
    let env = Env::new(&(nodes(&backends) + &aws_section("alb", &moto, &["app"]))).with_aws();
    env.ok(&["drain", "node1"]);
    let out = env.run(&["drain", "node2"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("alb pool app would keep 0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        registered(&moto, &arn),
        [("10.0.1.12".to_owned(), Some(8080))],
        "nothing changed"
    );
    assert_eq!(moto.tags(&arn).len(), 1, "only node1's record");
}

#[test]
fn recover_after_sigkill_restores_the_exact_registration() {
    let lab = Lab::start();
    let (backends, hap, moto, arn, env) = (
        &lab.backends,
        &lab.hap,
        &lab.moto,
        lab.arn.as_str(),
        &lab.env,
    );
    let mut child = drain_while_busy(env, hap, &backends[1], "node2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while moto.tags(arn).is_empty() || registered(moto, arn).len() == 3 {
        assert!(Instant::now() < deadline, "lbctl never deregistered node2");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, mid-wait
    child.wait().unwrap();
    let record = moto.tags(arn);
    assert_eq!(record.len(), 1, "{record:?}");
    assert!(
        record[0].1.starts_with("id=10.0.1.12 port=8080 "),
        "{record:?}"
    );

    let v = env.json(&["recover"]);
    let restored = pairs(&v["recovered"], "balancer", "change");
    assert!(restored.contains(&("alb".into(), "applied".into())), "{v}");
    let mut back = registered(moto, arn);
    back.sort();
    assert_eq!(
        back,
        [
            ("10.0.1.11".to_owned(), Some(8080)),
            ("10.0.1.12".to_owned(), Some(8080)),
            ("10.0.1.13".to_owned(), Some(8080))
        ],
        "the same id and port again"
    );
    assert!(moto.tags(arn).is_empty());
    assert_eq!(admin_bits(hap, "node2"), 0);
    assert_eq!(env.json(&["recover"])["recovered"], serde_json::json!([]));
}
