//! What a rolling run checks before anything changes: the plan against
//! the inventory (every node in it, names and addresses safe to
//! substitute into shell commands), every balanced node matched by some
//! balancer, no unbalanced node fronted by one.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::plan::{Plan, shell_safe};

/// Checks `plan` against `fleet`.
///
/// Returns each node's members, as `balancer pool/member`.
///
/// # Errors
///
/// [`Error::Config`] naming the file, the line and the node; a
/// balancer's error reading the members.
pub(super) async fn check(plan: &Plan, fleet: &Fleet) -> Result<BTreeMap<String, Vec<String>>> {
    check_nodes(plan, fleet)?;
    let names: Vec<&str> = plan.nodes().map(|(_, n)| n).collect();
    let mut members = BTreeMap::new();
    if fleet.balancers().is_empty() {
        if let Some((gi, g)) = plan.groups.iter().enumerate().find(|(_, g)| g.balanced) {
            return Err(Error::Config(format!(
                "{}: group {} is balanced but the inventory has no balancer; set balanced = false",
                plan.describe_group(gi),
                g.name
            )));
        }
        return Ok(members);
    }
    let status = fleet.status(&names).await?;
    for (gi, g) in plan.groups.iter().enumerate() {
        for (ni, n) in g.nodes.iter().enumerate() {
            let st = status.nodes.iter().find(|s| &s.node == n);
            let m: Vec<String> = st
                .map(|s| {
                    s.members
                        .iter()
                        .map(|m| format!("{} {}/{}", m.balancer, m.pool, m.member))
                        .collect()
                })
                .unwrap_or_default();
            if g.balanced && m.is_empty() {
                return Err(Error::Config(format!(
                    "{}: group {}: node {n} matches no member on any balancer; set `members` for it \
                     in the inventory, or balanced = false for its group if no balancer fronts it",
                    plan.describe_node(gi, ni),
                    g.name
                )));
            }
            if !g.balanced && !m.is_empty() {
                return Err(Error::Config(format!(
                    "{}: group {} has balanced = false, but node {n} is in rotation on {}; \
                     lbctl would stop it while it takes traffic. Set balanced = true",
                    plan.describe_node(gi, ni),
                    g.name,
                    m.join(", ")
                )));
            }
            members.insert(n.clone(), m);
        }
    }
    Ok(members)
}

/// Every node of the plan is in the inventory, with a name and address
/// safe to substitute into a shell command.
fn check_nodes(plan: &Plan, fleet: &Fleet) -> Result<()> {
    for (gi, g) in plan.groups.iter().enumerate() {
        for (ni, n) in g.nodes.iter().enumerate() {
            let Some(node) = fleet.nodes().get(n) else {
                return Err(Error::Config(format!(
                    "{}: group {}: node {:?} is not in the inventory (it has: {})",
                    plan.describe_node(gi, ni),
                    g.name,
                    lb_core::escape_name(n),
                    fleet.nodes().keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            if !shell_safe(&node.name) || !shell_safe(&node.address) {
                return Err(Error::Config(format!(
                    "{}: group {}: node {} ({}) holds characters a shell reads specially; \
                     hooks substitute {{node}} and {{address}} unquoted",
                    plan.describe_node(gi, ni),
                    g.name,
                    lb_core::escape_name(&node.name),
                    lb_core::escape_name(&node.address)
                )));
            }
        }
    }
    Ok(())
}
