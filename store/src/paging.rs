//! Pagination and conversions shared by the backends, so that both cut pages and read cursors
//! the same way.

use engine::model::{Page, PageRequest};
use engine::store::{StoreError, StoreResult};
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
