//! Sets the organization's inactive-device release: the license of an offline device not seen
//! for this many days is released by the expiry duty (`ReleaseInactiveDevices`). Off by
//! default; `None` turns it off again.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::model::InactiveRelease;

/// The longest setting: ten years.
pub const MAX_INACTIVE_RELEASE_DAYS: u32 = 3650;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetInactiveRelease {
    /// Days, 1 to [`MAX_INACTIVE_RELEASE_DAYS`]; `None`: off.
    pub after_days: Option<u32>,
}

impl AdminCommand for SetInactiveRelease {
    type Reply = InactiveRelease;
    const NAME: &'static str = "set_inactive_release";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<InactiveRelease, EngineError> {
        if self
            .after_days
            .is_some_and(|days| !(1..=MAX_INACTIVE_RELEASE_DAYS).contains(&days))
        {
            return Err(EngineError::invalid(
                "after_days",
                "must be between 1 and 3650 days, or null to turn the release off",
            ));
        }
        let previous = tx.store.inactive_release(tx.org_id).await?;
        let answer = InactiveRelease {
            after_days: self.after_days,
        };
        if previous == self.after_days {
            return Ok(answer);
        }
        tx.store
            .set_inactive_release(tx.org_id, self.after_days)
            .await?;
        tx.audit(
            "organization.inactive_release_set",
            tx.org_id.to_string(),
            json!({ "after_days": self.after_days, "previous": previous }),
        )
        .await?;
        Ok(answer)
    }

    /// The live feed has no event for an organization's settings; nothing a watcher lists
    /// changes until the duty releases a device (which it reports).
    fn events(&self, _: &InactiveRelease) -> Vec<OrgEvent> {
        Vec::new()
    }
}
