//! A histogram of fixed buckets kept in atomics: recording is a handful of relaxed atomic
//! additions (no lock, no allocation), so it may sit on the pairing path. It is recorded once
//! per batch, never per device request.

use std::sync::atomic::{AtomicU64, Ordering};

/// Most buckets a histogram has (besides the implicit `+Inf`).
const MAX_BUCKETS: usize = 16;

/// Counts of observations by upper bound, their sum and their number.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    /// Upper bounds, ascending; an observation above the last counts in `+Inf` only.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    buckets: [AtomicU64; MAX_BUCKETS + 1],
    /// The sum of observations, in millionths of the unit (a second's microseconds), so that
    /// it adds up in an integer atomic.
    sum_millionths: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram over `bounds` (ascending, at most 16).
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BUCKETS);
        AtomicHistogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS + 1],
            sum_millionths: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(MAX_BUCKETS);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-integer conversion: a negative or NaN value adds nothing.
        let millionths = (value * 1e6).round() as u64;
        self.sum_millionths.fetch_add(millionths, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram now. Read while others record, the figures may differ by the
    /// observations in flight; each is exact once recording pauses.
    pub fn read(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            sum: self.sum_millionths.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// A histogram at one moment, in the form Prometheus exposes.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, ascending; `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_rest_counts_in_inf_only() {
        static BOUNDS: [f64; 3] = [1.0, 10.0, 100.0];
        let histogram = AtomicHistogram::new(&BOUNDS);
        for value in [0.5, 1.0, 7.0, 250.0, 1000.0] {
            histogram.record(value);
        }
        let snapshot = histogram.read();
        assert_eq!(snapshot.buckets, vec![(1.0, 2), (10.0, 3), (100.0, 3)]);
        assert_eq!(snapshot.count, 5);
        assert!((snapshot.sum - 1258.5).abs() < 1e-9);
    }

    #[test]
    fn a_negative_or_nan_observation_adds_nothing_to_the_sum() {
        static BOUNDS: [f64; 1] = [1.0];
        let histogram = AtomicHistogram::new(&BOUNDS);
        histogram.record(-3.0);
        histogram.record(f64::NAN);
        let snapshot = histogram.read();
        assert_eq!(snapshot.count, 2);
        assert_eq!(snapshot.sum, 0.0);
    }
}
