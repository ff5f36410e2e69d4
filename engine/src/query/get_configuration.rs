//! One configuration of the organization, with its body.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::ConfigId;
use crate::model::Configuration;

#[derive(Debug, Clone, Copy)]
pub struct GetConfiguration {
    pub config_id: ConfigId,
}

impl Query for GetConfiguration {
    type Answer = Configuration;

    async fn read(&self, reader: &Reader<'_>) -> Result<Configuration, EngineError> {
        reader
            .store
            .configuration(reader.org_id(), self.config_id)
            .await?
            .ok_or(EngineError::NotFound("configuration"))
    }
}
