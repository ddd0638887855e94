//! A driver is its crate plus one registry line: the test-only `memory`
//! kind (lb-core's `InMemoryBalancer`, registered with the
//! `memory-driver` feature) goes from an inventory to a drained node like
//! any other kind, and its keys are checked at their lines.
#![cfg(feature = "memory-driver")]

use lb_core::AdminState;
use orchestrator::report::{MemberChange, NodeOutcome};
use orchestrator::{DrainOptions, Fleet, Inventory, UndrainOptions};

const INVENTORY: &str = r#"
[defaults]
poll_interval = "10ms"
drain_timeout = "5s"

[balancers.mem]
kind = "memory"
members = [
    { pool = "app", name = "node1", address = "10.0.0.1:8080" },
    { pool = "app", name = "node2", address = "10.0.0.2:8080" },
]

[nodes.node1]
address = "10.0.0.1:8080"

[nodes.node2]
address = "10.0.0.2:8080"
"#;

#[tokio::test]
async fn an_inventory_of_kind_memory_drains_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::parse(INVENTORY).unwrap();
    assert_eq!(inv.balancers["mem"].kind(), "memory");
    let fleet = Fleet::from_inventory(&inv, Some(dir.path()))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(fleet.balancers()[0].kind, "memory");
    assert_eq!(fleet.balancers()[0].lb.name(), "mem");

    let node2 = vec!["node2".to_string()];
    let r = fleet.drain(&node2, &DrainOptions::default()).await.unwrap();
    assert_eq!(r.nodes[0].result, NodeOutcome::Drained);
    let m = &r.nodes[0].members[0];
    assert_eq!(
        (m.status.kind.as_str(), m.status.balancer.as_str()),
        ("memory", "mem")
    );
    assert_eq!(
        (m.status.member.as_str(), m.status.admin),
        ("node2", AdminState::Maint)
    );
    assert_eq!(m.change, MemberChange::Applied);

    let status = fleet.status(&["node1", "node2"]).await.unwrap();
    let admin: Vec<_> = status.nodes.iter().map(|n| n.members[0].admin).collect();
    assert_eq!(admin, [AdminState::Ready, AdminState::Maint]);

    let r = fleet
        .undrain(&node2, &UndrainOptions::default())
        .await
        .unwrap();
    assert_eq!(r.nodes[0].result, NodeOutcome::Undrained);
}

#[test]
fn an_unknown_key_of_kind_memory_names_the_key_and_its_line() {
    let text = INVENTORY.replace("members = [", "membres = [");
    let e = Inventory::parse(&text).unwrap_err().to_string();
    assert!(e.starts_with("[balancers.mem]: "), "{e}");
    assert!(e.contains("membres") && e.contains("line 8"), "{e}");

    // Inside the list of members too.
    let text = INVENTORY.replace("name = \"node2\"", "nme = \"node2\"");
    let e = Inventory::parse(&text).unwrap_err().to_string();
    assert!(e.contains("nme") && e.contains("line 10"), "{e}");
}

#[test]
fn the_driver_checks_what_serde_cannot() {
    let text = INVENTORY.replace("name = \"node2\"", "name = \"node2;show info\"");
    let inv = Inventory::parse(&text).unwrap();
    let e = Fleet::from_inventory(&inv, None).unwrap_err().to_string();
    assert!(e.starts_with("[balancers.mem]: invalid member name"), "{e}");
}
