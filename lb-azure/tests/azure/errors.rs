use std::time::Duration;

use lb_azure::{AppGateway, Credential, CredentialKeys, SecretSource};
use lb_core::{AdminState, Balancer, Capabilities, DrainSignal, Error, MemberRef};
use lb_lab::{FakeArm, GetFault, PutFault};

use crate::common::{self, GW, RG, SUB, lab, member};

#[test]
fn capabilities_declare_the_timer_health_and_no_weights() {
    let lab = lab();
    assert_eq!(
        lab.lb.capabilities(),
        Capabilities {
            active_connections: true,
            health: true,
            weight_range: None,
            distinct_drain: false,
            drain_signal: DrainSignal::Timer,
        }
    );
    assert_eq!(lab.lb.name(), "agw");
}

#[tokio::test]
async fn set_weight_is_unsupported_and_sends_nothing() {
    let lab = lab();
    let n = lab.arm.requests().len();
    let e = lab
        .lb
        .set_weight(&MemberRef::new("app", "10.1.0.4"), 5)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(
        e.to_string().contains("no weights") && e.to_string().contains("10.1.0.4"),
        "{e}"
    );
    assert_eq!(lab.arm.requests().len(), n);
}

#[tokio::test]
async fn hostile_names_never_reach_the_wire() {
    let lab = lab();
    let n = lab.arm.requests().len();
    for (p, m) in [
        ("app", "10.1.0.4;x"),
        ("app\nx", "10.1.0.4"),
        ("app", "a b"),
        ("", "10.1.0.4"),
    ] {
        let e = lab
            .lb
            .set_state(&MemberRef::new(p, m), AdminState::Drain)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }
    assert_eq!(lab.arm.requests().len(), n, "nothing was sent");
}

/// 401/403 are Unauthorized and carry ARM's code; 404 is NotFound.
#[tokio::test]
async fn arm_refusals_carry_their_code() {
    let lab = lab();
    lab.arm
        .push_get_fault(GetFault::Forbidden("AuthorizationFailed".into()));
    let e = lab.lb.members().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("AuthorizationFailed"), "{e}");
    assert!(e.to_string().contains(&format!("{RG}/{GW}")), "{e}");

    lab.arm
        .push_put_fault(PutFault::Forbidden("LinkedAuthorizationFailed".into()));
    let e = lab
        .lb
        .set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("LinkedAuthorizationFailed") && msg.contains("403"),
        "{msg}"
    );
    assert!(
        msg.contains("pool app") && msg.contains("member 10.1.0.4"),
        "{msg}"
    );
    assert_eq!(
        member(&lab.lb, "app", "10.1.0.4").await.admin,
        AdminState::Ready
    );

    let missing = common::builder(&lab.arm, "agw", SUB, RG, "agw-missing", &lab.secret_file)
        .build()
        .unwrap();
    let e = missing.members().await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("ResourceNotFound"), "{e}");
    let e = missing
        .set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

/// A busy ARM (429, 503) is read again, honouring Retry-After; past the
/// bound the read is Unavailable.
#[tokio::test]
async fn busy_reads_are_retried_then_unavailable() {
    let lab = lab();
    lab.arm.push_get_fault(GetFault::TooManyRequests);
    lab.arm.push_get_fault(GetFault::ServiceUnavailable);
    assert_eq!(lab.lb.members().await.unwrap().len(), 65);
    for _ in 0..4 {
        lab.arm.push_get_fault(GetFault::ServiceUnavailable);
    }
    let e = lab.lb.members().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("ServiceUnavailable"), "{e}");
}

/// A token refused by Entra ID is Unauthorized, with its AADSTS reason.
#[tokio::test]
async fn a_wrong_client_secret_is_unauthorized() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "Not-The-Secret-7Hq").unwrap();
    let lb = common::builder(&lab.arm, "agw", SUB, RG, GW, &wrong)
        .build()
        .unwrap();
    let e = lb.members().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("AADSTS7000215"), "{e}");
    assert!(!e.to_string().contains("Not-The-Secret-7Hq"), "{e}");
}

/// Retry-After is honoured as sent when no cap is set: an update whose
/// PUT and one poll each ask for 1 s takes at least 2 s.
#[tokio::test]
async fn retry_after_is_honoured() {
    let lab = lab();
    lab.arm.set_retry_after(1);
    let lb = common::uncapped_builder(&lab.arm, "agw", SUB, RG, GW, &lab.secret_file)
        .build()
        .unwrap();
    let t = std::time::Instant::now();
    lb.set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
}

/// Bad configuration is InvalidInput from build(), naming the balancer and
/// the key, before anything is sent.
#[test]
fn the_configuration_is_checked_up_front() {
    let arm = FakeArm::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, "x").unwrap();
    let ok = || common::builder(&arm, "agw", SUB, RG, GW, &secret);
    ok().build().expect("the base configuration is good");
    let cases: Vec<(lb_azure::AppGatewayBuilder, &str)> = vec![
        (
            AppGateway::builder("agw")
                .resource_group(RG)
                .gateway(GW)
                .credential(Credential::AzureCli),
            "subscription is required",
        ),
        (
            AppGateway::builder("agw")
                .subscription(SUB)
                .gateway(GW)
                .credential(Credential::AzureCli),
            "resource_group is required",
        ),
        (
            AppGateway::builder("agw")
                .subscription(SUB)
                .resource_group(RG)
                .credential(Credential::AzureCli),
            "gateway is required",
        ),
        (
            AppGateway::builder("agw")
                .subscription(SUB)
                .resource_group(RG)
                .gateway(GW),
            "credential is required",
        ),
        (ok().subscription("a/b"), "subscription"),
        (ok().resource_group("rg/../x"), "resource_group"),
        (ok().resource_group("rg."), "resource_group"),
        (ok().gateway("my gw"), "gateway"),
        (ok().gateway(&"g".repeat(81)), "gateway"),
        (ok().endpoint("http://management.azure.com"), "https://"),
        (
            ok().endpoint("https://management.azure.com/x?y"),
            "bare origin",
        ),
        (ok().endpoint("not a url"), "endpoint"),
        (ok().api_version("latest"), "api_version"),
        (
            ok().authority_host("http://login.example"),
            "authority_host",
        ),
        (ok().ca_file(dir.path().join("missing.pem")), "ca_file"),
        (ok().ca_file(&secret), "ca_file"),
        (ok().timeout(Duration::ZERO), "timeout"),
        (
            ok().credential(Credential::ClientSecret {
                tenant_id: common::TENANT.into(),
                client_id: common::CLIENT.into(),
                secret: SecretSource::File(dir.path().join("nope")),
            }),
            "secret_file",
        ),
        (
            ok().credential(Credential::ClientSecret {
                tenant_id: common::TENANT.into(),
                client_id: common::CLIENT.into(),
                secret: SecretSource::Env("LBCTL_TEST_SURELY_UNSET_VARIABLE".into()),
            }),
            "LBCTL_TEST_SURELY_UNSET_VARIABLE is not set",
        ),
        (
            ok().credential(Credential::StaticToken {
                token_env: "LBCTL_TEST_SURELY_UNSET_TOKEN".into(),
            }),
            "LBCTL_TEST_SURELY_UNSET_TOKEN is not set",
        ),
    ];
    for (b, why) in cases {
        let e = b.build().unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().starts_with("agw: "), "{e}");
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    assert!(arm.requests().is_empty() && arm.token_requests().is_empty());
    let e = AppGateway::builder("bad name").build().unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

#[test]
fn credentials_from_inventory_keys() {
    let k = |kind: &str| CredentialKeys {
        credential: kind.into(),
        ..Default::default()
    };
    assert_eq!(
        Credential::from_keys("agw", &k("azure-cli")).unwrap(),
        Credential::AzureCli
    );
    assert_eq!(
        Credential::from_keys("agw", &k("workload-identity")).unwrap(),
        Credential::WorkloadIdentity
    );
    assert_eq!(
        Credential::from_keys("agw", &k("managed-identity")).unwrap(),
        Credential::ManagedIdentity { client_id: None }
    );
    let mi = CredentialKeys {
        client_id: Some("c".into()),
        ..k("managed-identity")
    };
    assert_eq!(
        Credential::from_keys("agw", &mi).unwrap(),
        Credential::ManagedIdentity {
            client_id: Some("c".into())
        }
    );
    let st = CredentialKeys {
        token_env: Some("LBCTL_AZURE_TOKEN".into()),
        ..k("static-token")
    };
    assert_eq!(
        Credential::from_keys("agw", &st).unwrap(),
        Credential::StaticToken {
            token_env: "LBCTL_AZURE_TOKEN".into()
        }
    );
    let cs = CredentialKeys {
        tenant_id: Some("t".into()),
        client_id: Some("c".into()),
        secret_file: Some("/run/secrets/agw".into()),
        ..k("client-secret")
    };
    assert_eq!(
        Credential::from_keys("agw", &cs).unwrap(),
        Credential::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            secret: SecretSource::File("/run/secrets/agw".into())
        }
    );
    for (keys, why) in [
        (k("default"), "unknown credential"),
        (k("static-token"), "needs the key token_env"),
        (
            CredentialKeys {
                secret_env: Some("S".into()),
                ..cs.clone()
            },
            "exactly one of secret_env and secret_file",
        ),
        (
            CredentialKeys {
                secret_file: None,
                ..cs.clone()
            },
            "exactly one",
        ),
        (
            CredentialKeys {
                tenant_id: None,
                ..cs.clone()
            },
            "needs the key tenant_id",
        ),
        (
            CredentialKeys {
                token_env: Some("T".into()),
                ..k("azure-cli")
            },
            "does not use the key token_env",
        ),
        (
            CredentialKeys {
                tenant_id: Some("t".into()),
                ..k("managed-identity")
            },
            "does not use the key tenant_id",
        ),
    ] {
        let e = Credential::from_keys("agw", &keys).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
}

/// `static-token`: the token is taken from the environment variable as is.
/// The variable is set for a child run of this very test (a test cannot
/// set its own environment safely).
#[test]
fn a_static_token_from_the_environment() {
    const VAR: &str = "LBCTL_TEST_AZURE_STATIC_TOKEN";
    const NAME: &str = "errors::a_static_token_from_the_environment";
    let Ok(token) = std::env::var(VAR) else {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(VAR, "static-t0ken-for-the-fake")
            .output()
            .expect("run this test again with the variable set");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let arm = FakeArm::start();
    arm.accept_token(&token);
    arm.insert_gateway(SUB, RG, GW, common::large());
    let lb = AppGateway::builder("agw")
        .subscription(SUB)
        .resource_group(RG)
        .gateway(GW)
        .endpoint(&arm.endpoint())
        .credential(Credential::StaticToken {
            token_env: VAR.into(),
        })
        .poll_interval_cap(Duration::from_millis(5))
        .build()
        .unwrap();
    assert!(!format!("{lb:?}").contains(&token));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(lb.members().await.unwrap().len(), 65);
        lb.set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
            .await
            .unwrap();
        assert_eq!(
            member(&lb, "app", "10.1.0.4").await.admin,
            AdminState::Maint
        );
    });
    assert!(
        arm.token_requests().is_empty(),
        "no token endpoint involved"
    );
    // A token the fake does not know is refused: Unauthorized.
    let other = FakeArm::start();
    other.insert_gateway(SUB, RG, GW, common::large());
    let lb = AppGateway::builder("agw")
        .subscription(SUB)
        .resource_group(RG)
        .gateway(GW)
        .endpoint(&other.endpoint())
        .credential(Credential::StaticToken {
            token_env: VAR.into(),
        })
        .build()
        .unwrap();
    let e = rt.block_on(lb.members()).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("InvalidAuthenticationToken"), "{e}");
}

/// ARM hands out operation URLs on another host: the token is not sent
/// there, and the call fails saying so.
#[tokio::test]
async fn the_token_goes_only_to_the_configured_endpoint() {
    let lab = lab();
    let elsewhere = format!("https://127.0.0.2:{}", lab.arm.port());
    lab.arm.set_async_base(&elsewhere);
    let e = lab
        .lb
        .set_state(&MemberRef::new("app", "10.1.0.4"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "{e}");
    assert!(e.to_string().contains("the token is not sent there"), "{e}");
    assert!(e.to_string().contains("127.0.0.2"), "{e}");
    lab.arm.set_health_polls(1);
    let all = lab.lb.members().await.unwrap();
    assert!(all.iter().all(|m| m.health == lb_core::Health::Unknown));
    assert!(
        lab.lb
            .warnings()
            .join(" ")
            .contains("the token is not sent there")
    );
}
