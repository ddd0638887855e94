//! Servers in files included inside an upstream block, against a real
//! nginx started by the lab: followed as nginx follows them, edited in the
//! file that holds them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lb_core::{AdminState, Balancer, Change, MemberRef};
use lb_lab::{Backend, Nginx as Lab, PoolSpec, Pools, http};
use lb_nginx::Nginx;

fn driver_with(lab: &Lab, bin: &Path) -> Nginx {
    Nginx::builder("front")
        .upstream_file(lab.upstream_file())
        .conf(lab.conf())
        .pid_file(lab.pid_file())
        .prefix(lab.prefix())
        .nginx_bin(bin)
        .build()
        .expect("the driver builds")
}

fn member(b: &Backend, pool: &str) -> MemberRef {
    MemberRef::new(pool, b.addr().to_string())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Each member's pool, name and weight, in the order `members()` lists them.
async fn listed(d: &Nginx) -> Vec<(String, String, Option<u32>)> {
    d.members()
        .await
        .expect("members()")
        .into_iter()
        .map(|m| (m.pool, m.name, m.weight))
        .collect()
}

async fn drained(d: &Nginx, m: &MemberRef) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = d.members().await.unwrap();
        if all.iter().any(|x| x.is(m) && x.active == Some(0)) {
            return;
        }
        assert!(Instant::now() < deadline, "{m} never reported drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lab's nginx with upstream `app` = node1 in the upstream file, then
/// `include app.d/*.conf;` (relative: under the directory of nginx.conf),
/// which holds node2 (`20-web.conf`) and an include of `nested/web-03.conf`
/// holding node3 (`10-more.conf`), and an include matching nothing.
struct Included {
    lab: Lab,
    files: Vec<(PathBuf, String)>,
}

impl Included {
    fn start(b: &[Backend]) -> Included {
        let pool = PoolSpec::new("app")
            .member("node1", b[0].addr())
            .directive("include app.d/*.conf;")
            .directive("include none.d/*.conf;");
        let lab = Lab::start(&Pools::new().with(pool));
        let dir = lab.dir().to_owned();
        let files = vec![
            (
                dir.join("app.d/20-web.conf"),
                format!(
                    "# node2, kept by the app team\n\tserver {}\tmax_fails=2 ; # tabbed\n\n",
                    b[1].addr()
                ),
            ),
            (
                dir.join("app.d/10-more.conf"),
                "include nested/web-03.conf;  # relative to nginx.conf too\n".into(),
            ),
            (
                dir.join("nested/web-03.conf"),
                format!("server \"{}\";\n", b[2].addr()),
            ),
        ];
        for (p, text) in &files {
            write(p, text);
        }
        let before = lab.workers();
        lab.reload();
        // Until the old worker exits it routes by the old configuration.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lab.workers().iter().any(|w| before.contains(w)) {
            assert!(Instant::now() < deadline, "old workers never exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        Included { lab, files }
    }

    fn unchanged_but(&self, changed: Option<&Path>) {
        for (p, text) in &self.files {
            if Some(p.as_path()) != changed {
                assert_eq!(&read(p), text, "{} untouched", p.display());
            }
        }
    }
}

#[tokio::test]
async fn included_servers_are_members_and_are_edited_in_their_own_file() {
    let b = Backend::start_many(3);
    let inc = Included::start(&b);
    let lab = &inc.lab;
    let upstreams = read(&lab.upstream_file());
    let d = driver_with(lab, lab.bin());

    let mut got = listed(&d).await;
    got.sort();
    let mut want: Vec<_> = b
        .iter()
        .map(|x| ("app".to_string(), x.addr().to_string(), Some(1)))
        .collect();
    want.sort();
    assert_eq!(got, want, "every server nginx routes to is a member");
    assert!(d.unattributed().is_empty(), "{:?}", d.unattributed());
    let url = lab.frontend_url("app");
    assert_eq!(
        http::spread(&url, 30).get("node2"),
        Some(&10),
        "round robin"
    );

    let node2 = member(&b[1], "app");
    let (web, web_text) = &inc.files[0];
    assert_eq!(
        d.set_state(&node2, AdminState::Drain).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        read(web),
        web_text.replace("max_fails=2 ;", "max_fails=2 down ;"),
        "one parameter added, every other byte kept"
    );
    inc.unchanged_but(Some(web));
    assert_eq!(read(&lab.upstream_file()), upstreams);
    drained(&d, &node2).await;
    let seen = http::spread(&url, 30);
    assert_eq!(
        seen.get("node2"),
        None,
        "drained node2 got traffic: {seen:?}"
    );

    assert_eq!(
        d.set_state(&node2, AdminState::Ready).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        &read(web),
        web_text,
        "undrain gives back the original bytes"
    );

    let node3 = member(&b[2], "app");
    let (nested, nested_text) = &inc.files[2];
    assert_eq!(d.set_weight(&node3, 7).await.unwrap(), Change::Applied);
    assert_eq!(
        read(nested),
        nested_text.replace("\";", "\" weight=7;"),
        "the weight goes in the nested file"
    );
    inc.unchanged_but(Some(nested));
    assert_eq!(d.set_weight(&node3, 1).await.unwrap(), Change::Applied);
    inc.unchanged_but(None);
    assert_eq!(read(&lab.upstream_file()), upstreams);
    assert_eq!(
        d.set_state(&node3, AdminState::Ready).await.unwrap(),
        Change::AlreadyInState
    );
}

/// An nginx binary that reports itself as 1.29.6 (which has the `drain`
/// server parameter) and runs the real one for everything else: the
/// driver then writes `drain`, which the lab's nginx refuses.
fn claims_1_29_6(dir: &Path, real: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("nginx-1.29.6");
    let real = real.display();
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -V ]; then\n  '{real}' -V 2>&1 | sed 's|nginx/[0-9.]*|nginx/1.29.6|' >&2\n  exit 0\nfi\nexec '{real}' \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn a_change_nginx_t_refuses_puts_every_file_back() {
    let b = Backend::start_many(3);
    let inc = Included::start(&b);
    let lab = &inc.lab;
    let real = driver_with(lab, lab.bin());
    assert!(
        real.version() < (1, 29, 6),
        "this test needs an nginx without the `drain` parameter, found {:?}",
        real.version()
    );
    let scratch = tempfile::tempdir().unwrap();
    let d = driver_with(lab, &claims_1_29_6(scratch.path(), lab.bin()));
    let upstreams = read(&lab.upstream_file());
    let workers = lab.workers();

    let node2 = member(&b[1], "app");
    let e = d.set_state(&node2, AdminState::Drain).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), "unsupported", "{msg}");
    assert!(
        msg.contains("invalid parameter \"drain\"") && msg.contains("20-web.conf"),
        "nginx's own message, naming the file: {msg}"
    );
    assert!(msg.contains(&node2.to_string()), "names the member: {msg}");
    inc.unchanged_but(None);
    assert_eq!(read(&lab.upstream_file()), upstreams);
    assert_eq!(lab.workers(), workers, "no reload happened");
    let leftovers: Vec<_> = std::fs::read_dir(lab.dir().join("app.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lbctl"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    assert_eq!(
        http::spread(&lab.frontend_url("app"), 30).get("node2"),
        Some(&10)
    );
}

/// A driver on a configuration laid out like a distribution's:
/// `etc/nginx.conf`, the upstream file in `etc/conf.d/`. No nginx runs:
/// reading members needs none.
fn offline(d: &Path, upstreams: &str) -> Nginx {
    write(&d.join("etc/nginx.conf"), "events {}\n");
    write(&d.join("etc/conf.d/up.conf"), upstreams);
    Nginx::builder("front")
        .upstream_file(d.join("etc/conf.d/up.conf"))
        .conf(d.join("etc/nginx.conf"))
        .pid_file(d.join("nginx.pid"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn relative_includes_are_under_the_directory_of_nginx_conf() {
    let d = tempfile::tempdir().unwrap();
    let drv = offline(d.path(), "upstream app {\n  include app.d/*.conf;\n}\n");
    // Next to the upstream file: not what nginx reads.
    write(
        &d.path().join("etc/conf.d/app.d/a.conf"),
        "server 10.0.0.9:80;\n",
    );
    write(&d.path().join("etc/app.d/b.conf"), "server 10.0.0.2:80;\n");
    write(&d.path().join("etc/app.d/a.conf"), "server 10.0.0.1:80;\n");
    write(&d.path().join("etc/app.d/.c.conf"), "server 10.0.0.3:80;\n");
    let names: Vec<String> = listed(&drv).await.into_iter().map(|m| m.1).collect();
    assert_eq!(
        names,
        ["10.0.0.1:80", "10.0.0.2:80"],
        "sorted, no dot files"
    );
}

#[tokio::test]
async fn an_include_loop_is_an_error_naming_the_files() {
    let d = tempfile::tempdir().unwrap();
    let up = "upstream app {\n  server 10.0.0.1:80;\n  include a.conf;\n}\n";
    let drv = offline(d.path(), up);
    write(
        &d.path().join("etc/a.conf"),
        "server 10.0.0.2:80;\ninclude b.conf;\n",
    );
    write(&d.path().join("etc/b.conf"), "include a.conf;\n");
    let e = drv.members().await.unwrap_err();
    let msg = e.to_string();
    assert_eq!((e.kind(), e.balancer()), ("protocol", "front"), "{msg}");
    assert!(
        msg.contains("includes itself") && msg.contains("a.conf") && msg.contains("b.conf line 1"),
        "{msg}"
    );
    let e = drv
        .set_state(&MemberRef::new("app", "10.0.0.1:80"), AdminState::Drain)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("includes itself"), "{e}");
    assert_eq!(
        read(&d.path().join("etc/conf.d/up.conf")),
        up,
        "nothing written"
    );
}

#[tokio::test]
async fn an_include_nginx_would_refuse_is_an_error_naming_the_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let drv = offline(
        d.path(),
        "upstream app {\n  server 10.0.0.1:80;\n  include web.conf;\n}\n",
    );
    let e = drv.members().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cannot read")
            && msg.contains("etc/web.conf")
            && msg.contains("up.conf line 3"),
        "names the file and the include: {msg}"
    );
    write(
        &d.path().join("etc/web.conf"),
        "server 10.0.0.2:80;\nserver 10.0.0.3:80\n",
    );
    let e = drv.members().await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), "protocol", "{msg}");
    assert!(
        msg.contains("etc/web.conf") && msg.contains("line 3"),
        "{msg}"
    );
    write(&d.path().join("etc/web.conf"), "server 10.0.0.2:80;\n}\n");
    let msg = drv.members().await.unwrap_err().to_string();
    assert!(
        msg.contains("etc/web.conf") && msg.contains("line 2"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_file_included_in_two_upstreams_is_not_edited_for_one() {
    let d = tempfile::tempdir().unwrap();
    let up =
        "upstream app {\n  include shared.conf;\n}\nupstream api {\n  include shared.conf;\n}\n";
    let drv = offline(d.path(), up);
    write(&d.path().join("etc/shared.conf"), "server 10.0.0.2:80;\n");
    let pools: Vec<String> = listed(&drv).await.into_iter().map(|m| m.0).collect();
    assert_eq!(pools, ["app", "api"]);
    let e = drv
        .set_state(&MemberRef::new("app", "10.0.0.2:80"), AdminState::Drain)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), "unsupported", "{msg}");
    assert!(
        msg.contains("more than one place") && msg.contains("upstream api"),
        "{msg}"
    );
    assert_eq!(
        read(&d.path().join("etc/shared.conf")),
        "server 10.0.0.2:80;\n"
    );
}
