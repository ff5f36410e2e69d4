//! Per-organization quotas: a creation that would take the organization past one is refused
//! (`quota_exceeded`, naming the quota and its limit) and changes nothing.
//!
//! The count runs inside the creating command's transaction, after the organization's row is
//! locked on PostgreSQL (SQLite's one writer already serializes it), so two creations running
//! at once on two nodes cannot both see room for one and both insert.

use super::CommandTx;
use crate::error::EngineError;
use crate::settings::Quotas;
use crate::store::Quota;

/// The limit `quotas` sets on `quota`.
pub(crate) fn limit_of(quotas: &Quotas, quota: Quota) -> u64 {
    match quota {
        Quota::Configurations => quotas.configurations,
        Quota::Keys => quotas.keys,
        Quota::ActiveCodes => quotas.active_codes,
    }
}

/// Refuses when the organization already holds its limit of what `quota` counts.
pub(crate) async fn ensure_room(tx: &mut CommandTx<'_>, quota: Quota) -> Result<(), EngineError> {
    let limit = limit_of(&tx.quotas(), quota);
    let held = tx
        .store
        .count_toward_quota(tx.org_id, quota, tx.now, limit)
        .await?;
    if held >= limit {
        return Err(EngineError::QuotaExceeded {
            quota: quota.as_str(),
            limit,
        });
    }
    Ok(())
}
