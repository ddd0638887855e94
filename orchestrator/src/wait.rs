//! One wait helper for every wait: a condition over fresh reads, polled at
//! a fixed interval until it holds or the deadline passes.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long to wait and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Look again after this long.
    pub poll: Duration,
}

/// How a wait ended without its condition holding.
#[derive(Debug)]
pub enum WaitError<T, E> {
    /// The deadline passed; the last state read, if any.
    TimedOut(Option<T>),
    /// A read failed with an error that is not worth retrying.
    Failed(E),
}

/// Reads with `fetch` until `done` holds for what it read, every
/// `opts.poll`, for at most `opts.timeout`. Reads that fail with a
/// transient error (`is_transient`) are retried until the deadline; any
/// other failure ends the wait. `observe` sees every successful read (for
/// progress displays).
///
/// Returns the read that satisfied `done`.
///
/// # Errors
///
/// [`WaitError::TimedOut`] with the last read, or [`WaitError::Failed`].
pub async fn await_condition<T, E, F, Fut>(
    opts: WaitOptions,
    fetch: F,
    done: impl Fn(&T) -> bool,
    is_transient: impl Fn(&E) -> bool,
    observe: impl FnMut(&T),
) -> Result<T, WaitError<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    await_condition_paced(opts, fetch, done, is_transient, observe, |_| opts.poll).await
}

/// [`await_condition`], looking again after `pace(last read)` instead of
/// `opts.poll` (after a failed read: `opts.poll`), so that a wait can look
/// more often when the end is near.
///
/// # Errors
///
/// As for [`await_condition`].
pub async fn await_condition_paced<T, E, F, Fut>(
    opts: WaitOptions,
    mut fetch: F,
    done: impl Fn(&T) -> bool,
    is_transient: impl Fn(&E) -> bool,
    mut observe: impl FnMut(&T),
    pace: impl Fn(&T) -> Duration,
) -> Result<T, WaitError<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + opts.timeout;
    let mut last = None;
    loop {
        let mut poll = opts.poll;
        match fetch().await {
            Ok(v) => {
                observe(&v);
                if done(&v) {
                    return Ok(v);
                }
                poll = pace(&v);
                last = Some(v);
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(WaitError::Failed(e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::TimedOut(last));
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

/// Runs `fut` unless `stop` turns true first (SIGINT or SIGTERM in lbctl):
/// `None` when it did, and `fut` is dropped where it was (a wait
/// abandoned). A `stop` whose sender is gone never stops anything.
pub async fn unless_stopped<T>(
    stop: &mut tokio::sync::watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    if *stop.borrow() {
        return None;
    }
    tokio::pin!(fut);
    tokio::select! {
        biased;
        r = stop.wait_for(|s| *s) => match r {
            Ok(_) => None,
            Err(_) => Some(fut.await),
        },
        v = &mut fut => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn opts(ms: u64) -> WaitOptions {
        WaitOptions {
            timeout: Duration::from_millis(ms),
            poll: Duration::from_millis(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn returns_the_read_that_satisfied_the_condition() {
        let n = AtomicU32::new(0);
        let r = await_condition(
            opts(1000),
            || async { Ok::<_, String>(n.fetch_add(1, Ordering::SeqCst)) },
            |v| *v == 3,
            |_| false,
            |_| {},
        )
        .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_last_read_and_retries_transient_errors() {
        let n = AtomicU32::new(0);
        let r = await_condition(
            opts(100),
            || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i.is_multiple_of(2) {
                    Err("busy".to_string())
                } else {
                    Ok(i)
                }
            },
            |_| false,
            |e: &String| e == "busy",
            |_| {},
        )
        .await;
        match r {
            Err(WaitError::TimedOut(Some(v))) => assert!(v >= 1),
            other => panic!("{other:?}"),
        }
        let r = await_condition(
            opts(100),
            || async { Err::<u32, _>("down") },
            |_| true,
            |_| false,
            |_| {},
        )
        .await;
        assert!(matches!(r, Err(WaitError::Failed("down"))));
    }
}
