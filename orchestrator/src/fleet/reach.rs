//! Which balancers answer during a wait: a balancer that stops answering
//! is retried for [`UNREACHABLE_GRACE`], then named, never waited out
//! with the figures it gave before it went away.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use crate::engine::{FleetBalancer, Snapshot};
use crate::error::{Error, Result};

/// How long a balancer may fail to answer during a wait (every read
/// failing with a transient error: refused, reset, timed out) before the
/// wait ends naming it. Long enough for a restart or a graceful reload to
/// take the socket away and give it back.
pub const UNREACHABLE_GRACE: Duration = Duration::from_secs(3);

/// Since when a balancer has not answered, and why.
#[derive(Debug, Clone)]
pub(crate) struct Down {
    /// When its first failing read came back (for the deadline).
    pub(crate) since: Instant,
    /// The same moment on the wall clock (UTC), for the message.
    pub(crate) since_wall: time::OffsetDateTime,
    /// The last failure, without the balancer's name in front.
    pub(crate) why: String,
}

/// Reads the balancers of a wait, one by one, and keeps track of those
/// that do not answer.
pub(crate) struct Reach<'a> {
    balancers: &'a [FleetBalancer],
    /// The balancers the wait is about; the others are not read.
    involved: BTreeSet<usize>,
    down: RefCell<Vec<Option<Down>>>,
}

impl<'a> Reach<'a> {
    pub(crate) fn new(balancers: &'a [FleetBalancer], involved: BTreeSet<usize>) -> Reach<'a> {
        Reach {
            balancers,
            involved,
            down: RefCell::new(vec![None; balancers.len()]),
        }
    }

    /// Reads every involved balancer (the others read as empty).
    ///
    /// # Errors
    ///
    /// A balancer's error that is not transient, as is; the first
    /// transient one otherwise, after noting since when each balancer
    /// fails (the caller asks [`Reach::unreachable`] whether one has
    /// failed for long enough to be named).
    pub(crate) async fn read(&self) -> Result<Snapshot> {
        let reads = join_all(self.balancers.iter().enumerate().map(|(i, b)| async move {
            if self.involved.contains(&i) {
                Some(b.lb.members().await)
            } else {
                None
            }
        }))
        .await;
        let mut snap = Vec::with_capacity(reads.len());
        let mut failed = None;
        let mut down = self.down.borrow_mut();
        for (i, r) in reads.into_iter().enumerate() {
            match r {
                None => snap.push(Vec::new()),
                Some(Ok(ms)) => {
                    down[i] = None;
                    snap.push(ms);
                }
                Some(Err(e)) if e.is_transient() => {
                    let why = without_name(&e.to_string(), &self.balancers[i].name);
                    match &mut down[i] {
                        Some(d) => d.why = why,
                        None => {
                            down[i] = Some(Down {
                                since: Instant::now(),
                                since_wall: time::OffsetDateTime::now_utc(),
                                why,
                            })
                        }
                    }
                    failed.get_or_insert(e);
                    snap.push(Vec::new());
                }
                Some(Err(e)) => return Err(Error::Balancer(e)),
            }
        }
        match failed {
            Some(e) => Err(Error::Balancer(e)),
            None => Ok(snap),
        }
    }

    /// The first balancer that has not answered for [`UNREACHABLE_GRACE`]
    /// (or at all, when `now` is the deadline), with since when and why.
    pub(crate) fn unreachable(&self, at_deadline: bool) -> Option<(&'a FleetBalancer, Down)> {
        let down = self.down.borrow();
        down.iter().enumerate().find_map(|(i, d)| {
            let d = d.as_ref()?;
            (at_deadline || d.since.elapsed() >= UNREACHABLE_GRACE)
                .then(|| (&self.balancers[i], d.clone()))
        })
    }
}

/// `message` without `name: ` in front (lb-core's errors start with the
/// balancer's name; the caller names it its own way).
fn without_name(message: &str, name: &str) -> String {
    message
        .strip_prefix(name)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
        .to_owned()
}

/// `kind `name` unreachable since HH:MM:SS UTC: why`.
pub(crate) fn describe(b: &FleetBalancer, d: &Down) -> String {
    let t = d.since_wall;
    format!(
        "{} `{}` unreachable since {:02}:{:02}:{:02} UTC ({} ago): {}",
        b.kind,
        b.name,
        t.hour(),
        t.minute(),
        t.second(),
        crate::duration::format_duration(Duration::from_secs(d.since.elapsed().as_secs())),
        d.why
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_balancer_s_own_name() {
        assert_eq!(
            without_name("edge: list members: refused", "edge"),
            "list members: refused"
        );
        assert_eq!(without_name("edgy: refused", "edge"), "edgy: refused");
    }
}
