//! The supervisor of the organization actors, and [`Actors`], how the rest of the engine
//! reaches them.
//!
//! The supervisor starts an organization's actor on first use (actors are lazy and stop when
//! idle), keeps the [`Directory`] of running actors, and restarts an actor that failed (a panic
//! or an error from a handler). Restarts are bounded: more than `max_restarts` within
//! `restart_window` puts the organization in back-off, doubling up to `max_restart_backoff`,
//! during which its requests are answered "unavailable" with a retry-after. Other organizations
//! never notice: each actor fails alone.
//!
//! ractor stops a supervisor when a linked child exits unless `handle_supervisor_evt` decides
//! otherwise; this one decides for every event.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, SpawnErr, SupervisionEvent,
};
use tokio::sync::oneshot;

use crate::admin::{AdminCommand, CommandJob, IdempotencyKey, Principal};
use crate::error::EngineError;
use crate::ids::OrgId;
use crate::metrics::Counters;
use crate::node::Node;
use crate::org::{OrgActor, OrgArgs, OrgMsg, OrgNotFound};
use crate::runtime_thread::RuntimeThread;

/// The running organization actors: written by the supervisor, read by everyone who sends one a
/// message (a lookup here costs no round trip to the supervisor).
#[derive(Debug, Default)]
pub(crate) struct Directory {
    running: DashMap<OrgId, RunningOrg>,
}

/// A running organization actor, and how many requests its callers wait on (its queue depth,
/// for the operator's metrics: a relaxed atomic beside the reference, no lock of its own).
#[derive(Debug, Clone)]
pub(crate) struct RunningOrg {
    actor: ActorRef<OrgMsg>,
    waiting: Arc<AtomicU64>,
}

/// One request waited on: counted while it lives.
struct Waiting(Arc<AtomicU64>);

impl Waiting {
    fn start(counter: &Arc<AtomicU64>) -> Waiting {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(counter))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the engine reaches organization actors: through the directory, or the supervisor when an
/// organization's actor is not running. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Actors {
    directory: Arc<Directory>,
    supervisor: ActorRef<SupervisorMsg>,
    /// How long a caller waits for an actor's answer (`EngineSettings::actor_call_timeout`).
    call_timeout: Duration,
}

impl Actors {
    /// Starts the supervisor on `thread`, where it spawns every organization actor.
    pub async fn start(node: Arc<Node>, thread: &RuntimeThread) -> Result<Actors, String> {
        let directory = Arc::new(Directory::default());
        let call_timeout = node.settings.actor_call_timeout;
        let args = SupervisorArgs {
            node,
            directory: Arc::clone(&directory),
        };
        let (supervisor, _) = thread
            .handle()
            .spawn(async move { Actor::spawn(None, OrgSupervisor, args).await })
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())?;
        Ok(Actors {
            directory,
            supervisor,
            call_timeout,
        })
    }

    /// Stops every organization actor, then the supervisor. Requests still buffered are
    /// answered "unavailable".
    pub async fn stop(&self) {
        self.supervisor.stop_children(None);
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        self.directory.running.clear();
    }

    /// How many organization actors run now.
    pub fn running(&self) -> usize {
        self.directory.running.len()
    }

    /// Sends a message to an organization's actor, starting it if needed.
    ///
    /// An actor found stopped (idle, or failed) is left for the supervisor to forget: only the
    /// supervisor decides whether a failed actor restarts or backs off, so this waits for it
    /// instead of asking for a new actor behind its back.
    pub async fn send(&self, org_id: OrgId, message: OrgMsg) -> Result<(), EngineError> {
        self.send_counted(org_id, message).await.map(drop)
    }

    /// [`Actors::send`], counting the request as waited on by the caller until the returned
    /// guard is dropped.
    async fn send_counted(
        &self,
        org_id: OrgId,
        mut message: OrgMsg,
    ) -> Result<Waiting, EngineError> {
        for attempt in 0..50u64 {
            let running = self.actor(org_id).await?;
            // Counted before the send, so that the actor's answer never comes before it.
            let waiting = Waiting::start(&running.waiting);
            match running.actor.send_message(message) {
                Ok(()) => return Ok(waiting),
                Err(MessagingErr::SendErr(returned)) => {
                    message = returned;
                    tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
                }
                Err(_) => return Err(EngineError::unavailable()),
            }
        }
        Err(EngineError::unavailable())
    }

    /// Sends a request to an organization's actor and waits for its answer; `None` when the
    /// actor could not be reached or did not answer in time (nothing was committed for it).
    pub async fn ask<T>(
        &self,
        org_id: OrgId,
        request: impl FnOnce(oneshot::Sender<T>) -> OrgMsg,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        let _waiting = self.send_counted(org_id, request(reply)).await?;
        self.answer(answer)
            .await
            .ok_or_else(EngineError::unavailable)
    }

    /// Runs an admin command in its organization's actor. The caller has authorized it.
    pub async fn run<C: AdminCommand>(
        &self,
        principal: Principal,
        org_id: OrgId,
        command: C,
    ) -> Result<C::Reply, EngineError> {
        self.run_with_key(principal, org_id, command, None).await
    }

    /// [`Actors::run`], answered from the record of an earlier run under the same key.
    pub async fn run_with_key<C: AdminCommand>(
        &self,
        principal: Principal,
        org_id: OrgId,
        command: C,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<C::Reply, EngineError> {
        self.ask(org_id, |reply| {
            OrgMsg::Admin(Box::new(CommandJob {
                principal,
                command,
                idempotency,
                reply,
            }))
        })
        .await?
    }

    /// Waits for an actor's answer, at most the call timeout.
    pub async fn answer<T>(&self, reply: oneshot::Receiver<T>) -> Option<T> {
        match tokio::time::timeout(self.call_timeout, reply).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(_)) => None, // the actor died before answering; nothing was committed for us
            Err(_) => {
                tracing::warn!("organization actor did not answer in time");
                None
            }
        }
    }

    /// The organizations whose actors have the most requests waited on, deepest first (at most
    /// `top`, none with zero), and the requests waited on over all of them.
    pub fn deepest_queues(&self, top: usize) -> (Vec<(OrgId, u64)>, u64) {
        deepest(
            self.directory
                .running
                .iter()
                .map(|entry| (*entry.key(), entry.value().waiting.load(Ordering::Relaxed))),
            top,
        )
    }

    async fn actor(&self, org_id: OrgId) -> Result<RunningOrg, EngineError> {
        if let Some(actor) = self.directory.running.get(&org_id) {
            return Ok(actor.clone());
        }
        let (reply, answer) = oneshot::channel();
        self.supervisor
            .send_message(SupervisorMsg::Get(org_id, reply))
            .map_err(|_| EngineError::unavailable())?;
        match self.answer(answer).await {
            Some(Ok(actor)) => Ok(actor),
            Some(Err(GetError::NotFound)) => Err(EngineError::NotFound("organization")),
            Some(Err(GetError::BackingOff { retry_after })) => Err(EngineError::Unavailable {
                retry_after_ms: u64::try_from(retry_after.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            }),
            Some(Err(GetError::Failed)) | None => Err(EngineError::unavailable()),
        }
    }
}

pub(crate) enum SupervisorMsg {
    /// The running actor of an organization, started if needed.
    Get(OrgId, oneshot::Sender<Result<RunningOrg, GetError>>),
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

pub(crate) struct SupervisorArgs {
    node: Arc<Node>,
    directory: Arc<Directory>,
}

pub(crate) struct SupervisorState {
    node: Arc<Node>,
    directory: Arc<Directory>,
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
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            node: args.node,
            directory: args.directory,
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
                Counters::add(&state.node.counters.actor_restarts, 1);
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
    ) -> Result<RunningOrg, GetError> {
        if let Some(actor) = self.directory.running.get(&org_id) {
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
    ) -> Result<RunningOrg, GetError> {
        let incarnation = {
            let count = self.incarnations.entry(org_id).or_default();
            *count += 1;
            *count
        };
        let args = OrgArgs {
            node: Arc::clone(&self.node),
            org_id,
            incarnation,
        };
        match Actor::spawn_linked(None, OrgActor, args, myself.get_cell()).await {
            Ok((actor, _handle)) => {
                self.children.insert(actor.get_id(), org_id);
                let running = RunningOrg {
                    actor,
                    waiting: Arc::default(),
                };
                self.directory.running.insert(org_id, running.clone());
                Ok(running)
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
        self.directory
            .running
            .remove_if(&org_id, |_, current| current.actor.get_id() == actor);
        Some(org_id)
    }

    /// Records a failure; false when the organization must back off instead of restarting.
    fn allow_restart(&mut self, org_id: OrgId) -> bool {
        let settings = &self.node.settings;
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

/// The `top` deepest of `depths` (deepest first, ties by id, none with zero), and their total.
fn deepest(depths: impl Iterator<Item = (OrgId, u64)>, top: usize) -> (Vec<(OrgId, u64)>, u64) {
    let mut total = 0;
    let mut deepest: Vec<(OrgId, u64)> = Vec::new();
    for (org_id, depth) in depths {
        total += depth;
        if depth > 0 {
            deepest.push((org_id, depth));
        }
    }
    deepest.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    deepest.truncate(top);
    (deepest, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_queues_are_named_at_most_top_and_every_queue_counts_in_the_total() {
        let orgs: Vec<OrgId> = (0..15).map(|_| OrgId::generate()).collect();
        // Depths 0, 1, …, 14: fourteen queues hold something, the total is 105.
        let depths = orgs.iter().enumerate().map(|(i, org)| (*org, i as u64));
        let (named, total) = deepest(depths, 10);
        assert_eq!(total, 105);
        assert_eq!(named.len(), 10);
        assert_eq!(named[0], (orgs[14], 14));
        assert_eq!(named[9], (orgs[5], 5));
        let (named, total) = deepest(orgs.iter().map(|org| (*org, 0)), 10);
        assert!(named.is_empty(), "an empty queue is not named");
        assert_eq!(total, 0);
    }
}
