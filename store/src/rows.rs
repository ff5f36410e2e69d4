//! Reading rows the same way on both backends: the column lists that several queries share, and
//! the functions that turn their rows into the engine's types, by position. A column list and
//! the function reading it live together here so that they cannot drift apart between SQLite and
//! PostgreSQL.
//!
//! [`Column`] is implemented for each backend's row type and each column type the stores read;
//! [`Columns`] is all of them, the bound the row functions take. Both are `pub` in this private
//! module because they bound the rows of `backend::Statements`; no other crate can name them.
//!
//! Column lists are macros, not constants, so that statements built from them are
//! `&'static str` (`concat!`), as the statements the backends run must be.

use engine::ids::{
    CodeId, ConfigId, DeviceId, InstallationId, LicenseId, OrgId, RolloutId, Timestamp,
};
use engine::model::{
    AckStatus, AppliedConfiguration, AssignedConfiguration, CodeInfo, CodeKind, Configuration,
    ConfigurationRevision, Device, License, LicenseStatus, RolloutState, StagedRollout,
};
use engine::secrets::SecretHash;
use engine::store::{
    ActiveDevice, CodeState, ConfigRow, DeviceDetails, DeviceState, LicenseState, PairingEnd,
    RevisionReports, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

/// A row whose column can be read as a `T`.
pub trait Column<T> {
    fn column(&self, index: usize) -> StoreResult<T>;
}

macro_rules! columns {
    ($row:ty: $($t:ty),* $(,)?) => {
        $(
            impl Column<$t> for $row {
                fn column(&self, index: usize) -> StoreResult<$t> {
                    sqlx::Row::try_get(self, index)
                        .map_err(|error| StoreError::Other(format!("column {index}: {error}")))
                }
            }
        )*
    };
}

columns!(SqliteRow: Uuid, Option<Uuid>, i64, Option<i64>, String, Option<String>, Vec<u8>, Option<Vec<u8>>, bool);
columns!(PgRow: Uuid, Option<Uuid>, i64, Option<i64>, String, Option<String>, Vec<u8>, Option<Vec<u8>>, bool);

/// Every column type the stores read.
pub trait Columns:
    Column<Uuid>
    + Column<Option<Uuid>>
    + Column<i64>
    + Column<Option<i64>>
    + Column<String>
    + Column<Option<String>>
    + Column<Vec<u8>>
    + Column<Option<Vec<u8>>>
    + Column<bool>
{
}

impl<R> Columns for R where
    R: Column<Uuid>
        + Column<Option<Uuid>>
        + Column<i64>
        + Column<Option<i64>>
        + Column<String>
        + Column<Option<String>>
        + Column<Vec<u8>>
        + Column<Option<Vec<u8>>>
        + Column<bool>
{
}

/// Column `index` of `row`, as a `T`.
pub(crate) fn get<T, R: Column<T> + ?Sized>(row: &R, index: usize) -> StoreResult<T> {
    row.column(index)
}

pub(crate) fn get_hash(row: &impl Columns, index: usize) -> StoreResult<SecretHash> {
    let bytes: Vec<u8> = get(row, index)?;
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Other(format!("column {index}: not a 32-byte hash")))?;
    Ok(SecretHash(array))
}

pub(crate) fn get_ts(row: &impl Columns, index: usize) -> StoreResult<Timestamp> {
    Ok(Timestamp(get::<i64, _>(row, index)?))
}

pub(crate) fn get_opt_ts(row: &impl Columns, index: usize) -> StoreResult<Option<Timestamp>> {
    Ok(get::<Option<i64>, _>(row, index)?.map(Timestamp))
}

/// Counters and revisions: stored as signed 64-bit integers, never negative.
fn unsigned<T: TryFrom<i64>>(value: i64, index: usize) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Other(format!("column {index}: out of range")))
}

fn get_unsigned<T: TryFrom<i64>>(row: &impl Columns, index: usize) -> StoreResult<T> {
    unsigned(get(row, index)?, index)
}

fn get_opt_unsigned<T: TryFrom<i64>>(row: &impl Columns, index: usize) -> StoreResult<Option<T>> {
    get::<Option<i64>, _>(row, index)?
        .map(|value| unsigned(value, index))
        .transpose()
}

pub(crate) fn get_u32(row: &impl Columns, index: usize) -> StoreResult<u32> {
    get_unsigned(row, index)
}

pub(crate) fn get_opt_u32(row: &impl Columns, index: usize) -> StoreResult<Option<u32>> {
    get_opt_unsigned(row, index)
}

pub(crate) fn get_u64(row: &impl Columns, index: usize) -> StoreResult<u64> {
    get_unsigned(row, index)
}

pub(crate) fn get_opt_u64(row: &impl Columns, index: usize) -> StoreResult<Option<u64>> {
    get_opt_unsigned(row, index)
}

/// A license's status at `$1` (the time now), in the words [`LicenseStatus::parse`] reads.
macro_rules! license_status {
    () => {
        "CASE WHEN valid_until IS NOT NULL AND valid_until <= $1 THEN 'expired' \
         WHEN device_id IS NOT NULL THEN 'assigned' \
         WHEN reserved_until IS NOT NULL AND reserved_until > $1 THEN 'reserved' \
         ELSE 'free' END"
    };
}

/// The columns [`license_from_row`] reads, with the status at `$1` (the time now).
macro_rules! license_columns {
    () => {
        concat!(
            "id, org_id, purchased_at, valid_until, device_id, ",
            $crate::rows::license_status!(),
            " AS status, reserved_until"
        )
    };
}

pub(crate) fn license_from_row(row: &impl Columns) -> StoreResult<License> {
    license_from_row_at(row, 0)
}

/// A license from [`license_columns`] starting at column `base`.
pub(crate) fn license_from_row_at(row: &impl Columns, base: usize) -> StoreResult<License> {
    let get_at = |index: usize| base + index;
    let status: String = get(row, get_at(5))?;
    let status = LicenseStatus::parse(&status)
        .ok_or_else(|| StoreError::Other(format!("unknown license status {status}")))?;
    Ok(License {
        id: LicenseId(get(row, get_at(0))?),
        organization_id: OrgId(get(row, get_at(1))?),
        purchased_at: get_ts(row, get_at(2))?,
        valid_until: get_opt_ts(row, get_at(3))?,
        device_id: get::<Option<Uuid>, _>(row, get_at(4))?.map(DeviceId),
        reserved_until: if status == LicenseStatus::Reserved {
            get_opt_ts(row, get_at(6))?
        } else {
            None
        },
        status,
    })
}

/// The columns [`code_from_row`] reads.
macro_rules! code_columns {
    () => {
        "id, org_id, kind, label, created_at, expires_at, max_uses, uses, last_used_at, \
         revoked_at, license_id, used_at, configuration_id, replaces_device"
    };
}

pub(crate) fn code_from_row(row: &impl Columns, now: Timestamp) -> StoreResult<CodeInfo> {
    let kind_text: String = get(row, 2)?;
    let kind = CodeKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Other(format!("unknown code kind {kind_text}")))?;
    let expires_at = get_ts(row, 5)?;
    let max_uses = get_opt_u32(row, 6)?;
    let uses = get_u32(row, 7)?;
    let revoked_at = get_opt_ts(row, 9)?;
    let used_at = get_opt_ts(row, 11)?;
    Ok(CodeInfo {
        id: CodeId(get(row, 0)?),
        organization_id: OrgId(get(row, 1)?),
        kind,
        label: get(row, 3)?,
        status: engine::code_status(kind, revoked_at, used_at, expires_at, max_uses, uses, now),
        created_at: get_ts(row, 4)?,
        expires_at,
        max_uses: if kind == CodeKind::Reusable {
            max_uses
        } else {
            None
        },
        uses,
        last_used_at: get_opt_ts(row, 8)?,
        revoked_at,
        license_id: get::<Option<Uuid>, _>(row, 10)?.map(LicenseId),
        configuration_id: get::<Option<Uuid>, _>(row, 12)?.map(ConfigId),
        replaces_device_id: get::<Option<Uuid>, _>(row, 13)?.map(DeviceId),
    })
}

macro_rules! code_state_columns {
    () => {
        "id, org_id, kind, expires_at, revoked_at, max_uses, uses, used_at, license_id, label, \
         configuration_id, replaces_device"
    };
}

pub(crate) fn code_state_from_row(row: &impl Columns) -> StoreResult<CodeState> {
    let kind_text: String = get(row, 2)?;
    Ok(CodeState {
        id: CodeId(get(row, 0)?),
        org_id: OrgId(get(row, 1)?),
        kind: CodeKind::parse(&kind_text)
            .ok_or_else(|| StoreError::Other(format!("unknown code kind {kind_text}")))?,
        expires_at: get_ts(row, 3)?,
        revoked_at: get_opt_ts(row, 4)?,
        max_uses: get_opt_u32(row, 5)?,
        uses: get_u32(row, 6)?,
        used_at: get_opt_ts(row, 7)?,
        license_id: get::<Option<Uuid>, _>(row, 8)?.map(LicenseId),
        label: get(row, 9)?,
        configuration_id: get::<Option<Uuid>, _>(row, 10)?.map(ConfigId),
        replaces_device: get::<Option<Uuid>, _>(row, 11)?.map(DeviceId),
    })
}

/// The columns [`configuration_from_row`] reads, of `configurations c` (the body, where wanted,
/// follows them).
macro_rules! config_columns {
    () => {
        "c.id, c.org_id, c.name, c.revision, c.created_at, c.updated_at, \
         (SELECT COUNT(*) FROM devices d WHERE d.config_id = c.id AND d.ended_at IS NULL), \
         (SELECT r.revision FROM configuration_rollouts r WHERE r.config_id = c.id \
         AND r.state IN ('running', 'halted'))"
    };
}

/// The revision a device (`d`) of a configuration (`c`) should run: its configuration's, or a
/// staged rollout's that chose it, whichever is newer (see the migration that added
/// `staged_revision`).
macro_rules! device_revision {
    () => {
        "(CASE WHEN d.staged_revision > c.revision THEN d.staged_revision ELSE c.revision END)"
    };
}

pub(crate) fn configuration_from_row(
    row: &impl Columns,
    body: Option<String>,
) -> StoreResult<Configuration> {
    Ok(Configuration {
        id: ConfigId(get(row, 0)?),
        organization_id: OrgId(get(row, 1)?),
        name: get(row, 2)?,
        revision: get_u64(row, 3)?,
        created_at: get_ts(row, 4)?,
        updated_at: get_ts(row, 5)?,
        assigned_devices: get_u64(row, 6)?,
        staged_revision: get_opt_u64(row, 7)?,
        body,
    })
}

/// The columns of a configuration revision (`r`), without its body: a query that wants the
/// body adds `r.body` after them.
macro_rules! revision_columns {
    () => {
        "r.config_id, r.revision, r.name, r.saved_at, r.saved_by, r.bytes"
    };
}
/// A revision read with [`revision_columns`], and its body when the query added it.
pub(crate) fn revision_from_row(
    row: &impl Columns,
    with_body: bool,
) -> StoreResult<ConfigurationRevision> {
    Ok(ConfigurationRevision {
        configuration_id: ConfigId(get(row, 0)?),
        revision: get_u64(row, 1)?,
        name: get(row, 2)?,
        saved_at: get_ts(row, 3)?,
        saved_by: get(row, 4)?,
        bytes: get_u64(row, 5)?,
        body: if with_body { Some(get(row, 6)?) } else { None },
    })
}

pub(crate) fn config_row_from_row(row: &impl Columns) -> StoreResult<ConfigRow> {
    Ok(ConfigRow {
        id: ConfigId(get(row, 0)?),
        org_id: OrgId(get(row, 1)?),
        name: get(row, 2)?,
        revision: get_u64(row, 3)?,
        body: get(row, 4)?,
    })
}

/// The columns [`device_from_row`] reads, over `devices d`, `licenses l` (the device's license)
/// and `configurations c` (its configuration): [`DEVICE_COLUMN_COUNT`] of them.
macro_rules! device_columns {
    () => {
        "d.id, d.org_id, d.installation_id, d.name, d.model, d.os, d.app_version, \
         d.license_id, l.valid_until, d.paired_at, d.paired_by_code, d.config_id, c.name, \
         (CASE WHEN d.staged_revision > c.revision THEN d.staged_revision ELSE c.revision END), \
         d.applied_config_id, d.applied_revision, d.ack_status, d.ack_reason, \
         d.ack_at, d.online_conn IS NOT NULL, d.last_seen, d.admin_name, d.notes"
    };
}

/// How many columns [`device_columns`] lists.
pub(crate) const DEVICE_COLUMN_COUNT: usize = 23;

/// `SELECT` and `FROM` of the devices [`device_from_row`] reads.
macro_rules! select_devices {
    () => {
        concat!(
            "SELECT ",
            $crate::rows::device_columns!(),
            " FROM devices d JOIN licenses l ON l.id = d.license_id \
             LEFT JOIN configurations c ON c.id = d.config_id"
        )
    };
}

pub(crate) fn device_from_row(row: &impl Columns) -> StoreResult<Device> {
    device_from_row_at(row, 0)
}

/// A device from [`device_columns`] starting at column `base`.
pub(crate) fn device_from_row_at(row: &impl Columns, base: usize) -> StoreResult<Device> {
    let get_at = |index: usize| base + index;
    let configuration = match get::<Option<Uuid>, _>(row, get_at(11))? {
        Some(id) => Some(AssignedConfiguration {
            id: ConfigId(id),
            name: get::<Option<String>, _>(row, get_at(12))?.unwrap_or_default(),
            revision: get_opt_u64(row, get_at(13))?.unwrap_or_default(),
        }),
        None => None,
    };
    let applied = match (
        get::<Option<Uuid>, _>(row, get_at(14))?,
        get_opt_u64(row, get_at(15))?,
        get::<Option<String>, _>(row, get_at(16))?,
    ) {
        (Some(config), Some(revision), Some(status)) => Some(AppliedConfiguration {
            configuration_id: ConfigId(config),
            revision,
            status: AckStatus::parse(&status)
                .ok_or_else(|| StoreError::Other(format!("unknown ack status {status}")))?,
            reason: get(row, get_at(17))?,
            at: get_opt_ts(row, get_at(18))?.unwrap_or_default(),
        }),
        _ => None,
    };
    let reported_name: String = get(row, get_at(3))?;
    let admin_name: Option<String> = get(row, get_at(21))?;
    Ok(Device {
        id: DeviceId(get(row, get_at(0))?),
        organization_id: OrgId(get(row, get_at(1))?),
        installation_id: InstallationId(get(row, get_at(2))?),
        name: admin_name.clone().unwrap_or_else(|| reported_name.clone()),
        reported_name,
        admin_name,
        notes: get(row, get_at(22))?,
        model: get(row, get_at(4))?,
        os: get(row, get_at(5))?,
        app_version: get(row, get_at(6))?,
        license_id: LicenseId(get(row, get_at(7))?),
        license_valid_until: get_opt_ts(row, get_at(8))?,
        paired_at: get_ts(row, get_at(9))?,
        paired_by_code: get::<Option<Uuid>, _>(row, get_at(10))?.map(CodeId),
        configuration,
        applied,
        online: get::<bool, _>(row, get_at(19))?,
        last_seen: get_ts(row, get_at(20))?,
    })
}

macro_rules! active_device_columns {
    () => {
        "d.id, d.org_id, d.installation_id, d.credential_hash, d.license_id, l.valid_until, \
         d.config_id, d.name, d.model, d.os, d.app_version, d.staged_revision"
    };
}

pub(crate) fn active_device_from_row(row: &impl Columns) -> StoreResult<ActiveDevice> {
    Ok(ActiveDevice {
        id: DeviceId(get(row, 0)?),
        org_id: OrgId(get(row, 1)?),
        installation_id: InstallationId(get(row, 2)?),
        credential_hash: get_hash(row, 3)?,
        license_id: LicenseId(get(row, 4)?),
        license_valid_until: get_opt_ts(row, 5)?,
        config_id: get::<Option<Uuid>, _>(row, 6)?.map(ConfigId),
        staged_revision: get_opt_u64(row, 11)?,
        details: DeviceDetails {
            name: get(row, 7)?,
            model: get(row, 8)?,
            os: get(row, 9)?,
            app_version: get(row, 10)?,
        },
    })
}

pub(crate) fn license_state_from_row(row: &impl Columns) -> StoreResult<LicenseState> {
    Ok(LicenseState {
        id: LicenseId(get(row, 0)?),
        org_id: OrgId(get(row, 1)?),
        valid_until: get_opt_ts(row, 2)?,
        device_id: get::<Option<Uuid>, _>(row, 3)?.map(DeviceId),
        reserved_by: get::<Option<Uuid>, _>(row, 4)?.map(CodeId),
        reserved_until: get_opt_ts(row, 5)?,
    })
}

/// A device's pairing state from its `id, config_id, end_reason, end_cause, staged_revision`
/// columns.
pub(crate) fn device_state_from_row(row: &impl Columns) -> StoreResult<DeviceState> {
    let reason: Option<String> = get(row, 2)?;
    Ok(DeviceState {
        device_id: DeviceId(get(row, 0)?),
        config_id: get::<Option<Uuid>, _>(row, 1)?.map(ConfigId),
        staged_revision: get_opt_u64(row, 4)?,
        ended: reason
            .map(|reason| pairing_end(reason, get(row, 3)?))
            .transpose()?,
    })
}

/// Why a pairing ended, from its `end_reason` and `end_cause` columns.
pub(crate) fn pairing_end(reason: String, cause: Option<String>) -> StoreResult<PairingEnd> {
    PairingEnd::from_columns(&reason, cause.as_deref())
        .ok_or_else(|| StoreError::Other(format!("unknown end reason {reason} ({cause:?})")))
}

/// What a search reads of a device (`fleet::SEARCHED_TEXT`, there over `devices d`), over the
/// devices table unaliased: for the statements of the search's word index, which name it in a
/// subquery or alone. A test checks that the two are the same text.
macro_rules! searched_text {
    () => {
        "(' ' || lower(COALESCE(admin_name, '') || ' ' || name || ' ' || model || ' ' || os || ' ' \
         || app_version || ' ' || COALESCE(notes, '')))"
    };
}

/// The text a device's entry in the search's word index should be made from: its searched text
/// while it is active, none once it has ended. A device whose `words_of` is not this is
/// *unindexed* (`devices_unindexed`, in both migrations).
macro_rules! indexed_text {
    () => {
        concat!(
            "(CASE WHEN ended_at IS NULL THEN ",
            $crate::rows::searched_text!(),
            " END)"
        )
    };
}

/// The columns [`rollout_from_row`] reads, of `configuration_rollouts r`.
macro_rules! rollout_columns {
    () => {
        "r.id, r.config_id, r.revision, r.stable_revision, r.state, r.share_percent, \
         r.chosen_devices, r.max_failures, r.promote_at, r.started_at, r.started_by, \
         r.ended_at, r.ended_by, r.failed_devices, \
         (SELECT COUNT(*) FROM devices d WHERE d.config_id = r.config_id \
         AND d.staged_revision = r.revision AND d.ended_at IS NULL)"
    };
}

pub(crate) use {
    active_device_columns, code_columns, code_state_columns, config_columns, device_columns,
    device_revision, indexed_text, license_columns, license_status, revision_columns,
    rollout_columns, searched_text, select_devices,
};

pub(crate) fn rollout_from_row(row: &impl Columns) -> StoreResult<StagedRollout> {
    let state: String = get(row, 4)?;
    Ok(StagedRollout {
        id: RolloutId(get(row, 0)?),
        configuration_id: ConfigId(get(row, 1)?),
        revision: get_u64(row, 2)?,
        stable_revision: get_u64(row, 3)?,
        state: RolloutState::parse(&state)
            .ok_or_else(|| StoreError::Other(format!("unknown rollout state {state}")))?,
        share_percent: get::<Option<i64>, _>(row, 5)?
            .map(|share| u8::try_from(share).unwrap_or(100)),
        chosen_devices: get_u64(row, 6)?,
        max_failures: get_u64(row, 7)?,
        promote_at: get_opt_ts(row, 8)?,
        started_at: get_ts(row, 9)?,
        started_by: get(row, 10)?,
        ended_at: get_opt_ts(row, 11)?,
        ended_by: get(row, 12)?,
        failed_devices: get_opt_u64(row, 13)?,
        staged_devices: get_u64(row, 14)?,
    })
}

/// A row of `configuration_reports`: (revision, status, still assigned, devices).
pub(crate) fn revision_reports_from_row(row: &impl Columns) -> StoreResult<RevisionReports> {
    let status: String = get(row, 1)?;
    Ok(RevisionReports {
        revision: get_unsigned(row, 0)?,
        status: AckStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(format!("unknown ack status {status}")))?,
        still_assigned: get(row, 2)?,
        devices: get_unsigned(row, 3)?,
    })
}
