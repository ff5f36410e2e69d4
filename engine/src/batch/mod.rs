//! Group commit of device requests.
//!
//! An organization actor collects the device requests that arrive while its previous commit is
//! in flight and hands them here as one [`Batch`]. The batch runs as one write transaction of
//! set-based statements (a handful per batch, not per request), in three steps:
//!
//! 1. **read**: lock the codes and the installations' active pairings, read the single-use codes'
//!    licenses and the acknowledging devices ([`plan::Facts`]);
//! 2. **decide**, with no I/O ([`plan`]): each request in arrival order (idempotent repeat,
//!    refusal, or a grant), then, once the free licenses the grants need are claimed in one
//!    statement, who gets which license and everything to write;
//! 3. **write**: each kind of write is one conditional statement over the whole batch; commit.
//!
//! Only after the commit are connections bound and requests answered ([`complete`]). A
//! conditional write that changes fewer rows than planned means another node got there first:
//! the transaction rolls back and the batch is retried one request per transaction, so one bad
//! request is refused alone and the rest commit. A device is never told "paired" before the
//! commit.

pub(crate) mod line;
mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::ack_failures::FailureWindow;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{ConfigId, DeviceId, OrgId, Timestamp};
use crate::link::{ConfigRevision, DeviceLink, LinkSession};
use crate::metrics::Counters;
use crate::model::AckStatus;
use crate::node::Node;
use crate::session::{AckAnswer, PairAnswer, ResumeAnswer, SessionEnd};
use crate::store::{
    Change, Claim, ConfigRow, PairingEnd, PairingTx, StoreError, StoreResult, Transaction,
};

pub(crate) use plan::{Acknowledgement, Pairing, Reconnection};
use plan::{Facts, Grantable, PairOutcome, Plan, Requests, ResumeOutcome, Writes};

/// A pairing that passed validation and routing, waiting for its batch.
#[derive(Debug)]
pub(crate) struct PairJob {
    pub pairing: Pairing,
    pub link: Arc<DeviceLink>,
    pub reply: oneshot::Sender<PairAnswer>,
}

#[derive(Debug)]
pub(crate) struct ResumeJob {
    pub reconnection: Reconnection,
    /// What the device runs now, if it said.
    pub running: Option<(ConfigId, u64)>,
    pub link: Arc<DeviceLink>,
    pub reply: oneshot::Sender<ResumeReply>,
}

/// The actor's reply to a reconnection.
#[derive(Debug)]
pub(crate) enum ResumeReply {
    Answer(ResumeAnswer),
    /// The installation has no active pairing in this organization (unpaired, or moved
    /// meanwhile): the engine looks up why.
    NotActiveHere,
}

#[derive(Debug)]
pub(crate) struct AckJob {
    pub acknowledgement: Acknowledgement,
    pub reply: oneshot::Sender<AckAnswer>,
}

#[derive(Debug)]
pub(crate) struct OfflineJob {
    pub device_id: DeviceId,
    pub connection_id: i64,
}

/// Device requests for one organization, in arrival order per kind.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub pairs: Vec<PairJob>,
    pub resumes: Vec<ResumeJob>,
    pub acks: Vec<AckJob>,
    pub offline: Vec<OfflineJob>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.pairs.len() + self.resumes.len() + self.acks.len() + self.offline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves up to `max` requests into a new batch, oldest first within each kind.
    pub fn take(&mut self, max: usize) -> Batch {
        let mut left = max;
        Batch {
            pairs: drain_up_to(&mut self.pairs, &mut left),
            resumes: drain_up_to(&mut self.resumes, &mut left),
            acks: drain_up_to(&mut self.acks, &mut left),
            offline: drain_up_to(&mut self.offline, &mut left),
        }
    }

    /// Drops the requests whose caller no longer waits for the answer.
    fn drop_abandoned(&mut self) {
        self.pairs.retain(|job| !job.reply.is_closed());
        self.resumes.retain(|job| !job.reply.is_closed());
        self.acks.retain(|job| !job.reply.is_closed());
    }

    pub fn append(&mut self, mut other: Batch) {
        self.pairs.append(&mut other.pairs);
        self.resumes.append(&mut other.resumes);
        self.acks.append(&mut other.acks);
        self.offline.append(&mut other.offline);
    }

    /// Splits into batches of one request each.
    fn singletons(self) -> Vec<Batch> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.pairs.into_iter().map(|job| Batch {
            pairs: vec![job],
            ..Batch::default()
        }));
        out.extend(self.resumes.into_iter().map(|job| Batch {
            resumes: vec![job],
            ..Batch::default()
        }));
        out.extend(self.acks.into_iter().map(|job| Batch {
            acks: vec![job],
            ..Batch::default()
        }));
        out.extend(self.offline.into_iter().map(|job| Batch {
            offline: vec![job],
            ..Batch::default()
        }));
        out
    }

    fn answer_unavailable(self) {
        for job in self.pairs {
            let _ = job.reply.send(PairAnswer::unavailable());
        }
        for job in self.resumes {
            let _ = job
                .reply
                .send(ResumeReply::Answer(ResumeAnswer::Unavailable {
                    retry_after_ms: 1000,
                }));
        }
        for job in self.acks {
            let _ = job.reply.send(AckAnswer::Unavailable);
        }
    }
}

/// What committing a batch left to do.
#[derive(Debug, Default)]
pub(crate) struct AfterCommit {
    /// The requests deferred to the next batch (a second request of the same installation in
    /// one batch waits for the first to commit).
    pub deferred: Batch,
    /// Devices joined the line or licenses were freed: the organization's line is to be
    /// served ([`line::serve`]).
    pub serve_line: bool,
    /// Tickets of devices that joined the line on connections that closed meanwhile: they
    /// leave it ([`line::leave`]).
    pub gone: Vec<i64>,
    /// The batch was not committed because the database could not write (a full disk, an
    /// outage): its requests were answered "unavailable".
    pub unavailable: bool,
}

impl AfterCommit {
    fn append(&mut self, other: AfterCommit) {
        self.deferred.append(other.deferred);
        self.serve_line |= other.serve_line;
        self.gone.extend(other.gone);
        self.unavailable |= other.unavailable;
    }
}

/// Commits a batch and answers its requests.
pub(crate) async fn commit(node: &Node, org_id: OrgId, mut batch: Batch) -> AfterCommit {
    // A caller that stopped waiting (it answered "unavailable" after its time-out) is not
    // decided for: committing it now would contradict the answer it gave.
    batch.drop_abandoned();
    if batch.is_empty() {
        return AfterCommit::default();
    }
    let size = batch.len() as u64;
    let started = std::time::Instant::now();
    match decide_and_write(node, org_id, &batch, Claim::BehindLine).await {
        Ok(committed) => {
            node.counters.batch_committed(size, started.elapsed());
            Counters::add(&node.counters.batches, 1);
            Counters::add(&node.counters.batched_requests, size);
            node.counters
                .largest_batch
                .fetch_max(size, std::sync::atomic::Ordering::Relaxed);
            let writes = &committed.plan.writes;
            let serve_line = !writes.waiting.is_empty() || !writes.expired.is_empty();
            let (deferred, gone) = complete(node, org_id, batch, committed);
            AfterCommit {
                deferred,
                serve_line,
                gone,
                unavailable: false,
            }
        }
        Err(error) if batch.len() > 1 => {
            tracing::info!(%org_id, %error, size, "batch rolled back; retrying its requests one by one");
            let mut after = AfterCommit::default();
            let mut singles = batch.singletons().into_iter();
            for single in singles.by_ref() {
                let done = Box::pin(commit(node, org_id, single)).await;
                let unavailable = done.unavailable;
                after.append(done);
                if unavailable {
                    break;
                }
            }
            // One request alone could not be written either (a full disk, say, rather than
            // a conflict with another node): the rest would only fail the same way, one
            // transaction each, while their callers wait.
            for single in singles {
                single.answer_unavailable();
            }
            after
        }
        Err(error) => {
            tracing::warn!(%org_id, %error, "request not committed");
            batch.answer_unavailable();
            AfterCommit {
                unavailable: matches!(error, StoreError::Unavailable(_)),
                ..AfterCommit::default()
            }
        }
    }
}

/// A committed batch's plan, and the revisions its answered connections are sent.
struct Committed {
    plan: Plan,
    revisions: Revisions,
    /// The tickets and places in line of the devices that joined it, in order.
    tickets: Vec<(i64, u64)>,
}

/// The revisions a batch's answered connections are sent: each configuration's own, and the
/// staged revisions that some of its devices run instead.
#[derive(Default)]
struct Revisions {
    own: HashMap<ConfigId, Arc<ConfigRevision>>,
    staged: HashMap<(ConfigId, u64), Arc<ConfigRevision>>,
}

impl Revisions {
    /// What a device of `config`, staged at `staged`, runs.
    fn of(&self, config: Option<ConfigId>, staged: Option<u64>) -> Option<Arc<ConfigRevision>> {
        let own = self.own.get(&config?)?;
        match staged {
            Some(staged) if staged > own.revision => self
                .staged
                .get(&(own.id, staged))
                .cloned()
                .or_else(|| Some(Arc::clone(own))),
            _ => Some(Arc::clone(own)),
        }
    }
}

/// Reads, decides and writes the batch in one transaction, and commits it.
async fn decide_and_write(
    node: &Node,
    org_id: OrgId,
    batch: &Batch,
    claim: Claim,
) -> StoreResult<Committed> {
    let now = node.clock.now();
    let mut tx: Box<dyn Transaction> = node.store.begin().await?;
    let failing = batch
        .acks
        .iter()
        .filter(|job| job.acknowledgement.status == AckStatus::Failed)
        .map(|job| job.acknowledgement.device_id);
    let ack_failures = node.ack_failures.windows(failing);
    let tell = Tell {
        webhooks: node.has_webhooks(org_id).await,
    };
    let decided =
        decide_and_write_in(tx.as_mut(), org_id, now, batch, ack_failures, claim, tell).await;
    let Decided {
        plan,
        configs,
        staged,
        tickets,
    } = match decided {
        Ok(decided) => decided,
        Err(error) => {
            // Ended here rather than on drop: a dropped transaction rolls back in the background,
            // and its row locks would still be held when the caller retries at once.
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(%rollback, "rollback after a failed batch");
            }
            return Err(error);
        }
    };
    tx.commit().await?;
    let mut revisions = Revisions::default();
    for row in configs {
        let revision = node.revision(row);
        revisions.own.insert(revision.id, revision);
    }
    for row in staged {
        let revision = node.revision(row);
        revisions
            .staged
            .insert((revision.id, revision.revision), revision);
    }
    Ok(Committed {
        plan,
        revisions,
        tickets,
    })
}

async fn decide_and_write_in(
    tx: &mut dyn PairingTx,
    org_id: OrgId,
    now: Timestamp,
    batch: &Batch,
    ack_failures: HashMap<DeviceId, FailureWindow>,
    claim: Claim,
    tell: Tell,
) -> StoreResult<Decided> {
    let pairings: Vec<Pairing> = batch.pairs.iter().map(|job| job.pairing.clone()).collect();
    let reconnections: Vec<Reconnection> = batch
        .resumes
        .iter()
        .map(|job| job.reconnection.clone())
        .collect();
    let acknowledgements: Vec<Acknowledgement> = batch
        .acks
        .iter()
        .map(|job| job.acknowledgement.clone())
        .collect();
    let offline: Vec<(DeviceId, i64)> = batch
        .offline
        .iter()
        .map(|job| (job.device_id, job.connection_id))
        .collect();
    let requests = Requests {
        pairings: &pairings,
        reconnections: &reconnections,
        acknowledgements: &acknowledgements,
        offline: &offline,
    };

    let mut facts = read_facts(tx, org_id, now, requests).await?;
    facts.ack_failures = ack_failures;
    let decisions = plan::decide_pairings(&pairings, &facts);
    let wanted = decisions.free_licenses_wanted();
    let free_licenses = if wanted == 0 {
        Vec::new()
    } else {
        let count = u32::try_from(wanted).unwrap_or(u32::MAX);
        tx.claim_free_licenses(org_id, count, now, claim).await?
    };
    let newest = if decisions.grants_any() {
        tx.configuration_for_new_devices(org_id).await?
    } else {
        None
    };
    let grantable = Grantable {
        free_licenses,
        newest_config: newest.as_ref().map(|row| row.id),
    };
    let plan = plan::plan(&facts, requests, decisions, grantable);
    let tickets = write(tx, org_id, now, &plan.writes, tell).await?;

    // The revisions the answered connections are sent.
    let mut configs: Vec<ConfigRow> = newest.into_iter().collect();
    let missing: Vec<ConfigId> = plan
        .configs
        .iter()
        .filter(|id| !configs.iter().any(|row| row.id == **id))
        .copied()
        .collect();
    if !missing.is_empty() {
        configs.extend(tx.config_rows(&missing).await?);
    }
    // Staged revisions newer than their configuration's own (a promotion or a later edit makes
    // the configuration's own the newer, and then that is what the device runs).
    let wanted: Vec<(ConfigId, u64)> = plan
        .staged
        .iter()
        .filter(|(config, revision)| {
            configs
                .iter()
                .any(|row| row.id == *config && row.revision < *revision)
        })
        .copied()
        .collect();
    let staged = if wanted.is_empty() {
        Vec::new()
    } else {
        tx.revision_rows(&wanted).await?
    };
    Ok(Decided {
        plan,
        configs,
        staged,
        tickets,
    })
}

/// Who else a batch's writes tell, beside the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tell {
    /// The organization's webhooks (`Node::has_webhooks`).
    pub webhooks: bool,
}

/// A batch decided and written, not committed yet.
struct Decided {
    plan: Plan,
    /// The configurations its answered connections are sent, and the staged revisions some
    /// of them run instead.
    configs: Vec<ConfigRow>,
    staged: Vec<ConfigRow>,
    /// The tickets and places in line of the devices that joined it.
    tickets: Vec<(i64, u64)>,
}

/// Reads (and locks, where the backend locks rows) what the batch's decisions depend on.
async fn read_facts(
    tx: &mut dyn PairingTx,
    org_id: OrgId,
    now: Timestamp,
    requests: Requests<'_>,
) -> StoreResult<Facts> {
    let mut facts = Facts::new(org_id, now);
    let codes = unique(requests.pairings.iter().map(|pairing| pairing.code_id));
    if !codes.is_empty() {
        facts.codes = by_key(tx.lock_codes(&codes).await?, |code| code.id);
    }
    let pairing = requests
        .pairings
        .iter()
        .map(|pairing| pairing.installation_id);
    let reconnecting = requests
        .reconnections
        .iter()
        .map(|again| again.installation_id);
    let installations = unique(pairing.chain(reconnecting));
    if !installations.is_empty() {
        let pairings = tx.active_devices_by_installation(&installations).await?;
        facts.pairings = by_key(pairings, |device| device.installation_id);
    }
    let reserved = unique(facts.codes.values().filter_map(|code| code.license_id));
    if !reserved.is_empty() {
        facts.reserved_licenses = by_key(tx.lock_licenses(&reserved).await?, |license| license.id);
    }
    let replaced = unique(facts.codes.values().filter_map(|code| code.replaces_device));
    if !replaced.is_empty() {
        let devices = tx.active_devices(&replaced).await?;
        facts.replaced = by_key(
            devices
                .into_iter()
                .filter(|device| device.org_id == org_id)
                .collect(),
            |device| device.id,
        );
    }
    let devices = unique(requests.acknowledgements.iter().map(|ack| ack.device_id));
    if !devices.is_empty() {
        facts.ack_targets = by_key(tx.ack_targets(&devices).await?, |target| target.device_id);
    }
    Ok(facts)
}

/// Rows by their key.
fn by_key<K: Eq + std::hash::Hash, T>(rows: Vec<T>, key: impl Fn(&T) -> K) -> HashMap<K, T> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}

/// Writes a batch's plan: each kind of write one statement over the whole batch. A
/// conditional write that changes fewer rows than planned fails the batch (another node got
/// there first).
async fn write(
    tx: &mut dyn PairingTx,
    org_id: OrgId,
    now: Timestamp,
    writes: &Writes,
    tell: Tell,
) -> StoreResult<Vec<(i64, u64)>> {
    if !writes.expired.is_empty() {
        let ended = tx
            .end_devices(&writes.expired, PairingEnd::LicenseExpired, now)
            .await?;
        if ended.len() != writes.expired.len() {
            return Err(StoreError::Conflict(
                "expired pairing changed concurrently".into(),
            ));
        }
    }
    if !writes.replaced.is_empty() {
        // Before the grants: a replaced device's license is granted to its replacement.
        let ended = tx
            .end_devices(&writes.replaced, PairingEnd::Replaced, now)
            .await?;
        if ended.len() != writes.replaced.len() {
            return Err(StoreError::Conflict(
                "replaced device changed concurrently".into(),
            ));
        }
    }
    if !writes.single_uses.is_empty() {
        let consumed = tx
            .consume_single_use_codes(&writes.single_uses, now)
            .await?;
        if consumed != writes.single_uses.len() as u64 {
            return Err(StoreError::Conflict(
                "single-use code taken concurrently".into(),
            ));
        }
    }
    if !writes.grants.is_empty() {
        let assigned = tx.assign_licenses(&writes.grants, now).await?;
        if assigned != writes.grants.len() as u64 {
            return Err(StoreError::Conflict("license taken concurrently".into()));
        }
        let inserted = tx.insert_devices(org_id, now, &writes.new_devices).await?;
        if inserted != writes.new_devices.len() as u64 {
            return Err(StoreError::Conflict(
                "installation paired concurrently".into(),
            ));
        }
        if !writes.carried_over.is_empty() {
            tx.carry_over(&writes.carried_over).await?;
        }
    }
    if !writes.touches.is_empty() {
        tx.touch_devices(&writes.touches, now).await?;
    }
    if !writes.acks.is_empty() {
        tx.write_acks(&writes.acks, now).await?;
    }
    if !writes.offline.is_empty() {
        tx.set_offline(&writes.offline, now).await?;
    }
    if !writes.audit.is_empty() {
        tx.insert_audit(&writes.audit).await?;
        if tell.webhooks {
            crate::webhooks::enqueue(tx, org_id, &writes.audit).await?;
        }
    }
    if !writes.left_line.is_empty() {
        tx.leave_line(org_id, &writes.left_line).await?;
    }
    let tickets = if writes.waiting.is_empty() {
        Vec::new()
    } else {
        tx.join_line(org_id, &writes.waiting, now).await?
    };
    if !writes.code_uses.is_empty() {
        // The last statement before the commit: on PostgreSQL this update is what the batches
        // of several nodes using one reusable code queue on, so they queue only for a commit.
        tx.count_code_uses(&writes.code_uses, now).await?;
    }
    for (ended, reason) in [
        (&writes.expired, PairingEnd::LicenseExpired),
        (&writes.replaced, PairingEnd::Replaced),
    ] {
        if !ended.is_empty() {
            tx.publish(&Change::DevicesEnded {
                org_id,
                device_ids: ended.clone(),
                reason,
            })
            .await?;
        }
    }
    Ok(tickets)
}

/// After the commit: binds the connections, pushes, answers. Returns the deferred requests, and
/// the tickets of devices that joined the line on connections closed meanwhile.
fn complete(node: &Node, org_id: OrgId, batch: Batch, committed: Committed) -> (Batch, Vec<i64>) {
    let Committed {
        plan,
        revisions,
        tickets,
    } = committed;
    let mut tickets = tickets.into_iter();
    let mut gone = Vec::new();
    node.ack_failures.record(&plan.ack_failures);
    node.publish_events(org_id, || feed_events(&batch, &plan));
    let mut deferred = Batch::default();

    for (device_id, reason) in &plan.ended {
        if let Some(link) = node.registry.get(*device_id) {
            link.end(*reason);
        }
    }

    let mut paired = 0;
    let mut repeated = 0;
    let mut refused = 0;
    for (job, outcome) in batch.pairs.into_iter().zip(plan.pairs) {
        match outcome {
            PairOutcome::Paired {
                device,
                config,
                staged,
            } => {
                if device.already_paired {
                    repeated += 1;
                } else {
                    paired += 1;
                }
                let session = LinkSession {
                    device_id: device.device_id,
                    org_id,
                };
                // A pairing device runs nothing yet: it is sent its configuration.
                let running = None;
                attach(
                    node,
                    &job.link,
                    session,
                    revisions.of(config, staged),
                    running,
                    &mut deferred,
                );
                let _ = job.reply.send(PairAnswer::Paired(device));
            }
            PairOutcome::Refused(reason) => {
                refused += 1;
                let _ = job.reply.send(PairAnswer::refused(reason));
            }
            PairOutcome::Deferred => deferred.pairs.push(job),
            PairOutcome::Waiting => {
                let Some((ticket, position)) = tickets.next() else {
                    let _ = job.reply.send(PairAnswer::unavailable());
                    continue;
                };
                if job.link.wait_in_line(org_id, ticket) {
                    node.waiting.insert(ticket, Arc::clone(&job.link));
                    let _ = job.reply.send(PairAnswer::Waiting { position });
                } else {
                    gone.push(ticket);
                }
            }
            // Only the line's own pairings stay in it (`line::serve`), which have no caller.
            PairOutcome::StillWaiting => {}
        }
    }
    Counters::add(&node.counters.pairings, paired);
    Counters::add(&node.counters.replaced, plan.writes.replaced.len() as u64);
    Counters::add(&node.counters.repeated_pairings, repeated);
    Counters::add(&node.counters.refused_pairings, refused);

    for (job, outcome) in batch.resumes.into_iter().zip(plan.resumes) {
        let answer = match outcome {
            ResumeOutcome::Resumed {
                device,
                config,
                staged,
            } => {
                let session = LinkSession {
                    device_id: device.device_id,
                    org_id,
                };
                let running = job.running;
                attach(
                    node,
                    &job.link,
                    session,
                    revisions.of(config, staged),
                    running,
                    &mut deferred,
                );
                Counters::add(&node.counters.resumes, 1);
                ResumeReply::Answer(ResumeAnswer::Resumed(device))
            }
            ResumeOutcome::Ended(reason) => ResumeReply::Answer(ResumeAnswer::Ended(reason)),
            ResumeOutcome::NotHere => ResumeReply::NotActiveHere,
            ResumeOutcome::Deferred => {
                deferred.resumes.push(job);
                continue;
            }
        };
        let _ = job.reply.send(answer);
    }

    Counters::add(&node.counters.acknowledgements, batch.acks.len() as u64);
    for (job, answer) in batch.acks.into_iter().zip(plan.acks) {
        let _ = job.reply.send(answer);
    }
    (deferred, gone)
}

/// What a committed batch tells the organization's live feed: one event per kind of change.
fn feed_events(batch: &Batch, plan: &Plan) -> Vec<OrgEvent> {
    let mut paired = Vec::new();
    let mut online = Vec::new();
    for outcome in &plan.pairs {
        if let PairOutcome::Paired { device, .. } = outcome {
            if device.already_paired {
                online.push(device.device_id);
            } else {
                paired.push(device.device_id);
            }
        }
    }
    for outcome in &plan.resumes {
        if let ResumeOutcome::Resumed { device, .. } = outcome {
            online.push(device.device_id);
        }
    }
    let acknowledged = batch
        .acks
        .iter()
        .zip(&plan.acks)
        .filter(|(_, answer)| matches!(answer, AckAnswer::Recorded(true)))
        .map(|(job, _)| job.acknowledgement.device_id);
    let offline = batch.offline.iter().map(|job| job.device_id);
    let ended = plan.ended.iter().map(|(device_id, _)| *device_id);
    [
        (DeviceChange::Paired, paired),
        (DeviceChange::Online, online),
        (DeviceChange::Acknowledged, unique(acknowledged)),
        (DeviceChange::Offline, unique(offline)),
        (DeviceChange::Ended, unique(ended)),
    ]
    .into_iter()
    .filter(|(_, device_ids)| !device_ids.is_empty())
    .map(|(change, device_ids)| OrgEvent::Devices { change, device_ids })
    .chain(
        (!plan.writes.waiting.is_empty() || !plan.writes.left_line.is_empty())
            .then_some(OrgEvent::Waiting),
    )
    .collect()
}

/// Registers a connection as its device's live link, superseding an older one. If the
/// connection closed while its request was being committed, it is detached again at once and the
/// device is reported offline in the next batch.
fn attach(
    node: &Node,
    link: &Arc<DeviceLink>,
    session: LinkSession,
    assigned: Option<Arc<ConfigRevision>>,
    running: Option<(ConfigId, u64)>,
    next_batch: &mut Batch,
) {
    if let Some(previous) = node.registry.insert(session.device_id, link) {
        previous.end(SessionEnd::Superseded);
    }
    if !link.bind(session, assigned, running) {
        node.registry.remove(session.device_id, link);
        next_batch.offline.push(OfflineJob {
            device_id: session.device_id,
            connection_id: link.connection_id,
        });
    }
}

fn drain_up_to<T>(from: &mut Vec<T>, left: &mut usize) -> Vec<T> {
    let n = from.len().min(*left);
    *left -= n;
    from.drain(..n).collect()
}

fn unique<T: Eq + std::hash::Hash + Copy>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.filter(|item| seen.insert(*item)).collect()
}
