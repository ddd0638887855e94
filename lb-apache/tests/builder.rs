//! The builder refuses bad configuration before anything is sent.

use std::time::Duration;

use lb_apache::Apache;
use lb_core::{Balancer, Error};

fn invalid(b: lb_apache::ApacheBuilder) -> String {
    match b.build() {
        Err(e @ Error::InvalidInput { .. }) => {
            assert_eq!(e.balancer(), "web", "{e}");
            e.to_string()
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn a_url_is_required_and_must_be_usable() {
    let b = || Apache::builder("web");
    assert!(invalid(b()).contains("no `url`"));
    for (url, why) in [
        ("not a url", "is not a URL"),
        (
            "ftp://127.0.0.1/balancer-manager",
            "must be http:// or https://",
        ),
        (
            "http://ops:secret@127.0.0.1/balancer-manager",
            "must not carry credentials",
        ),
        (
            "http://127.0.0.1/balancer-manager?xml=1",
            "must not have a query",
        ),
        (
            "http://127.0.0.1/balancer-manager#x",
            "must not have a query or a fragment",
        ),
    ] {
        let msg = invalid(b().url(url));
        assert!(msg.contains(why), "{url}: {msg}");
        assert!(
            !msg.contains("secret") || why != "must not carry credentials",
            "{msg}"
        );
    }
    let ok = b()
        .url("https://lb.example:8443/balancer-manager")
        .build()
        .unwrap();
    assert_eq!(ok.name(), "web");
    assert_eq!(ok.url(), "https://lb.example:8443/balancer-manager");
    let caps = ok.capabilities();
    assert_eq!(caps.weight_range, Some((1, 100)));
    assert!(caps.active_connections && caps.health && caps.distinct_drain);
    assert_eq!(caps.drain_signal, lb_core::DrainSignal::ActiveCount);
}

#[test]
fn the_balancer_name_is_validated() {
    let e = Apache::builder("web;x")
        .url("http://127.0.0.1/balancer-manager")
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

#[test]
fn password_sources_are_checked_and_never_shown() {
    let url = "http://127.0.0.1/balancer-manager";
    let b = || Apache::builder("web").url(url);

    let msg = invalid(
        b().username("ops")
            .password_env("LBCTL_TEST_SURELY_UNSET_VARIABLE"),
    );
    assert!(
        msg.contains("environment variable LBCTL_TEST_SURELY_UNSET_VARIABLE is not set"),
        "{msg}"
    );
    assert!(invalid(b().username("ops")).contains("no password"));
    assert!(invalid(b().password("s3cret-value".into())).contains("no `username`"));
    let msg = invalid(
        b().username("ops")
            .password("s3cret-value".into())
            .password_file("/nonexistent"),
    );
    assert!(msg.contains("one way only"), "{msg}");
    let msg = invalid(b().username("ops").password_file("/nonexistent/password"));
    assert!(
        msg.contains("cannot read `password_file` /nonexistent/password"),
        "{msg}"
    );
    let msg = invalid(b().username("o:ps").password("s3cret-value".into()));
    assert!(msg.contains("not usable for basic authentication"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    assert!(invalid(b().username("ops").password_file(&empty)).contains("is empty"));

    let builder = b().username("ops").password("s3cret-value".into());
    assert!(!format!("{builder:?}").contains("s3cret"), "{builder:?}");
    let d = builder.build().unwrap();
    let shown = format!("{d:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(shown.contains("ops"), "{shown}");
}

#[test]
fn ca_file_and_timeout_are_checked() {
    let url = "https://127.0.0.1/balancer-manager";
    let b = || Apache::builder("web").url(url);
    let msg = invalid(b().ca_file("/nonexistent/ca.pem"));
    assert!(
        msg.contains("cannot read `ca_file` /nonexistent/ca.pem"),
        "{msg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "no certificate here\n").unwrap();
    assert!(invalid(b().ca_file(&junk)).contains("holds no PEM certificate"));
    assert!(invalid(b().timeout(Duration::ZERO)).contains("`timeout` must be more than 0"));
}
