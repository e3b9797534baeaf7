//! The one retry policy of a running pipeline's durable writes (its ledger events, checkpoints
//! and registry record, and the blackboard snapshot a checkpoint holds).
//!
//! A write that fails with a retryable backend error — nothing was written: a full disk, a
//! locked database, a store that cannot be reached — is tried again with backoff
//! ([`RetryPolicy::durable_write`]: 100 ms, doubling, at most 5 s apart) for as long as that
//! takes. The pipeline waits for its storage
//! instead of dying, and goes on by itself once a write succeeds again. Only an engine shutdown
//! ends the wait: the write then fails, and the next engine resumes the pipeline from its last
//! durable state. Non-retryable errors (a ledger conflict, a lost lease, a write whose outcome
//! is unknown) are returned at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;

/// A waiting write is logged again every this many attempts.
const LOG_EVERY: u32 = 20;

/// Retries a pipeline's durable writes (see the module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WriteRetry {
    /// Ends the wait (engine shutdown).
    cancel: CancellationToken,
    /// How many writes are waiting right now (one per pipeline at most: a pipeline's writes
    /// are serialized by its emitter).
    waiting: Arc<AtomicUsize>,
}

impl WriteRetry {
    pub(crate) fn new(cancel: CancellationToken, waiting: Arc<AtomicUsize>) -> Self {
        Self { cancel, waiting }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the engine shuts down.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut schedule = RetryPolicy::durable_write().schedule("");
        let mut waiting: Option<Waiting> = None;
        loop {
            let err = match attempt().await {
                Ok(v) => {
                    let failures = schedule.failures();
                    if failures > 0 {
                        tracing::info!(what, failures, "storage is writable again; going on");
                    }
                    return Ok(v);
                }
                Err(e) if retryable(&e) && !self.cancel.is_cancelled() => e,
                Err(e) => return Err(e),
            };
            // the durable-write policy is unbounded: only the shutdown below ends the wait
            let Some(delay) = schedule.next_delay(&err) else {
                return Err(err);
            };
            let failures = schedule.failures();
            if waiting.is_none() {
                waiting = Some(Waiting::new(&self.waiting));
                tracing::warn!(what, error = %err, "durable write failed; the pipeline waits and retries");
            } else if failures.is_multiple_of(LOG_EVERY) {
                tracing::warn!(what, failures, error = %err, "durable write still failing; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return Err(err),
            }
        }
    }
}

/// Runs `attempt` under `policy`, or once when there is none.
pub(crate) async fn write<T, F, Fut>(
    policy: Option<&WriteRetry>,
    what: &str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    match policy {
        Some(p) => p.run(what, attempt).await,
        None => attempt().await,
    }
}

/// Whether a write failed without being applied and may succeed later.
fn retryable(e: &Error) -> bool {
    e.kind() == ErrorKind::Backend && e.is_retryable()
}

/// Counts one waiting write while it lives.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Self(n.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn full() -> Error {
        Error::backend("sqlite", "database or disk is full", true)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_a_retryable_failure_until_it_succeeds_and_counts_the_wait() {
        let waiting = Arc::new(AtomicUsize::new(0));
        let policy = WriteRetry::new(CancellationToken::new(), waiting.clone());
        let calls = AtomicUsize::new(0);
        let seen = parking_lot::Mutex::new(Vec::new());
        let r = policy
            .run("test", || async {
                let n = calls.fetch_add(1, Ordering::AcqRel);
                seen.lock().push(waiting.load(Ordering::Acquire));
                if n < 30 { Err(full()) } else { Ok(n) }
            })
            .await;
        assert_eq!(r.unwrap(), 30);
        // waiting from the second attempt on, and no more once it went through
        assert_eq!(seen.lock()[0], 0);
        assert!(seen.lock()[1..].iter().all(|&w| w == 1));
        assert_eq!(waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_a_permanent_failure_at_once() {
        let policy = WriteRetry::new(CancellationToken::new(), Arc::default());
        let calls = AtomicUsize::new(0);
        let r: Result<()> = policy
            .run("test", || async {
                calls.fetch_add(1, Ordering::AcqRel);
                Err(Error::Conflict("seq taken".into()))
            })
            .await;
        assert!(matches!(r, Err(Error::Conflict(_))));
        assert_eq!(calls.load(Ordering::Acquire), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_the_wait_with_the_last_error() {
        let cancel = CancellationToken::new();
        let waiting = Arc::new(AtomicUsize::new(0));
        let policy = WriteRetry::new(cancel.clone(), waiting.clone());
        let task =
            tokio::spawn(
                async move { policy.run("test", || async { Err::<(), _>(full()) }).await },
            );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(waiting.load(Ordering::Acquire), 1);
        cancel.cancel();
        let r = task.await.unwrap();
        assert!(r.unwrap_err().is_retryable());
        assert_eq!(waiting.load(Ordering::Acquire), 0);
    }
}
