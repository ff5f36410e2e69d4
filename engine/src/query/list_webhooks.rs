//! The organization's webhooks (never their secrets), and one webhook's deliveries.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::WebhookId;
use crate::model::{Page, PageRequest, Webhook, WebhookDelivery};

#[derive(Debug, Clone, Copy, Default)]
pub struct ListWebhooks;

impl Query for ListWebhooks {
    type Answer = Vec<Webhook>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Vec<Webhook>, EngineError> {
        Ok(reader.store.list_webhooks(reader.org_id()).await?)
    }
}

#[derive(Debug, Clone)]
pub struct ListDeliveries {
    pub webhook_id: WebhookId,
    pub page: PageRequest,
}

impl Query for ListDeliveries {
    type Answer = Page<WebhookDelivery>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<WebhookDelivery>, EngineError> {
        reader
            .store
            .list_deliveries(reader.org_id(), self.webhook_id, &self.page)
            .await?
            .ok_or(EngineError::NotFound("webhook"))
    }
}
