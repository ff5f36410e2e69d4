//! One revision of a configuration, with its body as it was saved.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::ConfigId;
use crate::model::ConfigurationRevision;

#[derive(Debug, Clone, Copy)]
pub struct GetConfigurationRevision {
    pub config_id: ConfigId,
    pub revision: u64,
}

impl Query for GetConfigurationRevision {
    type Answer = ConfigurationRevision;

    async fn read(&self, reader: &Reader<'_>) -> Result<ConfigurationRevision, EngineError> {
        saved(reader, self.config_id, self.revision).await
    }
}

/// The revision, or which of the configuration and the revision does not exist.
pub(super) async fn saved(
    reader: &Reader<'_>,
    config_id: ConfigId,
    revision: u64,
) -> Result<ConfigurationRevision, EngineError> {
    if let Some(saved) = reader
        .store
        .revision(reader.org_id(), config_id, revision)
        .await?
    {
        return Ok(saved);
    }
    match reader
        .store
        .configuration(reader.org_id(), config_id)
        .await?
    {
        Some(_) => Err(EngineError::NotFound("revision")),
        None => Err(EngineError::NotFound("configuration")),
    }
}
