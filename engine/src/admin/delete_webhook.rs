//! Deletes a webhook: nothing more is sent to it, its pending deliveries included.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::WebhookId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteWebhook {
    pub webhook_id: WebhookId,
}

impl AdminCommand for DeleteWebhook {
    type Reply = ();
    const NAME: &'static str = "delete_webhook";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<(), EngineError> {
        if !tx
            .store
            .delete_webhook(tx.org_id, self.webhook_id, tx.now)
            .await?
        {
            return Err(EngineError::NotFound("webhook"));
        }
        tx.webhooks_changed();
        tx.audit("webhook.deleted", self.webhook_id.to_string(), json!({}))
            .await
    }

    fn events(&self, _: &()) -> Vec<OrgEvent> {
        Vec::new()
    }
}
