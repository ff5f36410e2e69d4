//! Halts a configuration's running staged rollout: it will not promote itself. The devices it
//! chose keep its revision and the others the stable one, until an admin promotes it or saves
//! the configuration again (which supersedes it). The duty's `advance_rollout` halts the same
//! way when more devices failed to apply the revision than the rollout allows.

use serde::Serialize;
use serde_json::json;

use super::promote_rollout::rollout_in_progress;
use super::stage_configuration::rollout_event;
use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::{RolloutState, StagedRollout};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaltRollout {
    pub config_id: ConfigId,
}

impl AdminCommand for HaltRollout {
    /// The rollout, halted (a halted one is answered as it is).
    type Reply = StagedRollout;
    const NAME: &'static str = "halt_rollout";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<StagedRollout, EngineError> {
        let rollout = rollout_in_progress(tx, self.config_id).await?;
        if rollout.state == RolloutState::Halted {
            return Ok(rollout);
        }
        let failed = tx
            .store
            .failed_staged_devices(rollout.configuration_id, rollout.revision)
            .await?;
        halt(tx, rollout, failed).await
    }

    fn events(&self, rollout: &StagedRollout) -> Vec<OrgEvent> {
        vec![rollout_event(rollout)]
    }
}

/// Halts a running rollout; `failed` devices had failed to apply its revision.
pub(super) async fn halt(
    tx: &mut CommandTx<'_>,
    mut rollout: StagedRollout,
    failed: u64,
) -> Result<StagedRollout, EngineError> {
    let actor = tx.principal.audit_name();
    tx.store
        .set_rollout_state(
            rollout.id,
            RolloutState::Halted,
            tx.now,
            &actor,
            Some(failed),
        )
        .await?;
    let details = json!({
        "revision": rollout.revision,
        "stable_revision": rollout.stable_revision,
        "failed_devices": failed,
        "max_failures": rollout.max_failures,
        "staged_devices": rollout.staged_devices,
    });
    tx.audit(
        "configuration.rollout_halted",
        rollout.configuration_id.to_string(),
        details,
    )
    .await?;
    rollout.state = RolloutState::Halted;
    rollout.ended_at = Some(tx.now);
    rollout.ended_by = Some(actor);
    rollout.failed_devices = Some(failed);
    Ok(rollout)
}
