//! lb-aws against moto in server mode (`lb_lab::Moto`): the real AWS SDK
//! over HTTP to a real AWS-API emulator, one moto per test.
//!
//! moto does not model the `draining` state (a deregistered target is gone
//! at once) nor keep a target's availability zone; those paths are tested
//! against AWS's published responses in `tests/recorded.rs`.

use lb_aws::{Credentials, TargetGroups};
use lb_core::{AdminState, Balancer, Change, Error, Health, MemberRef, conformance};
use lb_lab::{MOTO_REGION, Moto};

/// One moto with a VPC, an `ip` target group `app` on port 80 and three
/// targets on port 8080; returns it and the group's ARN.
fn lab() -> (Moto, String) {
    let moto = Moto::start();
    let (vpc, _) = moto.network();
    let arn = moto.create_target_group("app", &vpc, "ip", 80);
    moto.register(
        &arn,
        &[
            ("10.0.1.11", Some(8080), None),
            ("10.0.1.12", Some(8080), None),
            ("10.0.1.13", Some(8080), None),
        ],
    );
    (moto, arn)
}

fn driver(moto: &Moto) -> lb_aws::TargetGroupsBuilder {
    TargetGroups::builder("alb")
        .region(MOTO_REGION)
        .endpoint_url(&moto.endpoint())
        .credentials(Credentials::new("testing", "testing", None, None, "lab"))
}

fn member(name: &str) -> MemberRef {
    MemberRef::new("app", name)
}

#[tokio::test]
async fn conformance_suite_passes_against_moto() {
    let (moto, _) = lab();
    let lb = driver(&moto).target_group("app").build().unwrap();
    conformance::run_all(
        &lb,
        &member("10.0.1.12:8080"),
        &[member("10.0.1.11:8080"), member("10.0.1.13:8080")],
    )
    .await
    .expect("lb-aws conforms against moto");
}

#[tokio::test]
async fn drain_records_the_registration_on_the_target_group_and_ready_restores_it() {
    let (moto, arn) = lab();
    let lb = driver(&moto).target_group("app").build().unwrap();
    let m = member("10.0.1.12:8080");
    assert_eq!(
        lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );

    let ids: Vec<String> = moto.targets(&arn).into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["10.0.1.11", "10.0.1.13"], "deregistered in moto");
    let tags = moto.tags(&arn);
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0].0, "lbctl:deregistered:10.0.1.12:8080");
    assert!(
        tags[0].1.starts_with("id=10.0.1.12 port=8080 at="),
        "{tags:?}"
    );

    let after = lb.members().await.unwrap();
    let x = after.iter().find(|x| x.is(&m)).expect("still listed");
    assert_eq!(
        (x.admin, x.active, x.address.as_str()),
        (AdminState::Maint, Some(0), "10.0.1.12")
    );

    assert_eq!(
        lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    let back: Vec<_> = moto
        .targets(&arn)
        .into_iter()
        .map(|t| (t.id, t.port, t.state))
        .collect();
    assert!(
        back.contains(&("10.0.1.12".into(), Some(8080), "healthy".into())),
        "{back:?}"
    );
    assert!(
        moto.tags(&arn).is_empty(),
        "the record is dropped once restored"
    );
}

#[tokio::test]
async fn another_lbctl_reads_the_record_and_restores_the_target() {
    let (moto, arn) = lab();
    let first = driver(&moto).target_group("app").build().unwrap();
    let m = member("10.0.1.11:8080");
    first.set_state(&m, AdminState::Maint).await.unwrap();
    drop(first);

    // A fresh driver (another machine) knows only what AWS holds.
    let second = driver(&moto).target_group(&arn).build().unwrap();
    let seen = second.members().await.unwrap();
    let x = seen
        .iter()
        .find(|x| x.is(&m))
        .expect("listed from the record");
    assert_eq!(x.admin, AdminState::Maint);
    assert_eq!(
        second.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(
        second.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert!(
        moto.targets(&arn)
            .iter()
            .any(|t| t.id == "10.0.1.11" && t.port == Some(8080))
    );
}

#[tokio::test]
async fn every_target_group_of_a_load_balancer() {
    let (moto, arn) = lab();
    let (vpc, subnet) = moto.network();
    let other = moto.create_target_group("api", &vpc, "ip", 80);
    moto.register(&other, &[("10.0.1.21", Some(9000), None)]);
    moto.create_load_balancer("web", &subnet, &arn);
    let lb = driver(&moto).load_balancer("web").build().unwrap();
    let mut names: Vec<String> = lb
        .members()
        .await
        .unwrap()
        .into_iter()
        .map(|m| format!("{}/{}", m.pool, m.name))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "app/10.0.1.11:8080",
            "app/10.0.1.12:8080",
            "app/10.0.1.13:8080"
        ]
    );
    let e = lb
        .set_state(&MemberRef::new("api", "10.0.1.21:9000"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(
        e.to_string().contains(
            "target group api is not one of this balancer's target groups (they are: app)"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn instance_targets_are_addressed_by_their_private_ip() {
    let moto = Moto::start();
    let (vpc, subnet) = moto.network();
    let id = moto.run_instance(&subnet, "10.0.1.50");
    let arn = moto.create_target_group("app", &vpc, "instance", 80);
    moto.register(&arn, &[(&id, Some(8080), None)]);
    let lb = driver(&moto).target_group("app").build().unwrap();
    let all = lb.members().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].name.clone(), all[0].address.as_str(), all[0].health),
        (format!("{id}:8080"), "10.0.1.50", Health::Up)
    );
    let m = MemberRef::new("app", format!("{id}:8080"));
    assert_eq!(
        lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(moto.targets(&arn)[0].port, Some(8080));
}

#[tokio::test]
async fn an_unknown_target_group_is_not_found_and_names_it() {
    let (moto, _) = lab();
    let lb = driver(&moto).target_group("nope").build().unwrap();
    let e = lb.members().await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("alb: target groups nope: elasticloadbalancing:DescribeTargetGroups: TargetGroupNotFound"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_write_changes_nothing() {
    let (moto, arn) = lab();
    let lb = driver(&moto).target_group("app").build().unwrap();
    for bad in ["10.0.1.99:8080", "10.0.1.12:8080;x", "10.0.1.12"] {
        let e = lb
            .set_state(&member(bad), AdminState::Drain)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::NotFound { .. } | Error::InvalidInput { .. }),
            "{bad}: {e}"
        );
    }
    let e = lb
        .set_weight(&member("10.0.1.12:8080"), 5)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert_eq!(moto.targets(&arn).len(), 3);
    assert!(moto.tags(&arn).is_empty());
}

#[tokio::test]
async fn no_answer_is_unavailable_and_names_the_call() {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    drop(moto);
    let lb = TargetGroups::builder("alb")
        .target_group("app")
        .region(MOTO_REGION)
        .endpoint_url(&endpoint)
        .credentials(Credentials::new("testing", "testing", None, None, "lab"))
        .build()
        .unwrap();
    let e = lb.members().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .contains("elasticloadbalancing:DescribeTargetGroups: no answer"),
        "{e}"
    );
}

#[test]
fn bad_settings_are_refused_before_anything_is_sent() {
    let cases: &[(&str, lb_aws::TargetGroupsBuilder)] = &[
        ("give target_groups", TargetGroups::builder("alb")),
        (
            "target_groups: \"app tg\"",
            TargetGroups::builder("alb").target_group("app tg"),
        ),
        (
            "region",
            TargetGroups::builder("alb")
                .target_group("app")
                .region("EU West"),
        ),
        (
            "must use https://",
            TargetGroups::builder("alb")
                .target_group("app")
                .endpoint_url("http://example.com"),
        ),
        (
            "load_balancer",
            TargetGroups::builder("alb")
                .load_balancer("arn:aws:elasticloadbalancing:x:1:targetgroup/a/b"),
        ),
    ];
    for (want, b) in cases {
        let e = b.clone().build().unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(
            e.to_string().starts_with("alb: ") && e.to_string().contains(want),
            "{want}: {e}"
        );
    }
}
