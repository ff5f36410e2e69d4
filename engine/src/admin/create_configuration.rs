//! Creates a configuration. New devices get the organization's newest one; devices that paired
//! while the organization had none receive this one at once.

use serde::Serialize;
use serde_json::json;

use super::assign_configuration::listed;
use super::{AdminCommand, CommandTx, quota, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::Configuration;
use crate::store::{ConfigRow, Quota};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateConfiguration {
    pub name: String,
    /// The INI text, stored and delivered byte for byte; refused if the app could not read it.
    pub body: String,
}

impl AdminCommand for CreateConfiguration {
    type Reply = Configuration;
    const NAME: &'static str = "create_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Configuration, EngineError> {
        let name = validate::name("name", &self.name, validate::MAX_CONFIGURATION_NAME_BYTES)?;
        validate::body(&self.body)?;
        quota::ensure_room(tx, Quota::Configurations).await?;
        let row = ConfigRow {
            id: ConfigId::generate(),
            org_id: tx.org_id,
            name,
            revision: 1,
            body: self.body.clone(),
        };
        tx.store.insert_configuration(&row, tx.now).await?;
        tx.keep_revision(&row).await?;
        // Devices that paired before any configuration existed have been waiting for this one.
        let waiting = tx
            .store
            .assign_waiting_devices(tx.org_id, row.id, tx.now)
            .await?;
        let (device_ids, device_names) = listed(tx, &waiting).await?;
        tx.audit_naming(
            "configuration.created",
            row.id.to_string(),
            json!({
                "name": row.name,
                "bytes": row.body.len(),
                "assigned_to_waiting_devices": waiting.len(),
                "device_ids": device_ids,
                "device_names": device_names,
            }),
            waiting.clone(),
        )
        .await?;
        let configuration = Configuration {
            staged_revision: None,
            id: row.id,
            organization_id: tx.org_id,
            name: row.name.clone(),
            revision: row.revision,
            created_at: tx.now,
            updated_at: tx.now,
            assigned_devices: waiting.len() as u64,
            body: Some(row.body.clone()),
        };
        tx.reassign(row, waiting).await?;
        Ok(configuration)
    }

    fn events(&self, _: &Configuration) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations]
    }
}
