use lb_core::{AdminState, Balancer, Change, Error, MemberRef};
use lb_lab::PutFault;
use serde_json::json;

use crate::common::{addresses, assert_each_put_follows_a_read, lab, member, without_volatile};

fn gateway_puts(arm: &lb_lab::FakeArm) -> Vec<u16> {
    arm.requests()
        .into_iter()
        .filter(|l| l.is_gateway_put())
        .map(|l| l.status)
        .collect()
}

/// Between our GET and our PUT someone adds an address to another pool
/// and changes a setting: our PUT meets 412, the driver reads again and
/// re-applies its change to the new body, and both changes are kept.
#[tokio::test]
async fn a_concurrent_change_to_another_pool_is_not_lost() {
    let lab = lab();
    let before = lab.stored();
    lab.arm
        .push_put_fault(PutFault::ConcurrentChange(Box::new(|g| {
            let pools = g["properties"]["backendAddressPools"]
                .as_array_mut()
                .unwrap();
            let p = pools.iter_mut().find(|p| p["name"] == "reports").unwrap();
            p["properties"]["backendAddresses"]
                .as_array_mut()
                .unwrap()
                .push(json!({"ipAddress": "10.4.0.99"}));
            g["properties"]["autoscaleConfiguration"]["maxCapacity"] = json!(25);
            g["tags"]["changedBy"] = json!("someone else");
        })));
    let m = MemberRef::new("app", "10.1.0.7");
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );

    let after = lab.stored();
    let reports = addresses(&after, "reports");
    assert_eq!(
        reports.len(),
        5,
        "the other writer's address is kept: {reports:?}"
    );
    assert_eq!(reports[4], json!({"ipAddress": "10.4.0.99"}));
    assert_eq!(
        after["properties"]["autoscaleConfiguration"]["maxCapacity"],
        25
    );
    assert_eq!(after["tags"]["changedBy"], "someone else");
    assert!(after["tags"]["lbctl-removed:app:10.1.0.7"].is_string());
    assert!(!addresses(&after, "app").contains(&json!({"ipAddress": "10.1.0.7"})));
    assert_eq!(gateway_puts(&lab.arm), [412, 200]);
    assert_each_put_follows_a_read(&lab.arm);
    assert_eq!(
        member(&lab.lb, "app", "10.1.0.7").await.admin,
        AdminState::Maint
    );

    // And back: only our member changes again.
    lab.lb.set_state(&m, AdminState::Ready).await.unwrap();
    let mut expected = without_volatile(before);
    expected["properties"]["autoscaleConfiguration"]["maxCapacity"] = json!(25);
    expected["tags"]["changedBy"] = json!("someone else");
    let pools = expected["properties"]["backendAddressPools"]
        .as_array_mut()
        .unwrap();
    let p = pools.iter_mut().find(|p| p["name"] == "reports").unwrap();
    p["properties"]["backendAddresses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"ipAddress": "10.4.0.99"}));
    assert_eq!(without_volatile(lab.stored()), expected);
}

/// 409 superseded, 409 another operation in progress, a plain 412, a 429,
/// and an operation canceled by a newer one: each is met by reading again
/// and re-applying, never by sending the same PUT again.
#[tokio::test]
async fn busy_and_superseded_updates_are_read_again_and_re_applied() {
    let lab = lab();
    for f in [
        PutFault::Superseded,
        PutFault::AnotherOperationInProgress,
        PutFault::PreconditionFailed,
        PutFault::TooManyRequests,
        PutFault::Canceled,
    ] {
        lab.arm.push_put_fault(f);
    }
    let m = MemberRef::new("tenant05", "10.20.5.4");
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(gateway_puts(&lab.arm), [409, 409, 412, 429, 200]);
    assert_each_put_follows_a_read(&lab.arm);
    assert_eq!(
        member(&lab.lb, "tenant05", "10.20.5.4").await.admin,
        AdminState::Maint
    );
}

/// Once the bound is reached the driver gives up with Conflict, and the
/// gateway is unchanged.
#[tokio::test]
async fn a_gateway_that_keeps_changing_gives_conflict() {
    let lab = lab();
    let before = without_volatile(lab.stored());
    for _ in 0..10 {
        lab.arm.push_put_fault(PutFault::PreconditionFailed);
    }
    let m = MemberRef::new("app", "10.1.0.4");
    let e = lab.lb.set_state(&m, AdminState::Drain).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("agw: "), "{msg}");
    assert!(
        msg.contains("pool app") && msg.contains("10.1.0.4"),
        "{msg}"
    );
    assert!(msg.contains("412"), "{msg}");
    assert_eq!(gateway_puts(&lab.arm).len(), 5, "bounded");
    assert_eq!(without_volatile(lab.stored()), before);
    assert_each_put_follows_a_read(&lab.arm);
}

/// Throttled on every attempt: Unavailable (transient), nothing changed.
#[tokio::test]
async fn a_put_throttled_to_the_end_is_unavailable() {
    let lab = lab();
    for _ in 0..5 {
        lab.arm.push_put_fault(PutFault::TooManyRequests);
    }
    let e = lab
        .lb
        .set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Maint)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.is_transient());
    assert_eq!(
        member(&lab.lb, "app", "10.1.0.4").await.admin,
        AdminState::Ready
    );
}

/// A 500 on the PUT: its outcome is unknown, so it is not sent again;
/// Unavailable tells the caller to read and retry.
#[tokio::test]
async fn a_put_answered_500_is_never_resent() {
    let lab = lab();
    lab.arm.push_put_fault(PutFault::ServerError);
    let e = lab
        .lb
        .set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("not sent again"), "{e}");
    assert_eq!(gateway_puts(&lab.arm), [500]);
    // A retry by the caller reads first, and works.
    assert_eq!(
        lab.lb
            .set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
            .await
            .unwrap(),
        Change::Applied
    );
    assert_each_put_follows_a_read(&lab.arm);
}
