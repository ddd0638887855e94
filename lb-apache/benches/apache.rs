//! Benchmarks of lb-apache: parsing a balancer-manager answer with 1,000
//! workers, and `set_state` (POST + verifying read-back) against one bare
//! POST with the same client, on a real apache2 started by the lab.
//!
//! `cargo bench -p lb-apache`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_apache::Apache;
use lb_core::{AdminState, Balancer, Change, MemberRef};
use lb_lab::{Backend, Pools};

/// An answer shaped exactly like httpd 2.4's, with `n` workers spread over
/// ten balancers.
fn manager_xml(n: usize) -> String {
    let mut s = String::from(
        "<?xml version='1.0' encoding='UTF-8' ?>\n<httpd:manager xmlns:httpd='http://httpd.apache.org'>\n  <httpd:balancers>\n",
    );
    let per = n.div_ceil(10);
    for b in 0..10 {
        let _ = write!(
            s,
            "    <httpd:balancer>\n      <httpd:name>balancer://pool{b}</httpd:name>\n      \
             <httpd:nonce>977298cb-3e1b-190d-31ab-d838432e56{b:02}</httpd:nonce>\n      \
             <httpd:timeout>0</httpd:timeout>      <httpd:maxattempts>2</httpd:maxattempts>\n      \
             <httpd:lbmethod>byrequests</httpd:lbmethod>\n      <httpd:workers>\n"
        );
        for i in (b * per)..((b + 1) * per).min(n) {
            let port = 20000 + i;
            let status = ["Init Ok ", "Init Drn Ok ", "Init Drn Dis ", "Init Err "][i % 4];
            let _ = write!(
                s,
                "        <httpd:worker>\n          <httpd:name>http://10.0.{h}.{l}:{port}</httpd:name>\n          \
                 <httpd:scheme>http</httpd:scheme>\n          <httpd:hostname>10.0.{h}.{l}</httpd:hostname>\n          \
                 <httpd:loadfactor>1.00</httpd:loadfactor>\n          <httpd:port>{port}</httpd:port>\n          \
                 <httpd:min>0</httpd:min>\n          <httpd:smax>25</httpd:smax>\n          <httpd:max>25</httpd:max>\n          \
                 <httpd:ttl>0</httpd:ttl>\n          <httpd:status>{status}</httpd:status>\n          \
                 <httpd:retries>0</httpd:retries>\n          <httpd:lbstatus>0</httpd:lbstatus>\n          \
                 <httpd:loadfactor>1.00</httpd:loadfactor>\n          <httpd:transferred>1234</httpd:transferred>\n          \
                 <httpd:read>5678</httpd:read>\n          <httpd:elected>42</httpd:elected>\n          \
                 <httpd:route>node{i}</httpd:route>\n          <httpd:redirect></httpd:redirect>\n          \
                 <httpd:busy>{busy}</httpd:busy>\n          <httpd:lbset>0</httpd:lbset>\n        </httpd:worker>\n",
                h = i / 250,
                l = i % 250,
                busy = i % 7,
            );
        }
        s.push_str("      </httpd:workers>\n    </httpd:balancer>\n");
    }
    s.push_str("  </httpd:balancers>\n</httpd:manager>\n");
    s
}

fn parse(c: &mut Criterion) {
    let xml = manager_xml(1000);
    let m = lb_apache::xml::parse(&xml).expect("the generated answer parses");
    assert_eq!(
        m.balancers.iter().map(|b| b.workers.len()).sum::<usize>(),
        1000
    );
    let mut g = c.benchmark_group("parse");
    g.throughput(criterion::Throughput::Bytes(xml.len() as u64));
    g.bench_function("1000 workers", |b| {
        b.iter(|| lb_apache::xml::parse(black_box(&xml)).expect("parses"))
    });
    // The floor: quick-xml reading the same answer, doing nothing with it.
    g.bench_function("quick-xml events only", |b| {
        b.iter(|| {
            let mut r = quick_xml::Reader::from_str(black_box(&xml));
            r.config_mut().trim_text(true);
            let mut n = 0usize;
            loop {
                match r.read_event().unwrap() {
                    quick_xml::events::Event::Eof => break,
                    _ => n += 1,
                }
            }
            n
        })
    });
    g.finish();
}

fn write(c: &mut Criterion) {
    let backends = Backend::start_many(2);
    let web = lb_lab::Apache::start(&Pools::new().pool("app", &backends));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let d = Apache::builder("web")
        .url(&web.manager_url())
        .build()
        .expect("driver");
    let node2 = MemberRef::new("app", "node2");
    let url2 = format!("http://{}", backends[1].addr());
    let nonce = rt
        .block_on(d.read())
        .expect("read")
        .balancer("app")
        .expect("pool app")
        .nonce
        .clone();

    let mut g = c.benchmark_group("write");
    g.measurement_time(Duration::from_secs(5));
    let mut drained = false;
    g.bench_function("set_state (POST + verifying re-read)", |b| {
        b.iter(|| {
            drained = !drained;
            let s = if drained {
                AdminState::Drain
            } else {
                AdminState::Ready
            };
            let change = rt.block_on(d.set_state(&node2, s)).expect("set_state");
            assert_eq!(change, Change::Applied);
        })
    });
    g.bench_function("bare POST (unverified)", |b| {
        b.iter(|| {
            drained = !drained;
            let n = if drained { "1" } else { "0" };
            rt.block_on(d.post_unverified("app", &url2, &nonce, &[("w_status_N", n)]))
                .expect("POST");
        })
    });
    g.finish();
}

criterion_group!(benches, parse, write);
criterion_main!(benches);
