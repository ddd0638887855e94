//! One open-source drain (edit, `nginx -t`, reload, confirmation) against
//! an operator's `nginx -t && nginx -s reload` on the same nginx, in the
//! same run (goal: at most 1.2 times as long).
//!
//! After starting new workers nginx's master sleeps 100 ms before it tells
//! the old ones to stop, and handles no signal meanwhile; so each timed
//! operation starts after an untimed pause that lets the previous reload
//! finish, for both contenders alike.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use lb_core::{AdminState, Balancer, MemberRef};
use lb_lab::{Backend, Nginx as Lab, Pools};
use lb_nginx::Nginx;

const PAUSE: Duration = Duration::from_millis(150);

fn bench(c: &mut Criterion) {
    let backends = Backend::start_many(3);
    let lab = Lab::start(&Pools::new().pool("app", &backends));
    let driver = Nginx::builder("front")
        .upstream_file(lab.upstream_file())
        .conf(lab.conf())
        .pid_file(lab.pid_file())
        .prefix(lab.prefix())
        .nginx_bin(lab.bin())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = MemberRef::new("app", backends[1].addr().to_string());

    let mut g = c.benchmark_group("nginx reload");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut drained = false;
    g.bench_function("lbctl set_state (edit, nginx -t, reload, confirm)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(PAUSE);
                drained = !drained;
                let s = if drained {
                    AdminState::Drain
                } else {
                    AdminState::Ready
                };
                let t = Instant::now();
                rt.block_on(driver.set_state(&m, s)).unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    let run = |args: &[&str]| {
        let st = Command::new(lab.bin())
            .args(args)
            .arg("-c")
            .arg(lab.conf())
            .arg("-p")
            .arg(lab.prefix())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    };
    g.bench_function("nginx -t && nginx -s reload", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(PAUSE);
                let t = Instant::now();
                run(&["-t", "-q", "-e", "stderr"]);
                run(&["-s", "reload", "-e", "stderr"]);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    if drained {
        std::thread::sleep(PAUSE);
        rt.block_on(driver.set_state(&m, AdminState::Ready))
            .unwrap();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
