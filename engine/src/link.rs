//! The engine's side of a device connection, and the registry that finds it.
//!
//! A connection task (in the server) owns the socket; the engine owns nothing of it but a
//! [`DeviceLink`]: a tiny shared mailbox with one slot for "the configuration this device should
//! now receive" and one for "end the session". Pushes overwrite the slot instead of queueing, so a
//! device that stops reading holds at most one pending configuration, the newest one, however
//! many edits happen; server memory cannot grow with a slow device.
//!
//! Only the organization's actor writes assignments and pushes into links, in commit order, so a
//! link never goes back to an older state.
//!
//! The [`Registry`] maps each paired device to its one live link on this node. A newer connection
//! of the same device supersedes the older one.

use std::any::Any;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::ids::{ConfigId, DeviceId, OrgId};
use crate::session::SessionEnd;

/// One revision of a configuration, shared by every link it is pushed to.
#[derive(Debug)]
pub struct ConfigRevision {
    pub id: ConfigId,
    pub org_id: OrgId,
    pub name: String,
    pub revision: u64,
    pub body: String,
    /// What the edge derives from this revision and wants to share between connections (the
    /// device endpoint keeps its encoded frames here: a 256 KiB body sent to 19,000 devices is
    /// encoded once per encoding, not 19,000 times). The engine neither knows nor reads it; it
    /// only ties it to the revision's life, so that it is freed with the revision.
    edge: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl ConfigRevision {
    pub fn new(id: ConfigId, org_id: OrgId, name: String, revision: u64, body: String) -> Self {
        ConfigRevision {
            id,
            org_id,
            name,
            revision,
            body,
            edge: OnceLock::new(),
        }
    }

    /// The edge's value for this revision, built by `build` on first use. `None` if the slot
    /// already holds a value of another type (one edge per process uses it).
    pub fn edge<T: Any + Send + Sync>(&self, build: impl FnOnce() -> T) -> Option<&T> {
        self.edge
            .get_or_init(|| Box::new(build()))
            .downcast_ref::<T>()
    }
}

/// Which device a link carries, once it paired or resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSession {
    pub device_id: DeviceId,
    pub org_id: OrgId,
}

#[derive(Debug, Default)]
struct LinkState {
    session: Option<LinkSession>,
    /// The configuration assigned to the device, as far as this node has committed.
    assigned: Option<ConfigId>,
    /// The newest revision to send, if the connection has not taken it yet.
    pending: Option<Arc<ConfigRevision>>,
    /// The newest (configuration, revision) handed to the connection (or reported by the device
    /// when it resumed).
    delivered: Option<(ConfigId, u64)>,
    end: Option<SessionEnd>,
    /// The device waits in its organization's line with this ticket.
    waiting: Option<(OrgId, i64)>,
    /// It left the line (paired by it, refused, or dismissed): the connection pairs again
    /// (`WaitChoice::AfterTurn`) to learn which and be answered.
    turn: bool,
    /// The connection is gone; the link must not be registered again.
    closed: bool,
}

/// What the connection should send next.
#[derive(Debug, Default)]
pub struct LinkUpdate {
    pub configuration: Option<Arc<ConfigRevision>>,
    /// The device left the line: pair again (`WaitChoice::AfterTurn`) to be answered.
    pub turn: bool,
    /// When set, send `Ended` with this reason and close; nothing else follows.
    pub end: Option<SessionEnd>,
}

/// The engine's handle on one device connection.
#[derive(Debug)]
pub struct DeviceLink {
    /// Unique per connection on this node; recorded as the device's presence in the database so
    /// that a stale connection's disconnect does not mark a reconnected device offline.
    pub connection_id: i64,
    pub peer: IpAddr,
    state: Mutex<LinkState>,
    wake: Notify,
}

impl DeviceLink {
    pub fn new(connection_id: i64, peer: IpAddr) -> Arc<Self> {
        Arc::new(DeviceLink {
            connection_id,
            peer,
            state: Mutex::new(LinkState::default()),
            wake: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, LinkState> {
        // A panic while holding this lock cannot leave the state half-written (every critical
        // section is a few assignments), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn session(&self) -> Option<LinkSession> {
        self.state().session
    }

    /// Waits until there is something to send. Never misses a wake-up that happened before the
    /// call: the permit is kept.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Takes what the connection should send now.
    pub fn take(&self) -> LinkUpdate {
        let mut state = self.state();
        let configuration = state.pending.take();
        if let Some(revision) = &configuration {
            state.delivered = Some((revision.id, revision.revision));
        }
        LinkUpdate {
            configuration,
            turn: std::mem::take(&mut state.turn),
            end: state.end,
        }
    }

    /// Called by the actor after a pairing or reconnection commits: binds the link to its
    /// device. `running` is what the device said it runs (on resume). Returns false if the
    /// connection closed meanwhile (then nothing is bound).
    pub(crate) fn bind(
        &self,
        session: LinkSession,
        assigned: Option<Arc<ConfigRevision>>,
        running: Option<(ConfigId, u64)>,
    ) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.session = Some(session);
        state.delivered = running;
        state.assigned = assigned.as_ref().map(|revision| revision.id);
        state.pending =
            assigned.filter(|revision| running != Some((revision.id, revision.revision)));
        drop(state);
        self.wake.notify_one();
        true
    }

    /// The device now waits in `org_id`'s line with `ticket`. False if the connection closed
    /// meanwhile (then it waits for nothing).
    pub(crate) fn wait_in_line(&self, org_id: OrgId, ticket: i64) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.waiting = Some((org_id, ticket));
        true
    }

    /// The organization and ticket the device waits in line with, if it does.
    pub fn waiting(&self) -> Option<(OrgId, i64)> {
        self.state().waiting
    }

    /// The device is no longer in line: the connection is told.
    pub(crate) fn line_turn(&self) {
        let mut state = self.state();
        if state.waiting.take().is_none() {
            return;
        }
        state.turn = true;
        drop(state);
        self.wake.notify_one();
    }

    /// Called by the connection when it ends. Returns the session it carried, if any, so that
    /// the connection can unregister it and report the device offline. After this, the link is
    /// never bound again.
    pub fn close(&self) -> Option<LinkSession> {
        let mut state = self.state();
        state.closed = true;
        state.pending = None;
        state.session
    }

    /// A new revision of some configuration of this organization: queue it if it is this
    /// device's and newer than what it has or will get.
    pub(crate) fn offer(&self, revision: &Arc<ConfigRevision>) {
        let mut state = self.state();
        if state.end.is_some() || state.assigned != Some(revision.id) {
            return;
        }
        let newest_known = state
            .pending
            .as_ref()
            .map(|pending| pending.revision)
            .or(state
                .delivered
                .filter(|(id, _)| *id == revision.id)
                .map(|(_, known)| known));
        if newest_known.is_some_and(|known| known >= revision.revision) {
            return;
        }
        state.pending = Some(Arc::clone(revision));
        drop(state);
        self.wake.notify_one();
    }

    /// The device was assigned another configuration: queue its revision unless the device has
    /// it already.
    pub(crate) fn reassign(&self, revision: &Arc<ConfigRevision>) {
        let mut state = self.state();
        if state.end.is_some() {
            return;
        }
        state.assigned = Some(revision.id);
        let already = state.delivered == Some((revision.id, revision.revision));
        state.pending = if already {
            None
        } else {
            Some(Arc::clone(revision))
        };
        drop(state);
        self.wake.notify_one();
    }

    /// The device has no configuration any more (its assignment was dropped elsewhere).
    pub(crate) fn unassign(&self) {
        let mut state = self.state();
        if state.end.is_some() {
            return;
        }
        state.assigned = None;
        state.pending = None;
        drop(state);
        self.wake.notify_one();
    }

    /// Ends the session: the connection sends `Ended` and closes.
    pub(crate) fn end(&self, reason: SessionEnd) {
        let mut state = self.state();
        if state.end.is_none() {
            state.end = Some(reason);
            state.pending = None;
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The configuration the device should be on, as this node knows it.
    pub fn assigned(&self) -> Option<ConfigId> {
        self.state().assigned
    }

    /// Whether the session was ended.
    pub fn ended(&self) -> Option<SessionEnd> {
        self.state().end
    }

    /// Whether the connection has ended ([`DeviceLink::close`]): its device is being recorded
    /// offline.
    pub fn closed(&self) -> bool {
        self.state().closed
    }
}

/// Paired devices connected to this node.
#[derive(Debug, Default)]
pub struct Registry {
    links: DashMap<DeviceId, Arc<DeviceLink>>,
}

impl Registry {
    /// Registers `link` as the device's live connection; an older link of the same device is
    /// returned so that the caller can end it.
    pub(crate) fn insert(
        &self,
        device_id: DeviceId,
        link: &Arc<DeviceLink>,
    ) -> Option<Arc<DeviceLink>> {
        let previous = self.links.insert(device_id, Arc::clone(link))?;
        (previous.connection_id != link.connection_id).then_some(previous)
    }

    /// Removes the device's link if it is still `link` (a newer connection may have replaced it).
    pub fn remove(&self, device_id: DeviceId, link: &DeviceLink) -> bool {
        self.links
            .remove_if(&device_id, |_, current| {
                current.connection_id == link.connection_id
            })
            .is_some()
    }

    pub fn get(&self, device_id: DeviceId) -> Option<Arc<DeviceLink>> {
        self.links
            .get(&device_id)
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Links of one organization's devices. Collected first so that no map guard is held
    /// while the caller works on them.
    pub fn of_org(&self, org_id: OrgId) -> Vec<Arc<DeviceLink>> {
        self.links
            .iter()
            .filter(|entry| {
                entry
                    .value()
                    .session()
                    .is_some_and(|session| session.org_id == org_id)
            })
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// Whether a device of the organization is connected here.
    pub fn has_org(&self, org_id: OrgId) -> bool {
        self.links.iter().any(|entry| {
            entry
                .value()
                .session()
                .is_some_and(|session| session.org_id == org_id)
        })
    }

    /// The organizations with a device connected here.
    pub fn orgs(&self) -> Vec<OrgId> {
        let orgs: std::collections::HashSet<OrgId> = self
            .links
            .iter()
            .filter_map(|entry| entry.value().session().map(|session| session.org_id))
            .collect();
        orgs.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Every link, for a graceful shutdown.
    pub fn all(&self) -> Vec<Arc<DeviceLink>> {
        self.links
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(id: ConfigId, revision: u64) -> Arc<ConfigRevision> {
        Arc::new(ConfigRevision::new(
            id,
            OrgId::generate(),
            "c".into(),
            revision,
            String::new(),
        ))
    }

    fn link() -> Arc<DeviceLink> {
        DeviceLink::new(1, IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn pushes_coalesce_to_the_newest_revision() {
        let link = link();
        let config = ConfigId::generate();
        let session = LinkSession {
            device_id: DeviceId::generate(),
            org_id: OrgId::generate(),
        };
        link.bind(session, Some(revision(config, 1)), None);
        for number in 2..=50 {
            link.offer(&revision(config, number));
        }
        // An older revision arriving late never replaces a newer one.
        link.offer(&revision(config, 10));
        let update = link.take();
        assert_eq!(update.configuration.map(|pushed| pushed.revision), Some(50));
        assert!(link.take().configuration.is_none());
        link.offer(&revision(config, 50));
        assert!(link.take().configuration.is_none(), "already delivered");
    }

    #[test]
    fn offers_for_other_configurations_are_ignored() {
        let link = link();
        let session = LinkSession {
            device_id: DeviceId::generate(),
            org_id: OrgId::generate(),
        };
        let mine = ConfigId::generate();
        link.bind(session, Some(revision(mine, 3)), Some((mine, 3)));
        assert!(
            link.take().configuration.is_none(),
            "device already runs it"
        );
        link.offer(&revision(ConfigId::generate(), 9));
        assert!(link.take().configuration.is_none());
    }

    #[test]
    fn end_wins_over_pending_configuration() {
        let link = link();
        let config = ConfigId::generate();
        let session = LinkSession {
            device_id: DeviceId::generate(),
            org_id: OrgId::generate(),
        };
        link.bind(session, Some(revision(config, 1)), None);
        link.end(SessionEnd::Unpaired);
        link.offer(&revision(config, 2));
        let update = link.take();
        assert!(update.configuration.is_none());
        assert_eq!(update.end, Some(SessionEnd::Unpaired));
    }

    #[test]
    fn registry_removes_only_its_own_link() {
        let registry = Registry::default();
        let device = DeviceId::generate();
        let old = DeviceLink::new(1, IpAddr::from([127, 0, 0, 1]));
        let new = DeviceLink::new(2, IpAddr::from([127, 0, 0, 1]));
        assert!(registry.insert(device, &old).is_none());
        let superseded = registry.insert(device, &new).map(|l| l.connection_id);
        assert_eq!(superseded, Some(1));
        assert!(!registry.remove(device, &old));
        assert_eq!(registry.get(device).map(|l| l.connection_id), Some(2));
        assert!(registry.remove(device, &new));
        assert!(registry.is_empty());
    }
}
