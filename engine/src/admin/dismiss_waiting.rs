//! Dismisses a device from the organization's line of devices waiting for a license: it is
//! refused `dismissed` (its connection stays open) and the devices behind it move up.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DismissWaiting {
    pub ticket: u64,
}

impl AdminCommand for DismissWaiting {
    type Reply = ();
    const NAME: &'static str = "dismiss_waiting";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<(), EngineError> {
        let ticket =
            i64::try_from(self.ticket).map_err(|_| EngineError::NotFound("waiting device"))?;
        let left = tx.store.leave_line(tx.org_id, &[ticket]).await?;
        let Some(waiting) = left.first() else {
            return Err(EngineError::NotFound("waiting device"));
        };
        let details = json!({
            "installation_id": waiting.device.installation_id,
            "name": waiting.device.details.name,
            "model": waiting.device.details.model,
            "code_id": waiting.device.code_id,
            "address": waiting.device.peer.to_string(),
            "since": waiting.queued_at,
        });
        tx.audit("waiting.dismissed", self.ticket.to_string(), details)
            .await?;
        tx.line_moved(vec![ticket]).await?;
        Ok(())
    }

    fn events(&self, _: &()) -> Vec<OrgEvent> {
        vec![OrgEvent::Waiting]
    }
}
