//! Builds each inventory balancer through its driver's builder.

use std::sync::Arc;

use lb_core::Balancer;

use crate::error::{Error, Result};
use crate::inventory::BalancerConfig;

/// Builds the driver for `[balancers.NAME]`.
///
/// # Errors
///
/// [`Error::Config`] naming the balancer when its settings are incomplete
/// or invalid.
pub fn build(name: &str, cfg: &BalancerConfig) -> Result<Arc<dyn Balancer>> {
    let config = |e: lb_core::Error| Error::Config(format!("[balancers.{name}]: {}", e.message()));
    let _ = config;
    Err(Error::Config(format!(
        "[balancers.{name}]: kind {:?} is not available in this build of lbctl",
        cfg.kind()
    )))
}
