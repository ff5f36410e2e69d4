//! The expiry sweep: ends every pairing whose license passed its `valid_until`, through the
//! organization's actor (the `ExpireDevices` command), so that the device is told "license
//! expired" even if nobody is looking.

use std::collections::HashMap;

use crate::admin::{ExpireDevices, Principal};
use crate::ids::{DeviceId, OrgId};
use crate::metrics::Counters;
use crate::node::Node;
use crate::supervisor::Actors;

/// Pairings read per round.
const ROUND: u32 = 500;
/// Rounds per sweep at most; the next sweep goes on.
const MAX_ROUNDS: usize = 20;

/// Ends the pairings whose license has expired; returns how many.
pub(crate) async fn sweep(node: &Node, actors: &Actors) -> u64 {
    let mut ended = 0;
    for _ in 0..MAX_ROUNDS {
        let now = node.clock.now();
        let expired = match node.store.expired_pairings(now, ROUND).await {
            Ok(expired) => expired,
            Err(error) => {
                tracing::warn!(%error, "expiry sweep could not read");
                break;
            }
        };
        let found = expired.len();
        let mut by_org: HashMap<OrgId, Vec<DeviceId>> = HashMap::new();
        for (org_id, device_id) in expired {
            by_org.entry(org_id).or_default().push(device_id);
        }
        let mut progress = 0;
        for (org_id, device_ids) in by_org {
            let command = ExpireDevices { device_ids };
            match actors.run(Principal::System, org_id, command).await {
                Ok(devices) => progress += devices.len() as u64,
                Err(error) => {
                    tracing::warn!(%org_id, %error, "expiry sweep failed for an organization");
                }
            }
        }
        ended += progress;
        if found < ROUND as usize || progress == 0 {
            break;
        }
    }
    Counters::add(&node.counters.expired_by_sweep, ended);
    ended
}
