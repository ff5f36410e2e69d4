//! [`Store`] and [`NodeStore`] on every backend: transactions, and a node's start-up and
//! background duties. What differs (presence, heartbeats, notifications, the change feed,
//! closing) is the backend's; the expiry sweep's read, housekeeping and server-wide settings are
//! written here once.

use async_trait::async_trait;
use engine::events::OrgEvent;
use engine::ids::{ConfigId, DeviceId, OrgId, Timestamp};
use engine::store::{
    ChangeFeed, Credential, NodeStore, PoolUsage, Store, StoreResult, Transaction,
};
use engine::store::{DeliveryFinish, LeasedDelivery};
use uuid::Uuid;

use crate::backend::{Arg, Backend, SqlStore, SqlTx, Statements as _};
use crate::rows::get;

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        let tx = self
            .writer
            .begin_with(B::BEGIN)
            .await
            .map_err(B::map_error)?;
        Ok(Box::new(SqlTx {
            tx,
            extra: std::sync::Arc::clone(&self.extra),
        }))
    }

    async fn close(&self) {
        B::close(self).await;
    }

    fn pools(&self) -> Vec<PoolUsage> {
        let usage = |name, pool: &sqlx::Pool<B>| PoolUsage {
            name,
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        };
        // PostgreSQL's store has one pool in all three roles; SQLite's are three.
        if <B as sqlx::Database>::NAME == <sqlx::Postgres as sqlx::Database>::NAME {
            vec![usage("main", &self.writer)]
        } else {
            vec![
                usage("writer", &self.writer),
                usage("readers", &self.readers),
                usage("exports", &self.exports),
            ]
        }
    }
}

#[async_trait]
impl<B: Backend> NodeStore for SqlStore<B> {
    async fn reset_presence(&self, now: Timestamp) -> StoreResult<()> {
        B::reset_presence(self, now).await
    }

    async fn lease_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<LeasedDelivery>> {
        let mut writer = self.writer().await?;
        crate::webhooks::lease(&mut *writer, now, lease_until, limit).await
    }

    async fn finish_delivery(&self, id: i64, finish: &DeliveryFinish) -> StoreResult<()> {
        let mut writer = self.writer().await?;
        crate::webhooks::finish(&mut *writer, id, finish).await
    }

    async fn orgs_with_webhook(&self, kind: &str) -> StoreResult<Vec<OrgId>> {
        let mut reader = self.reader().await?;
        crate::webhooks::orgs_with(&mut *reader, kind).await
    }

    async fn waiting_orgs(&self) -> StoreResult<Vec<OrgId>> {
        let mut reader = self.reader().await?;
        crate::line::orgs(&mut *reader).await
    }

    async fn subscribe(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        B::subscribe(self).await
    }

    async fn publish_events(&self, org_id: OrgId, events: &[OrgEvent]) -> StoreResult<()> {
        B::publish_events(self, org_id, events).await
    }

    async fn announce_watch(&self, org_id: OrgId) -> StoreResult<()> {
        B::announce_watch(self, org_id).await
    }

    async fn heartbeat(
        &self,
        node: i64,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<bool> {
        B::heartbeat(self, node, now, stale_before).await
    }

    async fn expire_nodes(&self, stale_before: Timestamp) -> StoreResult<u64> {
        B::expire_nodes(self, stale_before).await
    }

    async fn mark_online(&self, online: &[(DeviceId, i64)], now: Timestamp) -> StoreResult<()> {
        B::mark_online(self, online, now).await
    }

    async fn inactive_pairings(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrgId, DeviceId)>> {
        let args = [now.0.into(), i64::from(limit).into(), DAY_MS.into()];
        due_pairings(self, INACTIVE_PAIRINGS, &args).await
    }

    async fn rollouts_due(&self, now: Timestamp) -> StoreResult<Vec<(OrgId, ConfigId)>> {
        self.reader()
            .await?
            .read_all(
                crate::rollouts::DUE,
                &[now.0.into()],
                crate::rollouts::due_from_row,
            )
            .await
    }

    async fn expired_pairings(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrgId, DeviceId)>> {
        let args = [now.0.into(), i64::from(limit).into()];
        due_pairings(self, B::EXPIRED_PAIRINGS, &args).await
    }

    async fn index_words(&self, limit: u32) -> StoreResult<u64> {
        let mut tx = self
            .writer
            .begin_with(B::BEGIN)
            .await
            .map_err(B::map_error)?;
        let ids = (*tx)
            .read_all(B::UNINDEXED_DEVICES, &[i64::from(limit).into()], |row| {
                get::<Uuid, _>(row, 0)
            })
            .await?;
        let indexed = ids.len() as u64;
        if indexed > 0 {
            let list = [Arg::Ids(ids)];
            for sql in B::INDEX_WORDS {
                (*tx).execute(sql, &list).await?;
            }
        }
        tx.commit().await.map_err(B::map_error)?;
        Ok(indexed)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.reader().await?.fetch_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn prune_idempotency(&self, before: Timestamp) -> StoreResult<u64> {
        self.writer()
            .await?
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[before.0.into()],
            )
            .await
    }

    async fn delete_audit_before(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        crate::retention::delete_audit_before(self, before, limit).await
    }

    async fn record_uses(&self, uses: &[(Credential, Timestamp)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with(B::BEGIN)
            .await
            .map_err(B::map_error)?;
        for (credential, at) in uses {
            let (statement, id) = match credential {
                Credential::OperatorToken(id) => (
                    "UPDATE operator_tokens SET last_used_at = $1 \
                     WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                    id.0,
                ),
                Credential::OrgKey(id) => (
                    "UPDATE org_keys SET last_used_at = $1 \
                     WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                    id.0,
                ),
            };
            tx.execute(statement, &[at.0.into(), id.into()]).await?;
        }
        tx.commit().await.map_err(B::map_error)
    }

    async fn meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.writer()
            .await?
            .read_optional(
                "SELECT value FROM server_meta WHERE key = $1",
                &[key.into()],
                |row| get::<Vec<u8>, _>(row, 0),
            )
            .await
    }

    async fn set_meta(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.writer()
            .await?
            .execute(
                "INSERT INTO server_meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[key.into(), value.into()],
            )
            .await?;
        Ok(())
    }
}

/// The `org_id, id` rows of a duty's read of pairings due to end.
async fn due_pairings<B: Backend>(
    store: &SqlStore<B>,
    sql: &'static str,
    args: &[Arg<'_>],
) -> StoreResult<Vec<(OrgId, DeviceId)>> {
    store
        .reader()
        .await?
        .read_all(sql, args, |row| {
            Ok((OrgId(get(row, 0)?), DeviceId(get(row, 1)?)))
        })
        .await
}

/// A day in the unit of timestamps.
const DAY_MS: i64 = 86_400_000;

/// The inactive release's read: for each organization that releases inactive devices (few),
/// its active offline devices last seen before its cut-off, by `devices_by_last_seen`
/// (`org_id, last_seen, id` of active devices) from its oldest end. The day length is bound as
/// a 64-bit parameter: `days * 86400000` overflows PostgreSQL's `integer` past 24 days.
const INACTIVE_PAIRINGS: &str = "SELECT d.org_id, d.id FROM organizations o \
     JOIN devices d ON d.org_id = o.id AND d.ended_at IS NULL \
     AND d.last_seen < $1 - o.release_inactive_after_days * $3 AND d.online_conn IS NULL \
     WHERE o.release_inactive_after_days IS NOT NULL \
     LIMIT $2";
