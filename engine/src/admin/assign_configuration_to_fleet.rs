//! Assigns a configuration to the devices a fleet filter matches (or to all of the
//! organization's devices). Devices that already have it are matched but left alone; the others
//! receive it at once if connected (on any node). One audit entry with the counts.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::assign_configuration::listed;
use super::selection::Selection;
use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{ConfigId, DeviceId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssignConfigurationToFleet {
    pub config_id: ConfigId,
    pub selection: Selection<DeviceId>,
}

/// How many devices matched, and how many were given the configuration (the others had it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssignedToFleet {
    pub configuration_id: ConfigId,
    pub matched: u64,
    pub assigned: u64,
    /// The devices newly assigned (for the live feed; not answered).
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub device_ids: Vec<DeviceId>,
}

impl AdminCommand for AssignConfigurationToFleet {
    type Reply = AssignedToFleet;
    const NAME: &'static str = "assign_configuration_to_fleet";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<AssignedToFleet, EngineError> {
        let row = tx
            .store
            .config_rows(&[self.config_id])
            .await?
            .into_iter()
            .find(|row| row.org_id == tx.org_id)
            .ok_or(EngineError::NotFound("configuration"))?;
        let matched = self.selection.devices(tx).await?;
        // Those that already have it are left alone.
        let changing: Vec<DeviceId> = tx
            .store
            .active_devices(&matched)
            .await?
            .into_iter()
            .filter(|device| device.org_id == tx.org_id && device.config_id != Some(self.config_id))
            .map(|device| device.id)
            .collect();
        let assigned = if changing.is_empty() {
            Vec::new()
        } else {
            tx.store
                .assign_configuration(tx.org_id, self.config_id, &changing, tx.now)
                .await?
        };
        let (device_ids, device_names) = listed(tx, &assigned).await?;
        let mut details = self.selection.described("selected_device_ids");
        details["name"] = json!(row.name);
        details["devices"] = json!(assigned.len());
        details["matched"] = json!(matched.len());
        details["device_ids"] = device_ids;
        details["device_names"] = device_names;
        tx.audit_naming(
            "configuration.assigned",
            self.config_id.to_string(),
            details,
            assigned.clone(),
        )
        .await?;
        tx.reassign(row, assigned.clone()).await?;
        Ok(AssignedToFleet {
            configuration_id: self.config_id,
            matched: matched.len() as u64,
            assigned: assigned.len() as u64,
            device_ids: assigned,
        })
    }

    fn events(&self, reply: &AssignedToFleet) -> Vec<OrgEvent> {
        if reply.device_ids.is_empty() {
            return Vec::new();
        }
        vec![OrgEvent::Devices {
            change: DeviceChange::Assigned,
            device_ids: reply.device_ids.clone(),
        }]
    }
}
