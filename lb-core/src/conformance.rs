//! The checks every driver passes against a real balancer.
//!
//! Each function takes a balancer and one known member that is `Ready` when
//! the check starts, and leaves it `Ready` when the check passes. A check
//! returns a [`Failure`] naming what went wrong instead of panicking, so a
//! driver's test can `expect` it and a test of the suite itself can assert
//! that a broken balancer fails.
//!
//! ```
//! use lb_core::{conformance, InMemoryBalancer, MemberRef};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let lb = InMemoryBalancer::new("mem")
//!     .with_member("app", "node1", "127.0.0.1:1")
//!     .with_member("app", "node2", "127.0.0.1:2");
//! let node2 = MemberRef::new("app", "node2");
//! conformance::run_all(&lb, &node2, &[MemberRef::new("app", "node1")])
//!     .await
//!     .expect("the in-memory balancer conforms");
//! # }
//! ```

use std::fmt;

use crate::{AdminState, Balancer, Change, Error, Member, MemberRef};

/// A conformance check that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check that failed, e.g. `"state_roundtrip"`.
    pub check: &'static str,
    /// The balancer it ran against.
    pub balancer: String,
    /// What was expected and what happened.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance check {} failed on {}: {}",
            self.check, self.balancer, self.message
        )
    }
}

impl std::error::Error for Failure {}

/// What a check returns.
pub type Outcome = Result<(), Failure>;

struct Ctx<'a> {
    check: &'static str,
    b: &'a dyn Balancer,
}

impl Ctx<'_> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, Failure> {
        Err(Failure {
            check: self.check,
            balancer: self.b.name().to_owned(),
            message: message.into(),
        })
    }

    async fn members(&self) -> Result<Vec<Member>, Failure> {
        match self.b.members().await {
            Ok(v) => Ok(v),
            Err(e) => self.fail(format!("members() failed: {e}")),
        }
    }

    async fn member(&self, m: &MemberRef) -> Result<Member, Failure> {
        let all = self.members().await?;
        let mut found = all.into_iter().filter(|x| x.is(m));
        match (found.next(), found.next()) {
            (Some(x), None) => Ok(x),
            (None, _) => self.fail(format!("member {m} is missing from members()")),
            (Some(_), Some(_)) => self.fail(format!("member {m} is listed twice")),
        }
    }

    /// The administrative view of the balancer, which no refused write may
    /// change: (pool, name, address, admin, weight) of every member, sorted.
    async fn snapshot(
        &self,
    ) -> Result<Vec<(String, String, String, AdminState, Option<u32>)>, Failure> {
        let mut v: Vec<_> = self
            .members()
            .await?
            .into_iter()
            .map(|m| (m.pool, m.name, m.address, m.admin, m.weight))
            .collect();
        v.sort();
        Ok(v)
    }

    async fn set(&self, m: &MemberRef, s: AdminState) -> Result<Change, Failure> {
        match self.b.set_state(m, s).await {
            Ok(c) => Ok(c),
            Err(e) => self.fail(format!("set_state({m}, {s}) failed: {e}")),
        }
    }

    async fn expect_admin(&self, m: &MemberRef, asked: AdminState) -> Outcome {
        let want = self.b.capabilities().reads_back_as(asked);
        let got = self.member(m).await?.admin;
        if got != want {
            return self.fail(format!(
                "after set_state({m}, {asked}) members() reads {got}, expected {want}"
            ));
        }
        Ok(())
    }

    fn expect_error(
        &self,
        what: &str,
        r: crate::Result<Change>,
        ok: impl Fn(&Error) -> bool,
        expected: &str,
    ) -> Outcome {
        match r {
            Err(e) if ok(&e) => {
                if e.balancer() != self.b.name() {
                    return self.fail(format!("{what}: the error does not name the balancer: {e}"));
                }
                Ok(())
            }
            Err(e) => self.fail(format!(
                "{what}: expected {expected}, got {} ({e})",
                e.kind()
            )),
            Ok(c) => self.fail(format!("{what}: expected {expected}, got Ok({c:?})")),
        }
    }
}

/// Every check below, in order: [`members_listed`], [`state_roundtrip`],
/// [`idempotence`], [`unknown_is_not_found`], [`hostile_names_rejected`],
/// [`weight_roundtrip`]. `others` are further members the balancer is
/// known to hold (they must be listed too, and must not change).
pub async fn run_all(b: &dyn Balancer, m: &MemberRef, others: &[MemberRef]) -> Outcome {
    let mut all = vec![m.clone()];
    all.extend_from_slice(others);
    members_listed(b, &all).await?;
    state_roundtrip(b, m).await?;
    idempotence(b, m).await?;
    unknown_is_not_found(b, m).await?;
    hostile_names_rejected(b, m).await?;
    weight_roundtrip(b, m).await
}

/// `members()` lists each expected member exactly once with its pool, and
/// every member it lists has a pool, a name and an address.
pub async fn members_listed(b: &dyn Balancer, expected: &[MemberRef]) -> Outcome {
    let cx = Ctx {
        check: "members_listed",
        b,
    };
    let all = cx.members().await?;
    for m in expected {
        cx.member(m).await?;
    }
    let mut seen = std::collections::HashSet::new();
    for x in &all {
        if x.pool.is_empty() || x.name.is_empty() || x.address.is_empty() {
            return cx.fail(format!(
                "a member has an empty pool, name or address: {x:?}"
            ));
        }
        if !seen.insert((x.pool.as_str(), x.name.as_str())) {
            return cx.fail(format!("member {}/{} is listed twice", x.pool, x.name));
        }
    }
    Ok(())
}

/// drain → reads back drain; maint → maint; ready → ready, each write
/// `Applied` (or `AlreadyInState` where the balancer cannot tell drain from
/// maint), and no other member changes.
pub async fn state_roundtrip(b: &dyn Balancer, m: &MemberRef) -> Outcome {
    let cx = Ctx {
        check: "state_roundtrip",
        b,
    };
    let caps = b.capabilities();
    let start = cx.member(m).await?;
    if start.admin != AdminState::Ready {
        return cx.fail(format!(
            "member {m} must start ready, it is {}",
            start.admin
        ));
    }
    let others = |v: Vec<(String, String, String, AdminState, Option<u32>)>| {
        v.into_iter()
            .filter(|x| !(x.0 == m.pool && x.1 == m.member))
            .collect::<Vec<_>>()
    };
    let before = others(cx.snapshot().await?);
    let mut current = AdminState::Ready;
    for s in [AdminState::Drain, AdminState::Maint, AdminState::Ready] {
        let change = cx.set(m, s).await?;
        let expected = if caps.reads_back_as(s) == current {
            Change::AlreadyInState
        } else {
            Change::Applied
        };
        if change != expected {
            return cx.fail(format!(
                "set_state({m}, {s}) from {current} returned {change:?}, expected {expected:?}"
            ));
        }
        cx.expect_admin(m, s).await?;
        if others(cx.snapshot().await?) != before {
            return cx.fail(format!("set_state({m}, {s}) changed other members too"));
        }
        current = caps.reads_back_as(s);
    }
    Ok(())
}

/// Every transition made twice is `AlreadyInState` the second time, and
/// the state still reads back as set.
pub async fn idempotence(b: &dyn Balancer, m: &MemberRef) -> Outcome {
    let cx = Ctx {
        check: "idempotence",
        b,
    };
    for s in [AdminState::Drain, AdminState::Maint, AdminState::Ready] {
        cx.set(m, s).await?;
        let again = cx.set(m, s).await?;
        if again != Change::AlreadyInState {
            return cx.fail(format!(
                "set_state({m}, {s}) a second time returned {again:?}, expected AlreadyInState"
            ));
        }
        cx.expect_admin(m, s).await?;
    }
    Ok(())
}

/// An unknown member of a known pool, and a known member name in an
/// unknown pool, give `NotFound` naming the balancer, and change nothing.
pub async fn unknown_is_not_found(b: &dyn Balancer, m: &MemberRef) -> Outcome {
    let cx = Ctx {
        check: "unknown_is_not_found",
        b,
    };
    let before = cx.snapshot().await?;
    let unknown = [
        MemberRef::new(&m.pool, "lbctl-no-such-member"),
        MemberRef::new("lbctl-no-such-pool", &m.member),
    ];
    let not_found = |e: &Error| matches!(e, Error::NotFound { .. });
    for u in &unknown {
        for s in [AdminState::Drain, AdminState::Maint, AdminState::Ready] {
            let r = b.set_state(u, s).await;
            if let Err(e) = &r
                && not_found(e)
                && !e.message().contains(&u.member)
                && !e.message().contains(&u.pool)
            {
                return cx.fail(format!(
                    "the NotFound error for {u} names neither pool nor member: {e}"
                ));
            }
            cx.expect_error(&format!("set_state({u}, {s})"), r, not_found, "NotFound")?;
        }
        if let Some((lo, _)) = b.capabilities().weight_range {
            let r = b.set_weight(u, lo).await;
            cx.expect_error(&format!("set_weight({u})"), r, not_found, "NotFound")?;
        }
    }
    if cx.snapshot().await? != before {
        return cx.fail("a write to an unknown pool or member changed the balancer");
    }
    Ok(())
}

/// Names that could smuggle a second command or break out of a field, as
/// [`hostile_names_rejected`] tries them (built around a real name).
pub fn hostile_names(real: &str) -> Vec<String> {
    vec![
        format!("{real};show info"),
        format!("{real}\nshow info"),
        format!("{real}\r\nset server x state maint"),
        format!("{real} extra"),
        format!("{real}\0"),
        format!("{real}#comment"),
        format!("{real}\"quoted"),
        format!("{real}'quoted"),
        format!("{real}\\x"),
        String::new(),
        "x".repeat(5000),
    ]
}

/// Every name from [`hostile_names`], as member and as pool, gives
/// `InvalidInput` for every write, and changes nothing.
pub async fn hostile_names_rejected(b: &dyn Balancer, m: &MemberRef) -> Outcome {
    let cx = Ctx {
        check: "hostile_names_rejected",
        b,
    };
    let before = cx.snapshot().await?;
    let invalid = |e: &Error| matches!(e, Error::InvalidInput { .. });
    let weights = b.capabilities().weights();
    for (pool, member) in hostile_names(&m.member)
        .into_iter()
        .map(|h| (m.pool.clone(), h))
        .chain(
            hostile_names(&m.pool)
                .into_iter()
                .map(|h| (h, m.member.clone())),
        )
    {
        let r = MemberRef::new(pool, member);
        for s in [AdminState::Drain, AdminState::Maint, AdminState::Ready] {
            let res = b.set_state(&r, s).await;
            cx.expect_error(
                &format!("set_state({r:?}, {s})"),
                res,
                invalid,
                "InvalidInput",
            )?;
        }
        let res = b.set_weight(&r, 1).await;
        if weights {
            cx.expect_error(&format!("set_weight({r:?})"), res, invalid, "InvalidInput")?;
        } else {
            cx.expect_error(
                &format!("set_weight({r:?})"),
                res,
                |e| invalid(e) || matches!(e, Error::Unsupported { .. }),
                "InvalidInput or Unsupported",
            )?;
        }
    }
    if cx.snapshot().await? != before {
        return cx.fail("a write with a hostile name changed the balancer");
    }
    Ok(())
}

/// Where the capabilities declare weights: a new weight reads back, the
/// same weight again is `AlreadyInState`, one past the range is
/// `InvalidInput` and changes nothing, and the original weight is restored.
/// Elsewhere: `set_weight` is `Unsupported` and changes nothing.
pub async fn weight_roundtrip(b: &dyn Balancer, m: &MemberRef) -> Outcome {
    let cx = Ctx {
        check: "weight_roundtrip",
        b,
    };
    let before = cx.snapshot().await?;
    let Some((lo, hi)) = b.capabilities().weight_range else {
        let r = b.set_weight(m, 1).await;
        cx.expect_error(
            &format!("set_weight({m})"),
            r,
            |e| matches!(e, Error::Unsupported { .. }),
            "Unsupported (the capabilities declare no weights)",
        )?;
        if cx.snapshot().await? != before {
            return cx.fail("an unsupported set_weight changed the balancer");
        }
        return Ok(());
    };
    let original = cx.member(m).await?.weight;
    let Some(original) = original else {
        return cx.fail(format!(
            "the capabilities declare weights, but {m} reports none"
        ));
    };
    let target = (lo..=hi)
        .rev()
        .find(|w| *w != original && *w > 0)
        .or_else(|| (lo..=hi).find(|w| *w != original));
    let Some(target) = target else {
        return cx.fail(format!("the weight range {lo}..={hi} has a single value"));
    };
    let cx = &cx;
    let set = |w: u32| async move {
        match b.set_weight(m, w).await {
            Ok(c) => Ok(c),
            Err(e) => cx.fail(format!("set_weight({m}, {w}) failed: {e}")),
        }
    };
    if set(target).await? != Change::Applied {
        return cx.fail(format!(
            "set_weight({m}, {target}) from {original} was not Applied"
        ));
    }
    let got = cx.member(m).await?.weight;
    if got != Some(target) {
        return cx.fail(format!(
            "after set_weight({m}, {target}) the weight reads {got:?}"
        ));
    }
    if set(target).await? != Change::AlreadyInState {
        return cx.fail(format!(
            "set_weight({m}, {target}) twice was not AlreadyInState"
        ));
    }
    if hi < u32::MAX {
        let r = b.set_weight(m, hi + 1).await;
        cx.expect_error(
            &format!("set_weight({m}, {})", hi + 1),
            r,
            |e| matches!(e, Error::InvalidInput { .. }),
            "InvalidInput",
        )?;
        if cx.member(m).await?.weight != Some(target) {
            return cx.fail("an out-of-range weight changed the member");
        }
    }
    set(original).await?;
    if cx.snapshot().await? != before {
        return cx.fail(format!(
            "restoring weight {original} did not restore the balancer"
        ));
    }
    Ok(())
}
