//! Assigns a configuration to one device ("Configure → pick → Save") and answers the device as
//! it now is.

use serde::Serialize;

use super::assign_configuration::assign;
use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{ConfigId, DeviceId};
use crate::model::Device;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigureDevice {
    pub device_id: DeviceId,
    pub config_id: ConfigId,
}

impl AdminCommand for ConfigureDevice {
    /// The device with its new assignment, read in the command's transaction.
    type Reply = Device;
    const NAME: &'static str = "configure_device";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Device, EngineError> {
        assign(tx, self.config_id, &[self.device_id]).await?;
        tx.store
            .device(tx.org_id, self.device_id)
            .await?
            .ok_or(EngineError::NotFound("device"))
    }

    fn events(&self, _: &Device) -> Vec<OrgEvent> {
        vec![OrgEvent::Devices {
            change: DeviceChange::Assigned,
            device_ids: vec![self.device_id],
        }]
    }
}
