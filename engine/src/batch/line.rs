//! The waiting list: devices that asked to wait when no license was free, served in the order
//! they arrived.
//!
//! The line lives in the database (`waiting_devices`), so that every node sees one line and a
//! grant is decided where every grant is: a device in line is paired by an ordinary batch of
//! this organization's actor, on whichever node frees or adds the license ([`serve`]), with the
//! pairing it asked for (its code, its credential's hash, what it said of itself), claiming
//! licenses for the line ([`Claim::ForLine`]). Meanwhile ordinary pairings claim none while any
//! device waits ([`Claim::BehindLine`]), so no license stays free for someone else while a
//! device waits. The line is served after every commit that may free or add a license, after a
//! device joins it, and by the expiry duty (for reservations that ran out by time).
//!
//! The connection that waits may be on another node. A device that leaves the line (paired,
//! refused because its code expired or was revoked meanwhile, or dismissed) is told through its
//! link: the connection pairs again ([`WaitChoice::AfterTurn`]) and is answered as any pairing
//! is, by what the database now says. Other nodes hear [`Change::LineMoved`] and compare their
//! waiting connections with the line ([`settle`]); a lost notice is caught up at the next
//! resync.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Batch, Decided, PairJob, PairOutcome, Pairing, decide_and_write_in, feed_events};
use crate::ids::OrgId;
use crate::link::DeviceLink;
use crate::metrics::Counters;
use crate::node::Node;
use crate::session::WaitChoice;
use crate::store::{Change, Claim, StoreResult, Transaction};

/// Devices served per transaction; a longer line is served in more.
const ROUND: u32 = 500;
/// Rounds per service at most; the next trigger (or the duty) goes on.
const MAX_ROUNDS: usize = 20;

/// Pairs as many devices of the organization's line as licenses are free, in order.
pub(crate) async fn serve(node: &Node, org_id: OrgId) {
    for _ in 0..MAX_ROUNDS {
        match serve_round(node, org_id).await {
            Ok(Round { read, left }) => {
                if read < ROUND as usize || left == 0 {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%org_id, %error, "the waiting line could not be served");
                return;
            }
        }
    }
}

struct Round {
    /// Devices read from the line.
    read: usize,
    /// Devices that left it (paired or refused).
    left: usize,
}

async fn serve_round(node: &Node, org_id: OrgId) -> StoreResult<Round> {
    let mut tx: Box<dyn Transaction> = node.store.begin().await?;
    let result = decide_round(tx.as_mut(), node, org_id).await;
    let (batch, decided) = match result {
        Ok(Some(decided)) => decided,
        Ok(None) => {
            let _ = tx.rollback().await;
            return Ok(Round { read: 0, left: 0 });
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(%rollback, "rollback after serving the line");
            }
            return Err(error);
        }
    };
    tx.commit().await?;
    let plan = &decided.plan;
    let left = plan.writes.left_line.len();
    let paired = plan
        .pairs
        .iter()
        .filter(|outcome| matches!(outcome, PairOutcome::Paired { device, .. } if !device.already_paired))
        .count();
    Counters::add(&node.counters.pairings, paired as u64);
    Counters::add(&node.counters.served_from_line, paired as u64);
    tell_local(node, &plan.writes.left_line);
    node.publish_events(org_id, || feed_events(&batch, plan));
    Ok(Round {
        read: batch.pairs.len(),
        left,
    })
}

/// Reads the line and decides and writes its pairings; `None` when nobody waits.
async fn decide_round(
    tx: &mut dyn Transaction,
    node: &Node,
    org_id: OrgId,
) -> StoreResult<Option<(Batch, Decided)>> {
    let line = tx.waiting_line(org_id, ROUND).await?;
    if line.is_empty() {
        return Ok(None);
    }
    let pairs = line
        .into_iter()
        .map(|waiting| PairJob {
            pairing: Pairing {
                code_id: waiting.device.code_id,
                installation_id: waiting.device.installation_id,
                credential_hash: waiting.device.credential_hash,
                details: waiting.device.details,
                connection: waiting.device.connection,
                peer: waiting.device.peer,
                wait: WaitChoice::InLine,
                ticket: Some(waiting.ticket),
            },
            // Nobody waits on these: the device is told through its own link.
            link: DeviceLink::new(waiting.device.connection, waiting.device.peer),
            reply: oneshot::channel().0,
        })
        .collect();
    let batch = Batch {
        pairs,
        ..Batch::default()
    };
    let now = node.clock.now();
    let tell = super::Tell {
        webhooks: node.has_webhooks(org_id).await,
    };
    let decided = decide_and_write_in(
        tx,
        org_id,
        now,
        &batch,
        Default::default(),
        Claim::ForLine,
        tell,
    )
    .await?;
    if !decided.plan.writes.left_line.is_empty() {
        tx.publish(&Change::LineMoved { org_id }).await?;
    }
    Ok(Some((batch, decided)))
}

/// Takes devices out of the line (their connections closed).
pub(crate) async fn leave(node: &Node, org_id: OrgId, tickets: &[i64]) {
    let result = async {
        let mut tx: Box<dyn Transaction> = node.store.begin().await?;
        let left = tx.leave_line(org_id, tickets).await?;
        tx.commit().await?;
        StoreResult::Ok(left.len())
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(_) => node.publish_events(org_id, || vec![crate::events::OrgEvent::Waiting]),
        Err(error) => tracing::warn!(%org_id, %error, "devices could not leave the line"),
    }
}

/// Tells the connections on this node that waited with `tickets` that they left the line.
pub(crate) fn tell_local(node: &Node, tickets: &[i64]) {
    for ticket in tickets {
        if let Some((_, link)) = node.waiting.remove(ticket) {
            link.line_turn();
        }
    }
}

/// Compares the organization's waiting connections on this node with its line (after another
/// node moved it, or a resync): those no longer in it are told.
pub(crate) async fn settle(node: &Node, org_id: OrgId) -> StoreResult<()> {
    let here: Vec<(i64, Arc<DeviceLink>)> = node
        .waiting
        .iter()
        .filter(|entry| {
            entry
                .value()
                .waiting()
                .is_some_and(|(org, _)| org == org_id)
        })
        .map(|entry| (*entry.key(), Arc::clone(entry.value())))
        .collect();
    if here.is_empty() {
        return Ok(());
    }
    let line: HashSet<i64> = node.store.line_tickets(org_id).await?.into_iter().collect();
    let gone: Vec<i64> = here
        .iter()
        .map(|(ticket, _)| *ticket)
        .filter(|ticket| !line.contains(ticket))
        .collect();
    tell_local(node, &gone);
    Ok(())
}

/// Whether a connection of the organization waits in line on this node.
pub(crate) fn waits_here(node: &Node, org_id: OrgId) -> bool {
    node.waiting.iter().any(|entry| {
        entry
            .value()
            .waiting()
            .is_some_and(|(org, _)| org == org_id)
    })
}
