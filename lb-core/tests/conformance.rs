//! The conformance suite passes on the reference implementation, and fails,
//! naming the check, on balancers that break the contract.

use async_trait::async_trait;
use lb_core::conformance::{self, Failure};
use lb_core::{
    AdminState, Balancer, Capabilities, Change, DrainSignal, Error, InMemoryBalancer, Member,
    MemberRef, Result,
};

fn pool() -> InMemoryBalancer {
    InMemoryBalancer::new("mem")
        .with_member("app", "node1", "127.0.0.1:8081")
        .with_member("app", "node2", "127.0.0.1:8082")
        .with_member("api", "node2", "127.0.0.1:8082")
}

fn node2() -> MemberRef {
    MemberRef::new("app", "node2")
}

fn others() -> Vec<MemberRef> {
    vec![
        MemberRef::new("app", "node1"),
        MemberRef::new("api", "node2"),
    ]
}

#[tokio::test]
async fn in_memory_balancer_passes_the_whole_suite() {
    let lb = pool();
    conformance::run_all(&lb, &node2(), &others())
        .await
        .expect("InMemoryBalancer conforms");
    // The suite leaves the member as it found it.
    let m = lb.member(&node2()).unwrap();
    assert_eq!((m.admin, m.weight), (AdminState::Ready, Some(1)));
    assert_eq!(
        lb.member(&MemberRef::new("api", "node2")).unwrap().admin,
        AdminState::Ready
    );
}

#[tokio::test]
async fn in_memory_balancer_without_weights_or_distinct_drain_passes() {
    let lb = InMemoryBalancer::new("mem-nginx-like")
        .with_capabilities(Capabilities {
            active_connections: false,
            health: false,
            weight_range: None,
            distinct_drain: false,
            drain_signal: DrainSignal::WorkersExited,
        })
        .with_member("app", "127.0.0.1:8081", "127.0.0.1:8081")
        .with_member("app", "127.0.0.1:8082", "127.0.0.1:8082");
    let m = MemberRef::new("app", "127.0.0.1:8082");
    conformance::run_all(&lb, &m, &[MemberRef::new("app", "127.0.0.1:8081")])
        .await
        .expect("conforms");
    // Drain reads back as maint where the two are one state.
    lb.set_state(&m, AdminState::Drain).await.unwrap();
    assert_eq!(lb.member(&m).unwrap().admin, AdminState::Maint);
}

/// Wraps the reference balancer and breaks one rule of the contract.
#[derive(Debug)]
struct Broken {
    inner: InMemoryBalancer,
    flaw: Flaw,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    /// Says `Applied` but changes nothing.
    IgnoresSetState,
    /// Never reports `AlreadyInState`.
    NotIdempotent,
    /// Treats an unknown member as success.
    UnknownIsOk,
    /// Passes names through unchecked (the balancer then says "not found").
    NoValidation,
    /// Declares weights but ignores them.
    IgnoresWeights,
    /// Lists a member twice.
    DuplicateMembers,
    /// Changes a neighbour too.
    ChangesNeighbour,
}

#[async_trait]
impl Balancer for Broken {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn members(&self) -> Result<Vec<Member>> {
        let mut v = self.inner.members().await?;
        if self.flaw == Flaw::DuplicateMembers {
            v.push(v[0].clone());
        }
        Ok(v)
    }
    async fn set_state(&self, m: &MemberRef, s: AdminState) -> Result<Change> {
        match self.flaw {
            Flaw::IgnoresSetState => Ok(Change::Applied),
            Flaw::NotIdempotent => self.inner.set_state(m, s).await.map(|_| Change::Applied),
            Flaw::UnknownIsOk if self.inner.member(m).is_none() => Ok(Change::Applied),
            Flaw::NoValidation if self.inner.member(m).is_none() => Err(Error::not_found(
                self.name(),
                format!("member {m} not found"),
            )),
            Flaw::ChangesNeighbour => {
                let c = self.inner.set_state(m, s).await?;
                self.inner
                    .set_state(&MemberRef::new("app", "node1"), s)
                    .await?;
                Ok(c)
            }
            _ => self.inner.set_state(m, s).await,
        }
    }
    async fn set_weight(&self, m: &MemberRef, w: u32) -> Result<Change> {
        match self.flaw {
            Flaw::IgnoresWeights if self.inner.member(m).is_some() => Ok(Change::Applied),
            _ => self.inner.set_weight(m, w).await,
        }
    }
}

async fn failure_of(flaw: Flaw) -> Failure {
    let lb = Broken {
        inner: pool(),
        flaw,
    };
    conformance::run_all(&lb, &node2(), &others())
        .await
        .expect_err("a broken balancer must fail the suite")
}

#[tokio::test]
async fn the_suite_fails_a_balancer_that_ignores_set_state() {
    let f = failure_of(Flaw::IgnoresSetState).await;
    assert_eq!(f.check, "state_roundtrip");
    assert_eq!(f.balancer, "mem");
    assert!(f.message.contains("reads ready, expected drain"), "{f}");
}

#[tokio::test]
async fn the_suite_fails_each_kind_of_broken_balancer_at_the_right_check() {
    let cases = [
        (Flaw::NotIdempotent, "idempotence"),
        (Flaw::UnknownIsOk, "unknown_is_not_found"),
        (Flaw::NoValidation, "hostile_names_rejected"),
        (Flaw::IgnoresWeights, "weight_roundtrip"),
        (Flaw::DuplicateMembers, "members_listed"),
        (Flaw::ChangesNeighbour, "state_roundtrip"),
    ];
    for (flaw, check) in cases {
        let f = failure_of(flaw).await;
        assert_eq!(f.check, check, "{flaw:?}: {f}");
    }
    let f = failure_of(Flaw::NoValidation).await;
    assert!(
        f.message.contains("expected InvalidInput, got not_found"),
        "{f}"
    );
}

#[tokio::test]
async fn idempotence_check_catches_a_balancer_that_always_applies() {
    let lb = Broken {
        inner: pool(),
        flaw: Flaw::NotIdempotent,
    };
    let f = conformance::idempotence(&lb, &node2()).await.unwrap_err();
    assert!(f.message.contains("expected AlreadyInState"), "{f}");
}

#[tokio::test]
async fn in_memory_errors_name_balancer_pool_and_member() {
    let lb = pool();
    let e = lb
        .set_state(&MemberRef::new("app", "node9"), AdminState::Drain)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "mem: member app/node9 not found");
    let e = lb.set_weight(&node2(), 300).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "mem: weight 300 for app/node2 is out of range 0..=256"
    );
    lb.fail_writes(Some(Error::unauthorized("mem", "denied")));
    assert!(matches!(
        lb.set_state(&node2(), AdminState::Drain).await,
        Err(Error::Unauthorized { .. })
    ));
    assert_eq!(lb.writes(), 0);
}
