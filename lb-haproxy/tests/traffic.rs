//! What the states mean for real traffic through HAProxy's frontend.

mod common;

use std::collections::BTreeMap;

use common::{KeepAlive, blocking, member, mref, on_unix, sticky_pool, wait_member};
use lb_core::{AdminState, Balancer, Change, Health};
use lb_lab::{Backend, HaproxyOptions, Pools, http};

/// Sends `n` requests (one connection each) and counts them per backend.
async fn spread(url: String, n: usize) -> BTreeMap<String, usize> {
    blocking(move || {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let r = http::get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(r.status, 200, "GET {url}: {r:?}");
            let id = r.header("x-backend").expect("X-Backend").to_owned();
            *seen.entry(id).or_default() += 1;
        }
        seen
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_and_maint_members_get_no_traffic_until_ready() {
    let backends = Backend::start_many(3);
    let lab = lb_lab::Haproxy::start(&Pools::new().pool("app", &backends));
    let lb = on_unix(&lab);
    let url = lab.frontend_url("app");
    for b in &backends {
        wait_member(&lb, "app", b.id(), "up", |m| m.health == Health::Up).await;
    }
    let node2 = mref("app", "node2");

    for state in [AdminState::Drain, AdminState::Maint] {
        assert_eq!(lb.set_state(&node2, state).await.unwrap(), Change::Applied);
        let seen = spread(url.clone(), 30).await;
        assert_eq!(
            seen.get("node2"),
            None,
            "{state}: node2 got traffic: {seen:?}"
        );
        assert_eq!(seen.values().sum::<usize>(), 30, "{seen:?}");
        assert!(
            seen.contains_key("node1") && seen.contains_key("node3"),
            "{seen:?}"
        );
    }

    assert_eq!(
        lb.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    wait_member(&lb, "app", "node2", "up", |m| m.health == Health::Up).await;
    let seen = spread(url, 30).await;
    assert!(
        seen.get("node2").is_some_and(|n| *n > 0),
        "ready: node2 gets traffic again: {seen:?}"
    );
}

/// The step a rolling upgrade relies on. A client pinned to node2 by its
/// persistence cookie keeps one connection open. Drain does not move it:
/// HAProxy still sends persistent traffic to a draining server, and `scur`
/// drops to 0 between its requests. Maint moves it: once node2 is in
/// maintenance and then stopped, every further request on the same
/// connection is served by the others. There are no health checks here,
/// so nothing but maint protects the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_closes_what_drain_leaves_open() {
    let mut backends = Backend::start_many(3);
    let opts = HaproxyOptions {
        check: String::new(),
        ..HaproxyOptions::default()
    };
    let lab = lb_lab::Haproxy::start_with(&Pools::new().with(sticky_pool("app", &backends)), &opts);
    let lb = on_unix(&lab);
    let node2 = mref("app", "node2");
    let mut client = KeepAlive::connect(&lab.frontend_url("app"), "SRV=node2");

    let mut client = blocking(move || {
        for _ in 0..5 {
            assert_eq!(client.get("/").unwrap(), (200, "node2".to_owned()));
        }
        client
    })
    .await;

    assert_eq!(
        lb.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    client = blocking(move || {
        for _ in 0..5 {
            assert_eq!(
                client.get("/").unwrap(),
                (200, "node2".to_owned()),
                "a draining server still takes persistent traffic"
            );
        }
        client
    })
    .await;
    let m = wait_member(&lb, "app", "node2", "idle", |m| m.active == Some(0)).await;
    assert_eq!(m.admin, AdminState::Drain);

    assert_eq!(
        lb.set_state(&node2, AdminState::Maint).await.unwrap(),
        Change::Applied
    );
    blocking({
        let b = backends.remove(1);
        move || {
            let mut b = b;
            b.stop();
            assert!(!b.is_running());
        }
    })
    .await;

    let (client, seen) = blocking(move || {
        let mut seen = BTreeMap::<String, usize>::new();
        for i in 0..20 {
            let (status, by) = client
                .get("/")
                .unwrap_or_else(|e| panic!("request {i} after maint + stop was lost: {e}"));
            assert_eq!(
                status, 200,
                "request {i} after maint + stop, served by {by:?}"
            );
            *seen.entry(by).or_default() += 1;
        }
        (client, seen)
    })
    .await;
    assert_eq!(seen.get("node2"), None, "{seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 20, "{seen:?}");
    assert_eq!(
        client.sent, 30,
        "every request went over the one connection"
    );
}

/// The counterpart: drain alone, `scur` at 0, then the backend stops. The
/// pinned client's next request is still sent to node2 and fails (503
/// after HAProxy's connect retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_alone_loses_the_pinned_client_when_the_backend_stops() {
    let mut backends = Backend::start_many(3);
    let opts = HaproxyOptions {
        check: String::new(),
        ..HaproxyOptions::default()
    };
    let lab = lb_lab::Haproxy::start_with(&Pools::new().with(sticky_pool("app", &backends)), &opts);
    let lb = on_unix(&lab);
    let node2 = mref("app", "node2");
    let mut client = KeepAlive::connect(&lab.frontend_url("app"), "SRV=node2");
    client = blocking(move || {
        assert_eq!(client.get("/").unwrap(), (200, "node2".to_owned()));
        client
    })
    .await;
    assert_eq!(
        lb.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    wait_member(&lb, "app", "node2", "idle", |m| m.active == Some(0)).await;
    let mut b = backends.remove(1);
    let answer = blocking(move || {
        b.stop();
        client.get("/")
    })
    .await;
    let (status, by) = answer.expect("HAProxy answers the pinned client");
    assert_eq!(
        (status, by.as_str()),
        (503, ""),
        "drain alone still routes the pinned client to the stopped node2"
    );
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Drain);
}

/// `shutdown_sessions` cuts a request a drain would let run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sessions_cuts_what_a_drain_lets_run() {
    let backends = Backend::start_many(3);
    let lab = lb_lab::Haproxy::start(&Pools::new().with(sticky_pool("app", &backends)));
    let lb = on_unix(&lab);
    let node2 = mref("app", "node2");
    let url = format!("{}slow?ms=20000", lab.frontend_url("app"));
    let slow = tokio::task::spawn_blocking(move || {
        http::request("GET", &url, &[("Cookie", "SRV=node2")], "")
    });
    wait_member(&lb, "app", "node2", "busy", |m| m.active == Some(1)).await;
    assert_eq!(
        lb.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        member(&lb, "app", "node2").await.active,
        Some(1),
        "a drain lets it run"
    );

    lb.shutdown_sessions(&node2)
        .await
        .expect("shutdown sessions");
    let r = slow
        .await
        .unwrap()
        .expect("HAProxy answers the cut request");
    assert_eq!(
        (r.status, r.header("x-backend")),
        (502, None),
        "the slow request was cut before node2 answered: {r:?}"
    );
    wait_member(&lb, "app", "node2", "idle", |m| m.active == Some(0)).await;
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Drain);
}
