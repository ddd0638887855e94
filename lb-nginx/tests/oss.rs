//! The open-source driver against a real nginx started by the lab.

use std::time::{Duration, Instant};

use lb_core::{AdminState, Balancer, Change, DrainSignal, Health, Member, MemberRef, conformance};
use lb_lab::{Backend, Nginx as Lab, PoolSpec, Pools, http};
use lb_nginx::Nginx;

fn driver(lab: &Lab) -> Nginx {
    Nginx::builder("front")
        .upstream_file(lab.upstream_file())
        .conf(lab.conf())
        .pid_file(lab.pid_file())
        .prefix(lab.prefix())
        .nginx_bin(lab.bin())
        .build()
        .expect("the driver builds")
}

fn member(b: &Backend, pool: &str) -> MemberRef {
    MemberRef::new(pool, b.addr().to_string())
}

async fn find(d: &Nginx, m: &MemberRef) -> Member {
    let all = d.members().await.expect("members()");
    all.into_iter()
        .find(|x| x.is(m))
        .unwrap_or_else(|| panic!("{m} is listed"))
}

/// Waits until the driver reports `m` drained (`active == Some(0)`): the
/// workers that predate the reload have exited.
async fn drained(d: &Nginx, m: &MemberRef) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while find(d, m).await.active != Some(0) {
        assert!(Instant::now() < deadline, "{m} never reported drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until none of the `before` workers runs any more.
fn old_workers_gone(lab: &Lab, before: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.workers().iter().any(|w| before.contains(w)) {
        assert!(Instant::now() < deadline, "old workers never exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).expect("read the file")
}

#[tokio::test]
async fn conformance_against_real_nginx() {
    let b = Backend::start_many(3);
    let lab = Lab::start(&Pools::new().pool("app", &b).pool("other", &b[..1]));
    let d = driver(&lab);
    let original = read(&lab.upstream_file());
    conformance::run_all(
        &d,
        &member(&b[1], "app"),
        &[
            member(&b[0], "app"),
            member(&b[2], "app"),
            member(&b[0], "other"),
        ],
    )
    .await
    .expect("the open-source nginx driver conforms");
    assert_eq!(
        String::from_utf8(read(&lab.upstream_file())).unwrap(),
        String::from_utf8(original).unwrap(),
        "after the suite the upstream file is as it was"
    );
}

#[test]
fn capabilities_follow_the_nginx_version() {
    let b = Backend::start_many(1);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let d = driver(&lab);
    let caps = d.capabilities();
    let (major, minor, patch) = d.version();
    assert!(major >= 1, "{:?}", d.version());
    let has_drain = (major, minor, patch) >= (1, 29, 6);
    assert_eq!(caps.distinct_drain, has_drain);
    assert_eq!(caps.drain_signal, DrainSignal::WorkersExited);
    assert!(caps.active_connections && !caps.health);
    assert_eq!(caps.weight_range, Some((1, lb_nginx::MAX_WEIGHT)));
    assert_eq!(
        d.warnings().iter().any(|w| w.contains("`drain`")),
        !has_drain,
        "{:?}",
        d.warnings()
    );
}

#[tokio::test]
async fn a_drained_member_gets_no_traffic_until_it_is_ready() {
    let b = Backend::start_many(3);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let d = driver(&lab);
    let url = lab.frontend_url("app");
    let node2 = member(&b[1], "app");

    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    let m = find(&d, &node2).await;
    assert_eq!(m.admin, d.capabilities().reads_back_as(AdminState::Drain));
    assert_eq!(m.health, Health::Unknown);
    drained(&d, &node2).await;
    let hits = b[1].hits();
    let seen = http::spread(&url, 30);
    assert_eq!(
        seen.get("node2"),
        None,
        "drained node2 got traffic: {seen:?}"
    );
    assert_eq!(b[1].hits(), hits);
    assert_eq!(seen.values().sum::<usize>(), 30);

    let workers = lab.workers();
    assert_eq!(
        d.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(find(&d, &node2).await.admin, AdminState::Ready);
    old_workers_gone(&lab, &workers);
    let seen = http::spread(&url, 30);
    assert_eq!(seen.get("node2"), Some(&10), "round robin again: {seen:?}");
}

#[tokio::test]
async fn edits_touch_one_directive_and_round_trip_to_the_same_bytes() {
    let b = Backend::start_many(3);
    let lab = Lab::start(&Pools::new().pool("app", &b).pool("other", &b[..1]));
    let (a1, a2, a3) = (b[0].addr(), b[1].addr(), b[2].addr());
    let text = format!(
        "# Upstreams of the app. Not a directive: server 10.9.9.9:80 down;\n\
         upstream app {{\n\
         \tserver {a1} weight=5 max_fails=3;   # primary, server of record\n\
         \n\
         \tserver {a2}\tmax_fails=2 ; # tabbed\n\
         \tserver \"{a3}\";\n\
         }}\n\
         \n\
         # the second upstream\n\
         upstream other {{ server {a1}; keepalive 4; }}\n"
    );
    std::fs::write(lab.upstream_file(), &text).unwrap();
    lab.reload();
    let d = driver(&lab);

    let all = d.members().await.unwrap();
    let view: Vec<_> = all
        .iter()
        .map(|m| {
            (
                m.pool.as_str(),
                m.name.clone(),
                m.weight,
                m.admin,
                m.health,
                m.active,
            )
        })
        .collect();
    let ready = AdminState::Ready;
    let unknown = Health::Unknown;
    assert_eq!(
        view,
        [
            ("app", a1.to_string(), Some(5), ready, unknown, None),
            ("app", a2.to_string(), Some(1), ready, unknown, None),
            ("app", a3.to_string(), Some(1), ready, unknown, None),
            ("other", a1.to_string(), Some(1), ready, unknown, None),
        ]
    );

    let node2 = member(&b[1], "app");
    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    let after = String::from_utf8(read(&lab.upstream_file())).unwrap();
    let changed: Vec<(&str, &str)> = text
        .lines()
        .zip(after.lines())
        .filter(|(x, y)| x != y)
        .collect();
    assert_eq!(
        changed,
        [(
            format!("\tserver {a2}\tmax_fails=2 ; # tabbed").as_str(),
            format!("\tserver {a2}\tmax_fails=2 down ; # tabbed").as_str()
        )]
    );
    assert_eq!(text.lines().count(), after.lines().count());
    drained(&d, &node2).await;
    let seen = http::spread(&lab.frontend_url("app"), 12);
    assert_eq!(seen.get("node2"), None, "{seen:?}");

    assert_eq!(
        d.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(String::from_utf8(read(&lab.upstream_file())).unwrap(), text);

    let node1 = member(&b[0], "app");
    assert_eq!(d.set_weight(&node1, 7).await.unwrap(), Change::Applied);
    assert_eq!(
        String::from_utf8(read(&lab.upstream_file())).unwrap(),
        text.replace("weight=5", "weight=7")
    );
    assert_eq!(find(&d, &node1).await.weight, Some(7));
    assert_eq!(d.set_weight(&node1, 5).await.unwrap(), Change::Applied);
    assert_eq!(String::from_utf8(read(&lab.upstream_file())).unwrap(), text);
}

#[tokio::test]
async fn nothing_to_change_means_no_write_and_no_reload() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let d = driver(&lab);
    let workers = lab.workers();
    let modified = std::fs::metadata(lab.upstream_file())
        .unwrap()
        .modified()
        .unwrap();
    let m = member(&b[0], "app");
    assert_eq!(
        d.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::AlreadyInState
    );
    assert_eq!(d.set_weight(&m, 1).await.unwrap(), Change::AlreadyInState);
    assert_eq!(lab.workers(), workers, "no reload happened");
    assert_eq!(
        std::fs::metadata(lab.upstream_file())
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "the file was not rewritten"
    );
}

#[tokio::test]
async fn a_broken_configuration_is_reported_with_nginxs_message_and_nothing_changes() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let d = driver(&lab);
    let before = read(&lab.upstream_file());
    let workers = lab.workers();
    // Someone else breaks the main configuration.
    let mut conf = std::fs::read_to_string(lab.conf()).unwrap();
    conf.push_str("bogus_directive on;\n");
    std::fs::write(lab.conf(), &conf).unwrap();

    let m = member(&b[1], "app");
    let e = d.set_state(&m, AdminState::Drain).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.balancer(), "front");
    assert!(
        msg.contains("unknown directive \"bogus_directive\"") && msg.contains("nginx.conf"),
        "nginx's own message: {msg}"
    );
    assert!(msg.contains(&m.to_string()), "names the member: {msg}");
    assert_eq!(e.kind(), "protocol", "{msg}");
    assert_eq!(
        read(&lab.upstream_file()),
        before,
        "upstream file unchanged"
    );
    assert_eq!(lab.workers(), workers, "no reload happened");
    assert_eq!(find(&d, &m).await.admin, AdminState::Ready);
    let leftovers: Vec<_> = std::fs::read_dir(lab.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lbctl"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test]
async fn a_reload_nginx_refuses_restores_the_file() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let d = driver(&lab);
    let before = read(&lab.upstream_file());
    // `nginx -t` does not bind, the reload does: hold a port it will want.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let original_conf = std::fs::read_to_string(lab.conf()).unwrap();
    let cut = original_conf.rfind('}').unwrap();
    let conf = format!(
        "{}    server {{ listen 127.0.0.1:{port}; }}\n{}",
        &original_conf[..cut],
        &original_conf[cut..]
    );
    std::fs::write(lab.conf(), conf).unwrap();
    let workers = lab.workers();

    let m = member(&b[0], "app");
    let e = d.set_state(&m, AdminState::Drain).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), "unavailable", "{msg}");
    assert!(
        msg.contains("bind()") && msg.contains(&port.to_string()),
        "nginx's own message: {msg}"
    );
    assert_eq!(read(&lab.upstream_file()), before, "upstream file restored");
    assert_eq!(lab.workers(), workers, "the old workers still serve");
    assert_eq!(http::get(&lab.frontend_url("app")).unwrap().status, 200);

    // Once the port is free the same drain goes through.
    drop(busy);
    assert_eq!(
        d.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    std::fs::write(lab.conf(), original_conf).unwrap();
    assert_eq!(
        d.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(read(&lab.upstream_file()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_drains_of_different_members_are_all_applied() {
    let b = Backend::start_many(6);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let before = read(&lab.upstream_file());
    // One driver per task, as separate lbctl processes would have.
    let run = |state: AdminState| {
        let tasks: Vec<_> = b
            .iter()
            .map(|x| {
                let d = driver(&lab);
                let m = member(x, "app");
                tokio::spawn(async move { d.set_state(&m, state).await })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task").expect("set_state"));
            }
            out
        }
    };
    assert_eq!(run(AdminState::Drain).await, vec![Change::Applied; 6]);
    let text = String::from_utf8(read(&lab.upstream_file())).unwrap();
    assert_eq!(
        text.matches(" down;").count(),
        6,
        "no edit was lost:\n{text}"
    );
    let d = driver(&lab);
    for x in &b {
        assert_eq!(find(&d, &member(x, "app")).await.admin, AdminState::Maint);
    }
    assert_eq!(run(AdminState::Ready).await, vec![Change::Applied; 6]);
    assert_eq!(read(&lab.upstream_file()), before);
}

#[tokio::test]
async fn active_turns_zero_only_after_the_request_in_flight_finished() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let d = driver(&lab);
    let url = format!("{}slow?ms=2000", lab.frontend_url("app"));
    let client = std::thread::spawn(move || http::get(&url));
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        if let Some(i) = b.iter().position(|x| x.in_flight() == 1) {
            break i;
        }
        assert!(Instant::now() < deadline, "the slow request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    };
    let m = member(&b[busy], "app");
    assert_eq!(
        d.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );

    let mut none_while_in_flight = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_flight_before = b[busy].in_flight();
        let x = find(&d, &m).await;
        let in_flight_after = b[busy].in_flight();
        assert_ne!(x.admin, AdminState::Ready);
        match x.active {
            None => {
                if in_flight_before == 1 && in_flight_after == 1 {
                    none_while_in_flight += 1;
                }
            }
            Some(0) => {
                assert_eq!(
                    in_flight_after, 0,
                    "active reads Some(0) while the request is still at the backend"
                );
                break;
            }
            Some(n) => panic!("active reads Some({n})"),
        }
        assert!(Instant::now() < deadline, "active never turned Some(0)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        none_while_in_flight > 0,
        "active was read as None at least once while the request was in flight"
    );
    let r = client.join().unwrap().expect("the slow request");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body.trim(),
        b[busy].id(),
        "it completed at the drained member"
    );
    // The others are ready and report no count.
    let other = member(&b[1 - busy], "app");
    assert_eq!(find(&d, &other).await.active, None);
}

#[tokio::test]
async fn reload_command_is_run_and_a_failing_one_restores_the_file() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let before = read(&lab.upstream_file());
    let m = member(&b[0], "app");
    let cmd = format!(
        "'{}' -s reload -c '{}' -p '{}'",
        lab.bin().display(),
        lab.conf().display(),
        lab.prefix()
    );
    let d = Nginx::builder("front")
        .upstream_file(lab.upstream_file())
        .conf(lab.conf())
        .prefix(lab.prefix())
        .pid_file(lab.pid_file())
        .reload_command(&cmd)
        .build()
        .unwrap();
    let workers = lab.workers();
    assert_eq!(
        d.set_state(&m, AdminState::Maint).await.unwrap(),
        Change::Applied
    );
    assert!(
        lab.workers().iter().any(|w| !workers.contains(w)),
        "the command reloaded nginx"
    );
    drained(&d, &m).await;
    let seen = http::spread(&lab.frontend_url("app"), 6);
    assert_eq!(seen.get("node1"), None, "{seen:?}");
    assert_eq!(
        d.set_state(&m, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(read(&lab.upstream_file()), before);

    let failing = Nginx::builder("front")
        .upstream_file(lab.upstream_file())
        .conf(lab.conf())
        .prefix(lab.prefix())
        .reload_command("echo 'reload refused by policy' >&2; exit 3")
        .build()
        .unwrap();
    let e = failing.set_state(&m, AdminState::Drain).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), "unavailable", "{msg}");
    assert!(msg.contains("reload refused by policy"), "{msg}");
    assert_eq!(read(&lab.upstream_file()), before, "file restored");
}

#[tokio::test]
async fn without_a_pid_file_the_grace_period_is_the_drained_signal() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let cmd = format!(
        "'{}' -s reload -c '{}' -p '{}'",
        lab.bin().display(),
        lab.conf().display(),
        lab.prefix()
    );
    let with_grace = |g: Duration| {
        Nginx::builder("front")
            .upstream_file(lab.upstream_file())
            .conf(lab.conf())
            .prefix(lab.prefix())
            .reload_command(&cmd)
            .grace(g)
            .build()
            .unwrap()
    };
    let long = with_grace(Duration::from_secs(3600));
    let short = with_grace(Duration::from_millis(50));
    assert_eq!(long.capabilities().drain_signal, DrainSignal::Timer);
    let m = member(&b[1], "app");
    long.set_state(&m, AdminState::Drain).await.unwrap();
    assert_eq!(
        find(&long, &m).await.active,
        None,
        "the hour has not passed"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(find(&short, &m).await.active, Some(0), "50 ms have passed");

    let none = Nginx::builder("front")
        .upstream_file(lab.upstream_file())
        .reload_command(&cmd)
        .build()
        .unwrap();
    let caps = none.capabilities();
    assert_eq!(caps.drain_signal, DrainSignal::None);
    assert!(!caps.active_connections);
    assert_eq!(find(&none, &m).await.active, None);
    assert!(none.warnings().iter().any(|w| w.contains("no pid_file")));
}

#[tokio::test]
async fn a_symlinked_upstream_file_stays_a_symlink() {
    let b = Backend::start_many(2);
    let lab = Lab::start(&Pools::new().pool("app", &b));
    let link = lab.dir().join("enabled.conf");
    std::os::unix::fs::symlink(lab.upstream_file(), &link).unwrap();
    let d = Nginx::builder("front")
        .upstream_file(&link)
        .conf(lab.conf())
        .prefix(lab.prefix())
        .pid_file(lab.pid_file())
        .build()
        .unwrap();
    let m = member(&b[0], "app");
    assert_eq!(
        d.set_state(&m, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(lab.upstream_file())
            .unwrap()
            .contains(" down;")
    );
    assert_eq!(find(&d, &m).await.admin, AdminState::Maint);
}

#[tokio::test]
async fn servers_nginx_cannot_tell_apart_are_refused() {
    let b = Backend::start_many(1);
    let lab = Lab::start(
        &Pools::new().with(
            PoolSpec::new("app")
                .member("a", b[0].addr())
                .member("b", b[0].addr()),
        ),
    );
    let d = driver(&lab);
    let before = read(&lab.upstream_file());
    let e = d
        .set_state(&member(&b[0], "app"), AdminState::Drain)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unsupported", "{e}");
    assert!(e.to_string().contains("more than once"), "{e}");
    assert_eq!(read(&lab.upstream_file()), before);
}

#[test]
fn the_builder_checks_everything_up_front() {
    let ok = || {
        Nginx::builder("front")
            .upstream_file("/etc/nginx/conf.d/up.conf")
            .pid_file("/run/nginx.pid")
    };
    ok().build().expect("a minimal configuration builds");
    let cases = [
        (
            Nginx::builder("front").pid_file("/run/nginx.pid"),
            "upstream_file is required",
        ),
        (Nginx::builder("front").upstream_file("/x"), "set pid_file"),
        (ok().upstream_file(""), "upstream_file is empty"),
        (ok().conf(""), "conf is empty"),
        (ok().reload_command("  "), "reload_command is empty"),
        (ok().reload_timeout(Duration::ZERO), "timeout is zero"),
        (
            ok().nginx_bin("/nonexistent/nginx"),
            "cannot run /nonexistent/nginx -V",
        ),
        (
            ok().nginx_bin("/bin/true"),
            "does not report an nginx version",
        ),
        (
            Nginx::builder("front;x").upstream_file("/x").pid_file("/p"),
            "invalid balancer name",
        ),
    ];
    for (b, why) in cases {
        let e = b.build().unwrap_err();
        assert_eq!(e.kind(), "invalid_input", "{e}");
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
}

#[tokio::test]
async fn a_missing_or_unparsable_file_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("up.conf");
    let drv = Nginx::builder("front")
        .upstream_file(&f)
        .pid_file(d.path().join("nginx.pid"))
        .build()
        .unwrap();
    let e = drv.members().await.unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.to_string().contains("up.conf"), "{e}");
    std::fs::write(&f, "upstream app {\n  server 10.0.0.1:80\n").unwrap();
    let e = drv.members().await.unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e}");
    assert!(e.to_string().contains("line 3"), "{e}");
}
