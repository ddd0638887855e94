//! The client's CA file, secrets from the environment or a file, and basic
//! authentication that never shows the password.

use std::path::PathBuf;
use std::time::Duration;

use lb_http::{BasicAuth, ClientOptions, Secret, SecretSource, ca_certificates};

fn with_ca(p: PathBuf) -> Result<reqwest::Client, lb_http::Error> {
    ClientOptions {
        ca_file: Some(p),
        timeout: Some(Duration::from_secs(1)),
        ..ClientOptions::default()
    }
    .build()
}

#[test]
fn the_ca_file_must_be_readable_pem_holding_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let e = with_ca(dir.path().join("missing.pem")).unwrap_err();
    assert!(e.message().starts_with("cannot read `ca_file` "), "{e}");
    assert!(e.message().contains("missing.pem"), "{e}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "no certificate here\n").unwrap();
    let e = with_ca(junk).unwrap_err();
    assert!(e.message().contains("holds no PEM certificate"), "{e}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = with_ca(broken).unwrap_err();
    assert!(
        e.message().contains("is not a PEM certificate bundle"),
        "{e}"
    );

    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, lb_lab::fake_arm::TEST_CA_PEM).unwrap();
    assert_eq!(ca_certificates(&ca).unwrap().len(), 1);
    with_ca(ca).unwrap();
    ClientOptions::default().build().unwrap();
}

#[test]
fn one_source_only() {
    let env = || Some(SecretSource::Env("X".into()));
    let file = || Some(SecretSource::File("/x".into()));
    let value = || Some(SecretSource::Value(Secret::new("v")));
    assert_eq!(
        SecretSource::one_of("password", [None, None]).unwrap(),
        None
    );
    assert_eq!(
        SecretSource::one_of("password", [None, file()]).unwrap(),
        file()
    );
    for pair in [[env(), file(), None], [None, file(), value()]] {
        let e = SecretSource::one_of("password", pair).unwrap_err();
        assert_eq!(
            e.message(),
            "give the password one way only: `password_env` or `password_file`"
        );
    }
}

#[test]
fn secrets_from_the_environment() {
    let read = |var: &str| SecretSource::Env(var.into()).read("secret");
    let e = read("LBCTL_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
    assert_eq!(
        e.message(),
        "`secret_env`: environment variable LBCTL_TEST_SURELY_UNSET_VARIABLE is not set"
    );
    let e = read("").unwrap_err();
    assert_eq!(e.message(), "`secret_env` names no environment variable");
    // PATH is set wherever tests run, and is not empty.
    assert_eq!(
        read("PATH").unwrap().expose(),
        std::env::var("PATH").unwrap()
    );
}

#[test]
fn secrets_from_a_file_lose_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        SecretSource::File(p).read("password")
    };
    assert_eq!(file("lf", b"s3cret\n").unwrap().expose(), "s3cret");
    assert_eq!(file("crlf", b"s3cret\r\n").unwrap().expose(), "s3cret");
    assert_eq!(file("two", b"s3cret\n\n").unwrap().expose(), "s3cret\n");
    assert_eq!(file("bare", b"s3cret").unwrap().expose(), "s3cret");
    for (name, bytes, why) in [
        ("empty", &b""[..], "is empty"),
        ("newline", b"\n", "is empty"),
        ("latin1", b"s\xe9cret\n", "is not valid UTF-8"),
    ] {
        let e = file(name, bytes).unwrap_err();
        assert!(e.message().starts_with("`password_file` "), "{e}");
        assert!(e.message().ends_with(why), "{e}");
    }
    let e = SecretSource::File(dir.path().join("nope"))
        .read("password")
        .unwrap_err();
    assert!(
        e.message().starts_with("cannot read `password_file` "),
        "{e}"
    );
    let v = SecretSource::Value(Secret::new("given")).read("password");
    assert_eq!(v.unwrap().expose(), "given");
}

#[test]
fn debug_never_shows_a_secret() {
    let s = Secret::new("s3cret-value");
    assert_eq!(format!("{s:?}"), "<redacted>");
    let src = SecretSource::Value(s.clone());
    assert!(!format!("{src:?}").contains("s3cret"), "{src:?}");
    let auth = BasicAuth::new("ops", Some(s)).unwrap();
    let shown = format!("{auth:?}");
    assert!(
        shown.contains("ops") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert_eq!(auth.username(), "ops");
}

#[test]
fn the_user_name_must_fit_basic_authentication() {
    for u in ["", "o:ps", "o\nps"] {
        let e = BasicAuth::new(u, None).unwrap_err();
        assert!(
            e.message().contains("not usable for basic authentication"),
            "{e}"
        );
    }
    let auth = BasicAuth::new("ops", Some(Secret::new("pw"))).unwrap();
    let req = auth
        .apply(reqwest::Client::new().get("http://127.0.0.1:1/"))
        .build()
        .unwrap();
    // "ops:pw" in base64.
    assert_eq!(req.headers()["authorization"], "Basic b3BzOnB3");
}
