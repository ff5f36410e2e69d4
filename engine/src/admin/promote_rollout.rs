//! Promotes a configuration's staged rollout (running or halted): its revision becomes the
//! configuration's own, so every device of the configuration runs it, pushed live to those
//! connected. The duty's `advance_rollout` promotes the same way when the time comes.

use serde::Serialize;
use serde_json::json;

use super::stage_configuration::rollout_event;
use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::{RolloutState, StagedRollout};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromoteRollout {
    pub config_id: ConfigId,
}

impl AdminCommand for PromoteRollout {
    /// The rollout, promoted.
    type Reply = StagedRollout;
    const NAME: &'static str = "promote_rollout";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<StagedRollout, EngineError> {
        let rollout = rollout_in_progress(tx, self.config_id).await?;
        promote(tx, rollout).await
    }

    fn events(&self, rollout: &StagedRollout) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations, rollout_event(rollout)]
    }
}

/// The configuration's rollout in progress, with the configuration locked; refused when it
/// has none.
pub(super) async fn rollout_in_progress(
    tx: &mut CommandTx<'_>,
    config_id: ConfigId,
) -> Result<StagedRollout, EngineError> {
    tx.store
        .lock_configuration(tx.org_id, config_id)
        .await?
        .ok_or(EngineError::NotFound("configuration"))?
        .rollout
        .ok_or_else(|| {
            EngineError::conflict(
                "no_rollout_in_progress",
                "the configuration has no staged rollout in progress",
            )
        })
}

/// Makes the rollout's revision the configuration's, for every device.
pub(super) async fn promote(
    tx: &mut CommandTx<'_>,
    mut rollout: StagedRollout,
) -> Result<StagedRollout, EngineError> {
    let row = tx
        .store
        .promote_revision(rollout.configuration_id, rollout.revision, tx.now)
        .await?
        .ok_or(EngineError::Internal)?;
    let actor = tx.principal.audit_name();
    tx.store
        .set_rollout_state(rollout.id, RolloutState::Promoted, tx.now, &actor, None)
        .await?;
    let details = json!({
        "name": row.name,
        "revision": rollout.revision,
        "stable_revision": rollout.stable_revision,
        "staged_devices": rollout.staged_devices,
        "was": rollout.state,
    });
    tx.audit(
        "configuration.rollout_promoted",
        rollout.configuration_id.to_string(),
        details,
    )
    .await?;
    tx.push_revision(row).await?;
    rollout.state = RolloutState::Promoted;
    rollout.ended_at = Some(tx.now);
    rollout.ended_by = Some(actor);
    rollout.staged_devices = 0;
    Ok(rollout)
}
