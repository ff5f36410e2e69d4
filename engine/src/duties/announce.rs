//! Live-feed announcements: a node with watchers of an organization repeats so to the other
//! nodes, which then send it that organization's events (see `crate::events`).

use crate::node::Node;

pub(crate) async fn watched_here(node: &Node) {
    for org_id in node.watchers.watched_here() {
        if let Err(error) = node.store.announce_watch(org_id).await {
            tracing::warn!(%org_id, %error, "cannot announce a live-feed watcher to other nodes");
        }
    }
}
