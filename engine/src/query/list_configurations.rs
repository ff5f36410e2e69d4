//! The organization's configurations, without their bodies.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{Configuration, Page, PageRequest};

#[derive(Debug, Clone, Default)]
pub struct ListConfigurations {
    pub page: PageRequest,
}

impl Query for ListConfigurations {
    type Answer = Page<Configuration>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<Configuration>, EngineError> {
        Ok(reader
            .store
            .list_configurations(reader.org_id(), &self.page)
            .await?)
    }
}
