//! Audit retention: the oldest audit entries are deleted, a bounded batch at a time.
//!
//! Entries are taken in id order, oldest first, and only as long as each is older than the
//! cut-off: the batch is the leading run of old entries, deleted as one id range from the log
//! and from `audit_devices` (through its index by entry, `audit_devices_by_audit`). Ids follow
//! the time of writing, so the run is the old entries; one written a little out of order (a
//! manual clock, another node's clock) is deleted once those before it are. Both statements
//! reach their rows by key, whatever the size of the log.

use engine::ids::Timestamp;
use engine::store::StoreResult;

use crate::backend::{Backend, SqlStore, Statements as _};
use crate::rows::get;

pub(crate) async fn delete_audit_before<B: Backend>(
    store: &SqlStore<B>,
    before: Timestamp,
    limit: u32,
) -> StoreResult<u64> {
    let mut tx = store
        .writer
        .begin_with(B::BEGIN)
        .await
        .map_err(B::map_error)?;
    let oldest = (*tx)
        .read_all(
            "SELECT id, at FROM audit_log ORDER BY id LIMIT $1",
            &[i64::from(limit.max(1)).into()],
            |row| Ok((get::<i64, _>(row, 0)?, get::<i64, _>(row, 1)?)),
        )
        .await?;
    let last = oldest
        .iter()
        .take_while(|(_, at)| *at < before.0)
        .last()
        .map(|(id, _)| *id);
    let Some(last) = last else {
        tx.rollback().await.map_err(B::map_error)?;
        return Ok(0);
    };
    (*tx)
        .execute(
            "DELETE FROM audit_devices WHERE audit_id <= $1",
            &[last.into()],
        )
        .await?;
    let deleted = (*tx)
        .execute("DELETE FROM audit_log WHERE id <= $1", &[last.into()])
        .await?;
    tx.commit().await.map_err(B::map_error)?;
    Ok(deleted)
}
