//! Staged rollouts, written once for both backends: the statements behind the rollout methods
//! of [`engine::store::AdminTx`], [`engine::store::AdminReads`] and
//! [`engine::store::NodeStore`], each a function over any connection that runs statements.
//!
//! A staged device carries the rollout's revision in `devices.staged_revision` and runs the
//! greater of it and its configuration's revision (`rows::device_revision`); a rollout's row in
//! `configuration_rollouts` says where it stands. See the migration that added them.

use engine::ids::{ConfigId, DeviceId, OrgId, RolloutId, Timestamp};
use engine::model::{RolloutState, StagedRollout};
use engine::store::{ConfigRow, LockedConfiguration, StageChoice, StoreResult};

use crate::backend::{Arg, Backend, Statements};
use crate::paging::to_i64;
use crate::rows::{config_row_from_row, get, get_u64, rollout_columns, rollout_from_row};

/// `(config id)` → the configuration's rollout in progress.
const IN_PROGRESS: &str = concat!(
    "SELECT ",
    rollout_columns!(),
    " FROM configuration_rollouts r WHERE r.config_id = $1 AND r.state IN ('running', 'halted')"
);

/// `(org id, config id)` → the configuration's latest rollout.
const LATEST: &str = concat!(
    "SELECT ",
    rollout_columns!(),
    " FROM configuration_rollouts r WHERE r.org_id = $1 AND r.config_id = $2 \
     ORDER BY r.started_at DESC, r.id DESC LIMIT 1"
);

/// The configuration, locked by the backend's edit lock, with its rollout in progress.
pub(crate) async fn lock<B: Backend>(
    tx: &mut impl Statements,
    org_id: OrgId,
    config_id: ConfigId,
) -> StoreResult<Option<LockedConfiguration>> {
    let Some(row) = tx
        .fetch_optional(
            B::CONFIG_REVISION_FOR_EDIT,
            &[org_id.0.into(), config_id.0.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let revision = get_u64(&row, 0)?;
    let name: String = get(&row, 1)?;
    let rollout = tx
        .read_optional(IN_PROGRESS, &[config_id.0.into()], rollout_from_row)
        .await?;
    Ok(Some(LockedConfiguration {
        revision,
        name,
        rollout,
    }))
}

pub(crate) async fn latest(
    reader: &mut impl Statements,
    org_id: OrgId,
    config_id: ConfigId,
) -> StoreResult<Option<StagedRollout>> {
    reader
        .read_optional(
            LATEST,
            &[org_id.0.into(), config_id.0.into()],
            rollout_from_row,
        )
        .await
}

pub(crate) async fn insert(
    tx: &mut impl Statements,
    org_id: OrgId,
    rollout: &StagedRollout,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO configuration_rollouts (id, org_id, config_id, revision, stable_revision, \
         state, share_percent, chosen_devices, max_failures, promote_at, started_at, started_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            rollout.id.0.into(),
            org_id.0.into(),
            rollout.configuration_id.0.into(),
            to_i64(rollout.revision).into(),
            to_i64(rollout.stable_revision).into(),
            rollout.state.as_str().into(),
            rollout.share_percent.map(i64::from).into(),
            to_i64(rollout.chosen_devices).into(),
            to_i64(rollout.max_failures).into(),
            rollout.promote_at.map(|at| at.0).into(),
            rollout.started_at.0.into(),
            rollout.started_by.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn set_state(
    tx: &mut impl Statements,
    id: RolloutId,
    state: RolloutState,
    at: Timestamp,
    by: &str,
    failed_devices: Option<u64>,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE configuration_rollouts SET state = $1, ended_at = $2, ended_by = $3, \
         failed_devices = COALESCE($4, failed_devices) WHERE id = $5",
        &[
            state.as_str().into(),
            at.0.into(),
            by.into(),
            failed_devices.map(to_i64).into(),
            id.0.into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn assigned_devices(
    tx: &mut impl Statements,
    config_id: ConfigId,
) -> StoreResult<u64> {
    let row = tx
        .fetch_one(
            "SELECT COUNT(*) FROM devices WHERE config_id = $1 AND ended_at IS NULL",
            &[config_id.0.into()],
        )
        .await?;
    get_u64(&row, 0)
}

pub(crate) async fn stage<B: Backend>(
    tx: &mut impl Statements,
    org_id: OrgId,
    config_id: ConfigId,
    stable: u64,
    revision: u64,
    choice: StageChoice<'_>,
) -> StoreResult<Vec<DeviceId>> {
    let read = |row: &_| Ok(DeviceId(get(row, 0)?));
    // Those an earlier rollout staged keep a revision newer than the stable one: they move on
    // to this one rather than back.
    let mut staged = tx
        .read_all(
            "UPDATE devices SET staged_revision = $1 WHERE config_id = $2 AND ended_at IS NULL \
             AND staged_revision > $3 RETURNING id",
            &[
                to_i64(revision).into(),
                config_id.0.into(),
                to_i64(stable).into(),
            ],
            read,
        )
        .await?;
    let chosen = match choice {
        StageChoice::Random(count) if count <= staged.len() as u64 => Vec::new(),
        StageChoice::Random(count) => {
            let more = count - staged.len() as u64;
            tx.read_all(
                "UPDATE devices SET staged_revision = $1 WHERE id IN (SELECT id FROM devices \
                 WHERE config_id = $2 AND ended_at IS NULL \
                 AND (staged_revision IS NULL OR staged_revision < $1) \
                 ORDER BY random() LIMIT $3) RETURNING id",
                &[
                    to_i64(revision).into(),
                    config_id.0.into(),
                    to_i64(more).into(),
                ],
                read,
            )
            .await?
        }
        StageChoice::Devices(ids) => {
            tx.read_all(
                B::STAGE_DEVICES,
                &[
                    to_i64(revision).into(),
                    org_id.0.into(),
                    config_id.0.into(),
                    Arg::ids(ids, |id| id.0),
                ],
                read,
            )
            .await?
        }
    };
    staged.extend(chosen);
    staged.sort_unstable();
    staged.dedup();
    Ok(staged)
}

pub(crate) async fn failed_staged(
    tx: &mut impl Statements,
    config_id: ConfigId,
    revision: u64,
) -> StoreResult<u64> {
    let row = tx
        .fetch_one(
            "SELECT COUNT(*) FROM devices WHERE config_id = $1 AND staged_revision = $2 \
             AND ended_at IS NULL AND applied_config_id = $1 AND applied_revision = $2 \
             AND ack_status = 'failed'",
            &[config_id.0.into(), to_i64(revision).into()],
        )
        .await?;
    get_u64(&row, 0)
}

pub(crate) async fn promote(
    tx: &mut impl Statements,
    config_id: ConfigId,
    revision: u64,
    now: Timestamp,
) -> StoreResult<Option<ConfigRow>> {
    let changed = tx
        .execute(
            "UPDATE configurations SET revision = $1, updated_at = $2, \
             body = (SELECT r.body FROM configuration_revisions r \
             WHERE r.config_id = $3 AND r.revision = $1) \
             WHERE id = $3 AND EXISTS (SELECT 1 FROM configuration_revisions r \
             WHERE r.config_id = $3 AND r.revision = $1)",
            &[to_i64(revision).into(), now.0.into(), config_id.0.into()],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    tx.execute(
        "UPDATE devices SET staged_revision = NULL WHERE config_id = $1 \
         AND staged_revision IS NOT NULL",
        &[config_id.0.into()],
    )
    .await?;
    tx.read_optional(
        "SELECT id, org_id, name, revision, body FROM configurations WHERE id = $1",
        &[config_id.0.into()],
        config_row_from_row,
    )
    .await
}

/// `(config id, revision)` → the configuration at that revision of its history.
pub(crate) const REVISION_ROW: &str = "SELECT c.id, c.org_id, r.name, r.revision, r.body \
     FROM configuration_revisions r JOIN configurations c ON c.id = r.config_id \
     WHERE r.config_id = $1 AND r.revision = $2";

pub(crate) async fn revision_rows(
    tx: &mut impl Statements,
    wanted: &[(ConfigId, u64)],
) -> StoreResult<Vec<ConfigRow>> {
    // One read each: a batch wants few (one per rollout in progress at most).
    let mut rows = Vec::with_capacity(wanted.len());
    for (config_id, revision) in wanted {
        let row = tx
            .read_optional(
                REVISION_ROW,
                &[config_id.0.into(), to_i64(*revision).into()],
                config_row_from_row,
            )
            .await?;
        rows.extend(row);
    }
    Ok(rows)
}

/// `(now)` → the running rollouts due for a decision: promotion time come, or more failures
/// than allowed (counted through the partial index of staged devices).
pub(crate) const DUE: &str = "SELECT r.org_id, r.config_id FROM configuration_rollouts r \
     WHERE r.state = 'running' AND (r.promote_at <= $1 OR r.max_failures < \
     (SELECT COUNT(*) FROM devices d WHERE d.config_id = r.config_id \
     AND d.staged_revision = r.revision AND d.ended_at IS NULL \
     AND d.applied_config_id = r.config_id AND d.applied_revision = r.revision \
     AND d.ack_status = 'failed'))";

pub(crate) fn due_from_row(row: &impl crate::rows::Columns) -> StoreResult<(OrgId, ConfigId)> {
    Ok((OrgId(get(row, 0)?), ConfigId(get(row, 1)?)))
}
