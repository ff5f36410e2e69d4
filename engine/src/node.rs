//! What this node (this process) holds: its store, clock and settings, the devices connected to
//! it, its caches and failure limits, its live-feed watchers and its counters. The engine
//! facade, the organization actors and the background duties share one `Node`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;

use crate::ack_failures::AckFailureLog;
use crate::clock::Clock;
use crate::events::{OrgEvent, Watchers};
use crate::ids::{CodeId, ConfigId, OrgId, Timestamp};
use crate::limiter::{self, FailureLimiter};
use crate::link::{ConfigRevision, Registry};
use crate::metrics::Counters;
use crate::secrets::{SecretCipher, SecretHash};
use crate::settings::EngineSettings;
use crate::store::{CodeRoute, ConfigRow, Store, StoreError};

/// Revisions kept per configuration in [`Node::configs`]: the two that its devices run during
/// a staged rollout, and one more, so that a new revision does not evict one still in use.
pub(crate) const CACHED_REVISIONS: usize = 3;

#[derive(Debug)]
pub(crate) struct Node {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub cipher: SecretCipher,
    pub settings: EngineSettings,
    pub registry: Registry,
    /// The revisions of each configuration that devices were last sent, most recently used
    /// first, shared by every link they are pushed to: its own revision and, while a staged
    /// rollout is in progress, the rollout's ([`CACHED_REVISIONS`] at most).
    pub configs: DashMap<ConfigId, Vec<Arc<ConfigRevision>>>,
    /// Connections on this node waiting in their organization's line, by ticket
    /// (`batch::line`).
    pub waiting: DashMap<i64, Arc<crate::link::DeviceLink>>,
    /// Codes seen on this node: hash → organization. A code's organization never changes, so
    /// this cache can never be wrong, only absent.
    pub code_routes: DashMap<SecretHash, CodeRoute>,
    /// The database lookups of codes not cached yet, one per code at a time: the devices of a
    /// burst on a new code wait for the first one's answer instead of each asking the database
    /// (`code_route`). An entry lives while its lookup is asked for.
    code_lookups: DashMap<SecretHash, Arc<tokio::sync::Mutex<()>>>,
    pub address_failures: FailureLimiter<IpAddr>,
    pub code_failures: FailureLimiter<CodeId>,
    /// The audit windows of devices' failed acknowledgements (`ack_failures`).
    pub ack_failures: AckFailureLog,
    pub counters: Counters,
    /// Live-feed watchers here, and organizations watched on other nodes.
    pub watchers: Watchers,
    /// When tokens and keys were last used, noted here and written by the `usage` duty.
    pub usage: crate::usage::Usage,
    /// The only node of its database (no change feed): what it caches of the database is then
    /// never changed behind its back.
    pub single_node: bool,
    /// Whether each organization has webhooks, on a single node only (`has_webhooks`).
    webhook_orgs: DashMap<OrgId, bool>,
    /// When the expiry duty last looked for expiring licenses to tell webhooks of.
    pub expiring_checked: std::sync::Mutex<Option<Timestamp>>,
    next_connection: AtomicI64,
    node_id: i64,
}

impl Node {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cipher: SecretCipher,
        settings: EngineSettings,
    ) -> Self {
        // Connection ids are recorded as presence in the database; a random prefix per process
        // keeps a restarted node from reusing the ids of its previous life.
        let prefix = i64::from(u32::from_le_bytes(crate::secrets::random_bytes()) >> 2) << 32;
        Node {
            address_failures: FailureLimiter::new(settings.failures_per_address),
            code_failures: FailureLimiter::new(settings.failures_per_code),
            ack_failures: AckFailureLog::default(),
            store,
            clock,
            cipher,
            settings,
            registry: Registry::default(),
            configs: DashMap::new(),
            waiting: DashMap::new(),
            code_routes: DashMap::new(),
            code_lookups: DashMap::new(),
            counters: Counters::default(),
            watchers: Watchers::default(),
            usage: crate::usage::Usage::default(),
            expiring_checked: std::sync::Mutex::new(None),
            single_node: false,
            webhook_orgs: DashMap::new(),
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
                self.watchers.send_here(org_id, event);
            }
        }
    }

    /// Whether a transaction of `org_id` must put its events in the webhooks' outbox. The
    /// outbox's insert costs a statement per transaction even for an organization without
    /// webhooks, so a single node, where every webhook is made and deleted through this node's
    /// actors, remembers which organizations have none (`webhooks_changed` forgets it). With
    /// several nodes another node may register one at any moment: always true.
    pub async fn has_webhooks(&self, org_id: OrgId) -> bool {
        if !self.single_node {
            return true;
        }
        if let Some(known) = self.webhook_orgs.get(&org_id) {
            return *known;
        }
        match self.store.has_webhooks(org_id).await {
            Ok(has) => {
                self.webhook_orgs.insert(org_id, has);
                has
            }
            Err(_) => true,
        }
    }

    /// An organization's webhooks changed (after the commit that changed them).
    pub fn webhooks_changed(&self, org_id: OrgId) {
        self.webhook_orgs.remove(&org_id);
    }

    /// The shared form of a configuration revision: the cached one when it is the same
    /// revision (so that what the edge derives from it, such as encoded frames, is shared),
    /// otherwise a new one, cached in place of the least recently used.
    pub fn revision(&self, row: ConfigRow) -> Arc<ConfigRevision> {
        let mut cached = self.configs.entry(row.id).or_default();
        if let Some(place) = cached
            .iter()
            .position(|known| known.revision == row.revision)
        {
            let found = cached.remove(place);
            cached.insert(0, Arc::clone(&found));
            return found;
        }
        let revision = Arc::new(ConfigRevision::new(
            row.id,
            row.org_id,
            row.name,
            row.revision,
            row.body,
        ));
        cached.insert(0, Arc::clone(&revision));
        cached.truncate(CACHED_REVISIONS);
        revision
    }

    /// Where a code leads: from this node's cache of codes seen, else from the database (one
    /// lookup of a code at a time; the others asking for it meanwhile wait for its answer).
    pub async fn code_route(&self, hash: &SecretHash) -> Result<Option<CodeRoute>, StoreError> {
        if let Some(route) = self.code_routes.get(hash) {
            return Ok(Some(*route));
        }
        let turn = LookupTurn {
            lookups: &self.code_lookups,
            hash: *hash,
            turn: Arc::clone(self.code_lookups.entry(*hash).or_default().value()),
        };
        let _turn = turn.turn.lock().await;
        // Found by the lookup this one waited for.
        if let Some(route) = self.code_routes.get(hash) {
            return Ok(Some(*route));
        }
        self.find_code(hash).await
    }

    /// A code's route from the database, cached when the code exists.
    async fn find_code(&self, hash: &SecretHash) -> Result<Option<CodeRoute>, StoreError> {
        crate::metrics::Counters::add(&self.counters.code_lookups, 1);
        let route = self.store.find_code(hash).await?;
        if let Some(route) = route {
            // Bounded: single-use codes are seen once each, so the cache is cleared rather than
            // allowed to grow without end.
            if self.code_routes.len() >= 100_000 {
                self.code_routes.clear();
            }
            self.code_routes.insert(*hash, route);
        }
        Ok(route)
    }

    /// `Err(retry_after_ms)` while `peer`'s address (its /64 for IPv6) is blocked for too
    /// many failed attempts.
    pub fn address_check(&self, peer: IpAddr, now: Timestamp) -> Result<(), u64> {
        self.address_failures
            .check(&limiter::address_key(peer), now)
    }

    /// Records a failed attempt from `peer`.
    pub fn record_failure(&self, peer: IpAddr, now: Timestamp) {
        self.address_failures
            .record(limiter::address_key(peer), now);
    }

    /// Records a failed attempt from `peer` with an existing code: it counts against both.
    pub fn record_failure_with_code(&self, peer: IpAddr, code: CodeId, now: Timestamp) {
        self.record_failure(peer, now);
        self.code_failures.record(code, now);
    }
}

/// A place in the line of one code's lookups; the last one to leave removes the line, also
/// when its device went away while it waited.
struct LookupTurn<'a> {
    lookups: &'a DashMap<SecretHash, Arc<tokio::sync::Mutex<()>>>,
    hash: SecretHash,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LookupTurn<'_> {
    fn drop(&mut self) {
        // The map's reference and this one are all that is left when no one else waits (a new
        // asker clones it under the same shard lock, so none is missed).
        self.lookups
            .remove_if(&self.hash, |_, turn| Arc::strong_count(turn) == 2);
    }
}
