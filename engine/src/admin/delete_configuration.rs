//! Deletes a configuration that no device is assigned and that is not pinned for new devices.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::store::ConfigDelete;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteConfiguration {
    pub config_id: ConfigId,
}

impl AdminCommand for DeleteConfiguration {
    type Reply = ();
    const NAME: &'static str = "delete_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<(), EngineError> {
        // Read with the organization locked, so that it cannot be pinned while it goes.
        if tx.store.pinned_configuration(tx.org_id).await? == Some(self.config_id) {
            return Err(EngineError::conflict(
                "configuration_in_use",
                "the configuration is pinned for new devices; unpin it or pin another first",
            ));
        }
        // The configuration locked before its codes are counted: a code being made to carry it
        // meanwhile is then either counted or finds it gone (never a dangling reference).
        tx.store
            .lock_configuration(tx.org_id, self.config_id)
            .await?
            .ok_or(EngineError::NotFound("configuration"))?;
        let carrying = tx.store.codes_carrying(self.config_id, tx.now).await?;
        if carrying > 0 {
            return Err(EngineError::conflict(
                "configuration_in_use",
                format!(
                    "{carrying} usable code(s) give the configuration to the devices they pair; revoke them first"
                ),
            ));
        }
        let name = match tx
            .store
            .delete_configuration(tx.org_id, self.config_id)
            .await?
        {
            ConfigDelete::Deleted { name } => name,
            ConfigDelete::NotFound => return Err(EngineError::NotFound("configuration")),
            ConfigDelete::InUse(devices) => {
                return Err(EngineError::conflict(
                    "configuration_in_use",
                    format!(
                        "the configuration is assigned to {devices} device(s); assign them another one first"
                    ),
                ));
            }
        };
        tx.audit(
            "configuration.deleted",
            self.config_id.to_string(),
            json!({ "name": name }),
        )
        .await?;
        tx.forget_configuration(self.config_id);
        Ok(())
    }

    fn events(&self, _: &()) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations]
    }
}
