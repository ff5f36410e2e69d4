//! Unpairs many devices at once (by ids, by a fleet filter, or all): frees their licenses, ends
//! their credentials, and tells those connected (on any node) before closing their connections.
//! One audit entry with the count, naming every device it unpaired.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::selection::Selection;
use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::DeviceId;
use crate::store::PairingEnd;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnpairDevices {
    pub selection: Selection<DeviceId>,
}

/// How many active devices of the organization the selection matched, and how many it
/// unpaired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnpairedDevices {
    pub matched: u64,
    pub unpaired: u64,
    /// The devices unpaired (for the live feed; not answered).
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub device_ids: Vec<DeviceId>,
}

impl AdminCommand for UnpairDevices {
    type Reply = UnpairedDevices;
    const NAME: &'static str = "unpair_devices";
    const FREES_LICENSES: bool = true;

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<UnpairedDevices, EngineError> {
        let matched = self.selection.devices(tx).await?;
        let ended = tx
            .store
            .end_devices(&matched, PairingEnd::Unpaired, tx.now)
            .await?;
        let device_ids: Vec<DeviceId> = ended.iter().map(|device| device.device_id).collect();
        let mut details = self.selection.described("device_ids");
        details["matched"] = json!(matched.len());
        details["unpaired"] = json!(ended.len());
        tx.audit_naming(
            "devices.unpaired",
            "devices".to_string(),
            details,
            device_ids.clone(),
        )
        .await?;
        tx.end_sessions(&ended, PairingEnd::Unpaired).await?;
        Ok(UnpairedDevices {
            matched: matched.len() as u64,
            unpaired: ended.len() as u64,
            device_ids,
        })
    }

    fn events(&self, reply: &UnpairedDevices) -> Vec<OrgEvent> {
        OrgEvent::ended(&reply.device_ids)
    }
}
