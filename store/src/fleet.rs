//! The fleet lists: an organization's licenses (each with the device that holds it) or its
//! devices, filtered, sorted, read a page at a time with a keyset cursor, and counted. The same
//! SQL on both backends; the statement is built from the query, because the filters given
//! decide which conditions (and so which indexes) it needs.
//!
//! **Regions.** A sort is read as a list of regions, one after the other, each an indexed walk in
//! one order. Devices sorted by name are one region (their name index); licenses sorted by name
//! are two: the licenses that a device holds, in its devices' name order, then the licenses
//! that no device holds, in id order ("come last"); licenses sorted by status are one region per
//! status (assigned, reserved, free, expired), each in id order. A page reads the regions from
//! the cursor's on until it has a page and one row more (which says that a next page exists).
//!
//! **Cursor.** The last row's region, sort key and id, with the sort it was made for, as
//! base64url JSON. Each region continues after it with a row-value comparison
//! (`(key, id) > (cursor key, cursor id)`), which both databases answer from the index. A row
//! added or removed between two pages is seen or missed as its position says, but no row is
//! ever read twice or skipped because of it.
//!
//! **Count.** Each region's matching rows are counted up to [`FleetQuery::COUNT_BOUND`] (with the
//! filters, not the cursor), so that counting costs at most a bounded walk.

use data_encoding::BASE64URL_NOPAD;
use engine::ids::{OrgId, Timestamp};
use engine::model::{
    CountedPage, FleetFilter, FleetQuery, FleetRows, FleetSort, LicenseStatus, LicenseWithDevice,
    RevisionState,
};
use engine::store::{StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backend::{Arg, Backend, SqlStore, SqlTx, Statements as _, WordIndex};
use crate::rows::{
    Columns, DEVICE_COLUMN_COUNT, device_columns, device_from_row_at, device_revision, get,
    license_from_row_at,
};

/// The license columns of a fleet row, over `licenses l`, with its status at the time bound to
/// `{now}`: the same rule as `rows::license_status`, on the aliased table.
fn license_columns(now: &str) -> String {
    format!(
        "l.id, l.org_id, l.purchased_at, l.valid_until, l.device_id, {}, l.reserved_until",
        status_case(now)
    )
}

fn status_case(now: &str) -> String {
    format!(
        "CASE WHEN l.valid_until IS NOT NULL AND l.valid_until <= {now} THEN 'expired' \
         WHEN l.device_id IS NOT NULL THEN 'assigned' \
         WHEN l.reserved_until IS NOT NULL AND l.reserved_until > {now} THEN 'reserved' \
         ELSE 'free' END"
    )
}

/// The condition that a license has `status` at `{now}`.
fn status_condition(status: LicenseStatus, now: &str) -> String {
    let unexpired = format!("(l.valid_until IS NULL OR l.valid_until > {now})");
    match status {
        LicenseStatus::Expired => format!("l.valid_until IS NOT NULL AND l.valid_until <= {now}"),
        LicenseStatus::Assigned => format!("l.device_id IS NOT NULL AND {unexpired}"),
        LicenseStatus::Reserved => format!(
            "l.device_id IS NULL AND {unexpired} \
             AND l.reserved_until IS NOT NULL AND l.reserved_until > {now}"
        ),
        LicenseStatus::Free => format!(
            "l.device_id IS NULL AND {unexpired} \
             AND (l.reserved_until IS NULL OR l.reserved_until <= {now})"
        ),
    }
}

/// The order in which the status sort shows licenses.
const STATUS_ORDER: [LicenseStatus; 4] = [
    LicenseStatus::Assigned,
    LicenseStatus::Reserved,
    LicenseStatus::Free,
    LicenseStatus::Expired,
];

/// Where a region's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Devices with their licenses: every row has a device.
    Devices,
    /// Licenses, each with the device that holds it, if any.
    Licenses,
    /// Licenses that no device holds (no device columns).
    Unheld,
}

/// A sort key of a region, other than the id that breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Name,
    LastSeen,
    PairedAt,
}

impl Key {
    fn expression(self) -> &'static str {
        match self {
            // The expression of the `devices_by_name` index, word for word.
            Key::Name => "lower(COALESCE(d.admin_name, d.name))",
            Key::LastSeen => "d.last_seen",
            Key::PairedAt => "d.paired_at",
        }
    }
}

/// One indexed walk of a fleet list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    source: Source,
    key: Option<Key>,
    /// Only licenses of this status.
    status: Option<LicenseStatus>,
}

impl Region {
    /// Whether its rows are only licenses that no device holds.
    fn unheld_only(self) -> bool {
        self.source == Source::Unheld
            || (self.source == Source::Licenses
                && matches!(
                    self.status,
                    Some(LicenseStatus::Free | LicenseStatus::Reserved)
                ))
    }

    /// The id that breaks ties (and is the whole order when there is no key).
    fn id(self) -> &'static str {
        match self.source {
            Source::Devices => "d.id",
            Source::Licenses | Source::Unheld => "l.id",
        }
    }
}

/// The regions of a query, in the order they are read.
fn regions(query: &FleetQuery) -> Vec<Region> {
    let filter = &query.filter;
    let device_only = filter.concerns_devices() || query.rows == FleetRows::Devices;
    let held = match query.rows {
        FleetRows::Devices => Source::Devices,
        FleetRows::Licenses if device_only => Source::Devices,
        FleetRows::Licenses => Source::Licenses,
    };
    // A device's license is assigned or expired: a free or reserved license has no device, so
    // a walk of devices for one would read them all to find nothing.
    let devices_can_match = !matches!(
        filter.license_status,
        Some(LicenseStatus::Free | LicenseStatus::Reserved)
    );
    let keyed = |key: Key| {
        let mut regions = Vec::new();
        if devices_can_match {
            regions.push(Region {
                source: Source::Devices,
                key: Some(key),
                status: filter.license_status,
            });
        }
        if !device_only {
            regions.push(Region {
                source: Source::Unheld,
                key: None,
                status: filter.license_status,
            });
        }
        regions
    };
    match query.sort {
        FleetSort::Id if held == Source::Devices && !devices_can_match => Vec::new(),
        FleetSort::Id => vec![Region {
            source: held,
            key: None,
            status: filter.license_status,
        }],
        FleetSort::Name => keyed(Key::Name),
        FleetSort::LastSeen => keyed(Key::LastSeen),
        FleetSort::PairedAt => keyed(Key::PairedAt),
        FleetSort::Status => {
            let mut order = STATUS_ORDER.to_vec();
            if query.descending {
                order.reverse();
            }
            order
                .into_iter()
                .filter(|status| filter.license_status.is_none_or(|wanted| wanted == *status))
                .filter(|status| {
                    // A device's license is assigned or expired.
                    held != Source::Devices
                        || matches!(status, LicenseStatus::Assigned | LicenseStatus::Expired)
                })
                .map(|status| Region {
                    source: held,
                    key: None,
                    status: Some(status),
                })
                .collect()
        }
    }
}

/// Where a page starts: after this row of this region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// The sort it was made for (`-` first when descending).
    sort: String,
    region: usize,
    key: Option<KeyValue>,
    id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum KeyValue {
    Int(i64),
    Text(String),
}

fn sort_name(query: &FleetQuery) -> String {
    let sign = if query.descending { "-" } else { "" };
    format!("{sign}{}", query.sort.as_str())
}

impl Cursor {
    fn encode(&self) -> String {
        BASE64URL_NOPAD.encode(&serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str, query: &FleetQuery, regions: usize) -> StoreResult<Cursor> {
        let invalid = || StoreError::InvalidInput("cursor");
        let bytes = BASE64URL_NOPAD
            .decode(text.as_bytes())
            .map_err(|_| invalid())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if cursor.sort != sort_name(query) || cursor.region >= regions {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

/// A value bound to a statement being built.
#[derive(Debug, Clone)]
enum Bound {
    Int(i64),
    Uuid(Uuid),
    Text(String),
    Ids(Vec<Uuid>),
}

/// A statement being built: its text and its bound values, `$1`, `$2`… in order.
#[derive(Debug, Default, Clone)]
struct Built {
    values: Vec<Bound>,
}

impl Built {
    /// Binds a value; answers its placeholder.
    fn bind(&mut self, value: Bound) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn args(&self) -> Vec<Arg<'_>> {
        self.values
            .iter()
            .map(|value| match value {
                Bound::Int(value) => Arg::from(*value),
                Bound::Uuid(value) => Arg::from(*value),
                Bound::Text(value) => Arg::Text(Some(value.as_str())),
                Bound::Ids(ids) => Arg::Ids(ids.clone()),
            })
            .collect()
    }
}

/// What a search reads of a device, lower-cased, in one text: a space, then the admin's name,
/// the reported name, model, OS, app version and notes, a space between each. One `LIKE` per
/// search word over it costs less than half of one per field (measured on 100,000 devices).
const SEARCHED_TEXT: &str = "(' ' || lower(COALESCE(d.admin_name, '') || ' ' || d.name || ' ' \
    || d.model || ' ' || d.os || ' ' || d.app_version || ' ' || COALESCE(d.notes, '')))";

/// The conditions of the filter on a region's rows.
fn conditions(
    region: Region,
    filter: &FleetFilter,
    org_id: OrgId,
    now: &str,
    built: &mut Built,
) -> Vec<String> {
    let org = built.bind(Bound::Uuid(org_id.0));
    let mut conditions = match region.source {
        Source::Devices => vec![format!("d.org_id = {org}"), "d.ended_at IS NULL".into()],
        Source::Licenses => vec![format!("l.org_id = {org}")],
        Source::Unheld => vec![format!("l.org_id = {org}"), "l.device_id IS NULL".into()],
    };
    if let Some(status) = region.status {
        conditions.push(status_condition(status, now));
    }
    if region.source == Source::Unheld {
        return conditions;
    }
    if let Some(search) = &filter.search {
        for word in search.split_whitespace() {
            let escaped = word
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            // A word begins after a space: the searched text starts with one, and a search
            // word has none, so it never runs from one field into the next.
            let begins_a_word = built.bind(Bound::Text(format!("% {escaped}%")));
            conditions.push(format!(
                "{SEARCHED_TEXT} LIKE lower({begins_a_word}) ESCAPE '\\'"
            ));
        }
    }
    match filter.online {
        Some(true) => conditions.push("d.online_conn IS NOT NULL".into()),
        Some(false) => conditions.push("d.id IS NOT NULL AND d.online_conn IS NULL".into()),
        None => {}
    }
    if let Some(since) = filter.not_seen_since {
        let since = built.bind(Bound::Int(since.0));
        conditions.push(format!(
            "d.id IS NOT NULL AND d.online_conn IS NULL AND d.last_seen < {since}"
        ));
    }
    if let Some(config) = filter.configuration {
        let config = built.bind(Bound::Uuid(config.0));
        conditions.push(format!("d.config_id = {config}"));
    }
    let reported_current = concat!(
        "d.applied_config_id = d.config_id AND d.applied_revision = ",
        device_revision!()
    );
    match filter.revision {
        Some(RevisionState::UpToDate) => {
            conditions.push(format!("{reported_current} AND d.ack_status = 'applied'"));
        }
        Some(RevisionState::Failed) => {
            conditions.push(format!("{reported_current} AND d.ack_status = 'failed'"));
        }
        Some(RevisionState::Pending) => conditions.push(
            concat!(
                "d.config_id IS NOT NULL AND (d.applied_config_id IS NULL \
                 OR d.applied_config_id <> d.config_id OR d.applied_revision IS NULL \
                 OR d.applied_revision <> ",
                device_revision!(),
                " OR d.ack_status IS NULL)"
            )
            .into(),
        ),
        None => {}
    }
    if let Some(version) = &filter.app_version {
        let version = built.bind(Bound::Text(version.clone()));
        conditions.push(format!("d.app_version = {version}"));
    }
    if let Some(code) = filter.paired_by {
        let code = built.bind(Bound::Uuid(code.0));
        conditions.push(format!("d.paired_by_code = {code}"));
    }
    conditions
}

/// The license table of a region, with the index to walk when it reads only unheld licenses
/// (`Backend::UNHELD_LICENSES`).
fn licenses_table(region: Region, unheld_hint: &str) -> String {
    if region.unheld_only() {
        format!("licenses l {unheld_hint}")
    } else {
        "licenses l".into()
    }
}

/// `FROM` and the columns of a region's rows: the device's, the license's, then the key.
fn select(region: Region, now: &str, unheld_hint: &str) -> String {
    let key = region
        .key
        .map(|key| format!(", {}", key.expression()))
        .unwrap_or_default();
    let licenses = license_columns(now);
    let configurations = "LEFT JOIN configurations c ON c.id = d.config_id";
    match region.source {
        Source::Devices => format!(
            "SELECT {}, {licenses}{key} FROM devices d \
             JOIN licenses l ON l.id = d.license_id {configurations}",
            device_columns!()
        ),
        Source::Licenses => format!(
            "SELECT {}, {licenses}{key} FROM {} \
             LEFT JOIN devices d ON d.license_id = l.id AND d.ended_at IS NULL {configurations}",
            device_columns!(),
            licenses_table(region, unheld_hint)
        ),
        Source::Unheld => format!(
            "SELECT {licenses} FROM {}",
            licenses_table(region, unheld_hint)
        ),
    }
}

/// The tables a region's count reads: only those its conditions name. A count reads up to
/// [`FleetQuery::COUNT_BOUND`] rows, so a join it does not need would cost a lookup per row.
fn counted_tables(region: Region, filter: &FleetFilter, unheld_hint: &str) -> String {
    match region.source {
        Source::Devices => {
            let mut tables = String::from("devices d");
            if region.status.is_some() {
                tables.push_str(" JOIN licenses l ON l.id = d.license_id");
            }
            if filter.revision.is_some() {
                tables.push_str(" LEFT JOIN configurations c ON c.id = d.config_id");
            }
            tables
        }
        // The rows of licenses with or without a device: a filter that concerns devices makes
        // the rows come from devices (`regions`), so the conditions name only the license.
        Source::Licenses | Source::Unheld => licenses_table(region, unheld_hint),
    }
}

/// A fleet row as read, with where it stands for a cursor.
struct Read {
    row: LicenseWithDevice,
    key: Option<KeyValue>,
    id: Uuid,
}

fn read_row(row: &impl Columns, region: Region) -> StoreResult<Read> {
    let (device, license_base) = match region.source {
        Source::Unheld => (None, 0),
        Source::Devices | Source::Licenses => {
            let held = get::<Option<Uuid>, _>(row, 0)?.is_some();
            let device = if held {
                Some(device_from_row_at(row, 0)?)
            } else {
                None
            };
            (device, DEVICE_COLUMN_COUNT)
        }
    };
    let license = license_from_row_at(row, license_base)?;
    let key_column = license_base + 7;
    let key = match region.key {
        None => None,
        Some(Key::Name) => Some(KeyValue::Text(get(row, key_column)?)),
        Some(Key::LastSeen | Key::PairedAt) => Some(KeyValue::Int(get(row, key_column)?)),
    };
    let id = match region.source {
        Source::Devices => device.as_ref().map_or(license.id.0, |device| device.id.0),
        Source::Licenses | Source::Unheld => license.id.0,
    };
    Ok(Read {
        row: LicenseWithDevice { license, device },
        key,
        id,
    })
}

/// A region's statement up to its `WHERE` (the filters, not the cursor), with its bound values;
/// and the same rows as `SELECT 1` from only the tables the filters need, for the count.
struct Filtered {
    sql: String,
    counted: String,
    /// The count's tables and the conditions, for a walk through a narrow index
    /// (`Backend::SEARCHED_DEVICES`, `Backend::ONLINE_DEVICES`).
    tables: String,
    conditions: String,
    built: Built,
}

/// `candidates`: a search's candidates, when it reads them alone ([`few_candidates`]).
fn filtered<B: Backend>(
    region: Region,
    query: &FleetQuery,
    org_id: OrgId,
    now: Timestamp,
    candidates: Option<&str>,
) -> Filtered {
    let unheld_hint = B::UNHELD_LICENSES;
    let mut built = Built::default();
    let now = built.bind(Bound::Int(now.0));
    let mut conditions = conditions(region, &query.filter, org_id, &now, &mut built);
    let mut select = select(region, &now, unheld_hint);
    let mut tables = counted_tables(region, &query.filter, unheld_hint);
    if let Some(candidates) = candidates
        && region.source == Source::Devices
    {
        let list = built.bind(Bound::Text(candidates.to_string()));
        // Each planner would rather walk the organization's devices (in the sort's order) and
        // look each up among the candidates, which reads every device when few match. SQLite,
        // with no index of the table to walk, reaches each candidate by its rowid; PostgreSQL,
        // given them as an array, looks each up by id.
        let key = candidate_key::<B>();
        let (condition, hint) = match B::WORD_INDEX {
            WordIndex::Fts5 => (
                format!("{key} IN (SELECT value FROM json_each({list}))"),
                "devices d NOT INDEXED",
            ),
            WordIndex::TsVector => (format!("{key} = ANY(CAST({list} AS uuid[]))"), "devices d"),
        };
        conditions.push(condition);
        select = select.replacen("devices d", hint, 1);
        tables = tables.replacen("devices d", hint, 1);
    }
    let conditions = conditions.join(" AND ");
    let mut sql = format!("{select} WHERE {conditions}");
    // The name sort's index is there for the statements that walk it by name (and a search's).
    if region.key == Some(Key::Name) {
        sql.push_str(B::BY_NAME);
    }
    let counted = format!("SELECT 1 FROM {tables} WHERE {conditions}");
    Filtered {
        sql,
        counted,
        tables,
        conditions,
        built,
    }
}

/// Counts the region's matching rows, up to `bound`.
fn count_statement(filtered: &Filtered, bound: u64) -> (String, Built) {
    let mut built = filtered.built.clone();
    let bound = built.bind(Bound::Int(i64::try_from(bound).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT COUNT(*) FROM ({} LIMIT {bound}) AS matching",
        filtered.counted
    );
    (sql, built)
}

/// What a list of candidates holds of each device: its rowid on SQLite, its id on PostgreSQL.
fn candidate_key<B: Backend>() -> &'static str {
    match B::WORD_INDEX {
        WordIndex::Fts5 => "d.rowid",
        WordIndex::TsVector => "d.id",
    }
}

/// A region's order: its key, then the id (unique), both ways the same.
fn sort_clause(region: Region, descending: bool) -> String {
    let order = if descending { "DESC" } else { "ASC" };
    let id = region.id();
    match region.key {
        Some(key) => format!("{} {order}, {id} {order}", key.expression()),
        None => format!("{id} {order}"),
    }
}

/// The first page of a search that reads its candidates alone, in one statement over the
/// tables its conditions name: the ids of its first `wanted` rows in order, each with how many
/// match in all (at most [`FEW_CANDIDATES`], so exact). The page then reads those rows alone.
fn first_ids_statement<B: Backend>(
    filtered: &Filtered,
    region: Region,
    descending: bool,
    wanted: usize,
) -> (String, Built) {
    let mut built = filtered.built.clone();
    let wanted = built.bind(Bound::Int(i64::try_from(wanted).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {}, COUNT(*) OVER () FROM {} WHERE {} ORDER BY {} LIMIT {wanted}",
        candidate_key::<B>(),
        filtered.tables,
        filtered.conditions,
        sort_clause(region, descending)
    );
    (sql, built)
}

/// Up to `wanted` of the region's rows in order, after the cursor when it points into it.
fn page_statement(
    filtered: &Filtered,
    region: Region,
    descending: bool,
    after: Option<&Cursor>,
    wanted: usize,
) -> StoreResult<(String, Built)> {
    let mut built = filtered.built.clone();
    let mut sql = filtered.sql.clone();
    let beyond = if descending { "<" } else { ">" };
    let id = region.id();
    if let Some(cursor) = after {
        let cursor_id = built.bind(Bound::Uuid(cursor.id));
        match (region.key, &cursor.key) {
            (None, _) => sql.push_str(&format!(" AND {id} {beyond} {cursor_id}")),
            (Some(key), Some(value)) => {
                let value = built.bind(match value {
                    KeyValue::Int(value) => Bound::Int(*value),
                    KeyValue::Text(value) => Bound::Text(value.clone()),
                });
                sql.push_str(&format!(
                    " AND ({}, {id}) {beyond} ({value}, {cursor_id})",
                    key.expression()
                ));
            }
            (Some(_), None) => return Err(StoreError::InvalidInput("cursor")),
        }
    }
    let sort = sort_clause(region, descending);
    let wanted = built.bind(Bound::Int(i64::try_from(wanted).unwrap_or(i64::MAX)));
    sql.push_str(&format!(" ORDER BY {sort} LIMIT {wanted}"));
    Ok((sql, built))
}

/// The search's candidates: the devices whose entry in the word index has a word that begins
/// with each search word, with every unindexed device of the organization (whose entry is
/// missing or out of date, `rows::indexed_text`). Every device that matches the search is one:
/// an indexed device's words are its text's, cut where the search cuts. The search's own
/// conditions still decide, so a stale entry, another organization's device or an ended one
/// among them changes nothing. `None` when the index cannot be asked for these words (on
/// SQLite, a control character, which FTS5's query syntax does not take): the search reads
/// every device, as it did before the index.
fn candidates_select<B: Backend>(search: &str, org_id: OrgId, built: &mut Built) -> Option<String> {
    let words: Vec<&str> = search.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let unindexed = B::UNINDEXED;
    match B::WORD_INDEX {
        WordIndex::Fts5 => {
            if search.chars().any(char::is_control) {
                return None;
            }
            let phrases: Vec<String> = words
                .iter()
                .map(|word| format!("\"{}\"*", word.replace('"', "\"\"")))
                .collect();
            let matched = built.bind(Bound::Text(phrases.join(" AND ")));
            let org = built.bind(Bound::Uuid(org_id.0));
            Some(format!(
                "SELECT rowid FROM device_words WHERE device_words MATCH {matched} \
                 UNION ALL SELECT rowid FROM devices INDEXED BY devices_unindexed \
                 WHERE org_id = {org} AND {unindexed}"
            ))
        }
        WordIndex::TsVector => {
            let matches = lexeme_matches(&words, built);
            let org = built.bind(Bound::Uuid(org_id.0));
            Some(format!(
                "SELECT device_id FROM device_words WHERE {matches} \
                 UNION ALL SELECT id FROM devices \
                 WHERE org_id = {org} AND {unindexed}"
            ))
        }
    }
}

/// PostgreSQL's `device_words` rows whose words match every search word: each word as one
/// lexeme, lower-cased and cut as the index's are, quoted for `tsquery` (a quote and a
/// backslash doubled), as a prefix.
fn lexeme_matches(words: &[&str], built: &mut Built) -> String {
    let mut matches = Vec::new();
    for word in words {
        let word = built.bind(Bound::Text(word.to_string()));
        matches.push(format!(
            "words @@ ('''' || replace(replace(left(lower({word}), 500), '\\', '\\\\'), \
             '''', '''''') || ''':*')::tsquery"
        ));
    }
    matches.join(" AND ")
}

/// On PostgreSQL, the count of a search of common words and nothing else (more candidates than
/// are read alone), from the word index instead of the devices: the organization's entries
/// that match, less those of its unindexed devices (few: the duty's backlog; their entries may
/// be out of date), plus its unindexed devices that match by their text. Exact: an indexed
/// device's entry has its text's words (a search word of up to 200 bytes is never cut), and an
/// ended device is unindexed until its entry is gone. Counted up to the bound and the backlog,
/// so that a total past the bound is still known to be past it.
fn index_count_statement<B: Backend>(
    query: &FleetQuery,
    region: Region,
    filtered: &Filtered,
    org_id: OrgId,
    bound: u64,
) -> Option<(String, Built)> {
    let search = query.filter.search.as_deref()?;
    let only_search = FleetFilter {
        search: Some(search.to_string()),
        ..FleetFilter::default()
    };
    if B::WORD_INDEX != WordIndex::TsVector
        || query.filter != only_search
        || region.source != Source::Devices
        || region.status.is_some()
    {
        return None;
    }
    let words: Vec<&str> = search.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    // The unindexed devices that match by their text: the region's own count (`filtered`,
    // without candidates), among those. The backlog is read first, as an array, and its devices
    // looked up by id: the planner's idea of its size is as old as the last VACUUM (which alone
    // counts a partial index), and it would rather check every device of the organization
    // against it.
    let mut built = filtered.built.clone();
    let org = built.bind(Bound::Uuid(org_id.0));
    let unindexed = B::UNINDEXED;
    let backlog = format!("SELECT id FROM devices WHERE org_id = {org} AND {unindexed}");
    let matches = lexeme_matches(&words, &mut built);
    let bound = built.bind(Bound::Int(i64::try_from(bound).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM device_words \
         WHERE org_id = {org} AND {matches} \
         LIMIT {bound} + (SELECT COUNT(*) FROM ({backlog}) AS backlog)) AS indexed) \
         - (SELECT COUNT(*) FROM device_words WHERE org_id = {org} AND {matches} \
         AND device_id = ANY(ARRAY({backlog}))) \
         + (SELECT COUNT(*) FROM ({} AND d.id = ANY(ARRAY({backlog}))) AS unindexed)",
        filtered.counted
    );
    Some((sql, built))
}

/// Up to this many candidates, a search's statements read its candidates alone, and sort them;
/// past it (a common word), it is read as before (`narrow_walk`, or the sort's index), where its
/// matches are close together.
const FEW_CANDIDATES: u64 = 5_000;

/// Reads the search's candidates, up to one more than `few` ([`FEW_CANDIDATES`]): how many, and the
/// list of them as the backend reads it back (SQLite: their rowids, a JSON array; PostgreSQL:
/// their ids, an array's text). `None` without a search, or when the index cannot be asked for
/// its words.
fn candidates_statement<B: Backend>(
    org_id: OrgId,
    query: &FleetQuery,
    few: u64,
) -> Option<(String, Built)> {
    let mut built = Built::default();
    let select = candidates_select::<B>(query.filter.search.as_deref()?, org_id, &mut built)?;
    let bound = built.bind(Bound::Int(i64::try_from(few + 1).unwrap_or(i64::MAX)));
    let list = match B::WORD_INDEX {
        WordIndex::Fts5 => "json_group_array(rowid)",
        WordIndex::TsVector => "COALESCE(array_agg(device_id)::text, '{}')",
    };
    let sql = format!("SELECT COUNT(*), {list} FROM ({select} LIMIT {bound}) AS candidates");
    Some((sql, built))
}

/// The search's candidates (`candidates_statement`'s list), when there are few enough to read
/// them alone.
async fn few_candidates<B: Backend>(
    connection: &mut B::Connection,
    org_id: OrgId,
    query: &FleetQuery,
    few: u64,
) -> StoreResult<Option<String>> {
    let Some((sql, built)) = candidates_statement::<B>(org_id, query, few) else {
        return Ok(None);
    };
    let row = connection
        .fetch_one(sqlx::AssertSqlSafe(sql), &built.args())
        .await?;
    let counted: i64 = get(&row, 0)?;
    if u64::try_from(counted).unwrap_or(u64::MAX) > few {
        return Ok(None);
    }
    Ok(Some(get(&row, 1)?))
}

/// Past this many matches a search (or the online filter) is dense: its page walks the sort's
/// index (matches are near each other there); up to it, the matches are read by id and sorted.
const FEW_MATCHES: usize = 500;

/// The index hint for a walk through a narrow index of the organization's devices, when the
/// query's one region can take it: a search of devices (through the searched text's index) or
/// else a list of online devices (through the index of those alone), not split by license
/// status, not an export's chunk, on a backend that has that index.
fn narrow_walk<B: Backend>(
    query: &FleetQuery,
    regions: &[Region],
    candidates: bool,
) -> Option<(&'static str, &'static str)> {
    if candidates {
        return None;
    }
    let hint = if query.filter.search.is_some() {
        B::SEARCHED_DEVICES?
    } else if query.filter.online == Some(true) {
        B::ONLINE_DEVICES?
    } else {
        return None;
    };
    match regions {
        [region]
            if !query.export && region.source == Source::Devices && region.status.is_none() =>
        {
            Some(hint)
        }
        _ => None,
    }
}

/// `filtered`'s rows through a narrow index (`index`: its hint and its term), in one walk: the
/// matching devices' ids, at most `few`, each with how many match (up to `bound`). The count
/// reads the walk to its end (or to `bound`); only the first `few` ids leave the database.
fn walk_statement(
    filtered: &Filtered,
    (hint, term): (&str, &str),
    few: usize,
    bound: u64,
) -> (String, Built) {
    let mut built = filtered.built.clone();
    let bound = built.bind(Bound::Int(i64::try_from(bound).unwrap_or(i64::MAX)));
    let few = built.bind(Bound::Int(i64::try_from(few).unwrap_or(i64::MAX)));
    let tables = filtered
        .tables
        .replacen("devices d", &format!("devices d {hint}"), 1);
    let sql = format!(
        "SELECT id, COUNT(*) OVER () FROM (SELECT d.id FROM {tables} WHERE {} AND {term} \
         LIMIT {bound}) AS walked LIMIT {few}",
        filtered.conditions
    );
    (sql, built)
}

/// Reads one page of a fleet list.
pub(crate) async fn read<B: Backend>(
    store: &SqlStore<B>,
    org_id: OrgId,
    query: &FleetQuery,
    now: Timestamp,
) -> StoreResult<CountedPage<LicenseWithDevice>> {
    read_asking::<B>(store, org_id, query, now, true, FEW_CANDIDATES).await
}

/// [`read`], asking the word index for a search's candidates or not (the tests compare the
/// two).
async fn read_asking<B: Backend>(
    store: &SqlStore<B>,
    org_id: OrgId,
    query: &FleetQuery,
    now: Timestamp,
    ask_index: bool,
    few: u64,
) -> StoreResult<CountedPage<LicenseWithDevice>> {
    let regions = regions(query);
    let limit = query.page.effective_limit() as usize;
    let start = match &query.page.after {
        Some(text) => Some(Cursor::decode(text, query, regions.len())?),
        None => None,
    };
    // An export's chunk: through the export connections (see `SqlStore::exports`), uncounted.
    let pool = if query.export {
        &store.exports
    } else {
        &store.readers
    };
    let mut transaction = pool
        .begin_with(B::BEGIN_FLEET_READ)
        .await
        .map_err(B::map_error)?;
    let connection = &mut *transaction;
    let mut rows: Vec<(usize, Read)> = Vec::new();
    let mut total = 0u64;
    let candidates = if ask_index && !query.export {
        few_candidates::<B>(connection, org_id, query, few).await?
    } else {
        None
    };
    // A search of common words: on PostgreSQL its count comes from the word index.
    let index_count = ask_index && !query.export && candidates.is_none();
    let narrow = narrow_walk::<B>(query, &regions, candidates.is_some());
    for (index, region) in regions.iter().copied().enumerate() {
        let mut filtered = filtered::<B>(region, query, org_id, now, candidates.as_deref());
        // A search reads every device of the organization: through the searched text's index,
        // once; the online filter reads the online devices through the index of those alone.
        // One walk of it reads their ids and counts them. Few matches: the page is read among
        // them, by id. More: the page walks the sort's index.
        // A search with few candidates, its first page of one region of devices: the page's
        // ids and the count in one statement, then the page read among those ids.
        if candidates.is_some()
            && start.is_none()
            && regions.len() == 1
            && region.source == Source::Devices
        {
            let (first, built) =
                first_ids_statement::<B>(&filtered, region, query.descending, limit + 1);
            let found = connection
                .fetch_all(sqlx::AssertSqlSafe(first), &built.args())
                .await?;
            if let Some(row) = found.first() {
                total += u64::try_from(get::<i64, _>(row, 1)?).unwrap_or(0);
            }
            // The page reads those rows alone, as it would read candidates.
            let keys = found
                .iter()
                .map(|row| match B::WORD_INDEX {
                    WordIndex::Fts5 => get::<i64, _>(row, 0).map(|rowid| rowid.to_string()),
                    WordIndex::TsVector => get::<Uuid, _>(row, 0).map(|id| id.to_string()),
                })
                .collect::<StoreResult<Vec<String>>>()?
                .join(",");
            let list = match B::WORD_INDEX {
                WordIndex::Fts5 => format!("[{keys}]"),
                WordIndex::TsVector => format!("{{{keys}}}"),
            };
            filtered = self::filtered::<B>(region, query, org_id, now, Some(&list));
        } else if let Some(index) = narrow {
            let (walk, built) =
                walk_statement(&filtered, index, FEW_MATCHES, FleetQuery::COUNT_BOUND + 1);
            let found = connection
                .fetch_all(sqlx::AssertSqlSafe(walk), &built.args())
                .await?;
            let matching = match found.first() {
                Some(row) => u64::try_from(get::<i64, _>(row, 1)?).unwrap_or(0),
                None => 0,
            };
            total += matching;
            if matching <= FEW_MATCHES as u64 {
                let ids = found
                    .iter()
                    .map(|row| get::<Uuid, _>(row, 0))
                    .collect::<StoreResult<Vec<Uuid>>>()?;
                let list = filtered.built.bind(Bound::Ids(ids));
                filtered
                    .sql
                    .push_str(&B::ID_IN_LIST.replace("{list}", &list));
            }
        } else if let Some((count, built)) = index_count
            .then(|| {
                index_count_statement::<B>(
                    query,
                    region,
                    &filtered,
                    org_id,
                    FleetQuery::COUNT_BOUND + 1 - total,
                )
            })
            .flatten()
        {
            let counted: i64 = connection
                .fetch_one(sqlx::AssertSqlSafe(count), &built.args())
                .await
                .and_then(|row| get(&row, 0))?;
            total += u64::try_from(counted).unwrap_or(0);
        } else if !query.export && total <= FleetQuery::COUNT_BOUND {
            // Past the bound the total is "more than" whatever the later regions hold.
            let (count, built) = count_statement(&filtered, FleetQuery::COUNT_BOUND + 1 - total);
            let counted: i64 = connection
                .fetch_one(sqlx::AssertSqlSafe(count), &built.args())
                .await
                .and_then(|row| get(&row, 0))?;
            total += u64::try_from(counted).unwrap_or(0);
        }

        let wanted = limit + 1 - rows.len().min(limit + 1);
        let before_cursor = start.as_ref().is_some_and(|cursor| index < cursor.region);
        if wanted == 0 || before_cursor {
            continue;
        }
        let after = start.as_ref().filter(|cursor| cursor.region == index);
        let (page, built) = page_statement(&filtered, region, query.descending, after, wanted)?;
        let read = connection
            .fetch_all(sqlx::AssertSqlSafe(page), &built.args())
            .await?;
        for row in &read {
            rows.push((index, read_row(row, region)?));
        }
    }
    // Read only: ending it either way changes nothing.
    transaction.rollback().await.map_err(B::map_error)?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(region, last)| {
            Cursor {
                sort: sort_name(query),
                region: *region,
                key: last.key.clone(),
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(CountedPage {
        items: rows.into_iter().map(|(_, read)| read.row).collect(),
        next_cursor,
        total: total.min(FleetQuery::COUNT_BOUND),
        total_exact: total <= FleetQuery::COUNT_BOUND,
    })
}

/// The ids of the organization's rows that match `filter` at `now`, in id order: its active
/// devices (`FleetRows::Devices`) or its licenses (`FleetRows::Licenses`), read inside a bulk
/// command's transaction. The conditions are the lists' own ([`conditions`], over the tables
/// [`counted_tables`] joins), so that a filter selects exactly the rows its list shows.
pub(crate) async fn matching_ids<B: Backend>(
    tx: &mut SqlTx<B>,
    org_id: OrgId,
    rows: FleetRows,
    filter: &FleetFilter,
    now: Timestamp,
) -> StoreResult<Vec<Uuid>> {
    let query = FleetQuery {
        rows,
        filter: filter.clone(),
        sort: FleetSort::Id,
        descending: false,
        page: Default::default(),
        export: false,
    };
    // Sorted by id, a query is one region, or none when nothing can match.
    let Some(region) = regions(&query).into_iter().next() else {
        return Ok(Vec::new());
    };
    let filtered = filtered::<B>(region, &query, org_id, now, None);
    let id = match (region.source, rows) {
        (Source::Devices, FleetRows::Devices) => "d.id",
        // A license held by a matching device.
        (Source::Devices, FleetRows::Licenses) => "d.license_id",
        (Source::Licenses | Source::Unheld, _) => "l.id",
    };
    let sql = filtered
        .counted
        .replacen("SELECT 1 ", &format!("SELECT {id} "), 1);
    tx.tx
        .read_all(
            sqlx::AssertSqlSafe(format!("{sql} ORDER BY {id}")),
            &filtered.built.args(),
            |row| get(row, 0),
        )
        .await
}

#[cfg(test)]
mod tests {
    //! The plans of the fleet statements: every table a statement reads is reached through an
    //! index with the organization (or a row's key) as its constraint, never scanned whole, on
    //! SQLite and on PostgreSQL with enough rows that a scan would be tempting.

    use engine::ids::{CodeId, ConfigId};
    use engine::model::PageRequest;

    use engine::store::NodeStore as _;

    use super::*;
    use crate::rows::searched_text;
    use crate::{PgSettings, PgStore, SqliteSettings, SqliteStore};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    /// The queries whose plans are checked: every sort both ways, on both row kinds, and the
    /// main filters.
    fn queries() -> Vec<FleetQuery> {
        let mut queries = Vec::new();
        let filters = [
            FleetFilter::default(),
            FleetFilter {
                search: Some("van 7".into()),
                ..FleetFilter::default()
            },
            FleetFilter {
                license_status: Some(LicenseStatus::Free),
                ..FleetFilter::default()
            },
            FleetFilter {
                online: Some(false),
                not_seen_since: Some(NOW),
                ..FleetFilter::default()
            },
            FleetFilter {
                online: Some(true),
                ..FleetFilter::default()
            },
            FleetFilter {
                configuration: Some(ConfigId::generate()),
                ..FleetFilter::default()
            },
            FleetFilter {
                revision: Some(RevisionState::Pending),
                app_version: Some("4.2.1".into()),
                paired_by: Some(CodeId::generate()),
                ..FleetFilter::default()
            },
        ];
        for rows in [FleetRows::Licenses, FleetRows::Devices] {
            for filter in &filters {
                for sort in [
                    FleetSort::Id,
                    FleetSort::Name,
                    FleetSort::LastSeen,
                    FleetSort::PairedAt,
                    FleetSort::Status,
                ] {
                    for descending in [false, true] {
                        queries.push(FleetQuery {
                            rows,
                            filter: filter.clone(),
                            sort,
                            descending,
                            page: PageRequest::first(50),
                            export: false,
                        });
                    }
                }
            }
        }
        queries
    }

    /// Every statement a query may run: each region's count, its first page, and its page after
    /// a cursor in it.
    fn statements<B: Backend>(query: &FleetQuery, org_id: OrgId) -> Vec<(String, Built)> {
        let mut statements = Vec::new();
        let regions = regions(query);
        statements.extend(candidates_statement::<B>(org_id, query, FEW_CANDIDATES));
        if let [region] = regions.as_slice() {
            let filtered = filtered::<B>(*region, query, org_id, NOW, None);
            statements.extend(index_count_statement::<B>(
                query,
                *region,
                &filtered,
                org_id,
                FleetQuery::COUNT_BOUND + 1,
            ));
        }
        let list = match B::WORD_INDEX {
            WordIndex::Fts5 => "[1, 2]".to_string(),
            WordIndex::TsVector => format!("{{{}, {}}}", Uuid::now_v7(), Uuid::now_v7()),
        };
        let mut choices = vec![None];
        if query.filter.search.is_some() {
            choices.push(Some(list.as_str()));
        }
        for candidates in choices {
            statements.extend(statements_of::<B>(query, org_id, &regions, candidates));
        }
        statements
    }

    /// [`statements`] with candidates read alone or not.
    fn statements_of<B: Backend>(
        query: &FleetQuery,
        org_id: OrgId,
        regions: &[Region],
        candidates: Option<&str>,
    ) -> Vec<(String, Built)> {
        let mut statements = Vec::new();
        if let (Some(_), [region]) = (candidates, regions)
            && region.source == Source::Devices
        {
            // The first page's ids and count.
            let filtered = filtered::<B>(*region, query, org_id, NOW, candidates);
            statements.push(first_ids_statement::<B>(
                &filtered,
                *region,
                query.descending,
                51,
            ));
        }
        if let Some(index) = narrow_walk::<B>(query, regions, candidates.is_some()) {
            // The walk through a narrow index, and a page among the few it found.
            let mut filtered = filtered::<B>(regions[0], query, org_id, NOW, candidates);
            statements.push(walk_statement(&filtered, index, 500, 10_001));
            let list = filtered.built.bind(Bound::Ids(vec![Uuid::now_v7()]));
            filtered
                .sql
                .push_str(&B::ID_IN_LIST.replace("{list}", &list));
            statements.push(
                page_statement(&filtered, regions[0], query.descending, None, 51)
                    .expect("a statement"),
            );
        }
        for (index, region) in regions.iter().copied().enumerate() {
            let filtered = filtered::<B>(region, query, org_id, NOW, candidates);
            statements.push(count_statement(&filtered, FleetQuery::COUNT_BOUND + 1));
            let cursor = Cursor {
                sort: sort_name(query),
                region: index,
                key: region.key.map(|key| match key {
                    Key::Name => KeyValue::Text("van".into()),
                    Key::LastSeen | Key::PairedAt => KeyValue::Int(NOW.0),
                }),
                id: Uuid::now_v7(),
            };
            for after in [None, Some(&cursor)] {
                statements.push(
                    page_statement(&filtered, region, query.descending, after, 51)
                        .expect("a statement"),
                );
            }
        }
        statements
    }

    #[tokio::test]
    async fn on_sqlite_every_table_is_reached_through_an_index() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("plans.db")))
            .await
            .expect("the database");
        let mut connection = store.reader().await.expect("a reader");
        let org_id = OrgId::generate();
        let mut problems = Vec::new();
        for query in queries() {
            for (sql, built) in statements::<sqlx::Sqlite>(&query, org_id) {
                let plan = connection
                    .fetch_all(
                        sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")),
                        &built.args(),
                    )
                    .await
                    .unwrap_or_else(|error| panic!("{error}: {sql}"));
                let lines: Vec<String> = plan
                    .iter()
                    .map(|row| get(row, 3).unwrap_or_default())
                    .collect();
                for line in &lines {
                    // A table of the statement (d, l or c) is searched with a constraint;
                    // the count's subquery (`matching`), and a narrow walk's under its
                    // window, are scanned as they come.
                    // A list of ids bound to the statement is scanned as it comes too.
                    let table_scan = line.starts_with("SCAN ")
                        && !line.starts_with("SCAN matching")
                        && !line.starts_with("SCAN candidates")
                        && !line.starts_with("SCAN (subquery")
                        && !line.starts_with("SCAN json_each")
                        && !line.starts_with("SCAN device_words VIRTUAL TABLE");
                    // The online devices' index serves only the statements that name it.
                    let stray_online_index = line.contains("devices_online")
                        && !sql.contains("INDEXED BY devices_online");
                    let sorted_whole = query.filter == FleetFilter::default()
                        && query.sort != FleetSort::Status
                        && line.contains("TEMP B-TREE");
                    if table_scan || sorted_whole || stray_online_index {
                        problems.push(format!("{query:?}\n  {line}\n  {sql}"));
                    }
                }
                // A search that reads its candidates alone reaches each by its rowid (not by
                // walking the organization's devices and looking each up in the list).
                if sql.contains("d.rowid IN (SELECT value FROM json_each")
                    && !lines
                        .iter()
                        .any(|line| line.contains("SEARCH d USING INTEGER PRIMARY KEY (rowid=?)"))
                {
                    problems.push(format!("{query:?}\n  {}\n  {sql}", lines.join("\n  ")));
                }
                // A configuration's devices are counted through the index of configurations,
                // not by walking every device of the organization.
                if query.filter.configuration.is_some()
                    && sql.starts_with("SELECT COUNT(*)")
                    && !lines
                        .iter()
                        .any(|line| line.contains("INDEX devices_by_config"))
                {
                    problems.push(format!("{query:?}\n  {}\n  {sql}", lines.join("\n  ")));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }

    /// The walks through the narrow indexes (a search, the online filter) answer what the rows
    /// say whether few or many match: on SQLite, 1,200 devices, every second one online, named
    /// "Van 1" to "Van 1200", each list read to its end by name, page after page.
    #[tokio::test]
    async fn on_sqlite_few_and_many_matches_of_a_narrow_walk_are_all_listed_once_in_order() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("walks.db")))
            .await
            .expect("the database");
        let org_id = OrgId::generate();
        for sql in [
            "INSERT INTO organizations (id, name, created_at) VALUES (?1, 'Fleet', 0)",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) \
             INSERT INTO licenses (id, org_id, purchased_at) SELECT randomblob(16), ?1, i FROM n",
            "INSERT INTO devices (id, org_id, installation_id, credential_hash, license_id, \
             name, model, os, app_version, paired_at, last_seen, online_conn) \
             SELECT randomblob(16), ?1, randomblob(16), randomblob(32), l.id, \
             'Van ' || l.purchased_at, 'TC52', 'Android', '4.2.1', l.purchased_at, \
             l.purchased_at, CASE WHEN l.purchased_at % 2 = 0 THEN l.purchased_at END \
             FROM licenses l WHERE l.org_id = ?1",
            "UPDATE licenses SET device_id = \
             (SELECT d.id FROM devices d WHERE d.license_id = licenses.id) WHERE org_id = ?1",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(org_id.0)
                .execute(&store.writer)
                .await
                .unwrap_or_else(|error| panic!("{error}: {sql}"));
        }
        let van = |i: u32| format!("Van {i}");
        let cases: [(Option<&str>, Option<bool>, Vec<u32>); 4] = [
            // Many: counted through the index, each page walks the name index.
            (Some("van"), None, (1..=1200).collect()),
            (
                None,
                Some(true),
                (1..=1200).filter(|i| i % 2 == 0).collect(),
            ),
            // Few (312, 156; no other field has a word beginning with 1): read among their ids.
            (
                Some("van 1"),
                None,
                (1..=1200)
                    .filter(|i| van(*i).starts_with("Van 1"))
                    .collect(),
            ),
            (
                Some("van 1"),
                Some(true),
                (1..=1200)
                    .filter(|i| i % 2 == 0 && van(*i).starts_with("Van 1"))
                    .collect(),
            ),
        ];
        for (search, online, expected) in cases {
            let mut expected: Vec<String> = expected.into_iter().map(van).collect();
            expected.sort_by_key(|name| name.to_lowercase());
            let mut query = FleetQuery {
                rows: FleetRows::Devices,
                filter: FleetFilter {
                    search: search.map(str::to_string),
                    online,
                    ..FleetFilter::default()
                },
                sort: FleetSort::Name,
                descending: false,
                page: PageRequest::first(50),
                export: false,
            };
            let mut names = Vec::new();
            loop {
                let page = read(&store, org_id, &query, NOW).await.expect("a page");
                assert_eq!(page.total, expected.len() as u64, "{search:?} {online:?}");
                assert!(page.total_exact);
                names.extend(
                    page.items
                        .into_iter()
                        .map(|row| row.device.expect("a device").name),
                );
                match page.next_cursor {
                    Some(cursor) => query.page.after = Some(cursor),
                    None => break,
                }
            }
            assert_eq!(names, expected, "{search:?} {online:?}");
        }
    }

    /// Devices whose names, models and notes test where a word begins and ends: quotes, the
    /// characters of `LIKE` and of FTS5's query syntax, letters beyond ASCII, a tab, words
    /// longer than a lexeme may be, the last character of Unicode.
    fn word_cases() -> Vec<(String, Option<String>, Option<String>)> {
        let mut cases: Vec<(String, Option<String>, Option<String>)> = vec![
            ("Van 12".into(), None, None),
            ("van12".into(), Some("Delivery van 3".into()), None),
            (
                "Meter reader 9".into(),
                None,
                Some("basement, \"north\" wing".into()),
            ),
            ("O'Brien \"quoted\" 100% a_b back\\slash".into(), None, None),
            ("Ärger Österreich İstanbul".into(), None, None),
            (
                "tab\tname  double  space".into(),
                None,
                Some("AND OR NOT * ^ : ( )".into()),
            ),
            (format!("{} long", "x".repeat(600)), None, None),
            ("🚐 a-b.c \u{10FFFF}end top\u{10FFFF}".into(), None, None),
        ];
        for i in 0..40 {
            cases.push((format!("Truck {i}"), None, None));
        }
        cases
    }

    const WORD_SEARCHES: &[&str] = &[
        "van",
        "VAN 1",
        "van 12",
        "van1",
        "meter 9",
        "delivery",
        "o'b",
        "\"quo",
        "\"",
        "100%",
        "%",
        "a_b",
        "_",
        "\\",
        "back\\",
        "är",
        "ÄR",
        "öst",
        "i̇st",
        "tab",
        "name",
        "double",
        "and",
        "or not",
        "*",
        "^",
        ":",
        "(",
        "north",
        "wing",
        "🚐",
        "a-b",
        "-b",
        "b.c",
        ".c",
        "\u{10FFFF}",
        "\u{10FFFF}end",
        "top",
        "top\u{10FFFF}",
        "x",
        "zzz",
        "truck",
        "truck 3",
        "tc52",
        "android 13",
        "4.2",
        "4.2.1 van",
        "end",
    ];

    /// Every list of `WORD_SEARCHES`, read to its end by name: its first page's total and the
    /// device names, in order. `few`: as `FEW_CANDIDATES` (0 reads every search as a search of
    /// common words).
    async fn every_search<B: Backend>(
        store: &SqlStore<B>,
        org_id: OrgId,
        ask_index: bool,
        few: u64,
    ) -> Vec<(String, u64, Vec<String>)> {
        let mut lists = Vec::new();
        for search in WORD_SEARCHES.iter().copied().chain([
            "x".repeat(499).as_str(),
            "x".repeat(500).as_str(),
            "x".repeat(550).as_str(),
        ]) {
            let mut query = FleetQuery {
                rows: FleetRows::Devices,
                filter: FleetFilter {
                    search: Some(search.to_string()),
                    ..FleetFilter::default()
                },
                sort: FleetSort::Name,
                descending: false,
                page: PageRequest::first(7),
                export: false,
            };
            let mut names = Vec::new();
            let mut total = None;
            loop {
                let page = read_asking(store, org_id, &query, NOW, ask_index, few)
                    .await
                    .unwrap_or_else(|error| panic!("{search:?}: {error}"));
                total.get_or_insert(page.total);
                names.extend(page.items.into_iter().map(|row| {
                    let device = row.device.expect("a device");
                    device.admin_name.unwrap_or(device.name)
                }));
                match page.next_cursor {
                    Some(cursor) => query.page.after = Some(cursor),
                    None => break,
                }
            }
            lists.push((search.to_string(), total.unwrap_or_default(), names));
        }
        lists
    }

    /// Every search through the index, as few candidates and as a search of common words,
    /// answers `truth` (read without it).
    async fn read_through_the_index_as<B: Backend>(
        store: &SqlStore<B>,
        org_id: OrgId,
        truth: &[(String, u64, Vec<String>)],
        when: &str,
    ) {
        for few in [FEW_CANDIDATES, 0] {
            let lists = every_search(store, org_id, true, few).await;
            assert_eq!(lists, truth, "{when}, few = {few}");
        }
    }

    /// The word index finds what a search of the devices' text finds, whatever their words,
    /// before the words duty has run, after it, after devices were renamed, re-noted and
    /// unpaired (their entries out of date until it runs again), and after it ran again; and
    /// never a device of another organization with the same words.
    async fn the_word_index_finds_what_the_text_says<B: Backend>(store: &SqlStore<B>) {
        let org_id = OrgId::generate();
        let mut connection = store.writer().await.expect("a connection");
        let mut devices = Vec::new();
        for (org, offset) in [(org_id, 0), (OrgId::generate(), 1_000)] {
            connection
                .execute(
                    "INSERT INTO organizations (id, name, created_at) VALUES ($1, 'Fleet', 0)",
                    &[org.0.into()],
                )
                .await
                .expect("an organization");
            for (i, (name, admin_name, notes)) in word_cases().into_iter().enumerate() {
                let (license, device) = (Uuid::now_v7(), Uuid::now_v7());
                let at = offset + i64::try_from(i).expect("small");
                connection
                    .execute(
                        "INSERT INTO licenses (id, org_id, purchased_at) VALUES ($1, $2, 0)",
                        &[license.into(), org.0.into()],
                    )
                    .await
                    .expect("a license");
                connection
                    .execute(
                        "INSERT INTO devices (id, org_id, installation_id, credential_hash, \
                         license_id, name, model, os, app_version, paired_at, last_seen, \
                         admin_name, notes) VALUES ($1, $2, $3, $4, $5, $6, 'TC52', \
                         'Android 13', '4.2.1', $7, $7, $8, $9)",
                        &[
                            device.into(),
                            org.0.into(),
                            Uuid::now_v7().into(),
                            Arg::Bytes(Some(&[0; 32])),
                            license.into(),
                            Arg::Text(Some(&name)),
                            at.into(),
                            Arg::Text(admin_name.as_deref()),
                            Arg::Text(notes.as_deref()),
                        ],
                    )
                    .await
                    .expect("a device");
                connection
                    .execute(
                        "UPDATE licenses SET device_id = $1 WHERE id = $2",
                        &[device.into(), license.into()],
                    )
                    .await
                    .expect("the license held");
                if org == org_id {
                    devices.push(device);
                }
            }
        }
        // On SQLite the one writer connection: the duty needs it.
        drop(connection);
        let truth = every_search(store, org_id, false, FEW_CANDIDATES).await;
        assert_eq!(
            truth
                .iter()
                .find(|(search, _, _)| search == "van")
                .map(|(_, total, names)| (*total, names.len())),
            Some((2, 2)),
            "{truth:?}"
        );
        read_through_the_index_as(store, org_id, &truth, "before the duty").await;
        let indexed = store.index_words(1_000).await.expect("indexed");
        assert_eq!(indexed, 2 * word_cases().len() as u64);
        assert_eq!(store.index_words(1_000).await.expect("nothing left"), 0);
        read_through_the_index_as(store, org_id, &truth, "indexed").await;

        // What a reconnection, an admin's edit and an unpairing write: the index is out of date.
        let mut connection = store.writer().await.expect("a connection");
        for (sql, device) in [
            (
                "UPDATE devices SET name = 'Tanker 77' WHERE id = $1",
                devices[0],
            ),
            (
                "UPDATE devices SET admin_name = 'Spare van' WHERE id = $1",
                devices[3],
            ),
            (
                "UPDATE devices SET notes = 'north yard' WHERE id = $1",
                devices[8],
            ),
            (
                "UPDATE devices SET ended_at = 5, end_reason = 'unpaired' WHERE id = $1",
                devices[1],
            ),
        ] {
            connection
                .execute(sqlx::AssertSqlSafe(sql), &[device.into()])
                .await
                .unwrap_or_else(|error| panic!("{error}: {sql}"));
        }
        drop(connection);
        let truth = every_search(store, org_id, false, FEW_CANDIDATES).await;
        read_through_the_index_as(store, org_id, &truth, "out of date").await;
        assert_eq!(store.index_words(1_000).await.expect("indexed again"), 4);
        read_through_the_index_as(store, org_id, &truth, "indexed again").await;
    }

    #[tokio::test]
    async fn on_sqlite_the_word_index_finds_what_the_text_says() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("words.db")))
            .await
            .expect("the database");
        the_word_index_finds_what_the_text_says(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_the_word_index_finds_what_the_text_says() {
        let (_cluster, store) = postgres_store().await;
        the_word_index_finds_what_the_text_says(&store).await;
    }

    /// A store on a database of its own, on a throwaway cluster (kept while the store is used).
    async fn postgres_store() -> (pgtemp::Cluster, PgStore) {
        let cluster = pgtemp::Cluster::start().expect("a PostgreSQL cluster");
        let (cluster, url) = tokio::task::spawn_blocking(move || {
            let url = cluster.create_database().expect("a database");
            (cluster, url)
        })
        .await
        .expect("create a database");
        let store = PgStore::open(&PgSettings::new(url))
            .await
            .expect("the store");
        (cluster, store)
    }

    /// The searched text over `devices d` and over the table unaliased are the same text.
    #[test]
    fn the_searched_text_is_one_text() {
        assert_eq!(SEARCHED_TEXT.replace("d.", ""), searched_text!());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_with_many_rows_no_table_is_scanned_whole() {
        let (_cluster, store) = postgres_store().await;
        // Two organizations of 20,000 licenses each, 15,000 of them held by a device, so that
        // a scan of a whole table would cost what it does in a real fleet.
        let org_id = OrgId::generate();
        let mut connection = store.reader().await.expect("a connection");
        for org in [org_id, OrgId::generate()] {
            let config = ConfigId::generate();
            for sql in [
                "INSERT INTO organizations (id, name, created_at) VALUES ($1, 'Fleet', 0)",
                "INSERT INTO configurations (id, org_id, name, body, revision, created_at, \
                 updated_at) VALUES ($2, $1, 'Meters', '[GLOBAL]', 3, 0, 0)",
                "INSERT INTO licenses (id, org_id, purchased_at) \
                 SELECT gen_random_uuid(), $1, i FROM generate_series(1, 20000) AS i",
                "INSERT INTO devices (id, org_id, installation_id, credential_hash, license_id, \
                 name, model, os, app_version, paired_at, config_id, last_seen, online_conn) \
                 SELECT gen_random_uuid(), $1, gen_random_uuid(), \
                 decode(md5(l.id::text) || md5(l.id::text), 'hex'), l.id, \
                 'Van ' || l.purchased_at, 'TC52', 'Android 13', '4.2.1', l.purchased_at, $2, \
                 l.purchased_at, CASE WHEN l.purchased_at % 3 = 0 THEN l.purchased_at END \
                 FROM licenses l WHERE l.org_id = $1 AND l.purchased_at <= 15000",
                "UPDATE licenses l SET device_id = d.id FROM devices d \
                 WHERE d.license_id = l.id AND l.org_id = $1",
            ] {
                connection
                    .execute(sqlx::AssertSqlSafe(sql), &[org.0.into(), config.0.into()])
                    .await
                    .unwrap_or_else(|error| panic!("{error}: {sql}"));
            }
        }
        // Their words indexed, as the words duty does.
        while store.index_words(10_000).await.expect("indexed") > 0 {}
        connection
            .execute("ANALYZE", &[])
            .await
            .expect("fresh statistics");
        drop(connection);
        // Planned as the fleet read plans them: in its transaction.
        let mut transaction = store
            .readers
            .begin_with(<sqlx::Postgres as Backend>::BEGIN_FLEET_READ)
            .await
            .expect("a read transaction");
        let connection = &mut *transaction;
        let mut problems = Vec::new();
        for query in queries() {
            for (sql, built) in statements::<sqlx::Postgres>(&query, org_id) {
                let plan = connection
                    .fetch_all(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")), &built.args())
                    .await
                    .unwrap_or_else(|error| panic!("{error}: {sql}"));
                let lines: Vec<String> = plan
                    .iter()
                    .map(|row| get::<String, _>(row, 0).unwrap_or_default())
                    .collect();
                // A search that reads its candidates alone looks each up by its id (its first
                // page: after a cursor, walking on from it may well be the shorter read).
                let after_cursor = [", d.id) > (", ", d.id) < (", "d.id > $", "d.id < $"]
                    .iter()
                    .any(|cursor| sql.contains(cursor));
                let candidates_walked = sql.contains("d.id = ANY(CAST(")
                    && !after_cursor
                    && !lines
                        .iter()
                        .any(|line| line.contains("Index Cond") && line.contains("id = ANY"));
                if candidates_walked
                    || lines.iter().any(|line| {
                        line.contains("Seq Scan on devices")
                            || line.contains("Seq Scan on licenses")
                    })
                {
                    problems.push(format!("{query:?}\n{}\n  {sql}", lines.join("\n")));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}
