//! Ends the pairings whose license expired (the expiry sweep's command; no admin may send it).

use serde::Serialize;

use super::{AdminCommand, CommandTx, Principal};
use crate::audit;
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::DeviceId;
use crate::store::{ActiveDevice, PairingEnd};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpireDevices {
    pub device_ids: Vec<DeviceId>,
}

impl AdminCommand for ExpireDevices {
    /// The devices whose pairing it ended.
    type Reply = Vec<DeviceId>;
    const NAME: &'static str = "expire_devices";
    const FREES_LICENSES: bool = true;

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_system("only the expiry sweep ends expired pairings")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Vec<DeviceId>, EngineError> {
        // Re-checked in the transaction: only pairings whose license is still expired end.
        let still_expired: Vec<ActiveDevice> = tx
            .store
            .active_devices(&self.device_ids)
            .await?
            .into_iter()
            .filter(|device| device.org_id == tx.org_id && device.license_expired_at(tx.now))
            .collect();
        if still_expired.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<DeviceId> = still_expired.iter().map(|device| device.id).collect();
        let ended = tx
            .store
            .end_devices(&ids, PairingEnd::LicenseExpired, tx.now)
            .await?;
        for device in &ended {
            let Some(active) = still_expired
                .iter()
                .find(|active| active.id == device.device_id)
            else {
                continue;
            };
            tx.audit_naming(
                "device.license_expired",
                device.device_id.to_string(),
                audit::ended_device(active),
                vec![device.device_id],
            )
            .await?;
        }
        tx.end_sessions(&ended, PairingEnd::LicenseExpired).await?;
        Ok(ended.iter().map(|device| device.device_id).collect())
    }

    fn events(&self, ended: &Vec<DeviceId>) -> Vec<OrgEvent> {
        OrgEvent::ended(ended)
    }
}
