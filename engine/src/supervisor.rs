//! The supervisor of the organization actors.
//!
//! It starts an organization's actor on first use (actors are lazy and stop when idle), keeps the
//! directory of running actors in [`Shared::orgs`], and restarts an actor that failed (a panic or
//! an error from a handler). Restarts are bounded: more than `max_restarts` within
//! `restart_window` puts the organization in back-off, doubling up to `max_restart_backoff`,
//! during which its requests are answered "unavailable" with a retry-after. Other organizations
//! never notice: each actor fails alone.
//!
//! ractor stops a supervisor when a linked child exits unless `handle_supervisor_evt` decides
//! otherwise; this one decides for every event.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::oneshot;

use crate::context::{Metrics, Shared};
use crate::ids::OrgId;
use crate::org::{OrgActor, OrgArgs, OrgMsg, OrgNotFound};

pub(crate) enum SupervisorMsg {
    /// The running actor of an organization, started if needed.
    Get(OrgId, oneshot::Sender<Result<ActorRef<OrgMsg>, GetError>>),
}

impl std::fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupervisorMsg::Get(org, _) => write!(f, "Get({org})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GetError {
    NotFound,
    BackingOff { retry_after: Duration },
    Failed,
}

pub(crate) struct OrgSupervisor;

pub(crate) struct SupervisorState {
    shared: Arc<Shared>,
    children: HashMap<ActorId, OrgId>,
    restarts: HashMap<OrgId, Restarts>,
    incarnations: HashMap<OrgId, u64>,
}

#[derive(Default)]
struct Restarts {
    recent: VecDeque<Instant>,
    backoff_until: Option<Instant>,
    next_backoff: Option<Duration>,
}

impl Actor for OrgSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            children: HashMap::new(),
            restarts: HashMap::new(),
            incarnations: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Get(org_id, reply) => {
                let result = state.get_or_start(&myself, org_id).await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(org_id) = state.forget(cell.get_id()) {
                    tracing::debug!(%org_id, ?reason, "organization actor stopped");
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(org_id) = state.forget(cell.get_id()) else {
                    return Ok(());
                };
                Metrics::add(&state.shared.metrics.actor_restarts, 1);
                tracing::error!(%org_id, %error, "organization actor failed");
                if state.allow_restart(org_id) {
                    // Restart at once, so that state is reloaded before the next request.
                    if let Err(error) = state.start(&myself, org_id).await {
                        tracing::error!(%org_id, ?error, "organization actor did not restart");
                    }
                }
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn get_or_start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        org_id: OrgId,
    ) -> Result<ActorRef<OrgMsg>, GetError> {
        if let Some(actor) = self.shared.orgs.get(&org_id) {
            return Ok(actor.clone());
        }
        if let Some(until) = self.restarts.get(&org_id).and_then(|r| r.backoff_until) {
            let now = Instant::now();
            if until > now {
                return Err(GetError::BackingOff {
                    retry_after: until - now,
                });
            }
        }
        self.start(myself, org_id).await
    }

    async fn start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        org_id: OrgId,
    ) -> Result<ActorRef<OrgMsg>, GetError> {
        let incarnation = {
            let count = self.incarnations.entry(org_id).or_default();
            *count += 1;
            *count
        };
        let args = OrgArgs {
            shared: Arc::clone(&self.shared),
            org_id,
            incarnation,
        };
        match Actor::spawn_linked(None, OrgActor, args, myself.get_cell()).await {
            Ok((actor, _handle)) => {
                self.children.insert(actor.get_id(), org_id);
                self.shared.orgs.insert(org_id, actor.clone());
                Ok(actor)
            }
            Err(SpawnErr::StartupFailed(error))
                if error.downcast_ref::<OrgNotFound>().is_some() =>
            {
                Err(GetError::NotFound)
            }
            Err(error) => {
                tracing::warn!(%org_id, %error, "organization actor did not start");
                Err(GetError::Failed)
            }
        }
    }

    fn forget(&mut self, actor: ActorId) -> Option<OrgId> {
        let org_id = self.children.remove(&actor)?;
        self.shared
            .orgs
            .remove_if(&org_id, |_, current| current.get_id() == actor);
        Some(org_id)
    }

    /// Records a failure; false when the organization must back off instead of restarting.
    fn allow_restart(&mut self, org_id: OrgId) -> bool {
        let settings = &self.shared.settings;
        let restarts = self.restarts.entry(org_id).or_default();
        let now = Instant::now();
        while restarts
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > settings.restart_window)
        {
            restarts.recent.pop_front();
        }
        restarts.recent.push_back(now);
        if restarts.recent.len() <= settings.max_restarts as usize {
            return true;
        }
        let backoff = restarts
            .next_backoff
            .unwrap_or(settings.restart_backoff)
            .min(settings.max_restart_backoff);
        restarts.backoff_until = Some(now + backoff);
        restarts.next_backoff = Some((backoff * 2).min(settings.max_restart_backoff));
        restarts.recent.clear();
        tracing::error!(%org_id, ?backoff, "organization actor keeps failing; backing off");
        false
    }
}
