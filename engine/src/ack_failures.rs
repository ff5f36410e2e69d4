//! The throttle on failed acknowledgements in the audit log.
//!
//! A device may report a failed configuration as often as it likes (each acknowledgement with a
//! new reason is a change, and the device's row keeps the latest one), but the audit log gets
//! at most one `configuration.apply_failed` entry per device per [`ACK_FAILURE_LOG_INTERVAL`]
//! of the engine's clock. The failures in between are counted, not logged: the next entry of
//! that device says how many there were (`repeats`). Without this, 4,805 failed
//! acknowledgements with 1 KB reasons in 10 s wrote 4,805 audit rows.
//!
//! The state is per node and in memory, like the failure limiters: a device is connected to one
//! node at a time, and a restart at worst logs one more entry per device. The batch reads it
//! before planning (`plan::Facts::ack_failures`), the plan decides (a pure function, tested with
//! tables), and the batch records the plan's new windows only after its commit, so a batch that
//! rolls back changes nothing here. Housekeeping forgets the windows that are over and have
//! nothing to carry; a window that counted repeats is kept until that device's next failure is
//! logged, so the memory is at most one small entry per device that failed on this node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::ids::{DeviceId, Timestamp};

/// At most one audit entry of a device's failed acknowledgements per this much of the engine's
/// clock.
pub const ACK_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A device's last logged failure and the failures since, not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureWindow {
    pub logged_at: Timestamp,
    pub repeats: u64,
}

impl FailureWindow {
    /// Whether a failure at `now` is logged (the window is over) rather than counted.
    pub fn is_over(&self, now: Timestamp) -> bool {
        let interval = i64::try_from(ACK_FAILURE_LOG_INTERVAL.as_millis()).unwrap_or(i64::MAX);
        now.0.saturating_sub(self.logged_at.0) >= interval
    }
}

/// The windows of this node's devices.
#[derive(Debug, Default)]
pub(crate) struct AckFailureLog {
    windows: Mutex<HashMap<DeviceId, FailureWindow>>,
}

impl AckFailureLog {
    /// The windows of `devices` that exist.
    pub fn windows(
        &self,
        devices: impl IntoIterator<Item = DeviceId>,
    ) -> HashMap<DeviceId, FailureWindow> {
        let Ok(windows) = self.windows.lock() else {
            return HashMap::new();
        };
        devices
            .into_iter()
            .filter_map(|device| windows.get(&device).map(|window| (device, *window)))
            .collect()
    }

    /// Records the windows a committed batch planned.
    pub fn record(&self, updates: &[(DeviceId, FailureWindow)]) {
        if updates.is_empty() {
            return;
        }
        if let Ok(mut windows) = self.windows.lock() {
            windows.extend(updates.iter().copied());
        }
    }

    /// Forgets the windows that are over and counted nothing.
    pub fn prune(&self, now: Timestamp) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.retain(|_, window| window.repeats > 0 || !window.is_over(now));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.windows
            .lock()
            .map(|windows| windows.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_open_windows_and_those_with_repeats() {
        let log = AckFailureLog::default();
        let (open, counted, over) = (
            DeviceId::generate(),
            DeviceId::generate(),
            DeviceId::generate(),
        );
        let now = Timestamp(1_000_000);
        log.record(&[
            (
                open,
                FailureWindow {
                    logged_at: Timestamp(now.0 - 1_000),
                    repeats: 0,
                },
            ),
            (
                counted,
                FailureWindow {
                    logged_at: Timestamp(now.0 - 120_000),
                    repeats: 3,
                },
            ),
            (
                over,
                FailureWindow {
                    logged_at: Timestamp(now.0 - 60_000),
                    repeats: 0,
                },
            ),
        ]);
        log.prune(now);
        assert_eq!(log.len(), 2);
        let kept = log.windows([open, counted, over]);
        assert!(kept.contains_key(&open) && kept.contains_key(&counted));
    }
}
