//! lb-aws against moto in server mode on loopback: what the driver and the
//! AWS SDK cost (SigV4 signing, XML, the calls each method makes), with
//! moto's own time per call, without AWS's latency.
//!
//! `cargo bench -p lb-aws --bench aws`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_aws::{Credentials, TargetGroups};
use lb_core::{AdminState, Balancer, MemberRef};
use lb_lab::{MOTO_REGION, Moto};

/// Targets in the target group.
const TARGETS: usize = 500;

fn bench(c: &mut Criterion) {
    let moto = Moto::start();
    let (vpc, _) = moto.network();
    let arn = moto.create_target_group("app", &vpc, "ip", 80);
    let ips: Vec<String> = (0..TARGETS)
        .map(|i| format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250))
        .collect();
    for chunk in ips.chunks(100) {
        let targets: Vec<_> = chunk
            .iter()
            .map(|ip| (ip.as_str(), Some(8080), None))
            .collect();
        moto.register(&arn, &targets);
    }
    let lb = TargetGroups::builder("alb")
        .target_group("app")
        .region(MOTO_REGION)
        .endpoint_url(&moto.endpoint())
        .credentials(Credentials::new("testing", "testing", None, None, "bench"))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(lb.members()).unwrap().len(), TARGETS);

    let mut g = c.benchmark_group("aws");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function(
        "members (1 target group, 500 targets: DescribeTargetGroups, DescribeTargetHealth, DescribeTags)",
        |b| b.iter(|| rt.block_on(lb.members()).unwrap()),
    );
    let m = MemberRef::new("app", format!("{}:8080", ips[250]));
    g.bench_function(
        "set_state drain + ready (read, AddTags, DeregisterTargets, read back; read, RegisterTargets, read back, RemoveTags)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    lb.set_state(&m, AdminState::Drain).await.unwrap();
                    lb.set_state(&m, AdminState::Ready).await.unwrap();
                })
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
