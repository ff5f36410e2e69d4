//! Starts a staged rollout: an edit of a configuration saved as its next revision, which only
//! the devices chosen (a share at random, or a list) run at first. The others keep the
//! configuration's revision (the stable one) until the rollout is promoted, by an admin
//! (`promote_rollout`) or by itself after `promote_after_seconds` with no more failed
//! acknowledgements than `max_failures` (the expiry duty's `advance_rollout`); more failures
//! halt it.
//!
//! Revisions only grow for every device: a rollout started while another is in progress
//! supersedes it and takes over its devices (they move on to the new revision, never back), and
//! a plain edit or a revert supersedes it with a newer revision for all.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, MAX_IDS_PER_BULK_COMMAND, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{ConfigId, DeviceId, RolloutId, Timestamp};
use crate::model::{RolloutState, StagedRollout};
use crate::store::{ConfigRow, StageChoice};

/// Shortest and longest wait before a rollout promotes itself.
pub const ROLLOUT_PROMOTE_AFTER_MIN_SECONDS: u64 = 60;
pub const ROLLOUT_PROMOTE_AFTER_MAX_SECONDS: u64 = 90 * 24 * 3600;
/// Most failed acknowledgements a rollout may be told to tolerate.
pub const ROLLOUT_MAX_FAILURES_LIMIT: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageConfiguration {
    pub config_id: ConfigId,
    /// The new revision's body (the name stays).
    pub body: String,
    /// Refuse unless the configuration's latest revision is this one.
    pub if_revision: Option<u64>,
    pub audience: RolloutAudience,
    /// Promote by itself this long after the start, unless halted; `None`: only an admin
    /// promotes it.
    pub promote_after_seconds: Option<u64>,
    /// More failed acknowledgements of the new revision than this halt the rollout.
    pub max_failures: u64,
}

/// Which devices run the staged revision first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RolloutAudience {
    /// This share of the configuration's active devices, in percent, chosen at random.
    Share(u8),
    /// These devices, each an active device assigned the configuration.
    Devices(Vec<DeviceId>),
}

impl AdminCommand for StageConfiguration {
    type Reply = StagedRollout;
    const NAME: &'static str = "stage_configuration";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<StagedRollout, EngineError> {
        validate::body(&self.body)?;
        let choice = match &self.audience {
            RolloutAudience::Share(share) if (1..=100).contains(share) => None,
            RolloutAudience::Share(_) => {
                return Err(EngineError::invalid("share_percent", "1 to 100"));
            }
            RolloutAudience::Devices(ids)
                if !ids.is_empty() && ids.len() <= MAX_IDS_PER_BULK_COMMAND =>
            {
                Some(ids.as_slice())
            }
            RolloutAudience::Devices(_) => {
                return Err(EngineError::invalid(
                    "device_ids",
                    format!("1 to {MAX_IDS_PER_BULK_COMMAND} devices"),
                ));
            }
        };
        let promote_at = match self.promote_after_seconds {
            None => None,
            Some(seconds)
                if (ROLLOUT_PROMOTE_AFTER_MIN_SECONDS..=ROLLOUT_PROMOTE_AFTER_MAX_SECONDS)
                    .contains(&seconds) =>
            {
                Some(Timestamp(tx.now.0 + (seconds as i64) * 1000))
            }
            Some(_) => {
                return Err(EngineError::invalid(
                    "promote_after_seconds",
                    format!(
                        "{ROLLOUT_PROMOTE_AFTER_MIN_SECONDS} to \
                         {ROLLOUT_PROMOTE_AFTER_MAX_SECONDS} seconds, or null to promote by hand"
                    ),
                ));
            }
        };
        if self.max_failures > ROLLOUT_MAX_FAILURES_LIMIT {
            return Err(EngineError::invalid(
                "max_failures",
                format!("0 to {ROLLOUT_MAX_FAILURES_LIMIT}"),
            ));
        }

        let head = tx
            .store
            .lock_configuration(tx.org_id, self.config_id)
            .await?
            .ok_or(EngineError::NotFound("configuration"))?;
        let latest = head
            .rollout
            .as_ref()
            .map_or(head.revision, |rollout| rollout.revision.max(head.revision));
        if self.if_revision.is_some_and(|expected| expected != latest) {
            return Err(EngineError::conflict(
                "revision_mismatch",
                format!("the configuration is at revision {latest}, not the expected one"),
            ));
        }
        let row = ConfigRow {
            id: self.config_id,
            org_id: tx.org_id,
            name: head.name.clone(),
            revision: latest + 1,
            body: self.body.clone(),
        };
        tx.keep_revision(&row).await?;
        let actor = tx.principal.audit_name();
        if let Some(previous) = &head.rollout {
            tx.store
                .set_rollout_state(previous.id, RolloutState::Superseded, tx.now, &actor, None)
                .await?;
        }

        let choice = match choice {
            Some(ids) => StageChoice::Devices(ids),
            None => {
                let assigned = tx.store.assigned_devices(self.config_id).await?;
                let RolloutAudience::Share(share) = self.audience else {
                    unreachable!("a share was checked above")
                };
                StageChoice::Random((assigned * u64::from(share)).div_ceil(100))
            }
        };
        let staged = tx
            .store
            .stage_devices(
                tx.org_id,
                self.config_id,
                head.revision,
                row.revision,
                choice,
            )
            .await?;
        if let StageChoice::Devices(ids) = choice
            && let Some(missing) = ids.iter().find(|id| staged.binary_search(id).is_err())
        {
            return Err(EngineError::invalid(
                "device_ids",
                format!("{missing} is not an active device assigned this configuration"),
            ));
        }

        let rollout = StagedRollout {
            id: RolloutId::generate(),
            configuration_id: self.config_id,
            revision: row.revision,
            stable_revision: head.revision,
            state: RolloutState::Running,
            share_percent: match self.audience {
                RolloutAudience::Share(share) => Some(share),
                RolloutAudience::Devices(_) => None,
            },
            chosen_devices: staged.len() as u64,
            staged_devices: staged.len() as u64,
            max_failures: self.max_failures,
            promote_at,
            started_at: tx.now,
            started_by: actor,
            ended_at: None,
            ended_by: None,
            failed_devices: None,
        };
        tx.store.insert_rollout(tx.org_id, &rollout).await?;
        let details = json!({
            "name": row.name,
            "revision": rollout.revision,
            "stable_revision": rollout.stable_revision,
            "bytes": row.body.len(),
            "share_percent": rollout.share_percent,
            "chosen_devices": rollout.chosen_devices,
            "max_failures": rollout.max_failures,
            "promote_at": rollout.promote_at,
            "superseded_revision": head.rollout.as_ref().map(|previous| previous.revision),
        });
        tx.audit_naming(
            "configuration.rollout_started",
            self.config_id.to_string(),
            details,
            staged.clone(),
        )
        .await?;
        tx.stage(row, staged).await?;
        Ok(rollout)
    }

    fn events(&self, rollout: &StagedRollout) -> Vec<OrgEvent> {
        vec![OrgEvent::Configurations, rollout_event(rollout)]
    }
}

/// The live feed's word of a rollout's new state.
pub(super) fn rollout_event(rollout: &StagedRollout) -> OrgEvent {
    OrgEvent::Rollout {
        configuration_id: rollout.configuration_id,
        state: rollout.state,
    }
}
