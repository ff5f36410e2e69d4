//! The change listener: notices of what other nodes committed, handed to the organizations they
//! concern on this node (see `crate::remote`), and other nodes' live-feed events to the
//! watchers here.

use std::sync::Arc;

use tokio::sync::watch;

use crate::events::OrgEvent;
use crate::node::Node;
use crate::org::OrgMsg;
use crate::remote;
use crate::store::{ChangeFeed, Notice};
use crate::supervisor::Actors;

pub(crate) async fn run(
    node: Arc<Node>,
    actors: Actors,
    mut feed: Box<dyn ChangeFeed>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let notice = tokio::select! {
            notice = feed.next() => notice,
            _ = stopped.changed() => break,
        };
        match &notice {
            Notice::Events { org_id, events } => {
                for event in events {
                    node.watchers.send_here(*org_id, event.clone());
                }
                continue;
            }
            Notice::Watch { org_id } => {
                node.watchers.announced(*org_id);
                continue;
            }
            Notice::Resync { org_id } => {
                tracing::info!(
                    ?notice,
                    "resynchronising connected devices from the database"
                );
                // Other nodes' events may have been missed too.
                match org_id {
                    Some(org_id) => node.watchers.send_here(*org_id, OrgEvent::Resync),
                    None => node.watchers.resync_all(),
                }
            }
            Notice::Change(_) => {}
        }
        for org_id in remote::local_orgs(&node, &notice) {
            if let Err(error) = actors.send(org_id, OrgMsg::Remote(notice.clone())).await {
                tracing::warn!(%org_id, %error, "cannot hand a change from another node to its organization");
            }
        }
    }
}
