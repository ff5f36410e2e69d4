//! The organization's paired devices, by id.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{Device, Page, PageRequest};

#[derive(Debug, Clone, Default)]
pub struct ListDevices {
    pub page: PageRequest,
}

impl Query for ListDevices {
    type Answer = Page<Device>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<Device>, EngineError> {
        Ok(reader
            .store
            .list_devices(reader.org_id(), &self.page)
            .await?)
    }
}
