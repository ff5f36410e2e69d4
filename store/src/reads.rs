//! The reads outside transactions, written once for both backends: [`DeviceReads`] (routing a
//! pairing or a reconnection, re-reading devices for pushes) and [`AdminReads`] (what the admin
//! API shows). They run on the store's readers.

use async_trait::async_trait;
use engine::ids::WebhookId;
use engine::ids::{
    CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OperatorTokenId, OrgId, Timestamp,
};
use engine::model::{
    AuditEntry, AuditFilter, CodeInfo, CodeKind, Configuration, ConfigurationRevision, CountedPage,
    Device, FleetQuery, License, LicenseStatus, LicenseSummary, LicenseWithDevice,
    OperatorTokenInfo, OrgKeyInfo, Organization, Page, PageRequest, StagedRollout, WaitingDevice,
};
use engine::model::{Webhook, WebhookDelivery};
use engine::secrets::SecretHash;
use engine::store::{
    AdminReads, CodeRoute, ConfigRow, DeviceReads, DeviceState, EndedPairing, InstallationRoute,
    RevisionReports, StoreError, StoreResult, TokenOwner,
};

use crate::backend::{Arg, Backend, SqlStore, Statements as _};
use crate::paging::{page_of, page_rows, uuid_cursor};
use crate::rows::{
    Columns, code_columns, code_from_row, config_columns, config_row_from_row,
    configuration_from_row, device_from_row, device_state_from_row, get, get_hash, get_opt_ts,
    get_opt_u32, get_ts, get_u64, license_columns, license_from_row, license_status, pairing_end,
    revision_columns, revision_from_row, revision_reports_from_row, select_devices,
};
use crate::writes::pinned_configuration_for_delete;

/// One active device of an organization, as the admin API shows it (`$1` organization, `$2`
/// device). Also read inside a transaction (`AdminTx::device`).
pub(crate) const DEVICE: &str = concat!(
    select_devices!(),
    " WHERE d.org_id = $1 AND d.id = $2 AND d.ended_at IS NULL"
);

#[async_trait]
impl<B: Backend> DeviceReads for SqlStore<B> {
    async fn find_code(&self, hash: &SecretHash) -> StoreResult<Option<CodeRoute>> {
        let read = |row: &_| {
            Ok(CodeRoute {
                code_id: CodeId(get(row, 0)?),
                org_id: OrgId(get(row, 1)?),
            })
        };
        self.reader()
            .await?
            .read_optional(
                "SELECT id, org_id FROM codes WHERE code_hash = $1",
                &[hash.0.as_slice().into()],
                read,
            )
            .await
    }

    async fn find_installation(
        &self,
        installation_id: InstallationId,
    ) -> StoreResult<Option<InstallationRoute>> {
        let read = |row: &_| {
            Ok(InstallationRoute {
                device_id: DeviceId(get(row, 0)?),
                org_id: OrgId(get(row, 1)?),
                credential_hash: get_hash(row, 2)?,
            })
        };
        self.reader()
            .await?
            .read_optional(
                "SELECT id, org_id, credential_hash FROM devices \
                 WHERE installation_id = $1 AND ended_at IS NULL",
                &[installation_id.0.into()],
                read,
            )
            .await
    }

    async fn last_ended_pairing(
        &self,
        installation_id: InstallationId,
    ) -> StoreResult<Option<EndedPairing>> {
        let read = |row: &_| {
            Ok(EndedPairing {
                credential_hash: get_hash(row, 0)?,
                end_reason: pairing_end(get(row, 1)?, get(row, 2)?)?,
            })
        };
        self.reader()
            .await?
            .read_optional(
                "SELECT credential_hash, end_reason, end_cause FROM ended_pairings \
                 WHERE installation_id = $1",
                &[installation_id.0.into()],
                read,
            )
            .await
    }

    async fn device_states(&self, ids: &[DeviceId]) -> StoreResult<Vec<DeviceState>> {
        self.reader()
            .await?
            .read_all(
                B::DEVICE_STATES,
                &[Arg::ids(ids, |id| id.0)],
                device_state_from_row,
            )
            .await
    }

    async fn config_row(&self, id: ConfigId) -> StoreResult<Option<ConfigRow>> {
        self.reader()
            .await?
            .read_optional(
                "SELECT id, org_id, name, revision, body FROM configurations WHERE id = $1",
                &[id.0.into()],
                config_row_from_row,
            )
            .await
    }

    async fn line_tickets(&self, org_id: OrgId) -> StoreResult<Vec<i64>> {
        self.reader()
            .await?
            .read_all(
                "SELECT seq FROM waiting_devices WHERE org_id = $1 ORDER BY seq",
                &[org_id.0.into()],
                |row| get(row, 0),
            )
            .await
    }

    async fn revision_row(&self, id: ConfigId, revision: u64) -> StoreResult<Option<ConfigRow>> {
        let mut reader = self.reader().await?;
        let rows = crate::rollouts::revision_rows(&mut *reader, &[(id, revision)]).await?;
        Ok(rows.into_iter().next())
    }
}

#[async_trait]
impl<B: Backend> AdminReads for SqlStore<B> {
    async fn token_owner(&self, hash: &SecretHash) -> StoreResult<Option<TokenOwner>> {
        let mut reader = self.reader().await?;
        let hash: Arg = hash.0.as_slice().into();
        let operator = reader
            .read_optional(
                "SELECT id, expires_at FROM operator_tokens \
                 WHERE token_hash = $1 AND revoked_at IS NULL",
                std::slice::from_ref(&hash),
                |row| {
                    Ok(TokenOwner::Operator {
                        token_id: OperatorTokenId(get(row, 0)?),
                        expires_at: get_opt_ts(row, 1)?,
                    })
                },
            )
            .await?;
        if operator.is_some() {
            return Ok(operator);
        }
        let read = |row: &_| {
            Ok(TokenOwner::OrgKey {
                org_id: OrgId(get(row, 0)?),
                key_id: KeyId(get(row, 1)?),
                expires_at: get_opt_ts(row, 2)?,
            })
        };
        reader
            .read_optional(
                "SELECT org_id, id, expires_at FROM org_keys \
                 WHERE key_hash = $1 AND revoked_at IS NULL",
                &[hash],
                read,
            )
            .await
    }

    async fn has_operator_token(&self, now: Timestamp) -> StoreResult<bool> {
        let row = self
            .reader()
            .await?
            .fetch_optional(
                "SELECT 1 FROM operator_tokens WHERE revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $1) LIMIT 1",
                &[now.0.into()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorTokenInfo>> {
        let rows = self
            .reader()
            .await?
            .read_all(
                concat!(
                    "SELECT ",
                    crate::writes::operator_token_columns!(),
                    " FROM operator_tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
                ),
                &[],
                crate::writes::operator_token_from_row,
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.info).collect())
    }

    async fn organization(&self, org_id: OrgId) -> StoreResult<Option<Organization>> {
        self.reader()
            .await?
            .read_optional(
                "SELECT id, name, created_at, release_inactive_after_days FROM organizations \
                 WHERE id = $1",
                &[org_id.0.into()],
                organization_from_row,
            )
            .await
    }

    async fn list_organizations(&self, page: &PageRequest) -> StoreResult<Page<Organization>> {
        let limit = page.effective_limit();
        let items = self
            .reader()
            .await?
            .read_all(
                "SELECT id, name, created_at, release_inactive_after_days FROM organizations \
                 WHERE id > $1 ORDER BY id LIMIT $2",
                &[uuid_cursor(page)?.into(), page_rows(limit).into()],
                organization_from_row,
            )
            .await?;
        Ok(page_of(items, limit, |org| org.id.to_string()))
    }

    async fn list_org_keys(&self, org_id: OrgId) -> StoreResult<Vec<OrgKeyInfo>> {
        let read = |row: &_| {
            Ok(OrgKeyInfo {
                id: KeyId(get(row, 0)?),
                organization_id: OrgId(get(row, 1)?),
                name: get(row, 2)?,
                created_at: get_ts(row, 3)?,
                revoked_at: get_opt_ts(row, 4)?,
                last_used_at: get_opt_ts(row, 5)?,
                expires_at: get_opt_ts(row, 6)?,
            })
        };
        self.reader()
            .await?
            .read_all(
                "SELECT id, org_id, name, created_at, revoked_at, last_used_at, expires_at \
                 FROM org_keys \
                 WHERE org_id = $1 ORDER BY id",
                &[org_id.0.into()],
                read,
            )
            .await
    }

    async fn license(
        &self,
        org_id: OrgId,
        id: LicenseId,
        now: Timestamp,
    ) -> StoreResult<Option<License>> {
        self.reader()
            .await?
            .read_optional(
                concat!(
                    "SELECT ",
                    license_columns!(),
                    " FROM licenses WHERE org_id = $2 AND id = $3"
                ),
                &[now.0.into(), org_id.0.into(), id.0.into()],
                license_from_row,
            )
            .await
    }

    async fn fleet(
        &self,
        org_id: OrgId,
        query: &FleetQuery,
        now: Timestamp,
    ) -> StoreResult<CountedPage<LicenseWithDevice>> {
        crate::fleet::read(self, org_id, query, now).await
    }

    async fn license_summary(&self, org_id: OrgId, now: Timestamp) -> StoreResult<LicenseSummary> {
        let rows = self
            .reader()
            .await?
            .fetch_all(
                concat!(
                    "SELECT status, COUNT(*) FROM (SELECT ",
                    license_status!(),
                    " AS status FROM licenses WHERE org_id = $2) AS l GROUP BY status"
                ),
                &[now.0.into(), org_id.0.into()],
            )
            .await?;
        let mut summary = LicenseSummary::default();
        for row in &rows {
            let status: String = get(row, 0)?;
            let count = get_u64(row, 1)?;
            summary.total += count;
            match LicenseStatus::parse(&status) {
                Some(LicenseStatus::Free) => summary.free += count,
                Some(LicenseStatus::Reserved) => summary.reserved += count,
                Some(LicenseStatus::Assigned) => summary.assigned += count,
                Some(LicenseStatus::Expired) => summary.expired += count,
                None => {
                    return Err(StoreError::Other(format!(
                        "unknown license status {status}"
                    )));
                }
            }
        }
        Ok(summary)
    }

    async fn code(
        &self,
        org_id: OrgId,
        id: CodeId,
        now: Timestamp,
    ) -> StoreResult<Option<CodeInfo>> {
        self.reader()
            .await?
            .read_optional(
                concat!(
                    "SELECT ",
                    code_columns!(),
                    " FROM codes WHERE org_id = $1 AND id = $2"
                ),
                &[org_id.0.into(), id.0.into()],
                |row| code_from_row(row, now),
            )
            .await
    }

    async fn sealed_code_secret(&self, org_id: OrgId, id: CodeId) -> StoreResult<Option<Vec<u8>>> {
        let secret = self
            .reader()
            .await?
            .read_optional(
                "SELECT sealed_secret FROM codes WHERE org_id = $1 AND id = $2",
                &[org_id.0.into(), id.0.into()],
                |row| get::<Option<Vec<u8>>, _>(row, 0),
            )
            .await?;
        Ok(secret.flatten())
    }

    async fn list_codes(
        &self,
        org_id: OrgId,
        kind: Option<CodeKind>,
        now: Timestamp,
        page: &PageRequest,
    ) -> StoreResult<Page<CodeInfo>> {
        let limit = page.effective_limit();
        let items = self
            .reader()
            .await?
            .read_all(
                concat!(
                    "SELECT ",
                    code_columns!(),
                    " FROM codes WHERE org_id = $1 AND id > $2 \
                     AND ($3 IS NULL OR kind = $3) ORDER BY id LIMIT $4"
                ),
                &[
                    org_id.0.into(),
                    uuid_cursor(page)?.into(),
                    kind.map(CodeKind::as_str).into(),
                    page_rows(limit).into(),
                ],
                |row| code_from_row(row, now),
            )
            .await?;
        Ok(page_of(items, limit, |code| code.id.to_string()))
    }

    async fn configuration(
        &self,
        org_id: OrgId,
        id: ConfigId,
    ) -> StoreResult<Option<Configuration>> {
        self.reader()
            .await?
            .read_optional(
                concat!(
                    "SELECT ",
                    config_columns!(),
                    ", c.body FROM configurations c WHERE c.org_id = $1 AND c.id = $2"
                ),
                &[org_id.0.into(), id.0.into()],
                configuration_with_body,
            )
            .await
    }

    async fn configuration_reports(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Vec<RevisionReports>> {
        self.reader()
            .await?
            .read_all(
                "SELECT applied_revision, ack_status, \
                 COALESCE(config_id = applied_config_id, false), COUNT(*) \
                 FROM devices WHERE org_id = $1 AND applied_config_id = $2 AND ended_at IS NULL \
                 AND applied_revision IS NOT NULL AND ack_status IS NOT NULL \
                 GROUP BY 1, 2, 3",
                &[org_id.0.into(), config_id.0.into()],
                revision_reports_from_row,
            )
            .await
    }

    async fn has_webhooks(&self, org_id: OrgId) -> StoreResult<bool> {
        let mut reader = self.reader().await?;
        Ok(crate::webhooks::count(&mut *reader, org_id).await? > 0)
    }

    async fn list_webhooks(&self, org_id: OrgId) -> StoreResult<Vec<Webhook>> {
        let mut reader = self.reader().await?;
        crate::webhooks::list(&mut *reader, org_id).await
    }

    async fn list_deliveries(
        &self,
        org_id: OrgId,
        webhook_id: WebhookId,
        page: &PageRequest,
    ) -> StoreResult<Option<Page<WebhookDelivery>>> {
        let mut reader = self.reader().await?;
        crate::webhooks::deliveries(&mut *reader, org_id, webhook_id, page).await
    }

    async fn list_waiting(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<WaitingDevice>> {
        let mut reader = self.reader().await?;
        crate::line::list(&mut *reader, org_id, page).await
    }

    async fn latest_rollout(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Option<StagedRollout>> {
        let mut reader = self.reader().await?;
        crate::rollouts::latest(&mut *reader, org_id, config_id).await
    }

    async fn list_configurations(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<Configuration>> {
        let limit = page.effective_limit();
        let items = self
            .reader()
            .await?
            .read_all(
                concat!(
                    "SELECT ",
                    config_columns!(),
                    " FROM configurations c WHERE c.org_id = $1 AND c.id > $2 \
                     ORDER BY c.id LIMIT $3"
                ),
                &[
                    org_id.0.into(),
                    uuid_cursor(page)?.into(),
                    page_rows(limit).into(),
                ],
                |row| configuration_from_row(row, None),
            )
            .await?;
        Ok(page_of(items, limit, |config| config.id.to_string()))
    }

    async fn new_device_configuration(
        &self,
        org_id: OrgId,
    ) -> StoreResult<(Option<ConfigId>, Option<ConfigRow>)> {
        let mut reader = self.reader().await?;
        // The delete command's read of the pinned configuration, without its lock.
        let pinned = reader
            .fetch_optional(pinned_configuration_for_delete!(""), &[org_id.0.into()])
            .await?;
        let pinned = match pinned {
            Some(row) => get::<Option<uuid::Uuid>, _>(&row, 0)?.map(ConfigId),
            None => None,
        };
        let current = reader
            .read_optional(
                crate::writes::CONFIGURATION_FOR_NEW_DEVICES,
                &[org_id.0.into()],
                config_row_from_row,
            )
            .await?;
        Ok((pinned, current))
    }

    async fn list_revisions(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
        page: &PageRequest,
    ) -> StoreResult<Option<Page<ConfigurationRevision>>> {
        let limit = page.effective_limit();
        // Newest first: the cursor is the last revision seen.
        let before = match &page.after {
            None => i64::MAX,
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| StoreError::InvalidInput("cursor"))?,
        };
        let mut reader = self.reader().await?;
        let exists = reader
            .fetch_optional(
                "SELECT 1 FROM configurations WHERE org_id = $1 AND id = $2",
                &[org_id.0.into(), config_id.0.into()],
            )
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let items = reader
            .read_all(
                concat!(
                    "SELECT ",
                    revision_columns!(),
                    " FROM configuration_revisions r WHERE r.config_id = $1 AND r.revision < $2 \
                     ORDER BY r.revision DESC LIMIT $3"
                ),
                &[config_id.0.into(), before.into(), page_rows(limit).into()],
                |row| revision_from_row(row, false),
            )
            .await?;
        Ok(Some(page_of(items, limit, |revision| {
            revision.revision.to_string()
        })))
    }

    async fn revision(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
        revision: u64,
    ) -> StoreResult<Option<ConfigurationRevision>> {
        let mut reader = self.reader().await?;
        crate::writes::read_revision(&mut *reader, org_id, config_id, revision).await
    }

    async fn device(&self, org_id: OrgId, id: DeviceId) -> StoreResult<Option<Device>> {
        self.reader()
            .await?
            .read_optional(DEVICE, &[org_id.0.into(), id.0.into()], device_from_row)
            .await
    }

    async fn list_audit(
        &self,
        org_id: Option<OrgId>,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        crate::audit::list_audit(self, org_id, filter, page).await
    }
}

fn organization_from_row(row: &impl Columns) -> StoreResult<Organization> {
    Ok(Organization {
        id: OrgId(get(row, 0)?),
        name: get(row, 1)?,
        created_at: get_ts(row, 2)?,
        release_inactive_after_days: get_opt_u32(row, 3)?,
    })
}

/// A configuration from [`config_columns`] followed by its body.
pub(crate) fn configuration_with_body(row: &impl Columns) -> StoreResult<Configuration> {
    let body = get::<Option<String>, _>(row, 8)?;
    configuration_from_row(row, body)
}
