//! Assigns a configuration to devices ("Configure" on many rows at once): all of them, or none
//! if one is unknown. Connected devices receive it at once.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminCommand, CommandTx, validate};
use crate::error::EngineError;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{ConfigId, DeviceId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssignConfiguration {
    pub config_id: ConfigId,
    pub device_ids: Vec<DeviceId>,
}

/// The devices now assigned the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssignedDevices {
    pub configuration_id: ConfigId,
    pub device_ids: Vec<DeviceId>,
}

impl AdminCommand for AssignConfiguration {
    type Reply = AssignedDevices;
    const NAME: &'static str = "assign_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<AssignedDevices, EngineError> {
        Ok(AssignedDevices {
            configuration_id: self.config_id,
            device_ids: assign(tx, self.config_id, &self.device_ids).await?,
        })
    }

    fn events(&self, reply: &AssignedDevices) -> Vec<OrgEvent> {
        vec![OrgEvent::Devices {
            change: DeviceChange::Assigned,
            device_ids: reply.device_ids.clone(),
        }]
    }
}

/// How many devices an assignment's audit entry lists by id and name.
const LISTED_DEVICES: usize = 100;

/// The `device_ids` and `device_names` of an entry that assigns a configuration to `devices`:
/// a short list in full, each device with its name as it is now; a longer one only counted, as
/// `null` (the entry still names every device for the log's device filter).
pub(super) async fn listed(
    tx: &mut CommandTx<'_>,
    devices: &[DeviceId],
) -> Result<(serde_json::Value, serde_json::Value), EngineError> {
    if devices.len() > LISTED_DEVICES {
        return Ok((json!(null), json!(null)));
    }
    let names: serde_json::Map<String, serde_json::Value> = tx
        .store
        .active_devices(devices)
        .await?
        .into_iter()
        .map(|device| (device.id.to_string(), device.details.name.into()))
        .collect();
    Ok((json!(devices), json!(names)))
}

/// Assigns `config_id` to active devices of the organization, all of them or none; returns them
/// (each once).
pub(super) async fn assign(
    tx: &mut CommandTx<'_>,
    config_id: ConfigId,
    device_ids: &[DeviceId],
) -> Result<Vec<DeviceId>, EngineError> {
    if device_ids.is_empty() || device_ids.len() > validate::MAX_DEVICES_PER_ASSIGNMENT {
        return Err(EngineError::invalid(
            "device_ids",
            format!("from 1 to {} devices", validate::MAX_DEVICES_PER_ASSIGNMENT),
        ));
    }
    let row = tx
        .store
        .config_rows(&[config_id])
        .await?
        .into_iter()
        .find(|row| row.org_id == tx.org_id)
        .ok_or(EngineError::NotFound("configuration"))?;
    let mut unique = device_ids.to_vec();
    unique.sort();
    unique.dedup();
    let assigned = tx
        .store
        .assign_configuration(tx.org_id, config_id, &unique, tx.now)
        .await?;
    if assigned.len() != unique.len() {
        // All or nothing: the transaction rolls back, so nothing was assigned.
        return Err(EngineError::NotFound("device"));
    }
    let (device_ids, device_names) = listed(tx, &assigned).await?;
    tx.audit_naming(
        "configuration.assigned",
        config_id.to_string(),
        json!({
            "name": row.name,
            "devices": assigned.len(),
            "device_ids": device_ids,
            "device_names": device_names,
        }),
        assigned.clone(),
    )
    .await?;
    tx.reassign(row, assigned.clone()).await?;
    Ok(assigned)
}
