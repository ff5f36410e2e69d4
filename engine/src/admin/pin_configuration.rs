//! Chooses which configuration new devices get: pins one of the organization's configurations,
//! or unpins (new devices then get the most recently created one again, the default). Devices
//! already paired keep theirs.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::NewDeviceConfiguration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinConfiguration {
    /// The configuration to pin; `None` unpins.
    pub config_id: Option<ConfigId>,
}

impl AdminCommand for PinConfiguration {
    /// The rule and the configuration new devices get from now on.
    type Reply = NewDeviceConfiguration;
    const NAME: &'static str = "pin_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<NewDeviceConfiguration, EngineError> {
        let previous = tx.store.pinned_configuration(tx.org_id).await?;
        if !tx
            .store
            .set_pinned_configuration(tx.org_id, self.config_id)
            .await?
        {
            return Err(EngineError::NotFound("configuration"));
        }
        let current = tx.store.configuration_for_new_devices(tx.org_id).await?;
        let answer = |current: Option<crate::store::ConfigRow>| {
            NewDeviceConfiguration::new(
                self.config_id,
                current.map(|row| (row.id, row.name, row.revision)),
            )
        };
        if previous == self.config_id {
            // Nothing changed: nothing to write down.
            return Ok(answer(current));
        }
        match self.config_id {
            Some(config_id) => {
                let name = current.as_ref().map(|row| row.name.clone());
                tx.audit(
                    "configuration.pinned",
                    config_id.to_string(),
                    json!({ "name": name }),
                )
                .await?;
            }
            None => {
                let previous = previous.map(|id| id.to_string()).unwrap_or_default();
                tx.audit(
                    "configuration.unpinned",
                    previous,
                    json!({ "now_newest": current.as_ref().map(|row| row.id) }),
                )
                .await?;
            }
        }
        Ok(answer(current))
    }

    fn events(&self, _: &NewDeviceConfiguration) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations]
    }
}
