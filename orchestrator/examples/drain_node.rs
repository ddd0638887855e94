//! Drain and undrain a node from Rust code, with the inventory built in
//! code (no lbctl.toml).
//!
//! ```text
//! cargo run -p orchestrator --example drain_node -- /run/haproxy/admin.sock node2 10.0.0.2:8080
//! ```

use std::sync::Arc;

use orchestrator::{DrainOptions, Fleet, Node, UndrainOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(node), Some(address)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: drain_node SOCKET NODE ADDRESS");
        std::process::exit(2);
    };
    let edge = lb_haproxy::Haproxy::builder("edge")
        .socket(&socket)
        .build()?;
    let fleet = Fleet::builder()
        .balancer("haproxy", Arc::new(edge))
        .node(Node::new(&node, &address))
        .build()?;

    let drained = fleet
        .drain(std::slice::from_ref(&node), &DrainOptions::default())
        .await?;
    for m in &drained.nodes[0].members {
        println!(
            "{} {} {}: {}",
            m.status.balancer, m.status.pool, m.status.member, m.status.admin
        );
    }
    println!("drained {node} in {} ms; upgrade it now", drained.waited_ms);

    let back = fleet.undrain(&[&node], &UndrainOptions::default()).await?;
    println!("{node}: {:?}", back.nodes[0].result);
    Ok(())
}
