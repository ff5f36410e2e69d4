//! The organization actor: the batching point and the serialization point of one organization
//! on this node.
//!
//! Device requests are buffered; the first request into an empty buffer sends the actor a
//! `Flush` message to itself. Everything already in the mailbox ahead of that `Flush` joins the
//! buffer first, and while a commit is in flight new requests queue in the mailbox, so each commit
//! takes everything that arrived during the previous one: group commit without timers, and no
//! added latency when the organization is quiet.
//!
//! Admin commands run one per transaction, after the device requests buffered before them, so
//! the actor applies everything for its organization in arrival order and pushes changes to
//! connected devices in commit order.
//!
//! Domain refusals are replies. A handler returns an error (or panics) only when the actor itself
//! is broken; the supervisor then restarts it, and the new actor reloads its state from the
//! database. Requests buffered in the dead actor are answered "unavailable" (their reply channels
//! close), never "paired": nothing of theirs was committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Job;
use crate::batch::{self, AckJob, Batch, OfflineJob, PairJob, ResumeJob};
use crate::ids::OrgId;
use crate::node::Node;
use crate::remote;
use crate::store::Notice;

/// How long an actor waits before re-reading after it failed to apply a remote change.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

pub(crate) enum OrgMsg {
    Pair(PairJob),
    Resume(ResumeJob),
    Ack(AckJob),
    Offline(OfflineJob),
    Flush,
    Admin(Box<dyn Job>),
    Status(oneshot::Sender<OrgActorStatus>),
    /// A change committed on another node (or a resync after missed ones).
    Remote(Notice),
    /// Serve the organization's waiting line (the expiry duty's turn).
    ServeLine,
    /// These devices' connections closed while they waited in line.
    LeaveLine(Vec<i64>),
    /// Fault injection for supervision tests: the handler panics.
    Crash,
    IdleCheck,
}

impl std::fmt::Debug for OrgMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            OrgMsg::Pair(_) => "Pair",
            OrgMsg::Resume(_) => "Resume",
            OrgMsg::Ack(_) => "Ack",
            OrgMsg::Offline(_) => "Offline",
            OrgMsg::Flush => "Flush",
            OrgMsg::Admin(_) => "Admin",
            OrgMsg::Status(_) => "Status",
            OrgMsg::Remote(_) => "Remote",
            OrgMsg::ServeLine => "ServeLine",
            OrgMsg::LeaveLine(_) => "LeaveLine",
            OrgMsg::Crash => "Crash",
            OrgMsg::IdleCheck => "IdleCheck",
        };
        f.write_str(name)
    }
}

/// What an organization actor holds, for tests and the operator's status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgActorStatus {
    pub org_id: OrgId,
    pub name: String,
    /// Counts the actor's starts for this organization in this process: a restart after a
    /// panic increments it.
    pub incarnation: u64,
    pub buffered_requests: usize,
}

pub(crate) struct OrgActor;

pub(crate) struct OrgArgs {
    pub node: Arc<Node>,
    pub org_id: OrgId,
    pub incarnation: u64,
}

pub(crate) struct OrgState {
    node: Arc<Node>,
    org_id: OrgId,
    incarnation: u64,
    name: String,
    buffer: Batch,
    flush_queued: bool,
    last_activity: Instant,
    idle_timer: JoinHandle<()>,
}

/// The organization does not exist; the actor does not start.
#[derive(Debug, thiserror::Error)]
#[error("organization {0} does not exist")]
pub(crate) struct OrgNotFound(pub OrgId);

impl Actor for OrgActor {
    type Msg = OrgMsg;
    type State = OrgState;
    type Arguments = OrgArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OrgMsg>,
        args: OrgArgs,
    ) -> Result<OrgState, ActorProcessingErr> {
        // Everything the actor knows is reloaded from the database on every start.
        let org = args
            .node
            .store
            .organization(args.org_id)
            .await?
            .ok_or(OrgNotFound(args.org_id))?;
        let check_every = (args.node.settings.org_idle_timeout / 4).max(Duration::from_millis(50));
        let idle_timer = myself.send_interval(check_every, || OrgMsg::IdleCheck);
        Ok(OrgState {
            node: args.node,
            org_id: args.org_id,
            incarnation: args.incarnation,
            name: org.name,
            buffer: Batch::default(),
            flush_queued: false,
            last_activity: Instant::now(),
            idle_timer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<OrgMsg>,
        state: &mut OrgState,
    ) -> Result<(), ActorProcessingErr> {
        state.idle_timer.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<OrgMsg>,
        message: OrgMsg,
        state: &mut OrgState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            OrgMsg::Pair(job) => {
                state
                    .enqueue(&myself, |buffer| buffer.pairs.push(job))
                    .await
            }
            OrgMsg::Resume(job) => {
                state
                    .enqueue(&myself, |buffer| buffer.resumes.push(job))
                    .await
            }
            OrgMsg::Ack(job) => state.enqueue(&myself, |buffer| buffer.acks.push(job)).await,
            OrgMsg::Offline(job) => {
                state
                    .enqueue(&myself, |buffer| buffer.offline.push(job))
                    .await
            }
            OrgMsg::Flush => {
                state.flush_queued = false;
                state.flush_once(&myself).await;
            }
            OrgMsg::Admin(job) => {
                state.last_activity = Instant::now();
                // Requests that arrived before the command are committed before it.
                state.flush_all().await;
                if job.run(&state.node, state.org_id).await {
                    // The command may have freed or added licenses: the line is theirs first.
                    batch::line::serve(&state.node, state.org_id).await;
                }
            }
            OrgMsg::ServeLine => {
                state.flush_all().await;
                batch::line::serve(&state.node, state.org_id).await;
            }
            OrgMsg::LeaveLine(tickets) => {
                state.flush_all().await;
                batch::line::leave(&state.node, state.org_id, &tickets).await;
            }
            OrgMsg::Remote(notice) => {
                // Behind what was buffered before it, like an admin command.
                state.flush_all().await;
                if let Err(error) = remote::apply(&state.node, state.org_id, &notice).await {
                    // The change is in the tables; read them again a little later.
                    tracing::warn!(org_id = %state.org_id, %error, "cannot apply a change from another node; resyncing soon");
                    let org_id = state.org_id;
                    myself.send_after(RESYNC_RETRY, move || {
                        OrgMsg::Remote(Notice::Resync {
                            org_id: Some(org_id),
                        })
                    });
                }
            }
            OrgMsg::Status(reply) => {
                let _ = reply.send(OrgActorStatus {
                    org_id: state.org_id,
                    name: state.name.clone(),
                    incarnation: state.incarnation,
                    buffered_requests: state.buffer.len(),
                });
            }
            OrgMsg::Crash => {
                panic!(
                    "fault injection: organization actor {} told to crash",
                    state.org_id
                );
            }
            OrgMsg::IdleCheck => {
                let idle = state.last_activity.elapsed() >= state.node.settings.org_idle_timeout;
                if idle && state.buffer.is_empty() && !state.flush_queued {
                    tracing::debug!(org_id = %state.org_id, "organization actor idle; stopping");
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}

impl OrgState {
    async fn enqueue(&mut self, myself: &ActorRef<OrgMsg>, push: impl FnOnce(&mut Batch)) {
        self.last_activity = Instant::now();
        push(&mut self.buffer);
        if !self.node.settings.group_commit {
            // Comparison mode: one transaction per request, in arrival order.
            self.flush_all().await;
            return;
        }
        if self.buffer.len() >= self.node.settings.max_batch {
            self.flush_once(myself).await;
        } else if !self.flush_queued {
            self.flush_queued = true;
            if myself.send_message(OrgMsg::Flush).is_err() {
                self.flush_queued = false;
            }
        }
    }

    /// Commits up to one batch; what is left (or deferred) gets another `Flush`.
    async fn flush_once(&mut self, myself: &ActorRef<OrgMsg>) {
        if self.buffer.is_empty() {
            return;
        }
        let limit = if self.node.settings.group_commit {
            self.node.settings.max_batch
        } else {
            1
        };
        let batch = self.buffer.take(limit);
        let after = batch::commit(&self.node, self.org_id, batch).await;
        self.after_commit(after).await;
        if !self.buffer.is_empty() && !self.flush_queued {
            self.flush_queued = true;
            if myself.send_message(OrgMsg::Flush).is_err() {
                self.flush_queued = false;
            }
        }
    }

    /// Commits everything buffered, in as many batches as it takes.
    async fn flush_all(&mut self) {
        let limit = if self.node.settings.group_commit {
            self.node.settings.max_batch
        } else {
            1
        };
        while !self.buffer.is_empty() {
            let batch = self.buffer.take(limit);
            let after = batch::commit(&self.node, self.org_id, batch).await;
            self.after_commit(after).await;
        }
    }

    /// Keeps the deferred requests, and serves the line if the batch asked for it.
    async fn after_commit(&mut self, after: batch::AfterCommit) {
        self.buffer.append(after.deferred);
        if !after.gone.is_empty() {
            batch::line::leave(&self.node, self.org_id, &after.gone).await;
        }
        if after.serve_line {
            batch::line::serve(&self.node, self.org_id).await;
        }
    }
}
