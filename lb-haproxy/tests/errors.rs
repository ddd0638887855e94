//! Refusals and failures: hostile names, a socket without `level admin`,
//! sockets that are missing, closed or silent.

mod common;

use std::time::{Duration, Instant};

use common::{blocking, member, mref, on_unix};
use lb_core::{AdminState, Balancer, Error};
use lb_haproxy::Haproxy;
use lb_lab::{Backend, HaproxyOptions, Pools, lease_port};

fn static_lab(backends: &[Backend]) -> lb_lab::Haproxy {
    // No health checks: nothing in `show servers state` moves by itself.
    let opts = HaproxyOptions {
        check: String::new(),
        ..HaproxyOptions::default()
    };
    lb_lab::Haproxy::start_with(&Pools::new().pool("app", backends), &opts)
}

/// `show servers state` with the one column that ticks with the clock
/// (`srv_time_since_last_change`) blanked out.
fn without_clock(dump: &str) -> String {
    let mut lines = dump.lines();
    let mut out = vec![lines.next().unwrap_or("").to_owned()];
    let header = lines.next().unwrap_or("");
    let clock = header
        .trim_start_matches('#')
        .split_whitespace()
        .position(|c| c == "srv_time_since_last_change")
        .expect("the clock column");
    out.push(header.to_owned());
    for l in lines {
        let mut f: Vec<&str> = l.split(' ').collect();
        if f.len() > clock {
            f[clock] = "_";
        }
        out.push(f.join(" "));
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_nothing_reaches_haproxy() {
    let backends = Backend::start_many(3);
    let lab = std::sync::Arc::new(static_lab(&backends));
    let lb = on_unix(&lab);
    let hostile = [
        "node2;show info".to_owned(),
        "node2\nshow info".to_owned(),
        "node2;set server app/node1 state maint".to_owned(),
        "node2\r\nset server app/node1 weight 0".to_owned(),
        "node 2".to_owned(),
        "node2 ".to_owned(),
        "x".repeat(5000),
    ];
    let refs: Vec<_> = hostile
        .iter()
        .flat_map(|h| [mref("app", h), mref(h, "node2")])
        .collect();

    let dump = || {
        let lab = lab.clone();
        blocking(move || lab.command("show servers state"))
    };
    // The dump must be byte-identical; only a tick of the seconds counter
    // between the two reads can make one attempt differ, so retry then.
    let mut identical = false;
    for _ in 0..5 {
        let before = dump().await;
        for r in &refs {
            for s in [AdminState::Drain, AdminState::Maint, AdminState::Ready] {
                let e = lb.set_state(r, s).await.unwrap_err();
                assert!(matches!(e, Error::InvalidInput { .. }), "{r:?} {s}: {e}");
                assert_eq!(e.balancer(), "edge");
                assert!(e.message().contains("invalid"), "{e}");
            }
            for w in [0, 1, 256] {
                let e = lb.set_weight(r, w).await.unwrap_err();
                assert!(
                    matches!(e, Error::InvalidInput { .. }),
                    "{r:?} weight {w}: {e}"
                );
            }
            let e = lb.shutdown_sessions(r).await.unwrap_err();
            assert!(
                matches!(e, Error::InvalidInput { .. }),
                "{r:?} shutdown: {e}"
            );
            assert!(!e.to_string().contains('\n'), "{e:?}");
        }
        let after = dump().await;
        assert!(before.starts_with("1\n# be_id"), "{before}");
        assert_eq!(without_clock(&before), without_clock(&after));
        if before == after {
            identical = true;
            break;
        }
    }
    assert!(identical, "show servers state changed");
    for n in ["node1", "node2", "node3"] {
        assert_eq!(member(&lb, "app", n).await.admin, AdminState::Ready);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_user_socket_is_unauthorized_for_writes() {
    let backends = Backend::start_many(2);
    let lab = static_lab(&backends);
    for socket in [
        lab.user_socket().display().to_string(),
        format!("tcp://{}", lab.user_tcp()),
    ] {
        let lb = Haproxy::builder("edge").socket(&socket).build().unwrap();
        let node2 = mref("app", "node2");
        for r in [
            lb.set_state(&node2, AdminState::Drain).await.map(drop),
            lb.set_weight(&node2, 7).await.map(drop),
            lb.shutdown_sessions(&node2).await,
        ] {
            let e = r.unwrap_err();
            assert!(matches!(e, Error::Unauthorized { .. }), "{socket}: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with("edge: "), "{msg}");
            assert!(msg.contains("level admin"), "{msg}");
            assert!(msg.contains("app/node2"), "{msg}");
        }
        // Reads are allowed at level user, and nothing changed.
        let m = member(&lb, "app", "node2").await;
        assert_eq!(
            (m.admin, m.weight),
            (AdminState::Ready, Some(1)),
            "{socket}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_socket_path_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such.sock");
    let lb = Haproxy::builder("edge")
        .socket(path.to_str().unwrap())
        .build()
        .unwrap();
    let e = lb.members().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.starts_with("edge: list members: cannot connect"),
        "{msg}"
    );
    assert!(msg.contains("no-such.sock"), "{msg}");
    let e = lb
        .set_state(&mref("app", "node2"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("drain app/node2"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_tcp_port_is_unavailable() {
    let port = lease_port(); // reserved, nothing listens on it
    let lb = Haproxy::builder("edge")
        .socket(&format!("tcp://{}", port.addr()))
        .build()
        .unwrap();
    let e = lb.members().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains(&port.addr().to_string()), "{e}");
}

/// A peer that accepts connections (the kernel completes them) but never
/// reads or answers: every call ends in `Unavailable` once the configured
/// timeout has passed, never in a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tcp_peer_is_unavailable_within_the_timeout() {
    let port = lease_port();
    let listener = std::net::TcpListener::bind(port.addr()).expect("bind");
    let timeout = Duration::from_millis(300);
    let lb = Haproxy::builder("edge")
        .socket(&format!("tcp://{}", port.addr()))
        .timeout(timeout)
        .build()
        .unwrap();
    let node2 = mref("app", "node2");
    let calls: Vec<(&str, _)> = vec![
        (
            "members",
            Box::pin(async { lb.members().await.map(drop) })
                as std::pin::Pin<Box<dyn Future<Output = lb_core::Result<()>> + Send>>,
        ),
        (
            "set_state",
            Box::pin(async { lb.set_state(&node2, AdminState::Drain).await.map(drop) }),
        ),
        (
            "set_weight",
            Box::pin(async { lb.set_weight(&node2, 3).await.map(drop) }),
        ),
        ("shutdown_sessions", Box::pin(lb.shutdown_sessions(&node2))),
    ];
    for (what, call) in calls {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .unwrap_or_else(|_| panic!("{what} hung on a silent socket"));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. }), "{what}: {e}");
        assert!(
            e.to_string().contains("did not answer within 300ms"),
            "{what}: {e}"
        );
        assert!(
            started.elapsed() >= timeout,
            "{what} gave up before the timeout"
        );
    }
    drop(listener);
}
