use lb_core::{AdminState, Balancer, Error, MemberRef};
use lb_lab::PutFault;

use crate::common::{lab, member};

/// The operation ends `Failed`: the error carries Azure's code and
/// message and names the pool and member; afterwards members() reports
/// the member as the gateway really has it (here: the change rolled back).
#[tokio::test]
async fn a_failed_update_reports_azures_code_and_the_real_state() {
    let lab = lab();
    lab.arm.push_put_fault(PutFault::Failed {
        code: "ApplicationGatewaySubnetCannotHaveDelegations".into(),
        message: "Subnet snet-agw cannot have delegations.".into(),
        keep: false,
    });
    let m = MemberRef::new("app", "10.1.0.8");
    let e = lab.lb.set_state(&m, AdminState::Drain).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Protocol { .. }), "{msg}");
    assert!(
        msg.contains("ApplicationGatewaySubnetCannotHaveDelegations"),
        "{msg}"
    );
    assert!(
        msg.contains("Subnet snet-agw cannot have delegations."),
        "{msg}"
    );
    assert!(
        msg.contains("pool app") && msg.contains("member 10.1.0.8"),
        "{msg}"
    );
    assert!(msg.contains("Failed"), "{msg}");
    assert!(
        msg.contains("(ready)"),
        "the message says where the member is now: {msg}"
    );

    let seen = member(&lab.lb, "app", "10.1.0.8").await;
    assert_eq!(
        seen.admin,
        AdminState::Ready,
        "rolled back: still in the pool"
    );
    assert_eq!(lab.stored()["properties"]["provisioningState"], "Failed");
    assert_eq!(lab.arm.put_count(), 1, "a failed update is not re-sent");
}

/// Failed, but the gateway kept the new model (as Azure may): the member
/// reads as removed, and a later ready restores it.
#[tokio::test]
async fn a_failed_update_that_was_kept_shows_the_member_removed() {
    let lab = lab();
    lab.arm.push_put_fault(PutFault::Failed {
        code: "InternalServerError".into(),
        message: "An error occurred.".into(),
        keep: true,
    });
    let m = MemberRef::new("api", "api-2.internal.contoso.example");
    let e = lab.lb.set_state(&m, AdminState::Maint).await.unwrap_err();
    assert!(e.to_string().contains("InternalServerError"), "{e}");
    assert!(e.to_string().contains("(maint)"), "{e}");
    let seen = member(&lab.lb, "api", "api-2.internal.contoso.example").await;
    assert_eq!(seen.admin, AdminState::Maint);
    lab.lb.set_state(&m, AdminState::Ready).await.unwrap();
    assert_eq!(
        member(&lab.lb, "api", "api-2.internal.contoso.example")
            .await
            .admin,
        AdminState::Ready
    );
    assert_eq!(lab.stored()["properties"]["provisioningState"], "Succeeded");
}
