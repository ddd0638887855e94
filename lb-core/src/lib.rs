#![doc = include_str!("../README.md")]

mod driver;
pub mod duration;
mod error;
mod memory;
mod name;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use driver::{Driver, SetSome};
pub use error::{Error, Result};
pub use memory::{InMemoryBalancer, MemoryConfig, MemoryMember};
pub use name::{MAX_NAME_LEN, escape_name, validate_name};
pub use types::{
    AdminState, Capabilities, Change, DrainSignal, Health, Member, MemberRef, Unattributed,
};

use async_trait::async_trait;

/// One load balancer: the pools it holds and the members in them.
///
/// Drivers implement it for one kind of balancer each (HAProxy, Apache
/// httpd, nginx, NGINX Plus, Azure Application Gateway); the orchestrator
/// holds them as `Arc<dyn Balancer>` and never knows which is which.
///
/// The trait is deliberately small. Conveniences such as "drain and wait"
/// live in the orchestrator, built on these methods, so no driver can
/// inherit a wrong default.
///
/// ```
/// use std::sync::Arc;
/// use lb_core::{AdminState, Balancer, InMemoryBalancer, MemberRef};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> lb_core::Result<()> {
/// let fleet: Vec<Arc<dyn Balancer>> = vec![
///     Arc::new(InMemoryBalancer::new("edge").with_member("app", "node1", "10.0.0.1:80")),
///     Arc::new(InMemoryBalancer::new("web").with_member("app", "node1", "10.0.0.1:80")),
/// ];
/// for lb in &fleet {
///     lb.set_state(&MemberRef::new("app", "node1"), AdminState::Drain).await?;
///     let caps = lb.capabilities();
///     println!("{}: drained when {}", lb.name(), caps.drain_signal);
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Every method returns [`Error`]; its messages name the balancer, and
/// where one is involved the pool and the member. Names are checked with
/// [`validate_name`] before anything reaches the balancer's protocol.
///
/// # Caveats
///
/// - `members()` is a fresh read each time: callers that wait poll it.
/// - `active` is `None` where the balancer cannot (yet) tell how many
///   requests are in flight; never read that as zero.
#[async_trait]
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// The balancer's inventory name, e.g. `"haproxy-a"`.
    fn name(&self) -> &str;

    /// What this kind of balancer can report and do.
    fn capabilities(&self) -> Capabilities;

    /// Every member of every pool, with live figures.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the balancer cannot be reached,
    /// [`Error::Protocol`] when its answer cannot be understood,
    /// [`Error::Unauthorized`] when it refuses us.
    async fn members(&self) -> Result<Vec<Member>>;

    /// Puts one member into `state`, then reads it back.
    ///
    /// Returns [`Change::AlreadyInState`] when nothing had to change,
    /// decided from a read of the balancer, not from its reply.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a name that fails [`validate_name`]
    /// (nothing is sent), [`Error::NotFound`] for an unknown pool or member
    /// (nothing changes), [`Error::Protocol`] when the balancer accepted
    /// the write but the read-back disagrees.
    async fn set_state(&self, member: &MemberRef, state: AdminState) -> Result<Change>;

    /// Sets one member's weight, then reads it back.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] where the balancer has no weights (see
    /// [`Capabilities::weight_range`]), [`Error::InvalidInput`] for a
    /// weight outside that range, and as for [`Balancer::set_state`].
    async fn set_weight(&self, member: &MemberRef, weight: u32) -> Result<Change>;

    /// Warnings an operator should see about this balancer as it was last
    /// read (for example "changes are lost on the next restart").
    ///
    /// Informational only; the default is none.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// What this balancer routes to but cannot present as a member (say,
    /// servers in a file the driver does not read), as of its last read of
    /// the members. Any node may be behind one, so the orchestrator never
    /// calls a node drained while one exists.
    ///
    /// The default is none: a driver that reads every server it routes to
    /// has nothing to add.
    fn unattributed(&self) -> Vec<Unattributed> {
        Vec::new()
    }
}
