use lb_core::{AdminState, Balancer, Change, MemberRef};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{addresses, assert_each_put_follows_a_read, lab, member, without_volatile};

fn address_of(e: &Value) -> &str {
    e.as_str()
        .or_else(|| e["ipAddress"].as_str())
        .or_else(|| e["fqdn"].as_str())
        .unwrap_or("")
}

/// Drain then ready, member by member, in every address form: each drain
/// changes only that pool's addresses and adds one tag; each ready puts
/// back the identical entry at its place and removes the tag; at the end
/// the gateway equals the original in every property (and in key order)
/// but its etags and provisioning states.
#[tokio::test]
async fn drain_and_ready_leave_the_gateway_as_it_was() {
    let lab = lab();
    let original = lab.stored();
    let cases = [
        ("app", "10.1.0.6"),
        ("legacy", "10.2.0.5"),
        ("api", "api-3.internal.contoso.example"),
        ("mixed", "10.3.0.4"),
        ("mixed", "10.3.0.5"),
        ("mixed", "mixed-3.internal.contoso.example"),
        ("ipv6", "fd00:10:7::4"),
        ("tenant03", "10.20.3.4"),
    ];
    for (pool, name) in cases {
        let m = MemberRef::new(pool, name);
        let before = lab.stored();
        let entries = addresses(&before, pool);
        let index = entries.iter().position(|e| address_of(e) == name).unwrap();
        let t0 = OffsetDateTime::now_utc();

        assert_eq!(
            lab.lb.set_state(&m, AdminState::Drain).await.unwrap(),
            Change::Applied
        );
        let out = lab.stored();
        let tag_name = format!("lbctl-removed:{pool}:{name}");
        let tag = out["tags"][&tag_name]
            .as_str()
            .unwrap_or_else(|| panic!("tag {tag_name} in {}", out["tags"]));
        let rec: Value = serde_json::from_str(tag).unwrap();
        assert_eq!(rec["entry"], entries[index], "{name}: the entry as it was");
        assert_eq!(rec["index"], index, "{name}: its place");
        let removed = OffsetDateTime::parse(rec["removed"].as_str().unwrap(), &Rfc3339).unwrap();
        assert!(
            (removed - t0).whole_seconds().abs() < 120,
            "{removed} vs {t0}"
        );
        assert!(tag.len() <= 256, "Azure tag values hold 256 characters");

        // Exactly that: the entry gone from that pool, one tag more.
        let mut expected = without_volatile(before.clone());
        let pools = expected["properties"]["backendAddressPools"]
            .as_array_mut()
            .unwrap();
        let p = pools.iter_mut().find(|p| p["name"] == pool).unwrap();
        p["properties"]["backendAddresses"]
            .as_array_mut()
            .unwrap()
            .remove(index);
        expected["tags"][&tag_name] = Value::String(tag.to_owned());
        assert_eq!(
            without_volatile(out.clone()),
            expected,
            "{name}: nothing else changed"
        );

        let seen = member(&lab.lb, pool, name).await;
        assert_eq!(seen.admin, AdminState::Maint, "Drain reads back as Maint");

        assert_eq!(
            lab.lb.set_state(&m, AdminState::Ready).await.unwrap(),
            Change::Applied
        );
        let back = lab.stored();
        assert_eq!(
            addresses(&back, pool),
            entries,
            "{name}: the identical entry, at its place"
        );
        assert_eq!(
            without_volatile(back).to_string(),
            without_volatile(before).to_string(),
            "{name}: the gateway as before, key order included"
        );
        assert_eq!(member(&lab.lb, pool, name).await.admin, AdminState::Ready);
    }
    let last = lab.stored();
    assert_eq!(
        without_volatile(last.clone()).to_string(),
        without_volatile(original.clone()).to_string()
    );
    assert_ne!(
        last["etag"], original["etag"],
        "the etag changed on the way"
    );
    assert!(last["properties"]["contosoFutureFeature"]["thresholds"].is_array());
    assert_eq!(last["systemData"], original["systemData"]);
    assert_each_put_follows_a_read(&lab.arm);
    assert_eq!(
        lab.arm.put_count(),
        2 * cases.len(),
        "one PUT per change, none repeated"
    );
}

/// A member removed by one lbctl is seen as removed by another (on
/// another machine, with nothing in memory), which can put it back.
#[tokio::test]
async fn a_removal_is_visible_to_and_undone_by_another_lbctl() {
    let lab = lab();
    let original = lab.stored();
    let m = MemberRef::new("api", "api-1.internal.contoso.example");
    lab.lb.set_state(&m, AdminState::Drain).await.unwrap();

    let other = lab.another_driver("agw-elsewhere");
    let seen = member(&other, "api", "api-1.internal.contoso.example").await;
    assert_eq!(seen.admin, AdminState::Maint);
    assert_eq!(seen.address, "api-1.internal.contoso.example");
    assert_eq!(
        other.set_state(&m, AdminState::Maint).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(
        other.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(without_volatile(lab.stored()), without_volatile(original));
}

/// Someone re-added a drained address by hand: it reads as ready, and the
/// next drain replaces the stale record.
#[tokio::test]
async fn an_address_put_back_by_hand_reads_as_ready() {
    let lab = lab();
    let m = MemberRef::new("batch", "10.5.0.5");
    lab.lb.set_state(&m, AdminState::Maint).await.unwrap();
    lab.modify(|g| {
        let pools = g["properties"]["backendAddressPools"]
            .as_array_mut()
            .unwrap();
        let p = pools.iter_mut().find(|p| p["name"] == "batch").unwrap();
        p["properties"]["backendAddresses"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"ipAddress": "10.5.0.5"}));
    });
    let all = lab.lb.members().await.unwrap();
    let listed: Vec<_> = all.iter().filter(|x| x.is(&m)).collect();
    assert_eq!(listed.len(), 1, "listed once: {listed:?}");
    assert_eq!(listed[0].admin, AdminState::Ready);
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    let tags = lab.stored()["tags"].clone();
    let ours: Vec<_> = tags
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("lbctl-"))
        .collect();
    assert_eq!(ours, ["lbctl-removed:batch:10.5.0.5"]);
    assert_eq!(
        lab.lb.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(addresses(&lab.stored(), "batch").len(), 2);
}
