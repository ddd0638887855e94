//! Benchmarks for lb-haproxy, against a lab HAProxy started here.
//!
//! - `parse/members_10k`: joining `show stat` and `show servers state` of
//!   10,000 servers (20 backends × 500), both captured from a real HAProxy;
//!   each parser alone; and, for scale, the csv crate splitting `show stat`
//!   into fields and nothing else.
//! - `set_state/driver` vs `set_state/bare_unix_stream`: one `set_state`
//!   (read, write and read back in one batch) against one bare `set server` command on a
//!   `std::os::unix::net::UnixStream`, on the same socket, in the same run;
//!   and `set_state/bare_same_exchange`: the commands `set_state` sends,
//!   written and read on a bare `UnixStream` (the protocol's own cost).
//!
//! Run: `cargo bench -p lb-haproxy --bench haproxy`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lb_core::{AdminState, Balancer, Change, MemberRef};
use lb_haproxy::Haproxy;
use lb_lab::{Backend, HaproxyOptions, MemberSpec, PoolSpec, Pools};

const POOLS: usize = 20;
const PER_POOL: usize = 500;

fn parse(c: &mut Criterion) {
    let backend = Backend::start("node1");
    let mut pools = Pools::new();
    for p in 0..POOLS {
        let mut spec = PoolSpec::new(&format!("pool{p:02}"));
        for s in 0..PER_POOL {
            spec.members.push(MemberSpec {
                name: format!("srv{s:04}"),
                addr: backend.addr(),
                weight: Some((s % 256) as u32 + 1),
                extra: String::new(),
            });
        }
        pools = pools.with(spec);
    }
    let opts = HaproxyOptions {
        check: String::new(),
        ..HaproxyOptions::default()
    };
    let lab = lb_lab::Haproxy::start_with(&pools, &opts);
    let stat = strip(lab.command("show stat -1 4 -1"));
    let state = strip(lab.command("show servers state"));
    drop(lab);
    let n = lb_haproxy::parse::members("bench", &stat, &state)
        .expect("the captured answers parse")
        .len();
    assert_eq!(n, POOLS * PER_POOL);
    eprintln!(
        "parse: {n} servers, show stat {} bytes, show servers state {} bytes",
        stat.len(),
        state.len()
    );

    let mut g = c.benchmark_group("parse");
    g.bench_function("members_10k", |b| {
        b.iter(|| lb_haproxy::parse::members("bench", black_box(&stat), black_box(&state)))
    });
    g.bench_function("show_stat_10k", |b| {
        b.iter(|| lb_haproxy::parse::show_stat("bench", black_box(&stat)))
    });
    g.bench_function("show_servers_state_10k", |b| {
        b.iter(|| lb_haproxy::parse::show_servers_state("bench", black_box(&state)))
    });
    // For scale: what the csv crate alone takes to split `show stat` into
    // fields, before any of them is looked at.
    g.bench_function("csv_split_show_stat_10k", |b| {
        b.iter(|| {
            let mut rd = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(black_box(stat.as_bytes()));
            let mut rec = csv::ByteRecord::new();
            let mut fields = 0;
            while rd.read_byte_record(&mut rec).expect("CSV") {
                fields += rec.len();
            }
            fields
        })
    });
    g.finish();
}

/// A non-interactive answer without its terminating empty line.
fn strip(mut s: String) -> String {
    while s.ends_with("\n\n") {
        s.pop();
    }
    s
}

fn set_state(c: &mut Criterion) {
    let backends = Backend::start_many(3);
    let opts = HaproxyOptions {
        check: String::new(),
        ..HaproxyOptions::default()
    };
    let lab = lb_lab::Haproxy::start_with(&Pools::new().pool("app", &backends), &opts);
    let socket = lab.admin_socket();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lb = Haproxy::builder("bench")
        .socket(socket.to_str().expect("UTF-8 path"))
        .build()
        .expect("driver");
    let node2 = MemberRef::new("app", "node2");
    let states = [AdminState::Drain, AdminState::Ready];

    // The ratio, measured interleaved so that both sides see the same
    // load: one driver set_state, one bare command, and so on.
    let bare = |s: AdminState| {
        let mut u = UnixStream::connect(&socket).expect("connect");
        u.write_all(format!("set server app/node2 state {s}\n").as_bytes())
            .expect("write");
        let mut a = Vec::new();
        u.read_to_end(&mut a).expect("read");
        assert_eq!(a, b"\n");
    };
    let (mut d, mut r) = (Vec::new(), Vec::new());
    for n in 0..4000 {
        let s = states[n % 2];
        let t = Instant::now();
        let change = rt.block_on(lb.set_state(&node2, s)).expect("set_state");
        d.push(t.elapsed());
        assert_eq!(change, Change::Applied);
        let t = Instant::now();
        bare(other(s));
        bare(s);
        r.push(t.elapsed() / 2);
    }
    let (dm, rm) = (median(&mut d), median(&mut r));
    eprintln!(
        "set_state interleaved, 4000 rounds: driver median {dm:?}, bare median {rm:?}, ratio {:.2}",
        dm.as_secs_f64() / rm.as_secs_f64()
    );

    let mut g = c.benchmark_group("set_state");
    g.measurement_time(Duration::from_secs(8));
    let mut i = 0usize;
    g.bench_function("driver", |b| {
        b.iter(|| {
            let s = states[i % 2];
            i += 1;
            let change = rt.block_on(lb.set_state(&node2, s)).expect("set_state");
            assert_eq!(change, Change::Applied);
        })
    });
    // Leave node2 ready, then do the same write bare.
    rt.block_on(lb.set_state(&node2, AdminState::Ready))
        .expect("ready");
    let mut j = 0usize;
    let mut answer = Vec::with_capacity(64);
    g.bench_function("bare_unix_stream", |b| {
        b.iter(|| {
            let s = states[j % 2];
            j += 1;
            let mut u = UnixStream::connect(&socket).expect("connect");
            u.write_all(format!("set server app/node2 state {s}\n").as_bytes())
                .expect("write");
            answer.clear();
            u.read_to_end(&mut answer).expect("read");
            assert_eq!(answer, b"\n");
        })
    });
    // The exchange set_state makes, bare: `prompt`, the read, the write
    // and the read-back on one write.
    let mut k = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    g.bench_function("bare_same_exchange", |b| {
        b.iter(|| {
            let s = states[k % 2];
            k += 1;
            let mut u = UnixStream::connect(&socket).expect("connect");
            u.write_all(
                format!(
                    "prompt\nshow servers state app\nset server app/node2 state {s}\nshow servers state app\n"
                )
                .as_bytes(),
            )
            .expect("write");
            let all = answers(&mut u, &mut buf, 4);
            assert!(all.contains("node2"), "{all}");
        })
    });
    g.finish();
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The other one of drain and ready.
fn other(s: AdminState) -> AdminState {
    match s {
        AdminState::Drain => AdminState::Ready,
        _ => AdminState::Drain,
    }
}

/// Reads until `n` answers (each ending in `"\n> "`) have arrived.
fn answers(u: &mut UnixStream, buf: &mut [u8], n: usize) -> String {
    let mut got = Vec::new();
    let mut seen = 0;
    while seen < n {
        let r = u.read(buf).expect("read");
        assert!(r > 0, "closed early");
        let from = got.len().saturating_sub(2);
        got.extend_from_slice(&buf[..r]);
        seen += got[from..].windows(3).filter(|w| *w == b"\n> ").count();
    }
    String::from_utf8(got).expect("UTF-8")
}

criterion_group!(benches, parse, set_state);
criterion_main!(benches);
