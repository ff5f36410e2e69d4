//! Reverts a configuration to an earlier revision: that revision's body is saved as a new
//! revision (revisions only grow, so no device ever sees its revision number go back), pushed
//! live to every device running the configuration like any edit. The name stays as it is.

use serde::Serialize;
use serde_json::json;

use super::update_configuration::save_revision;
use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::Configuration;
use crate::store::ConfigEdit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevertConfiguration {
    pub config_id: ConfigId,
    /// The revision whose body becomes current again.
    pub revision: u64,
    /// Refuse unless the configuration is at this revision (optimistic concurrency).
    pub if_revision: Option<u64>,
}

impl AdminCommand for RevertConfiguration {
    /// The configuration at its new revision, with its body.
    type Reply = Configuration;
    const NAME: &'static str = "revert_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Configuration, EngineError> {
        let saved = tx
            .store
            .saved_revision(tx.org_id, self.config_id, self.revision)
            .await?;
        let Some(saved) = saved else {
            // The configuration itself missing says so; otherwise it is the revision.
            let rows = tx.store.config_rows(&[self.config_id]).await?;
            let exists = rows.iter().any(|row| row.org_id == tx.org_id);
            return Err(EngineError::NotFound(if exists {
                "revision"
            } else {
                "configuration"
            }));
        };
        let edit = ConfigEdit {
            name: None,
            body: saved.body,
            if_revision: self.if_revision,
        };
        save_revision(
            tx,
            self.config_id,
            &edit,
            "configuration.reverted",
            json!({ "reverted_to": self.revision }),
        )
        .await
    }

    fn events(&self, _: &Configuration) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations]
    }
}
