#![doc = include_str!("../README.md")]

mod duration;
pub mod engine;
mod error;
mod fleet;
pub mod inventory;
pub use engine::journal;
pub mod plan;
pub mod rebalance;
mod registry;
pub mod report;
pub mod rolling;
mod wait;

use std::path::Path;
use std::sync::Arc;

pub use duration::{format_duration, parse_duration};
pub use error::{Error, ExitCode, Result};
pub use fleet::{
    DrainOptions, FAST_POLL, Fleet, FleetBalancer, FleetBuilder, HistoryFilter, Node, Progress,
    RecoverOptions, Refusal, Settings, UNREACHABLE_GRACE, UndrainOptions,
};
pub use inventory::Inventory;
pub use plan::Plan;
pub use rebalance::{RebalanceOptions, RebalanceReport, Strategy};
pub use registry::build_balancer;
pub use rolling::{
    GateReport, Rolling, RollingError, RollingOptions, RollingProgress, RollingReport, StopHandle,
};
pub use wait::{WaitError, WaitOptions, await_condition, await_condition_paced};

impl Fleet {
    /// Builds the fleet an inventory describes: every balancer through its
    /// driver, every node, the `[defaults]`, and a journal in `state_dir`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the balancer or node at fault.
    pub fn from_inventory(inv: &Inventory, state_dir: Option<&Path>) -> Result<FleetBuilder> {
        let d = &inv.defaults;
        let base = Settings::default();
        let settings = Settings {
            min_active: d.min_active.unwrap_or(base.min_active),
            drain_timeout: d.drain_timeout.unwrap_or(base.drain_timeout),
            undrain_timeout: d.undrain_timeout.unwrap_or(base.undrain_timeout),
            poll_interval: d.poll_interval.unwrap_or(base.poll_interval),
            lock_timeout: d.lock_timeout.unwrap_or(base.lock_timeout),
        };
        let mut b = Fleet::builder().settings(settings);
        for (name, cfg) in &inv.balancers {
            b = b.balancer(cfg.kind(), cfg.build(name)?);
        }
        for (name, n) in &inv.nodes {
            let mut node = Node::new(name, &n.address);
            node.health = n.health.clone();
            for (bal, members) in &n.members {
                let refs = members
                    .all()
                    .into_iter()
                    .map(|m| inventory::parse_member_ref(m).map_err(Error::Config))
                    .collect::<Result<Vec<_>>>()?;
                node.members.insert(bal.clone(), refs);
            }
            b = b.node(node);
        }
        if let Some(dir) = state_dir {
            b = b.state_dir(dir);
        }
        b = b.retention(inv.coordination.retention());
        if let inventory::CoordinationConfig::Etcd(cfg) = &inv.coordination {
            b = b.coordination(Arc::new(engine::EtcdBackend::new((**cfg).clone())?));
        }
        Ok(b)
    }
}
