//! The expiry duty, two passes through the organizations' actors, so that each device is told
//! even if nobody is looking:
//!
//! - the expiry sweep ends every pairing whose license passed its `valid_until`
//!   (`ExpireDevices`);
//! - the inactive release ends the pairings of offline devices unseen for longer than their
//!   organization's `release_inactive_after_days` (`ReleaseInactiveDevices`), freeing their
//!   licenses. Organizations without the setting (the default) are never read;
//! - the rollout pass halts or promotes the staged rollouts that are due ([`super::rollouts`]);
//! - the line pass has each organization with devices waiting for a license serve its line
//!   (`batch::line`): licenses freed by time (a single-use code's reservation that ran out)
//!   reach the line this way, and so does anything a lost notice left.

use std::collections::HashMap;

use crate::admin::{
    AdminCommand, ExpireDevices, NoticeExpiringLicenses, Principal, ReleaseInactiveDevices,
};
use crate::ids::{DeviceId, OrgId, Timestamp};
use crate::metrics::Counters;
use crate::node::Node;
use crate::org::OrgMsg;
use crate::store::StoreResult;
use crate::supervisor::Actors;

/// Pairings read per round.
const ROUND: u32 = 500;
/// Rounds per sweep at most; the next sweep goes on.
const MAX_ROUNDS: usize = 20;

/// What one run of the duty ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Pairings whose license had expired.
    pub expired: u64,
    /// Pairings of inactive devices, whose licenses were released.
    pub released_inactive: u64,
    /// Staged rollouts promoted and halted.
    pub rollouts: super::rollouts::Advanced,
}

/// Runs every pass once.
pub(crate) async fn sweep(node: &Node, actors: &Actors) -> Swept {
    let expired = rounds(
        node,
        actors,
        "expiry sweep",
        |now| node.store.expired_pairings(now, ROUND),
        |device_ids| ExpireDevices { device_ids },
    )
    .await;
    Counters::add(&node.counters.expired_by_sweep, expired);
    let released_inactive = rounds(
        node,
        actors,
        "inactive release",
        |now| node.store.inactive_pairings(now, ROUND),
        |device_ids| ReleaseInactiveDevices { device_ids },
    )
    .await;
    Counters::add(&node.counters.released_inactive, released_inactive);
    let rollouts = super::rollouts::advance(node, actors).await;
    match node.store.waiting_orgs().await {
        Ok(orgs) => {
            for org_id in orgs {
                // Behind whatever the organization's actor is doing; not waited for.
                let _ = actors.send(org_id, OrgMsg::ServeLine).await;
            }
        }
        Err(error) => tracing::warn!(%error, "the waiting lines could not be read"),
    }
    notice_expiring_licenses(node, actors).await;
    Swept {
        expired,
        released_inactive,
        rollouts,
    }
}

/// Tells the `licenses_expiring` webhooks, at most every
/// [`crate::webhooks::EXPIRING_CHECK_INTERVAL`] of the engine's clock on this node (the
/// outbox's throttle keeps it to one event per webhook a day, whatever the nodes do).
async fn notice_expiring_licenses(node: &Node, actors: &Actors) {
    let now = node.clock.now();
    {
        let mut last = node
            .expiring_checked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|at: Timestamp| {
            now.0 - at.0 >= crate::webhooks::EXPIRING_CHECK_INTERVAL.as_millis() as i64
        });
        if !due {
            return;
        }
        *last = Some(now);
    }
    let orgs = match node.store.orgs_with_webhook("licenses_expiring").await {
        Ok(orgs) => orgs,
        Err(error) => {
            tracing::warn!(%error, "the webhooks for expiring licenses could not be read");
            return;
        }
    };
    for org_id in orgs {
        if let Err(error) = actors
            .run(Principal::System, org_id, NoticeExpiringLicenses)
            .await
        {
            tracing::warn!(%org_id, %error, "expiring licenses not told");
        }
    }
}

/// Reads due pairings a round at a time and has each organization's actor end them; returns
/// how many ended.
async fn rounds<Read, Fut, Command, C>(
    node: &Node,
    actors: &Actors,
    what: &str,
    read: Read,
    command: Command,
) -> u64
where
    Read: Fn(Timestamp) -> Fut,
    Fut: Future<Output = StoreResult<Vec<(OrgId, DeviceId)>>>,
    Command: Fn(Vec<DeviceId>) -> C,
    C: AdminCommand<Reply = Vec<DeviceId>>,
{
    let mut ended = 0;
    for _ in 0..MAX_ROUNDS {
        let due = match read(node.clock.now()).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "{what} could not read");
                break;
            }
        };
        let found = due.len();
        let mut by_org: HashMap<OrgId, Vec<DeviceId>> = HashMap::new();
        for (org_id, device_id) in due {
            by_org.entry(org_id).or_default().push(device_id);
        }
        let mut progress = 0;
        for (org_id, device_ids) in by_org {
            match actors
                .run(Principal::System, org_id, command(device_ids))
                .await
            {
                Ok(devices) => progress += devices.len() as u64,
                Err(error) => {
                    tracing::warn!(%org_id, %error, "{what} failed for an organization");
                }
            }
        }
        ended += progress;
        if found < ROUND as usize || progress == 0 {
            break;
        }
    }
    ended
}
