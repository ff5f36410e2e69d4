//! Which configuration new devices get, and by which rule: the one an admin pinned, or the most
//! recently created (the default).

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::NewDeviceConfiguration;

#[derive(Debug, Clone, Copy, Default)]
pub struct GetNewDeviceConfiguration;

impl Query for GetNewDeviceConfiguration {
    type Answer = NewDeviceConfiguration;

    async fn read(&self, reader: &Reader<'_>) -> Result<NewDeviceConfiguration, EngineError> {
        let (pinned, current) = reader
            .store
            .new_device_configuration(reader.org_id())
            .await?;
        Ok(NewDeviceConfiguration::new(
            pinned,
            current.map(|row| (row.id, row.name, row.revision)),
        ))
    }
}
