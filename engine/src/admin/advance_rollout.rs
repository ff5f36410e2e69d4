//! The expiry duty's decision on a running staged rollout (`duties::rollouts`), re-checked in
//! the organization's transaction: more failed acknowledgements of its revision than it allows
//! halt it; otherwise, once its `promote_at` has come, it is promoted. No admin sends it.

use serde::Serialize;

use super::halt_rollout::halt;
use super::promote_rollout::promote;
use super::stage_configuration::rollout_event;
use super::{AdminCommand, CommandTx, Principal};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::ConfigId;
use crate::model::{RolloutState, StagedRollout};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdvanceRollout {
    pub config_id: ConfigId,
}

impl AdminCommand for AdvanceRollout {
    /// The rollout, if this halted or promoted it.
    type Reply = Option<StagedRollout>;
    const NAME: &'static str = "advance_rollout";

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_system("only the expiry duty advances rollouts by itself")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Option<StagedRollout>, EngineError> {
        let Some(head) = tx
            .store
            .lock_configuration(tx.org_id, self.config_id)
            .await?
        else {
            return Ok(None);
        };
        let Some(rollout) = head.rollout.filter(|r| r.state == RolloutState::Running) else {
            return Ok(None);
        };
        let failed = tx
            .store
            .failed_staged_devices(rollout.configuration_id, rollout.revision)
            .await?;
        if failed > rollout.max_failures {
            return halt(tx, rollout, failed).await.map(Some);
        }
        if rollout.promote_at.is_some_and(|at| at <= tx.now) {
            return promote(tx, rollout).await.map(Some);
        }
        Ok(None)
    }

    fn events(&self, rollout: &Option<StagedRollout>) -> Vec<OrgEvent> {
        match rollout {
            Some(rollout) if rollout.state == RolloutState::Promoted => {
                vec![OrgEvent::Configurations, rollout_event(rollout)]
            }
            Some(rollout) => vec![rollout_event(rollout)],
            None => Vec::new(),
        }
    }
}
