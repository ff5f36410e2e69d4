//! Admin commands that change an organization, run by its actor one transaction each.
//!
//! Every command validates its input, changes the database with conditional statements, appends
//! to the audit log in the same transaction, and — for commands that create things — stores its
//! reply under the caller's idempotency key in that same transaction, so that a retried request
//! gets the same reply and creates nothing twice. Stored replies are sealed with the server key
//! because some of them carry secrets (a new code, a new key).
//!
//! After the commit, the actor applies the command's effects to connected devices on this node:
//! a new revision pushed, an assignment changed, a session ended.

use std::time::Duration;

use protocol::EndReason;
use protocol::limits::{MAX_CONFIGURATION_BODY_BYTES, MAX_CONFIGURATION_NAME_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::context::Shared;
use crate::error::EngineError;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::{CodeId, ConfigId, DeviceId, KeyId, LicenseId, OrgId, Timestamp};
use crate::model::{CodeInfo, CodeKind, CodeStatus, CodeWithSecret, Configuration, OrgKeyInfo};
use crate::secrets::{self, ORG_KEY_PREFIX};
use crate::store::{
    Change, ConfigDelete, ConfigRow, ConfigUpdate, LicenseState, NewAudit, NewCode, PairingEnd,
    StoredReply, Transaction,
};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// Holds the operator token: manages everything.
    Operator,
    /// Holds an organization key: manages its own organization only.
    OrgKey { org_id: OrgId, key_id: KeyId },
    /// The server itself (expiry sweep, demo seeding).
    System,
}

impl Principal {
    /// How the audit log names this principal.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::OrgKey { key_id, .. } => format!("key:{key_id}"),
            Principal::System => "system".into(),
        }
    }

    /// Organization keys see only their own organization; to them, any other does not exist.
    pub fn require_org(&self, org_id: OrgId) -> Result<(), EngineError> {
        match self {
            Principal::Operator | Principal::System => Ok(()),
            Principal::OrgKey { org_id: own, .. } if *own == org_id => Ok(()),
            Principal::OrgKey { .. } => Err(EngineError::NotFound("organization")),
        }
    }

    pub fn require_operator(&self, what: &'static str) -> Result<(), EngineError> {
        match self {
            Principal::Operator | Principal::System => Ok(()),
            Principal::OrgKey { .. } => Err(EngineError::Forbidden(what)),
        }
    }
}

/// A client-chosen key that makes a creating command safe to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 200 || !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err(EngineError::invalid(
                "Idempotency-Key",
                "1 to 200 printable ASCII characters",
            ));
        }
        Ok(IdempotencyKey(text.to_string()))
    }
}

/// Limits on codes.
pub const REUSABLE_VALIDITY_DEFAULT: Duration = Duration::from_secs(30 * 24 * 3600);
pub const REUSABLE_VALIDITY_MIN: Duration = Duration::from_secs(3600);
pub const REUSABLE_VALIDITY_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
pub const SINGLE_USE_VALIDITY_DEFAULT: Duration = Duration::from_secs(60);
pub const SINGLE_USE_VALIDITY_MIN: Duration = Duration::from_secs(10);
pub const SINGLE_USE_VALIDITY_MAX: Duration = Duration::from_secs(600);
/// Most licenses added by one command.
pub const MAX_LICENSES_PER_COMMAND: u32 = 100_000;
/// Most devices assigned by one command.
pub const MAX_DEVICES_PER_ASSIGNMENT: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AdminCommand {
    CreateKey {
        name: String,
    },
    RevokeKey {
        key_id: KeyId,
    },
    AddLicenses {
        count: u32,
        valid_until: Option<Timestamp>,
    },
    SetLicenseValidUntil {
        license_id: LicenseId,
        valid_until: Option<Timestamp>,
    },
    CreateReusableCode {
        validity_ms: u64,
        max_uses: Option<u32>,
        label: Option<String>,
    },
    CreateSingleUseCode {
        license_id: LicenseId,
        validity_ms: u64,
    },
    RevokeCode {
        code_id: CodeId,
    },
    RevokeSingleUseCodeOf {
        license_id: LicenseId,
    },
    CreateConfiguration {
        name: String,
        body: String,
    },
    UpdateConfiguration {
        config_id: ConfigId,
        name: Option<String>,
        body: Option<String>,
        if_revision: Option<u64>,
    },
    DeleteConfiguration {
        config_id: ConfigId,
    },
    AssignConfiguration {
        config_id: ConfigId,
        device_ids: Vec<DeviceId>,
    },
    Unpair {
        device_id: DeviceId,
    },
    /// Ends pairings whose license expired (the sweep).
    ExpireDevices {
        device_ids: Vec<DeviceId>,
    },
}

/// What a command returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminOutput {
    Key {
        info: OrgKeyInfo,
        secret: String,
    },
    KeyRevoked,
    Licenses {
        ids: Vec<LicenseId>,
        valid_until: Option<Timestamp>,
    },
    LicenseUpdated,
    Code(CodeWithSecret),
    CodeRevoked {
        code_id: CodeId,
    },
    SingleUseCodesRevoked {
        count: u64,
    },
    Configuration(Configuration),
    ConfigurationUpdated {
        config_id: ConfigId,
    },
    ConfigurationDeleted,
    Assigned {
        device_ids: Vec<DeviceId>,
    },
    Unpaired {
        device_id: DeviceId,
        license_id: LicenseId,
    },
    Expired {
        count: u64,
    },
}

#[derive(Debug)]
pub(crate) struct AdminJob {
    pub principal: Principal,
    pub command: AdminCommand,
    pub idempotency: Option<IdempotencyKey>,
    pub reply: oneshot::Sender<Result<AdminOutput, EngineError>>,
}

/// What a committed command changes for connected devices.
#[derive(Debug, Default)]
struct Effects {
    /// A new revision: push it to every device running that configuration.
    updated: Option<ConfigRow>,
    /// Devices now assigned this configuration.
    assigned: Option<(ConfigRow, Vec<DeviceId>)>,
    /// Sessions to end.
    ended: Vec<(DeviceId, EndReason)>,
    /// A deleted configuration to forget.
    deleted: Option<ConfigId>,
}

/// Runs one admin command for `org_id` and answers it. Called by the organization's actor.
pub(crate) async fn run(shared: &Shared, org_id: OrgId, job: AdminJob) {
    let result = execute(shared, org_id, &job).await;
    let _ = job.reply.send(result);
}

async fn execute(
    shared: &Shared,
    org_id: OrgId,
    job: &AdminJob,
) -> Result<AdminOutput, EngineError> {
    let now = shared.clock.now();
    let mut tx = shared.store.begin().await?;
    let mut effects = Effects::default();
    match decide(shared, org_id, job, now, tx.as_mut(), &mut effects).await {
        Ok(Decided::Changed(output)) => {
            tx.commit().await?;
            apply_effects(shared, org_id, effects);
            shared.publish_events(org_id, || live_events(&job.command, &output));
            Ok(output)
        }
        outcome => {
            // Ended here rather than on drop, so that no row lock outlives the command.
            if let Err(error) = tx.rollback().await {
                tracing::debug!(%error, "rollback after an admin command");
            }
            outcome.map(Decided::into_output)
        }
    }
}

/// What a committed command tells the organization's live feed.
fn live_events(command: &AdminCommand, output: &AdminOutput) -> Vec<OrgEvent> {
    let event = match (command, output) {
        (AdminCommand::CreateKey { .. }, _) => return Vec::new(),
        (AdminCommand::RevokeKey { key_id }, _) => OrgEvent::KeyRevoked { key_id: *key_id },
        (
            AdminCommand::AddLicenses { .. }
            | AdminCommand::SetLicenseValidUntil { .. }
            | AdminCommand::CreateSingleUseCode { .. }
            | AdminCommand::RevokeSingleUseCodeOf { .. },
            _,
        ) => OrgEvent::Licenses,
        (AdminCommand::CreateReusableCode { .. }, _) => OrgEvent::Codes,
        // A revoked single-use code releases its license's reservation.
        (AdminCommand::RevokeCode { .. }, _) => {
            return vec![OrgEvent::Codes, OrgEvent::Licenses];
        }
        (
            AdminCommand::CreateConfiguration { .. }
            | AdminCommand::UpdateConfiguration { .. }
            | AdminCommand::DeleteConfiguration { .. },
            _,
        ) => OrgEvent::Configurations,
        (AdminCommand::AssignConfiguration { .. }, AdminOutput::Assigned { device_ids }) => {
            OrgEvent::Devices {
                change: DeviceChange::Assigned,
                device_ids: device_ids.clone(),
            }
        }
        (AdminCommand::Unpair { device_id }, _) => OrgEvent::Devices {
            change: DeviceChange::Ended,
            device_ids: vec![*device_id],
        },
        (AdminCommand::ExpireDevices { device_ids }, _) => OrgEvent::Devices {
            change: DeviceChange::Ended,
            device_ids: device_ids.clone(),
        },
        (AdminCommand::AssignConfiguration { device_ids, .. }, _) => OrgEvent::Devices {
            change: DeviceChange::Assigned,
            device_ids: device_ids.clone(),
        },
    };
    vec![event]
}

enum Decided {
    /// The command wrote; commit.
    Changed(AdminOutput),
    /// A retry answered from its idempotency record; nothing to commit.
    Replayed(AdminOutput),
}

impl Decided {
    fn into_output(self) -> AdminOutput {
        match self {
            Decided::Changed(output) | Decided::Replayed(output) => output,
        }
    }
}

async fn decide(
    shared: &Shared,
    org_id: OrgId,
    job: &AdminJob,
    now: Timestamp,
    tx: &mut dyn Transaction,
    effects: &mut Effects,
) -> Result<Decided, EngineError> {
    let idempotency = match &job.idempotency {
        Some(key) => {
            let scope = format!("{}@{org_id}", job.principal.audit_name());
            let fingerprint = fingerprint(&job.command);
            if let Some(stored) = tx.idempotent_reply(&scope, &key.0).await? {
                return replay(shared, &scope, key, &stored, &fingerprint).map(Decided::Replayed);
            }
            Some((scope, key, fingerprint))
        }
        None => None,
    };
    let mut command = Command {
        tx: &mut *tx,
        shared,
        org_id,
        principal: job.principal,
        now,
        effects,
    };
    let output = command.apply(&job.command).await?;
    if let Some((scope, key, fingerprint)) = idempotency {
        store_reply(shared, tx, &scope, key, fingerprint, &output, now).await?;
    }
    Ok(Decided::Changed(output))
}

/// SHA-256 of the command, to tell a retry from a different command under the same key.
pub(crate) fn fingerprint<T: Serialize>(command: &T) -> [u8; 32] {
    let bytes = serde_json::to_vec(command).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

/// Stores a command's reply under its idempotency key, sealed with the server key (some replies
/// carry a secret), in the command's own transaction.
pub(crate) async fn store_reply<T: Serialize>(
    shared: &Shared,
    tx: &mut dyn Transaction,
    scope: &str,
    key: &IdempotencyKey,
    fingerprint: [u8; 32],
    output: &T,
    now: Timestamp,
) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec(output).map_err(|error| {
        tracing::error!(%error, "cannot serialize an idempotent reply");
        EngineError::Internal
    })?;
    let sealed_reply = shared
        .cipher
        .seal(format!("{scope}\0{}", key.0).as_bytes(), &bytes);
    let reply = StoredReply {
        fingerprint,
        sealed_reply,
    };
    tx.store_idempotent_reply(scope, &key.0, &reply, now)
        .await?;
    Ok(())
}

pub(crate) fn replay<T: for<'de> Deserialize<'de>>(
    shared: &Shared,
    scope: &str,
    key: &IdempotencyKey,
    stored: &StoredReply,
    fingerprint: &[u8; 32],
) -> Result<T, EngineError> {
    if &stored.fingerprint != fingerprint {
        return Err(EngineError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request",
        ));
    }
    let bytes = shared
        .cipher
        .open(
            format!("{scope}\0{}", key.0).as_bytes(),
            &stored.sealed_reply,
        )
        .map_err(|_| {
            tracing::error!("a stored idempotent reply does not open with the server key");
            EngineError::Internal
        })?;
    serde_json::from_slice(&bytes).map_err(|error| {
        tracing::error!(%error, "a stored idempotent reply does not parse");
        EngineError::Internal
    })
}

fn apply_effects(shared: &Shared, org_id: OrgId, effects: Effects) {
    if let Some(row) = effects.updated {
        let snapshot = shared.snapshot(row);
        for link in shared.registry.of_org(org_id) {
            link.offer(&snapshot);
        }
    }
    if let Some((row, devices)) = effects.assigned {
        let snapshot = shared.snapshot(row);
        for device in devices {
            if let Some(link) = shared.registry.get(device) {
                link.reassign(Some(&snapshot));
            }
        }
    }
    for (device, reason) in effects.ended {
        if let Some(link) = shared.registry.get(device) {
            link.end(reason);
        }
    }
    if let Some(config) = effects.deleted {
        shared.configs.remove(&config);
    }
}

struct Command<'a> {
    tx: &'a mut dyn Transaction,
    shared: &'a Shared,
    org_id: OrgId,
    principal: Principal,
    now: Timestamp,
    effects: &'a mut Effects,
}

impl Command<'_> {
    async fn audit(
        &mut self,
        action: &str,
        subject: String,
        details: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.tx
            .insert_audit(&[NewAudit {
                org_id: Some(self.org_id),
                at: self.now,
                actor: self.principal.audit_name(),
                action: action.to_string(),
                subject: Some(subject),
                details,
            }])
            .await?;
        Ok(())
    }

    /// A license of this organization, locked; any other is not found.
    async fn own_license(&mut self, license_id: LicenseId) -> Result<LicenseState, EngineError> {
        self.tx
            .lock_licenses(&[license_id])
            .await?
            .into_iter()
            .find(|license| license.org_id == self.org_id)
            .ok_or(EngineError::NotFound("license"))
    }

    async fn apply(&mut self, command: &AdminCommand) -> Result<AdminOutput, EngineError> {
        match command {
            AdminCommand::CreateKey { name } => self.create_key(name).await,
            AdminCommand::RevokeKey { key_id } => self.revoke_key(*key_id).await,
            AdminCommand::AddLicenses { count, valid_until } => {
                self.add_licenses(*count, *valid_until).await
            }
            AdminCommand::SetLicenseValidUntil {
                license_id,
                valid_until,
            } => self.set_valid_until(*license_id, *valid_until).await,
            AdminCommand::CreateReusableCode {
                validity_ms,
                max_uses,
                label,
            } => {
                self.create_reusable_code(*validity_ms, *max_uses, label.clone())
                    .await
            }
            AdminCommand::CreateSingleUseCode {
                license_id,
                validity_ms,
            } => self.create_single_use_code(*license_id, *validity_ms).await,
            AdminCommand::RevokeCode { code_id } => self.revoke_code(*code_id).await,
            AdminCommand::RevokeSingleUseCodeOf { license_id } => {
                self.revoke_single_use_of(*license_id).await
            }
            AdminCommand::CreateConfiguration { name, body } => {
                self.create_configuration(name, body).await
            }
            AdminCommand::UpdateConfiguration {
                config_id,
                name,
                body,
                if_revision,
            } => {
                self.update_configuration(
                    *config_id,
                    name.as_deref(),
                    body.as_deref(),
                    *if_revision,
                )
                .await
            }
            AdminCommand::DeleteConfiguration { config_id } => {
                self.delete_configuration(*config_id).await
            }
            AdminCommand::AssignConfiguration {
                config_id,
                device_ids,
            } => self.assign(*config_id, device_ids).await,
            AdminCommand::Unpair { device_id } => self.unpair(*device_id).await,
            AdminCommand::ExpireDevices { device_ids } => self.expire(device_ids).await,
        }
    }

    async fn create_key(&mut self, name: &str) -> Result<AdminOutput, EngineError> {
        let name = validate_name("name", name, 100)?;
        let secret = secrets::new_token(ORG_KEY_PREFIX);
        let info = OrgKeyInfo {
            id: KeyId::generate(),
            organization_id: self.org_id,
            name,
            created_at: self.now,
            revoked_at: None,
        };
        self.tx
            .insert_org_key(&info, &secrets::token_hash(&secret))
            .await?;
        self.audit(
            "key.created",
            info.id.to_string(),
            json!({ "name": info.name }),
        )
        .await?;
        Ok(AdminOutput::Key { info, secret })
    }

    async fn revoke_key(&mut self, key_id: KeyId) -> Result<AdminOutput, EngineError> {
        if !self
            .tx
            .revoke_org_key(self.org_id, key_id, self.now)
            .await?
        {
            return Err(EngineError::NotFound("key"));
        }
        self.audit("key.revoked", key_id.to_string(), json!({}))
            .await?;
        Ok(AdminOutput::KeyRevoked)
    }

    async fn add_licenses(
        &mut self,
        count: u32,
        valid_until: Option<Timestamp>,
    ) -> Result<AdminOutput, EngineError> {
        self.principal
            .require_operator("only the operator adds licenses")?;
        if count == 0 || count > MAX_LICENSES_PER_COMMAND {
            return Err(EngineError::invalid(
                "count",
                format!("from 1 to {MAX_LICENSES_PER_COMMAND}"),
            ));
        }
        if valid_until.is_some_and(|until| until <= self.now) {
            return Err(EngineError::invalid("valid_until", "must be in the future"));
        }
        let ids: Vec<LicenseId> = (0..count).map(|_| LicenseId::generate()).collect();
        self.tx
            .insert_licenses(self.org_id, &ids, self.now, valid_until)
            .await?;
        self.audit(
            "licenses.added",
            self.org_id.to_string(),
            json!({ "count": count, "valid_until": valid_until }),
        )
        .await?;
        Ok(AdminOutput::Licenses { ids, valid_until })
    }

    async fn set_valid_until(
        &mut self,
        license_id: LicenseId,
        valid_until: Option<Timestamp>,
    ) -> Result<AdminOutput, EngineError> {
        self.principal
            .require_operator("only the operator renews licenses")?;
        if valid_until.is_some_and(|until| until <= self.now) {
            return Err(EngineError::invalid("valid_until", "must be in the future"));
        }
        if self
            .tx
            .set_license_valid_until(self.org_id, license_id, valid_until, self.now)
            .await?
            .is_none()
        {
            return Err(EngineError::NotFound("license"));
        }
        self.audit(
            "license.renewed",
            license_id.to_string(),
            json!({ "valid_until": valid_until }),
        )
        .await?;
        Ok(AdminOutput::LicenseUpdated)
    }

    async fn create_reusable_code(
        &mut self,
        validity_ms: u64,
        max_uses: Option<u32>,
        label: Option<String>,
    ) -> Result<AdminOutput, EngineError> {
        let validity = Duration::from_millis(validity_ms);
        if !(REUSABLE_VALIDITY_MIN..=REUSABLE_VALIDITY_MAX).contains(&validity) {
            return Err(EngineError::invalid(
                "validity_seconds",
                "from 3600 (1 hour) to 31536000 (1 year)",
            ));
        }
        if max_uses == Some(0) {
            return Err(EngineError::invalid("max_uses", "at least 1 when given"));
        }
        let label = label
            .map(|label| validate_name("label", &label, 100))
            .transpose()?;
        let code = secrets::new_pairing_code();
        let id = CodeId::generate();
        let sealed = self
            .shared
            .cipher
            .seal(id.0.as_bytes(), code.as_str().as_bytes());
        let new = NewCode {
            id,
            org_id: self.org_id,
            kind: CodeKind::Reusable,
            code_hash: secrets::code_hash(&code),
            sealed_secret: Some(sealed),
            label: label.clone(),
            license_id: None,
            created_at: self.now,
            expires_at: self.now.plus(validity),
            max_uses,
        };
        self.tx.insert_code(&new).await?;
        self.audit(
            "code.created",
            id.to_string(),
            json!({ "kind": "reusable", "expires_at": new.expires_at, "max_uses": max_uses, "label": label }),
        )
        .await?;
        Ok(AdminOutput::Code(CodeWithSecret {
            info: new_code_info(&new),
            code: code.as_str().to_string(),
        }))
    }

    async fn create_single_use_code(
        &mut self,
        license_id: LicenseId,
        validity_ms: u64,
    ) -> Result<AdminOutput, EngineError> {
        let validity = Duration::from_millis(validity_ms);
        if !(SINGLE_USE_VALIDITY_MIN..=SINGLE_USE_VALIDITY_MAX).contains(&validity) {
            return Err(EngineError::invalid(
                "validity_seconds",
                "from 10 to 600 seconds",
            ));
        }
        let license = self.own_license(license_id).await?;
        if license.device_id.is_some() {
            return Err(EngineError::conflict(
                "license_assigned",
                "the license is assigned to a device; unpair it first",
            ));
        }
        if license.expired_at(self.now) {
            return Err(EngineError::conflict(
                "license_expired",
                "the license has expired",
            ));
        }
        // A new code replaces the license's previous one.
        let replaced = self
            .tx
            .revoke_single_use_codes_of(license_id, self.now)
            .await?;
        let code = secrets::new_pairing_code();
        let id = CodeId::generate();
        let new = NewCode {
            id,
            org_id: self.org_id,
            kind: CodeKind::SingleUse,
            code_hash: secrets::code_hash(&code),
            sealed_secret: None,
            label: None,
            license_id: Some(license_id),
            created_at: self.now,
            expires_at: self.now.plus(validity),
            max_uses: Some(1),
        };
        // Inserting a code bound to a license reserves the license until the code expires.
        self.tx.insert_code(&new).await?;
        self.audit(
            "code.created",
            id.to_string(),
            json!({ "kind": "single_use", "license_id": license_id, "expires_at": new.expires_at, "replaced": replaced }),
        )
        .await?;
        Ok(AdminOutput::Code(CodeWithSecret {
            info: new_code_info(&new),
            code: code.as_str().to_string(),
        }))
    }

    async fn revoke_code(&mut self, code_id: CodeId) -> Result<AdminOutput, EngineError> {
        let revoked = self
            .tx
            .revoke_code(self.org_id, code_id, self.now)
            .await?
            .ok_or(EngineError::NotFound("code"))?;
        if !revoked.already_revoked {
            self.audit(
                "code.revoked",
                code_id.to_string(),
                json!({ "kind": revoked.code.kind.as_str() }),
            )
            .await?;
        }
        Ok(AdminOutput::CodeRevoked { code_id })
    }

    async fn revoke_single_use_of(
        &mut self,
        license_id: LicenseId,
    ) -> Result<AdminOutput, EngineError> {
        let license = self.own_license(license_id).await?;
        let revoked = self
            .tx
            .revoke_single_use_codes_of(license.id, self.now)
            .await?;
        for code in &revoked {
            self.audit(
                "code.revoked",
                code.to_string(),
                json!({ "kind": "single_use", "license_id": license_id }),
            )
            .await?;
        }
        Ok(AdminOutput::SingleUseCodesRevoked {
            count: revoked.len() as u64,
        })
    }

    async fn create_configuration(
        &mut self,
        name: &str,
        body: &str,
    ) -> Result<AdminOutput, EngineError> {
        let name = validate_name("name", name, MAX_CONFIGURATION_NAME_BYTES)?;
        validate_body(body)?;
        let row = ConfigRow {
            id: ConfigId::generate(),
            org_id: self.org_id,
            name,
            revision: 1,
            body: body.to_string(),
        };
        self.tx.insert_configuration(&row, self.now).await?;
        // Devices that paired before any configuration existed have been waiting for this one.
        let waiting = self
            .tx
            .assign_waiting_devices(self.org_id, row.id, self.now)
            .await?;
        self.audit(
            "configuration.created",
            row.id.to_string(),
            json!({ "name": row.name, "bytes": row.body.len(), "assigned_to_waiting_devices": waiting.len() }),
        )
        .await?;
        if !waiting.is_empty() {
            self.tx
                .publish(&Change::DevicesAssigned {
                    org_id: self.org_id,
                    device_ids: waiting.clone(),
                })
                .await?;
        }
        let configuration = Configuration {
            id: row.id,
            organization_id: self.org_id,
            name: row.name.clone(),
            revision: row.revision,
            created_at: self.now,
            updated_at: self.now,
            assigned_devices: waiting.len() as u64,
            body: Some(row.body.clone()),
        };
        self.effects.assigned = Some((row, waiting));
        Ok(AdminOutput::Configuration(configuration))
    }

    async fn update_configuration(
        &mut self,
        config_id: ConfigId,
        name: Option<&str>,
        body: Option<&str>,
        if_revision: Option<u64>,
    ) -> Result<AdminOutput, EngineError> {
        let name = name
            .map(|name| validate_name("name", name, MAX_CONFIGURATION_NAME_BYTES))
            .transpose()?;
        if let Some(body) = body {
            validate_body(body)?;
        }
        if name.is_none() && body.is_none() {
            return Err(EngineError::invalid(
                "body",
                "give a new name, a new body, or both",
            ));
        }
        let row = match self
            .tx
            .update_configuration(
                self.org_id,
                config_id,
                &crate::store::ConfigEdit {
                    name,
                    body: body.map(str::to_string),
                    if_revision,
                },
                self.now,
            )
            .await?
        {
            ConfigUpdate::Updated(configuration) => ConfigRow {
                id: configuration.id,
                org_id: configuration.organization_id,
                name: configuration.name,
                revision: configuration.revision,
                body: configuration.body.unwrap_or_default(),
            },
            ConfigUpdate::NotFound => return Err(EngineError::NotFound("configuration")),
            ConfigUpdate::RevisionMismatch(current) => {
                return Err(EngineError::conflict(
                    "revision_mismatch",
                    format!("the configuration is at revision {current}, not the expected one"),
                ));
            }
        };
        self.audit(
            "configuration.updated",
            config_id.to_string(),
            json!({ "revision": row.revision, "name": row.name, "bytes": row.body.len() }),
        )
        .await?;
        self.tx
            .publish(&Change::ConfigurationUpdated {
                org_id: self.org_id,
                config_id,
            })
            .await?;
        self.effects.updated = Some(row);
        Ok(AdminOutput::ConfigurationUpdated { config_id })
    }

    async fn delete_configuration(
        &mut self,
        config_id: ConfigId,
    ) -> Result<AdminOutput, EngineError> {
        match self.tx.delete_configuration(self.org_id, config_id).await? {
            ConfigDelete::Deleted => {}
            ConfigDelete::NotFound => return Err(EngineError::NotFound("configuration")),
            ConfigDelete::InUse(devices) => {
                return Err(EngineError::conflict(
                    "configuration_in_use",
                    format!(
                        "the configuration is assigned to {devices} device(s); assign them another one first"
                    ),
                ));
            }
        }
        self.audit("configuration.deleted", config_id.to_string(), json!({}))
            .await?;
        self.effects.deleted = Some(config_id);
        Ok(AdminOutput::ConfigurationDeleted)
    }

    async fn assign(
        &mut self,
        config_id: ConfigId,
        device_ids: &[DeviceId],
    ) -> Result<AdminOutput, EngineError> {
        if device_ids.is_empty() || device_ids.len() > MAX_DEVICES_PER_ASSIGNMENT {
            return Err(EngineError::invalid(
                "device_ids",
                format!("from 1 to {MAX_DEVICES_PER_ASSIGNMENT} devices"),
            ));
        }
        let row = self
            .tx
            .config_rows(&[config_id])
            .await?
            .into_iter()
            .find(|row| row.org_id == self.org_id)
            .ok_or(EngineError::NotFound("configuration"))?;
        let mut unique = device_ids.to_vec();
        unique.sort();
        unique.dedup();
        let assigned = self
            .tx
            .assign_configuration(self.org_id, config_id, &unique, self.now)
            .await?;
        if assigned.len() != unique.len() {
            // All or nothing: the transaction is dropped, so nothing was assigned.
            return Err(EngineError::NotFound("device"));
        }
        self.audit(
            "configuration.assigned",
            config_id.to_string(),
            json!({ "devices": assigned.len(), "device_ids": if assigned.len() <= 100 { json!(assigned) } else { json!(null) } }),
        )
        .await?;
        self.tx
            .publish(&Change::DevicesAssigned {
                org_id: self.org_id,
                device_ids: assigned.clone(),
            })
            .await?;
        self.effects.assigned = Some((row, assigned.clone()));
        Ok(AdminOutput::Assigned {
            device_ids: assigned,
        })
    }

    async fn unpair(&mut self, device_id: DeviceId) -> Result<AdminOutput, EngineError> {
        let ended = self
            .tx
            .end_devices(&[device_id], PairingEnd::Unpaired, self.now)
            .await?;
        let Some(ended) = ended
            .into_iter()
            .find(|device| device.org_id == self.org_id)
        else {
            return Err(EngineError::NotFound("device"));
        };
        self.audit(
            "device.unpaired",
            device_id.to_string(),
            json!({ "license_id": ended.license_id }),
        )
        .await?;
        self.tx
            .publish(&Change::DevicesEnded {
                org_id: self.org_id,
                device_ids: vec![device_id],
                reason: PairingEnd::Unpaired,
            })
            .await?;
        self.effects.ended.push((device_id, EndReason::Unpaired));
        Ok(AdminOutput::Unpaired {
            device_id,
            license_id: ended.license_id,
        })
    }

    async fn expire(&mut self, device_ids: &[DeviceId]) -> Result<AdminOutput, EngineError> {
        // Re-check under the transaction: only pairings whose license is still expired end.
        let still_expired: Vec<DeviceId> = self
            .tx
            .active_devices(device_ids)
            .await?
            .into_iter()
            .filter(|device| device.org_id == self.org_id && device.license_expired_at(self.now))
            .map(|device| device.id)
            .collect();
        if still_expired.is_empty() {
            return Ok(AdminOutput::Expired { count: 0 });
        }
        let ended = self
            .tx
            .end_devices(&still_expired, PairingEnd::LicenseExpired, self.now)
            .await?;
        for device in &ended {
            self.audit(
                "device.license_expired",
                device.device_id.to_string(),
                json!({ "license_id": device.license_id }),
            )
            .await?;
            self.effects
                .ended
                .push((device.device_id, EndReason::LicenseExpired));
        }
        self.tx
            .publish(&Change::DevicesEnded {
                org_id: self.org_id,
                device_ids: ended.iter().map(|device| device.device_id).collect(),
                reason: PairingEnd::LicenseExpired,
            })
            .await?;
        Ok(AdminOutput::Expired {
            count: ended.len() as u64,
        })
    }
}

pub(crate) fn validate_name(
    field: &'static str,
    name: &str,
    max_bytes: usize,
) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty() || name.len() > max_bytes || name.chars().any(char::is_control) {
        return Err(EngineError::invalid(
            field,
            format!("1 to {max_bytes} bytes of text without control characters"),
        ));
    }
    Ok(name.to_string())
}

/// Checks a configuration body before it is saved: its size, and that the app can read it
/// (the INI rules of `configformat`). Refused with every problem by line; warnings alone (a
/// misspelled key, say) do not refuse it.
fn validate_body(body: &str) -> Result<(), EngineError> {
    let report = check_configuration_body(body)?;
    if report.is_valid() {
        Ok(())
    } else {
        Err(EngineError::InvalidConfiguration {
            problems: report.problems,
        })
    }
}

/// What the admin API's check reports for a body, without saving anything: `Err` when it is
/// too large or holds a NUL (it could never be saved), otherwise every problem by line.
pub fn check_configuration_body(body: &str) -> Result<configformat::Report, EngineError> {
    if body.len() > MAX_CONFIGURATION_BODY_BYTES {
        return Err(EngineError::invalid(
            "body",
            format!(
                "at most {MAX_CONFIGURATION_BODY_BYTES} bytes, got {}",
                body.len()
            ),
        ));
    }
    // Stored and delivered byte for byte, but no text database column holds a NUL (PostgreSQL
    // refuses it), and no INI file the app reads has one.
    if body.contains('\0') {
        return Err(EngineError::invalid(
            "body",
            "must not contain NUL (U+0000) characters",
        ));
    }
    Ok(configformat::validate(body))
}

fn new_code_info(code: &NewCode) -> CodeInfo {
    CodeInfo {
        id: code.id,
        organization_id: code.org_id,
        kind: code.kind,
        label: code.label.clone(),
        status: CodeStatus::Active,
        created_at: code.created_at,
        expires_at: code.expires_at,
        max_uses: match code.kind {
            CodeKind::Reusable => code.max_uses,
            CodeKind::SingleUse => None,
        },
        uses: 0,
        last_used_at: None,
        revoked_at: None,
        license_id: code.license_id,
    }
}

/// A code's status at `now`.
pub fn code_status(
    kind: CodeKind,
    revoked_at: Option<Timestamp>,
    used_at: Option<Timestamp>,
    expires_at: Timestamp,
    max_uses: Option<u32>,
    uses: u32,
    now: Timestamp,
) -> CodeStatus {
    if revoked_at.is_some() {
        CodeStatus::Revoked
    } else if kind == CodeKind::SingleUse && used_at.is_some() {
        CodeStatus::Used
    } else if expires_at <= now {
        CodeStatus::Expired
    } else if kind == CodeKind::Reusable && max_uses.is_some_and(|max| uses >= max) {
        CodeStatus::Exhausted
    } else {
        CodeStatus::Active
    }
}
