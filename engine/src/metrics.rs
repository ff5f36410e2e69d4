//! The engine's counters, for the operator's status page and the load tester.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The counters, updated as things happen.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub pairings: AtomicU64,
    pub repeated_pairings: AtomicU64,
    pub refused_pairings: AtomicU64,
    pub unknown_code_attempts: AtomicU64,
    pub rate_limited: AtomicU64,
    pub resumes: AtomicU64,
    pub failed_resumes: AtomicU64,
    pub acknowledgements: AtomicU64,
    pub batches: AtomicU64,
    pub batched_requests: AtomicU64,
    pub largest_batch: AtomicU64,
    pub actor_restarts: AtomicU64,
    pub expired_by_sweep: AtomicU64,
}

impl Counters {
    /// The counters' values now, with the gauges the caller knows.
    pub fn read(&self, connected_devices: usize, running_orgs: usize) -> Metrics {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Metrics {
            pairings: get(&self.pairings),
            repeated_pairings: get(&self.repeated_pairings),
            refused_pairings: get(&self.refused_pairings),
            unknown_code_attempts: get(&self.unknown_code_attempts),
            rate_limited: get(&self.rate_limited),
            resumes: get(&self.resumes),
            failed_resumes: get(&self.failed_resumes),
            acknowledgements: get(&self.acknowledgements),
            batches: get(&self.batches),
            batched_requests: get(&self.batched_requests),
            largest_batch: get(&self.largest_batch),
            actor_restarts: get(&self.actor_restarts),
            expired_by_sweep: get(&self.expired_by_sweep),
            connected_devices: connected_devices as u64,
            running_organization_actors: running_orgs as u64,
            live_feed_watched_here: 0,
            live_feed_watched_elsewhere: 0,
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The engine's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Metrics {
    pub pairings: u64,
    pub repeated_pairings: u64,
    pub refused_pairings: u64,
    /// Pairing attempts with a code that does not exist (counted, not written to the audit log).
    pub unknown_code_attempts: u64,
    pub rate_limited: u64,
    pub resumes: u64,
    pub failed_resumes: u64,
    pub acknowledgements: u64,
    /// Device-request transactions committed, and the requests they carried.
    pub batches: u64,
    pub batched_requests: u64,
    pub largest_batch: u64,
    pub actor_restarts: u64,
    pub expired_by_sweep: u64,
    pub connected_devices: u64,
    pub running_organization_actors: u64,
    /// Organizations with live-feed watchers on this node, and organizations other nodes
    /// announced watchers of (events of those are sent to the other nodes).
    pub live_feed_watched_here: u64,
    pub live_feed_watched_elsewhere: u64,
}
