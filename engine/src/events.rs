//! The live feed of an organization: what changed, by id, for the portal and portal backends.
//!
//! An event names what changed (devices by id, or "the licenses", "the configurations"), never
//! the new state: a watcher re-reads what it shows from the admin API. A lost, repeated or late
//! event therefore never leaves a page wrong for longer than the next event or read, and a
//! watcher that falls behind is told [`OrgEvent::Resync`] rather than given a partial story.
//!
//! Events are published after the commit that made them true, so a watcher that re-reads on an
//! event sees the change.
//!
//! The feed costs nothing while nobody watches: publishing looks the organization up in two
//! small maps (watchers on this node, and organizations watched on other nodes) and stops there.
//! On one node that is the whole story. In a cluster a watcher may be connected to any node
//! while its organization's devices are connected to others, so:
//! - a node with watchers of an organization announces it to the other nodes through the store
//!   (on PostgreSQL a notification) when the first watcher arrives and again every
//!   [`WATCH_ANNOUNCE_INTERVAL`];
//! - a node that publishes an event for an organization announced within [`WATCH_TTL`] also
//!   sends it through the store, and the nodes with watchers hand it to them.
//!
//! A node that starts after an announcement learns of the watch at the next announcement, so
//! its events can be missing from a feed for up to [`WATCH_ANNOUNCE_INTERVAL`] after it starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::ids::{ConfigId, DeviceId, KeyId, OrgId};
use crate::model::RolloutState;

/// How often a node with watchers repeats its announcement to the other nodes.
pub const WATCH_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);

/// How long another node keeps publishing for an organization after its last announcement:
/// three announcements, so that one lost notification does not end the feed.
pub const WATCH_TTL: Duration = Duration::from_secs(35);

/// Events buffered per organization for a slow watcher; one that falls further behind is told
/// to resynchronise.
const WATCHER_BUFFER: usize = 1024;

/// What happened to a set of devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChange {
    /// Paired for the first time (a license was taken).
    Paired,
    /// Connected (paired again with the same installation, or reconnected).
    Online,
    /// Its connection ended.
    Offline,
    /// Reported a revision applied or failed.
    Acknowledged,
    /// Given another configuration by an admin.
    Assigned,
    /// Its pairing ended: unpaired, or its license expired. Its license changed too.
    Ended,
    /// An admin changed its name or notes.
    Edited,
}

/// One event of an organization's live feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrgEvent {
    Devices {
        change: DeviceChange,
        device_ids: Vec<DeviceId>,
    },
    /// Licenses were added or renewed, or reserved or released by a single-use code.
    Licenses,
    /// Reusable or single-use codes were created or revoked.
    Codes,
    /// Configurations were created, edited or deleted (an edit of a configuration whose
    /// staged rollout was in progress supersedes that rollout).
    Configurations,
    /// A configuration's staged rollout started, was halted or was promoted.
    Rollout {
        configuration_id: ConfigId,
        state: RolloutState,
    },
    /// The organization's line of devices waiting for a license changed: a device joined or
    /// left it (paired, refused, dismissed or gone).
    Waiting,
    /// An organization key was revoked: a feed opened with it ends here.
    KeyRevoked { key_id: KeyId },
    /// Events may have been missed: re-read everything.
    Resync,
}

impl OrgEvent {
    /// The pairings of these devices ended; nothing to say when there are none.
    pub fn ended(device_ids: &[DeviceId]) -> Vec<OrgEvent> {
        if device_ids.is_empty() {
            return Vec::new();
        }
        vec![OrgEvent::Devices {
            change: DeviceChange::Ended,
            device_ids: device_ids.to_vec(),
        }]
    }
}

/// The watchers on this node and the organizations watched on other nodes.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    local: DashMap<OrgId, broadcast::Sender<Arc<OrgEvent>>>,
    /// Organizations another node announced, and when the announcement runs out.
    remote: DashMap<OrgId, Instant>,
}

/// Where an event must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Audience {
    pub here: bool,
    pub elsewhere: bool,
}

impl Watchers {
    /// A new watcher of `org_id`, and whether it is the only one here (to announce at once: the
    /// other nodes may have forgotten an earlier watcher's announcement).
    pub fn subscribe(&self, org_id: OrgId) -> (broadcast::Receiver<Arc<OrgEvent>>, bool) {
        let sender = self
            .local
            .entry(org_id)
            .or_insert_with(|| broadcast::channel(WATCHER_BUFFER).0);
        let receiver = sender.subscribe();
        let first = sender.receiver_count() == 1;
        (receiver, first)
    }

    pub fn audience(&self, org_id: OrgId) -> Audience {
        let here = self
            .local
            .get(&org_id)
            .is_some_and(|sender| sender.receiver_count() > 0);
        let elsewhere = self
            .remote
            .get(&org_id)
            .is_some_and(|until| *until > Instant::now());
        Audience { here, elsewhere }
    }

    /// Hands an event to this node's watchers of `org_id`.
    pub fn send_here(&self, org_id: OrgId, event: OrgEvent) {
        if let Some(sender) = self.local.get(&org_id) {
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Tells every watcher here to re-read (this node may have missed other nodes' events).
    pub fn resync_all(&self) {
        for entry in &self.local {
            let _ = entry.value().send(Arc::new(OrgEvent::Resync));
        }
    }

    /// Another node has watchers of `org_id`.
    pub fn announced(&self, org_id: OrgId) {
        self.remote.insert(org_id, Instant::now() + WATCH_TTL);
    }

    /// How many organizations are watched here, and announced by other nodes (still valid).
    pub fn counts(&self) -> (usize, usize) {
        let here = self
            .local
            .iter()
            .filter(|entry| entry.value().receiver_count() > 0)
            .count();
        let now = Instant::now();
        let elsewhere = self
            .remote
            .iter()
            .filter(|entry| *entry.value() > now)
            .count();
        (here, elsewhere)
    }

    /// Live-feed streams open on this node, over every organization.
    pub fn streams_here(&self) -> usize {
        self.local
            .iter()
            .map(|entry| entry.value().receiver_count())
            .sum()
    }

    /// The organizations watched here, to announce; forgets the ones nobody watches any more
    /// and the other nodes' announcements that ran out.
    pub fn watched_here(&self) -> Vec<OrgId> {
        self.local.retain(|_, sender| sender.receiver_count() > 0);
        let now = Instant::now();
        self.remote.retain(|_, until| *until > now);
        self.local.iter().map(|entry| *entry.key()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_watching_means_no_audience() {
        let watchers = Watchers::default();
        let org = OrgId(uuid::Uuid::new_v4());
        assert_eq!(
            watchers.audience(org),
            Audience {
                here: false,
                elsewhere: false
            }
        );
        let (receiver, first) = watchers.subscribe(org);
        assert!(first);
        assert!(watchers.audience(org).here);
        let (_second, first) = watchers.subscribe(org);
        assert!(!first);
        drop(receiver);
        drop(_second);
        assert!(!watchers.audience(org).here);
        // A watcher after the others left is the first again (its node announces it at once).
        let (again, first) = watchers.subscribe(org);
        assert!(first);
        drop(again);
        assert!(watchers.watched_here().is_empty());
    }

    #[test]
    fn events_reach_only_their_organizations_watchers() {
        let watchers = Watchers::default();
        let (a, b) = (OrgId(uuid::Uuid::new_v4()), OrgId(uuid::Uuid::new_v4()));
        let (mut of_a, _) = watchers.subscribe(a);
        let (mut of_b, _) = watchers.subscribe(b);
        watchers.send_here(a, OrgEvent::Licenses);
        assert_eq!(*of_a.try_recv().unwrap(), OrgEvent::Licenses);
        assert!(of_b.try_recv().is_err());
        watchers.resync_all();
        assert_eq!(*of_a.try_recv().unwrap(), OrgEvent::Resync);
        assert_eq!(*of_b.try_recv().unwrap(), OrgEvent::Resync);
    }

    #[test]
    fn announcements_from_other_nodes_make_an_audience_elsewhere() {
        let watchers = Watchers::default();
        let org = OrgId(uuid::Uuid::new_v4());
        watchers.announced(org);
        assert_eq!(
            watchers.audience(org),
            Audience {
                here: false,
                elsewhere: true
            }
        );
    }

    #[test]
    fn the_wire_form_names_the_kind_and_the_ids() {
        let device = DeviceId(uuid::Uuid::nil());
        let event = OrgEvent::Devices {
            change: DeviceChange::Acknowledged,
            device_ids: vec![device],
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "devices",
                "change": "acknowledged",
                "device_ids": ["00000000-0000-0000-0000-000000000000"],
            })
        );
        assert_eq!(serde_json::from_value::<OrgEvent>(json).unwrap(), event);
        assert_eq!(
            serde_json::to_value(OrgEvent::Resync).unwrap(),
            serde_json::json!({"kind": "resync"})
        );
    }
}
