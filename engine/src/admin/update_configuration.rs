//! Edits a configuration: a new revision, pushed live to every device running it.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::{Configuration, RolloutState};
use crate::store::{ConfigEdit, ConfigRow, ConfigUpdate};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateConfiguration {
    pub config_id: ConfigId,
    /// A new name, a new body, or both.
    pub name: Option<String>,
    pub body: Option<String>,
    /// Refuse the edit unless the configuration is at this revision (optimistic concurrency).
    pub if_revision: Option<u64>,
}

impl AdminCommand for UpdateConfiguration {
    /// The configuration at its new revision, with its body.
    type Reply = Configuration;
    const NAME: &'static str = "update_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Configuration, EngineError> {
        let name = self
            .name
            .as_deref()
            .map(|name| validate::name("name", name, validate::MAX_CONFIGURATION_NAME_BYTES))
            .transpose()?;
        if let Some(body) = &self.body {
            validate::body(body)?;
        }
        if name.is_none() && self.body.is_none() {
            return Err(EngineError::invalid(
                "body",
                "give a new name, a new body, or both",
            ));
        }
        let edit = ConfigEdit {
            name,
            body: self.body.clone(),
            if_revision: self.if_revision,
        };
        save_revision(
            tx,
            self.config_id,
            &edit,
            "configuration.updated",
            json!({}),
        )
        .await
    }

    fn events(&self, _: &Configuration) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations]
    }
}

/// Saves `edit` as the configuration's next revision: kept in its history, written to the audit
/// log as `action` (with `details` and the revision's own), and pushed to every device running
/// the configuration after the commit. A staged rollout in progress is superseded: the new
/// revision is newer than its revision, and every device gets it.
pub(super) async fn save_revision(
    tx: &mut CommandTx<'_>,
    config_id: ConfigId,
    edit: &ConfigEdit,
    action: &str,
    mut details: serde_json::Value,
) -> Result<Configuration, EngineError> {
    let rollout = tx
        .store
        .lock_configuration(tx.org_id, config_id)
        .await?
        .and_then(|head| head.rollout);
    let (mut configuration, previous_name) = match tx
        .store
        .update_configuration(tx.org_id, config_id, edit, tx.now)
        .await?
    {
        ConfigUpdate::Updated {
            configuration,
            previous_name,
        } => (configuration, previous_name),
        ConfigUpdate::NotFound => return Err(EngineError::NotFound("configuration")),
        ConfigUpdate::RevisionMismatch(current) => {
            return Err(EngineError::conflict(
                "revision_mismatch",
                format!("the configuration is at revision {current}, not the expected one"),
            ));
        }
    };
    let body = configuration.body.clone().unwrap_or_default();
    details["revision"] = configuration.revision.into();
    details["name"] = configuration.name.clone().into();
    details["bytes"] = body.len().into();
    if previous_name != configuration.name {
        details["previous_name"] = previous_name.into();
    }
    if let Some(rollout) = rollout {
        let actor = tx.principal.audit_name();
        tx.store
            .set_rollout_state(rollout.id, RolloutState::Superseded, tx.now, &actor, None)
            .await?;
        details["superseded_rollout_revision"] = rollout.revision.into();
        // Read before the rollout ended, in this transaction.
        configuration.staged_revision = None;
    }
    tx.audit(action, config_id.to_string(), details).await?;
    let row = ConfigRow {
        id: configuration.id,
        org_id: configuration.organization_id,
        name: configuration.name.clone(),
        revision: configuration.revision,
        body,
    };
    tx.keep_revision(&row).await?;
    tx.push_revision(row).await?;
    Ok(configuration)
}
