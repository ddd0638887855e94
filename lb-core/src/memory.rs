use std::sync::Mutex;

use async_trait::async_trait;

use serde::Deserialize;

use crate::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Driver, Error, Health, Member,
    MemberRef, Result, validate_name,
};

/// A balancer that lives in memory: the reference implementation of
/// [`Balancer`], and the stand-in for real balancers in orchestrator tests.
///
/// It passes the whole conformance suite (`lb_core::conformance`). Tests steer
/// it with [`set_active`](Self::set_active), [`set_health`](Self::set_health)
/// and [`fail_writes`](Self::fail_writes), and read what was asked of it
/// with [`writes`](Self::writes).
#[derive(Debug)]
pub struct InMemoryBalancer {
    name: String,
    caps: Capabilities,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    members: Vec<Member>,
    fail_writes: Option<Error>,
    fail_reads: Option<Error>,
    writes: u64,
}

impl InMemoryBalancer {
    /// An empty balancer named `name` that reports active counts, health
    /// and weights 0–256, with distinct drain and maint states.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryBalancer {
            name: name.into(),
            caps: Capabilities {
                active_connections: true,
                health: true,
                weight_range: Some((0, 256)),
                distinct_drain: true,
                drain_signal: DrainSignal::ActiveCount,
            },
            state: Mutex::new(State::default()),
        }
    }

    /// Replaces the capabilities it declares (and honours).
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// Adds a ready, healthy member with no connections and weight 1.
    pub fn with_member(self, pool: &str, name: &str, address: &str) -> Self {
        let weight = self.caps.weight_range.map(|_| 1);
        let health = if self.caps.health {
            Health::Up
        } else {
            Health::Unknown
        };
        let active = self.caps.active_connections.then_some(0);
        self.lock().members.push(Member {
            pool: pool.into(),
            name: name.into(),
            address: address.into(),
            admin: AdminState::Ready,
            health,
            active,
            weight,
        });
        self
    }

    /// Sets the in-flight count a member reports.
    ///
    /// # Panics
    ///
    /// If there is no such member (a mistake in the test).
    pub fn set_active(&self, m: &MemberRef, active: u64) {
        self.with(m, |x| x.active = Some(active));
    }

    /// Sets the health a member reports.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    pub fn set_health(&self, m: &MemberRef, health: Health) {
        self.with(m, |x| x.health = health);
    }

    /// Makes every later write fail with `error` (or succeed again: `None`).
    pub fn fail_writes(&self, error: Option<Error>) {
        self.lock().fail_writes = error;
    }

    /// Makes every later read fail with `error` (or succeed again: `None`).
    pub fn fail_reads(&self, error: Option<Error>) {
        self.lock().fail_reads = error;
    }

    /// How many writes changed something.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// The member as it is now, if it exists.
    pub fn member(&self, m: &MemberRef) -> Option<Member> {
        self.lock().members.iter().find(|x| x.is(m)).cloned()
    }

    fn with(&self, m: &MemberRef, f: impl FnOnce(&mut Member)) {
        let mut st = self.lock();
        let x = st
            .members
            .iter_mut()
            .find(|x| x.is(m))
            .unwrap_or_else(|| panic!("{}: no member {m}", self.name));
        f(x);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, m: &MemberRef, f: impl FnOnce(&mut Member) -> bool) -> Result<Change> {
        m.validate(&self.name)?;
        let mut st = self.lock();
        if let Some(e) = st.fail_writes.clone() {
            return Err(e);
        }
        if !st.members.iter().any(|x| x.pool == m.pool) {
            return Err(Error::not_found(
                &self.name,
                format!("pool {} not found (member {m})", m.pool),
            ));
        }
        let Some(x) = st.members.iter_mut().find(|x| x.is(m)) else {
            return Err(Error::not_found(
                &self.name,
                format!("member {m} not found"),
            ));
        };
        if f(x) {
            st.writes += 1;
            Ok(Change::Applied)
        } else {
            Ok(Change::AlreadyInState)
        }
    }
}

/// The settings of an [`InMemoryBalancer`] (inventory `kind = "memory"`,
/// for tests): its members, each ready, healthy and idle.
///
/// ```toml
/// [balancers.edge]
/// kind = "memory"
/// members = [{ pool = "app", name = "node1", address = "10.0.0.1:8080" }]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// The members it starts with (key `members`; default none).
    #[serde(default)]
    pub members: Vec<MemoryMember>,
}

/// One member of a [`MemoryConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryMember {
    /// The pool (key `pool`).
    pub pool: String,
    /// The member's name (key `name`).
    pub name: String,
    /// Its `host:port` (key `address`).
    pub address: String,
}

impl Driver for InMemoryBalancer {
    const KIND: &'static str = "memory";
    type Config = MemoryConfig;

    /// An [`InMemoryBalancer`] called `name` holding the configured
    /// members; the names are checked with [`validate_name`].
    fn build(name: &str, config: MemoryConfig) -> Result<Self> {
        validate_name(name, "balancer", name)?;
        let mut lb = InMemoryBalancer::new(name);
        for m in config.members {
            MemberRef::new(&m.pool, &m.name).validate(name)?;
            lb = lb.with_member(&m.pool, &m.name, &m.address);
        }
        Ok(lb)
    }
}

#[async_trait]
impl Balancer for InMemoryBalancer {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let st = self.lock();
        match &st.fail_reads {
            Some(e) => Err(e.clone()),
            None => Ok(st.members.clone()),
        }
    }

    async fn set_state(&self, m: &MemberRef, state: AdminState) -> Result<Change> {
        let target = self.caps.reads_back_as(state);
        self.write(m, |x| {
            let changed = x.admin != target;
            x.admin = target;
            changed
        })
    }

    async fn set_weight(&self, m: &MemberRef, weight: u32) -> Result<Change> {
        m.validate(&self.name)?;
        let Some((lo, hi)) = self.caps.weight_range else {
            return Err(Error::unsupported(
                &self.name,
                format!("cannot set the weight of {m}: this balancer has no weights"),
            ));
        };
        if !(lo..=hi).contains(&weight) {
            return Err(Error::invalid_input(
                &self.name,
                format!("weight {weight} for {m} is out of range {lo}..={hi}"),
            ));
        }
        self.write(m, |x| {
            let changed = x.weight != Some(weight);
            x.weight = Some(weight);
            changed
        })
    }
}
