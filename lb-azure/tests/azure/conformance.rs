use lb_core::{MemberRef, conformance};

use crate::common::{self, assert_each_put_follows_a_read, lab, lab_with};

#[tokio::test]
async fn conformance_on_a_large_gateway() {
    let lab = lab();
    let others = [
        MemberRef::new("app", "10.1.0.4"),
        MemberRef::new("legacy", "10.2.0.5"),
        MemberRef::new("api", "api-2.internal.contoso.example"),
        MemberRef::new("mixed", "mixed-3.internal.contoso.example"),
        MemberRef::new("ipv6", "fd00:10:7::5"),
        MemberRef::new("tenant07", "10.20.7.6"),
    ];
    conformance::run_all(&lab.lb, &MemberRef::new("app", "10.1.0.5"), &others)
        .await
        .expect("lb-azure conforms on a large gateway");
    assert_each_put_follows_a_read(&lab.arm);
    assert!(lab.arm.put_count() >= 4, "the suite wrote to the gateway");
}

#[tokio::test]
async fn conformance_on_azures_get_example_with_bare_string_addresses() {
    let lab = lab_with(common::example_get(), "subid", "rg1", "appgw");
    conformance::run_all(
        &lab.lb,
        &MemberRef::new("appgwpool1", "10.0.0.2"),
        &[MemberRef::new("appgwpool1", "10.0.0.1")],
    )
    .await
    .expect("lb-azure conforms on Azure's own example");
    assert_each_put_follows_a_read(&lab.arm);
}
