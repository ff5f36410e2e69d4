//! The clock the engine decides with.
//!
//! Every rule that depends on time (code validity, license expiry, rate-limit windows) asks the
//! engine's [`Clock`], never the system directly, so that tests can drive time through the real
//! server with a [`ManualClock`] instead of sleeping. Background tasks that wait for time to pass
//! (the expiry sweep) also wake when a manual clock moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::watch;

use crate::ids::Timestamp;

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Timestamp;

    /// A receiver that changes whenever the clock jumps, for clocks that can jump. The system
    /// clock returns `None`: its time passes on its own.
    fn jumps(&self) -> Option<watch::Receiver<Timestamp>> {
        None
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that starts at the system time and moves only when told to. Used by tests and by
/// `paird serve --test-hooks`.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
    jumped: watch::Sender<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(start.0),
            jumped: watch::channel(start).0,
        })
    }

    pub fn starting_now() -> Arc<Self> {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward and wakes whoever waits for time to pass.
    pub fn advance(&self, by: std::time::Duration) -> Timestamp {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let now = Timestamp(
            self.millis
                .fetch_add(by, Ordering::SeqCst)
                .saturating_add(by),
        );
        self.jumped.send_replace(now);
        now
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }

    fn jumps(&self) -> Option<watch::Receiver<Timestamp>> {
        Some(self.jumped.subscribe())
    }
}
