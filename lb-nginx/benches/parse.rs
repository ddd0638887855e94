//! Parsing an upstream file with 10,000 servers (goal: at most 10 ms), and
//! the driver's `members()` reading them from one file or from 100 files
//! its upstream blocks include.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_core::Balancer;
use lb_nginx::Nginx;
use lb_nginx::config::UpstreamFile;

/// The 100 server lines of upstream `u`.
fn servers(u: usize) -> String {
    let mut t = String::new();
    for s in 0..100 {
        let _ = writeln!(
            t,
            "    server 10.{}.{}.{}:8080 weight={} max_fails=3 fail_timeout=10s;",
            u / 250,
            u % 250,
            s,
            1 + s % 7
        );
    }
    t
}

/// 100 upstreams of 100 servers, with parameters and comments; with
/// `include`, each upstream's servers are in a file of their own
/// (`poolN.conf`, included by a relative path).
fn file_with(include: bool) -> String {
    let mut t = String::from("# generated for the benchmark\n");
    for u in 0..100 {
        let _ = writeln!(t, "upstream pool{u} {{\n    zone pool{u} 64k;  # shared");
        if include {
            let _ = writeln!(t, "    include pool{u}.conf;");
        } else {
            t.push_str(&servers(u));
        }
        let _ = writeln!(t, "}}\n");
    }
    t
}

fn file() -> String {
    file_with(false)
}

/// A driver reading `upstreams.conf` in `dir` (with `nginx.conf` there, so
/// relative includes are under `dir`). No nginx runs: `members()` only
/// reads the files.
fn offline(dir: &std::path::Path, include: bool) -> Nginx {
    std::fs::write(dir.join("nginx.conf"), "events {}\n").unwrap();
    std::fs::write(dir.join("upstreams.conf"), file_with(include)).unwrap();
    if include {
        for u in 0..100 {
            std::fs::write(dir.join(format!("pool{u}.conf")), servers(u)).unwrap();
        }
    }
    Nginx::builder("bench")
        .upstream_file(dir.join("upstreams.conf"))
        .conf(dir.join("nginx.conf"))
        .pid_file(dir.join("nginx.pid"))
        .build()
        .expect("the driver builds (nginx installed)")
}

fn bench(c: &mut Criterion) {
    let text = file();
    let parsed = UpstreamFile::parse(text.as_bytes()).unwrap();
    let servers: usize = parsed.upstreams().iter().map(|u| u.servers().len()).sum();
    assert_eq!(servers, 10_000);
    c.bench_function("parse 10000 servers", |b| {
        b.iter(|| UpstreamFile::parse(black_box(text.as_bytes())).unwrap())
    });
    c.bench_function("parse 10000 servers + drain one", |b| {
        b.iter(|| {
            let src = black_box(text.as_bytes());
            let f = UpstreamFile::parse(src).unwrap();
            let s = f.find("pool99", "10.0.99.99:8080").unwrap();
            s.set_flag(src, "down", true).apply(src)
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, include) in [
        ("members() of 10000 servers in one file", false),
        ("members() of 10000 servers in 100 included files", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = offline(dir.path(), include);
        assert_eq!(rt.block_on(d.members()).unwrap().len(), 10_000);
        c.bench_function(name, |b| b.iter(|| rt.block_on(d.members()).unwrap()));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
