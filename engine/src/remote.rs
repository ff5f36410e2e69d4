//! Changes committed on other nodes, applied to the devices connected to this one.
//!
//! A node applies its own commands' effects itself, right after its commit (see `admin`). What
//! other nodes commit reaches it through the store's [`ChangeFeed`] (LISTEN/NOTIFY on
//! PostgreSQL). A notice names rows, never their contents: the organization's actor re-reads the
//! current state of the devices it names (or of all of the organization's connected devices, on a
//! resync) and hands each link what it should now run. A lost, repeated or late notice therefore
//! never leaves a device on the wrong configuration: the next read corrects it, and a repeat finds
//! nothing to do.
//!
//! Notices go through the organization's actor, behind whatever it is committing, so that a link
//! is only ever moved forward: what the actor reads is at least as new as anything it committed
//! before.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::ids::{ConfigId, DeviceId, OrgId};
use crate::link::{ConfigRevision, DeviceLink};
use crate::node::Node;
use crate::session::SessionEnd;
use crate::store::{Change, Notice, StoreResult};

/// Most devices read in one statement while refreshing.
const REFRESH_CHUNK: usize = 4096;

/// The organizations a notice concerns on this node: those with a device connected here. A
/// notice for an organization nobody here serves is dropped without starting its actor.
pub(crate) fn local_orgs(node: &Node, notice: &Notice) -> Vec<OrgId> {
    match notice {
        Notice::Change(change) => {
            let org_id = change.org_id();
            let interested = match change {
                Change::ConfigurationUpdated { .. } => node.registry.has_org(org_id),
                Change::LineMoved { .. } => crate::batch::line::waits_here(node, org_id),
                Change::DevicesAssigned { device_ids, .. }
                | Change::DevicesEnded { device_ids, .. } => device_ids
                    .iter()
                    .any(|device| node.registry.get(*device).is_some()),
            };
            if interested { vec![org_id] } else { Vec::new() }
        }
        Notice::Resync {
            org_id: Some(org_id),
        } => {
            if node.registry.has_org(*org_id) || crate::batch::line::waits_here(node, *org_id) {
                vec![*org_id]
            } else {
                Vec::new()
            }
        }
        Notice::Resync { org_id: None } => {
            let mut orgs = node.registry.orgs();
            for entry in &node.waiting {
                if let Some((org_id, _)) = entry.value().waiting()
                    && !orgs.contains(&org_id)
                {
                    orgs.push(org_id);
                }
            }
            orgs
        }
        // The live feed's notices are for its watchers, not for devices.
        Notice::Events { .. } | Notice::Watch { .. } => Vec::new(),
    }
}

/// Applies a notice to `org_id`'s links on this node. Called by the organization's actor.
pub(crate) async fn apply(node: &Node, org_id: OrgId, notice: &Notice) -> StoreResult<()> {
    match notice {
        Notice::Change(Change::ConfigurationUpdated { config_id, .. }) => {
            let links = node.registry.of_org(org_id);
            if links.is_empty() {
                return Ok(());
            }
            // Deleted meanwhile: nothing runs it any more.
            let Some(row) = node.store.config_row(*config_id).await? else {
                return Ok(());
            };
            if row.org_id != org_id {
                return Ok(());
            }
            let revision = node.revision(row);
            for link in links {
                link.offer(&revision);
            }
            Ok(())
        }
        Notice::Change(
            Change::DevicesAssigned { device_ids, .. } | Change::DevicesEnded { device_ids, .. },
        ) => {
            let links: Vec<(DeviceId, Arc<DeviceLink>)> = device_ids
                .iter()
                .filter_map(|device| Some((*device, node.registry.get(*device)?)))
                .filter(|(_, link)| link.session().is_some_and(|s| s.org_id == org_id))
                .collect();
            refresh(node, links).await
        }
        Notice::Change(Change::LineMoved { .. }) => crate::batch::line::settle(node, org_id).await,
        Notice::Resync { .. } => {
            // Notices may have been missed: the line too is compared with the database.
            crate::batch::line::settle(node, org_id).await?;
            let links = node
                .registry
                .of_org(org_id)
                .into_iter()
                .filter_map(|link| Some((link.session()?.device_id, link)))
                .collect();
            refresh(node, links).await
        }
        Notice::Events { .. } | Notice::Watch { .. } => Ok(()),
    }
}

/// Reads the devices' current state and moves each link to it.
async fn refresh(node: &Node, links: Vec<(DeviceId, Arc<DeviceLink>)>) -> StoreResult<()> {
    let mut revisions: HashMap<ConfigId, Option<Arc<ConfigRevision>>> = HashMap::new();
    let mut staged: HashMap<(ConfigId, u64), Option<Arc<ConfigRevision>>> = HashMap::new();
    for chunk in links.chunks(REFRESH_CHUNK) {
        let ids: Vec<DeviceId> = chunk.iter().map(|(device, _)| *device).collect();
        let states = node.store.device_states(&ids).await?;
        let wanted: HashSet<ConfigId> = states.iter().filter_map(|state| state.config_id).collect();
        for config_id in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = revisions.entry(config_id) {
                let row = node.store.config_row(config_id).await?;
                slot.insert(row.map(|row| node.revision(row)));
            }
        }
        let by_device: HashMap<DeviceId, &Arc<DeviceLink>> =
            chunk.iter().map(|(device, link)| (*device, link)).collect();
        for state in states {
            let Some(link) = by_device.get(&state.device_id) else {
                continue;
            };
            if let Some(reason) = state.ended {
                link.end(SessionEnd::from(reason));
                continue;
            }
            match state.config_id {
                Some(config_id) => {
                    let Some(Some(own)) = revisions.get(&config_id) else {
                        continue;
                    };
                    // A staged rollout's revision, when it is newer than the configuration's.
                    let mut revision = own;
                    if let Some(number) = state.staged_revision.filter(|n| *n > own.revision) {
                        let key = (config_id, number);
                        if let std::collections::hash_map::Entry::Vacant(slot) = staged.entry(key) {
                            let row = node.store.revision_row(config_id, number).await?;
                            slot.insert(row.map(|row| node.revision(row)));
                        }
                        if let Some(Some(found)) = staged.get(&key) {
                            revision = found;
                        }
                    }
                    if link.assigned() == Some(config_id) {
                        link.offer(revision);
                    } else {
                        link.reassign(revision);
                    }
                }
                None => {
                    if link.assigned().is_some() {
                        link.unassign();
                    }
                }
            }
        }
    }
    Ok(())
}
