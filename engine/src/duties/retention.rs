//! Audit retention (`EngineSettings::audit_retention`): entries older than the retention are
//! deleted, oldest first, a bounded batch per transaction (`NodeStore::delete_audit_before`),
//! off the pairing path: a turn deletes one batch, and more only while the engine's own write
//! batches (pairings, acknowledgements) leave the writer alone; the next turn goes on. Without a
//! retention the log is kept forever.

use std::sync::atomic::Ordering;

use crate::ids::Timestamp;
use crate::node::Node;

/// Entries per batch (one write transaction).
const BATCH: u32 = 1_000;
/// Batches per turn at most.
const MAX_BATCHES: usize = 100;

/// One turn; returns how many entries it deleted.
pub(crate) async fn prune_audit(node: &Node) -> u64 {
    let Some(retention) = node.settings.audit_retention else {
        return 0;
    };
    let keep = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let before = Timestamp(node.clock.now().0.saturating_sub(keep));
    let batches = || node.counters.batches.load(Ordering::Relaxed);
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let seen = batches();
        match node.store.delete_audit_before(before, BATCH).await {
            Ok(count) => {
                deleted += count;
                if count < u64::from(BATCH) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot delete old audit entries");
                break;
            }
        }
        if batches() != seen {
            // Devices are being served: the rest waits for the next turn.
            break;
        }
        tokio::task::yield_now().await;
    }
    if deleted > 0 {
        tracing::info!(deleted, "deleted audit entries past their retention");
    }
    deleted
}
