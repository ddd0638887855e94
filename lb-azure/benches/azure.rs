//! lb-azure against the lab's fake ARM over HTTPS on loopback: what the
//! driver itself costs (TLS, JSON of a large gateway, the read-modify-write
//! and its checks), without Azure's own latency.
//!
//! `cargo bench -p lb-azure --bench azure`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_azure::{AppGateway, Credential, SecretSource};
use lb_core::{AdminState, Balancer, MemberRef};
use lb_lab::FakeArm;

const SUB: &str = "8f3c2a1e-4b5d-4e6f-9a7b-0c1d2e3f4a5b";
const RG: &str = "rg-web-prod";
const GW: &str = "agw-web-prod";

fn bench(c: &mut Criterion) {
    let arm = FakeArm::start_tls();
    arm.add_client("tenant", "client", "secret");
    let body = serde_json::from_str(include_str!("../tests/fixtures/gateway-large.json")).unwrap();
    arm.insert_gateway(SUB, RG, GW, body);
    arm.set_health_polls(0);
    arm.set_async_polls(0);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "secret").unwrap();
    let lb = AppGateway::builder("agw")
        .subscription(SUB)
        .resource_group(RG)
        .gateway(GW)
        .endpoint(&arm.endpoint())
        .authority_host(&arm.endpoint())
        .ca_file(arm.ca_file())
        .credential(Credential::ClientSecret {
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            secret: SecretSource::File(secret),
        })
        .poll_interval_cap(Duration::ZERO)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Sign in once; the token is cached afterwards, as in real use.
    assert_eq!(rt.block_on(lb.members()).unwrap().len(), 65);

    let mut g = c.benchmark_group("azure");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.bench_function(
        "members (20 pools, 65 addresses, 77 kB gateway + backend health)",
        |b| b.iter(|| rt.block_on(lb.members()).unwrap()),
    );
    let m = MemberRef::new("app", "10.1.0.5");
    g.bench_function(
        "set_state drain + ready (GET, PUT, operation, confirming GET, each)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    lb.set_state(&m, AdminState::Drain).await.unwrap();
                    lb.set_state(&m, AdminState::Ready).await.unwrap();
                })
            })
        },
    );
    g.bench_function("set_state already in state (one GET)", |b| {
        b.iter(|| rt.block_on(lb.set_state(&m, AdminState::Ready)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
