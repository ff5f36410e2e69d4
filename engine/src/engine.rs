//! The engine's public face: what the server's device endpoint and admin API call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::{EndReason, RefusalReason};
use ractor::{Actor, ActorRef, MessagingErr};
use serde_json::json;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use crate::admin::{self, AdminCommand, AdminJob, AdminOutput, IdempotencyKey, Principal};
use crate::batch::{
    AckAnswer, AckJob, OfflineJob, PairAnswer, PairJob, ResumeAnswer, ResumeJob, ResumeReply,
};
use crate::clock::Clock;
use crate::context::{Metrics, MetricsSnapshot, Shared};
use crate::error::EngineError;
use crate::events::{OrgEvent, WATCH_ANNOUNCE_INTERVAL};
use crate::ids::{CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OrgId, Timestamp};
use crate::link::DeviceLink;
use crate::model::{
    AckStatus, AuditEntry, CodeInfo, CodeKind, CodeWithSecret, Configuration, ConfigurationRollout,
    Device, License, LicenseStatus, LicenseSummary, OrgKeyInfo, Organization, Page, PageRequest,
};
use crate::org::{OrgMsg, OrgSnapshot};
use crate::remote;
use crate::runtime_thread::RuntimeThread;
use crate::secrets::{self, SecretCipher, ServerKey};
use crate::settings::EngineSettings;
use crate::store::{
    ChangeFeed, ConfigEdit, DeviceDetails, NewAudit, Notice, PairingEnd, Store, StoreError,
    TokenOwner,
};
use crate::supervisor::{GetError, OrgSupervisor, SupervisorMsg};

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

/// A new organization key, with its secret (shown once).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: OrgKeyInfo,
    pub key: String,
}

/// Licenses just added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddedLicenses {
    pub organization_id: OrgId,
    pub license_ids: Vec<LicenseId>,
    pub valid_until: Option<Timestamp>,
}

/// What a reusable code is created with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReusableCodeSpec {
    /// Default 30 days; from 1 hour to 1 year.
    pub validity: Option<Duration>,
    pub max_uses: Option<u32>,
    pub label: Option<String>,
}

/// The paird engine. Cheap to clone; all clones share one state.
#[derive(Debug, Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    background: Arc<Background>,
}

#[derive(Debug)]
struct Background {
    supervisor: ActorRef<SupervisorMsg>,
    stop: watch::Sender<bool>,
    /// The expiry sweep (with the node heartbeat) and the change listener.
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// The thread ("paird-actors") the organization actors run on. Every pairing of an
    /// organization passes through its actor, one batch after another, and each batch waits on
    /// the database several times. On the server's runtime each of those wake-ups queued behind
    /// thousands of connection tasks (PERFORMANCE.md measured a `BEGIN` at 16 ms instead of
    /// 0.8 ms that way); on a thread of their own the operating system schedules them beside
    /// the connection workers. Callers reach the actors through their mailboxes and reply
    /// channels, which work across runtimes. Declared last: dropped after the supervisor's
    /// reference.
    actors: RuntimeThread,
}

const KEY_CHECK: &str = "server_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"paird server key check";

impl Engine {
    /// Starts the engine on a store: checks the server key against the database, clears stale
    /// presence, and starts the organization supervisor and the expiry sweep.
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
        store.reset_presence().await?;
        let feed = store.subscribe().await?;
        let shared = Arc::new(Shared::new(store, clock, cipher, settings));
        // Alive before the first device connects, so that no other node takes this node's
        // presence for stale.
        let now = shared.clock.now();
        shared.store.heartbeat(shared.node_id(), now, now).await?;
        let actors = RuntimeThread::start("paird-actors")
            .map_err(|error| StartError::Supervisor(error.to_string()))?;
        // Spawned on the actor thread: the supervisor spawns every organization actor there too.
        let for_supervisor = Arc::clone(&shared);
        let (supervisor, _) = actors
            .handle()
            .spawn(async move { Actor::spawn(None, OrgSupervisor, for_supervisor).await })
            .await
            .map_err(|error| StartError::Supervisor(error.to_string()))?
            .map_err(|error| StartError::Supervisor(error.to_string()))?;
        let _ = shared.supervisor.set(supervisor.clone());
        let (stop, stopped) = watch::channel(false);
        let engine = Engine {
            shared,
            background: Arc::new(Background {
                supervisor,
                stop,
                tasks: std::sync::Mutex::new(Vec::new()),
                actors,
            }),
        };
        let mut tasks = vec![tokio::spawn(sweep_loop(engine.clone(), stopped.clone()))];
        if let Some(feed) = feed {
            tasks.push(tokio::spawn(listen_loop(engine.clone(), feed, stopped)));
        }
        if let Ok(mut slot) = engine.background.tasks.lock() {
            *slot = tasks;
        }
        Ok(engine)
    }

    /// Stops the background work and the organization actors. Requests still buffered are
    /// answered "unavailable"; nothing acknowledged is affected.
    pub async fn shutdown(&self) {
        let _ = self.background.stop.send(true);
        let tasks = self
            .background
            .tasks
            .lock()
            .map(|mut slot| std::mem::take(&mut *slot))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
        self.background.supervisor.stop_children(None);
        let _ = self
            .background
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        self.shared.orgs.clear();
        self.background.actors.stop();
        self.shared.store.close().await;
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.shared.settings
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let (here, elsewhere) = self.shared.watchers.counts();
        MetricsSnapshot {
            live_feed_watched_here: here as u64,
            live_feed_watched_elsewhere: elsewhere as u64,
            ..self
                .shared
                .metrics
                .snapshot(self.shared.registry.len(), self.shared.orgs.len())
        }
    }

    /// A link for a new device connection.
    pub fn new_link(&self, peer: std::net::IpAddr) -> Arc<DeviceLink> {
        DeviceLink::new(self.shared.next_connection_id(), peer)
    }

    /// Every connected device's link, for a graceful shutdown.
    pub fn connected_links(&self) -> Vec<Arc<DeviceLink>> {
        self.shared.registry.all()
    }

    // --- devices ---------------------------------------------------------------------------

    /// Pairs an installation. The answer comes after the commit.
    pub async fn pair(&self, request: &protocol::Pair, link: &Arc<DeviceLink>) -> PairAnswer {
        let now = self.shared.clock.now();
        if let Err(retry_after) = self.shared.address_failures.check(&link.peer, now) {
            return self.rate_limited(retry_after);
        }
        let Some(details) = details(&request.device) else {
            self.failed(link.peer, None, now);
            return PairAnswer::refused(RefusalReason::Malformed);
        };
        let Ok(code) = protocol::PairingCode::parse(&request.code) else {
            self.failed(link.peer, None, now);
            return PairAnswer::refused(RefusalReason::Malformed);
        };
        let hash = secrets::code_hash(&code);
        let route = match self.code_route(&hash).await {
            Ok(Some(route)) => route,
            Ok(None) => {
                // Unknown codes are counted, not written to the audit log one by one.
                Metrics::add(&self.shared.metrics.unknown_code_attempts, 1);
                Metrics::add(&self.shared.metrics.refused_pairings, 1);
                self.failed(link.peer, None, now);
                return PairAnswer::refused(RefusalReason::UnknownCode);
            }
            Err(error) => {
                tracing::warn!(%error, "code lookup failed");
                return PairAnswer::unavailable();
            }
        };
        if let Err(retry_after) = self.shared.code_failures.check(&route.code_id, now) {
            return self.rate_limited(retry_after);
        }
        let (reply, answer) = oneshot::channel();
        let job = PairJob {
            code_id: route.code_id,
            installation_id: InstallationId(request.installation_id),
            credential_hash: secrets::credential_hash(&request.credential),
            details,
            link: Arc::clone(link),
            reply,
        };
        if self
            .dispatch(route.org_id, OrgMsg::Pair(job))
            .await
            .is_err()
        {
            return PairAnswer::unavailable();
        }
        let answer = self
            .await_reply(answer)
            .await
            .unwrap_or_else(PairAnswer::unavailable);
        if let PairAnswer::Refused { reason, .. } = &answer
            && reason.counts_as_failure()
        {
            self.failed(link.peer, Some(route.code_id), now);
        }
        answer
    }

    /// Reconnects a paired installation.
    pub async fn resume(&self, request: &protocol::Resume, link: &Arc<DeviceLink>) -> ResumeAnswer {
        let now = self.shared.clock.now();
        if let Err(retry_after) = self.shared.address_failures.check(&link.peer, now) {
            Metrics::add(&self.shared.metrics.rate_limited, 1);
            return ResumeAnswer::RateLimited {
                retry_after_ms: retry_after,
            };
        }
        let Some(details) = details(&request.device) else {
            self.failed(link.peer, None, now);
            return ResumeAnswer::Malformed;
        };
        let installation = InstallationId(request.installation_id);
        let credential_hash = secrets::credential_hash(&request.credential);
        // Two attempts: the installation may move between lookup and decision (unpaired, then
        // paired elsewhere).
        for _ in 0..2 {
            let route = match self.shared.store.find_installation(installation).await {
                Ok(route) => route,
                Err(error) => {
                    tracing::warn!(%error, "installation lookup failed");
                    return ResumeAnswer::Unavailable {
                        retry_after_ms: 1000,
                    };
                }
            };
            let Some(route) = route else { break };
            let (reply, answer) = oneshot::channel();
            let job = ResumeJob {
                installation_id: installation,
                credential_hash,
                details: details.clone(),
                device_has: request
                    .current
                    .map(|current| (ConfigId(current.configuration_id), current.revision)),
                link: Arc::clone(link),
                reply,
            };
            if self
                .dispatch(route.org_id, OrgMsg::Resume(job))
                .await
                .is_err()
            {
                return ResumeAnswer::Unavailable {
                    retry_after_ms: 1000,
                };
            }
            match self.await_reply(answer).await {
                Some(ResumeReply::Answer(answer)) => {
                    if answer == ResumeAnswer::Ended(EndReason::AuthenticationFailed) {
                        Metrics::add(&self.shared.metrics.failed_resumes, 1);
                        self.failed(link.peer, None, now);
                    }
                    return answer;
                }
                Some(ResumeReply::NotActiveHere) => continue,
                None => {
                    return ResumeAnswer::Unavailable {
                        retry_after_ms: 1000,
                    };
                }
            }
        }
        // No active pairing: tell a device that was unpaired (or whose license expired) why, and
        // anyone else only that authentication failed.
        match self.shared.store.last_ended_pairing(installation).await {
            Ok(Some(ended)) if ended.credential_hash.matches(&credential_hash) => {
                ResumeAnswer::Ended(match ended.end_reason {
                    PairingEnd::Unpaired => EndReason::Unpaired,
                    PairingEnd::LicenseExpired => EndReason::LicenseExpired,
                })
            }
            Ok(_) => {
                Metrics::add(&self.shared.metrics.failed_resumes, 1);
                self.failed(link.peer, None, now);
                ResumeAnswer::Ended(EndReason::AuthenticationFailed)
            }
            Err(error) => {
                tracing::warn!(%error, "ended-pairing lookup failed");
                ResumeAnswer::Unavailable {
                    retry_after_ms: 1000,
                }
            }
        }
    }

    /// Records a device's acknowledgement of a configuration revision.
    pub async fn acknowledge(&self, link: &Arc<DeviceLink>, ack: &protocol::Ack) -> AckAnswer {
        let Some(session) = link.session() else {
            return AckAnswer::NotPaired;
        };
        let (status, reason) = match &ack.outcome {
            protocol::AckOutcome::Applied => (AckStatus::Applied, None),
            protocol::AckOutcome::Failed { reason } => {
                // A NUL would be refused by a text column on PostgreSQL (and means nothing).
                if reason.len() > protocol::limits::MAX_ACK_REASON_BYTES || reason.contains('\0') {
                    return AckAnswer::Malformed;
                }
                (AckStatus::Failed, Some(reason.clone()))
            }
        };
        let (reply, answer) = oneshot::channel();
        let job = AckJob {
            device_id: session.device_id,
            config_id: ConfigId(ack.configuration_id),
            revision: ack.revision,
            status,
            reason,
            reply,
        };
        if self
            .dispatch(session.org_id, OrgMsg::Ack(job))
            .await
            .is_err()
        {
            return AckAnswer::Unavailable;
        }
        self.await_reply(answer)
            .await
            .unwrap_or(AckAnswer::Unavailable)
    }

    /// The connection behind `link` ended: unregister it and record the device offline.
    pub async fn disconnected(&self, link: &Arc<DeviceLink>) {
        let Some(session) = link.close() else {
            return;
        };
        self.shared.registry.remove(session.device_id, link);
        let job = OfflineJob {
            device_id: session.device_id,
            connection_id: link.connection_id,
        };
        let _ = self.dispatch(session.org_id, OrgMsg::Offline(job)).await;
    }

    /// `Some(retry_after_ms)` while an address is blocked for too many failed attempts; the
    /// device endpoint refuses its handshakes meanwhile.
    pub fn address_retry_after(&self, peer: std::net::IpAddr) -> Option<u64> {
        self.shared
            .address_failures
            .check(&peer, self.shared.clock.now())
            .err()
    }

    /// Counts a failed attempt that the edge detected (an undecodable or oversized frame).
    pub fn record_failed_attempt(&self, peer: std::net::IpAddr) {
        self.failed(peer, None, self.shared.clock.now());
    }

    fn rate_limited(&self, retry_after_ms: u64) -> PairAnswer {
        Metrics::add(&self.shared.metrics.rate_limited, 1);
        PairAnswer::Refused {
            reason: RefusalReason::RateLimited,
            retry_after_ms: Some(retry_after_ms),
        }
    }

    fn failed(&self, peer: std::net::IpAddr, code: Option<CodeId>, now: Timestamp) {
        self.shared.address_failures.record(peer, now);
        if let Some(code) = code {
            self.shared.code_failures.record(code, now);
        }
    }

    async fn code_route(
        &self,
        hash: &secrets::SecretHash,
    ) -> Result<Option<crate::store::CodeRoute>, StoreError> {
        if let Some(route) = self.shared.code_routes.get(hash) {
            return Ok(Some(*route));
        }
        let route = self.shared.store.find_code(hash).await?;
        if let Some(route) = route {
            // Bounded: single-use codes are seen once each, so the cache is cleared rather than
            // allowed to grow without end.
            if self.shared.code_routes.len() >= 100_000 {
                self.shared.code_routes.clear();
            }
            self.shared.code_routes.insert(*hash, route);
        }
        Ok(route)
    }

    async fn await_reply<T>(&self, reply: oneshot::Receiver<T>) -> Option<T> {
        match tokio::time::timeout(self.shared.settings.actor_call_timeout, reply).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(_)) => None, // the actor died before answering; nothing was committed for us
            Err(_) => {
                tracing::warn!("organization actor did not answer in time");
                None
            }
        }
    }

    /// Sends a message to an organization's actor, starting it if needed.
    ///
    /// An actor found stopped (idle, or failed) is left for the supervisor to forget: only the
    /// supervisor decides whether a failed actor restarts or backs off, so this waits for it
    /// instead of asking for a new actor behind its back.
    pub(crate) async fn dispatch(
        &self,
        org_id: OrgId,
        mut message: OrgMsg,
    ) -> Result<(), EngineError> {
        for attempt in 0..50u64 {
            let actor = self.org_actor(org_id).await?;
            match actor.send_message(message) {
                Ok(()) => return Ok(()),
                Err(MessagingErr::SendErr(returned)) => {
                    message = returned;
                    tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
                }
                Err(_) => return Err(EngineError::unavailable()),
            }
        }
        Err(EngineError::unavailable())
    }

    async fn org_actor(&self, org_id: OrgId) -> Result<ActorRef<OrgMsg>, EngineError> {
        if let Some(actor) = self.shared.orgs.get(&org_id) {
            return Ok(actor.clone());
        }
        let (reply, answer) = oneshot::channel();
        self.background
            .supervisor
            .send_message(SupervisorMsg::Get(org_id, reply))
            .map_err(|_| EngineError::unavailable())?;
        match self.await_reply(answer).await {
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

    async fn command(
        &self,
        principal: &Principal,
        org_id: OrgId,
        command: AdminCommand,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<AdminOutput, EngineError> {
        principal.require_org(org_id)?;
        let (reply, answer) = oneshot::channel();
        let job = AdminJob {
            principal: *principal,
            command,
            idempotency,
            reply,
        };
        self.dispatch(org_id, OrgMsg::Admin(Box::new(job))).await?;
        self.await_reply(answer)
            .await
            .unwrap_or_else(|| Err(EngineError::unavailable()))
    }

    // --- operations and tests --------------------------------------------------------------

    /// What an organization's actor holds (starting it if needed).
    pub async fn org_snapshot(&self, org_id: OrgId) -> Result<OrgSnapshot, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.dispatch(org_id, OrgMsg::Snapshot(reply)).await?;
        self.await_reply(answer)
            .await
            .ok_or_else(EngineError::unavailable)
    }

    /// Fault injection: makes the organization's actor panic (the supervisor restarts it).
    pub async fn crash_org_actor(&self, org_id: OrgId) -> Result<(), EngineError> {
        self.dispatch(org_id, OrgMsg::Crash).await
    }

    /// Ends every pairing whose license has expired; returns how many. The background sweep
    /// calls this periodically.
    pub async fn sweep_expired(&self) -> u64 {
        const ROUND: u32 = 500;
        let mut ended = 0;
        for _ in 0..20 {
            let now = self.shared.clock.now();
            let expired = match self.shared.store.expired_pairings(now, ROUND).await {
                Ok(expired) => expired,
                Err(error) => {
                    tracing::warn!(%error, "expiry sweep could not read");
                    break;
                }
            };
            let found = expired.len();
            let mut by_org: HashMap<OrgId, Vec<DeviceId>> = HashMap::new();
            for (org_id, device_id) in expired {
                by_org.entry(org_id).or_default().push(device_id);
            }
            let mut progress = 0;
            for (org_id, device_ids) in by_org {
                let command = AdminCommand::ExpireDevices { device_ids };
                match self
                    .command(&Principal::System, org_id, command, None)
                    .await
                {
                    Ok(AdminOutput::Expired { count }) => progress += count,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%org_id, %error, "expiry sweep failed for an organization")
                    }
                }
            }
            ended += progress;
            if found < ROUND as usize || progress == 0 {
                break;
            }
        }
        Metrics::add(&self.shared.metrics.expired_by_sweep, ended);
        ended
    }

    /// The node's heartbeat, and the presence of nodes that stopped beating: run at every
    /// sweep, on every node.
    async fn beat(&self) {
        let shared = &self.shared;
        let now = shared.clock.now();
        let timeout = i64::try_from(shared.settings.node_timeout.as_millis()).unwrap_or(i64::MAX);
        let stale_before = Timestamp(now.0.saturating_sub(timeout));
        match shared
            .store
            .heartbeat(shared.node_id(), now, stale_before)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Other nodes gave this one up (it could not beat for a while) and marked its
                // devices offline; they are still connected here.
                let online: Vec<(DeviceId, i64)> = shared
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
                if let Err(error) = shared.store.mark_online(&online, now).await {
                    tracing::warn!(%error, "cannot mark this node's devices online again");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot record this node's heartbeat"),
        }
        match shared.store.expire_nodes(stale_before).await {
            Ok(0) => {}
            Ok(devices) => tracing::info!(devices, "devices of unresponsive nodes marked offline"),
            Err(error) => tracing::warn!(%error, "cannot expire unresponsive nodes"),
        }
    }

    fn housekeeping(&self) {
        let now = self.shared.clock.now();
        self.shared.address_failures.prune(now);
        self.shared.code_failures.prune(now);
    }

    // --- admin: access ---------------------------------------------------------------------

    /// Who holds this bearer token.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, EngineError> {
        let owner = self
            .shared
            .store
            .token_owner(&secrets::token_hash(bearer))
            .await?;
        match owner {
            Some(TokenOwner::Operator) => Ok(Principal::Operator),
            Some(TokenOwner::OrgKey { org_id, key_id }) => Ok(Principal::OrgKey { org_id, key_id }),
            None => Err(EngineError::Unauthorized),
        }
    }

    /// Makes sure an operator token exists. With `token` (from the environment) that token is
    /// registered; without, a new one is created if the database has none, and returned so that
    /// it can be shown once.
    pub async fn ensure_operator_token(
        &self,
        token: Option<&str>,
    ) -> Result<Option<String>, EngineError> {
        let now = self.shared.clock.now();
        let (hash, created) = match token {
            Some(token) => {
                let token = token.trim();
                if token.len() < 16 {
                    return Err(EngineError::invalid(
                        "PAIRD_OPERATOR_TOKEN",
                        "an operator token needs at least 16 characters",
                    ));
                }
                (secrets::token_hash(token), None)
            }
            None => {
                if self.shared.store.has_operator_token().await? {
                    return Ok(None);
                }
                let token = secrets::new_token(secrets::OPERATOR_TOKEN_PREFIX);
                (secrets::token_hash(&token), Some(token))
            }
        };
        register_operator_token(self.shared.store.as_ref(), &hash, now, token.is_some()).await?;
        Ok(created)
    }

    // --- admin: organizations and keys ----------------------------------------------------

    pub async fn create_organization(
        &self,
        principal: &Principal,
        name: &str,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Organization, EngineError> {
        principal.require_operator("only the operator creates organizations")?;
        let name = admin::validate_name("name", name, 200)?;
        let now = self.shared.clock.now();
        let mut tx = self.shared.store.begin().await?;
        let scope = format!("{}@organizations", principal.audit_name());
        let fingerprint = admin::fingerprint(&("create_organization", &name));
        if let Some(key) = &idempotency
            && let Some(stored) = tx.idempotent_reply(&scope, &key.0).await?
        {
            return admin::replay(&self.shared, &scope, key, &stored, &fingerprint);
        }
        let org = Organization {
            id: OrgId::generate(),
            name,
            created_at: now,
        };
        tx.insert_organization(&org).await?;
        tx.insert_audit(&[NewAudit {
            org_id: Some(org.id),
            at: now,
            actor: principal.audit_name(),
            action: "organization.created".into(),
            subject: Some(org.id.to_string()),
            details: json!({ "name": org.name }),
        }])
        .await?;
        if let Some(key) = &idempotency {
            admin::store_reply(
                &self.shared,
                tx.as_mut(),
                &scope,
                key,
                fingerprint,
                &org,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(org)
    }

    pub async fn list_organizations(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<Organization>, EngineError> {
        match principal {
            Principal::OrgKey { org_id, .. } => {
                let org = self.organization(principal, *org_id).await?;
                Ok(Page {
                    items: vec![org],
                    next_cursor: None,
                })
            }
            _ => Ok(self.shared.store.list_organizations(page).await?),
        }
    }

    pub async fn organization(
        &self,
        principal: &Principal,
        org_id: OrgId,
    ) -> Result<Organization, EngineError> {
        principal.require_org(org_id)?;
        self.shared
            .store
            .organization(org_id)
            .await?
            .ok_or(EngineError::NotFound("organization"))
    }

    /// Watches an organization's live feed: events from this node and, in a cluster, from the
    /// others (see [`crate::events`]). The feed ends when the receiver is dropped.
    pub async fn watch_organization(
        &self,
        principal: &Principal,
        org_id: OrgId,
    ) -> Result<broadcast::Receiver<Arc<OrgEvent>>, EngineError> {
        self.organization(principal, org_id).await?;
        let (receiver, first) = self.shared.watchers.subscribe(org_id);
        if first && let Err(error) = self.shared.store.announce_watch(org_id).await {
            // The periodic announcement tries again.
            tracing::warn!(%org_id, %error, "cannot announce a live-feed watcher to other nodes");
        }
        Ok(receiver)
    }

    pub async fn create_org_key(
        &self,
        principal: &Principal,
        org_id: OrgId,
        name: &str,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<CreatedKey, EngineError> {
        let command = AdminCommand::CreateKey {
            name: name.to_string(),
        };
        match self
            .command(principal, org_id, command, idempotency)
            .await?
        {
            AdminOutput::Key { info, secret } => Ok(CreatedKey { info, key: secret }),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_org_keys(
        &self,
        principal: &Principal,
        org_id: OrgId,
    ) -> Result<Vec<OrgKeyInfo>, EngineError> {
        self.organization(principal, org_id).await?;
        Ok(self.shared.store.list_org_keys(org_id).await?)
    }

    pub async fn revoke_org_key(
        &self,
        principal: &Principal,
        org_id: OrgId,
        key_id: KeyId,
    ) -> Result<(), EngineError> {
        self.command(principal, org_id, AdminCommand::RevokeKey { key_id }, None)
            .await
            .map(|_| ())
    }

    // --- admin: licenses -------------------------------------------------------------------

    pub async fn add_licenses(
        &self,
        principal: &Principal,
        org_id: OrgId,
        count: u32,
        valid_until: Option<Timestamp>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<AddedLicenses, EngineError> {
        principal.require_org(org_id)?;
        principal.require_operator("only the operator adds licenses")?;
        let command = AdminCommand::AddLicenses { count, valid_until };
        match self
            .command(principal, org_id, command, idempotency)
            .await?
        {
            AdminOutput::Licenses { ids, valid_until } => Ok(AddedLicenses {
                organization_id: org_id,
                license_ids: ids,
                valid_until,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Sets a license's `valid_until` (renewal); `None` means no end.
    pub async fn renew_license(
        &self,
        principal: &Principal,
        org_id: OrgId,
        license_id: LicenseId,
        valid_until: Option<Timestamp>,
    ) -> Result<License, EngineError> {
        principal.require_org(org_id)?;
        principal.require_operator("only the operator renews licenses")?;
        let command = AdminCommand::SetLicenseValidUntil {
            license_id,
            valid_until,
        };
        self.command(principal, org_id, command, None).await?;
        self.license(principal, org_id, license_id).await
    }

    pub async fn license(
        &self,
        principal: &Principal,
        org_id: OrgId,
        license_id: LicenseId,
    ) -> Result<License, EngineError> {
        principal.require_org(org_id)?;
        self.shared
            .store
            .license(org_id, license_id, self.shared.clock.now())
            .await?
            .ok_or(EngineError::NotFound("license"))
    }

    pub async fn list_licenses(
        &self,
        principal: &Principal,
        org_id: OrgId,
        status: Option<LicenseStatus>,
        page: &PageRequest,
    ) -> Result<Page<License>, EngineError> {
        self.organization(principal, org_id).await?;
        Ok(self
            .shared
            .store
            .list_licenses(org_id, status, self.shared.clock.now(), page)
            .await?)
    }

    pub async fn license_summary(
        &self,
        principal: &Principal,
        org_id: OrgId,
    ) -> Result<LicenseSummary, EngineError> {
        self.organization(principal, org_id).await?;
        Ok(self
            .shared
            .store
            .license_summary(org_id, self.shared.clock.now())
            .await?)
    }

    // --- admin: codes ----------------------------------------------------------------------

    pub async fn create_reusable_code(
        &self,
        principal: &Principal,
        org_id: OrgId,
        spec: ReusableCodeSpec,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<CodeWithSecret, EngineError> {
        let validity = spec.validity.unwrap_or(admin::REUSABLE_VALIDITY_DEFAULT);
        let command = AdminCommand::CreateReusableCode {
            validity_ms: u64::try_from(validity.as_millis()).unwrap_or(u64::MAX),
            max_uses: spec.max_uses,
            label: spec.label,
        };
        match self
            .command(principal, org_id, command, idempotency)
            .await?
        {
            AdminOutput::Code(code) => Ok(code),
            other => Err(unexpected(other)),
        }
    }

    /// Creates the single-use code of one license, replacing its previous one.
    pub async fn create_single_use_code(
        &self,
        principal: &Principal,
        org_id: OrgId,
        license_id: LicenseId,
        validity: Option<Duration>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<CodeWithSecret, EngineError> {
        let validity = validity.unwrap_or(admin::SINGLE_USE_VALIDITY_DEFAULT);
        let command = AdminCommand::CreateSingleUseCode {
            license_id,
            validity_ms: u64::try_from(validity.as_millis()).unwrap_or(u64::MAX),
        };
        match self
            .command(principal, org_id, command, idempotency)
            .await?
        {
            AdminOutput::Code(code) => Ok(code),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a license's single-use code(s), releasing the reservation. Returns how many.
    pub async fn revoke_single_use_code(
        &self,
        principal: &Principal,
        org_id: OrgId,
        license_id: LicenseId,
    ) -> Result<u64, EngineError> {
        let command = AdminCommand::RevokeSingleUseCodeOf { license_id };
        match self.command(principal, org_id, command, None).await? {
            AdminOutput::SingleUseCodesRevoked { count } => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    pub async fn revoke_code(
        &self,
        principal: &Principal,
        org_id: OrgId,
        code_id: CodeId,
    ) -> Result<CodeInfo, EngineError> {
        self.command(
            principal,
            org_id,
            AdminCommand::RevokeCode { code_id },
            None,
        )
        .await?;
        self.code(principal, org_id, code_id).await
    }

    pub async fn code(
        &self,
        principal: &Principal,
        org_id: OrgId,
        code_id: CodeId,
    ) -> Result<CodeInfo, EngineError> {
        principal.require_org(org_id)?;
        self.shared
            .store
            .code(org_id, code_id, self.shared.clock.now())
            .await?
            .ok_or(EngineError::NotFound("code"))
    }

    /// A reusable code with its secret, shown again. Single-use codes are not kept in a form that
    /// can be shown again: create a new one.
    pub async fn show_code(
        &self,
        principal: &Principal,
        org_id: OrgId,
        code_id: CodeId,
    ) -> Result<CodeWithSecret, EngineError> {
        let info = self.code(principal, org_id, code_id).await?;
        if info.kind != CodeKind::Reusable {
            return Err(EngineError::conflict(
                "code_not_shown_again",
                "single-use codes are shown only when created; create a new one",
            ));
        }
        let sealed = self
            .shared
            .store
            .sealed_code_secret(org_id, code_id)
            .await?
            .ok_or(EngineError::NotFound("code"))?;
        let secret = self
            .shared
            .cipher
            .open(code_id.0.as_bytes(), &sealed)
            .map_err(|_| {
                tracing::error!(%code_id, "a reusable code does not open with the server key");
                EngineError::Internal
            })?;
        let code = String::from_utf8(secret).map_err(|_| EngineError::Internal)?;
        Ok(CodeWithSecret { info, code })
    }

    pub async fn list_codes(
        &self,
        principal: &Principal,
        org_id: OrgId,
        kind: Option<CodeKind>,
        page: &PageRequest,
    ) -> Result<Page<CodeInfo>, EngineError> {
        self.organization(principal, org_id).await?;
        Ok(self
            .shared
            .store
            .list_codes(org_id, kind, self.shared.clock.now(), page)
            .await?)
    }

    // --- admin: configurations -------------------------------------------------------------

    pub async fn create_configuration(
        &self,
        principal: &Principal,
        org_id: OrgId,
        name: &str,
        body: &str,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Configuration, EngineError> {
        let command = AdminCommand::CreateConfiguration {
            name: name.to_string(),
            body: body.to_string(),
        };
        match self
            .command(principal, org_id, command, idempotency)
            .await?
        {
            AdminOutput::Configuration(configuration) => Ok(configuration),
            other => Err(unexpected(other)),
        }
    }

    /// Edits a configuration: a new revision, pushed live to every device running it.
    pub async fn update_configuration(
        &self,
        principal: &Principal,
        org_id: OrgId,
        config_id: ConfigId,
        edit: ConfigEdit,
    ) -> Result<Configuration, EngineError> {
        let command = AdminCommand::UpdateConfiguration {
            config_id,
            name: edit.name,
            body: edit.body,
            if_revision: edit.if_revision,
        };
        self.command(principal, org_id, command, None).await?;
        self.configuration(principal, org_id, config_id).await
    }

    pub async fn delete_configuration(
        &self,
        principal: &Principal,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> Result<(), EngineError> {
        self.command(
            principal,
            org_id,
            AdminCommand::DeleteConfiguration { config_id },
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn configuration(
        &self,
        principal: &Principal,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> Result<Configuration, EngineError> {
        principal.require_org(org_id)?;
        self.shared
            .store
            .configuration(org_id, config_id)
            .await?
            .ok_or(EngineError::NotFound("configuration"))
    }

    /// How the configuration's revisions have reached the devices (applied and failed per
    /// revision, and how many assigned devices run the current one).
    pub async fn configuration_rollout(
        &self,
        principal: &Principal,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> Result<ConfigurationRollout, EngineError> {
        let configuration = self.configuration(principal, org_id, config_id).await?;
        let reports = self
            .shared
            .store
            .configuration_reports(org_id, config_id)
            .await?;
        Ok(ConfigurationRollout::from_reports(&configuration, &reports))
    }

    pub async fn list_configurations(
        &self,
        principal: &Principal,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<Configuration>, EngineError> {
        self.organization(principal, org_id).await?;
        Ok(self.shared.store.list_configurations(org_id, page).await?)
    }

    /// Assigns a configuration to devices (all of them, or none if one is unknown). Returns the
    /// devices assigned; connected ones receive it at once.
    pub async fn assign_configuration(
        &self,
        principal: &Principal,
        org_id: OrgId,
        config_id: ConfigId,
        device_ids: Vec<DeviceId>,
    ) -> Result<Vec<DeviceId>, EngineError> {
        let command = AdminCommand::AssignConfiguration {
            config_id,
            device_ids,
        };
        match self.command(principal, org_id, command, None).await? {
            AdminOutput::Assigned { device_ids } => Ok(device_ids),
            other => Err(unexpected(other)),
        }
    }

    // --- admin: devices and audit ----------------------------------------------------------

    /// Unpairs a device: frees its license, ends its credential, and tells it (if connected)
    /// before closing its connection.
    pub async fn unpair_device(
        &self,
        principal: &Principal,
        org_id: OrgId,
        device_id: DeviceId,
    ) -> Result<LicenseId, EngineError> {
        match self
            .command(principal, org_id, AdminCommand::Unpair { device_id }, None)
            .await?
        {
            AdminOutput::Unpaired { license_id, .. } => Ok(license_id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn device(
        &self,
        principal: &Principal,
        org_id: OrgId,
        device_id: DeviceId,
    ) -> Result<Device, EngineError> {
        principal.require_org(org_id)?;
        self.shared
            .store
            .device(org_id, device_id)
            .await?
            .ok_or(EngineError::NotFound("device"))
    }

    pub async fn list_devices(
        &self,
        principal: &Principal,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<Device>, EngineError> {
        self.organization(principal, org_id).await?;
        Ok(self.shared.store.list_devices(org_id, page).await?)
    }

    /// The audit log of one organization, or (operator only, `None`) of the whole server.
    pub async fn audit_log(
        &self,
        principal: &Principal,
        org_id: Option<OrgId>,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, EngineError> {
        match org_id {
            Some(org_id) => {
                self.organization(principal, org_id).await?;
            }
            None => {
                principal.require_operator("only the operator reads the server-wide audit log")?
            }
        }
        Ok(self.shared.store.list_audit(org_id, page).await?)
    }
}

/// Creates a new operator token directly in a store (for `paird operator-token`, which must not
/// start an engine beside a running server) and returns it.
pub async fn new_operator_token(store: &dyn Store, now: Timestamp) -> Result<String, EngineError> {
    let token = secrets::new_token(secrets::OPERATOR_TOKEN_PREFIX);
    register_operator_token(store, &secrets::token_hash(&token), now, false).await?;
    Ok(token)
}

async fn register_operator_token(
    store: &dyn Store,
    hash: &secrets::SecretHash,
    now: Timestamp,
    from_environment: bool,
) -> Result<(), EngineError> {
    if store.token_owner(hash).await? == Some(TokenOwner::Operator) {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    tx.insert_operator_token(hash, now).await?;
    tx.insert_audit(&[NewAudit {
        org_id: None,
        at: now,
        actor: "system".into(),
        action: "operator_token.created".into(),
        subject: None,
        details: json!({ "from_environment": from_environment }),
    }])
    .await?;
    tx.commit().await?;
    Ok(())
}

fn unexpected(output: AdminOutput) -> EngineError {
    tracing::error!(?output, "admin command returned an unexpected output");
    EngineError::Internal
}

/// Device details within their caps, or `None`.
fn details(device: &protocol::DeviceInfo) -> Option<DeviceDetails> {
    let max = protocol::limits::MAX_DEVICE_FIELD_BYTES;
    let fields = [&device.name, &device.model, &device.os, &device.app_version];
    if fields
        .iter()
        .any(|field| field.len() > max || field.chars().any(char::is_control))
    {
        return None;
    }
    Some(DeviceDetails {
        name: device.name.clone(),
        model: device.model.clone(),
        os: device.os.clone(),
        app_version: device.app_version.clone(),
    })
}

async fn sweep_loop(engine: Engine, mut stop: watch::Receiver<bool>) {
    let mut jumps = engine.shared.clock.jumps();
    let mut tick = tokio::time::interval(engine.shared.settings.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(60));
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announce = tokio::time::interval(WATCH_ANNOUNCE_INTERVAL);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let jumped = async {
            match jumps.as_mut() {
                Some(receiver) => {
                    if receiver.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            () = jumped => {}
            _ = housekeeping.tick() => {
                engine.housekeeping();
                let ttl = engine.shared.settings.idempotency_ttl;
                let before = Timestamp(engine.shared.clock.now().0.saturating_sub(ttl.as_millis() as i64));
                if let Err(error) = engine.shared.store.prune_idempotency(before).await {
                    tracing::warn!(%error, "cannot prune idempotency records");
                }
                continue;
            }
            _ = announce.tick() => {
                for org_id in engine.shared.watchers.watched_here() {
                    if let Err(error) = engine.shared.store.announce_watch(org_id).await {
                        tracing::warn!(%org_id, %error, "cannot announce a live-feed watcher to other nodes");
                    }
                }
                continue;
            }
            _ = stop.changed() => break,
        }
        engine.beat().await;
        engine.sweep_expired().await;
    }
}

/// Hands the notices of other nodes' changes to the organizations they concern here.
async fn listen_loop(
    engine: Engine,
    mut feed: Box<dyn ChangeFeed>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let notice = tokio::select! {
            notice = feed.next() => notice,
            _ = stop.changed() => break,
        };
        match &notice {
            Notice::Events { org_id, events } => {
                for event in events {
                    engine.shared.watchers.deliver(*org_id, event.clone());
                }
                continue;
            }
            Notice::Watch { org_id } => {
                engine.shared.watchers.announced(*org_id);
                continue;
            }
            Notice::Resync { org_id } => {
                tracing::info!(
                    ?notice,
                    "resynchronising connected devices from the database"
                );
                // Other nodes' events may have been missed too.
                match org_id {
                    Some(org_id) => engine.shared.watchers.deliver(*org_id, OrgEvent::Resync),
                    None => engine.shared.watchers.resync_all(),
                }
            }
            Notice::Change(_) => {}
        }
        for org_id in remote::local_orgs(&engine.shared, &notice) {
            if let Err(error) = engine
                .dispatch(org_id, OrgMsg::Remote(notice.clone()))
                .await
            {
                tracing::warn!(%org_id, %error, "cannot hand a change from another node to its organization");
            }
        }
    }
}
