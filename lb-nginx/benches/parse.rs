//! Parsing an upstream file with 10,000 servers (goal: at most 10 ms).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_nginx::config::UpstreamFile;

/// 100 upstreams of 100 servers, with parameters and comments.
fn file() -> String {
    let mut t = String::from("# generated for the benchmark\n");
    for u in 0..100 {
        let _ = writeln!(t, "upstream pool{u} {{\n    zone pool{u} 64k;  # shared");
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
        let _ = writeln!(t, "}}\n");
    }
    t
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
