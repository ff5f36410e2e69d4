//! The node's heartbeat, and the presence of nodes that stopped beating: on a backend shared by
//! several nodes, each records that it is alive, and marks offline the devices of nodes whose
//! heartbeat went stale.

use crate::ids::{DeviceId, Timestamp};
use crate::node::Node;

pub(crate) async fn beat(node: &Node) {
    let now = node.clock.now();
    let timeout = i64::try_from(node.settings.node_timeout.as_millis()).unwrap_or(i64::MAX);
    let stale_before = Timestamp(now.0.saturating_sub(timeout));
    match node
        .store
        .heartbeat(node.node_id(), now, stale_before)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            // Other nodes gave this one up (it could not beat for a while) and marked its
            // devices offline; they are still connected here.
            let links: Vec<_> = node
                .registry
                .all()
                .into_iter()
                .filter(|link| link.ended().is_none() && !link.closed())
                .filter_map(|link| Some((link.session()?.device_id, link)))
                .collect();
            let online: Vec<(DeviceId, i64)> = links
                .iter()
                .map(|(device_id, link)| (*device_id, link.connection_id))
                .collect();
            tracing::warn!(
                devices = online.len(),
                "this node was given up for dead; marking its devices online again"
            );
            if let Err(error) = node.store.mark_online(&online, now).await {
                tracing::warn!(%error, "cannot mark this node's devices online again");
                return;
            }
            // A device whose connection closed between the reading of the links and that write
            // may have been marked offline before it (its disconnection's write committed
            // first) and online again by it, on a connection that is gone: marked offline once
            // more, on that connection only. One that closes after this check is written
            // offline after it (its disconnection's write is queued after the close).
            let left: Vec<(DeviceId, i64)> = links
                .iter()
                .filter(|(_, link)| link.closed() || link.ended().is_some())
                .map(|(device_id, link)| (*device_id, link.connection_id))
                .collect();
            if !left.is_empty()
                && let Err(error) = mark_offline(node, &left, now).await
            {
                tracing::warn!(%error, "cannot mark devices that left offline");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot record this node's heartbeat"),
    }
    match node.store.expire_nodes(stale_before).await {
        Ok(0) => {}
        Ok(devices) => tracing::info!(devices, "devices of unresponsive nodes marked offline"),
        Err(error) => tracing::warn!(%error, "cannot expire unresponsive nodes"),
    }
}

/// Marks devices offline where still online on the given connections, in a transaction of its
/// own.
async fn mark_offline(
    node: &Node,
    offline: &[(DeviceId, i64)],
    now: Timestamp,
) -> crate::store::StoreResult<()> {
    let mut tx = node.store.begin().await?;
    tx.set_offline(offline, now).await?;
    tx.commit().await
}
