//! httpd's `busy` count drifts (see `docs/apache-busy.md`): a count that
//! no request explains any more is recognised by the worker's other
//! counters standing still, and judged stuck after a settle time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lb_core::AdminState;

use crate::xml::WorkerInfo;

/// The default settle time: how long a worker out of rotation must show
/// the same `busy`, `elected`, `transferred` and `read` before its count
/// is judged stuck.
pub const DEFAULT_BUSY_SETTLE: Duration = Duration::from_secs(30);

/// What a worker's counters were, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    counters: [u64; 4],
    since: Instant,
}

/// Keeps the counters of workers out of rotation between reads.
#[derive(Debug)]
pub(crate) struct Stuck {
    settle: Duration,
    seen: Mutex<HashMap<String, Seen>>,
    /// A warning per worker judged stuck.
    notes: Mutex<BTreeSet<String>>,
}

impl Stuck {
    pub(crate) fn new(settle: Duration) -> Stuck {
        Stuck {
            settle,
            seen: Mutex::new(HashMap::new()),
            notes: Mutex::new(BTreeSet::new()),
        }
    }

    /// The in-flight count to report for worker `w` of `pool` in state
    /// `admin`: its `busy`, or 0 once that count is judged stuck.
    pub(crate) fn active(&self, pool: &str, w: &WorkerInfo, admin: AdminState) -> Option<u64> {
        self.active_at(pool, w, admin, Instant::now())
    }

    fn active_at(
        &self,
        pool: &str,
        w: &WorkerInfo,
        admin: AdminState,
        now: Instant,
    ) -> Option<u64> {
        let key = format!("{pool}/{}", w.member_name());
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(busy), Some(e), Some(t), Some(r)) = (w.busy, w.elected, w.transferred, w.read)
        else {
            return w.busy;
        };
        if admin == AdminState::Ready || busy == 0 {
            seen.remove(&key);
            return w.busy;
        }
        let counters = [busy, e, t, r];
        let entry = seen.entry(key.clone()).or_insert(Seen {
            counters,
            since: now,
        });
        if entry.counters != counters {
            *entry = Seen {
                counters,
                since: now,
            };
            return w.busy;
        }
        let still = now.duration_since(entry.since);
        if still < self.settle {
            return w.busy;
        }
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!(
                "{key}: busy {busy} judged stuck (elected, bytes sent and read unchanged for \
                 {}s with the worker out of rotation: httpd's count drifted) and read as 0",
                still.as_secs()
            ));
        Some(0)
    }

    /// A warning for each worker judged stuck so far.
    pub(crate) fn notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(busy: u64, elected: u64, bytes: u64) -> WorkerInfo {
        WorkerInfo {
            route: Some("node2".into()),
            busy: Some(busy),
            elected: Some(elected),
            transferred: Some(bytes),
            read: Some(bytes),
            ..WorkerInfo::default()
        }
    }

    #[test]
    fn a_count_is_stuck_only_when_nothing_moved_for_the_settle_time() {
        let s = Stuck::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let drn = AdminState::Drain;
        assert_eq!(s.active_at("app", &worker(2, 5, 100), drn, at(0)), Some(2));
        assert_eq!(s.active_at("app", &worker(2, 5, 100), drn, at(9)), Some(2));
        // Bytes moved: a request is alive; the settle time starts again.
        assert_eq!(s.active_at("app", &worker(2, 5, 200), drn, at(9)), Some(2));
        assert_eq!(s.active_at("app", &worker(2, 5, 200), drn, at(18)), Some(2));
        assert!(s.notes().is_empty());
        assert_eq!(s.active_at("app", &worker(2, 5, 200), drn, at(19)), Some(0));
        assert!(
            s.notes()[0].contains("app/node2: busy 2 judged stuck"),
            "{:?}",
            s.notes()
        );
        // In rotation: never judged.
        let r = Stuck::new(Duration::ZERO);
        let ready = AdminState::Ready;
        assert_eq!(r.active_at("app", &worker(1, 5, 1), ready, at(0)), Some(1));
        assert_eq!(r.active_at("app", &worker(1, 5, 1), ready, at(99)), Some(1));
        // Without the other counters (an httpd that does not print them):
        // never judged either.
        let mut bare = worker(1, 0, 0);
        bare.elected = None;
        assert_eq!(r.active_at("app", &bare, drn, at(0)), Some(1));
        assert_eq!(r.active_at("app", &bare, drn, at(99)), Some(1));
    }
}
