//! The NGINX Plus driver against the lab's fake Plus API (NGINX Plus cannot
//! run here; the fake is checked against the published spec in the lab).

use std::time::Duration;

use lb_core::{AdminState, Balancer, Change, DrainSignal, Health, Member, MemberRef, conformance};
use lb_lab::{Backend, FakePlus, FakePlusOptions, PoolSpec, Pools, lease_port};
use lb_nginx::NginxPlus;

fn pools(b: &[Backend]) -> Pools {
    Pools::new()
        .with(
            PoolSpec::new("app")
                .weighted("node1", b[0].addr(), 5)
                .member("node2", b[1].addr())
                .member("node3", b[2].addr()),
        )
        .with(PoolSpec::new("legacy").member("node1", b[0].addr()))
}

fn driver(url: &str) -> NginxPlus {
    NginxPlus::builder("plus")
        .url(url)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("the driver builds")
}

fn member(b: &Backend, pool: &str) -> MemberRef {
    MemberRef::new(pool, b.addr().to_string())
}

async fn find(d: &NginxPlus, m: &MemberRef) -> Member {
    d.members()
        .await
        .expect("members()")
        .into_iter()
        .find(|x| x.is(m))
        .unwrap_or_else(|| panic!("{m} is listed"))
}

#[tokio::test]
async fn conformance_against_the_fake_plus_api() {
    let b = Backend::start_many(3);
    let plus = FakePlus::start(&pools(&b));
    let d = driver(&plus.url());
    conformance::run_all(
        &d,
        &member(&b[1], "app"),
        &[
            member(&b[0], "app"),
            member(&b[2], "app"),
            member(&b[0], "legacy"),
        ],
    )
    .await
    .expect("the NGINX Plus driver conforms");
    let caps = d.capabilities();
    assert!(caps.active_connections && caps.health && caps.distinct_drain);
    assert_eq!(caps.drain_signal, DrainSignal::ActiveCount);
    assert_eq!(caps.weight_range, Some((1, lb_nginx::MAX_WEIGHT)));
}

#[tokio::test]
async fn drained_means_draining_with_no_active_connections() {
    let b = Backend::start_many(3);
    let plus = FakePlus::start(&pools(&b));
    let d = driver(&plus.url());
    let m = member(&b[1], "app");
    let addr = b[1].addr().to_string();
    plus.set_active("app", &addr, 2);

    let x = find(&d, &m).await;
    assert_eq!(
        (x.admin, x.health, x.active, x.weight),
        (AdminState::Ready, Health::Up, Some(2), Some(1))
    );
    assert_eq!(find(&d, &member(&b[0], "app")).await.weight, Some(5));

    assert_eq!(
        d.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    let x = find(&d, &m).await;
    assert_eq!(
        (x.admin, x.active),
        (AdminState::Drain, Some(2)),
        "still two in flight"
    );
    plus.set_active("app", &addr, 0);
    assert_eq!(find(&d, &m).await.active, Some(0), "drained");

    assert_eq!(
        d.set_state(&m, AdminState::Maint).await.unwrap(),
        Change::Applied
    );
    assert_eq!(find(&d, &m).await.admin, AdminState::Maint);
    assert_eq!(
        d.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(find(&d, &m).await.admin, AdminState::Drain);
    assert_eq!(
        d.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    let s = plus.server("app", &addr).unwrap();
    assert!(!s.down && !s.drain, "{s:?}");

    // What went over the wire: the spec's PATCH bodies, to server id 1.
    let patches: Vec<(String, String)> = plus
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.path, r.body))
        .collect();
    let path = "/api/9/http/upstreams/app/servers/1".to_string();
    assert_eq!(
        patches,
        [
            (path.clone(), r#"{"drain":true}"#.to_string()),
            (path.clone(), r#"{"down":true}"#.to_string()),
            (path.clone(), r#"{"down":false,"drain":true}"#.to_string()),
            (path, r#"{"drain":false}"#.to_string()),
        ]
    );

    // Health from the peer state.
    plus.set_health("app", &addr, "unhealthy");
    assert_eq!(find(&d, &m).await.health, Health::Down);
    plus.set_health("app", &addr, "checking");
    assert_eq!(find(&d, &m).await.health, Health::Unknown);
}

#[tokio::test]
async fn api_errors_map_to_lbctls_kinds_with_the_reason() {
    let b = Backend::start_many(3);
    let plus = FakePlus::start_with(
        &pools(&b),
        &FakePlusOptions {
            write: true,
            static_pools: vec!["legacy".into()],
        },
    );
    let d = driver(&plus.url());

    // The static upstream is not listed, and cannot be changed.
    let all = d.members().await.unwrap();
    assert!(all.iter().all(|m| m.pool == "app"), "{all:?}");
    let e = d
        .set_state(&member(&b[0], "legacy"), AdminState::Drain)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unsupported", "{e}");
    assert!(
        e.to_string().contains("zone") && e.to_string().contains("legacy"),
        "{e}"
    );

    let e = d
        .set_state(&member(&b[0], "nope"), AdminState::Drain)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");
    assert!(e.to_string().contains("pool nope not found"), "{e}");
    assert_eq!(e.balancer(), "plus");

    // api write=off.
    plus.set_write(false);
    let m = member(&b[1], "app");
    let e = d.set_state(&m, AdminState::Drain).await.unwrap_err();
    assert_eq!(e.kind(), "unauthorized", "{e}");
    assert!(e.to_string().contains("api write=on"), "{e}");
    assert!(e.to_string().contains(&m.to_string()), "{e}");
    let e = d.set_weight(&m, 3).await.unwrap_err();
    assert_eq!(e.kind(), "unauthorized", "{e}");
    assert_eq!(
        find(&d, &m).await.admin,
        AdminState::Ready,
        "nothing changed"
    );

    // Any other code: Protocol with the code and nginx's text.
    let old = driver(&plus.url().replace("/api/9", "/api/8"));
    let e = old.members().await.unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e}");
    assert!(
        e.to_string().contains("UnknownVersion") && e.to_string().contains("unknown version"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable_and_a_foreign_one_a_protocol_error() {
    let free = lease_port();
    let d = driver(&format!("http://127.0.0.1:{}/api/9", free.port()));
    let e = d.members().await.unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.is_transient());

    // Something that answers 200 with text, not the Plus API.
    let b = Backend::start("node1");
    let d = driver(&format!("{}api/9", b.url()));
    let e = d.members().await.unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e}");
    let e = d
        .set_state(&MemberRef::new("app", "x:1"), AdminState::Drain)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e}");
}
