//! The lab itself: each daemon starts, spreads traffic over every backend,
//! and leaves no process and no open port behind when dropped.

use std::collections::BTreeMap;

use lb_lab::{Apache, Backend, Haproxy, Nginx, Pools, http, pids_in_group, port_is_open};

/// Sends `n` requests to `url` and counts the answers per `X-Backend`.
fn spread(url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = http::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status, 200, "GET {url}: {r:?}");
        let id = r.header("x-backend").expect("X-Backend header").to_string();
        assert_eq!(
            r.body.trim(),
            id,
            "the body names the same backend as the header"
        );
        *seen.entry(id).or_default() += 1;
    }
    seen
}

fn assert_round_robin(url: &str, backends: &[Backend]) {
    // Every backend takes a share. (Exact counts are not asserted: under
    // load, Apache's children share the round-robin counter racily.)
    let seen = spread(url, 4 * backends.len());
    for b in backends {
        assert!(
            seen.get(b.id()).copied().unwrap_or(0) >= 1,
            "traffic reaches every backend at {url}: {seen:?}"
        );
    }
}

fn assert_gone(what: &str, pid: u32, ports: &[u16]) {
    for p in ports {
        assert!(!port_is_open(*p), "{what}: port {p} still open after drop");
    }
    assert_eq!(
        pids_in_group(pid),
        Vec::<u32>::new(),
        "{what}: processes left after drop"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/status")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .contains("zombie"),
        "{what}: the main process {pid} still runs"
    );
}

#[test]
fn backend_answers_its_routes_and_restarts_on_the_same_port() {
    let mut b = Backend::start("node7");
    let r = http::get(&b.url()).unwrap();
    assert_eq!(
        (r.status, r.header("x-backend"), r.body.as_str()),
        (200, Some("node7"), "node7\n")
    );
    let r = http::get(&format!("{}health", b.url())).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let t = std::time::Instant::now();
    let r = http::get(&format!("{}slow?ms=300", b.url())).unwrap();
    assert_eq!(r.status, 200);
    assert!(t.elapsed().as_millis() >= 300, "/slow waits");
    assert_eq!(b.hits(), 3);

    let port = b.port();
    b.stop();
    assert!(!port_is_open(port), "stopped means the port is closed");
    assert!(http::get(&b.url()).is_err());
    b.start_again();
    assert_eq!(b.port(), port);
    assert_eq!(
        http::get(&format!("{}health", b.url())).unwrap().status,
        200
    );
}

#[test]
fn backend_stop_lets_requests_in_flight_finish() {
    let mut b = Backend::start("node1");
    let url = format!("{}slow?ms=500", b.url());
    let slow = std::thread::spawn(move || http::get(&url));
    while b.in_flight() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    b.stop();
    let r = slow
        .join()
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(r.status, 200);
    assert!(!port_is_open(b.port()));
}

#[test]
fn haproxy_spreads_traffic_and_cleans_up() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    assert_round_robin(&hap.frontend_url("app"), &backends);
    let stat = hap.command("show servers state app");
    for b in &backends {
        assert!(stat.contains(b.id()), "{stat}");
    }
    assert!(hap.admin_socket().exists());
    let (pid, ports) = (hap.pid(), hap.daemon().ports().to_vec());
    assert!(pids_in_group(pid).len() >= 2, "master and worker run");
    drop(hap);
    assert_gone("haproxy", pid, &ports);
}

#[test]
fn nginx_spreads_traffic_and_cleans_up() {
    let backends = Backend::start_many(3);
    let ngx = Nginx::start(&Pools::new().pool("app", &backends));
    assert_round_robin(&ngx.frontend_url("app"), &backends);
    let up = std::fs::read_to_string(ngx.upstream_file()).unwrap();
    assert!(
        up.contains(&format!("server {};", backends[1].addr())),
        "{up}"
    );
    let before = ngx.workers();
    ngx.reload();
    assert_ne!(ngx.workers(), before, "a reload starts new workers");
    // Right after a reload the old worker may still take a request, with
    // its own round-robin position: every backend is still reached.
    let seen = spread(&ngx.frontend_url("app"), 9);
    assert_eq!(seen.len(), 3, "{seen:?}");
    let (pid, ports) = (ngx.pid(), ngx.daemon().ports().to_vec());
    drop(ngx);
    assert_gone("nginx", pid, &ports);
}

#[test]
fn apache_spreads_traffic_and_cleans_up() {
    let backends = Backend::start_many(3);
    let web = Apache::start(
        &Pools::new()
            .pool("app", &backends)
            .pool("api", &backends[..2]),
    );
    assert_round_robin(&web.frontend_url("app"), &backends);
    assert_round_robin(&web.frontend_url("api"), &backends[..2]);
    let r = http::request(
        "GET",
        &format!("{}?xml=1", web.manager_url()),
        &[("Referer", &web.manager_url())],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("balancer://app") && r.body.contains("balancer://api"),
        "{}",
        r.body
    );
    web.graceful();
    assert_round_robin(&web.frontend_url("app"), &backends);
    let (pid, ports) = (web.pid(), web.daemon().ports().to_vec());
    drop(web);
    assert_gone("apache2", pid, &ports);
}

#[test]
fn daemons_cleanup_even_when_a_test_panics() {
    let backends = Backend::start_many(1);
    let pools = Pools::new().pool("app", &backends);
    let mut seen = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let hap = Haproxy::start(&pools);
        let ngx = Nginx::start(&pools);
        seen.push((hap.pid(), hap.daemon().ports().to_vec()));
        seen.push((ngx.pid(), ngx.daemon().ports().to_vec()));
        panic!("a failing test");
    }));
    assert!(r.is_err());
    for (pid, ports) in seen {
        assert_gone("daemon of a panicking test", pid, &ports);
    }
}

#[test]
#[should_panic(expected = "Install it with `apt-get install no-such-package`")]
fn a_missing_daemon_fails_with_the_install_command() {
    lb_lab::find_binary("no-such-daemon-lbctl", "no-such-package");
}

#[test]
fn moto_keeps_target_groups_and_cleans_up() {
    let moto = lb_lab::Moto::start();
    let (vpc, _) = moto.network();
    let arn = moto.create_target_group("app", &vpc, "ip", 80);
    moto.register(
        &arn,
        &[("10.0.1.11", Some(8080), None), ("10.0.1.12", None, None)],
    );
    let targets: Vec<_> = moto
        .targets(&arn)
        .into_iter()
        .map(|t| (t.id, t.port, t.state))
        .collect();
    assert_eq!(
        targets,
        [
            ("10.0.1.11".into(), Some(8080), "healthy".into()),
            ("10.0.1.12".into(), Some(80), "healthy".into())
        ]
    );
    moto.call(
        "elasticloadbalancing",
        "AddTags",
        &[
            ("ResourceArns.member.1", &arn),
            ("Tags.member.1.Key", "a"),
            ("Tags.member.1.Value", "x y"),
            ("Tags.member.2.Key", "b"),
            ("Tags.member.2.Value", "z"),
        ],
    );
    assert_eq!(
        moto.tags(&arn),
        [("a".into(), "x y".into()), ("b".into(), "z".into())]
    );
    let (pid, ports) = (moto.daemon().pid(), moto.daemon().ports().to_vec());
    drop(moto);
    assert_gone("moto_server", pid, &ports);
}
