//! Group commit of device requests: the pairing, reconnection and acknowledgement rules.
//!
//! An organization actor collects the device requests that arrive while its previous commit is in
//! flight and hands them here as one [`Batch`]. The batch runs as one write transaction of
//! set-based statements (a handful per batch, not per request):
//!
//! 1. read and lock the codes and the installations' active pairings;
//! 2. decide each request in arrival order (idempotent repeat, refusal, or a grant to make);
//! 3. claim free licenses for the reusable-code grants in one statement;
//! 4. write: consume single-use codes, assign licenses, insert devices, count code uses, update
//!    reconnected devices, record acknowledgements and presence, append audit entries — each one
//!    conditional statement over the whole batch;
//! 5. commit, and only then bind the connections and answer.
//!
//! A conditional write that changes fewer rows than planned means another node got there first:
//! the transaction rolls back and the batch is retried one request per transaction, so one bad
//! request is refused alone and the rest commit. A device is never told "paired" before the
//! commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use protocol::{EndReason, RefusalReason};
use serde_json::json;
use tokio::sync::oneshot;

use crate::context::{Metrics, Shared};
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{CodeId, ConfigId, DeviceId, InstallationId, LicenseId, OrgId, Timestamp};
use crate::link::{ConfigSnapshot, DeviceLink, LinkSession};
use crate::model::{AckStatus, CodeKind};
use crate::secrets::SecretHash;
use crate::store::{
    AckWrite, ActiveDevice, Change, CodeState, DeviceDetails, DeviceTouch, LicenseGrant, NewAudit,
    NewDevice, PairingEnd, StoreError, StoreResult, Transaction,
};

/// A pairing that passed validation and routing.
#[derive(Debug)]
pub(crate) struct PairJob {
    pub code_id: CodeId,
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub details: DeviceDetails,
    pub link: Arc<DeviceLink>,
    pub reply: oneshot::Sender<PairAnswer>,
}

#[derive(Debug)]
pub(crate) struct ResumeJob {
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub details: DeviceDetails,
    pub device_has: Option<(ConfigId, u64)>,
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
    pub device_id: DeviceId,
    pub config_id: ConfigId,
    pub revision: u64,
    pub status: AckStatus,
    pub reason: Option<String>,
    pub reply: oneshot::Sender<AckAnswer>,
}

#[derive(Debug)]
pub(crate) struct OfflineJob {
    pub device_id: DeviceId,
    pub connection_id: i64,
}

/// The answer to a pairing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairAnswer {
    Paired(PairedDevice),
    Refused {
        reason: RefusalReason,
        retry_after_ms: Option<u64>,
    },
}

impl PairAnswer {
    pub(crate) fn refused(reason: RefusalReason) -> Self {
        PairAnswer::Refused {
            reason,
            retry_after_ms: None,
        }
    }

    pub(crate) fn unavailable() -> Self {
        PairAnswer::Refused {
            reason: RefusalReason::Unavailable,
            retry_after_ms: Some(1000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedDevice {
    pub device_id: DeviceId,
    pub org_id: OrgId,
    pub license_id: LicenseId,
    pub license_valid_until: Option<Timestamp>,
    pub already_paired: bool,
    pub configuration_pending: bool,
}

/// The answer to a reconnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeAnswer {
    Resumed(ResumedDevice),
    /// The session cannot continue; the connection sends `Ended` with this reason and closes.
    Ended(EndReason),
    /// Nothing was decided; the device should retry later.
    Unavailable {
        retry_after_ms: u64,
    },
    /// Too many failed attempts from this address; nothing was decided.
    RateLimited {
        retry_after_ms: u64,
    },
    /// The request broke a field limit; the connection closes as malformed.
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedDevice {
    pub device_id: DeviceId,
    pub org_id: OrgId,
    pub license_id: LicenseId,
    pub license_valid_until: Option<Timestamp>,
}

/// The answer to an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAnswer {
    /// `true` when the acknowledgement matches the device's assignment (recorded, or already
    /// recorded); `false` when it was ignored as stale.
    Recorded(bool),
    Unavailable,
    /// The connection has not paired or resumed: there is no device to acknowledge for.
    NotPaired,
    /// The request broke a field limit.
    Malformed,
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

/// Commits a batch and answers its requests. Returns the requests deferred to the next batch
/// (a second request of the same installation in one batch waits for the first to commit).
pub(crate) async fn commit(shared: &Shared, org_id: OrgId, mut batch: Batch) -> Batch {
    // A caller that stopped waiting (it answered "unavailable" after its time-out) is not
    // decided for: committing it now would contradict the answer it gave.
    batch.drop_abandoned();
    if batch.is_empty() {
        return Batch::default();
    }
    let size = batch.len() as u64;
    match plan_and_commit(shared, org_id, &batch).await {
        Ok(plan) => {
            Metrics::add(&shared.metrics.batches, 1);
            Metrics::add(&shared.metrics.batched_requests, size);
            shared
                .metrics
                .largest_batch
                .fetch_max(size, std::sync::atomic::Ordering::Relaxed);
            deliver(shared, org_id, batch, plan)
        }
        Err(error) if batch.len() > 1 => {
            tracing::info!(%org_id, %error, size, "batch rolled back; retrying its requests one by one");
            let mut deferred = Batch::default();
            for single in batch.singletons() {
                deferred.append(Box::pin(commit(shared, org_id, single)).await);
            }
            deferred
        }
        Err(error) => {
            tracing::warn!(%org_id, %error, "request not committed");
            batch.answer_unavailable();
            Batch::default()
        }
    }
}

/// What was decided for each request, aligned with the batch.
struct Plan {
    pairs: Vec<PairOutcome>,
    resumes: Vec<ResumeOutcome>,
    acks: Vec<AckAnswer>,
    /// Devices whose pairing this batch ended (expired licenses found on the way).
    ended: Vec<(DeviceId, EndReason)>,
    snapshots: HashMap<ConfigId, Arc<ConfigSnapshot>>,
}

enum PairOutcome {
    Paired {
        device: PairedDevice,
        config: Option<ConfigId>,
    },
    Refused(RefusalReason),
    Deferred,
}

enum ResumeOutcome {
    Resumed {
        device: ResumedDevice,
        config: Option<ConfigId>,
    },
    Ended(EndReason),
    /// The installation has no active pairing in this organization (any more): the caller looks
    /// up why.
    NotHere,
}

async fn plan_and_commit(shared: &Shared, org_id: OrgId, batch: &Batch) -> StoreResult<Plan> {
    let now = shared.clock.now();
    let mut tx = shared.store.begin().await?;
    let decided = match decide(org_id, now, batch, tx.as_mut()).await {
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
    let (work, pairs, resumes, acks) = decided;
    let snapshots = work
        .config_rows
        .into_values()
        .map(|row| {
            let snapshot = shared.snapshot(row);
            (snapshot.id, snapshot)
        })
        .collect();
    Ok(Plan {
        pairs,
        resumes,
        acks,
        ended: work.ended,
        snapshots,
    })
}

type Decided = (Work, Vec<PairOutcome>, Vec<ResumeOutcome>, Vec<AckAnswer>);

/// Decides every request of the batch inside `tx`, writing what it decided; the caller commits.
async fn decide(
    org_id: OrgId,
    now: Timestamp,
    batch: &Batch,
    tx: &mut dyn Transaction,
) -> StoreResult<Decided> {
    let mut work = Work {
        org_id,
        now,
        audit: Vec::new(),
        ended: Vec::new(),
        config_rows: HashMap::new(),
        wanted_configs: HashSet::new(),
        code_uses: HashMap::new(),
    };
    let pairs = work.pairs(tx, &batch.pairs).await?;
    let resumes = work.resumes(tx, &batch.resumes).await?;
    let acks = work.acks(tx, &batch.acks).await?;
    if !batch.offline.is_empty() {
        let offline: Vec<(DeviceId, i64)> = batch
            .offline
            .iter()
            .map(|job| (job.device_id, job.connection_id))
            .collect();
        tx.set_offline(&offline, now).await?;
    }
    let missing: Vec<ConfigId> = work
        .wanted_configs
        .iter()
        .filter(|id| !work.config_rows.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        for row in tx.config_rows(&missing).await? {
            work.config_rows.insert(row.id, row);
        }
    }
    if !work.audit.is_empty() {
        tx.insert_audit(&work.audit).await?;
    }
    if !work.code_uses.is_empty() {
        // The last statement before the commit: on PostgreSQL this update is what the batches
        // of several nodes using one reusable code queue on, so they queue only for a commit.
        let mut uses: Vec<(CodeId, u32)> = work.code_uses.drain().collect();
        uses.sort_unstable_by_key(|(code, _)| code.0);
        tx.count_code_uses(&uses, now).await?;
    }
    if !work.ended.is_empty() {
        // Every pairing a batch ends is one whose license expired.
        tx.publish(&Change::DevicesEnded {
            org_id,
            device_ids: work.ended.iter().map(|(device, _)| *device).collect(),
            reason: PairingEnd::LicenseExpired,
        })
        .await?;
    }
    Ok((work, pairs, resumes, acks))
}

/// The state of one batch transaction while its requests are decided.
struct Work {
    org_id: OrgId,
    now: Timestamp,
    audit: Vec<NewAudit>,
    ended: Vec<(DeviceId, EndReason)>,
    config_rows: HashMap<ConfigId, crate::store::ConfigRow>,
    wanted_configs: HashSet<ConfigId>,
    /// Uses of reusable codes granted in this batch, written by `decide` at the end.
    code_uses: HashMap<CodeId, u32>,
}

/// A pairing's decision before licenses are claimed.
enum Step {
    Refuse(RefusalReason),
    Existing(ActiveDevice),
    SingleUse { code: CodeId, license: LicenseId },
    Reusable { code: CodeId },
    Deferred,
}

impl Work {
    fn audit(&mut self, actor: String, action: &str, subject: String, details: serde_json::Value) {
        self.audit.push(NewAudit {
            org_id: Some(self.org_id),
            at: self.now,
            actor,
            action: action.to_string(),
            subject: Some(subject),
            details,
        });
    }

    async fn pairs(
        &mut self,
        tx: &mut dyn Transaction,
        jobs: &[PairJob],
    ) -> StoreResult<Vec<PairOutcome>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now;
        let code_ids: Vec<CodeId> = unique(jobs.iter().map(|job| job.code_id));
        let codes: HashMap<CodeId, CodeState> = tx
            .lock_codes(&code_ids)
            .await?
            .into_iter()
            .map(|code| (code.id, code))
            .collect();
        let installations = unique(jobs.iter().map(|job| job.installation_id));
        let existing: HashMap<InstallationId, ActiveDevice> = tx
            .active_devices_by_installation(&installations)
            .await?
            .into_iter()
            .map(|device| (device.installation_id, device))
            .collect();

        // Decide each request in arrival order.
        let mut seen = HashSet::new();
        let mut single_use_taken = HashSet::new();
        let mut reusable_taken: HashMap<CodeId, u32> = HashMap::new();
        let mut to_expire = Vec::new();
        let mut steps = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !seen.insert(job.installation_id) {
                steps.push(Step::Deferred);
                continue;
            }
            if let Some(device) = existing.get(&job.installation_id) {
                if device.org_id != self.org_id {
                    steps.push(Step::Refuse(RefusalReason::AlreadyPairedElsewhere));
                    continue;
                }
                if !device.credential_hash.matches(&job.credential_hash) {
                    steps.push(Step::Refuse(RefusalReason::CredentialMismatch));
                    continue;
                }
                if !device.license_expired_at(now) {
                    steps.push(Step::Existing(device.clone()));
                    continue;
                }
                // The old pairing's license expired and the sweep has not ended it yet: end it
                // now, and treat this as a new pairing with the scanned code.
                to_expire.push(device.id);
            }
            let step = match codes.get(&job.code_id) {
                None => Step::Refuse(RefusalReason::UnknownCode),
                Some(code) => decide_code(code, now, &mut single_use_taken, &mut reusable_taken),
            };
            steps.push(step);
        }

        // Single-use grants: their license must still be grantable.
        let single_licenses: Vec<LicenseId> = unique(steps.iter().filter_map(|step| match step {
            Step::SingleUse { license, .. } => Some(*license),
            _ => None,
        }));
        let mut single_use_valid_until = Vec::new();
        if !single_licenses.is_empty() {
            let licenses: HashMap<LicenseId, _> = tx
                .lock_licenses(&single_licenses)
                .await?
                .into_iter()
                .map(|license| (license.id, license))
                .collect();
            for step in &mut steps {
                if let Step::SingleUse { code, license } = step {
                    let grantable = licenses.get(license).is_some_and(|state| {
                        state.device_id.is_none()
                            && !state.expired_at(now)
                            && state.reserved_by == Some(*code)
                    });
                    if !grantable {
                        *step = Step::Refuse(RefusalReason::LicenseUnavailable);
                    }
                }
            }
            single_use_valid_until.extend(
                licenses
                    .values()
                    .map(|license| (license.id, license.valid_until)),
            );
        }

        if !to_expire.is_empty() {
            let ended = tx
                .end_devices(&to_expire, PairingEnd::LicenseExpired, now)
                .await?;
            if ended.len() != to_expire.len() {
                return Err(StoreError::Conflict(
                    "expired pairing changed concurrently".into(),
                ));
            }
            for device in ended {
                self.ended
                    .push((device.device_id, EndReason::LicenseExpired));
                self.audit(
                    "system".into(),
                    "device.license_expired",
                    device.device_id.to_string(),
                    json!({ "license_id": device.license_id }),
                );
            }
        }

        // Reusable grants: one statement claims every license the batch needs.
        let wanted = steps
            .iter()
            .filter(|step| matches!(step, Step::Reusable { .. }))
            .count();
        let claimed = if wanted == 0 {
            Vec::new()
        } else {
            tx.claim_free_licenses(self.org_id, u32::try_from(wanted).unwrap_or(u32::MAX), now)
                .await?
        };
        // Every granted license's end date, for the answers.
        let mut valid_until: HashMap<LicenseId, Option<Timestamp>> = claimed
            .iter()
            .map(|license| (license.id, license.valid_until))
            .collect();
        valid_until.extend(single_use_valid_until);
        let mut claimed = claimed.into_iter().map(|license| license.id);

        // Build the writes.
        let any_grant = steps
            .iter()
            .any(|step| matches!(step, Step::Reusable { .. } | Step::SingleUse { .. }));
        let newest = if any_grant {
            tx.newest_configuration(self.org_id).await?
        } else {
            None
        };
        let newest_id = newest.as_ref().map(|row| row.id);
        if let Some(row) = newest {
            self.config_rows.insert(row.id, row);
        }
        let mut grants = Vec::new();
        let mut devices = Vec::new();
        let mut single_uses = Vec::new();
        let mut touches = Vec::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut grant_info: Vec<(CodeId, LicenseId)> = Vec::new();
        for (job, step) in jobs.iter().zip(steps) {
            let (code, license, single) = match step {
                Step::Deferred => {
                    outcomes.push(PairOutcome::Deferred);
                    continue;
                }
                Step::Refuse(reason) => {
                    outcomes.push(PairOutcome::Refused(reason));
                    if reason != RefusalReason::UnknownCode {
                        self.audit(
                            "device".into(),
                            "pairing.refused",
                            job.code_id.to_string(),
                            json!({
                                "reason": reason.as_str(),
                                "installation_id": job.installation_id,
                                "address": job.link.peer.to_string(),
                            }),
                        );
                    }
                    continue;
                }
                Step::Existing(device) => {
                    touches.push(DeviceTouch {
                        device_id: device.id,
                        details: job.details.clone(),
                        connection: job.link.connection_id,
                    });
                    if let Some(config) = device.config_id {
                        self.wanted_configs.insert(config);
                    }
                    self.audit(
                        format!("device:{}", device.id),
                        "device.pairing_repeated",
                        device.id.to_string(),
                        json!({ "code_id": job.code_id, "address": job.link.peer.to_string() }),
                    );
                    outcomes.push(PairOutcome::Paired {
                        device: PairedDevice {
                            device_id: device.id,
                            org_id: self.org_id,
                            license_id: device.license_id,
                            license_valid_until: device.license_valid_until,
                            already_paired: true,
                            configuration_pending: device.config_id.is_none(),
                        },
                        config: device.config_id,
                    });
                    continue;
                }
                Step::SingleUse { code, license } => (code, license, true),
                Step::Reusable { code } => match claimed.next() {
                    Some(license) => (code, license, false),
                    None => {
                        outcomes.push(PairOutcome::Refused(RefusalReason::NoFreeLicense));
                        self.audit(
                            "device".into(),
                            "pairing.refused",
                            code.to_string(),
                            json!({
                                "reason": RefusalReason::NoFreeLicense.as_str(),
                                "installation_id": job.installation_id,
                                "address": job.link.peer.to_string(),
                            }),
                        );
                        continue;
                    }
                },
            };
            let device_id = DeviceId::generate();
            grants.push(LicenseGrant {
                license_id: license,
                device_id,
                single_use_code: single.then_some(code),
            });
            if single {
                single_uses.push((code, device_id));
            } else {
                // Counted last (see `decide`).
                *self.code_uses.entry(code).or_default() += 1;
            }
            devices.push(NewDevice {
                id: device_id,
                installation_id: job.installation_id,
                credential_hash: job.credential_hash,
                license_id: license,
                details: job.details.clone(),
                paired_by_code: code,
                connection: job.link.connection_id,
            });
            grant_info.push((code, license));
            outcomes.push(PairOutcome::Paired {
                device: PairedDevice {
                    device_id,
                    org_id: self.org_id,
                    license_id: license,
                    license_valid_until: None, // filled below from the license rows
                    already_paired: false,
                    configuration_pending: newest_id.is_none(),
                },
                config: newest_id,
            });
        }

        if !single_uses.is_empty() {
            let consumed = tx.consume_single_use_codes(&single_uses, now).await?;
            if consumed != single_uses.len() as u64 {
                return Err(StoreError::Conflict(
                    "single-use code taken concurrently".into(),
                ));
            }
        }
        if !grants.is_empty() {
            let assigned = tx.assign_licenses(&grants, now).await?;
            if assigned != grants.len() as u64 {
                return Err(StoreError::Conflict("license taken concurrently".into()));
            }
            let inserted = tx
                .insert_devices(self.org_id, newest_id, now, &devices)
                .await?;
            if inserted != devices.len() as u64 {
                return Err(StoreError::Conflict(
                    "installation paired concurrently".into(),
                ));
            }
            for outcome in &mut outcomes {
                if let PairOutcome::Paired { device, .. } = outcome
                    && !device.already_paired
                {
                    device.license_valid_until =
                        valid_until.get(&device.license_id).copied().flatten();
                }
            }
        }
        if !touches.is_empty() {
            tx.touch_devices(&touches, now).await?;
        }
        for (new_device, (code, license)) in devices.iter().zip(grant_info) {
            self.audit(
                format!("device:{}", new_device.id),
                "device.paired",
                new_device.id.to_string(),
                // The device's name, model and versions are in its row; the audit keeps what
                // decided the pairing.
                json!({
                    "code_id": code,
                    "license_id": license,
                    "installation_id": new_device.installation_id,
                }),
            );
        }
        Ok(outcomes)
    }

    async fn resumes(
        &mut self,
        tx: &mut dyn Transaction,
        jobs: &[ResumeJob],
    ) -> StoreResult<Vec<ResumeOutcome>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now;
        let installations = unique(jobs.iter().map(|job| job.installation_id));
        let active: HashMap<InstallationId, ActiveDevice> = tx
            .active_devices_by_installation(&installations)
            .await?
            .into_iter()
            .map(|device| (device.installation_id, device))
            .collect();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut touches = Vec::new();
        let mut to_expire = Vec::new();
        for job in jobs {
            let outcome = match active.get(&job.installation_id) {
                Some(device) if device.org_id == self.org_id => {
                    if !device.credential_hash.matches(&job.credential_hash) {
                        ResumeOutcome::Ended(EndReason::AuthenticationFailed)
                    } else if device.license_expired_at(now) {
                        if !to_expire.contains(&device.id) {
                            to_expire.push(device.id);
                        }
                        ResumeOutcome::Ended(EndReason::LicenseExpired)
                    } else {
                        touches.push(DeviceTouch {
                            device_id: device.id,
                            details: job.details.clone(),
                            connection: job.link.connection_id,
                        });
                        if let Some(config) = device.config_id {
                            self.wanted_configs.insert(config);
                        }
                        ResumeOutcome::Resumed {
                            device: ResumedDevice {
                                device_id: device.id,
                                org_id: self.org_id,
                                license_id: device.license_id,
                                license_valid_until: device.license_valid_until,
                            },
                            config: device.config_id,
                        }
                    }
                }
                _ => ResumeOutcome::NotHere,
            };
            outcomes.push(outcome);
        }
        if !to_expire.is_empty() {
            for device in tx
                .end_devices(&to_expire, PairingEnd::LicenseExpired, now)
                .await?
            {
                self.ended
                    .push((device.device_id, EndReason::LicenseExpired));
                self.audit(
                    "system".into(),
                    "device.license_expired",
                    device.device_id.to_string(),
                    json!({ "license_id": device.license_id }),
                );
            }
        }
        if !touches.is_empty() {
            tx.touch_devices(&touches, now).await?;
        }
        Ok(outcomes)
    }

    async fn acks(
        &mut self,
        tx: &mut dyn Transaction,
        jobs: &[AckJob],
    ) -> StoreResult<Vec<AckAnswer>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = unique(jobs.iter().map(|job| job.device_id));
        let mut targets: HashMap<DeviceId, crate::store::AckTarget> = tx
            .ack_targets(&ids)
            .await?
            .into_iter()
            .map(|target| (target.device_id, target))
            .collect();
        let mut answers = Vec::with_capacity(jobs.len());
        let mut writes: Vec<AckWrite> = Vec::new();
        for job in jobs {
            let Some(target) = targets.get_mut(&job.device_id) else {
                answers.push(AckAnswer::Recorded(false));
                continue;
            };
            let assigned = target.config_id == Some(job.config_id)
                && target
                    .config_revision
                    .is_some_and(|current| job.revision <= current);
            let stale = target.applied_config_id == Some(job.config_id)
                && target
                    .applied_revision
                    .is_some_and(|applied| applied > job.revision);
            if !assigned || stale {
                answers.push(AckAnswer::Recorded(false));
                continue;
            }
            answers.push(AckAnswer::Recorded(true));
            let unchanged = target.applied_config_id == Some(job.config_id)
                && target.applied_revision == Some(job.revision)
                && target.ack_status == Some(job.status)
                && target.ack_reason == job.reason;
            if unchanged {
                continue;
            }
            // Later acknowledgements in the same batch see this one.
            target.applied_config_id = Some(job.config_id);
            target.applied_revision = Some(job.revision);
            target.ack_status = Some(job.status);
            target.ack_reason.clone_from(&job.reason);
            writes.retain(|write| write.device_id != job.device_id);
            writes.push(AckWrite {
                device_id: job.device_id,
                config_id: job.config_id,
                revision: job.revision,
                status: job.status,
                reason: job.reason.clone(),
            });
            if job.status == AckStatus::Failed {
                self.audit(
                    format!("device:{}", job.device_id),
                    "configuration.apply_failed",
                    job.config_id.to_string(),
                    json!({ "revision": job.revision, "reason": job.reason }),
                );
            }
        }
        if !writes.is_empty() {
            tx.write_acks(&writes, self.now).await?;
        }
        Ok(answers)
    }
}

fn decide_code(
    code: &CodeState,
    now: Timestamp,
    single_use_taken: &mut HashSet<CodeId>,
    reusable_taken: &mut HashMap<CodeId, u32>,
) -> Step {
    if code.revoked_at.is_some() {
        return Step::Refuse(RefusalReason::CodeRevoked);
    }
    match code.kind {
        CodeKind::SingleUse => {
            if code.used_at.is_some() || single_use_taken.contains(&code.id) {
                return Step::Refuse(RefusalReason::CodeUsed);
            }
            if code.expires_at <= now {
                return Step::Refuse(RefusalReason::CodeExpired);
            }
            let Some(license) = code.license_id else {
                return Step::Refuse(RefusalReason::LicenseUnavailable);
            };
            single_use_taken.insert(code.id);
            Step::SingleUse {
                code: code.id,
                license,
            }
        }
        CodeKind::Reusable => {
            if code.expires_at <= now {
                return Step::Refuse(RefusalReason::CodeExpired);
            }
            let taken = reusable_taken.entry(code.id).or_default();
            if code
                .max_uses
                .is_some_and(|max| code.uses.saturating_add(*taken) >= max)
            {
                return Step::Refuse(RefusalReason::CodeUseLimit);
            }
            *taken += 1;
            Step::Reusable { code: code.id }
        }
    }
}

/// Binds connections, pushes, answers. Runs after the commit.
fn deliver(shared: &Shared, org_id: OrgId, batch: Batch, plan: Plan) -> Batch {
    shared.publish_events(org_id, || live_events(&batch, &plan));
    let mut deferred = Batch::default();
    let snapshot =
        |config: Option<ConfigId>| config.and_then(|id| plan.snapshots.get(&id).cloned());

    for (device_id, reason) in &plan.ended {
        if let Some(link) = shared.registry.get(*device_id) {
            link.end(*reason);
        }
    }

    let mut paired = 0;
    let mut repeated = 0;
    let mut refused = 0;
    for (job, outcome) in batch.pairs.into_iter().zip(plan.pairs) {
        match outcome {
            PairOutcome::Paired { device, config } => {
                if device.already_paired {
                    repeated += 1;
                } else {
                    paired += 1;
                }
                let session = LinkSession {
                    device_id: device.device_id,
                    org_id,
                };
                attach(
                    shared,
                    &job.link,
                    session,
                    snapshot(config),
                    None,
                    &mut deferred,
                );
                let _ = job.reply.send(PairAnswer::Paired(device));
            }
            PairOutcome::Refused(reason) => {
                refused += 1;
                let _ = job.reply.send(PairAnswer::refused(reason));
            }
            PairOutcome::Deferred => deferred.pairs.push(job),
        }
    }
    Metrics::add(&shared.metrics.pairings, paired);
    Metrics::add(&shared.metrics.repeated_pairings, repeated);
    Metrics::add(&shared.metrics.refused_pairings, refused);

    for (job, outcome) in batch.resumes.into_iter().zip(plan.resumes) {
        let answer = match outcome {
            ResumeOutcome::Resumed { device, config } => {
                let session = LinkSession {
                    device_id: device.device_id,
                    org_id,
                };
                attach(
                    shared,
                    &job.link,
                    session,
                    snapshot(config),
                    job.device_has,
                    &mut deferred,
                );
                Metrics::add(&shared.metrics.resumes, 1);
                ResumeReply::Answer(ResumeAnswer::Resumed(device))
            }
            ResumeOutcome::Ended(reason) => ResumeReply::Answer(ResumeAnswer::Ended(reason)),
            ResumeOutcome::NotHere => ResumeReply::NotActiveHere,
        };
        let _ = job.reply.send(answer);
    }

    Metrics::add(&shared.metrics.acknowledgements, batch.acks.len() as u64);
    for (job, answer) in batch.acks.into_iter().zip(plan.acks) {
        let _ = job.reply.send(answer);
    }
    deferred
}

/// What a committed batch tells the organization's live feed: one event per kind of change.
fn live_events(batch: &Batch, plan: &Plan) -> Vec<OrgEvent> {
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
        .map(|(job, _)| job.device_id);
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
    .collect()
}

/// Registers a connection as its device's live link, superseding an older one. If the
/// connection closed while its request was being committed, it is detached again at once and the
/// device is reported offline in the next batch.
fn attach(
    shared: &Shared,
    link: &Arc<DeviceLink>,
    session: LinkSession,
    assigned: Option<Arc<ConfigSnapshot>>,
    device_has: Option<(ConfigId, u64)>,
    next_batch: &mut Batch,
) {
    if let Some(previous) = shared.registry.insert(session.device_id, link) {
        previous.end(EndReason::Superseded);
    }
    if !link.bind(session, assigned, device_has) {
        shared.registry.remove(session.device_id, link);
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
