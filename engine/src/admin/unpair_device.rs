//! Unpairs a device: frees its license, ends its credential, and tells it (if connected) before
//! closing its connection.

use serde::{Deserialize, Serialize};

use super::{AdminCommand, CommandTx};
use crate::audit;
use crate::error::EngineError;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{DeviceId, LicenseId};
use crate::store::PairingEnd;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnpairDevice {
    pub device_id: DeviceId,
}

/// The device unpaired, and the license it freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnpairedDevice {
    pub device_id: DeviceId,
    pub license_id: LicenseId,
}

impl AdminCommand for UnpairDevice {
    type Reply = UnpairedDevice;
    /// The name this command has always had in fingerprints.
    const NAME: &'static str = "unpair";
    const FREES_LICENSES: bool = true;

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<UnpairedDevice, EngineError> {
        // Read first, so that the entry keeps what the device last said of itself.
        let active = tx.own_device(self.device_id).await?;
        let ended = tx
            .store
            .end_devices(&[active.id], PairingEnd::Unpaired, tx.now)
            .await?;
        let Some(device) = ended.first().copied() else {
            return Err(EngineError::NotFound("device"));
        };
        tx.audit_naming(
            "device.unpaired",
            self.device_id.to_string(),
            audit::ended_device(&active),
            vec![self.device_id],
        )
        .await?;
        tx.end_sessions(&ended, PairingEnd::Unpaired).await?;
        Ok(UnpairedDevice {
            device_id: self.device_id,
            license_id: device.license_id,
        })
    }

    fn events(&self, _: &UnpairedDevice) -> Vec<OrgEvent> {
        vec![OrgEvent::Devices {
            change: DeviceChange::Ended,
            device_ids: vec![self.device_id],
        }]
    }
}
