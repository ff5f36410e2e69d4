//! The audit log's reads, written once for both backends: a page of the log, newest first,
//! with the entries that pass a filter (actions, a device, a time window).
//!
//! A filtered page must not read the whole log to find a few entries, so each shape of filter
//! has its own statement, driven by the index made for it (migrations `0004_audit`), and the
//! other filters are checked on the rows it reaches:
//!
//! - a device: `audit_devices` (the device's entries, newest first);
//! - a time window, in one organization: `audit_by_org_time`;
//! - actions, in one organization: `audit_by_org_action`, newest first per action, one page of
//!   each merged (so at most a page per action is read);
//! - nothing, in one organization: `audit_by_org`;
//! - the server's whole log: its primary key, newest first.
//!
//! The only text that differs between the backends is how a list of actions is expanded, and
//! PostgreSQL's `LATERAL` where SQLite re-runs a correlated subquery: the statements are the
//! macros below, each backend passing its fragment, as `writes`' locking reads do.

use engine::ids::OrgId;
use engine::model::{AuditEntry, AuditFilter, Page, PageRequest};
use engine::store::{StoreError, StoreResult};
use uuid::Uuid;

use crate::backend::{Arg, Backend, SqlStore, Statements as _};
use crate::paging::{page_of, page_rows};
use crate::rows::{Columns, get, get_ts};

/// The columns [`audit_entry_from_row`] reads, of `audit_log a`.
macro_rules! audit_columns {
    () => {
        "a.id, a.org_id, a.at, a.actor, a.action, a.subject, a.details"
    };
}

/// `(device, before id, org or NULL, from, until, actions or NULL, rows, the device's id as
/// text)`: the device's entries. `$in_actions` is the backend's "is in the list `$6`".
///
/// Those of `audit_devices`, and its `device.paired` entry, which has no row there (one insert
/// fewer for every pairing): it is found from the device's row, among the organization's
/// entries at its pairing time (`audit_by_org_time`; a batch's pairings share that time).
macro_rules! audit_of_device {
    ($in_actions:literal) => {
        concat!(
            "SELECT ",
            $crate::audit::audit_columns!(),
            " FROM audit_log a WHERE a.id IN (\
             SELECT ad.audit_id FROM audit_devices ad \
             WHERE ad.device_id = $1 AND ad.audit_id < $2 \
             UNION ALL SELECT p.id FROM devices d \
             JOIN audit_log p ON p.org_id = d.org_id AND p.at = d.paired_at \
             WHERE d.id = $1 AND p.action = 'device.paired' AND p.subject = $8 AND p.id < $2) \
             AND ($3 IS NULL OR a.org_id = $3) \
             AND a.at >= $4 AND a.at < $5 AND ($6 IS NULL OR a.action ",
            $in_actions,
            ") ORDER BY a.id DESC LIMIT $7"
        )
    };
}

/// `(org, before id, from, until, actions or NULL, rows)`: the organization's entries in a
/// time window. `$log` is the backend's way to name `audit_log a` read through
/// `audit_by_org_time`, `$in_actions` its "is in the list `$5`".
///
/// The window is read whole and sorted: reading the organization's log newest first instead
/// would stop early in a wide window, but walk every older entry when the window holds less
/// than a page (the database cannot know that time and ids grow together).
macro_rules! audit_of_org_in_time {
    ($log:literal, $in_actions:literal) => {
        concat!(
            "SELECT ",
            $crate::audit::audit_columns!(),
            " FROM ",
            $log,
            " WHERE a.org_id = $1 AND a.at >= $3 AND a.at < $4 AND a.id < $2 \
             AND ($5 IS NULL OR a.action ",
            $in_actions,
            ") ORDER BY a.id DESC LIMIT $6"
        )
    };
}

/// `(before id, from, until, actions or NULL, rows)`: the server's whole log. `$in_actions` is
/// the backend's "is in the list `$4`".
macro_rules! audit_of_server {
    ($in_actions:literal) => {
        concat!(
            "SELECT ",
            $crate::audit::audit_columns!(),
            " FROM audit_log a WHERE a.id < $1 AND a.at >= $2 AND a.at < $3 \
             AND ($4 IS NULL OR a.action ",
            $in_actions,
            ") ORDER BY a.id DESC LIMIT $5"
        )
    };
}

pub(crate) use {audit_columns, audit_of_device, audit_of_org_in_time, audit_of_server};

/// `(org, before id, rows)`: the organization's entries, unfiltered.
pub(crate) const AUDIT_OF_ORG: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_log a WHERE a.org_id = $1 AND a.id < $2 ORDER BY a.id DESC LIMIT $3"
);

/// A page of the audit log of `org_id` (of the whole server with `None`), newest first, with
/// the entries that pass `filter` (checked by the engine: actions each once).
pub(crate) async fn list_audit<B: Backend>(
    store: &SqlStore<B>,
    org_id: Option<OrgId>,
    filter: &AuditFilter,
    page: &PageRequest,
) -> StoreResult<Page<AuditEntry>> {
    let limit = page.effective_limit();
    let before: Arg = match &page.after {
        None => i64::MAX,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| StoreError::InvalidInput("cursor"))?,
    }
    .into();
    let rows: Arg = page_rows(limit).into();
    let org: Option<Uuid> = org_id.map(|org| org.0);
    // An open end is the farthest time there is, so that the bounds are always plain ranges.
    let from: Arg = filter.from.map_or(i64::MIN, |from| from.0).into();
    let until: Arg = filter.until.map_or(i64::MAX, |until| until.0).into();
    let actions = Arg::Texts((!filter.actions.is_empty()).then_some(filter.actions.as_slice()));
    let timed = filter.from.is_some() || filter.until.is_some();
    // A `device.paired` entry's subject: the device's id as the engine writes it.
    let device_text = filter
        .device_id
        .map(|device| device.to_string())
        .unwrap_or_default();
    let (sql, args): (&'static str, Vec<Arg<'_>>) = match (org, filter.device_id) {
        (_, Some(device)) => (
            B::AUDIT_OF_DEVICE,
            vec![
                device.0.into(),
                before,
                org.into(),
                from,
                until,
                actions,
                rows,
                Arg::Text(Some(device_text.as_str())),
            ],
        ),
        (Some(org), None) if timed => (
            B::AUDIT_OF_ORG_IN_TIME,
            vec![org.into(), before, from, until, actions, rows],
        ),
        (Some(org), None) if !filter.actions.is_empty() => (
            B::AUDIT_OF_ORG_BY_ACTIONS,
            vec![org.into(), before, actions, rows],
        ),
        (Some(org), None) => (AUDIT_OF_ORG, vec![org.into(), before, rows]),
        (None, None) => (B::AUDIT_OF_SERVER, vec![before, from, until, actions, rows]),
    };
    let items = store
        .reader()
        .await?
        .read_all(sql, &args, audit_entry_from_row)
        .await?;
    Ok(page_of(items, limit, |entry| entry.id.to_string()))
}

fn audit_entry_from_row(row: &impl Columns) -> StoreResult<AuditEntry> {
    let details: String = get(row, 6)?;
    Ok(AuditEntry {
        id: get(row, 0)?,
        organization_id: get::<Option<Uuid>, _>(row, 1)?.map(OrgId),
        at: get_ts(row, 2)?,
        actor: get(row, 3)?,
        action: get(row, 4)?,
        subject: get(row, 5)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
    })
}
