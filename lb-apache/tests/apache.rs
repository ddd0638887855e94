//! lb-apache against a real apache2 started by the lab, one per test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lb_apache::Apache;
use lb_core::{AdminState, Balancer, Change, Error, Health, Member, MemberRef, conformance};
use lb_lab::{ApacheOptions, Backend, PoolSpec, Pools, http, lease_port};

fn driver(web: &lb_lab::Apache) -> Apache {
    Apache::builder("web")
        .url(&web.manager_url())
        .build()
        .expect("a valid configuration")
}

async fn members(d: &Apache) -> Vec<Member> {
    d.members().await.expect("members()")
}

async fn member(d: &Apache, pool: &str, name: &str) -> Member {
    members(d)
        .await
        .into_iter()
        .find(|m| m.pool == pool && m.name == name)
        .unwrap_or_else(|| panic!("no member {pool}/{name}"))
}

/// (pool, name, admin) of every member, sorted.
async fn admin_view(d: &Apache) -> Vec<(String, String, AdminState)> {
    let mut v: Vec<_> = members(d)
        .await
        .into_iter()
        .map(|m| (m.pool, m.name, m.admin))
        .collect();
    v.sort();
    v
}

/// Sends `n` requests to `url` and counts the answers per backend.
fn spread(url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = http::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status, 200, "GET {url}: {r:?}");
        let id = r.header("x-backend").expect("X-Backend header").to_string();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

/// Polls `members()` until `pred` holds for `pool/name` (10 s at most).
async fn wait_for(d: &Apache, pool: &str, name: &str, what: &str, pred: impl Fn(&Member) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = member(d, pool, name).await;
        if pred(&m) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pool}/{name} never reached {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A temp dir that httpd's unprivileged children can read.
fn readable_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("lb-apache-test-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn conformance_with_routes() {
    let backends = Backend::start_many(3);
    let web = lb_lab::Apache::start(
        &Pools::new()
            .pool("app", &backends)
            .pool("api", &backends[..2]),
    );
    let d = driver(&web);
    let others = [
        MemberRef::new("app", "node1"),
        MemberRef::new("app", "node3"),
        MemberRef::new("api", "node1"),
        MemberRef::new("api", "node2"),
    ];
    conformance::run_all(&d, &MemberRef::new("app", "node2"), &others)
        .await
        .expect("lb-apache conforms (members named by route)");
}

#[tokio::test]
async fn conformance_without_routes() {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start(
        &Pools::new().with(
            PoolSpec::new("app")
                .member("", backends[0].addr())
                .member("", backends[1].addr()),
        ),
    );
    let d = driver(&web);
    let url = |b: &Backend| format!("http://{}", b.addr());
    let all = members(&d).await;
    assert_eq!(
        all.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        [url(&backends[0]), url(&backends[1])],
        "members without a route are named by their URL"
    );
    conformance::run_all(
        &d,
        &MemberRef::new("app", url(&backends[1])),
        &[MemberRef::new("app", url(&backends[0]))],
    )
    .await
    .expect("lb-apache conforms (members named by URL)");
}

#[tokio::test]
async fn members_report_what_httpd_shows() {
    let backends = Backend::start_many(3);
    let web = lb_lab::Apache::start(
        &Pools::new().with(
            PoolSpec::new("app")
                .member("node1", backends[0].addr())
                .weighted("node2", backends[1].addr(), 5)
                .member("", backends[2].addr()),
        ),
    );
    let d = driver(&web);
    let all = members(&d).await;
    let view: Vec<_> = all
        .iter()
        .map(|m| {
            (
                m.pool.as_str(),
                m.name.clone(),
                m.address.clone(),
                m.admin,
                m.active,
                m.weight,
            )
        })
        .collect();
    let addr = |i: usize| backends[i].addr().to_string();
    assert_eq!(
        view,
        [
            (
                "app",
                "node1".into(),
                addr(0),
                AdminState::Ready,
                Some(0),
                Some(1)
            ),
            (
                "app",
                "node2".into(),
                addr(1),
                AdminState::Ready,
                Some(0),
                Some(5)
            ),
            (
                "app",
                format!("http://{}", addr(2)),
                addr(2),
                AdminState::Ready,
                Some(0),
                Some(1)
            ),
        ]
    );
    // httpd marks a worker it could not reach `Err`: health down.
    let mut gone = Backend::start("gone");
    let gone_addr = gone.addr();
    gone.kill();
    let web2 =
        lb_lab::Apache::start(&Pools::new().with(PoolSpec::new("app").member("gone", gone_addr)));
    let d2 = driver(&web2);
    assert_eq!(member(&d2, "app", "gone").await.health, Health::Up);
    let r = http::get(&web2.frontend_url("app")).unwrap();
    assert_eq!(r.status, 503, "no backend: {r:?}");
    assert_eq!(member(&d2, "app", "gone").await.health, Health::Down);
}

#[tokio::test]
async fn two_balancers_in_one_vhost_stay_independent() {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start(&Pools::new().pool("app", &backends).pool("api", &backends));
    let d = driver(&web);
    let before = admin_view(&d).await;
    let changed = |v: Vec<(String, String, AdminState)>| -> Vec<(String, String, AdminState)> {
        v.into_iter()
            .zip(before.iter())
            .filter(|(now, was)| now != *was)
            .map(|(now, _)| now)
            .collect()
    };

    let app2 = MemberRef::new("app", "node2");
    let api2 = MemberRef::new("api", "node2");
    assert_eq!(
        d.set_state(&app2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        changed(admin_view(&d).await),
        [("app".into(), "node2".into(), AdminState::Drain)],
        "draining app/node2 changes nothing else, api/node2 included"
    );
    let via_api = spread(&web.frontend_url("api"), 8);
    assert_eq!(
        via_api.get("node2"),
        Some(&4),
        "api still sends node2 its share: {via_api:?}"
    );
    let via_app = spread(&web.frontend_url("app"), 8);
    assert_eq!(
        via_app.get("node2"),
        None,
        "app sends node2 nothing: {via_app:?}"
    );

    d.set_state(&app2, AdminState::Ready).await.unwrap();
    assert!(changed(admin_view(&d).await).is_empty());

    assert_eq!(
        d.set_state(&api2, AdminState::Maint).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        changed(admin_view(&d).await),
        [("api".into(), "node2".into(), AdminState::Maint)],
        "and the reverse: api/node2 out leaves app/node2 in"
    );
    let via_app = spread(&web.frontend_url("app"), 8);
    assert!(
        via_app.get("node2").is_some_and(|n| *n >= 3),
        "app sends node2 its share again: {via_app:?}"
    );
    d.set_state(&api2, AdminState::Ready).await.unwrap();
    assert!(changed(admin_view(&d).await).is_empty());
}

#[tokio::test]
async fn members_are_addressed_by_route_or_by_url() {
    let backends = Backend::start_many(3);
    let web = lb_lab::Apache::start(
        &Pools::new().with(
            PoolSpec::new("app")
                .member("node1", backends[0].addr())
                .member("node2", backends[1].addr())
                .member("", backends[2].addr()),
        ),
    );
    let d = driver(&web);
    let url2 = format!("http://{}", backends[1].addr());
    let url3 = format!("http://{}", backends[2].addr());

    // A routed worker, addressed by its URL: listed (and read back) by route.
    let by_url = MemberRef::new("app", &url2);
    assert_eq!(
        d.set_state(&by_url, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Drain);
    assert_eq!(
        d.set_state(&MemberRef::new("app", "node2"), AdminState::Drain)
            .await
            .unwrap(),
        Change::AlreadyInState,
        "the route names the same worker"
    );
    // A trailing slash does not matter.
    let slash = MemberRef::new("app", format!("{url2}/"));
    assert_eq!(
        d.set_state(&slash, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Ready);

    // A worker without a route, by its URL.
    let plain = MemberRef::new("app", &url3);
    assert_eq!(
        d.set_state(&plain, AdminState::Maint).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&d, "app", &url3).await.admin, AdminState::Maint);
    assert_eq!(d.set_weight(&plain, 7).await.unwrap(), Change::Applied);
    assert_eq!(member(&d, "app", &url3).await.weight, Some(7));

    // An address that is no worker's is not found, and says what there is.
    let e = d
        .set_state(
            &MemberRef::new("app", "http://127.0.0.1:1"),
            AdminState::Drain,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("web: member app/http://127.0.0.1:1 not found"),
        "{msg}"
    );
    assert!(msg.contains("node1, node2, http://"), "{msg}");
}

#[tokio::test]
async fn traffic_follows_drain_maint_and_ready() {
    let backends = Backend::start_many(3);
    let web = lb_lab::Apache::start(&Pools::new().pool("app", &backends));
    let d = driver(&web);
    let front = web.frontend_url("app");
    let node2 = MemberRef::new("app", "node2");
    let everyone = spread(&front, 9);
    assert_eq!(everyone.get("node2"), Some(&3), "{everyone:?}");

    for s in [AdminState::Drain, AdminState::Maint] {
        d.set_state(&node2, s).await.unwrap();
        let hits = backends[1].hits();
        let seen = spread(&front, 12);
        assert_eq!(seen.get("node2"), None, "{s}: {seen:?}");
        assert_eq!(
            seen.values().sum::<usize>(),
            12,
            "{s}: every request served: {seen:?}"
        );
        assert_eq!(backends[1].hits(), hits, "{s}: node2 got no request at all");
    }

    d.set_state(&node2, AdminState::Ready).await.unwrap();
    // Back in rotation. (byrequests keeps the count node2 had when it left,
    // so its share evens out over the next rounds rather than at once.)
    let back = spread(&front, 9);
    assert!(
        back.get("node2").is_some_and(|n| *n >= 2),
        "node2 is back in rotation: {back:?}"
    );
}

#[tokio::test]
async fn busy_is_the_drain_signal() {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start(&Pools::new().pool("app", &backends));
    let d = driver(&web);
    d.set_state(&MemberRef::new("app", "node1"), AdminState::Maint)
        .await
        .unwrap();
    let slow = format!("{}slow?ms=5000", web.frontend_url("app"));
    let request = std::thread::spawn(move || http::get(&slow));
    wait_for(&d, "app", "node2", "one request in flight", |m| {
        m.active == Some(1)
    })
    .await;

    let node2 = MemberRef::new("app", "node2");
    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    let m = member(&d, "app", "node2").await;
    assert_eq!(
        (m.admin, m.active),
        (AdminState::Drain, Some(1)),
        "draining, not drained yet"
    );

    let r = request.join().unwrap().expect("the slow request");
    assert_eq!(
        (r.status, r.header("x-backend")),
        (200, Some("node2")),
        "it finished: {r:?}"
    );
    wait_for(&d, "app", "node2", "drained (busy 0)", |m| {
        m.active == Some(0)
    })
    .await;
}

#[tokio::test]
async fn httpd_ignores_a_write_without_referer_and_the_driver_sends_one() {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start(&Pools::new().pool("app", &backends));
    let d = driver(&web);
    let snap = d.read().await.unwrap();
    let app = snap.balancer("app").unwrap();
    let url2 = format!("http://{}", backends[1].addr());
    let body = form_body(&[
        ("b", "app"),
        ("w", &url2),
        ("nonce", &app.nonce),
        ("w_status_N", "1"),
    ]);
    let ctype = ("Content-Type", "application/x-www-form-urlencoded");

    let r = http::request("POST", &web.manager_url(), &[ctype], &body).unwrap();
    assert_eq!(r.status, 200, "httpd answers 200 either way");
    assert_eq!(
        member(&d, "app", "node2").await.admin,
        AdminState::Ready,
        "without a Referer the write is ignored"
    );
    assert!(
        web.error_log().contains("AH10187"),
        "httpd logs why: {}",
        web.error_log()
    );

    // The same request with a same-host Referer is applied: the Referer was
    // the only difference.
    let referer = ("Referer", web.manager_url());
    let r = http::request(
        "POST",
        &web.manager_url(),
        &[ctype, (referer.0, &referer.1)],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Drain);

    // The driver sends one.
    let node2 = MemberRef::new("app", "node2");
    assert_eq!(
        d.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Ready);
}

#[tokio::test]
async fn an_ignored_write_is_an_error_not_a_success() {
    // A rule in front of the handler strips the Referer from POSTs, as a
    // misconfigured proxy would: httpd answers 200 and changes nothing.
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start_with(
        &Pools::new().pool("app", &backends),
        &ApacheOptions {
            modules: vec!["headers".into()],
            manager: vec![
                "Require ip 127.0.0.1".into(),
                "RequestHeader unset Referer \"expr=%{REQUEST_METHOD} == 'POST'\"".into(),
            ],
            ..ApacheOptions::default()
        },
    );
    let d = driver(&web);
    let before = admin_view(&d).await;
    let e = d
        .set_state(&MemberRef::new("app", "node2"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "{e}");
    let msg = e.to_string();
    for part in [
        "web: the balancer-manager ignored the change of app/node2 to drain",
        "still reads ready",
        "Referer",
        "nonce",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    let e = d
        .set_weight(&MemberRef::new("app", "node2"), 9)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "{e}");
    assert_eq!(admin_view(&d).await, before, "nothing changed");
    assert_eq!(member(&d, "app", "node2").await.weight, Some(1));
}

#[tokio::test]
async fn require_refusal_is_unauthorized() {
    let backends = Backend::start_many(1);
    let web = lb_lab::Apache::start_with(
        &Pools::new().pool("app", &backends),
        &ApacheOptions {
            manager: vec!["Require ip 192.0.2.1".into()],
            ..ApacheOptions::default()
        },
    );
    let d = driver(&web);
    let e = d.members().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 403"), "{e}");
    assert!(e.to_string().contains("Require"), "{e}");
    let e = d
        .set_state(&MemberRef::new("app", "node1"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(!e.is_transient());
}

/// Apache with basic auth on the manager: user `ops`, password `password`.
fn with_basic_auth(backends: &[Backend], dir: &Path, password: &str) -> lb_lab::Apache {
    let htpasswd = dir.join("htpasswd");
    let bin = lb_lab::find_binary("htpasswd", "apache2-utils");
    let mut child = Command::new(bin)
        .args(["-c", "-i", "-B"])
        .arg(&htpasswd)
        .arg("ops")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("htpasswd");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "htpasswd: {out:?}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).unwrap();
    lb_lab::Apache::start_with(
        &Pools::new().pool("app", backends),
        &ApacheOptions {
            modules: ["auth_basic", "authn_core", "authn_file", "authz_user"]
                .map(String::from)
                .to_vec(),
            manager: vec![
                "AuthType Basic".into(),
                "AuthName \"balancer-manager\"".into(),
                "AuthBasicProvider file".into(),
                format!("AuthUserFile {}", htpasswd.display()),
                "Require valid-user".into(),
            ],
            ..ApacheOptions::default()
        },
    )
}

#[tokio::test]
async fn basic_auth_with_the_password_from_the_environment() {
    // The test cannot set variables in its own environment (that needs
    // `unsafe`), so the password is the value of one cargo sets for tests.
    let var = "CARGO_MANIFEST_DIR";
    let password = std::env::var(var).expect("cargo sets CARGO_MANIFEST_DIR for tests");
    let backends = Backend::start_many(2);
    let dir = readable_dir();
    let web = with_basic_auth(&backends, dir.path(), &password);

    let d = Apache::builder("web")
        .url(&web.manager_url())
        .username("ops")
        .password_env(var)
        .build()
        .unwrap();
    assert!(
        !format!("{d:?}").contains(&password),
        "Debug redacts the password: {d:?}"
    );
    let node2 = MemberRef::new("app", "node2");
    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Drain);

    // The same from a file (one trailing newline is not part of it).
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let from_file = Apache::builder("web")
        .url(&web.manager_url())
        .username("ops")
        .password_file(&file)
        .build()
        .unwrap();
    assert_eq!(
        from_file
            .set_state(&node2, AdminState::Ready)
            .await
            .unwrap(),
        Change::Applied
    );

    // Without credentials, and with a wrong password: Unauthorized.
    let anonymous = driver(&web);
    let e = anonymous.members().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("asks for a login"), "{e}");

    std::fs::write(&file, "not-the-password").unwrap();
    let wrong = Apache::builder("web")
        .url(&web.manager_url())
        .username("ops")
        .password_file(&file)
        .build()
        .unwrap();
    let e = wrong
        .set_state(&node2, AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("HTTP 401") && msg.contains("\"ops\""), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Ready);
}

/// A graceful restart, complete: returns once every child of the old
/// generation has exited, so that every answer comes from the new one
/// (right after the signal, old children may still accept a connection
/// and answer with the old generation's balancer state).
fn restart_gracefully(web: &lb_lab::Apache) {
    let children = || -> Vec<u32> {
        lb_lab::pids_in_group(web.pid())
            .into_iter()
            .filter(|p| *p != web.pid())
            .collect()
    };
    let old = children();
    assert!(!old.is_empty(), "httpd has children");
    web.graceful();
    let deadline = Instant::now() + Duration::from_secs(15);
    while children().iter().any(|p| old.contains(p)) {
        assert!(
            Instant::now() < deadline,
            "the old children {old:?} did not exit; now {:?}",
            children()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn nonce(d: &Apache, pool: &str) -> String {
    d.read()
        .await
        .unwrap()
        .balancer(pool)
        .unwrap()
        .nonce
        .clone()
}

#[tokio::test]
async fn balancer_persist_on_keeps_a_drain_across_a_graceful_restart() {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start_with(
        &Pools::new().pool("app", &backends),
        &ApacheOptions {
            server: vec!["BalancerPersist On".into()],
            ..ApacheOptions::default()
        },
    );
    let d = driver(&web);
    let node2 = MemberRef::new("app", "node2");
    d.set_state(&node2, AdminState::Drain).await.unwrap();
    d.set_weight(&node2, 42).await.unwrap();
    assert!(d.warnings().is_empty(), "{:?}", d.warnings());
    let before = nonce(&d, "app").await;
    restart_gracefully(&web);
    let m = member(&d, "app", "node2").await;
    assert_eq!(
        (m.admin, m.weight),
        (AdminState::Drain, Some(42)),
        "still drained"
    );
    assert_eq!(nonce(&d, "app").await, before, "the nonce persists too");
    assert!(d.warnings().is_empty(), "{:?}", d.warnings());
    let seen = spread(&web.frontend_url("app"), 6);
    assert_eq!(seen.get("node2"), None, "{seen:?}");
    assert_eq!(
        d.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied,
        "and the new generation takes writes"
    );
}

#[tokio::test]
async fn balancer_persist_off_is_a_warning_and_a_restart_loses_the_drain() {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start(&Pools::new().pool("app", &backends));
    let d = driver(&web);
    assert!(
        d.warnings().is_empty(),
        "nothing is known before the first read"
    );
    let node2 = MemberRef::new("app", "node2");
    d.set_state(&node2, AdminState::Drain).await.unwrap();
    let w = d.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("BalancerPersist is off") && w[0].contains("lost on the next Apache restart"),
        "{w:?}"
    );
    let before = nonce(&d, "app").await;
    restart_gracefully(&web);
    assert_eq!(
        member(&d, "app", "node2").await.admin,
        AdminState::Ready,
        "what the warning says: the restart put node2 back"
    );
    assert_ne!(nonce(&d, "app").await, before, "a new nonce");
    assert_eq!(d.warnings(), w);
    // The new nonce is picked up: writes work at once.
    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
}

#[tokio::test]
async fn an_html_answer_is_explained() {
    // With UseCanonicalName On httpd takes its own name (127.0.0.1) as the
    // server's, so a URL naming `localhost` sends a Referer httpd calls
    // cross-site, and it ignores ?xml=1 too.
    let backends = Backend::start_many(1);
    let web = lb_lab::Apache::start_with(
        &Pools::new().pool("app", &backends),
        &ApacheOptions {
            server: vec!["UseCanonicalName On".into()],
            ..ApacheOptions::default()
        },
    );
    let url = format!("http://localhost:{}/balancer-manager", web.port());
    let d = Apache::builder("web").url(&url).build().unwrap();
    let e = d.members().await.unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("instead of XML") && msg.contains("Referer"),
        "{msg}"
    );
    assert!(
        driver(&web).members().await.is_ok(),
        "the server's own name works"
    );
}

#[tokio::test]
async fn unreachable_and_silent_managers_are_unavailable() {
    let closed = lease_port();
    let d = Apache::builder("web")
        .url(&format!("http://{}/balancer-manager", closed.addr()))
        .build()
        .unwrap();
    let e = d.members().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("cannot reach"), "{e}");

    // A server that accepts the connection and never answers.
    let silent = lease_port();
    let listener = std::net::TcpListener::bind(silent.addr()).unwrap();
    let d = Apache::builder("web")
        .url(&format!("http://{}/balancer-manager", silent.addr()))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = d
        .set_state(&MemberRef::new("app", "node1"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("did not answer within 0.3 s"), "{e}");
    drop(listener);
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = lb_lab::find_binary("openssl", "openssl");
    let p = |n: &str| dir.join(n);
    let quiet = |c: &mut Command| {
        c.stdout(Stdio::null());
    };
    let mut c = Command::new(&openssl);
    c.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ])
    .args(["-subj", "/CN=lbctl test CA"])
    .arg("-keyout")
    .arg(p("ca.key"))
    .arg("-out")
    .arg(p("ca.pem"));
    quiet(&mut c);
    run(&mut c);
    let mut c = Command::new(&openssl);
    c.args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
    ])
    .arg("-keyout")
    .arg(p("server.key"))
    .arg("-out")
    .arg(p("server.csr"));
    quiet(&mut c);
    run(&mut c);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let mut c = Command::new(&openssl);
    c.args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem"));
    quiet(&mut c);
    run(&mut c);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

#[tokio::test]
async fn https_manager_is_verified_against_the_ca_file() {
    let dir = readable_dir();
    let (ca, cert, key) = make_certificates(dir.path());
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start_with(
        &Pools::new().pool("app", &backends),
        &ApacheOptions {
            modules: vec!["socache_shmcb".into(), "ssl".into()],
            server: vec![
                "SSLEngine on".into(),
                format!("SSLCertificateFile {}", cert.display()),
                format!("SSLCertificateKeyFile {}", key.display()),
            ],
            ..ApacheOptions::default()
        },
    );
    let url = web.manager_url().replacen("http://", "https://", 1);

    let unverified = Apache::builder("web").url(&url).build().unwrap();
    let e = unverified.members().await.unwrap_err();
    assert!(matches!(e, Error::Protocol { .. }), "not retryable: {e}");
    assert!(e.to_string().contains("ca_file"), "says what to do: {e}");

    let d = Apache::builder("web")
        .url(&url)
        .ca_file(&ca)
        .build()
        .unwrap();
    let node2 = MemberRef::new("app", "node2");
    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(member(&d, "app", "node2").await.admin, AdminState::Drain);
}
