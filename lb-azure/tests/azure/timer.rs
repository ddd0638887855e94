use lb_core::{AdminState, Balancer, MemberRef};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{Lab, lab, member};

/// Moves the recorded removal time of `pool`/`addr` back by `secs`, as if
/// it had been removed that long ago (by any lbctl).
fn backdate(lab: &Lab, pool: &str, addr: &str, secs: i64) {
    let tag = format!("lbctl-removed:{pool}:{addr}");
    lab.modify(|g| {
        let mut rec: Value = serde_json::from_str(g["tags"][&tag].as_str().unwrap()).unwrap();
        let t = OffsetDateTime::now_utc() - time::Duration::seconds(secs);
        rec["removed"] = Value::String(t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap());
        g["tags"][&tag] = Value::String(rec.to_string());
    });
}

/// `active` is None until drainTimeoutInSec has passed since the recorded
/// removal, then Some(0); ready members report None (no count exists).
#[tokio::test]
async fn the_drained_signal_waits_for_the_draining_timeout() {
    let lab = lab();
    // api: its HTTP settings drain for 3600 s.
    let m = MemberRef::new("api", "api-3.internal.contoso.example");
    lab.lb.set_state(&m, AdminState::Drain).await.unwrap();
    let seen = member(&lab.lb, "api", "api-3.internal.contoso.example").await;
    assert_eq!((seen.admin, seen.active), (AdminState::Maint, None));
    assert_eq!(
        member(&lab.lb, "api", "api-1.internal.contoso.example")
            .await
            .active,
        None
    );

    backdate(&lab, "api", "api-3.internal.contoso.example", 3000);
    assert_eq!(
        member(&lab.lb, "api", "api-3.internal.contoso.example")
            .await
            .active,
        None
    );
    backdate(&lab, "api", "api-3.internal.contoso.example", 3700);
    assert_eq!(
        member(&lab.lb, "api", "api-3.internal.contoso.example")
            .await
            .active,
        Some(0)
    );
    // Another lbctl, knowing nothing, sees the same.
    let other = lab.another_driver("agw2");
    assert_eq!(
        member(&other, "api", "api-3.internal.contoso.example")
            .await
            .active,
        Some(0)
    );
}

/// The longest timeout of the HTTP settings the rules pair with the pool
/// counts (app: bhs-app 60 s and, by a path rule, bhs-app-slow 300 s);
/// layer-4 settings without draining do not shorten it (batch: 30 s).
#[tokio::test]
async fn the_longest_timeout_of_the_settings_routed_to_the_pool_counts() {
    let lab = lab();
    lab.lb
        .set_state(&MemberRef::new("app", "10.1.0.9"), AdminState::Drain)
        .await
        .unwrap();
    backdate(&lab, "app", "10.1.0.9", 100);
    assert_eq!(
        member(&lab.lb, "app", "10.1.0.9").await.active,
        None,
        "60 s passed, 300 s not"
    );
    backdate(&lab, "app", "10.1.0.9", 310);
    assert_eq!(member(&lab.lb, "app", "10.1.0.9").await.active, Some(0));

    lab.lb
        .set_state(&MemberRef::new("batch", "10.5.0.4"), AdminState::Drain)
        .await
        .unwrap();
    assert_eq!(member(&lab.lb, "batch", "10.5.0.4").await.active, None);
    backdate(&lab, "batch", "10.5.0.4", 40);
    assert_eq!(member(&lab.lb, "batch", "10.5.0.4").await.active, Some(0));
}

/// With draining disabled (or absent) on the settings, or no rule routing
/// to the pool, a removed member is drained at once; the driver warns
/// that requests in flight are cut.
#[tokio::test]
async fn without_connection_draining_a_removed_member_is_drained_at_once() {
    let lab = lab();
    for (pool, addr) in [
        ("legacy", "10.2.0.6"),
        ("mixed", "10.3.0.5"),
        ("unrouted", "10.6.0.4"),
    ] {
        lab.lb
            .set_state(&MemberRef::new(pool, addr), AdminState::Drain)
            .await
            .unwrap();
        let seen = member(&lab.lb, pool, addr).await;
        assert_eq!(
            (seen.admin, seen.active),
            (AdminState::Maint, Some(0)),
            "{pool}/{addr}"
        );
    }
    lab.lb.members().await.unwrap();
    let w = lab.lb.warnings().join("\n");
    assert!(w.contains("pool legacy") && w.contains("bhs-legacy"), "{w}");
    assert!(w.contains("pool mixed") && w.contains("bhs-mixed"), "{w}");
    assert!(w.contains("cuts its requests in flight"), "{w}");
    assert!(
        !w.contains("unrouted"),
        "no rule routes there, nothing is cut: {w}"
    );
}
