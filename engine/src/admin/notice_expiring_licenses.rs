//! Tells each of the organization's `licenses_expiring` webhooks which of its licenses end
//! within the webhook's `expiring_within_days`: the expiry duty's command, at most once per
//! webhook per
//! [`webhooks::EXPIRING_NOTICE_INTERVAL`] (the outbox's throttle). No admin sends it.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, Principal};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::store::WebhookEvent;
use crate::webhooks;

/// Most licenses an event names (it says how many there are in all).
const MAX_NAMED: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeExpiringLicenses;

impl AdminCommand for NoticeExpiringLicenses {
    /// How many licenses it told of (counted once per webhook).
    type Reply = u64;
    const NAME: &'static str = "notice_expiring_licenses";

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_system("only the expiry duty tells of expiring licenses")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<u64, EngineError> {
        let mut told = 0;
        for webhook in tx
            .store
            .webhooks_receiving(tx.org_id, "licenses_expiring")
            .await?
        {
            let within = Duration::from_secs(u64::from(webhook.expiring_within_days) * 86_400);
            let (count, licenses) = tx
                .store
                .expiring_licenses(tx.org_id, tx.now, tx.now.plus(within), MAX_NAMED)
                .await?;
            if count == 0 {
                continue;
            }
            let event_id = uuid::Uuid::now_v7();
            let payload = json!({
                "id": event_id,
                "kind": "licenses_expiring",
                "organization_id": tx.org_id,
                "at": tx.now,
                "within_days": webhook.expiring_within_days,
                "count": count,
                "licenses": licenses.iter().map(|(license_id, valid_until, device_id)| json!({
                    "license_id": license_id,
                    "valid_until": valid_until,
                    "device_id": device_id,
                })).collect::<Vec<_>>(),
            });
            let event = WebhookEvent {
                org_id: tx.org_id,
                event_id,
                kind: "licenses_expiring",
                payload: payload.to_string(),
                at: tx.now,
                throttle: webhooks::EXPIRING_NOTICE_INTERVAL.as_millis() as i64,
            };
            tx.store
                .enqueue_webhook_delivery(webhook.id, &event)
                .await?;
            told += count;
        }
        Ok(told)
    }

    fn events(&self, _: &u64) -> Vec<OrgEvent> {
        Vec::new()
    }
}
