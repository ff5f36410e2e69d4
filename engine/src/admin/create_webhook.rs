//! Registers a webhook: an endpoint that receives the organization's events of the chosen
//! kinds, each delivery signed with a secret shown only in this answer.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::WebhookId;
use crate::model::{CreatedWebhook, Webhook};
use crate::{secrets, webhooks};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateWebhook {
    pub url: String,
    pub events: Vec<String>,
    /// For `licenses_expiring`: tell of licenses that end within this many days (1 to 90).
    pub expiring_within_days: u32,
}

impl AdminCommand for CreateWebhook {
    type Reply = CreatedWebhook;
    const NAME: &'static str = "create_webhook";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<CreatedWebhook, EngineError> {
        webhooks::check_url(&self.url).map_err(|message| EngineError::invalid("url", message))?;
        let mut events = self.events.clone();
        events.sort();
        events.dedup();
        if events.is_empty() {
            return Err(EngineError::invalid("events", "at least one kind of event"));
        }
        if let Some(unknown) = events.iter().find(|kind| !webhooks::is_kind(kind)) {
            let kinds: Vec<&str> = webhooks::EVENT_KINDS
                .iter()
                .map(|(kind, _)| *kind)
                .collect();
            return Err(EngineError::invalid(
                "events",
                format!(
                    "unknown kind {unknown:?}; the kinds are {}",
                    kinds.join(", ")
                ),
            ));
        }
        if !(1..=90).contains(&self.expiring_within_days) {
            return Err(EngineError::invalid("expiring_within_days", "1 to 90 days"));
        }
        if tx.store.count_webhooks(tx.org_id).await? >= webhooks::MAX_WEBHOOKS_PER_ORG {
            return Err(EngineError::QuotaExceeded {
                quota: "webhooks",
                limit: webhooks::MAX_WEBHOOKS_PER_ORG,
            });
        }
        let id = WebhookId::generate();
        let random: [u8; 32] = secrets::random_bytes();
        let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let secret = format!("whsec_{hex}");
        let sealed = tx.cipher().seal(id.0.as_bytes(), secret.as_bytes());
        let webhook = Webhook {
            id,
            organization_id: tx.org_id,
            url: self.url.clone(),
            events,
            expiring_within_days: self.expiring_within_days,
            created_at: tx.now,
            created_by: tx.principal.audit_name(),
        };
        tx.store.insert_webhook(&webhook, &sealed).await?;
        tx.webhooks_changed();
        tx.audit(
            "webhook.created",
            id.to_string(),
            json!({
                "url": webhook.url,
                "events": webhook.events,
                "expiring_within_days": webhook.expiring_within_days,
            }),
        )
        .await?;
        Ok(CreatedWebhook {
            id,
            organization_id: webhook.organization_id,
            url: webhook.url,
            events: webhook.events,
            expiring_within_days: webhook.expiring_within_days,
            created_at: webhook.created_at,
            created_by: webhook.created_by,
            secret,
        })
    }

    fn events(&self, _: &CreatedWebhook) -> Vec<OrgEvent> {
        Vec::new()
    }
}
