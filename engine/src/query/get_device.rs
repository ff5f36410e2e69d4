//! One paired device of the organization.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::DeviceId;
use crate::model::Device;

#[derive(Debug, Clone, Copy)]
pub struct GetDevice {
    pub device_id: DeviceId,
}

impl Query for GetDevice {
    type Answer = Device;

    async fn read(&self, reader: &Reader<'_>) -> Result<Device, EngineError> {
        reader
            .store
            .device(reader.org_id(), self.device_id)
            .await?
            .ok_or(EngineError::NotFound("device"))
    }
}
