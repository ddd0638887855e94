use lb_core::{AdminState, Balancer, Health, MemberRef};
use lb_lab::GetFault;

use crate::common::{lab, member};

/// Health comes from `POST …/backendhealth` (202 + Location polled until
/// 200, or 200 at once): Up and Down as reported, Partial, Draining,
/// Unknown and values Azure may add later as unknown, never an error.
#[tokio::test]
async fn health_comes_from_the_backend_health_api() {
    let lab = lab();
    lab.arm.set_health("10.1.0.4", "Down");
    lab.arm.set_health("10.1.0.5", "Partial");
    lab.arm.set_health("10.1.0.6", "Draining");
    lab.arm
        .set_health("api-1.internal.contoso.example", "Unknown");
    lab.arm.set_health("10.2.0.4", "Degraded");
    lab.lb
        .set_state(&MemberRef::new("app", "10.1.0.9"), AdminState::Drain)
        .await
        .unwrap();
    for polls in [2, 0] {
        lab.arm.set_health_polls(polls);
        let all = lab.lb.members().await.unwrap();
        let h = |pool: &str, name: &str| {
            all.iter()
                .find(|m| m.pool == pool && m.name == name)
                .unwrap_or_else(|| panic!("{pool}/{name}"))
                .health
        };
        assert_eq!(h("app", "10.1.0.4"), Health::Down);
        assert_eq!(h("app", "10.1.0.5"), Health::Unknown);
        assert_eq!(h("app", "10.1.0.6"), Health::Unknown);
        assert_eq!(h("app", "10.1.0.7"), Health::Up);
        assert_eq!(h("app", "10.1.0.9"), Health::Unknown, "removed: not probed");
        assert_eq!(h("api", "api-1.internal.contoso.example"), Health::Unknown);
        assert_eq!(h("api", "api-2.internal.contoso.example"), Health::Up);
        assert_eq!(h("legacy", "10.2.0.4"), Health::Unknown);
        assert_eq!(h("legacy", "10.2.0.5"), Health::Up);
        assert_eq!(
            h("unrouted", "10.6.0.4"),
            Health::Unknown,
            "no settings, no probe"
        );
        assert_eq!(h("ipv6", "fd00:10:7::5"), Health::Up);
        assert_eq!(all.len(), 65, "every address of the 20 pools");
    }
    let log = lab.arm.requests();
    let health: Vec<_> = log
        .iter()
        .filter(|l| l.path.ends_with("/backendhealth") || l.path.contains("/operationResults/"))
        .map(|l| (l.method.as_str(), l.status))
        .collect();
    assert_eq!(
        health,
        [("POST", 202), ("GET", 202), ("GET", 200), ("POST", 200)],
        "{health:?}"
    );
    // Coming back, the member is probed again.
    lab.lb
        .set_state(&MemberRef::new("app", "10.1.0.9"), AdminState::Ready)
        .await
        .unwrap();
    assert_eq!(member(&lab.lb, "app", "10.1.0.9").await.health, Health::Up);
}

/// Backend health refused or failing: members are still listed (health
/// unknown), and the reason is a warning.
#[tokio::test]
async fn without_backend_health_members_are_listed_with_unknown_health() {
    let lab = lab();
    lab.arm
        .push_health_fault(GetFault::Forbidden("AuthorizationFailed".into()));
    let all = lab.lb.members().await.unwrap();
    assert_eq!(all.len(), 65);
    assert!(all.iter().all(|m| m.health == Health::Unknown));
    let w = lab.lb.warnings().join("\n");
    assert!(
        w.contains("health unknown") && w.contains("AuthorizationFailed"),
        "{w}"
    );
    assert!(w.contains("reading backend health"), "{w}");
    // The next read has health again, and no warning.
    assert_eq!(member(&lab.lb, "app", "10.1.0.4").await.health, Health::Up);
    assert!(lab.lb.warnings().is_empty());
}
