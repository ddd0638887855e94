use serde::de::DeserializeOwned;

use crate::{Balancer, Result};

/// A kind of balancer as the inventory names it (`kind = "haproxy"`),
/// tied to the settings it reads from its `[balancers.NAME]` table.
///
/// Each driver crate implements it on its balancer type; the
/// orchestrator's registry maps `kind` to it, deserializes the rest of the
/// table into [`Driver::Config`] and calls [`Driver::build`]. The driver's
/// builder stays the one place that checks the settings.
///
/// ```
/// use lb_core::{Balancer, Driver, InMemoryBalancer, MemoryConfig};
///
/// fn build<D: Driver>(name: &str, settings: D::Config) -> lb_core::Result<Box<dyn Balancer>> {
///     Ok(Box::new(D::build(name, settings)?))
/// }
/// let config: MemoryConfig = serde_json::from_str(
///     r#"{"members": [{"pool": "app", "name": "node1", "address": "10.0.0.1:8080"}]}"#,
/// ).unwrap();
/// let lb = build::<InMemoryBalancer>("edge", config).unwrap();
/// assert_eq!((InMemoryBalancer::KIND, lb.name()), ("memory", "edge"));
/// ```
pub trait Driver: Balancer + Sized + 'static {
    /// The inventory's `kind`, e.g. `"haproxy"`.
    const KIND: &'static str;

    /// The keys of a `[balancers.NAME]` table of this kind, besides `kind`
    /// (a serde struct with `deny_unknown_fields`). Secrets appear in it
    /// only as the names of environment variables or files.
    type Config: DeserializeOwned;

    /// Builds the balancer called `name` in the inventory from its
    /// settings. Nothing is sent to the balancer yet.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) naming the
    /// balancer and the key at fault.
    fn build(name: &str, config: Self::Config) -> Result<Self>;
}

/// Calls a builder's setter only for a setting that is given: how a
/// driver's `Config` of `Option`s drives its builder.
///
/// ```
/// use lb_core::SetSome;
///
/// let timeout: Option<u32> = Some(5);
/// let name: Option<&str> = None;
/// let b = String::from("edge")
///     .set_some(timeout, |b, t| format!("{b} timeout={t}"))
///     .set_some(name, |b, n| format!("{b} name={n}"));
/// assert_eq!(b, "edge timeout=5");
/// ```
pub trait SetSome: Sized {
    /// `set(self, value)` when `value` is `Some`, else `self` unchanged.
    fn set_some<T>(self, value: Option<T>, set: impl FnOnce(Self, T) -> Self) -> Self {
        match value {
            Some(v) => set(self, v),
            None => self,
        }
    }
}

impl<B> SetSome for B {}
