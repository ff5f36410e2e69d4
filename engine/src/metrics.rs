//! The engine's counters, for the operator's status page and the load tester.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::histogram::{AtomicHistogram, HistogramSnapshot};
use crate::ids::OrgId;
use crate::session::Refusal;
use crate::store::PoolUsage;

/// Upper bounds of the batch-size histogram (requests per committed batch).
static BATCH_SIZE_BOUNDS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// Upper bounds of the batch-transaction histogram, in seconds: an fsync here takes 0.25 ms
/// to 2 ms, a large batch tens of milliseconds.
static BATCH_SECONDS_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
    4.096,
];

/// The counters, updated as things happen.
#[derive(Debug)]
pub(crate) struct Counters {
    pub pairings: AtomicU64,
    pub repeated_pairings: AtomicU64,
    pub refused_pairings: AtomicU64,
    pub unknown_code_attempts: AtomicU64,
    pub code_lookups: AtomicU64,
    pub rate_limited: AtomicU64,
    pub resumes: AtomicU64,
    pub failed_resumes: AtomicU64,
    pub acknowledgements: AtomicU64,
    pub batches: AtomicU64,
    pub batched_requests: AtomicU64,
    pub largest_batch: AtomicU64,
    pub actor_restarts: AtomicU64,
    pub expired_by_sweep: AtomicU64,
    /// Pairings ended by the inactive release.
    pub released_inactive: AtomicU64,
    /// Devices replaced by a new installation (a replacement code used).
    pub replaced: AtomicU64,
    /// Staged rollouts the duty promoted (their time came) or halted (too many failures).
    pub rollouts_promoted: AtomicU64,
    pub rollouts_halted: AtomicU64,
    /// Devices paired from their organization's waiting line.
    pub served_from_line: AtomicU64,
    /// Webhook deliveries sent and accepted, and attempts that failed.
    pub webhooks_delivered: AtomicU64,
    pub webhook_failures: AtomicU64,
    /// Pairing answers `refused`, by reason (in the order of [`Refusal::ALL`]), however they
    /// were refused: before the actor (unknown code, rate limit, malformed) or by its batch.
    pub refusals: [AtomicU64; Refusal::ALL.len()],
    /// Requests per committed batch, and the time from the batch's `BEGIN` to its `COMMIT`:
    /// recorded once per batch, never per request.
    pub batch_size: AtomicHistogram,
    pub batch_seconds: AtomicHistogram,
}

impl Default for Counters {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Counters {
            pairings: zero(),
            repeated_pairings: zero(),
            refused_pairings: zero(),
            unknown_code_attempts: zero(),
            code_lookups: zero(),
            rate_limited: zero(),
            resumes: zero(),
            failed_resumes: zero(),
            acknowledgements: zero(),
            batches: zero(),
            batched_requests: zero(),
            largest_batch: zero(),
            actor_restarts: zero(),
            expired_by_sweep: zero(),
            released_inactive: zero(),
            replaced: zero(),
            rollouts_promoted: zero(),
            rollouts_halted: zero(),
            served_from_line: zero(),
            webhooks_delivered: zero(),
            webhook_failures: zero(),
            refusals: [const { AtomicU64::new(0) }; Refusal::ALL.len()],
            batch_size: AtomicHistogram::new(&BATCH_SIZE_BOUNDS),
            batch_seconds: AtomicHistogram::new(&BATCH_SECONDS_BOUNDS),
        }
    }
}

impl Counters {
    /// Counts one pairing refused for `reason`.
    pub fn refused(&self, reason: Refusal) {
        if let Some(slot) = Refusal::ALL.iter().position(|known| *known == reason) {
            self.refusals[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a committed batch of `size` requests whose transaction took `elapsed`.
    pub fn batch_committed(&self, size: u64, elapsed: std::time::Duration) {
        self.batch_size.record(size as f64);
        self.batch_seconds.record(elapsed.as_secs_f64());
    }

    /// Refused pairings by reason, every reason listed.
    pub fn refusals(&self) -> Vec<(Refusal, u64)> {
        Refusal::ALL
            .iter()
            .zip(&self.refusals)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// The counters' values now, with the gauges the caller knows.
    pub fn read(&self, connected_devices: usize, running_orgs: usize) -> Metrics {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Metrics {
            pairings: get(&self.pairings),
            repeated_pairings: get(&self.repeated_pairings),
            refused_pairings: get(&self.refused_pairings),
            unknown_code_attempts: get(&self.unknown_code_attempts),
            code_lookups: get(&self.code_lookups),
            rate_limited: get(&self.rate_limited),
            resumes: get(&self.resumes),
            failed_resumes: get(&self.failed_resumes),
            acknowledgements: get(&self.acknowledgements),
            batches: get(&self.batches),
            batched_requests: get(&self.batched_requests),
            largest_batch: get(&self.largest_batch),
            actor_restarts: get(&self.actor_restarts),
            expired_by_sweep: get(&self.expired_by_sweep),
            released_inactive: get(&self.released_inactive),
            replaced: get(&self.replaced),
            rollouts_promoted: get(&self.rollouts_promoted),
            rollouts_halted: get(&self.rollouts_halted),
            served_from_line: get(&self.served_from_line),
            webhooks_delivered: get(&self.webhooks_delivered),
            webhook_failures: get(&self.webhook_failures),
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
    /// Codes looked up in the database because this node had not seen them yet (one lookup
    /// of a code at a time, however many devices present it at once).
    pub code_lookups: u64,
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
    /// Pairings of inactive devices ended, their licenses released.
    pub released_inactive: u64,
    /// Devices replaced by a new installation.
    pub replaced: u64,
    /// Staged rollouts promoted by themselves (their time came) and halted for failures.
    pub rollouts_promoted: u64,
    pub rollouts_halted: u64,
    /// Devices paired from their organization's waiting line (counted in `pairings` too).
    pub served_from_line: u64,
    /// Webhook deliveries accepted by their receivers, and attempts that failed (each is
    /// tried again with back-off).
    pub webhooks_delivered: u64,
    pub webhook_failures: u64,
    pub connected_devices: u64,
    pub running_organization_actors: u64,
    /// Organizations with live-feed watchers on this node, and organizations other nodes
    /// announced watchers of (events of those are sent to the other nodes).
    pub live_feed_watched_here: u64,
    pub live_feed_watched_elsewhere: u64,
}

/// What the operator's metrics show beyond [`Metrics`]: distributions, breakdowns and the
/// database pools. Read on demand (a scrape), never kept.
#[derive(Debug, Clone)]
pub struct DetailedMetrics {
    pub counters: Metrics,
    /// Pairing refusals by reason, every reason listed (zero included).
    pub refusals: Vec<(Refusal, u64)>,
    /// Requests per committed batch.
    pub batch_size: HistogramSnapshot,
    /// Seconds from a batch's `BEGIN` to its `COMMIT`.
    pub batch_seconds: HistogramSnapshot,
    /// Requests (device requests and admin commands) sent to an organization actor of this
    /// node and not answered yet, all organizations together.
    pub queued_requests: u64,
    /// The organizations with the most such requests, deepest first, at most the number asked
    /// for and only those with at least one: a bounded number of series whatever the number
    /// of organizations.
    pub deepest_queues: Vec<(OrgId, u64)>,
    /// Live-feed streams open on this node (watchers, not organizations).
    pub live_feed_watchers: u64,
    /// The database connection pools.
    pub pools: Vec<PoolUsage>,
}
