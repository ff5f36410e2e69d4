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
            let online: Vec<(DeviceId, i64)> = node
                .registry
                .all()
                .into_iter()
                .filter(|link| link.ended().is_none())
                .filter_map(|link| Some((link.session()?.device_id, link.connection_id)))
                .collect();
            tracing::warn!(
                devices = online.len(),
                "this node was given up for dead; marking its devices online again"
            );
            if let Err(error) = node.store.mark_online(&online, now).await {
                tracing::warn!(%error, "cannot mark this node's devices online again");
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
