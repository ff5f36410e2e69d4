//! The engine's public face for admins and operators: start and stop, admin commands
//! ([`Engine::run`]), queries ([`Engine::query`]), access, and the operator's view. The device
//! entry points are in `device.rs`.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::admin::{
    self, AdminCommand, CreateOperatorToken, CreateOrganization, CreatedOperatorToken,
    EnvironmentToken, IdempotencyKey, ListOperatorTokens, Principal, RevokeOperatorToken,
};
use crate::audit;
use crate::clock::Clock;
use crate::duties::expiry::Swept;
use crate::duties::{self, Duties};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::OrgId;
use crate::link::DeviceLink;
use crate::metrics::{Counters, DetailedMetrics, Metrics};
use crate::model::{AuditEntry, AuditFilter, OperatorTokenInfo, Organization, Page, PageRequest};
use crate::node::Node;
use crate::org::{OrgActorStatus, OrgMsg};
use crate::query::{self, Query};
use crate::runtime_thread::RuntimeThread;
use crate::secrets::{self, SecretCipher, ServerKey};
use crate::settings::EngineSettings;
use crate::store::{Store, StoreError, TokenOwner};
use crate::supervisor::Actors;
use crate::usage;

/// How long a leased webhook delivery is another node's to leave alone: longer than an attempt
/// takes (the delivery task gives up on a receiver after 10 seconds).
pub const WEBHOOK_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// A webhook delivery to send now ([`Engine::lease_webhook_deliveries`]).
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub url: String,
    /// The webhook's signing secret ([`crate::webhooks::signature`]).
    pub secret: String,
    pub event_id: uuid::Uuid,
    pub kind: String,
    /// The body to post (JSON).
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub created_at: crate::ids::Timestamp,
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the server key does not match the one this database was created with; \
         restore the original key file (or PAIRD_SERVER_KEY)"
    )]
    WrongServerKey,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the organization supervisor: {0}")]
    Supervisor(String),
}

/// The paird engine. Cheap to clone; all clones share one state.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) node: Arc<Node>,
    pub(crate) actors: Actors,
    running: Arc<Running>,
}

/// What runs in the background, stopped by [`Engine::shutdown`].
#[derive(Debug)]
struct Running {
    duties: Duties,
    /// The thread ("paird-actors") the organization actors run on. Every pairing of an
    /// organization passes through its actor, one batch after another, and each batch waits on
    /// the database several times. On the server's runtime each of those wake-ups queued behind
    /// thousands of connection tasks (PERFORMANCE.md measured a `BEGIN` at 16 ms instead of
    /// 0.8 ms that way); on a thread of their own the operating system schedules them beside
    /// the connection workers. Callers reach the actors through their mailboxes and reply
    /// channels, which work across runtimes.
    actor_thread: RuntimeThread,
}

const KEY_CHECK: &str = "server_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"paird server key check";

impl Engine {
    /// Starts the engine on a store: checks the server key against the database, clears stale
    /// presence, and starts the organization supervisor and the background duties.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        key: &ServerKey,
        settings: EngineSettings,
    ) -> Result<Engine, StartError> {
        let cipher = SecretCipher::new(key);
        match store.meta(KEY_CHECK).await? {
            Some(sealed) => {
                cipher
                    .open(KEY_CHECK.as_bytes(), &sealed)
                    .map_err(|_| StartError::WrongServerKey)?;
            }
            None => {
                let sealed = cipher.seal(KEY_CHECK.as_bytes(), KEY_CHECK_PLAINTEXT);
                store.set_meta(KEY_CHECK, &sealed).await?;
            }
        }
        store.reset_presence(clock.now()).await?;
        let feed = store.subscribe().await?;
        let mut node = Node::new(store, clock, cipher, settings);
        node.single_node = feed.is_none();
        let node = Arc::new(node);
        // Alive before the first device connects, so that no other node takes this node's
        // presence for stale.
        let now = node.clock.now();
        node.store.heartbeat(node.node_id(), now, now).await?;
        let actor_thread = RuntimeThread::start("paird-actors")
            .map_err(|error| StartError::Supervisor(error.to_string()))?;
        let actors = Actors::start(Arc::clone(&node), &actor_thread)
            .await
            .map_err(StartError::Supervisor)?;
        let duties = Duties::start(&node, &actors, feed);
        Ok(Engine {
            node,
            actors,
            running: Arc::new(Running {
                duties,
                actor_thread,
            }),
        })
    }

    /// Stops the background duties and the organization actors. Requests still buffered are
    /// answered "unavailable"; nothing acknowledged is affected.
    pub async fn shutdown(&self) {
        self.running.duties.stop().await;
        self.actors.stop().await;
        self.running.actor_thread.stop();
        self.node.store.close().await;
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.node.clock
    }

    /// Leases up to `limit` webhook deliveries that are due, for the server's delivery task to
    /// send; another node does not take them for [`WEBHOOK_LEASE`].
    pub async fn lease_webhook_deliveries(
        &self,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, EngineError> {
        let now = self.node.clock.now();
        let leased = self
            .node
            .store
            .lease_deliveries(now, now.plus(WEBHOOK_LEASE), limit)
            .await?;
        let mut due = Vec::with_capacity(leased.len());
        for delivery in leased {
            let secret = self
                .node
                .cipher
                .open(delivery.webhook_id.0.as_bytes(), &delivery.sealed_secret)
                .ok()
                .and_then(|secret| String::from_utf8(secret).ok());
            let Some(secret) = secret else {
                tracing::error!(webhook_id = %delivery.webhook_id, "a webhook's secret cannot be opened with this server key");
                continue;
            };
            due.push(DueDelivery {
                id: delivery.id,
                url: delivery.url,
                secret,
                event_id: delivery.event_id,
                kind: delivery.kind,
                payload: delivery.payload,
                attempts: delivery.attempts,
                created_at: delivery.created_at,
            });
        }
        Ok(due)
    }

    /// Records how an attempt to send `delivery` went: the receiver's HTTP status, or why
    /// there was none. A 2xx status delivers it; anything else is tried again later
    /// ([`crate::webhooks::retry_after`]) or, past the retry period, given up.
    pub async fn finish_webhook_delivery(
        &self,
        delivery: &DueDelivery,
        outcome: Result<u16, String>,
    ) -> Result<(), EngineError> {
        let now = self.node.clock.now();
        let (status, error) = match outcome {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (
                Some(status),
                Some(format!("the receiver answered {status}")),
            ),
            Err(error) => (None, Some(error)),
        };
        let finish = match &error {
            None => {
                Counters::add(&self.node.counters.webhooks_delivered, 1);
                crate::store::DeliveryFinish {
                    at: now,
                    state: "delivered",
                    next_attempt_at: now,
                    status,
                    error: None,
                }
            }
            Some(_) => {
                Counters::add(&self.node.counters.webhook_failures, 1);
                let retry =
                    crate::webhooks::retry_after(delivery.attempts, delivery.created_at, now);
                crate::store::DeliveryFinish {
                    at: now,
                    state: if retry.is_some() { "pending" } else { "failed" },
                    next_attempt_at: retry.unwrap_or(now),
                    status,
                    error,
                }
            }
        };
        self.node
            .store
            .finish_delivery(delivery.id, &finish)
            .await?;
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.node.store
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.node.settings
    }

    pub fn metrics(&self) -> Metrics {
        let (here, elsewhere) = self.node.watchers.counts();
        Metrics {
            live_feed_watched_here: here as u64,
            live_feed_watched_elsewhere: elsewhere as u64,
            ..self
                .node
                .counters
                .read(self.node.registry.len(), self.actors.running())
        }
    }

    /// [`Engine::metrics`] with the distributions, breakdowns and database pools behind it, and
    /// the `top` organizations with the deepest queues. Reads atomics and walks the directory
    /// of running actors; nothing on the pairing path waits for it.
    pub fn detailed_metrics(&self, top: usize) -> DetailedMetrics {
        let counters = &self.node.counters;
        let (deepest_queues, queued_requests) = self.actors.deepest_queues(top);
        DetailedMetrics {
            counters: self.metrics(),
            refusals: counters.refusals(),
            batch_size: counters.batch_size.read(),
            batch_seconds: counters.batch_seconds.read(),
            queued_requests,
            deepest_queues,
            live_feed_watchers: self.node.watchers.streams_here() as u64,
            pools: self.node.store.pools(),
        }
    }

    /// A link for a new device connection.
    pub fn new_link(&self, peer: std::net::IpAddr) -> Arc<DeviceLink> {
        DeviceLink::new(self.node.next_connection_id(), peer)
    }

    /// Every connected device's link, for a graceful shutdown.
    pub fn connected_links(&self) -> Vec<Arc<DeviceLink>> {
        self.node.registry.all()
    }

    // --- admin ------------------------------------------------------------------------------

    /// Runs an admin command on an organization, in its actor, after the device requests that
    /// arrived before it; answers what its transaction decided.
    pub async fn run<C: AdminCommand>(
        &self,
        principal: &Principal,
        org_id: OrgId,
        command: C,
    ) -> Result<C::Reply, EngineError> {
        self.run_with_key(principal, org_id, command, None).await
    }

    /// [`Engine::run`], safe to retry: a command sent again under the same key is answered
    /// with the first run's reply and changes nothing.
    pub async fn run_with_key<C: AdminCommand>(
        &self,
        principal: &Principal,
        org_id: OrgId,
        command: C,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<C::Reply, EngineError> {
        principal.require_org(org_id)?;
        command.authorize(principal)?;
        self.actors
            .run_with_key(*principal, org_id, command, idempotency)
            .await
    }

    /// Creates an organization. It runs in a transaction of its own, not through an actor:
    /// there is none for an organization that does not exist yet.
    pub async fn create_organization(
        &self,
        principal: &Principal,
        command: CreateOrganization,
    ) -> Result<Organization, EngineError> {
        self.create_organization_with_key(principal, command, None)
            .await
    }

    /// [`Engine::create_organization`], safe to retry under an idempotency key.
    pub async fn create_organization_with_key(
        &self,
        principal: &Principal,
        command: CreateOrganization,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Organization, EngineError> {
        command.authorize(principal)?;
        admin::execute(
            &self.node,
            OrgId::generate(),
            *principal,
            &command,
            idempotency.as_ref(),
        )
        .await
    }

    /// Reads an organization's data, after checking that `principal` may.
    pub async fn query<Q: Query>(
        &self,
        principal: &Principal,
        org_id: OrgId,
        query: Q,
    ) -> Result<Q::Answer, EngineError> {
        query::read(&self.node, principal, org_id, &query).await
    }

    /// The organizations `principal` sees: every one for the operator, its own for a key.
    pub async fn list_organizations(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<Organization>, EngineError> {
        match principal {
            Principal::OrgKey { org_id, .. } => {
                let organization = self
                    .query(principal, *org_id, query::GetOrganization)
                    .await?;
                Ok(Page {
                    items: vec![organization],
                    next_cursor: None,
                })
            }
            Principal::Operator | Principal::System => {
                Ok(self.node.store.list_organizations(page).await?)
            }
        }
    }

    /// The audit log of the whole server (operator only), newest first, the entries that pass
    /// `filter`.
    pub async fn server_audit(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, EngineError> {
        principal.require_operator("only the operator reads the server-wide audit log")?;
        let filter = audit::checked_filter(filter)?;
        Ok(self.node.store.list_audit(None, &filter, page).await?)
    }

    /// Watches an organization's live feed: events from this node and, in a cluster, from the
    /// others (see [`crate::events`]). The feed ends when the receiver is dropped.
    pub async fn watch_organization(
        &self,
        principal: &Principal,
        org_id: OrgId,
    ) -> Result<broadcast::Receiver<Arc<OrgEvent>>, EngineError> {
        self.query(principal, org_id, query::GetOrganization)
            .await?;
        let (receiver, first) = self.node.watchers.subscribe(org_id);
        if first && let Err(error) = self.node.store.announce_watch(org_id).await {
            // The periodic announcement tries again.
            tracing::warn!(%org_id, %error, "cannot announce a live-feed watcher to other nodes");
        }
        Ok(receiver)
    }

    // --- access -----------------------------------------------------------------------------

    /// Who holds this bearer token. An expired token is refused like an unknown one. The use
    /// is noted in memory and written later (`usage.rs`): no request writes for itself.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, EngineError> {
        Ok(self.authenticate_until(bearer).await?.0)
    }

    /// [`Engine::authenticate`], with when the token expires (`None`: never), for what a token
    /// keeps open after its request was authenticated (the live feed).
    pub async fn authenticate_until(
        &self,
        bearer: &str,
    ) -> Result<(Principal, Option<crate::ids::Timestamp>), EngineError> {
        let owner = self
            .node
            .store
            .token_owner(&secrets::token_hash(bearer))
            .await?;
        let now = self.node.clock.now();
        let live = |expires_at: Option<crate::ids::Timestamp>| expires_at.is_none_or(|at| at > now);
        match owner {
            Some(TokenOwner::Operator {
                token_id,
                expires_at,
            }) if live(expires_at) => {
                self.node.usage.note(usage::operator_token(token_id), now);
                Ok((Principal::Operator, expires_at))
            }
            Some(TokenOwner::OrgKey {
                org_id,
                key_id,
                expires_at,
            }) if live(expires_at) => {
                self.node.usage.note(usage::org_key(key_id), now);
                Ok((Principal::OrgKey { org_id, key_id }, expires_at))
            }
            _ => Err(EngineError::Unauthorized),
        }
    }

    /// The operator tokens (operator only), never their secrets.
    pub async fn operator_tokens(
        &self,
        principal: &Principal,
    ) -> Result<Vec<OperatorTokenInfo>, EngineError> {
        ListOperatorTokens.run(&self.node, principal).await
    }

    /// Creates an operator token (operator only); the reply holds the token, shown this once.
    pub async fn create_operator_token(
        &self,
        principal: &Principal,
        command: CreateOperatorToken,
    ) -> Result<CreatedOperatorToken, EngineError> {
        command.run(&self.node, principal).await
    }

    /// Revokes an operator token (operator only), unless it is the last usable one.
    pub async fn revoke_operator_token(
        &self,
        principal: &Principal,
        command: RevokeOperatorToken,
    ) -> Result<(), EngineError> {
        command.run(&self.node, principal).await
    }

    /// Makes sure an operator token exists. With `token` (from the environment) that token is
    /// checked for strength and registered, replacing the previous environment token; without,
    /// a new one is created if the database has none usable, and returned so that it can be
    /// shown once.
    pub async fn ensure_operator_token(
        &self,
        token: Option<&str>,
    ) -> Result<Option<String>, EngineError> {
        let store = self.node.store.as_ref();
        let now = self.node.clock.now();
        match token {
            Some(token) => {
                let token = token.trim();
                admin::check_environment_token(token)?;
                let hash = secrets::token_hash(token);
                match admin::register_environment_token(store, &hash, now).await? {
                    EnvironmentToken::Accepted => Ok(None),
                    EnvironmentToken::Revoked => {
                        tracing::warn!(
                            "PAIRD_OPERATOR_TOKEN was revoked through the admin API and is not \
                             accepted; set a new one (openssl rand -hex 32) or unset it"
                        );
                        Box::pin(self.ensure_operator_token(None)).await
                    }
                }
            }
            None if store.has_operator_token(now).await? => Ok(None),
            None => admin::new_operator_token(store, now).await.map(Some),
        }
    }

    // --- operations and tests ---------------------------------------------------------------

    /// What an organization's actor holds (starting it if needed).
    pub async fn org_actor_status(&self, org_id: OrgId) -> Result<OrgActorStatus, EngineError> {
        self.actors.ask(org_id, OrgMsg::Status).await
    }

    /// Fault injection: makes the organization's actor panic (the supervisor restarts it).
    pub async fn crash_org_actor(&self, org_id: OrgId) -> Result<(), EngineError> {
        self.actors.send(org_id, OrgMsg::Crash).await
    }

    /// Ends every pairing whose license has expired now, and releases the licenses of devices
    /// inactive for longer than their organization allows; says how many of each. The expiry
    /// duty does this periodically.
    pub async fn sweep_expired(&self) -> Swept {
        duties::expiry::sweep(&self.node, &self.actors).await
    }
}
