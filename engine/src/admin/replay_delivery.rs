//! Sends a webhook's delivery again (a delivered one, or one given up): it is pending again,
//! due now, with the same event id, in its place in the webhook's order.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::WebhookId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayDelivery {
    pub webhook_id: WebhookId,
    pub delivery_id: u64,
}

impl AdminCommand for ReplayDelivery {
    type Reply = ();
    const NAME: &'static str = "replay_delivery";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<(), EngineError> {
        let delivery =
            i64::try_from(self.delivery_id).map_err(|_| EngineError::NotFound("delivery"))?;
        if !tx
            .store
            .replay_delivery(tx.org_id, self.webhook_id, delivery, tx.now)
            .await?
        {
            return Err(EngineError::NotFound("delivery"));
        }
        tx.audit(
            "webhook.replayed",
            self.webhook_id.to_string(),
            json!({ "delivery_id": self.delivery_id }),
        )
        .await
    }

    fn events(&self, _: &()) -> Vec<OrgEvent> {
        Vec::new()
    }
}
