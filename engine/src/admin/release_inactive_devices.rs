//! Releases the licenses of devices not seen for longer than their organization allows
//! (`release_inactive_after_days`): the expiry duty's second command; no admin may send it.
//! Each device's pairing ends as `released_inactive`, its license is free for another device,
//! and the device is told so if it comes back.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, Principal};
use crate::audit;
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{DeviceId, Timestamp};
use crate::store::PairingEnd;

/// A day in the unit of timestamps.
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseInactiveDevices {
    pub device_ids: Vec<DeviceId>,
}

impl AdminCommand for ReleaseInactiveDevices {
    /// The devices whose license it released.
    type Reply = Vec<DeviceId>;
    const NAME: &'static str = "release_inactive_devices";
    const FREES_LICENSES: bool = true;

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_system("only the expiry duty releases inactive devices")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Vec<DeviceId>, EngineError> {
        // Re-checked in the transaction, by the setting as it is now: only devices still
        // active, offline and unseen since before the cut-off are released.
        let Some(days) = tx.store.inactive_release(tx.org_id).await? else {
            return Ok(Vec::new());
        };
        let cutoff = Timestamp(tx.now.0.saturating_sub(i64::from(days) * DAY_MS));
        let presence = tx.store.device_presence(&self.device_ids).await?;
        let inactive: Vec<DeviceId> = presence
            .iter()
            .filter(|device| !device.online && device.last_seen < cutoff)
            .map(|device| device.device_id)
            .collect();
        if inactive.is_empty() {
            return Ok(Vec::new());
        }
        let devices: Vec<_> = tx
            .store
            .active_devices(&inactive)
            .await?
            .into_iter()
            .filter(|device| device.org_id == tx.org_id)
            .collect();
        let ids: Vec<DeviceId> = devices.iter().map(|device| device.id).collect();
        let ended = tx
            .store
            .end_devices(&ids, PairingEnd::ReleasedInactive, tx.now)
            .await?;
        for device in &ended {
            let Some(active) = devices.iter().find(|active| active.id == device.device_id) else {
                continue;
            };
            let last_seen = presence
                .iter()
                .find(|seen| seen.device_id == device.device_id)
                .map(|seen| seen.last_seen);
            let mut details = audit::ended_device(active);
            details["last_seen"] = json!(last_seen);
            details["after_days"] = json!(days);
            tx.audit_naming(
                "device.released_inactive",
                device.device_id.to_string(),
                details,
                vec![device.device_id],
            )
            .await?;
        }
        tx.end_sessions(&ended, PairingEnd::ReleasedInactive)
            .await?;
        Ok(ended.iter().map(|device| device.device_id).collect())
    }

    fn events(&self, ended: &Vec<DeviceId>) -> Vec<OrgEvent> {
        OrgEvent::ended(ended)
    }
}
