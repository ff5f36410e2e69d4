//! Engine settings. Every field has a default suited to production; tests shorten the times.

use std::time::Duration;

use crate::limiter::FailureLimit;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Group commit: requests that arrive while a commit is in flight go together into the next
    /// transaction. Off means one transaction per request; kept to measure what batching buys.
    pub group_commit: bool,
    /// Most device requests in one transaction.
    pub max_batch: usize,
    /// How long a caller waits for an organization actor's answer before giving up
    /// ("unavailable"; nothing was committed on its behalf, or the device retries idempotently).
    pub actor_call_timeout: Duration,
    /// An organization actor with nothing to do for this long stops; the next request starts it
    /// again.
    pub org_idle_timeout: Duration,
    /// Restarts of one organization actor allowed within `restart_window` before the supervisor
    /// backs off.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// First back-off after too many restarts; doubles each time, up to `max_restart_backoff`.
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
    /// Failed pairing and reconnection attempts allowed per source address.
    pub failures_per_address: FailureLimit,
    /// Failed pairing attempts allowed per code (a revoked or used code being hammered).
    pub failures_per_code: FailureLimit,
    /// How often the expiry sweep looks for pairings whose license expired (it also runs when a
    /// manual clock jumps).
    pub sweep_interval: Duration,
    /// How long idempotent replies are kept.
    pub idempotency_ttl: Duration,
    /// A node whose heartbeat is older than this is given up for dead by the others: its
    /// devices are marked offline. Each node beats at every expiry sweep, so this must be
    /// several sweep intervals. Measured on the engine's clock.
    pub node_timeout: Duration,
    /// Audit entries older than this (on the engine's clock) are deleted by the retention duty,
    /// a bounded batch at a time. `None` (the default): the log is kept forever; an operator
    /// who must not keep it forever (or keep it too long) says how long.
    pub audit_retention: Option<Duration>,
    /// What one organization may hold.
    pub quotas: Quotas,
}

/// What one organization may hold, counted inside the transaction of each insert so that
/// concurrent creations cannot overshoot. Generous by default: they bound what one customer
/// (or one leaked key) can make the server store, not what a real fleet needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub configurations: u64,
    /// Keys neither revoked nor expired.
    pub keys: u64,
    /// Codes that can still pair: neither revoked, used, used up nor expired.
    pub active_codes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            configurations: 10_000,
            keys: 1_000,
            active_codes: 100_000,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            group_commit: true,
            max_batch: 2048,
            actor_call_timeout: Duration::from_secs(15),
            org_idle_timeout: Duration::from_secs(600),
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            restart_backoff: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(60),
            failures_per_address: FailureLimit {
                max_failures: 30,
                window: Duration::from_secs(60),
            },
            failures_per_code: FailureLimit {
                max_failures: 100,
                window: Duration::from_secs(60),
            },
            sweep_interval: Duration::from_secs(5),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            node_timeout: Duration::from_secs(30),
            audit_retention: None,
            quotas: Quotas::default(),
        }
    }
}
