//! The write transaction's roles, written once for both backends: [`StoreTx`], [`PairingTx`]
//! (the batch of device requests) and [`AdminTx`] (admin commands).
//!
//! What differs is the backend's ([`Backend`]): the batch writes, the license claim and
//! notifications are its operations; statements that take a list of ids, and the reads that
//! PostgreSQL locks, are its statements, bound and read here.

use async_trait::async_trait;
use engine::ids::WebhookId;
use engine::ids::{
    CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OperatorTokenId, OrgId,
    RolloutId, Timestamp,
};
use engine::model::Webhook;
use engine::model::{
    AckStatus, ConfigurationRevision, Device, FleetFilter, FleetRows, License, OperatorTokenInfo,
    OrgKeyInfo, Organization, RolloutState, StagedRollout, TokenSource,
};
use engine::secrets::SecretHash;
use engine::store::WebhookEvent;
use engine::store::{
    AckTarget, AckWrite, ActiveDevice, AdminTx, Change, Claim, CodeState, ConfigDelete, ConfigEdit,
    ConfigRow, ConfigUpdate, DeviceEdit, DevicePresence, DeviceTouch, EndedDevice, FreeLicense,
    LicenseGrant, LicenseState, LockedConfiguration, NewAudit, NewCode, NewDevice, NewRevision,
    NewWaiting, OperatorTokenRow, PairingEnd, PairingTx, Quota, RevokedCode, StageChoice,
    StoreError, StoreResult, StoreTx, StoredReply, Waiting,
};
use uuid::Uuid;

use crate::backend::{Arg, Backend, SqlTx, Statements};
use crate::paging::to_i64;
use crate::reads::{DEVICE, configuration_with_body};
use crate::rows::{
    Columns, active_device_from_row, code_columns, code_from_row, code_state_from_row,
    config_columns, config_row_from_row, device_from_row, get, get_hash, get_opt_ts, get_opt_u32,
    get_opt_u64, get_ts, get_u64, license_columns, license_from_row, license_state_from_row,
    revision_columns, revision_from_row,
};
use crate::{line, rollouts};

// The reads of admin commands that decide on a row PostgreSQL must lock and SQLite need not
// (its write transaction holds the database's write lock). The statement is written once; each
// backend gives its locking clause (`""` on SQLite) for its `Backend` constant.

/// `(org id, code id)` → the code's state (`rows::code_state_from_row`).
macro_rules! code_state_for_revocation {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            $crate::rows::code_state_columns!(),
            " FROM codes WHERE org_id = $1 AND id = $2",
            $lock
        )
    };
}

/// `(org id, config id)` → the configuration's revision and name.
macro_rules! config_revision_for_edit {
    ($lock:literal) => {
        concat!(
            "SELECT revision, name FROM configurations WHERE org_id = $1 AND id = $2",
            $lock
        )
    };
}

/// `(org id, config id)` → how many active devices are assigned the configuration, and its
/// name.
macro_rules! config_devices_for_delete {
    ($lock:literal) => {
        concat!(
            "SELECT (SELECT COUNT(*) FROM devices d \
             WHERE d.config_id = c.id AND d.ended_at IS NULL), c.name \
             FROM configurations c WHERE c.org_id = $1 AND c.id = $2",
            $lock
        )
    };
}

/// `()` → every operator token not revoked (`operator_token_from_row`), oldest first.
macro_rules! operator_tokens_for_revocation {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            $crate::writes::operator_token_columns!(),
            " FROM operator_tokens WHERE revoked_at IS NULL ORDER BY created_at, id",
            $lock
        )
    };
}

/// `(org id)` → the organization's pinned configuration, its row locked (the lock clause) so
/// that a configuration being deleted cannot be pinned meanwhile.
macro_rules! pinned_configuration_for_delete {
    ($lock:literal) => {
        concat!(
            "SELECT pinned_configuration_id FROM organizations WHERE id = $1",
            $lock
        )
    };
}

/// `(org id)` → the configuration new devices get: the pinned one, else the most recently
/// created (a primary-key lookup, or the newest by `configurations_by_org`: no sort).
pub(crate) const CONFIGURATION_FOR_NEW_DEVICES: &str = "SELECT id, org_id, name, revision, body \
     FROM configurations WHERE org_id = $1 AND id = COALESCE(\
     (SELECT pinned_configuration_id FROM organizations WHERE id = $1), \
     (SELECT id FROM configurations WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1))";

/// `(org id)` → the organization's row, locked against other quota checks of the organization
/// (`FOR NO KEY UPDATE`: it does not wait for, nor block, the foreign-key checks of inserts
/// that refer to the organization, such as a pairing's).
macro_rules! organization_for_quota {
    ($lock:literal) => {
        concat!("SELECT 1 FROM organizations WHERE id = $1", $lock)
    };
}

/// The columns `operator_token_from_row` reads.
macro_rules! operator_token_columns {
    () => {
        "id, label, source, created_at, last_used_at, expires_at, token_hash"
    };
}

pub(crate) use {
    code_state_for_revocation, config_devices_for_delete, config_revision_for_edit,
    operator_token_columns, operator_tokens_for_revocation, organization_for_quota,
    pinned_configuration_for_delete,
};

/// An operator token's row (`operator_token_columns`), its hash included.
pub(crate) fn operator_token_from_row(row: &impl Columns) -> StoreResult<OperatorTokenRow> {
    let source: String = get(row, 2)?;
    Ok(OperatorTokenRow {
        info: OperatorTokenInfo {
            id: OperatorTokenId(get(row, 0)?),
            label: get(row, 1)?,
            source: TokenSource::parse(&source)
                .ok_or_else(|| StoreError::Other(format!("unknown token source {source:?}")))?,
            created_at: get_ts(row, 3)?,
            last_used_at: get_opt_ts(row, 4)?,
            expires_at: get_opt_ts(row, 5)?,
        },
        hash: get_hash(row, 6)?,
    })
}

/// `(org id, limit[, now])` → how many of what the quota counts, up to the limit.
fn quota_count_statement(quota: Quota) -> &'static str {
    match quota {
        Quota::Configurations => {
            "SELECT count(*) FROM (SELECT 1 FROM configurations WHERE org_id = $1 LIMIT $2) AS q"
        }
        Quota::Keys => {
            "SELECT count(*) FROM (SELECT 1 FROM org_keys WHERE org_id = $1 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3) LIMIT $2) AS q"
        }
        Quota::ActiveCodes => {
            "SELECT count(*) FROM (SELECT 1 FROM codes WHERE org_id = $1 \
             AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $3 \
             AND (max_uses IS NULL OR uses < max_uses) LIMIT $2) AS q"
        }
    }
}

#[async_trait]
impl<B: Backend> StoreTx for SqlTx<B> {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(B::map_error)
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        self.tx.rollback().await.map_err(B::map_error)
    }

    async fn insert_audit(&mut self, entries: &[NewAudit]) -> StoreResult<()> {
        B::insert_audit(self, entries).await
    }

    async fn publish(&mut self, change: &Change) -> StoreResult<()> {
        B::publish(self, change).await
    }

    async fn lock_licenses(&mut self, ids: &[LicenseId]) -> StoreResult<Vec<LicenseState>> {
        self.tx
            .read_all(
                B::LOCK_LICENSES,
                &[Arg::ids(ids, |id| id.0)],
                license_state_from_row,
            )
            .await
    }

    async fn active_devices(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<ActiveDevice>> {
        self.tx
            .read_all(
                B::ACTIVE_DEVICES,
                &[Arg::ids(ids, |id| id.0)],
                active_device_from_row,
            )
            .await
    }

    async fn end_devices(
        &mut self,
        ids: &[DeviceId],
        reason: PairingEnd,
        now: Timestamp,
    ) -> StoreResult<Vec<EndedDevice>> {
        let rows = self
            .tx
            .fetch_all(
                B::END_DEVICES,
                &[
                    now.0.into(),
                    reason.reason_column().into(),
                    Arg::ids(ids, |id| id.0),
                    reason.cause_column().into(),
                ],
            )
            .await?;
        let ended = rows
            .iter()
            .map(|row| {
                Ok(EndedDevice {
                    device_id: DeviceId(get(row, 0)?),
                    org_id: OrgId(get(row, 1)?),
                    license_id: LicenseId(get(row, 2)?),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        if !ended.is_empty() {
            let ids = [Arg::ids(&ended, |device| device.device_id.0)];
            self.tx.execute(B::RELEASE_LICENSES, &ids).await?;
            self.tx.execute(B::RECORD_ENDED_PAIRINGS, &ids).await?;
            if reason != PairingEnd::Replaced {
                // A device that ends otherwise than by its replacement has nothing left for a
                // replacement code to move: such a code is revoked, its reservation released.
                let reserved = self
                    .tx
                    .read_all(
                        B::REVOKE_REPLACEMENT_CODES,
                        &[now.0.into(), Arg::ids(&ended, |device| device.device_id.0)],
                        |row| Ok(LicenseId(get(row, 0)?)),
                    )
                    .await?;
                for license in reserved {
                    self.tx
                        .execute(
                            "UPDATE licenses SET reserved_by = NULL, reserved_until = NULL \
                             WHERE id = $1",
                            &[license.0.into()],
                        )
                        .await?;
                }
            }
        }
        Ok(ended)
    }

    async fn config_rows(&mut self, ids: &[ConfigId]) -> StoreResult<Vec<ConfigRow>> {
        self.tx
            .read_all(
                B::CONFIG_ROWS,
                &[Arg::ids(ids, |id| id.0)],
                config_row_from_row,
            )
            .await
    }

    async fn enqueue_webhook_event(&mut self, event: &WebhookEvent) -> StoreResult<()> {
        crate::webhooks::enqueue(&mut *self.tx, event, None).await
    }

    async fn leave_line(&mut self, org_id: OrgId, tickets: &[i64]) -> StoreResult<Vec<Waiting>> {
        line::leave(&mut *self.tx, org_id, tickets).await
    }

    async fn revision_rows(&mut self, wanted: &[(ConfigId, u64)]) -> StoreResult<Vec<ConfigRow>> {
        rollouts::revision_rows(&mut *self.tx, wanted).await
    }

    async fn configuration_for_new_devices(
        &mut self,
        org_id: OrgId,
    ) -> StoreResult<Option<ConfigRow>> {
        self.tx
            .read_optional(
                CONFIGURATION_FOR_NEW_DEVICES,
                &[org_id.0.into()],
                config_row_from_row,
            )
            .await
    }
}

#[async_trait]
impl<B: Backend> PairingTx for SqlTx<B> {
    async fn carry_over(&mut self, replacements: &[(DeviceId, DeviceId)]) -> StoreResult<()> {
        // One statement per replacement: replacements are rare, one admin action each.
        for (new, old) in replacements {
            self.tx
                .execute(
                    "UPDATE devices SET admin_name = (SELECT admin_name FROM devices WHERE id = $2), \
                     notes = (SELECT notes FROM devices WHERE id = $2), \
                     staged_revision = (SELECT staged_revision FROM devices WHERE id = $2) \
                     WHERE id = $1",
                    &[new.0.into(), old.0.into()],
                )
                .await?;
        }
        Ok(())
    }

    async fn lock_codes(&mut self, ids: &[CodeId]) -> StoreResult<Vec<CodeState>> {
        self.tx
            .read_all(
                B::LOCK_CODES,
                &[Arg::ids(ids, |id| id.0)],
                code_state_from_row,
            )
            .await
    }

    async fn active_devices_by_installation(
        &mut self,
        ids: &[InstallationId],
    ) -> StoreResult<Vec<ActiveDevice>> {
        self.tx
            .read_all(
                B::ACTIVE_DEVICES_BY_INSTALLATION,
                &[Arg::ids(ids, |id| id.0)],
                active_device_from_row,
            )
            .await
    }

    async fn claim_free_licenses(
        &mut self,
        org_id: OrgId,
        count: u32,
        now: Timestamp,
        claim: Claim,
    ) -> StoreResult<Vec<FreeLicense>> {
        B::claim_free_licenses(self, org_id, count, now, claim).await
    }

    async fn join_line(
        &mut self,
        org_id: OrgId,
        waiting: &[NewWaiting],
        now: Timestamp,
    ) -> StoreResult<Vec<(i64, u64)>> {
        line::join(&mut *self.tx, org_id, waiting, now).await
    }

    async fn waiting_line(&mut self, org_id: OrgId, limit: u32) -> StoreResult<Vec<Waiting>> {
        self.tx
            .read_all(
                B::WAITING_LINE,
                &[org_id.0.into(), i64::from(limit).into()],
                line::waiting_from_row,
            )
            .await
    }

    async fn consume_single_use_codes(
        &mut self,
        uses: &[(CodeId, DeviceId)],
        now: Timestamp,
    ) -> StoreResult<u64> {
        B::consume_single_use_codes(self, uses, now).await
    }

    async fn assign_licenses(
        &mut self,
        grants: &[LicenseGrant],
        now: Timestamp,
    ) -> StoreResult<u64> {
        B::assign_licenses(self, grants, now).await
    }

    async fn insert_devices(
        &mut self,
        org_id: OrgId,
        now: Timestamp,
        devices: &[NewDevice],
    ) -> StoreResult<u64> {
        B::insert_devices(self, org_id, now, devices).await
    }

    async fn count_code_uses(&mut self, uses: &[(CodeId, u32)], now: Timestamp) -> StoreResult<()> {
        B::count_code_uses(self, uses, now).await
    }

    async fn touch_devices(&mut self, touches: &[DeviceTouch], now: Timestamp) -> StoreResult<()> {
        B::touch_devices(self, touches, now).await
    }

    async fn set_offline(
        &mut self,
        offline: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> StoreResult<()> {
        B::set_offline(self, offline, now).await
    }

    async fn ack_targets(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<AckTarget>> {
        let read = |row: &_| {
            Ok(AckTarget {
                device_id: DeviceId(get(row, 0)?),
                config_id: get::<Option<Uuid>, _>(row, 1)?.map(ConfigId),
                config_revision: get_opt_u64(row, 2)?,
                applied_config_id: get::<Option<Uuid>, _>(row, 3)?.map(ConfigId),
                applied_revision: get_opt_u64(row, 4)?,
                ack_status: get::<Option<String>, _>(row, 5)?
                    .and_then(|status| AckStatus::parse(&status)),
                ack_reason: get(row, 6)?,
                device_name: get(row, 7)?,
                config_name: get(row, 8)?,
            })
        };
        self.tx
            .read_all(B::ACK_TARGETS, &[Arg::ids(ids, |id| id.0)], read)
            .await
    }

    async fn write_acks(&mut self, acks: &[AckWrite], now: Timestamp) -> StoreResult<()> {
        B::write_acks(self, acks, now).await
    }
}

#[async_trait]
impl<B: Backend> AdminTx for SqlTx<B> {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)",
                &[
                    org.id.0.into(),
                    org.name.as_str().into(),
                    org.created_at.0.into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn insert_operator_token(
        &mut self,
        token: &OperatorTokenInfo,
        hash: &SecretHash,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO operator_tokens \
                 (token_hash, id, label, source, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    hash.0.as_slice().into(),
                    token.id.0.into(),
                    token.label.as_str().into(),
                    token.source.as_str().into(),
                    token.created_at.0.into(),
                    token.expires_at.map(|at| at.0).into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn lock_operator_tokens(&mut self) -> StoreResult<Vec<OperatorTokenRow>> {
        self.tx
            .read_all(
                B::OPERATOR_TOKENS_FOR_REVOCATION,
                &[],
                operator_token_from_row,
            )
            .await
    }

    async fn operator_token_revoked(&mut self, hash: &SecretHash) -> StoreResult<bool> {
        let row = self
            .tx
            .fetch_optional(
                "SELECT 1 FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NOT NULL",
                &[hash.0.as_slice().into()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn revoke_operator_tokens(
        &mut self,
        ids: &[OperatorTokenId],
        now: Timestamp,
    ) -> StoreResult<()> {
        for id in ids {
            self.tx
                .execute(
                    "UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                     WHERE id = $2",
                    &[now.0.into(), id.0.into()],
                )
                .await?;
        }
        Ok(())
    }

    async fn count_toward_quota(
        &mut self,
        org_id: OrgId,
        quota: Quota,
        now: Timestamp,
        limit: u64,
    ) -> StoreResult<u64> {
        self.tx
            .fetch_optional(B::ORGANIZATION_FOR_QUOTA, &[org_id.0.into()])
            .await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut args = vec![org_id.0.into(), limit.into()];
        if quota != Quota::Configurations {
            args.push(now.0.into());
        }
        let row = self
            .tx
            .fetch_one(quota_count_statement(quota), &args)
            .await?;
        get_u64(&row, 0)
    }

    async fn insert_org_key(&mut self, key: &OrgKeyInfo, hash: &SecretHash) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO org_keys (id, org_id, name, key_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    key.id.0.into(),
                    key.organization_id.0.into(),
                    key.name.as_str().into(),
                    hash.0.as_slice().into(),
                    key.created_at.0.into(),
                    key.expires_at.map(|at| at.0).into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn revoke_org_key(
        &mut self,
        org_id: OrgId,
        key_id: KeyId,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        self.tx
            .read_optional(
                "UPDATE org_keys SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE org_id = $2 AND id = $3 RETURNING name",
                &[now.0.into(), org_id.0.into(), key_id.0.into()],
                |row| get(row, 0),
            )
            .await
    }

    async fn insert_licenses(
        &mut self,
        org_id: OrgId,
        ids: &[LicenseId],
        purchased_at: Timestamp,
        valid_until: Option<Timestamp>,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                B::INSERT_LICENSES,
                &[
                    org_id.0.into(),
                    purchased_at.0.into(),
                    valid_until.map(|until| until.0).into(),
                    Arg::ids(ids, |id| id.0),
                ],
            )
            .await?;
        B::licenses_inserted(self, ids.len()).await
    }

    async fn set_license_valid_until(
        &mut self,
        org_id: OrgId,
        id: LicenseId,
        valid_until: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<Option<License>> {
        self.tx
            .read_optional(
                concat!(
                    "UPDATE licenses SET valid_until = $4 WHERE org_id = $2 AND id = $3 \
                     RETURNING ",
                    license_columns!()
                ),
                &[
                    now.0.into(),
                    org_id.0.into(),
                    id.0.into(),
                    valid_until.map(|until| until.0).into(),
                ],
                license_from_row,
            )
            .await
    }

    async fn insert_code(&mut self, code: &NewCode) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO codes (id, org_id, kind, code_hash, sealed_secret, label, \
                 license_id, created_at, expires_at, max_uses, configuration_id, replaces_device) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    code.id.0.into(),
                    code.org_id.0.into(),
                    code.kind.as_str().into(),
                    code.code_hash.0.as_slice().into(),
                    code.sealed_secret.as_deref().into(),
                    code.label.as_deref().into(),
                    code.license_id.map(|license| license.0).into(),
                    code.created_at.0.into(),
                    code.expires_at.0.into(),
                    code.max_uses.map(i64::from).into(),
                    code.configuration_id.map(|config| config.0).into(),
                    code.replaces_device.map(|device| device.0).into(),
                ],
            )
            .await?;
        if let Some(license_id) = code.license_id {
            self.tx
                .execute(
                    "UPDATE licenses SET reserved_by = $1, reserved_until = $2 WHERE id = $3",
                    &[
                        code.id.0.into(),
                        code.expires_at.0.into(),
                        license_id.0.into(),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn revoke_code(
        &mut self,
        org_id: OrgId,
        id: CodeId,
        now: Timestamp,
    ) -> StoreResult<Option<RevokedCode>> {
        let row = self
            .tx
            .fetch_optional(
                B::CODE_STATE_FOR_REVOCATION,
                &[org_id.0.into(), id.0.into()],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let state = code_state_from_row(&row)?;
        if state.revoked_at.is_none() {
            self.tx
                .execute(
                    "UPDATE codes SET revoked_at = $1 WHERE id = $2",
                    &[now.0.into(), id.0.into()],
                )
                .await?;
            self.tx
                .execute(
                    "UPDATE licenses SET reserved_by = NULL, reserved_until = NULL \
                     WHERE reserved_by = $1",
                    &[id.0.into()],
                )
                .await?;
        }
        let row = self
            .tx
            .fetch_one(
                concat!("SELECT ", code_columns!(), " FROM codes WHERE id = $1"),
                &[id.0.into()],
            )
            .await?;
        Ok(Some(RevokedCode {
            already_revoked: state.revoked_at.is_some(),
            code: code_from_row(&row, now)?,
        }))
    }

    async fn revoke_single_use_codes_of(
        &mut self,
        license_id: LicenseId,
        now: Timestamp,
    ) -> StoreResult<Vec<CodeId>> {
        let revoked = self
            .tx
            .read_all(
                "UPDATE codes SET revoked_at = $1 WHERE license_id = $2 AND kind = 'single_use' \
                 AND revoked_at IS NULL AND used_at IS NULL RETURNING id",
                &[now.0.into(), license_id.0.into()],
                |row| Ok(CodeId(get(row, 0)?)),
            )
            .await?;
        self.tx
            .execute(
                "UPDATE licenses SET reserved_by = NULL, reserved_until = NULL WHERE id = $1",
                &[license_id.0.into()],
            )
            .await?;
        Ok(revoked)
    }

    async fn insert_configuration(&mut self, row: &ConfigRow, now: Timestamp) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO configurations (id, org_id, name, body, revision, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                &[
                    row.id.0.into(),
                    row.org_id.0.into(),
                    row.name.as_str().into(),
                    row.body.as_str().into(),
                    to_i64(row.revision).into(),
                    now.0.into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn update_configuration(
        &mut self,
        org_id: OrgId,
        id: ConfigId,
        edit: &ConfigEdit,
        now: Timestamp,
    ) -> StoreResult<ConfigUpdate> {
        let current = self
            .tx
            .fetch_optional(B::CONFIG_REVISION_FOR_EDIT, &[org_id.0.into(), id.0.into()])
            .await?;
        let Some(current) = current else {
            return Ok(ConfigUpdate::NotFound);
        };
        let previous_name: String = get(&current, 1)?;
        // The latest revision: a staged rollout's in progress is newer than the configuration's.
        let staged = self
            .tx
            .fetch_optional(
                "SELECT revision FROM configuration_rollouts WHERE config_id = $1 \
                 AND state IN ('running', 'halted')",
                &[id.0.into()],
            )
            .await?
            .map(|row| get_u64(&row, 0))
            .transpose()?;
        let revision = get_u64(&current, 0)?.max(staged.unwrap_or(0));
        if edit
            .if_revision
            .is_some_and(|expected| expected != revision)
        {
            return Ok(ConfigUpdate::RevisionMismatch(revision));
        }
        self.tx
            .execute(
                "UPDATE configurations SET name = COALESCE($1, name), body = COALESCE($2, body), \
                 revision = $3, updated_at = $4 WHERE id = $5",
                &[
                    edit.name.as_deref().into(),
                    edit.body.as_deref().into(),
                    to_i64(revision + 1).into(),
                    now.0.into(),
                    id.0.into(),
                ],
            )
            .await?;
        let row = self
            .tx
            .fetch_one(
                concat!(
                    "SELECT ",
                    config_columns!(),
                    ", c.body FROM configurations c WHERE c.id = $1"
                ),
                &[id.0.into()],
            )
            .await?;
        Ok(ConfigUpdate::Updated {
            configuration: configuration_with_body(&row)?,
            previous_name,
        })
    }

    async fn delete_configuration(
        &mut self,
        org_id: OrgId,
        id: ConfigId,
    ) -> StoreResult<ConfigDelete> {
        let row = self
            .tx
            .fetch_optional(
                B::CONFIG_DEVICES_FOR_DELETE,
                &[org_id.0.into(), id.0.into()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(ConfigDelete::NotFound);
        };
        let assigned = get_u64(&row, 0)?;
        if assigned > 0 {
            return Ok(ConfigDelete::InUse(assigned));
        }
        let name = get(&row, 1)?;
        for statement in [
            "DELETE FROM configuration_rollouts WHERE config_id = $1",
            "DELETE FROM configuration_revisions WHERE config_id = $1",
        ] {
            self.tx.execute(statement, &[id.0.into()]).await?;
        }
        // Codes that can no longer pair anyone may still name it (the command refuses while a
        // usable one does).
        self.tx
            .execute(
                "UPDATE codes SET configuration_id = NULL WHERE configuration_id = $1",
                &[id.0.into()],
            )
            .await?;
        self.tx
            .execute("DELETE FROM configurations WHERE id = $1", &[id.0.into()])
            .await?;
        Ok(ConfigDelete::Deleted { name })
    }

    async fn inactive_release(&mut self, org_id: OrgId) -> StoreResult<Option<u32>> {
        let row = self
            .tx
            .fetch_optional(
                "SELECT release_inactive_after_days FROM organizations WHERE id = $1",
                &[org_id.0.into()],
            )
            .await?;
        match row {
            Some(row) => get_opt_u32(&row, 0),
            None => Ok(None),
        }
    }

    async fn set_inactive_release(&mut self, org_id: OrgId, days: Option<u32>) -> StoreResult<()> {
        self.tx
            .execute(
                "UPDATE organizations SET release_inactive_after_days = $2 WHERE id = $1",
                &[org_id.0.into(), days.map(i64::from).into()],
            )
            .await?;
        Ok(())
    }

    async fn device_presence(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<DevicePresence>> {
        self.tx
            .read_all(B::DEVICE_PRESENCE, &[Arg::ids(ids, |id| id.0)], |row| {
                Ok(DevicePresence {
                    device_id: DeviceId(get(row, 0)?),
                    online: get::<Option<i64>, _>(row, 1)?.is_some(),
                    last_seen: get_ts(row, 2)?,
                })
            })
            .await
    }

    async fn pinned_configuration(&mut self, org_id: OrgId) -> StoreResult<Option<ConfigId>> {
        let row = self
            .tx
            .fetch_optional(B::PINNED_CONFIGURATION_FOR_DELETE, &[org_id.0.into()])
            .await?;
        Ok(match row {
            Some(row) => get::<Option<Uuid>, _>(&row, 0)?.map(ConfigId),
            None => None,
        })
    }

    async fn set_pinned_configuration(
        &mut self,
        org_id: OrgId,
        config_id: Option<ConfigId>,
    ) -> StoreResult<bool> {
        let changed = match config_id {
            Some(config_id) => {
                self.tx
                    .execute(
                        "UPDATE organizations SET pinned_configuration_id = $2 WHERE id = $1 \
                         AND EXISTS (SELECT 1 FROM configurations WHERE id = $2 AND org_id = $1)",
                        &[org_id.0.into(), config_id.0.into()],
                    )
                    .await?
            }
            None => {
                self.tx
                    .execute(
                        "UPDATE organizations SET pinned_configuration_id = NULL WHERE id = $1",
                        &[org_id.0.into()],
                    )
                    .await?
            }
        };
        Ok(changed == 1)
    }

    async fn codes_carrying(&mut self, config_id: ConfigId, now: Timestamp) -> StoreResult<u64> {
        let row = self
            .tx
            .fetch_one(
                "SELECT COUNT(*) FROM codes WHERE configuration_id = $1 AND revoked_at IS NULL \
                 AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)",
                &[config_id.0.into(), now.0.into()],
            )
            .await?;
        get_u64(&row, 0)
    }

    async fn expiring_licenses(
        &mut self,
        org_id: OrgId,
        after: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> StoreResult<(u64, Vec<(LicenseId, Timestamp, Option<DeviceId>)>)> {
        crate::webhooks::expiring_licenses(&mut *self.tx, org_id, after, until, limit).await
    }

    async fn webhooks_receiving(&mut self, org_id: OrgId, kind: &str) -> StoreResult<Vec<Webhook>> {
        crate::webhooks::receiving(&mut *self.tx, org_id, kind).await
    }

    async fn enqueue_webhook_delivery(
        &mut self,
        webhook_id: WebhookId,
        event: &WebhookEvent,
    ) -> StoreResult<()> {
        crate::webhooks::enqueue(&mut *self.tx, event, Some(webhook_id)).await
    }

    async fn count_webhooks(&mut self, org_id: OrgId) -> StoreResult<u64> {
        crate::webhooks::count(&mut *self.tx, org_id).await
    }

    async fn insert_webhook(&mut self, webhook: &Webhook, sealed_secret: &[u8]) -> StoreResult<()> {
        crate::webhooks::insert(&mut *self.tx, webhook, sealed_secret).await
    }

    async fn delete_webhook(
        &mut self,
        org_id: OrgId,
        id: WebhookId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        crate::webhooks::delete(&mut *self.tx, org_id, id, now).await
    }

    async fn replay_delivery(
        &mut self,
        org_id: OrgId,
        webhook_id: WebhookId,
        delivery_id: i64,
        now: Timestamp,
    ) -> StoreResult<bool> {
        crate::webhooks::replay(&mut *self.tx, org_id, webhook_id, delivery_id, now).await
    }

    async fn lock_configuration(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Option<LockedConfiguration>> {
        rollouts::lock::<B>(&mut *self.tx, org_id, config_id).await
    }

    async fn insert_rollout(&mut self, org_id: OrgId, rollout: &StagedRollout) -> StoreResult<()> {
        rollouts::insert(&mut *self.tx, org_id, rollout).await
    }

    async fn set_rollout_state(
        &mut self,
        id: RolloutId,
        state: RolloutState,
        at: Timestamp,
        by: &str,
        failed_devices: Option<u64>,
    ) -> StoreResult<()> {
        rollouts::set_state(&mut *self.tx, id, state, at, by, failed_devices).await
    }

    async fn assigned_devices(&mut self, config_id: ConfigId) -> StoreResult<u64> {
        rollouts::assigned_devices(&mut *self.tx, config_id).await
    }

    async fn stage_devices(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        stable: u64,
        revision: u64,
        choice: StageChoice<'_>,
    ) -> StoreResult<Vec<DeviceId>> {
        rollouts::stage::<B>(&mut *self.tx, org_id, config_id, stable, revision, choice).await
    }

    async fn failed_staged_devices(
        &mut self,
        config_id: ConfigId,
        revision: u64,
    ) -> StoreResult<u64> {
        rollouts::failed_staged(&mut *self.tx, config_id, revision).await
    }

    async fn promote_revision(
        &mut self,
        config_id: ConfigId,
        revision: u64,
        now: Timestamp,
    ) -> StoreResult<Option<ConfigRow>> {
        rollouts::promote(&mut *self.tx, config_id, revision, now).await
    }

    async fn insert_revision(&mut self, revision: &NewRevision) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO configuration_revisions (config_id, revision, name, body, bytes, \
                 saved_at, saved_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    revision.config_id.0.into(),
                    to_i64(revision.revision).into(),
                    revision.name.as_str().into(),
                    revision.body.as_str().into(),
                    to_i64(revision.body.len() as u64).into(),
                    revision.saved_at.0.into(),
                    revision.saved_by.as_str().into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn saved_revision(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        revision: u64,
    ) -> StoreResult<Option<ConfigurationRevision>> {
        read_revision(&mut *self.tx, org_id, config_id, revision).await
    }

    async fn assign_configuration(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        device_ids: &[DeviceId],
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>> {
        self.tx
            .read_all(
                B::ASSIGN_CONFIGURATION,
                &[
                    config_id.0.into(),
                    now.0.into(),
                    org_id.0.into(),
                    Arg::ids(device_ids, |id| id.0),
                ],
                |row| Ok(DeviceId(get(row, 0)?)),
            )
            .await
    }

    async fn assign_waiting_devices(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>> {
        self.tx
            .read_all(
                "UPDATE devices SET config_id = $1, assigned_at = $2 \
                 WHERE org_id = $3 AND ended_at IS NULL AND config_id IS NULL RETURNING id",
                &[config_id.0.into(), now.0.into(), org_id.0.into()],
                |row| Ok(DeviceId(get(row, 0)?)),
            )
            .await
    }

    async fn matching_devices(
        &mut self,
        org_id: OrgId,
        filter: &FleetFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>> {
        let ids = crate::fleet::matching_ids(self, org_id, FleetRows::Devices, filter, now).await?;
        Ok(ids.into_iter().map(DeviceId).collect())
    }

    async fn matching_licenses(
        &mut self,
        org_id: OrgId,
        filter: &FleetFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<LicenseId>> {
        let ids =
            crate::fleet::matching_ids(self, org_id, FleetRows::Licenses, filter, now).await?;
        Ok(ids.into_iter().map(LicenseId).collect())
    }

    async fn extend_licenses(
        &mut self,
        org_id: OrgId,
        ids: &[LicenseId],
        valid_until: Timestamp,
    ) -> StoreResult<Vec<(LicenseId, Option<DeviceId>)>> {
        self.tx
            .read_all(
                B::EXTEND_LICENSES,
                &[
                    valid_until.0.into(),
                    org_id.0.into(),
                    Arg::ids(ids, |id| id.0),
                ],
                |row| {
                    Ok((
                        LicenseId(get(row, 0)?),
                        get::<Option<Uuid>, _>(row, 1)?.map(DeviceId),
                    ))
                },
            )
            .await
    }

    async fn edit_device(
        &mut self,
        org_id: OrgId,
        id: DeviceId,
        edit: &DeviceEdit,
    ) -> StoreResult<bool> {
        // `$3`/`$5` say whether a field changes (0 or 1), `$4`/`$6` what it becomes (NULL:
        // emptied); one statement whatever the edit.
        let name = edit.name.change();
        let notes = edit.notes.change();
        let changed = self
            .tx
            .execute(
                "UPDATE devices SET \
                 admin_name = CASE WHEN $3 = 1 THEN $4 ELSE admin_name END, \
                 notes = CASE WHEN $5 = 1 THEN $6 ELSE notes END \
                 WHERE org_id = $1 AND id = $2 AND ended_at IS NULL",
                &[
                    org_id.0.into(),
                    id.0.into(),
                    i64::from(name.is_some()).into(),
                    Arg::Text(name.flatten().map(String::as_str)),
                    i64::from(notes.is_some()).into(),
                    Arg::Text(notes.flatten().map(String::as_str)),
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn device(&mut self, org_id: OrgId, id: DeviceId) -> StoreResult<Option<Device>> {
        self.tx
            .read_optional(DEVICE, &[org_id.0.into(), id.0.into()], device_from_row)
            .await
    }

    async fn idempotent_reply(
        &mut self,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<StoredReply>> {
        let read = |row: &_| {
            let fingerprint: Vec<u8> = get(row, 0)?;
            Ok(StoredReply {
                fingerprint: fingerprint
                    .try_into()
                    .map_err(|_| StoreError::Other("bad fingerprint".into()))?,
                sealed_reply: get(row, 1)?,
            })
        };
        self.tx
            .read_optional(
                "SELECT fingerprint, sealed_reply FROM idempotency_keys \
                 WHERE scope = $1 AND key = $2",
                &[scope.into(), key.into()],
                read,
            )
            .await
    }

    async fn store_idempotent_reply(
        &mut self,
        scope: &str,
        key: &str,
        reply: &StoredReply,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, sealed_reply, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    scope.into(),
                    key.into(),
                    reply.fingerprint.as_slice().into(),
                    reply.sealed_reply.as_slice().into(),
                    now.0.into(),
                ],
            )
            .await?;
        Ok(())
    }
}

/// One revision of the organization's configuration, with its body, on `statements` (a reader
/// or a transaction).
pub(crate) async fn read_revision(
    statements: &mut impl Statements,
    org_id: OrgId,
    config_id: ConfigId,
    revision: u64,
) -> StoreResult<Option<ConfigurationRevision>> {
    statements
        .read_optional(
            concat!(
                "SELECT ",
                revision_columns!(),
                ", r.body FROM configuration_revisions r JOIN configurations c \
                 ON c.id = r.config_id WHERE c.org_id = $1 AND r.config_id = $2 \
                 AND r.revision = $3"
            ),
            &[org_id.0.into(), config_id.0.into(), to_i64(revision).into()],
            |row| revision_from_row(row, true),
        )
        .await
}
