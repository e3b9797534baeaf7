//! How a coordination backend (blackboard, bus) tells the engine it may have lost data.
//!
//! The system of record is the [`StateStore`](crate::StateStore) (SQLite, PostgreSQL, or
//! Redis with persistence in cluster mode); the blackboard and the bus hold only what can be
//! rebuilt from it. A backend that can lose its data while the engine runs (a Redis or
//! DragonflyDB restarted without persistence, restored from an older snapshot, flushed, or a
//! replica promoted after a failover) reports a [`DataGeneration`] from
//! [`Blackboard::generation`](crate::Blackboard::generation) /
//! [`MessageBus::generation`](crate::MessageBus::generation); the engine compares each answer
//! with the previous one and rebuilds every live pipeline's blackboard and bus from the
//! durable store when [`DataGeneration::lost_since`] says so. The in-memory backends never
//! lose data while the process lives and answer `None`.
//!
//! [`CoordinationWatch`] is the engine's view (asked every half second in the background and
//! whenever the supervisor acts on the blackboard); [`Guard`] is what an agent's context
//! checks after each blackboard write, so a write that landed on a blackboard that lost data
//! is never recorded (the rebuild is `crate::engine`'s `rebuild.rs`).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::blackboard::Blackboard;
use crate::error::{Error, Result};
use crate::message_bus::MessageBus;

/// What a coordination backend reports about its data set (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataGeneration {
    /// Names the data set: it changes when the data set may have been replaced (Redis: the
    /// server's `run_id`, which changes at every restart and failover, plus a random marker
    /// stored in the data set, which a flush or an empty restart removes).
    pub id: String,
    /// A counter stored in the data set that every call increments: while nothing is lost,
    /// each answer is higher than the one before; a data set restored from an older snapshot
    /// answers a value not above one already seen.
    pub counter: u64,
}

impl DataGeneration {
    /// Whether data may have been lost between `earlier` and `self` (another data set, or a
    /// counter that did not grow).
    #[must_use]
    pub fn lost_since(&self, earlier: &Self) -> bool {
        self.id != earlier.id || self.counter <= earlier.counter
    }
}

/// How often the engine asks the coordination backends for their generation.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The engine's view of its coordination backends' data (see the module docs).
#[derive(Debug)]
pub(crate) struct CoordinationWatch {
    /// The last generation seen of the blackboard and of the bus.
    last: Mutex<[Option<DataGeneration>; 2]>,
    /// Grows by one at every loss noticed.
    epoch: watch::Sender<u64>,
    /// One check at a time, so two checks never compare out of order.
    checking: tokio::sync::Mutex<()>,
    /// The background check is running.
    started: std::sync::atomic::AtomicBool,
    /// Checks begun so far (a caller that waited for a check begun after its call uses that
    /// check's answer instead of asking again: many callers during an outage cost one probe).
    begun: std::sync::atomic::AtomicU64,
    /// A backend answered a generation: it can lose data.
    may_lose: std::sync::atomic::AtomicBool,
}

impl Default for CoordinationWatch {
    fn default() -> Self {
        Self {
            last: Mutex::new([None, None]),
            epoch: watch::channel(0).0,
            checking: tokio::sync::Mutex::new(()),
            started: std::sync::atomic::AtomicBool::new(false),
            begun: std::sync::atomic::AtomicU64::new(0),
            may_lose: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Both backends answered (or never lose data).
    Answered,
    /// A backend did not answer (it is unreachable); nothing is known yet.
    Unreachable,
    /// Neither backend can lose data: no need to ask again.
    NeverLoses,
}

impl CoordinationWatch {
    /// The current epoch (how many losses were noticed).
    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// Wakes when the epoch grows.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Asks both backends now; the epoch grows when one of them lost data since the last
    /// answer. Returns the epoch after the check.
    pub(crate) async fn check(&self, blackboard: &dyn Blackboard, bus: &dyn MessageBus) -> u64 {
        self.check_detail(blackboard, bus).await.0
    }

    /// [`check`](Self::check), also saying whether the backends answered.
    pub(crate) async fn check_detail(
        &self,
        blackboard: &dyn Blackboard,
        bus: &dyn MessageBus,
    ) -> (u64, Checked) {
        use std::sync::atomic::Ordering;
        let ticket = self.begun.load(Ordering::Acquire);
        let _one = self.checking.lock().await;
        if self.begun.load(Ordering::Acquire) > ticket {
            // a check begun after this call has just ended: its answer holds for this call
            return (self.epoch(), Checked::Answered);
        }
        self.begun.fetch_add(1, Ordering::AcqRel);
        let answers = [blackboard.generation().await, bus.generation().await];
        let mut lost = false;
        let mut checked = Checked::NeverLoses;
        {
            let mut last = self.last.lock();
            for (slot, answer) in last.iter_mut().zip(answers) {
                match answer {
                    Ok(Some(now)) => {
                        if slot.as_ref().is_some_and(|prev| now.lost_since(prev)) {
                            tracing::warn!(
                                before = ?slot,
                                now = ?now,
                                "the coordination backend lost data (restarted empty, from an older snapshot, or flushed); rebuilding the live pipelines from the durable store"
                            );
                            lost = true;
                        }
                        *slot = Some(now);
                        self.may_lose
                            .store(true, std::sync::atomic::Ordering::Release);
                        if checked == Checked::NeverLoses {
                            checked = Checked::Answered;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "coordination generation not available");
                        checked = Checked::Unreachable;
                    }
                }
            }
        }
        if lost {
            self.epoch.send_modify(|e| *e += 1);
        }
        (self.epoch(), checked)
    }

    /// Whether a backend reported a generation (it can lose data; memory backends cannot).
    pub(crate) fn may_lose(&self) -> bool {
        self.may_lose.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `true` once: the caller starts the background check (`crate::engine`'s background check).
    pub(crate) fn claim_start(&self) -> bool {
        !self.started.swap(true, std::sync::atomic::Ordering::AcqRel)
    }
}

/// What an agent's context checks after each blackboard write and before recording it: the
/// coordination backends did not lose data since the agent's blackboard was built. A write
/// that landed on a blackboard that lost data (before the engine noticed) is then never
/// recorded in the ledger; the agent fails with a retryable backend error and the supervisor
/// rebuilds the blackboard and restarts it.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub watch: Arc<CoordinationWatch>,
    /// The epoch the agent's blackboard was built in.
    pub epoch: u64,
}

impl Guard {
    /// `Ok` while no loss was noticed since the guard's epoch.
    ///
    /// # Errors
    /// A retryable backend error naming the loss.
    pub(crate) async fn still_current(
        &self,
        blackboard: &dyn Blackboard,
        bus: &dyn MessageBus,
    ) -> Result<()> {
        if self.watch.check(blackboard, bus).await == self.epoch {
            Ok(())
        } else {
            Err(Error::backend(
                "coordination",
                "the blackboard lost data since this agent started (a restart without \
                 persistence or from an older snapshot); it is rebuilt from the durable store",
                true,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DataGeneration;

    fn g(id: &str, counter: u64) -> DataGeneration {
        DataGeneration {
            id: id.into(),
            counter,
        }
    }

    #[test]
    fn a_growing_counter_on_the_same_data_set_lost_nothing() {
        assert!(!g("a", 8).lost_since(&g("a", 7)));
        assert!(!g("a", 100).lost_since(&g("a", 7)));
    }

    #[test]
    fn another_data_set_or_a_counter_that_went_back_lost_data() {
        assert!(g("b", 8).lost_since(&g("a", 7)));
        assert!(g("a", 7).lost_since(&g("a", 7)));
        assert!(g("a", 3).lost_since(&g("a", 7)));
        assert!(g("a", 1).lost_since(&g("a", 7)));
    }
}
