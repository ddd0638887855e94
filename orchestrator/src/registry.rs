//! The drivers lbctl knows, by the inventory's `kind`.
//!
//! Each driver crate owns its settings (its [`Driver::Config`]); this
//! table only maps `kind` to the driver. Adding a driver is its crate, one
//! line in [`DRIVERS`] and the workspace manifest.

use std::sync::Arc;

use lb_core::{Balancer, Driver};
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// Every driver, one line each.
pub(crate) const DRIVERS: &[Entry] = &[
    entry::<lb_haproxy::Haproxy>(),
    entry::<lb_apache::Apache>(),
    entry::<lb_nginx::Nginx>(),
    entry::<lb_nginx::NginxPlus>(),
    entry::<lb_azure::AppGateway>(),
    entry::<lb_aws::TargetGroups>(),
    #[cfg(feature = "memory-driver")]
    entry::<lb_core::InMemoryBalancer>(),
];

/// One kind of balancer: its `kind`, and how to read and build its
/// settings (the rest of its `[balancers.NAME]` table).
pub(crate) struct Entry {
    kind: &'static str,
    check: fn(toml::de::ValueDeserializer<'_>) -> Result<(), toml::de::Error>,
    build: fn(&str, toml::Table) -> Result<Arc<dyn Balancer>>,
}

const fn entry<D: Driver>() -> Entry {
    Entry {
        kind: D::KIND,
        check: check::<D>,
        build: build::<D>,
    }
}

fn check<D: Driver>(settings: toml::de::ValueDeserializer<'_>) -> Result<(), toml::de::Error> {
    D::Config::deserialize(settings).map(drop)
}

fn build<D: Driver>(name: &str, settings: toml::Table) -> Result<Arc<dyn Balancer>> {
    let config: D::Config = settings
        .try_into()
        .map_err(|e| balancer_error(name, e.to_string().trim_end()))?;
    let lb = D::build(name, config).map_err(|e| balancer_error(name, e.message()))?;
    Ok(Arc::new(lb))
}

impl Entry {
    /// Deserializes the settings into the driver's `Config`, keeping the
    /// spans of the document they come from, so that an error names the
    /// line of the key at fault. Nothing is built.
    pub(crate) fn check(
        &self,
        settings: toml::de::ValueDeserializer<'_>,
    ) -> Result<(), toml::de::Error> {
        (self.check)(settings)
    }

    /// Deserializes the settings and builds the balancer called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the balancer.
    pub(crate) fn build(&self, name: &str, settings: toml::Table) -> Result<Arc<dyn Balancer>> {
        (self.build)(name, settings)
    }
}

/// The driver of `kind`.
///
/// # Errors
///
/// A message naming `kind` and listing the known kinds.
pub(crate) fn find(kind: &str) -> Result<&'static Entry, String> {
    DRIVERS.iter().find(|e| e.kind == kind).ok_or_else(|| {
        let known: Vec<_> = DRIVERS.iter().map(|e| e.kind).collect();
        format!("unknown kind {kind:?}; known kinds: {}", known.join(", "))
    })
}

/// Reads a `kind` and checks that a driver has it (`deserialize_with`).
pub(crate) fn known_kind<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let kind = String::deserialize(d)?;
    find(&kind).map_err(serde::de::Error::custom)?;
    Ok(kind)
}

/// `[balancers.NAME]: message`.
pub(crate) fn balancer_error(name: &str, message: &str) -> Error {
    Error::Config(format!("[balancers.{name}]: {message}"))
}

/// Builds the balancer called `name` of `kind` from its settings (the keys
/// of a `[balancers.NAME]` table besides `kind`), through the driver that
/// owns them, as the inventory does.
///
/// # Errors
///
/// [`Error::Config`] naming the balancer: an unknown kind, or settings its
/// driver refuses.
pub fn build_balancer(kind: &str, name: &str, settings: toml::Table) -> Result<Arc<dyn Balancer>> {
    lb_core::validate_name("", "balancer", name).map_err(|e| balancer_error(name, e.message()))?;
    find(kind)
        .map_err(|m| balancer_error(name, &m))?
        .build(name, settings)
}
