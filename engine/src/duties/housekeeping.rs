//! Housekeeping: failure windows of addresses and codes that stopped failing are forgotten (and
//! the audit windows of failed acknowledgements that are over), and idempotency records older
//! than their time to live are deleted.

use crate::ids::Timestamp;
use crate::node::Node;

pub(crate) async fn tidy(node: &Node) {
    let now = node.clock.now();
    node.address_failures.prune(now);
    node.code_failures.prune(now);
    node.ack_failures.prune(now);
    let ttl = i64::try_from(node.settings.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
    let before = Timestamp(now.0.saturating_sub(ttl));
    if let Err(error) = node.store.prune_idempotency(before).await {
        tracing::warn!(%error, "cannot prune idempotency records");
    }
}
