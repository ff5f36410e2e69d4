//! How a configuration's revisions have reached the devices: applied and failed per revision,
//! how many assigned devices run the revision they should, and the latest staged rollout.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::ConfigId;
use crate::model::ConfigurationRollout;

#[derive(Debug, Clone, Copy)]
pub struct GetConfigurationRollout {
    pub config_id: ConfigId,
}

impl Query for GetConfigurationRollout {
    type Answer = ConfigurationRollout;

    async fn read(&self, reader: &Reader<'_>) -> Result<ConfigurationRollout, EngineError> {
        // Three reads, not one snapshot: the rollout first, so that a rollout read as promoted
        // is never shown beside the configuration's revision from before the promotion (the
        // configuration, read after, has it).
        let staged = reader
            .store
            .latest_rollout(reader.org_id(), self.config_id)
            .await?;
        let configuration = reader
            .store
            .configuration(reader.org_id(), self.config_id)
            .await?
            .ok_or(EngineError::NotFound("configuration"))?;
        let reports = reader
            .store
            .configuration_reports(reader.org_id(), self.config_id)
            .await?;
        Ok(ConfigurationRollout::from_reports(
            &configuration,
            &reports,
            staged,
        ))
    }
}
