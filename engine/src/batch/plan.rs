//! The pairing, reconnection and acknowledgement rules, as pure functions: given what the
//! batch's transaction read ([`Facts`]), decide every request and everything the batch must
//! write. No I/O here: the rules are tested with tables of cases and no database.
//!
//! Pairings are decided in two steps, because how many free licenses to claim depends on the
//! decisions: [`decide_pairings`] settles each request but the license it gets (a refusal, the
//! existing pairing, a single-use code's own license, or "a free license"), then [`plan`], given
//! the free licenses claimed, hands them out and builds the writes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde_json::json;

use crate::ack_failures::FailureWindow;
use crate::audit;
use crate::ids::{CodeId, ConfigId, DeviceId, InstallationId, LicenseId, OrgId, Timestamp};
use crate::model::{AckStatus, CodeKind};
use crate::secrets::SecretHash;
use crate::session::{AckAnswer, PairedDevice, Refusal, ResumedDevice, SessionEnd, WaitChoice};
use crate::store::{
    AckTarget, AckWrite, ActiveDevice, CodeState, DeviceDetails, DeviceTouch, FreeLicense,
    LicenseGrant, LicenseState, NewAudit, NewDevice, NewWaiting,
};

/// A pairing request, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pairing {
    pub code_id: CodeId,
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub details: DeviceDetails,
    /// The connection that asks (the device is online on it once paired).
    pub connection: i64,
    pub peer: IpAddr,
    /// What it does when no license is free.
    pub wait: WaitChoice,
    /// Its ticket, when it comes from its organization's line (the line is being served).
    pub ticket: Option<i64>,
}

/// A reconnection, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reconnection {
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub details: DeviceDetails,
    pub connection: i64,
}

/// An acknowledgement, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acknowledgement {
    pub device_id: DeviceId,
    pub config_id: ConfigId,
    pub revision: u64,
    pub status: AckStatus,
    pub reason: Option<String>,
}

/// What the batch's transaction read (and, where the backend locks rows, locked) before
/// deciding anything.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub org_id: OrgId,
    pub now: Timestamp,
    /// The codes the pairings name.
    pub codes: HashMap<CodeId, CodeState>,
    /// The active pairings of the installations that pair or reconnect, in any organization.
    pub pairings: HashMap<InstallationId, ActiveDevice>,
    /// The licenses of the single-use codes among `codes`.
    pub reserved_licenses: HashMap<LicenseId, LicenseState>,
    /// The active devices that replacement codes among `codes` replace.
    pub replaced: HashMap<DeviceId, ActiveDevice>,
    /// The devices that acknowledge.
    pub ack_targets: HashMap<DeviceId, AckTarget>,
    /// The audit windows of the acknowledging devices' failures (`ack_failures`): kept in
    /// memory by the node, not read from the transaction.
    pub ack_failures: HashMap<DeviceId, FailureWindow>,
}

/// A pairing's decision before free licenses are handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Refuse(Refusal),
    /// Already paired here with this credential: the existing pairing is answered again.
    Existing(ActiveDevice),
    /// Grant the single-use code's own license.
    SingleUse {
        code: CodeId,
        license: LicenseId,
    },
    /// Grant any free license.
    Reusable {
        code: CodeId,
    },
    /// A replacement code: end the device it replaces and grant its license, configuration,
    /// name and notes to the installation that pairs.
    Replace {
        code: CodeId,
        license: LicenseId,
        replaced: DeviceId,
    },
    /// Another request of the same installation is in this batch: wait for its commit.
    Deferred,
}

/// [`decide_pairings`]' answer: a step per pairing, and the old pairings that must end first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PairDecisions {
    pub steps: Vec<Step>,
    /// Pairings of these installations whose license expired: they end, and the installation
    /// pairs anew with the code it scanned.
    pub expired: Vec<ActiveDevice>,
}

impl Facts {
    /// Nothing read yet.
    pub fn new(org_id: OrgId, now: Timestamp) -> Facts {
        Facts {
            org_id,
            now,
            codes: HashMap::new(),
            pairings: HashMap::new(),
            reserved_licenses: HashMap::new(),
            replaced: HashMap::new(),
            ack_targets: HashMap::new(),
            ack_failures: HashMap::new(),
        }
    }
}

impl PairDecisions {
    /// How many free licenses the reusable-code grants need.
    pub fn free_licenses_wanted(&self) -> usize {
        self.steps
            .iter()
            .filter(|step| matches!(step, Step::Reusable { .. }))
            .count()
    }

    /// Whether any pairing gets a license (and so new devices need the newest configuration).
    pub fn grants_any(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step, Step::Reusable { .. } | Step::SingleUse { .. }))
    }
}

/// Decides each pairing in arrival order, up to the license it gets.
pub(crate) fn decide_pairings(pairings: &[Pairing], facts: &Facts) -> PairDecisions {
    let now = facts.now;
    let mut seen = HashSet::new();
    let mut single_use_taken = HashSet::new();
    let mut reusable_taken: HashMap<CodeId, u32> = HashMap::new();
    let mut expired = Vec::new();
    let mut steps = Vec::with_capacity(pairings.len());
    for pairing in pairings {
        if !seen.insert(pairing.installation_id) {
            steps.push(Step::Deferred);
            continue;
        }
        if let Some(device) = facts.pairings.get(&pairing.installation_id) {
            if device.org_id != facts.org_id {
                steps.push(Step::Refuse(Refusal::AlreadyPairedElsewhere));
                continue;
            }
            if !device.credential_hash.matches(&pairing.credential_hash) {
                steps.push(Step::Refuse(Refusal::CredentialMismatch));
                continue;
            }
            if !device.license_expired_at(now) {
                steps.push(Step::Existing(device.clone()));
                continue;
            }
            // The old pairing's license expired and the sweep has not ended it yet: it ends
            // now, and this is a new pairing with the scanned code.
            expired.push(device.clone());
        }
        let step = match facts.codes.get(&pairing.code_id) {
            None => Step::Refuse(Refusal::UnknownCode),
            Some(code) => decide_code(code, now, &mut single_use_taken, &mut reusable_taken),
        };
        let step = match step {
            Step::SingleUse { code, license } => {
                // A replacement code's license is held by the device it replaces (still
                // active: ending it any other way revokes the code); any other single-use
                // code's license is held by nobody.
                let replaces = facts
                    .codes
                    .get(&code)
                    .and_then(|state| state.replaces_device);
                let grantable = facts.reserved_licenses.get(&license).is_some_and(|state| {
                    state.device_id == replaces
                        && !state.expired_at(now)
                        && state.reserved_by == Some(code)
                }) && replaces
                    .is_none_or(|device| facts.replaced.contains_key(&device));
                match replaces {
                    _ if !grantable => Step::Refuse(Refusal::LicenseUnavailable),
                    Some(replaced) => Step::Replace {
                        code,
                        license,
                        replaced,
                    },
                    None => step,
                }
            }
            // After its turn in line, a device not paired by the line was taken out of it
            // (dismissed): its code may well be usable, but this is not a new pairing.
            Step::Reusable { code } if pairing.wait == WaitChoice::AfterTurn => {
                if let Some(taken) = reusable_taken.get_mut(&code) {
                    *taken = taken.saturating_sub(1);
                }
                Step::Refuse(Refusal::Dismissed)
            }
            other => other,
        };
        steps.push(step);
    }
    PairDecisions { steps, expired }
}

fn decide_code(
    code: &CodeState,
    now: Timestamp,
    single_use_taken: &mut HashSet<CodeId>,
    reusable_taken: &mut HashMap<CodeId, u32>,
) -> Step {
    if code.revoked_at.is_some() {
        return Step::Refuse(Refusal::CodeRevoked);
    }
    match code.kind {
        CodeKind::SingleUse => {
            if code.used_at.is_some() || single_use_taken.contains(&code.id) {
                return Step::Refuse(Refusal::CodeUsed);
            }
            if code.expires_at <= now {
                return Step::Refuse(Refusal::CodeExpired);
            }
            let Some(license) = code.license_id else {
                return Step::Refuse(Refusal::LicenseUnavailable);
            };
            single_use_taken.insert(code.id);
            Step::SingleUse {
                code: code.id,
                license,
            }
        }
        CodeKind::Reusable => {
            if code.expires_at <= now {
                return Step::Refuse(Refusal::CodeExpired);
            }
            let taken = reusable_taken.entry(code.id).or_default();
            if code
                .max_uses
                .is_some_and(|max| code.uses.saturating_add(*taken) >= max)
            {
                return Step::Refuse(Refusal::CodeUseLimit);
            }
            *taken += 1;
            Step::Reusable { code: code.id }
        }
    }
}

/// A pairing's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PairOutcome {
    Paired {
        device: PairedDevice,
        /// The configuration its connection is sent.
        config: Option<ConfigId>,
        /// The staged revision it runs instead of the configuration's own, if that is newer.
        staged: Option<u64>,
    },
    Refused(Refusal),
    Deferred,
    /// No license is free: it joins its organization's line (`Writes::waiting`).
    Waiting,
    /// It came from the line and no license is free yet: it stays where it is.
    StillWaiting,
}

/// A reconnection's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResumeOutcome {
    Resumed {
        device: ResumedDevice,
        config: Option<ConfigId>,
        /// As for a pairing.
        staged: Option<u64>,
    },
    Ended(SessionEnd),
    /// The installation has no active pairing in this organization (any more): the caller
    /// looks up why.
    NotHere,
    /// The same installation pairs in this batch: wait for that commit.
    Deferred,
}

/// Everything a batch writes, in the order it is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Writes {
    /// Pairings whose license expired, to end (each once).
    pub expired: Vec<DeviceId>,
    /// Devices replaced by a new installation, to end before their licenses are granted.
    pub replaced: Vec<DeviceId>,
    /// (new device, the device it replaces): the name and notes it takes over.
    pub carried_over: Vec<(DeviceId, DeviceId)>,
    pub single_uses: Vec<(CodeId, DeviceId)>,
    pub grants: Vec<LicenseGrant>,
    /// Each with its configuration: its code's own, else the organization's for new devices.
    pub new_devices: Vec<NewDevice>,
    pub touches: Vec<DeviceTouch>,
    pub acks: Vec<AckWrite>,
    pub offline: Vec<(DeviceId, i64)>,
    pub audit: Vec<NewAudit>,
    /// Uses of reusable codes, in code-id order (the batch's last statement, see `write`).
    pub code_uses: Vec<(CodeId, u32)>,
    /// Devices that join their organization's line, in order.
    pub waiting: Vec<NewWaiting>,
    /// Tickets of devices that came from the line and were decided (paired or refused).
    pub left_line: Vec<i64>,
}

/// What was decided for every request of a batch, aligned with it, and what to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Plan {
    pub pairs: Vec<PairOutcome>,
    pub resumes: Vec<ResumeOutcome>,
    pub acks: Vec<AckAnswer>,
    /// Sessions this batch ends (their pairing's license expired).
    pub ended: Vec<(DeviceId, SessionEnd)>,
    /// Configurations the answered connections are sent.
    pub configs: HashSet<ConfigId>,
    /// Staged revisions some of them run instead, if newer than their configuration's own.
    pub staged: HashSet<(ConfigId, u64)>,
    pub writes: Writes,
    /// The audit windows of failed acknowledgements, to record once the batch committed.
    pub ack_failures: Vec<(DeviceId, FailureWindow)>,
}

/// The requests of a batch, as the rules see them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Requests<'a> {
    pub pairings: &'a [Pairing],
    pub reconnections: &'a [Reconnection],
    pub acknowledgements: &'a [Acknowledgement],
    /// Connections that ended: (device, connection).
    pub offline: &'a [(DeviceId, i64)],
}

/// The free licenses claimed for the batch's reusable-code grants, and the organization's newest
/// configuration (what new devices are assigned).
#[derive(Debug, Clone, Default)]
pub(crate) struct Grantable {
    pub free_licenses: Vec<FreeLicense>,
    pub newest_config: Option<ConfigId>,
}

/// The whole batch's plan, given the pairings' `decisions` (from [`decide_pairings`]) and what
/// they can be granted.
pub(crate) fn plan(
    facts: &Facts,
    requests: Requests<'_>,
    decisions: PairDecisions,
    grantable: Grantable,
) -> Plan {
    let mut planner = Planner {
        facts,
        plan: Plan::default(),
        audit: Vec::new(),
        code_uses: HashMap::new(),
    };
    for device in &decisions.expired {
        planner.end_expired(device);
    }
    planner.grant(requests.pairings, decisions.steps, grantable);
    let pairing_now: HashSet<InstallationId> = requests
        .pairings
        .iter()
        .map(|pairing| pairing.installation_id)
        .collect();
    planner.resume(requests.reconnections, &pairing_now);
    planner.acknowledge(requests.acknowledgements);
    let mut plan = planner.plan;
    plan.writes.offline = requests.offline.to_vec();
    plan.writes.audit = planner.audit;
    let mut uses: Vec<(CodeId, u32)> = planner.code_uses.into_iter().collect();
    uses.sort_unstable_by_key(|(code, _)| code.0);
    plan.writes.code_uses = uses;
    plan
}

/// A plan being built.
struct Planner<'a> {
    facts: &'a Facts,
    plan: Plan,
    /// The batch's audit entries, in the order things were decided.
    audit: Vec<NewAudit>,
    code_uses: HashMap<CodeId, u32>,
}

impl Planner<'_> {
    /// Appends an entry about `subject`, naming `device` if it concerns one.
    fn audit(
        &mut self,
        actor: String,
        action: &str,
        subject: String,
        details: serde_json::Value,
        device: Option<DeviceId>,
    ) {
        self.audit.push(NewAudit {
            org_id: Some(self.facts.org_id),
            at: self.facts.now,
            actor,
            action: action.to_string(),
            subject: Some(subject),
            details,
            devices: device.into_iter().collect(),
        });
    }

    /// The label of a code the batch read.
    fn code_label(&self, code: CodeId) -> Option<String> {
        self.facts.codes.get(&code)?.label.clone()
    }

    /// A pairing that waits for a license: it joins its organization's line.
    fn join_line(&mut self, pairing: &Pairing) {
        self.plan.pairs.push(PairOutcome::Waiting);
        self.plan.writes.waiting.push(NewWaiting {
            installation_id: pairing.installation_id,
            credential_hash: pairing.credential_hash,
            code_id: pairing.code_id,
            details: pairing.details.clone(),
            peer: pairing.peer,
            connection: pairing.connection,
        });
    }

    fn refused(&mut self, pairing: &Pairing, reason: Refusal) {
        self.plan.pairs.push(PairOutcome::Refused(reason));
        self.plan.writes.left_line.extend(pairing.ticket);
        // Unknown codes are counted, not written one by one; a dismissal has its own entry
        // (`waiting.dismissed`).
        if matches!(reason, Refusal::UnknownCode | Refusal::Dismissed) {
            return;
        }
        let details = json!({
            "reason": reason.as_str(),
            "label": self.code_label(pairing.code_id),
            "installation_id": pairing.installation_id,
            "device_name": pairing.details.name,
            "address": pairing.peer.to_string(),
        });
        self.audit(
            "device".into(),
            "pairing.refused",
            pairing.code_id.to_string(),
            details,
            None,
        );
    }

    fn end_expired(&mut self, device: &ActiveDevice) {
        if self.plan.writes.expired.contains(&device.id) {
            return;
        }
        self.plan.writes.expired.push(device.id);
        self.plan
            .ended
            .push((device.id, SessionEnd::LicenseExpired));
        self.audit(
            "system".into(),
            "device.license_expired",
            device.id.to_string(),
            audit::ended_device(device),
            Some(device.id),
        );
    }

    fn grant(&mut self, pairings: &[Pairing], steps: Vec<Step>, grantable: Grantable) {
        let facts = self.facts;
        let newest_config = grantable.newest_config;
        // Every granted license's end, for the answers.
        let mut valid_until: HashMap<LicenseId, Option<Timestamp>> = facts
            .reserved_licenses
            .values()
            .map(|license| (license.id, license.valid_until))
            .collect();
        valid_until.extend(
            grantable
                .free_licenses
                .iter()
                .map(|license| (license.id, license.valid_until)),
        );
        let mut free_licenses = grantable
            .free_licenses
            .into_iter()
            .map(|license| license.id);
        let mut granted = 0;
        for (pairing, step) in pairings.iter().zip(steps) {
            let mut replaced = None;
            let (code, license, single_use) = match step {
                Step::Deferred => {
                    self.plan.pairs.push(PairOutcome::Deferred);
                    continue;
                }
                Step::Refuse(reason) => {
                    self.refused(pairing, reason);
                    continue;
                }
                Step::Existing(device) => {
                    self.plan.writes.left_line.extend(pairing.ticket);
                    self.repeat(pairing, &device);
                    continue;
                }
                Step::SingleUse { code, license } => (code, license, true),
                Step::Replace {
                    code,
                    license,
                    replaced: device,
                } => {
                    replaced = facts.replaced.get(&device);
                    (code, license, true)
                }
                Step::Reusable { code } => match free_licenses.next() {
                    Some(license) => (code, license, false),
                    None if pairing.ticket.is_some() => {
                        self.plan.pairs.push(PairOutcome::StillWaiting);
                        continue;
                    }
                    None if pairing.wait == WaitChoice::InLine => {
                        self.join_line(pairing);
                        continue;
                    }
                    None => {
                        self.refused(pairing, Refusal::NoFreeLicense);
                        continue;
                    }
                },
            };
            let device_id = DeviceId::generate();
            // A replacement takes the replaced device's configuration; a reusable code may
            // carry a configuration of its own.
            let (config, staged) = match replaced {
                Some(old) => (old.config_id, old.staged_revision),
                None => (
                    facts
                        .codes
                        .get(&code)
                        .and_then(|state| state.configuration_id)
                        .or(newest_config),
                    None,
                ),
            };
            if let Some(old) = replaced {
                self.replace(old, device_id, code);
            }
            let writes = &mut self.plan.writes;
            writes.grants.push(LicenseGrant {
                license_id: license,
                device_id,
                single_use_code: single_use.then_some(code),
            });
            if single_use {
                writes.single_uses.push((code, device_id));
            } else {
                *self.code_uses.entry(code).or_default() += 1;
            }
            writes.new_devices.push(NewDevice {
                id: device_id,
                installation_id: pairing.installation_id,
                credential_hash: pairing.credential_hash,
                license_id: license,
                details: pairing.details.clone(),
                paired_by_code: code,
                config_id: config,
                connection: pairing.connection,
                peer: pairing.peer,
            });
            granted += 1;
            self.plan.writes.left_line.extend(pairing.ticket);
            self.plan.pairs.push(PairOutcome::Paired {
                device: PairedDevice {
                    device_id,
                    org_id: facts.org_id,
                    license_id: license,
                    license_valid_until: valid_until.get(&license).copied().flatten(),
                    already_paired: false,
                    configuration_pending: config.is_none(),
                },
                config,
                staged,
            });
            self.send(config, staged);
        }
        if granted == 0 {
            return;
        }
        // What decided each pairing (code, license, installation) and what the device said of
        // itself, as it was: its row changes with every reconnection, the entry does not.
        let entries: Vec<(DeviceId, serde_json::Value)> = self
            .plan
            .writes
            .new_devices
            .iter()
            .map(|device| {
                let decided = json!({
                    "code_id": device.paired_by_code,
                    "code_label": self.code_label(device.paired_by_code),
                    "license_id": device.license_id,
                    "installation_id": device.installation_id,
                    "address": device.peer.to_string(),
                });
                (device.id, audit::with_device(decided, &device.details))
            })
            .collect();
        for (device, details) in entries {
            // No `audit_devices` row (one insert fewer per pairing): the log's device filter
            // finds this entry from the device's row, at its pairing time.
            self.audit(
                format!("device:{device}"),
                "device.paired",
                device.to_string(),
                details,
                None,
            );
        }
    }

    /// Ends `old`, replaced by the new device `by` (paired with the replacement code `code`):
    /// `by` takes its name and notes, and its session is told.
    fn replace(&mut self, old: &ActiveDevice, by: DeviceId, code: CodeId) {
        self.plan.writes.replaced.push(old.id);
        self.plan.writes.carried_over.push((by, old.id));
        self.plan.ended.push((old.id, SessionEnd::Replaced));
        let mut details = audit::ended_device(old);
        details["replaced_by"] = json!(by);
        details["code_id"] = json!(code);
        self.audit(
            format!("device:{by}"),
            "device.replaced",
            old.id.to_string(),
            details,
            Some(old.id),
        );
    }

    /// An installation already paired here with this credential gets its pairing back.
    fn repeat(&mut self, pairing: &Pairing, device: &ActiveDevice) {
        self.plan.writes.touches.push(DeviceTouch {
            device_id: device.id,
            details: pairing.details.clone(),
            connection: pairing.connection,
        });
        self.send(device.config_id, device.staged_revision);
        // After its turn in line, the device pairs again to be answered: the line's grant was
        // its pairing (`device.paired` says so), and this is not a repeat to it.
        let first = pairing.wait == WaitChoice::AfterTurn;
        if !first {
            let details = json!({
                "code_id": pairing.code_id,
                "code_label": self.code_label(pairing.code_id),
                "address": pairing.peer.to_string(),
            });
            self.audit(
                format!("device:{}", device.id),
                "device.pairing_repeated",
                device.id.to_string(),
                audit::with_device(details, &pairing.details),
                Some(device.id),
            );
        }
        self.plan.pairs.push(PairOutcome::Paired {
            device: PairedDevice {
                device_id: device.id,
                org_id: self.facts.org_id,
                license_id: device.license_id,
                license_valid_until: device.license_valid_until,
                already_paired: !first,
                configuration_pending: device.config_id.is_none(),
            },
            config: device.config_id,
            staged: device.staged_revision,
        });
    }

    /// A connection answered in this batch is sent `config` (at `staged`, if that is newer).
    fn send(&mut self, config: Option<ConfigId>, staged: Option<u64>) {
        if let Some(config) = config {
            self.plan.configs.insert(config);
            if let Some(revision) = staged {
                self.plan.staged.insert((config, revision));
            }
        }
    }

    fn resume(&mut self, reconnections: &[Reconnection], pairing_now: &HashSet<InstallationId>) {
        let facts = self.facts;
        let mut expired = Vec::new();
        for reconnection in reconnections {
            let outcome = match facts.pairings.get(&reconnection.installation_id) {
                _ if pairing_now.contains(&reconnection.installation_id) => ResumeOutcome::Deferred,
                Some(device) if device.org_id == facts.org_id => {
                    if !device
                        .credential_hash
                        .matches(&reconnection.credential_hash)
                    {
                        ResumeOutcome::Ended(SessionEnd::AuthenticationFailed)
                    } else if self.plan.writes.replaced.contains(&device.id) {
                        ResumeOutcome::Ended(SessionEnd::Replaced)
                    } else if device.license_expired_at(facts.now) {
                        expired.push(device);
                        ResumeOutcome::Ended(SessionEnd::LicenseExpired)
                    } else {
                        self.plan.writes.touches.push(DeviceTouch {
                            device_id: device.id,
                            details: reconnection.details.clone(),
                            connection: reconnection.connection,
                        });
                        self.send(device.config_id, device.staged_revision);
                        ResumeOutcome::Resumed {
                            device: ResumedDevice {
                                device_id: device.id,
                                org_id: facts.org_id,
                                license_id: device.license_id,
                                license_valid_until: device.license_valid_until,
                            },
                            config: device.config_id,
                            staged: device.staged_revision,
                        }
                    }
                }
                _ => ResumeOutcome::NotHere,
            };
            self.plan.resumes.push(outcome);
        }
        for device in expired {
            self.end_expired(device);
        }
    }

    fn acknowledge(&mut self, acknowledgements: &[Acknowledgement]) {
        // Later acknowledgements in the batch see the earlier ones.
        let mut targets = self.facts.ack_targets.clone();
        let mut windows = self.facts.ack_failures.clone();
        let writes = &self.plan.writes;
        let ended: HashSet<DeviceId> = writes
            .expired
            .iter()
            .chain(&writes.replaced)
            .copied()
            .collect();
        for ack in acknowledgements {
            let target = targets
                .get_mut(&ack.device_id)
                .filter(|_| !ended.contains(&ack.device_id));
            let Some(target) = target else {
                self.plan.acks.push(AckAnswer::Recorded(false));
                continue;
            };
            let assigned = target.config_id == Some(ack.config_id)
                && target
                    .config_revision
                    .is_some_and(|current| ack.revision <= current);
            let stale = target.applied_config_id == Some(ack.config_id)
                && target
                    .applied_revision
                    .is_some_and(|applied| applied > ack.revision);
            if !assigned || stale {
                self.plan.acks.push(AckAnswer::Recorded(false));
                continue;
            }
            self.plan.acks.push(AckAnswer::Recorded(true));
            let unchanged = target.applied_config_id == Some(ack.config_id)
                && target.applied_revision == Some(ack.revision)
                && target.ack_status == Some(ack.status)
                && target.ack_reason == ack.reason;
            if unchanged {
                continue;
            }
            target.applied_config_id = Some(ack.config_id);
            target.applied_revision = Some(ack.revision);
            target.ack_status = Some(ack.status);
            target.ack_reason.clone_from(&ack.reason);
            let writes = &mut self.plan.writes.acks;
            writes.retain(|write| write.device_id != ack.device_id);
            writes.push(AckWrite {
                device_id: ack.device_id,
                config_id: ack.config_id,
                revision: ack.revision,
                status: ack.status,
                reason: ack.reason.clone(),
            });
            if ack.status != AckStatus::Failed {
                continue;
            }
            // At most one entry per device per interval; the failures in between are counted
            // and the next entry says how many (`ack_failures`). The device's row keeps the
            // latest failure either way.
            let now = self.facts.now;
            let window = match windows.get(&ack.device_id) {
                Some(window) if !window.is_over(now) => FailureWindow {
                    repeats: window.repeats.saturating_add(1),
                    ..*window
                },
                previous => {
                    let details = json!({
                        "revision": ack.revision,
                        "reason": ack.reason,
                        "name": target.config_name,
                        "device_name": target.device_name,
                        "repeats": previous.map_or(0, |window| window.repeats),
                    });
                    self.audit(
                        format!("device:{}", ack.device_id),
                        "configuration.apply_failed",
                        ack.config_id.to_string(),
                        details,
                        Some(ack.device_id),
                    );
                    FailureWindow {
                        logged_at: now,
                        repeats: 0,
                    }
                }
            };
            windows.insert(ack.device_id, window);
            let updates = &mut self.plan.ack_failures;
            updates.retain(|(device, _)| *device != ack.device_id);
            updates.push((ack.device_id, window));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn hash(byte: u8) -> SecretHash {
        SecretHash([byte; 32])
    }

    fn details() -> DeviceDetails {
        DeviceDetails {
            name: "van".into(),
            model: "TC52".into(),
            os: "Android".into(),
            app_version: "4".into(),
        }
    }

    fn pairing(code: CodeId, installation: InstallationId) -> Pairing {
        Pairing {
            code_id: code,
            installation_id: installation,
            credential_hash: hash(1),
            details: details(),
            connection: 7,
            peer: IpAddr::from([127, 0, 0, 1]),
            wait: WaitChoice::No,
            ticket: None,
        }
    }

    fn reusable(org_id: OrgId) -> CodeState {
        CodeState {
            id: CodeId::generate(),
            org_id,
            kind: CodeKind::Reusable,
            expires_at: NOW.plus_millis(60_000),
            revoked_at: None,
            max_uses: None,
            uses: 0,
            used_at: None,
            license_id: None,
            label: Some("vans".into()),
            configuration_id: None,
            replaces_device: None,
        }
    }

    fn single_use(org_id: OrgId, license: LicenseId) -> CodeState {
        CodeState {
            kind: CodeKind::SingleUse,
            max_uses: Some(1),
            license_id: Some(license),
            ..reusable(org_id)
        }
    }

    fn reserved(org_id: OrgId, license: LicenseId, by: CodeId) -> LicenseState {
        LicenseState {
            id: license,
            org_id,
            valid_until: None,
            device_id: None,
            reserved_by: Some(by),
            reserved_until: Some(NOW.plus_millis(60_000)),
        }
    }

    fn active(org_id: OrgId, installation: InstallationId, credential: u8) -> ActiveDevice {
        ActiveDevice {
            id: DeviceId::generate(),
            org_id,
            installation_id: installation,
            credential_hash: hash(credential),
            license_id: LicenseId::generate(),
            license_valid_until: None,
            config_id: None,
            staged_revision: None,
            details: DeviceDetails {
                name: "Van 1".into(),
                ..details()
            },
        }
    }

    fn facts(codes: &[CodeState]) -> Facts {
        let org_id = codes
            .first()
            .map_or_else(OrgId::generate, |code| code.org_id);
        Facts {
            codes: codes.iter().map(|code| (code.id, code.clone())).collect(),
            ..Facts::new(org_id, NOW)
        }
    }

    fn free(count: usize) -> Vec<FreeLicense> {
        (0..count)
            .map(|_| FreeLicense {
                id: LicenseId::generate(),
                valid_until: None,
            })
            .collect()
    }

    /// One pairing decided against `facts`, with `claimed` free licenses.
    fn pair_once(facts: &Facts, code: CodeId, claimed: usize) -> (PairOutcome, Plan) {
        let pairings = [pairing(code, InstallationId::generate())];
        let decisions = decide_pairings(&pairings, facts);
        let plan = plan(
            facts,
            Requests {
                pairings: &pairings,
                ..Requests::default()
            },
            decisions,
            Grantable {
                free_licenses: free(claimed),
                newest_config: None,
            },
        );
        (plan.pairs[0].clone(), plan)
    }

    fn refusal(outcome: &PairOutcome) -> Option<Refusal> {
        match outcome {
            PairOutcome::Refused(reason) => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn a_code_is_refused_for_its_state_at_the_time_of_the_decision() {
        let org = OrgId::generate();
        let cases: Vec<(&str, CodeState, Option<Refusal>)> = vec![
            ("valid reusable", reusable(org), None),
            (
                "revoked",
                CodeState {
                    revoked_at: Some(NOW),
                    ..reusable(org)
                },
                Some(Refusal::CodeRevoked),
            ),
            (
                "expires now",
                CodeState {
                    expires_at: NOW,
                    ..reusable(org)
                },
                Some(Refusal::CodeExpired),
            ),
            (
                "at its use limit",
                CodeState {
                    max_uses: Some(3),
                    uses: 3,
                    ..reusable(org)
                },
                Some(Refusal::CodeUseLimit),
            ),
            (
                "one use left",
                CodeState {
                    max_uses: Some(3),
                    uses: 2,
                    ..reusable(org)
                },
                None,
            ),
            (
                "single-use, used",
                CodeState {
                    used_at: Some(NOW),
                    ..single_use(org, LicenseId::generate())
                },
                Some(Refusal::CodeUsed),
            ),
            (
                "single-use, expired",
                CodeState {
                    expires_at: NOW.plus_millis(-1),
                    ..single_use(org, LicenseId::generate())
                },
                Some(Refusal::CodeExpired),
            ),
            (
                "single-use, revoked and used: revoked wins",
                CodeState {
                    revoked_at: Some(NOW),
                    used_at: Some(NOW),
                    ..single_use(org, LicenseId::generate())
                },
                Some(Refusal::CodeRevoked),
            ),
        ];
        for (name, code, expected) in cases {
            let (outcome, _) = pair_once(&facts(std::slice::from_ref(&code)), code.id, 1);
            assert_eq!(refusal(&outcome), expected, "{name}");
        }
        let (outcome, plan) = pair_once(&facts(&[reusable(org)]), CodeId::generate(), 1);
        assert_eq!(refusal(&outcome), Some(Refusal::UnknownCode));
        assert!(
            plan.writes.audit.is_empty(),
            "unknown codes are not audited"
        );
    }

    #[test]
    fn a_replacement_code_moves_the_license_and_configuration_and_ends_the_old_device() {
        let org = OrgId::generate();
        let old_installation = InstallationId::generate();
        // Chosen for a staged rollout: its replacement runs the staged revision too.
        let old = ActiveDevice {
            config_id: Some(ConfigId::generate()),
            staged_revision: Some(7),
            ..active(org, old_installation, 1)
        };
        let code = CodeState {
            replaces_device: Some(old.id),
            ..single_use(org, old.license_id)
        };
        let mut facts = facts(std::slice::from_ref(&code));
        facts.reserved_licenses.insert(
            old.license_id,
            LicenseState {
                device_id: Some(old.id),
                ..reserved(org, old.license_id, code.id)
            },
        );
        facts.replaced.insert(old.id, old.clone());
        facts.pairings.insert(old_installation, old.clone());

        // The new installation pairs while the old one reconnects, in one batch.
        let pairings = [pairing(code.id, InstallationId::generate())];
        let reconnections = [Reconnection {
            installation_id: old_installation,
            credential_hash: hash(1),
            details: details(),
            connection: 9,
        }];
        let decisions = decide_pairings(&pairings, &facts);
        assert_eq!(decisions.free_licenses_wanted(), 0, "no second license");
        let plan = plan(
            &facts,
            Requests {
                pairings: &pairings,
                reconnections: &reconnections,
                ..Requests::default()
            },
            decisions,
            Grantable::default(),
        );
        let PairOutcome::Paired {
            device,
            config,
            staged,
        } = &plan.pairs[0]
        else {
            panic!("not paired: {:?}", plan.pairs[0])
        };
        assert_eq!(device.license_id, old.license_id);
        assert_eq!(*config, old.config_id);
        assert_eq!(*staged, Some(7));
        let sent = old.config_id.map(|config| (config, 7));
        assert_eq!(plan.staged, sent.into_iter().collect());
        assert_eq!(plan.writes.replaced, vec![old.id]);
        assert_eq!(plan.writes.carried_over, vec![(device.device_id, old.id)]);
        assert_eq!(plan.writes.single_uses, vec![(code.id, device.device_id)]);
        assert_eq!(plan.ended, vec![(old.id, SessionEnd::Replaced)]);
        assert_eq!(
            plan.resumes[0],
            ResumeOutcome::Ended(SessionEnd::Replaced),
            "the old installation is not resumed by the batch that replaces it"
        );
        assert!(plan.writes.touches.is_empty());
        let replaced_entry = plan
            .writes
            .audit
            .iter()
            .find(|entry| entry.action == "device.replaced")
            .expect("a device.replaced entry");
        assert_eq!(replaced_entry.subject, Some(old.id.to_string()));

        // The device it replaces is no longer active (ended meanwhile): nothing to move.
        let mut gone = facts.clone();
        gone.replaced.clear();
        assert_eq!(
            refusal(&pair_once(&gone, code.id, 5).0),
            Some(Refusal::LicenseUnavailable)
        );
    }

    #[test]
    fn a_single_use_code_grants_only_its_own_reserved_license() {
        let org = OrgId::generate();
        let license = LicenseId::generate();
        let code = single_use(org, license);
        let mut grantable = facts(std::slice::from_ref(&code));
        grantable
            .reserved_licenses
            .insert(license, reserved(org, license, code.id));
        let (outcome, plan) = pair_once(&grantable, code.id, 0);
        let PairOutcome::Paired { device, .. } = outcome else {
            panic!("not paired: {outcome:?}")
        };
        assert_eq!(device.license_id, license);
        assert_eq!(plan.writes.single_uses, vec![(code.id, device.device_id)]);
        assert_eq!(plan.writes.grants[0].single_use_code, Some(code.id));
        assert!(plan.writes.code_uses.is_empty());

        let unavailable = |license_state: LicenseState| {
            let mut facts = facts(std::slice::from_ref(&code));
            facts.reserved_licenses.insert(license, license_state);
            refusal(&pair_once(&facts, code.id, 5).0)
        };
        assert_eq!(
            unavailable(LicenseState {
                device_id: Some(DeviceId::generate()),
                ..reserved(org, license, code.id)
            }),
            Some(Refusal::LicenseUnavailable),
            "assigned meanwhile"
        );
        assert_eq!(
            unavailable(LicenseState {
                valid_until: Some(NOW),
                ..reserved(org, license, code.id)
            }),
            Some(Refusal::LicenseUnavailable),
            "expired"
        );
        assert_eq!(
            unavailable(reserved(org, license, CodeId::generate())),
            Some(Refusal::LicenseUnavailable),
            "reserved by a newer code"
        );
    }

    #[test]
    fn without_a_free_license_a_pairing_that_waits_joins_the_line_and_the_line_keeps_its_place() {
        let code = reusable(OrgId::generate());
        let facts = facts(std::slice::from_ref(&code));
        let waits = |wait, ticket| Pairing {
            wait,
            ticket,
            ..pairing(code.id, InstallationId::generate())
        };
        // In order: one from the line (ticket 4) gets the one free license; the next one in
        // line stays; a new pairing that waits joins the line; one that does not is refused.
        let pairings = [
            waits(WaitChoice::InLine, Some(4)),
            waits(WaitChoice::InLine, Some(5)),
            waits(WaitChoice::InLine, None),
            waits(WaitChoice::No, None),
        ];
        let decisions = decide_pairings(&pairings, &facts);
        assert_eq!(decisions.free_licenses_wanted(), 4);
        let plan = plan(
            &facts,
            Requests {
                pairings: &pairings,
                ..Requests::default()
            },
            decisions,
            Grantable {
                free_licenses: free(1),
                newest_config: None,
            },
        );
        assert!(matches!(plan.pairs[0], PairOutcome::Paired { .. }));
        assert_eq!(plan.pairs[1], PairOutcome::StillWaiting);
        assert_eq!(plan.pairs[2], PairOutcome::Waiting);
        assert_eq!(refusal(&plan.pairs[3]), Some(Refusal::NoFreeLicense));
        assert_eq!(plan.writes.left_line, vec![4]);
        assert_eq!(plan.writes.waiting.len(), 1);
        assert_eq!(
            plan.writes.waiting[0].installation_id,
            pairings[2].installation_id
        );
    }

    #[test]
    fn the_pairing_after_a_turn_in_line_is_answered_as_the_first() {
        let org = OrgId::generate();
        let code = reusable(org);
        let mut facts = facts(std::slice::from_ref(&code));
        let installation = InstallationId::generate();
        let device = active(org, installation, 1);
        facts.pairings.insert(installation, device.clone());
        for (wait, already, entries) in
            [(WaitChoice::AfterTurn, false, 0), (WaitChoice::No, true, 1)]
        {
            let pairings = [Pairing {
                wait,
                ..pairing(code.id, installation)
            }];
            let decisions = decide_pairings(&pairings, &facts);
            let plan = plan(
                &facts,
                Requests {
                    pairings: &pairings,
                    ..Requests::default()
                },
                decisions,
                Grantable::default(),
            );
            let PairOutcome::Paired { device: paired, .. } = &plan.pairs[0] else {
                panic!("not paired: {:?}", plan.pairs[0]);
            };
            assert_eq!(paired.device_id, device.id);
            assert_eq!(paired.already_paired, already, "{wait:?}");
            assert_eq!(plan.writes.audit.len(), entries, "{wait:?}");
        }
    }

    #[test]
    fn many_devices_on_one_single_use_code_make_exactly_one_winner() {
        let org = OrgId::generate();
        let license = LicenseId::generate();
        let code = single_use(org, license);
        let mut facts = facts(std::slice::from_ref(&code));
        facts
            .reserved_licenses
            .insert(license, reserved(org, license, code.id));
        let pairings: Vec<Pairing> = (0..50)
            .map(|_| pairing(code.id, InstallationId::generate()))
            .collect();
        let decisions = decide_pairings(&pairings, &facts);
        let plan = plan(
            &facts,
            Requests {
                pairings: &pairings,
                ..Requests::default()
            },
            decisions,
            Grantable::default(),
        );
        let paired = plan
            .pairs
            .iter()
            .filter(|outcome| matches!(outcome, PairOutcome::Paired { .. }))
            .count();
        assert_eq!(paired, 1);
        assert!(
            plan.pairs[1..]
                .iter()
                .all(|outcome| refusal(outcome) == Some(Refusal::CodeUsed))
        );
        assert_eq!(plan.writes.grants.len(), 1);
    }

    #[test]
    fn reusable_grants_take_the_claimed_licenses_in_order_and_then_run_out() {
        let org = OrgId::generate();
        let code = CodeState {
            max_uses: Some(4),
            ..reusable(org)
        };
        let facts = facts(std::slice::from_ref(&code));
        let pairings: Vec<Pairing> = (0..5)
            .map(|_| pairing(code.id, InstallationId::generate()))
            .collect();
        let decisions = decide_pairings(&pairings, &facts);
        assert_eq!(
            decisions.free_licenses_wanted(),
            4,
            "the fifth is over the limit"
        );
        let claimed = free(3);
        let config = ConfigId::generate();
        let plan = plan(
            &facts,
            Requests {
                pairings: &pairings,
                ..Requests::default()
            },
            decisions,
            Grantable {
                free_licenses: claimed.clone(),
                newest_config: Some(config),
            },
        );
        let granted: Vec<LicenseId> = plan.writes.grants.iter().map(|g| g.license_id).collect();
        assert_eq!(
            granted,
            claimed.iter().map(|license| license.id).collect::<Vec<_>>()
        );
        assert_eq!(refusal(&plan.pairs[3]), Some(Refusal::NoFreeLicense));
        assert_eq!(refusal(&plan.pairs[4]), Some(Refusal::CodeUseLimit));
        assert_eq!(plan.writes.code_uses, vec![(code.id, 3)]);
        assert!(
            plan.writes
                .new_devices
                .iter()
                .all(|device| device.config_id == Some(config))
        );
        assert!(plan.configs.contains(&config));
        let actions: Vec<&str> = plan
            .writes
            .audit
            .iter()
            .map(|entry| entry.action.as_str())
            .collect();
        assert_eq!(
            actions,
            [
                "pairing.refused",
                "pairing.refused",
                "device.paired",
                "device.paired",
                "device.paired"
            ]
        );
    }

    #[test]
    fn an_installation_already_paired_is_answered_by_its_pairing_or_refused() {
        let org = OrgId::generate();
        let code = reusable(org);
        let installation = InstallationId::generate();
        let with_pairing = |device: ActiveDevice| {
            let mut facts = facts(std::slice::from_ref(&code));
            facts.pairings.insert(installation, device);
            let pairings = [pairing(code.id, installation)];
            let decisions = decide_pairings(&pairings, &facts);
            plan(
                &facts,
                Requests {
                    pairings: &pairings,
                    ..Requests::default()
                },
                decisions,
                Grantable {
                    free_licenses: free(1),
                    newest_config: None,
                },
            )
        };
        let here = active(org, installation, 1);
        let plan = with_pairing(here.clone());
        assert!(matches!(
            &plan.pairs[0],
            PairOutcome::Paired { device, .. } if device.already_paired && device.device_id == here.id
        ));
        assert!(plan.writes.grants.is_empty(), "no license, no code use");
        assert!(plan.writes.code_uses.is_empty());
        assert_eq!(plan.writes.touches.len(), 1);

        let plan = with_pairing(active(OrgId::generate(), installation, 1));
        assert_eq!(
            refusal(&plan.pairs[0]),
            Some(Refusal::AlreadyPairedElsewhere)
        );
        let plan = with_pairing(active(org, installation, 9));
        assert_eq!(refusal(&plan.pairs[0]), Some(Refusal::CredentialMismatch));

        let expired = ActiveDevice {
            license_valid_until: Some(NOW),
            ..active(org, installation, 1)
        };
        let plan = with_pairing(expired.clone());
        assert_eq!(plan.writes.expired, vec![expired.id]);
        assert_eq!(plan.ended, vec![(expired.id, SessionEnd::LicenseExpired)]);
        assert!(
            matches!(&plan.pairs[0], PairOutcome::Paired { device, .. } if !device.already_paired),
            "an expired pairing ends and the installation pairs anew"
        );
    }

    #[test]
    fn a_second_request_of_one_installation_waits_for_the_first() {
        let org = OrgId::generate();
        let code = reusable(org);
        let installation = InstallationId::generate();
        let facts = facts(std::slice::from_ref(&code));
        let pairings = [
            pairing(code.id, installation),
            pairing(code.id, installation),
        ];
        let reconnections = [Reconnection {
            installation_id: installation,
            credential_hash: hash(1),
            details: details(),
            connection: 8,
        }];
        let decisions = decide_pairings(&pairings, &facts);
        assert_eq!(decisions.free_licenses_wanted(), 1);
        let plan = plan(
            &facts,
            Requests {
                pairings: &pairings,
                reconnections: &reconnections,
                ..Requests::default()
            },
            decisions,
            Grantable {
                free_licenses: free(1),
                newest_config: None,
            },
        );
        assert_eq!(plan.pairs[1], PairOutcome::Deferred);
        assert_eq!(plan.resumes, vec![ResumeOutcome::Deferred]);
    }

    #[test]
    fn reconnections_resume_end_or_are_not_here() {
        let org = OrgId::generate();
        let facts_with = |device: Option<ActiveDevice>, installation| {
            let mut facts = Facts::new(org, NOW);
            facts
                .pairings
                .extend(device.map(|device| (installation, device)));
            let reconnection = Reconnection {
                installation_id: installation,
                credential_hash: hash(1),
                details: details(),
                connection: 3,
            };
            plan(
                &facts,
                Requests {
                    reconnections: &[reconnection],
                    ..Requests::default()
                },
                decide_pairings(&[], &facts),
                Grantable::default(),
            )
        };
        let installation = InstallationId::generate();
        let config = ConfigId::generate();
        let device = ActiveDevice {
            config_id: Some(config),
            staged_revision: Some(4),
            ..active(org, installation, 1)
        };
        let plan = facts_with(Some(device.clone()), installation);
        assert!(matches!(
            &plan.resumes[0],
            ResumeOutcome::Resumed { device: resumed, config: Some(sent), staged: Some(4) }
                if resumed.device_id == device.id && *sent == config
        ));
        assert_eq!(plan.staged, HashSet::from([(config, 4)]));
        assert_eq!(plan.writes.touches.len(), 1);
        assert_eq!(
            facts_with(Some(active(org, installation, 2)), installation).resumes[0],
            ResumeOutcome::Ended(SessionEnd::AuthenticationFailed)
        );
        assert_eq!(
            facts_with(
                Some(active(OrgId::generate(), installation, 1)),
                installation
            )
            .resumes[0],
            ResumeOutcome::NotHere
        );
        assert_eq!(
            facts_with(None, installation).resumes[0],
            ResumeOutcome::NotHere
        );
        let expired = ActiveDevice {
            license_valid_until: Some(NOW.plus_millis(-5)),
            ..active(org, installation, 1)
        };
        let plan = facts_with(Some(expired.clone()), installation);
        assert_eq!(
            plan.resumes[0],
            ResumeOutcome::Ended(SessionEnd::LicenseExpired)
        );
        assert_eq!(plan.writes.expired, vec![expired.id]);
        assert_eq!(plan.writes.audit[0].action, "device.license_expired");
    }

    #[test]
    fn acknowledgements_are_recorded_once_and_stale_ones_ignored() {
        let org = OrgId::generate();
        let device = DeviceId::generate();
        let config = ConfigId::generate();
        let mut facts = Facts::new(org, NOW);
        facts.ack_targets.insert(
            device,
            AckTarget {
                device_id: device,
                config_id: Some(config),
                config_revision: Some(3),
                applied_config_id: Some(config),
                applied_revision: Some(2),
                ack_status: Some(AckStatus::Applied),
                ack_reason: None,
                device_name: "Van 1".into(),
                config_name: Some("Meters".into()),
            },
        );
        let ack = |revision, status, reason: Option<&str>| Acknowledgement {
            device_id: device,
            config_id: config,
            revision,
            status,
            reason: reason.map(str::to_string),
        };
        let acks = [
            ack(3, AckStatus::Failed, Some("bad key")),
            ack(3, AckStatus::Failed, Some("bad key")),
            ack(2, AckStatus::Applied, None),
            ack(4, AckStatus::Applied, None),
            Acknowledgement {
                config_id: ConfigId::generate(),
                ..ack(3, AckStatus::Applied, None)
            },
            Acknowledgement {
                device_id: DeviceId::generate(),
                ..ack(3, AckStatus::Applied, None)
            },
        ];
        let plan = plan(
            &facts,
            Requests {
                acknowledgements: &acks,
                ..Requests::default()
            },
            decide_pairings(&[], &facts),
            Grantable::default(),
        );
        assert_eq!(
            plan.acks,
            vec![
                AckAnswer::Recorded(true),
                AckAnswer::Recorded(true),
                AckAnswer::Recorded(false),
                AckAnswer::Recorded(false),
                AckAnswer::Recorded(false),
                AckAnswer::Recorded(false),
            ],
            "a repeat is recorded (idempotent); older, newer-than-exists, another configuration \
             and an unknown device are not"
        );
        assert_eq!(plan.writes.acks.len(), 1, "the repeat writes nothing");
        assert_eq!(plan.writes.audit.len(), 1, "one apply_failed entry");
        let failed = &plan.writes.audit[0];
        assert_eq!(failed.action, "configuration.apply_failed");
        assert_eq!(failed.devices, vec![device], "the entry names its device");
        assert_eq!(
            failed.details,
            json!({
                "revision": 3,
                "reason": "bad key",
                "name": "Meters",
                "device_name": "Van 1",
                "repeats": 0
            })
        );
    }

    /// A flood of failed acknowledgements writes one audit entry per device per interval of
    /// the engine's clock; the failures in between are counted and the next entry says how
    /// many. The device's row keeps the latest failure all along.
    #[test]
    fn failed_acknowledgements_are_logged_once_per_interval_and_counted() {
        let org = OrgId::generate();
        let device = DeviceId::generate();
        let config = ConfigId::generate();
        let target = AckTarget {
            device_id: device,
            config_id: Some(config),
            config_revision: Some(3),
            applied_config_id: None,
            applied_revision: None,
            ack_status: None,
            ack_reason: None,
            device_name: "Van 1".into(),
            config_name: Some("Meters".into()),
        };
        let failures: Vec<Acknowledgement> = (0..5)
            .map(|n| Acknowledgement {
                device_id: device,
                config_id: config,
                revision: 3,
                status: AckStatus::Failed,
                reason: Some(format!("reason {n}")),
            })
            .collect();
        let run = |now: Timestamp, window: Option<FailureWindow>| {
            let mut facts = Facts::new(org, now);
            facts.ack_targets.insert(device, target.clone());
            facts
                .ack_failures
                .extend(window.map(|window| (device, window)));
            plan(
                &facts,
                Requests {
                    acknowledgements: &failures,
                    ..Requests::default()
                },
                decide_pairings(&[], &facts),
                Grantable::default(),
            )
        };
        let interval =
            i64::try_from(crate::ack_failures::ACK_FAILURE_LOG_INTERVAL.as_millis()).unwrap();
        let cases = [
            // (the window before, when, entries written, repeats in the entry, window after)
            (None, NOW, 1, Some(0), (NOW, 4)),
            (
                Some(FailureWindow {
                    logged_at: NOW,
                    repeats: 4,
                }),
                NOW.plus_millis(interval - 1),
                0,
                None,
                (NOW, 9),
            ),
            (
                Some(FailureWindow {
                    logged_at: NOW,
                    repeats: 9,
                }),
                NOW.plus_millis(interval),
                1,
                Some(9),
                (NOW.plus_millis(interval), 4),
            ),
        ];
        for (before, now, entries, repeats, (logged_at, counted)) in cases {
            let plan = run(now, before);
            assert!(
                plan.acks
                    .iter()
                    .all(|answer| *answer == AckAnswer::Recorded(true))
            );
            assert_eq!(plan.writes.audit.len(), entries, "{before:?} at {now:?}");
            if let Some(repeats) = repeats {
                assert_eq!(plan.writes.audit[0].details["repeats"], json!(repeats));
                assert_eq!(plan.writes.audit[0].details["reason"], json!("reason 0"));
            }
            assert_eq!(
                plan.ack_failures,
                vec![(
                    device,
                    FailureWindow {
                        logged_at,
                        repeats: counted
                    }
                )]
            );
            assert_eq!(
                plan.writes.acks.len(),
                1,
                "the row keeps the latest failure"
            );
            assert_eq!(plan.writes.acks[0].reason.as_deref(), Some("reason 4"));
        }
    }

    /// Each entry a batch writes carries the names of what it concerns as they are at the
    /// decision (the code's label, what the device says of itself), and names its device.
    #[test]
    fn batch_entries_carry_names_and_name_their_device() {
        let org = OrgId::generate();
        let code = reusable(org);
        let facts = facts(std::slice::from_ref(&code));
        let (outcome, pairing_plan) = pair_once(&facts, code.id, 1);
        let PairOutcome::Paired { device, .. } = outcome else {
            panic!("paired: {outcome:?}");
        };
        let paired = &pairing_plan.writes.audit[0];
        // Not linked: found from the device's row (see `store::audit`'s device filter).
        assert_eq!(
            (paired.action.as_str(), paired.devices.as_slice()),
            ("device.paired", [].as_slice())
        );
        assert_eq!(paired.subject, Some(device.device_id.to_string()));
        let installation = pairing_plan.writes.new_devices[0].installation_id;
        let address = pairing_plan.writes.new_devices[0].peer.to_string();
        assert_eq!(
            paired.details,
            json!({
                "code_id": code.id,
                "code_label": "vans",
                "license_id": device.license_id,
                "installation_id": installation,
                "address": address,
                "name": "van",
                "model": "TC52",
                "os": "Android",
                "app_version": "4",
            })
        );

        let (_, refusing) = pair_once(&facts, code.id, 0);
        let refused = &refusing.writes.audit[0];
        assert_eq!(refused.action, "pairing.refused");
        assert!(refused.devices.is_empty(), "a refusal made no device");
        assert_eq!(refused.details["label"], json!("vans"));
        assert_eq!(refused.details["device_name"], json!("van"));

        let installation = InstallationId::generate();
        let expired = ActiveDevice {
            license_valid_until: Some(NOW),
            ..active(org, installation, 1)
        };
        let mut facts = facts.clone();
        facts.pairings.insert(installation, expired.clone());
        let pairings = [pairing(code.id, installation)];
        let anew = plan(
            &facts,
            Requests {
                pairings: &pairings,
                ..Requests::default()
            },
            decide_pairings(&pairings, &facts),
            Grantable {
                free_licenses: free(1),
                newest_config: None,
            },
        );
        let ended = &anew.writes.audit[0];
        assert_eq!(
            (ended.action.as_str(), ended.devices.as_slice()),
            ("device.license_expired", [expired.id].as_slice())
        );
        assert_eq!(
            ended.details,
            json!({
                "license_id": expired.license_id,
                "installation_id": installation,
                "name": "Van 1",
                "model": "TC52",
                "os": "Android",
                "app_version": "4",
            }),
            "the ended pairing keeps the name it had, not the new pairing's"
        );
    }
}
