//! A configuration's history: every revision, newest first, without the bodies.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::ConfigId;
use crate::model::{ConfigurationRevision, Page, PageRequest};

#[derive(Debug, Clone)]
pub struct ListConfigurationRevisions {
    pub config_id: ConfigId,
    pub page: PageRequest,
}

impl Query for ListConfigurationRevisions {
    type Answer = Page<ConfigurationRevision>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Self::Answer, EngineError> {
        reader
            .store
            .list_revisions(reader.org_id(), self.config_id, &self.page)
            .await?
            .ok_or(EngineError::NotFound("configuration"))
    }
}
