//! The waiting list, written once for both backends: devices that asked to wait when no license
//! was free, each a row of `waiting_devices` in the order they arrived (see the migration that
//! made it). The claim that keeps ordinary pairings behind the line is each backend's
//! `claim_free_licenses`; the read of the line to serve is each backend's `WAITING_LINE` (locked
//! on PostgreSQL).

use engine::ids::{CodeId, InstallationId, OrgId, Timestamp};
use engine::model::{Page, PageRequest, WaitingDevice};
use engine::store::{DeviceDetails, NewWaiting, StoreError, StoreResult, Waiting};

use crate::backend::Statements;
use crate::paging::page_of;
use crate::rows::{Columns, get, get_hash, get_ts, get_u64};

/// The columns [`waiting_from_row`] reads, of `waiting_devices w`.
macro_rules! waiting_columns {
    () => {
        "w.seq, w.org_id, w.installation_id, w.credential_hash, w.code_id, w.name, w.model, \
         w.os, w.app_version, w.peer, w.connection, w.queued_at"
    };
}
pub(crate) use waiting_columns;

pub(crate) fn waiting_from_row(row: &impl Columns) -> StoreResult<Waiting> {
    let peer: String = get(row, 9)?;
    Ok(Waiting {
        ticket: get(row, 0)?,
        org_id: OrgId(get(row, 1)?),
        device: NewWaiting {
            installation_id: InstallationId(get(row, 2)?),
            credential_hash: get_hash(row, 3)?,
            code_id: CodeId(get(row, 4)?),
            details: DeviceDetails {
                name: get(row, 5)?,
                model: get(row, 6)?,
                os: get(row, 7)?,
                app_version: get(row, 8)?,
            },
            peer: peer
                .parse()
                .map_err(|_| StoreError::Other(format!("waiting device's address {peer:?}")))?,
            connection: get(row, 10)?,
        },
        queued_at: get_ts(row, 11)?,
    })
}

pub(crate) async fn join(
    tx: &mut impl Statements,
    org_id: OrgId,
    waiting: &[NewWaiting],
    now: Timestamp,
) -> StoreResult<Vec<(i64, u64)>> {
    // One statement per device: devices join the line only when no license is free, and the
    // ticket each gets is what its connection waits on.
    let mut tickets = Vec::with_capacity(waiting.len());
    for device in waiting {
        let peer = device.peer.to_string();
        let row = tx
            .fetch_one(
                "INSERT INTO waiting_devices (org_id, installation_id, credential_hash, code_id, \
                 name, model, os, app_version, peer, connection, queued_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
                &[
                    org_id.0.into(),
                    device.installation_id.0.into(),
                    device.credential_hash.0.as_slice().into(),
                    device.code_id.0.into(),
                    device.details.name.as_str().into(),
                    device.details.model.as_str().into(),
                    device.details.os.as_str().into(),
                    device.details.app_version.as_str().into(),
                    peer.as_str().into(),
                    device.connection.into(),
                    now.0.into(),
                ],
            )
            .await?;
        let ticket: i64 = get(&row, 0)?;
        let place = tx
            .fetch_one(
                "SELECT COUNT(*) FROM waiting_devices WHERE org_id = $1 AND seq <= $2",
                &[org_id.0.into(), ticket.into()],
            )
            .await?;
        tickets.push((ticket, get_u64(&place, 0)?));
    }
    Ok(tickets)
}

pub(crate) async fn leave(
    tx: &mut impl Statements,
    org_id: OrgId,
    tickets: &[i64],
) -> StoreResult<Vec<Waiting>> {
    let mut left = Vec::new();
    for ticket in tickets {
        let row = tx
            .read_optional(
                concat!(
                    "DELETE FROM waiting_devices WHERE org_id = $1 AND seq = $2 RETURNING ",
                    "seq, org_id, installation_id, credential_hash, code_id, name, model, os, \
                     app_version, peer, connection, queued_at"
                ),
                &[org_id.0.into(), (*ticket).into()],
                waiting_from_row,
            )
            .await?;
        left.extend(row);
    }
    Ok(left)
}

pub(crate) async fn orgs(reader: &mut impl Statements) -> StoreResult<Vec<OrgId>> {
    reader
        .read_all("SELECT DISTINCT org_id FROM waiting_devices", &[], |row| {
            Ok(OrgId(get(row, 0)?))
        })
        .await
}

pub(crate) async fn list(
    reader: &mut impl Statements,
    org_id: OrgId,
    page: &PageRequest,
) -> StoreResult<Page<WaitingDevice>> {
    let limit = page.effective_limit();
    let after: i64 = match page.after.as_deref() {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| StoreError::InvalidInput("cursor"))?,
    };
    let items = reader
        .read_all(
            concat!(
                "SELECT ",
                waiting_columns!(),
                ", (SELECT COUNT(*) FROM waiting_devices o WHERE o.org_id = w.org_id \
                 AND o.seq <= w.seq) FROM waiting_devices w WHERE w.org_id = $1 AND w.seq > $2 \
                 ORDER BY w.seq LIMIT $3"
            ),
            &[org_id.0.into(), after.into(), i64::from(limit + 1).into()],
            |row| {
                let waiting = waiting_from_row(row)?;
                Ok(WaitingDevice {
                    ticket: u64::try_from(waiting.ticket).unwrap_or(0),
                    position: get_u64(row, 12)?,
                    installation_id: waiting.device.installation_id,
                    name: waiting.device.details.name,
                    model: waiting.device.details.model,
                    os: waiting.device.details.os,
                    app_version: waiting.device.details.app_version,
                    code_id: waiting.device.code_id,
                    address: waiting.device.peer.to_string(),
                    since: waiting.queued_at,
                })
            },
        )
        .await?;
    Ok(page_of(items, limit, |waiting| waiting.ticket.to_string()))
}
