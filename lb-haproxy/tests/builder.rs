//! The builder: everything is checked in `build()`, before any connection.

use std::time::Duration;

use lb_core::{Balancer, Error};
use lb_haproxy::Haproxy;

fn refused(b: lb_haproxy::HaproxyBuilder, needle: &str) {
    let e = b.build().unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains(needle), "{needle}: {e}");
}

#[test]
fn build_checks_every_setting() {
    refused(Haproxy::builder("edge"), "no socket");
    refused(Haproxy::builder("edge").socket("admin.sock"), "absolute");
    refused(
        Haproxy::builder("edge").socket("tcp://127.0.0.1"),
        "no port",
    );
    refused(
        Haproxy::builder("edge").socket("http://127.0.0.1:80"),
        "unknown scheme",
    );
    refused(
        Haproxy::builder("edge").socket(&format!("/{}", "s".repeat(200))),
        "at most 107",
    );
    refused(
        Haproxy::builder("edge")
            .socket("/run/haproxy/admin.sock")
            .timeout(Duration::ZERO),
        "longer than zero",
    );
    refused(
        Haproxy::builder("edge")
            .socket("/run/haproxy/admin.sock")
            .state_file("/no/such/dir/state"),
        "does not exist",
    );
    let dir = tempfile::tempdir().unwrap();
    refused(
        Haproxy::builder("edge")
            .socket("/run/haproxy/admin.sock")
            .state_file(dir.path()),
        "is a directory",
    );
    refused(
        Haproxy::builder("edge")
            .socket("/run/haproxy/admin.sock")
            .master_socket("master.sock"),
        "master_socket: socket \"master.sock\": the path must be absolute",
    );
    refused(
        Haproxy::builder("edge;x").socket("/a.sock"),
        "invalid balancer name",
    );
    refused(
        Haproxy::builder("").socket("/a.sock"),
        "invalid balancer name",
    );
}

#[test]
fn a_built_driver_shows_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("servers.state");
    let lb = Haproxy::builder("edge")
        .socket("tcp://127.0.0.1:9999")
        .timeout(Duration::from_millis(1500))
        .state_file(&state)
        .master_socket("/run/haproxy-master.sock")
        .build()
        .unwrap();
    assert_eq!(lb.name(), "edge");
    assert_eq!(lb.socket(), "tcp://127.0.0.1:9999");
    assert_eq!(
        format!("{lb:?}"),
        format!(
            "Haproxy {{ name: \"edge\", socket: \"tcp://127.0.0.1:9999\", timeout: 1.5s, state_file: Some({state:?}), master_socket: Some(\"unix:///run/haproxy-master.sock\") }}"
        )
    );
    assert!(lb.warnings().is_empty());
    let caps = lb.capabilities();
    assert!(caps.active_connections && caps.health && caps.distinct_drain);
    assert_eq!(caps.weight_range, Some((0, 256)));
    assert_eq!(caps.drain_signal, lb_core::DrainSignal::ActiveCount);

    let plain = Haproxy::builder("edge")
        .socket("unix:///run/haproxy/admin.sock")
        .build()
        .unwrap();
    assert_eq!(plain.socket(), "unix:///run/haproxy/admin.sock");
    let w = plain.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("lost when HAProxy reloads"), "{w:?}");
}
