//! State shared by the engine facade, the organization actors and the background tasks.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use ractor::ActorRef;
use serde::Serialize;

use crate::clock::Clock;
use crate::events::{OrgEvent, Watchers};
use crate::ids::{CodeId, ConfigId, OrgId};
use crate::limiter::FailureLimiter;
use crate::link::{ConfigSnapshot, Registry};
use crate::org::OrgMsg;
use crate::secrets::{SecretCipher, SecretHash};
use crate::settings::EngineSettings;
use crate::store::{CodeRoute, ConfigRow, Store};
use crate::supervisor::SupervisorMsg;

#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub cipher: SecretCipher,
    pub settings: EngineSettings,
    pub registry: Registry,
    /// Latest known revision of each configuration, shared by every link it is pushed to.
    pub configs: DashMap<ConfigId, Arc<ConfigSnapshot>>,
    /// Reusable codes seen on this node: hash → organization. A code's organization never
    /// changes, so this cache can never be wrong, only absent.
    pub code_routes: DashMap<SecretHash, CodeRoute>,
    pub address_failures: FailureLimiter<IpAddr>,
    pub code_failures: FailureLimiter<CodeId>,
    /// Running organization actors; the supervisor keeps it current.
    pub orgs: DashMap<OrgId, ActorRef<OrgMsg>>,
    pub supervisor: OnceLock<ActorRef<SupervisorMsg>>,
    pub metrics: Metrics,
    /// Live-feed watchers here, and organizations watched on other nodes.
    pub watchers: Watchers,
    next_connection: AtomicI64,
    node_id: i64,
}

impl Shared {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cipher: SecretCipher,
        settings: EngineSettings,
    ) -> Self {
        // Connection ids are recorded as presence in the database; a random prefix per process
        // keeps a restarted node from reusing the ids of its previous life.
        let prefix = i64::from(u32::from_le_bytes(crate::secrets::random_bytes()) >> 2) << 32;
        Shared {
            address_failures: FailureLimiter::new(settings.failures_per_address),
            code_failures: FailureLimiter::new(settings.failures_per_code),
            store,
            clock,
            cipher,
            settings,
            registry: Registry::default(),
            configs: DashMap::new(),
            code_routes: DashMap::new(),
            orgs: DashMap::new(),
            supervisor: OnceLock::new(),
            metrics: Metrics::default(),
            watchers: Watchers::default(),
            next_connection: AtomicI64::new(prefix),
            node_id: prefix >> 32,
        }
    }

    /// This process's node id: the high half of every connection id it hands out, recorded in
    /// the database's node heartbeats so that other nodes can tell whose presence went stale.
    pub fn node_id(&self) -> i64 {
        self.node_id
    }

    pub fn next_connection_id(&self) -> i64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Publishes live-feed events of `org_id`, after the commit that made them true: to this
    /// node's watchers, and through the store to other nodes' watchers. `events` is only called
    /// when someone watches: otherwise this costs two map lookups.
    pub fn publish_events(&self, org_id: OrgId, events: impl FnOnce() -> Vec<OrgEvent>) {
        let audience = self.watchers.audience(org_id);
        if !audience.here && !audience.elsewhere {
            return;
        }
        let events = events();
        if events.is_empty() {
            return;
        }
        if audience.elsewhere {
            let store = Arc::clone(&self.store);
            let sent = events.clone();
            // Off the caller's path: an organization's actor does not wait for it.
            tokio::spawn(async move {
                if let Err(error) = store.publish_events(org_id, &sent).await {
                    tracing::debug!(%org_id, %error, "live-feed events not sent to other nodes");
                }
            });
        }
        if audience.here {
            for event in events {
                self.watchers.deliver(org_id, event);
            }
        }
    }

    /// The shared snapshot for a configuration row: the cached one when it is the same revision
    /// (so that encoded frames are shared), otherwise a new one that replaces an older cached one.
    pub fn snapshot(&self, row: ConfigRow) -> Arc<ConfigSnapshot> {
        if let Some(cached) = self.configs.get(&row.id)
            && cached.revision == row.revision
        {
            return Arc::clone(cached.value());
        }
        let snapshot = Arc::new(ConfigSnapshot::new(
            row.id,
            row.org_id,
            row.name,
            row.revision,
            row.body,
        ));
        let mut entry = self
            .configs
            .entry(snapshot.id)
            .or_insert_with(|| Arc::clone(&snapshot));
        if entry.revision < snapshot.revision {
            *entry = Arc::clone(&snapshot);
        }
        snapshot
    }
}

/// Counters for the operator's status page and the load tester.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
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

impl Metrics {
    pub fn snapshot(&self, connected_devices: usize, running_orgs: usize) -> MetricsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
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

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
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
