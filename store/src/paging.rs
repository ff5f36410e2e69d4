//! Pagination and conversions shared by the backends, so that both cut pages, read cursors and
//! map the rows they share the same way.

use engine::ids::{ConfigId, DeviceId};
use engine::model::{Page, PageRequest};
use engine::store::{DeviceState, EndedBecause, StoreError, StoreResult};
use uuid::Uuid;

/// Counters and revisions are `u64` in the engine and signed 64-bit integers in both databases;
/// a value past `i64::MAX` (never reached in practice) is stored as the largest one.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A page from up to `limit + 1` rows: the extra row only says that there is a next page.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(cursor) } else { None };
    Page { items, next_cursor }
}

/// The row limit of a page query: one more than the page, to know whether another follows.
pub(crate) fn page_rows(limit: u32) -> i64 {
    i64::from(limit) + 1
}

/// The cursor of an id-ordered list: the last id seen (nil = from the start).
pub(crate) fn uuid_cursor(page: &PageRequest) -> StoreResult<Uuid> {
    match &page.after {
        None => Ok(Uuid::nil()),
        Some(text) => Uuid::parse_str(text).map_err(|_| StoreError::InvalidInput("cursor")),
    }
}

/// A device's pairing state from its `id, config_id, end_reason` columns, on either backend.
pub(crate) fn device_state_from_row<'r, R>(row: &'r R) -> StoreResult<DeviceState>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let column =
        |index: usize, error: sqlx::Error| StoreError::Other(format!("column {index}: {error}"));
    let reason: Option<String> = row.try_get(2).map_err(|error| column(2, error))?;
    Ok(DeviceState {
        device_id: DeviceId(row.try_get(0).map_err(|error| column(0, error))?),
        config_id: row
            .try_get::<Option<Uuid>, _>(1)
            .map_err(|error| column(1, error))?
            .map(ConfigId),
        ended: reason
            .as_deref()
            .map(|reason| {
                EndedBecause::parse(reason)
                    .ok_or_else(|| StoreError::Other(format!("unknown end reason {reason}")))
            })
            .transpose()?,
    })
}
