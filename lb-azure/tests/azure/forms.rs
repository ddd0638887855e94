use lb_core::{AdminState, Balancer, Change, MemberRef};
use serde_json::{Value, json};

use crate::common::{addresses, example_get, lab, lab_with, member, without_volatile};

/// Azure's own GET example writes bare strings: they are listed, removed
/// and written back as strings, and the gateway (which had no tags) ends
/// exactly as it was.
#[tokio::test]
async fn bare_string_addresses_are_written_back_as_strings() {
    let lab = lab_with(example_get(), "subid", "rg1", "appgw");
    let original = lab.stored();
    let m = MemberRef::new("appgwpool1", "10.0.0.1");
    assert_eq!(
        member(&lab.lb, "appgwpool1", "10.0.0.1").await.address,
        "10.0.0.1"
    );
    lab.lb.set_state(&m, AdminState::Drain).await.unwrap();
    let out = lab.stored();
    assert_eq!(addresses(&out, "appgwpool1"), [json!("10.0.0.2")]);
    let rec: Value = serde_json::from_str(
        out["tags"]["lbctl-removed:appgwpool1:10.0.0.1"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["entry"], json!("10.0.0.1"), "recorded in the form read");
    lab.lb.set_state(&m, AdminState::Ready).await.unwrap();
    let back = lab.stored();
    assert_eq!(
        addresses(&back, "appgwpool1"),
        [json!("10.0.0.1"), json!("10.0.0.2")]
    );
    assert!(
        back.get("tags").is_none(),
        "no tags left behind: {}",
        back["tags"]
    );
    assert_eq!(without_volatile(back), without_volatile(original));
}

/// ip and fqdn members, in string and object form, are listed by their
/// address, and each comes back in its own form.
#[tokio::test]
async fn ip_and_fqdn_members_in_both_forms() {
    let lab = lab();
    let all = lab.lb.members().await.unwrap();
    let mixed: Vec<_> = all
        .iter()
        .filter(|m| m.pool == "mixed")
        .map(|m| (m.name.as_str(), m.address.as_str(), m.weight))
        .collect();
    assert_eq!(
        mixed,
        [
            ("10.3.0.4", "10.3.0.4", None),
            ("10.3.0.5", "10.3.0.5", None),
            (
                "mixed-3.internal.contoso.example",
                "mixed-3.internal.contoso.example",
                None
            )
        ]
    );
    let before = addresses(&lab.stored(), "mixed");
    for name in ["mixed-3.internal.contoso.example", "10.3.0.4", "10.3.0.5"] {
        lab.lb
            .set_state(&MemberRef::new("mixed", name), AdminState::Maint)
            .await
            .unwrap();
    }
    assert!(addresses(&lab.stored(), "mixed").is_empty());
    for name in ["10.3.0.5", "mixed-3.internal.contoso.example", "10.3.0.4"] {
        lab.lb
            .set_state(&MemberRef::new("mixed", name), AdminState::Ready)
            .await
            .unwrap();
    }
    assert_eq!(
        addresses(&lab.stored(), "mixed"),
        before,
        "each entry in its own form, in its own place"
    );
}

/// ARM names are not case-sensitive: a pool or an FQDN given in another
/// case names the same member.
#[tokio::test]
async fn names_match_without_regard_to_case() {
    let lab = lab();
    let m = MemberRef::new("API", "API-2.internal.contoso.example");
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    let seen = member(&lab.lb, "api", "api-2.internal.contoso.example").await;
    assert_eq!(seen.admin, AdminState::Maint);
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
}
