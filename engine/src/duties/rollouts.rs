//! The rollout pass of the expiry duty: each running staged rollout that is due (its
//! `promote_at` has come, or more devices failed to apply its revision than it allows) is
//! decided by its organization's actor (`AdvanceRollout`), which halts or promotes it. Every
//! node runs it; the decision is re-checked in the organization's transaction with the
//! configuration locked, so a rollout is decided once.

use crate::admin::{AdvanceRollout, Principal};
use crate::metrics::Counters;
use crate::model::RolloutState;
use crate::node::Node;
use crate::supervisor::Actors;

/// What one pass decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advanced {
    pub promoted: u64,
    pub halted: u64,
}

pub(crate) async fn advance(node: &Node, actors: &Actors) -> Advanced {
    let mut advanced = Advanced::default();
    let due = match node.store.rollouts_due(node.clock.now()).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "rollouts due could not be read");
            return advanced;
        }
    };
    for (org_id, config_id) in due {
        match actors
            .run(Principal::System, org_id, AdvanceRollout { config_id })
            .await
        {
            Ok(Some(rollout)) if rollout.state == RolloutState::Promoted => {
                advanced.promoted += 1;
            }
            Ok(Some(_)) => advanced.halted += 1,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%org_id, %config_id, %error, "a staged rollout could not advance");
            }
        }
    }
    Counters::add(&node.counters.rollouts_promoted, advanced.promoted);
    Counters::add(&node.counters.rollouts_halted, advanced.halted);
    advanced
}
