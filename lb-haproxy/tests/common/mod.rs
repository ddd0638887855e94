//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use lb_core::{Balancer, Member, MemberRef};
use lb_haproxy::Haproxy;

/// The driver on the lab's unix admin socket.
pub fn on_unix(lab: &lb_lab::Haproxy) -> Haproxy {
    Haproxy::builder("edge")
        .socket(lab.admin_socket().to_str().expect("UTF-8 path"))
        .build()
        .expect("a valid driver")
}

/// The driver on the lab's TCP admin socket.
pub fn on_tcp(lab: &lb_lab::Haproxy) -> Haproxy {
    Haproxy::builder("edge")
        .socket(&format!("tcp://{}", lab.admin_tcp()))
        .build()
        .expect("a valid driver")
}

pub fn mref(pool: &str, member: &str) -> MemberRef {
    MemberRef::new(pool, member)
}

/// The member `pool/name` as the driver lists it.
pub async fn member(lb: &Haproxy, pool: &str, name: &str) -> Member {
    let all = lb.members().await.expect("members()");
    let mut found = all.into_iter().filter(|m| m.pool == pool && m.name == name);
    let m = found
        .next()
        .unwrap_or_else(|| panic!("{pool}/{name} is not listed"));
    assert!(found.next().is_none(), "{pool}/{name} is listed twice");
    m
}

/// Polls `members()` every 50 ms until `pool/name` satisfies `ok`, for at
/// most 20 s (a generous bound for a loaded machine; it is not a timing
/// assertion: the condition is what the test checks).
pub async fn wait_member(
    lb: &Haproxy,
    pool: &str,
    name: &str,
    what: &str,
    ok: impl Fn(&Member) -> bool,
) -> Member {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = member(lb, pool, name).await;
        if ok(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pool}/{name} never became {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs blocking work (the lab's HTTP client) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}
