//! Webhooks and their outbox, written once for both backends (see the migration that made
//! them): registering and deleting, the outbox's inserts (one statement per event, for every
//! webhook of the organization that receives its kind), the delivery task's lease and report,
//! and the admin's reads.

use engine::ids::{DeviceId, LicenseId, OrgId, Timestamp, WebhookId};
use engine::model::{Page, PageRequest, Webhook, WebhookDelivery};
use engine::store::{DeliveryFinish, LeasedDelivery, StoreError, StoreResult, WebhookEvent};

use crate::backend::Statements;
use crate::paging::page_of;
use crate::rows::{Columns, get, get_opt_ts, get_ts, get_u64};

/// Puts `event` in the outbox of the organization's webhooks that receive its kind (only of
/// `only`, when given), each at most once per `event.throttle`.
pub(crate) async fn enqueue(
    tx: &mut impl Statements,
    event: &WebhookEvent,
    only: Option<WebhookId>,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, kind, payload, \
         created_at, state, attempts, next_attempt_at) \
         SELECT w.id, w.org_id, $2, $3, $4, $5, 'pending', 0, $5 FROM webhooks w \
         WHERE w.org_id = $1 AND w.deleted_at IS NULL AND ($7 IS NULL OR w.id = $7) \
         AND (',' || w.events || ',') LIKE ('%,' || $3 || ',%') \
         AND ($6 = 0 OR NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
         WHERE d.webhook_id = w.id AND d.kind = $3 AND d.created_at > $5 - $6))",
        &[
            event.org_id.0.into(),
            event.event_id.into(),
            event.kind.into(),
            event.payload.as_str().into(),
            event.at.0.into(),
            event.throttle.into(),
            only.map(|id| id.0).into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn orgs_with(reader: &mut impl Statements, kind: &str) -> StoreResult<Vec<OrgId>> {
    reader
        .read_all(
            "SELECT DISTINCT org_id FROM webhooks WHERE deleted_at IS NULL \
             AND (',' || events || ',') LIKE ('%,' || $1 || ',%')",
            &[kind.into()],
            |row| Ok(OrgId(get(row, 0)?)),
        )
        .await
}

pub(crate) async fn expiring_licenses(
    tx: &mut impl Statements,
    org_id: OrgId,
    after: Timestamp,
    until: Timestamp,
    limit: u32,
) -> StoreResult<(u64, Vec<(LicenseId, Timestamp, Option<DeviceId>)>)> {
    let args = [org_id.0.into(), after.0.into(), until.0.into()];
    let row = tx
        .fetch_one(
            "SELECT COUNT(*) FROM licenses WHERE org_id = $1 AND valid_until > $2 \
             AND valid_until <= $3",
            &args,
        )
        .await?;
    let count = get_u64(&row, 0)?;
    if count == 0 {
        return Ok((0, Vec::new()));
    }
    let licenses = tx
        .read_all(
            "SELECT id, valid_until, device_id FROM licenses WHERE org_id = $1 \
             AND valid_until > $2 AND valid_until <= $3 ORDER BY valid_until, id LIMIT $4",
            &[
                org_id.0.into(),
                after.0.into(),
                until.0.into(),
                i64::from(limit).into(),
            ],
            |row| {
                Ok((
                    LicenseId(get(row, 0)?),
                    get_ts(row, 1)?,
                    get::<Option<uuid::Uuid>, _>(row, 2)?.map(DeviceId),
                ))
            },
        )
        .await?;
    Ok((count, licenses))
}

pub(crate) async fn receiving(
    tx: &mut impl Statements,
    org_id: OrgId,
    kind: &str,
) -> StoreResult<Vec<Webhook>> {
    tx.read_all(
        "SELECT id, org_id, url, events, created_at, created_by, expiring_within_days \
         FROM webhooks WHERE org_id = $1 AND deleted_at IS NULL \
         AND (',' || events || ',') LIKE ('%,' || $2 || ',%')",
        &[org_id.0.into(), kind.into()],
        webhook_from_row,
    )
    .await
}

pub(crate) async fn count(tx: &mut impl Statements, org_id: OrgId) -> StoreResult<u64> {
    let row = tx
        .fetch_one(
            "SELECT COUNT(*) FROM webhooks WHERE org_id = $1 AND deleted_at IS NULL",
            &[org_id.0.into()],
        )
        .await?;
    get_u64(&row, 0)
}

pub(crate) async fn insert(
    tx: &mut impl Statements,
    webhook: &Webhook,
    sealed_secret: &[u8],
) -> StoreResult<()> {
    let events = webhook.events.join(",");
    tx.execute(
        "INSERT INTO webhooks (id, org_id, url, events, sealed_secret, created_at, created_by, \
         expiring_within_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            webhook.id.0.into(),
            webhook.organization_id.0.into(),
            webhook.url.as_str().into(),
            events.as_str().into(),
            sealed_secret.into(),
            webhook.created_at.0.into(),
            webhook.created_by.as_str().into(),
            i64::from(webhook.expiring_within_days).into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn delete(
    tx: &mut impl Statements,
    org_id: OrgId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "UPDATE webhooks SET deleted_at = $3 WHERE org_id = $1 AND id = $2 \
             AND deleted_at IS NULL",
            &[org_id.0.into(), id.0.into(), now.0.into()],
        )
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute(
        "UPDATE webhook_deliveries SET state = 'failed', last_error = 'webhook deleted' \
         WHERE webhook_id = $1 AND state = 'pending'",
        &[id.0.into()],
    )
    .await?;
    Ok(true)
}

pub(crate) async fn replay(
    tx: &mut impl Statements,
    org_id: OrgId,
    webhook_id: WebhookId,
    delivery_id: i64,
    now: Timestamp,
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $4, \
             lease_until = NULL WHERE id = $3 AND webhook_id = $2 AND org_id = $1 \
             AND state <> 'pending' AND EXISTS (SELECT 1 FROM webhooks w \
             WHERE w.id = $2 AND w.deleted_at IS NULL)",
            &[
                org_id.0.into(),
                webhook_id.0.into(),
                delivery_id.into(),
                now.0.into(),
            ],
        )
        .await?;
    Ok(changed > 0)
}

fn webhook_from_row(row: &impl Columns) -> StoreResult<Webhook> {
    let events: String = get(row, 3)?;
    Ok(Webhook {
        id: WebhookId(get(row, 0)?),
        organization_id: OrgId(get(row, 1)?),
        url: get(row, 2)?,
        events: events.split(',').map(str::to_string).collect(),
        created_at: get_ts(row, 4)?,
        created_by: get(row, 5)?,
        expiring_within_days: u32::try_from(get_u64(row, 6)?).unwrap_or(7),
    })
}

pub(crate) async fn list(reader: &mut impl Statements, org_id: OrgId) -> StoreResult<Vec<Webhook>> {
    reader
        .read_all(
            "SELECT id, org_id, url, events, created_at, created_by, expiring_within_days \
             FROM webhooks WHERE org_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
            &[org_id.0.into()],
            webhook_from_row,
        )
        .await
}

fn delivery_from_row(row: &impl Columns) -> StoreResult<WebhookDelivery> {
    let state: String = get(row, 4)?;
    let pending = state == "pending";
    Ok(WebhookDelivery {
        id: get_u64(row, 0)?,
        webhook_id: WebhookId(get(row, 1)?),
        event_id: get(row, 2)?,
        kind: get(row, 3)?,
        attempts: get_u64(row, 5)?,
        created_at: get_ts(row, 6)?,
        next_attempt_at: if pending { Some(get_ts(row, 7)?) } else { None },
        last_attempt_at: get_opt_ts(row, 8)?,
        last_status: get::<Option<i64>, _>(row, 9)?.and_then(|status| u16::try_from(status).ok()),
        last_error: get(row, 10)?,
        delivered_at: get_opt_ts(row, 11)?,
        state,
    })
}

pub(crate) async fn deliveries(
    reader: &mut impl Statements,
    org_id: OrgId,
    webhook_id: WebhookId,
    page: &PageRequest,
) -> StoreResult<Option<Page<WebhookDelivery>>> {
    let known = reader
        .fetch_optional(
            "SELECT 1 FROM webhooks WHERE org_id = $1 AND id = $2",
            &[org_id.0.into(), webhook_id.0.into()],
        )
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    let limit = page.effective_limit();
    let before: i64 = match page.after.as_deref() {
        None => i64::MAX,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| StoreError::InvalidInput("cursor"))?,
    };
    let items = reader
        .read_all(
            "SELECT id, webhook_id, event_id, kind, state, attempts, created_at, \
             next_attempt_at, last_attempt_at, last_status, last_error, delivered_at \
             FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3",
            &[
                webhook_id.0.into(),
                before.into(),
                i64::from(limit + 1).into(),
            ],
            delivery_from_row,
        )
        .await?;
    Ok(Some(page_of(items, limit, |delivery| {
        delivery.id.to_string()
    })))
}

pub(crate) async fn lease(
    writer: &mut impl Statements,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> StoreResult<Vec<LeasedDelivery>> {
    // The oldest pending delivery of each webhook, due and not leased: each webhook receives
    // its events in order. The outer condition is checked again on each row (on PostgreSQL
    // after waiting for another node's lease of it), so a delivery is leased once.
    let leased = writer
        .read_all(
            "UPDATE webhook_deliveries SET lease_until = $2, attempts = attempts + 1, \
             last_attempt_at = $1 WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
             AND (d.lease_until IS NULL OR d.lease_until <= $1) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id \
             AND e.state = 'pending' AND e.id < d.id) ORDER BY d.id LIMIT $3) \
             AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $1) \
             RETURNING id, webhook_id, event_id, kind, payload, created_at, attempts",
            &[now.0.into(), lease_until.0.into(), i64::from(limit).into()],
            |row| {
                Ok(LeasedDelivery {
                    id: get(row, 0)?,
                    webhook_id: WebhookId(get(row, 1)?),
                    url: String::new(),
                    sealed_secret: Vec::new(),
                    event_id: get(row, 2)?,
                    kind: get(row, 3)?,
                    payload: get(row, 4)?,
                    created_at: get_ts(row, 5)?,
                    attempts: u32::try_from(get::<i64, _>(row, 6)?).unwrap_or(u32::MAX),
                })
            },
        )
        .await?;
    let mut deliveries = Vec::with_capacity(leased.len());
    for mut delivery in leased {
        let row = writer
            .fetch_one(
                "SELECT url, sealed_secret FROM webhooks WHERE id = $1",
                &[delivery.webhook_id.0.into()],
            )
            .await?;
        delivery.url = get(&row, 0)?;
        delivery.sealed_secret = get(&row, 1)?;
        deliveries.push(delivery);
    }
    deliveries.sort_by_key(|delivery| delivery.id);
    Ok(deliveries)
}

pub(crate) async fn finish(
    writer: &mut impl Statements,
    id: i64,
    finish: &DeliveryFinish,
) -> StoreResult<()> {
    let delivered = (finish.state == "delivered").then_some(finish.at.0);
    writer
        .execute(
            "UPDATE webhook_deliveries SET state = $2, next_attempt_at = $3, lease_until = NULL, \
             last_status = $4, last_error = $5, delivered_at = COALESCE($6, delivered_at) \
             WHERE id = $1",
            &[
                id.into(),
                finish.state.into(),
                finish.next_attempt_at.0.into(),
                finish.status.map(i64::from).into(),
                finish.error.as_deref().into(),
                delivered.into(),
            ],
        )
        .await?;
    Ok(())
}
