//! Sliding-window limits on failed attempts.
//!
//! Only failures are recorded (successful pairings never count), so a load test of valid
//! pairings is never throttled, while guessing codes or hammering a revoked one is. The window is
//! exact: a key is blocked while it has `max_failures` failures within the last `window`, and the
//! refusal says when the oldest of them leaves the window. Time comes from the engine's clock.
//!
//! Limits are per node: a cluster of N nodes allows at most N times the limit, which is enough to
//! make guessing a 160-bit code hopeless and keeps the hot path free of database writes.

use std::collections::VecDeque;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::ids::Timestamp;
use crate::session::Refusal;

/// Whether a refused pairing counts as a failed attempt against its address and its code. A
/// refusal caused by the server's own state (no license left, the database down) or by the
/// limit itself is not the device's failure.
pub fn counts_as_failure(refusal: Refusal) -> bool {
    !matches!(
        refusal,
        Refusal::RateLimited | Refusal::Unavailable | Refusal::NoFreeLicense | Refusal::Dismissed
    )
}

/// Whether a refused pairing counts against the connection that asked: a failure, or asking
/// again while rate limited (a connection that keeps asking is closed).
pub fn counts_against_connection(refusal: Refusal) -> bool {
    counts_as_failure(refusal) || refusal == Refusal::RateLimited
}

/// The key an address's failures are kept under: an IPv4 address (an IPv4-mapped IPv6 one as
/// IPv4), or an IPv6 address's /64, which one client commonly holds whole.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// How many keys a limiter keeps at most. Past it, failures of keys it does not hold yet are
/// not kept (after forgetting those out of the window): an attack from more addresses than this
/// is met by the per-connection and per-code limits, and costs the server no more memory
/// (at most ~20 MB per limiter at the default window).
pub const MAX_KEYS: usize = 50_000;

/// `max_failures` within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub max_failures: u32,
    pub window: Duration,
}

#[derive(Debug)]
pub struct FailureLimiter<K: Eq + Hash> {
    limit: FailureLimit,
    failures: DashMap<K, VecDeque<Timestamp>>,
    /// When a full map was last pruned for room (at most once a second: a prune reads every key).
    pruned_for_room_at: AtomicI64,
}

impl<K: Eq + Hash + Clone> FailureLimiter<K> {
    pub fn new(limit: FailureLimit) -> Self {
        FailureLimiter {
            limit,
            failures: DashMap::new(),
            pruned_for_room_at: AtomicI64::new(i64::MIN),
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.limit.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// `Err(retry_after_ms)` while `key` is blocked.
    pub fn check(&self, key: &K, now: Timestamp) -> Result<(), u64> {
        if self.limit.max_failures == 0 {
            return Ok(());
        }
        let Some(entry) = self.failures.get(key) else {
            return Ok(());
        };
        let window_start = Timestamp(now.0.saturating_sub(self.window_ms()));
        let recent: Vec<Timestamp> = entry
            .iter()
            .copied()
            .filter(|at| *at > window_start)
            .collect();
        if recent.len() < self.limit.max_failures as usize {
            return Ok(());
        }
        // Blocked until enough failures leave the window to drop below the limit.
        let oldest_that_must_leave = recent[recent.len() - self.limit.max_failures as usize];
        let free_at = oldest_that_must_leave.plus_millis(self.window_ms());
        Err(now.millis_until(free_at).max(1))
    }

    pub fn record(&self, key: K, now: Timestamp) {
        if self.limit.max_failures == 0 {
            return;
        }
        if self.failures.len() >= MAX_KEYS && !self.failures.contains_key(&key) {
            let last = self.pruned_for_room_at.load(Ordering::Relaxed);
            if now.0.saturating_sub(last) >= 1_000 {
                self.pruned_for_room_at.store(now.0, Ordering::Relaxed);
                self.prune(now);
            }
            if self.failures.len() >= MAX_KEYS {
                return;
            }
        }
        let window_start = Timestamp(now.0.saturating_sub(self.window_ms()));
        let mut entry = self.failures.entry(key).or_default();
        while entry.front().is_some_and(|at| *at <= window_start) {
            entry.pop_front();
        }
        entry.push_back(now);
        // Only the newest `max_failures` matter for the decision.
        while entry.len() > self.limit.max_failures as usize {
            entry.pop_front();
        }
    }

    /// Forgets keys with no failure in the window; called periodically so that the map does
    /// not grow with every address that ever failed once.
    pub fn prune(&self, now: Timestamp) {
        let window_start = Timestamp(now.0.saturating_sub(self.window_ms()));
        self.failures
            .retain(|_, failures| failures.back().is_some_and(|at| *at > window_start));
    }

    pub fn tracked_keys(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_devices_own_failures_count() {
        let not_counted = [
            Refusal::RateLimited,
            Refusal::Unavailable,
            Refusal::NoFreeLicense,
            // An admin's decision, not the device's doing.
            Refusal::Dismissed,
        ];
        for refusal in Refusal::ALL {
            assert_eq!(
                counts_as_failure(refusal),
                !not_counted.contains(&refusal),
                "{refusal:?}"
            );
        }
        assert!(counts_against_connection(Refusal::RateLimited));
        assert!(!counts_against_connection(Refusal::NoFreeLicense));
        assert!(counts_against_connection(Refusal::CodeUsed));
    }

    #[test]
    fn an_address_is_kept_as_ipv4_or_as_its_ipv6_slash_64() {
        let key = |text: &str| address_key(text.parse().expect("an address")).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    /// Failures from more keys than it keeps: the map stays at its bound, keys already kept
    /// are still counted (and blocked), and once the window has passed there is room again.
    #[test]
    fn its_memory_is_bounded_under_failures_from_many_addresses() {
        let limiter = FailureLimiter::new(FailureLimit {
            max_failures: 2,
            window: Duration::from_secs(60),
        });
        let t0 = Timestamp(1_000_000);
        limiter.record(0_u64, t0);
        for key in 1..(MAX_KEYS as u64 + 1_000) {
            limiter.record(key, t0.plus_millis(1));
        }
        assert_eq!(limiter.tracked_keys(), MAX_KEYS);
        limiter.record(0, t0.plus_millis(2));
        assert!(limiter.check(&0, t0.plus_millis(3)).is_err());
        let unkept = MAX_KEYS as u64 + 10;
        limiter.record(unkept, t0.plus_millis(4));
        limiter.record(unkept, t0.plus_millis(5));
        assert!(limiter.check(&unkept, t0.plus_millis(6)).is_ok());
        let later = t0.plus_millis(61_000);
        limiter.record(unkept, later);
        limiter.record(unkept, later.plus_millis(1));
        assert!(limiter.check(&unkept, later.plus_millis(2)).is_err());
        assert!(limiter.tracked_keys() < MAX_KEYS);
    }

    #[test]
    fn blocks_after_the_limit_and_frees_when_the_window_slides() {
        let limiter = FailureLimiter::new(FailureLimit {
            max_failures: 3,
            window: Duration::from_secs(10),
        });
        let t0 = Timestamp(1_000_000);
        for i in 0..3 {
            assert!(limiter.check(&"ip", t0.plus_millis(i)).is_ok());
            limiter.record("ip", t0.plus_millis(i));
        }
        let blocked = limiter.check(&"ip", t0.plus_millis(5));
        assert_eq!(blocked, Err(10_000 - 5));
        assert!(limiter.check(&"other", t0).is_ok());
        // The first failure leaves the window 10 s after it happened.
        assert!(limiter.check(&"ip", t0.plus_millis(10_000)).is_ok());
        limiter.prune(t0.plus_millis(20_003));
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = FailureLimiter::new(FailureLimit {
            max_failures: 0,
            window: Duration::from_secs(1),
        });
        limiter.record(1, Timestamp(0));
        assert!(limiter.check(&1, Timestamp(0)).is_ok());
    }
}
