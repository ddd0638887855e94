//! What `members()` reports for the shapes real configurations take.

mod common;

use common::{blocking, member, mref, on_unix, wait_member};
use lb_core::{AdminState, Balancer, Change, Error, Health};
use lb_lab::{Backend, HaproxyOptions, MemberSpec, PoolSpec, Pools, http};

fn no_checks() -> HaproxyOptions {
    HaproxyOptions {
        check: String::new(),
        ..HaproxyOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_in_two_backends_is_one_member_per_backend() {
    let backends = Backend::start_many(2);
    let pools = Pools::new()
        .pool("app", &backends)
        .with(PoolSpec::new("api").member("node1", backends[0].addr()));
    let lab = lb_lab::Haproxy::start(&pools);
    let lb = on_unix(&lab);
    let all = lb.members().await.unwrap();
    let names: Vec<_> = all
        .iter()
        .map(|m| format!("{}/{}", m.pool, m.name))
        .collect();
    assert_eq!(names, ["app/node1", "app/node2", "api/node1"]);
    assert_eq!(all[0].address, backends[0].addr().to_string());
    assert_eq!(all[2].address, backends[0].addr().to_string());

    assert_eq!(
        lb.set_state(&mref("app", "node1"), AdminState::Drain)
            .await
            .unwrap(),
        Change::Applied
    );
    assert_eq!(member(&lb, "app", "node1").await.admin, AdminState::Drain);
    assert_eq!(
        member(&lb, "api", "node1").await.admin,
        AdminState::Ready,
        "the same server in another backend is another member"
    );
    // api/node1 still serves through the api frontend.
    let url = lab.frontend_url("api");
    let r = blocking(move || http::get(&url).unwrap()).await;
    assert_eq!((r.status, r.header("x-backend")), (200, Some("node1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_200_servers_is_listed() {
    let backend = Backend::start("node1");
    let mut big = PoolSpec::new("big");
    for i in 1..=200u32 {
        big.members.push(MemberSpec {
            name: format!("srv{i:03}"),
            addr: backend.addr(),
            weight: Some(i),
            extra: if i % 50 == 0 {
                "disabled".into()
            } else {
                String::new()
            },
        });
    }
    let lab = lb_lab::Haproxy::start_with(&Pools::new().with(big), &no_checks());
    let lb = on_unix(&lab);
    let all = lb.members().await.unwrap();
    assert_eq!(all.len(), 200);
    for (i, m) in (1..=200u32).zip(&all) {
        assert_eq!(
            (m.pool.as_str(), m.name.clone()),
            ("big", format!("srv{i:03}"))
        );
        assert_eq!(m.address, backend.addr().to_string());
        assert_eq!(m.weight, Some(i));
        assert_eq!(m.active, Some(0));
        let admin = if i % 50 == 0 {
            AdminState::Maint
        } else {
            AdminState::Ready
        };
        assert_eq!(m.admin, admin, "{}", m.name);
        assert_eq!(m.health, Health::Unknown, "no checks configured");
    }
    assert_eq!(
        lb.set_state(&mref("big", "srv150"), AdminState::Ready)
            .await
            .unwrap(),
        Change::Applied
    );
    assert_eq!(
        lb.set_state(&mref("big", "srv199"), AdminState::Drain)
            .await
            .unwrap(),
        Change::Applied
    );
    let after = lb.members().await.unwrap();
    let changed: Vec<_> = all
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(_, b)| (b.name.as_str(), b.admin))
        .collect();
    assert_eq!(
        changed,
        [("srv150", AdminState::Ready), ("srv199", AdminState::Drain)]
    );
}

/// `disabled` in the configuration sets two bits (forced + config maint);
/// `ready` clears the first and HAProxy keeps the second as a marker while
/// the server serves. The driver reads that as ready, as HAProxy does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_disabled_in_the_configuration_is_maint_until_set_ready() {
    let backends = Backend::start_many(2);
    let mut pool = PoolSpec::new("app").member("node1", backends[0].addr());
    pool.members.push(MemberSpec {
        name: "node2".into(),
        addr: backends[1].addr(),
        weight: None,
        extra: "disabled".into(),
    });
    let lab = lb_lab::Haproxy::start(&Pools::new().with(pool));
    let lb = on_unix(&lab);
    let bits = |dump: &str, name: &str| -> u32 {
        let row = dump
            .lines()
            .find(|l| l.split(' ').nth(3) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {dump}"));
        row.split(' ').nth(6).unwrap().parse().unwrap()
    };
    assert_eq!(bits(&lab.command("show servers state app"), "node2"), 0x05);
    let m = member(&lb, "app", "node2").await;
    assert_eq!((m.admin, m.health), (AdminState::Maint, Health::Unknown));

    let node2 = mref("app", "node2");
    assert_eq!(
        lb.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(bits(&lab.command("show servers state app"), "node2"), 0x04);
    wait_member(&lb, "app", "node2", "up", |m| m.health == Health::Up).await;
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Ready);
    assert_eq!(
        lb.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::AlreadyInState
    );
    let url = lab.frontend_url("app");
    let served: Vec<String> = blocking(move || {
        (0..4)
            .map(|_| {
                http::get(&url)
                    .unwrap()
                    .header("x-backend")
                    .unwrap()
                    .to_owned()
            })
            .collect()
    })
    .await;
    assert!(served.iter().any(|s| s == "node2"), "{served:?}");
}

/// A lab HAProxy with node1 and node2, node2 tracking node1.
fn tracking_pair() -> (Vec<Backend>, lb_lab::Haproxy) {
    let backends = Backend::start_many(2);
    let mut pool = PoolSpec::new("app");
    for (b, extra) in backends.iter().zip(["check inter 200", "track app/node1"]) {
        pool.members.push(MemberSpec {
            name: b.id().into(),
            addr: b.addr(),
            weight: None,
            extra: extra.into(),
        });
    }
    let lab = lb_lab::Haproxy::start_with(&Pools::new().with(pool), &no_checks());
    (backends, lab)
}

/// A server that tracks another inherits its maintenance: HAProxy accepts
/// `ready` for it and keeps it in maintenance. The read-back catches that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracking_server_in_inherited_maint_cannot_be_set_ready() {
    let (_backends, lab) = tracking_pair();
    let lb = on_unix(&lab);
    let (node1, node2) = (mref("app", "node1"), mref("app", "node2"));
    assert_eq!(
        lb.set_state(&node1, AdminState::Maint).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Maint);

    let e = lb.set_state(&node2, AdminState::Ready).await.unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("app/node2 reads back as maint"), "{msg}");
    assert!(
        msg.contains("0x02: maintenance inherited from the server it tracks"),
        "{msg}"
    );

    assert_eq!(
        lb.set_state(&node1, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_checks() {
    let mut backends = Backend::start_many(2);
    let pools = Pools::new()
        .pool("app", &backends)
        .with(PoolSpec::new("unchecked").member("node1", backends[0].addr()));
    // Checks on app's servers only (the extra on each member line).
    let mut pools = pools;
    for m in &mut pools.pools[0].members {
        m.extra = "check inter 100 fall 2 rise 1".into();
    }
    let lab = lb_lab::Haproxy::start_with(&pools, &no_checks());
    let lb = on_unix(&lab);
    wait_member(&lb, "app", "node2", "up", |m| m.health == Health::Up).await;
    assert_eq!(
        member(&lb, "unchecked", "node1").await.health,
        Health::Unknown
    );

    backends[1].kill();
    let m = wait_member(&lb, "app", "node2", "down", |m| m.health == Health::Down).await;
    assert_eq!(m.admin, AdminState::Ready, "health is not an admin state");
    backends[1].start_again();
    wait_member(&lb, "app", "node2", "up again", |m| m.health == Health::Up).await;

    lb.set_state(&mref("app", "node2"), AdminState::Maint)
        .await
        .unwrap();
    assert_eq!(
        member(&lb, "app", "node2").await.health,
        Health::Unknown,
        "checks are suspended in maintenance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pools_and_members_are_not_found_everywhere() {
    let backends = Backend::start_many(2);
    let lab = lb_lab::Haproxy::start_with(&Pools::new().pool("app", &backends), &no_checks());
    let lb = on_unix(&lab);
    for (r, needle) in [
        (mref("app", "node9"), "no server node9 in backend app"),
        (mref("nope", "node1"), "no backend nope"),
    ] {
        let e = lb.shutdown_sessions(&r).await.unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
        let e = lb.set_weight(&r, 3).await.unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    let e = lb.set_weight(&mref("app", "node1"), 257).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("0 to 256"), "{e}");
}

/// `set_state` sends its read, its write and its read-back in one batch,
/// so the write goes out before the read is known: a maint that finds a
/// server already in inherited maintenance must still leave it as it was
/// (no forced maintenance on top), so it follows the server it tracks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maint_that_finds_inherited_maintenance_leaves_it_inherited() {
    let (_backends, lab) = tracking_pair();
    let lb = on_unix(&lab);
    let (node1, node2) = (mref("app", "node1"), mref("app", "node2"));
    lb.set_state(&node1, AdminState::Maint).await.unwrap();
    let bits = || {
        lab.command("show servers state app")
            .lines()
            .find(|l| l.split(' ').nth(3) == Some("node2"))
            .and_then(|l| l.split(' ').nth(6).map(str::to_owned))
            .unwrap()
    };
    assert_eq!(bits(), "2", "inherited maintenance only");
    for s in [AdminState::Maint, AdminState::Maint] {
        assert_eq!(
            lb.set_state(&node2, s).await.unwrap(),
            Change::AlreadyInState
        );
        assert_eq!(bits(), "2", "no forced maintenance added");
    }
    lb.set_state(&node1, AdminState::Ready).await.unwrap();
    assert_eq!(member(&lb, "app", "node2").await.admin, AdminState::Ready);
}
