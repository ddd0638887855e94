//! What the tests share: a fake ARM holding a gateway, and a driver that
//! signs in to it with a client secret over HTTPS, as it would to Azure.

use std::path::PathBuf;
use std::time::Duration;

use lb_azure::{AppGateway, Credential, SecretSource};
use lb_core::{Balancer, Member, MemberRef};
use lb_lab::FakeArm;
use serde_json::Value;

pub const SUB: &str = "8f3c2a1e-4b5d-4e6f-9a7b-0c1d2e3f4a5b";
pub const RG: &str = "rg-web-prod";
pub const GW: &str = "agw-web-prod";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "0d2c5f8e-7b1a-4c3d-9e8f-1a2b3c4d5e6f";
/// The client secret: it must never appear in logs or messages.
pub const SECRET: &str = "Qx8~s3cr3t.Vt4lue_never-logged-9f2ZK";

/// A large production-like gateway (20 pools, 10 HTTP settings, path
/// maps, rewrite sets, layer-4 rules, and properties the driver does not
/// know), written in the shape of Azure's GET example.
pub fn large() -> Value {
    serde_json::from_str(include_str!("../fixtures/gateway-large.json")).expect("fixture")
}

/// A gateway in front of App Service apps: FQDN members only, no tags, a
/// pool filled from a scale set's NICs (no addresses), one setting with
/// draining off.
pub fn app_service() -> Value {
    serde_json::from_str(include_str!("../fixtures/gateway-app-service.json")).expect("fixture")
}

/// The body of Azure's published GET example (bare-string addresses).
pub fn example_get() -> Value {
    let ex: Value = serde_json::from_str(lb_lab::fake_arm::EXAMPLE_GET).expect("example");
    ex["responses"]["200"]["body"].clone()
}

pub struct Lab {
    pub arm: FakeArm,
    pub lb: AppGateway,
    pub sub: String,
    pub rg: String,
    pub gw: String,
    _dir: tempfile::TempDir,
    pub secret_file: PathBuf,
}

impl Lab {
    /// The gateway as the fake stores it now.
    pub fn stored(&self) -> Value {
        self.arm
            .gateway(&self.sub, &self.rg, &self.gw)
            .expect("the gateway exists")
    }

    /// A second driver on the same gateway (another lbctl, elsewhere).
    pub fn another_driver(&self, name: &str) -> AppGateway {
        builder(
            &self.arm,
            name,
            &self.sub,
            &self.rg,
            &self.gw,
            &self.secret_file,
        )
        .build()
        .expect("build")
    }

    /// Changes the stored gateway as another writer would.
    pub fn modify(&self, f: impl FnOnce(&mut Value)) {
        self.arm.modify_gateway(&self.sub, &self.rg, &self.gw, f);
    }
}

/// A driver for gateway `sub/rg/gw` on `arm`, signing in with the client
/// secret in `secret_file`, with waits capped at 5 ms.
pub fn builder(
    arm: &FakeArm,
    name: &str,
    sub: &str,
    rg: &str,
    gw: &str,
    secret_file: &std::path::Path,
) -> lb_azure::AppGatewayBuilder {
    uncapped_builder(arm, name, sub, rg, gw, secret_file)
        .poll_interval_cap(Duration::from_millis(5))
}

/// As [`builder`], honouring `Retry-After` as sent.
pub fn uncapped_builder(
    arm: &FakeArm,
    name: &str,
    sub: &str,
    rg: &str,
    gw: &str,
    secret_file: &std::path::Path,
) -> lb_azure::AppGatewayBuilder {
    AppGateway::builder(name)
        .subscription(sub)
        .resource_group(rg)
        .gateway(gw)
        .endpoint(&arm.endpoint())
        .authority_host(&arm.endpoint())
        .ca_file(arm.ca_file())
        .credential(Credential::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            secret: SecretSource::File(secret_file.to_path_buf()),
        })
        .timeout(Duration::from_secs(20))
}

/// The large gateway on a fresh fake (HTTPS, client secret).
pub fn lab() -> Lab {
    lab_with(large(), SUB, RG, GW)
}

pub fn lab_with(body: Value, sub: &str, rg: &str, gw: &str) -> Lab {
    let arm = FakeArm::start_tls();
    arm.add_client(TENANT, CLIENT, SECRET);
    arm.insert_gateway(sub, rg, gw, body);
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret");
    let lb = builder(&arm, "agw", sub, rg, gw, &secret_file)
        .build()
        .expect("build");
    Lab {
        arm,
        lb,
        sub: sub.into(),
        rg: rg.into(),
        gw: gw.into(),
        _dir: dir,
        secret_file,
    }
}

pub async fn member(lb: &dyn Balancer, pool: &str, name: &str) -> Member {
    let all = lb.members().await.expect("members()");
    let m = MemberRef::new(pool, name);
    all.into_iter()
        .find(|x| x.is(&m))
        .unwrap_or_else(|| panic!("{pool}/{name} is not listed"))
}

/// The addresses of pool `pool` in `body`, as written (strings or objects).
pub fn addresses(body: &Value, pool: &str) -> Vec<Value> {
    body["properties"]["backendAddressPools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap_or_else(|| panic!("no pool {pool}"))["properties"]["backendAddresses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `v` without the fields ARM changes on every write: etags and
/// provisioning states.
pub fn without_volatile(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("etag");
                o.remove("provisioningState");
                o.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Every gateway PUT was preceded by its own fresh GET of the gateway:
/// no PUT is ever sent again without reading first, and each carries
/// `If-Match`.
pub fn assert_each_put_follows_a_read(arm: &FakeArm) {
    let log = arm.requests();
    let mut read = false;
    for l in &log {
        let on_gateway = l
            .path
            .to_ascii_lowercase()
            .contains("/applicationgateways/")
            && !l.path.to_ascii_lowercase().ends_with("/backendhealth");
        if l.method == "GET" && on_gateway {
            read = true;
        }
        if l.is_gateway_put() {
            assert!(read, "a PUT without a fresh read before it: {log:#?}");
            assert!(l.if_match.is_some(), "a PUT without If-Match: {l:?}");
            read = false;
        }
    }
}
