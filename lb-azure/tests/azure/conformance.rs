use lb_core::{AdminState, Balancer, MemberRef, conformance};

use crate::common::{
    self, assert_each_put_follows_a_read, lab, lab_with, member, without_volatile,
};

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

#[tokio::test]
async fn conformance_on_an_app_service_gateway_with_fqdn_members() {
    let lab = lab_with(
        common::app_service(),
        "0b7e1c52-93d4-4a8f-b6e0-5c2d9f1a7e34",
        "rg-shop-weu",
        "agw-shop",
    );
    let original = lab.stored();
    let m = MemberRef::new("checkout-pool", "app-checkout-weu-2.azurewebsites.net");
    conformance::run_all(
        &lab.lb,
        &m,
        &[
            MemberRef::new("checkout-pool", "app-checkout-weu-1.azurewebsites.net"),
            MemberRef::new("webhooks-pool", "app-webhooks-weu-3.azurewebsites.net"),
        ],
    )
    .await
    .expect("lb-azure conforms on an App Service gateway");
    assert_eq!(
        lab.lb.members().await.unwrap().len(),
        24,
        "8 pools of 3, the NIC pool has none"
    );
    assert_eq!(
        without_volatile(lab.stored()),
        without_volatile(original),
        "no tags left behind"
    );
    // checkout drains for 900 s; webhooks has draining off.
    lab.lb.set_state(&m, AdminState::Drain).await.unwrap();
    assert_eq!(
        member(
            &lab.lb,
            "checkout-pool",
            "app-checkout-weu-2.azurewebsites.net"
        )
        .await
        .active,
        None
    );
    let w = MemberRef::new("webhooks-pool", "app-webhooks-weu-1.azurewebsites.net");
    lab.lb.set_state(&w, AdminState::Drain).await.unwrap();
    assert_eq!(
        member(
            &lab.lb,
            "webhooks-pool",
            "app-webhooks-weu-1.azurewebsites.net"
        )
        .await
        .active,
        Some(0)
    );
    assert!(lab.lb.warnings().join(" ").contains("webhooks-https"));
    assert_each_put_follows_a_read(&lab.arm);
}
