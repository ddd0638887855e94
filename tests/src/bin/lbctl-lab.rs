//! `lbctl-lab`: starts the lab (real haproxy, nginx and apache2 in front of
//! N backends) until it is told to stop, and writes an `lbctl.toml` for it.
//!
//! ```text
//! lbctl-lab --dir DIR [--backends 3]
//! ```
//!
//! Writes `DIR/lbctl.toml` and `DIR/lab.env` (shell variables: the
//! frontend URLs and backend addresses), then `DIR/ready`, and runs until
//! SIGTERM or SIGINT; then stops every daemon.

use std::fmt::Write as _;
use std::path::PathBuf;

use lb_lab::{Apache, Backend, Haproxy, Nginx, Pools};

fn main() {
    let mut dir = None;
    let mut n = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--backends" => n = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            _ => {
                eprintln!("usage: lbctl-lab --dir DIR [--backends N]");
                std::process::exit(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: lbctl-lab --dir DIR [--backends N]");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).expect("create --dir");

    let backends = Backend::start_many(n);
    let pools = Pools::new().pool("app", &backends);
    let haproxy = Haproxy::start(&pools);
    let nginx = Nginx::start(&pools);
    let apache = Apache::start(&pools);

    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Written by lbctl-lab: the lab's balancers and nodes.\n"
    );
    let _ = writeln!(
        toml,
        "[defaults]\nmin_active = 1\ndrain_timeout = \"1m\"\nundrain_timeout = \"30s\"\n"
    );
    let _ = writeln!(
        toml,
        "[balancers.haproxy]\nkind = \"haproxy\"\nsocket = \"{}\"\n",
        haproxy.admin_socket().display()
    );
    let _ = writeln!(
        toml,
        "[balancers.apache]\nkind = \"apache\"\nurl = \"{}\"\n",
        apache.manager_url()
    );
    let _ = writeln!(
        toml,
        "[balancers.nginx]\nkind = \"nginx\"\nupstream_file = \"{}\"\nconf = \"{}\"\npid_file = \"{}\"\nprefix = \"{}\"\n",
        nginx.upstream_file().display(),
        nginx.conf().display(),
        nginx.pid_file().display(),
        nginx.prefix()
    );
    for b in &backends {
        let _ = writeln!(
            toml,
            "[nodes.{}]\naddress = \"{}\"\nhealth = \"{}health\"\n",
            b.id(),
            b.addr(),
            b.url()
        );
    }
    std::fs::write(dir.join("lbctl.toml"), toml).expect("write lbctl.toml");

    let mut env = String::new();
    let _ = writeln!(env, "HAPROXY_URL={}", haproxy.frontend_url("app"));
    let _ = writeln!(env, "NGINX_URL={}", nginx.frontend_url("app"));
    let _ = writeln!(env, "APACHE_URL={}", apache.frontend_url("app"));
    for b in &backends {
        let _ = writeln!(env, "{}_ADDR={}", b.id().to_uppercase(), b.addr());
    }
    std::fs::write(dir.join("lab.env"), env).expect("write lab.env");
    std::fs::write(dir.join("ready"), "").expect("write ready");
    eprintln!("lbctl-lab: ready; lbctl.toml in {}", dir.display());

    // Stop on SIGTERM or SIGINT.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    let _ = std::fs::remove_file(dir.join("ready"));
    drop((apache, nginx, haproxy, backends));
    eprintln!("lbctl-lab: stopped");
}
