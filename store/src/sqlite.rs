//! The SQLite backend: one node on one database file.
//!
//! - WAL journal, `synchronous=FULL` by default (a commit is on disk before any device is told
//!   "paired"), a busy timeout so that two processes on one file wait for each other instead of
//!   failing.
//! - One writer connection (SQLite has one writer at a time; a pool of writers would only queue on
//!   the file lock) and a small pool of readers, which WAL lets run beside the writer.
//! - Write transactions start with `BEGIN IMMEDIATE`: the write lock is taken up front, so a
//!   transaction that reads and then writes never fails as busy halfway. That lock is also why
//!   this backend locks no rows: the reads PostgreSQL takes `FOR UPDATE` are plain reads here.
//! - Set-based statements take their rows as one JSON array parameter expanded with `json_each`
//!   (ids as hex, decoded with `unhex`). Many `?NNN` placeholders in one statement cost sqlx time
//!   quadratic in their number; one parameter keeps a 2,000-row batch one cheap statement.
//!
//! The SQL both backends share is not here (see `backend`): this file holds how SQLite is opened
//! and closed, how values and lists are bound, the batch statements (`batch_sql`) and the writes
//! that bind their rows as JSON or blobs, and the one-node answers to the cluster duties
//! (presence is reset at start-up; no heartbeats, no notifications).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use data_encoding::HEXLOWER;
use engine::events::OrgEvent;
use engine::ids::{CodeId, DeviceId, LicenseId, OrgId, Timestamp};
use engine::store::{
    AckWrite, Change, ChangeFeed, Claim, DeviceTouch, FreeLicense, LicenseGrant, NewAudit,
    NewDevice, StoreError, StoreResult,
};
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::audit::{audit_columns, audit_of_device, audit_of_org_in_time, audit_of_server};
use crate::backend::{Arg, Backend, Binding, SqlStore, SqlTx, Statements as _, WordIndex};
use crate::paging::to_i64;
use crate::rows::{get, indexed_text, searched_text};
use crate::writes::{
    code_state_for_revocation, config_devices_for_delete, config_revision_for_edit,
    operator_tokens_for_revocation, organization_for_quota, pinned_configuration_for_delete,
};
use file::SqliteFile;

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives a crash of the process or of the machine.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process; a power loss or kernel
    /// crash may lose the last commits (never corrupts the database).
    Normal,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(format!("unknown durability {other:?}; use full or normal")),
        }
    }
}

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    pub path: PathBuf,
    pub durability: Durability,
    /// Reader connections beside the one writer.
    pub readers: u32,
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
}

impl SqliteSettings {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSettings {
            path: path.into(),
            durability: Durability::Full,
            readers: 4,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// The SQLite store.
pub type SqliteStore = SqlStore<Sqlite>;

// In a module of its own so that no other crate can name it: it appears in `Backend`'s impl.
mod file {
    /// What a SQLite store keeps beside its connections.
    #[derive(Debug)]
    pub struct SqliteFile {
        pub(super) checkpointer: super::Checkpointer,
        pub(super) path: std::path::PathBuf,
    }
}

/// Copies the write-ahead log back into the database file in the background, on a connection
/// of its own, so that no commit pays for a checkpoint (with SQLite's automatic checkpoints,
/// the commit that crosses the threshold does the whole copy and its fsync). A passive
/// checkpoint never blocks the writer; once it has copied everything, the next write
/// transaction starts the log over, so the log stays as large as one interval of writes.
#[derive(Debug)]
struct Checkpointer {
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    fn start(pool: SqlitePool, every: Duration) -> Checkpointer {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            // Failed checkpoints since the last one that worked: a full disk fails every one
            // until room is made, and a warning five times a second would fill the log (often
            // on that same disk), so the first failure and the recovery are logged.
            let mut failures = 0u64;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    Ok(_) if failures > 0 => {
                        tracing::warn!(failures, "checkpoints work again");
                        failures = 0;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if failures == 0 {
                            tracing::warn!(%error, "checkpoint failed; retrying quietly");
                        }
                        failures += 1;
                    }
                }
            }
            // At shutdown, fold the whole log into the database and truncate it.
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await;
            pool.close().await;
        });
        Checkpointer {
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The page cache of an export's connections, in KiB (a reader's is 32 MiB).
const EXPORT_CACHE_KIB: u32 = 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn open(settings: &SqliteSettings) -> StoreResult<SqliteStore> {
        if let Some(parent) = settings.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Unavailable(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&settings.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match settings.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768")
            // Checkpoints run on their own connection (see `Checkpointer`), not inside the
            // commit that happens to cross the WAL size threshold.
            .pragma("wal_autocheckpoint", "0");
        let writer = pool_options()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options.clone())
            .await
            .map_err(map_error)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|error| StoreError::Other(format!("migrations: {error}")))?;
        let checkpoints = pool_options()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options.clone())
            .await
            .map_err(map_error)?;
        let readers = pool_options()
            .max_connections(settings.readers.max(1))
            .min_connections(1)
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(map_error)?;
        // Opened when an export first reads, and closed when idle: a walk of the whole fleet
        // through a small page cache keeps the server's memory flat whatever the fleet's size
        // (its pages are in the OS's file cache anyway).
        let exports = pool_options()
            .max_connections(settings.readers.max(1))
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .acquire_timeout(settings.busy_timeout)
            .connect_lazy_with(
                options
                    .read_only(true)
                    .pragma("cache_size", format!("-{EXPORT_CACHE_KIB}")),
            );
        Ok(SqlStore {
            writer,
            readers,
            exports,
            extra: Arc::new(SqliteFile {
                checkpointer: Checkpointer::start(checkpoints, Duration::from_millis(200)),
                path: settings.path.clone(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.extra.path
    }
}

/// Pool options that never take back a connection still inside a transaction.
///
/// Some errors make SQLite roll a transaction back by itself (`SQLITE_FULL` and `SQLITE_IOERR`
/// among them: a full disk). sqlx does not see that rollback: its count of open transactions
/// stays at one, its own `ROLLBACK` then fails ("no transaction is active") and the count never
/// returns to zero, so every later `BEGIN IMMEDIATE` on that connection failed with "begin_with
/// at non-zero transaction depth" and the one writer was lost until a restart, even once the
/// disk had room again. So a connection coming back to its pool is first pinged (which runs any
/// rollback a dropped transaction queued, in order), and if sqlx still counts a transaction on
/// it, it is closed (SQLite rolls back whatever is left) and the pool opens a fresh one.
fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new().after_release(|connection, _| {
        Box::pin(async move {
            use sqlx::Connection as _;
            connection.ping().await?;
            if connection.is_in_transaction() {
                tracing::warn!("a database connection came back inside a transaction; closing it");
                return Ok(false);
            }
            Ok(true)
        })
    })
}

// --- conversions ----------------------------------------------------------------------------

fn map_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(database) => {
            let code = database
                .code()
                .map(|code| code.to_string())
                .unwrap_or_default();
            // SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_IOERR (10), SQLITE_FULL (13),
            // SQLITE_CANTOPEN (14) and their extended codes: transient or environmental.
            let primary = code.parse::<i64>().map(|code| code & 0xff).unwrap_or(-1);
            if matches!(primary, 5 | 6 | 10 | 13 | 14) {
                StoreError::Unavailable(error.to_string())
            } else if primary == 19 {
                StoreError::Conflict(error.to_string())
            } else {
                StoreError::Other(error.to_string())
            }
        }
        _ => StoreError::Other(error.to_string()),
    }
}

fn hex_id(id: Uuid) -> String {
    id.simple().to_string()
}

/// A JSON array of hex ids, for `json_each`.
fn id_list(ids: impl IntoIterator<Item = Uuid>) -> String {
    serde_json::Value::Array(ids.into_iter().map(|id| hex_id(id).into()).collect()).to_string()
}

/// Writes the JSON array parameter of a batch statement directly as text, without building a
/// `serde_json::Value` per row. Each row is a JSON array; fixed-width ids go concatenated into
/// one hex string (`key`), which the statement unhexes once and slices with `substr`.
struct Rows {
    text: String,
    fields: usize,
}

impl Rows {
    fn with_capacity(rows: usize, row_bytes: usize) -> Rows {
        let mut text = String::with_capacity(2 + rows * row_bytes);
        text.push('[');
        Rows { text, fields: 0 }
    }

    fn row(&mut self) -> &mut Rows {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text.push('[');
        self.fields = 0;
        self
    }

    fn separate(&mut self) {
        if self.fields > 0 {
            self.text.push(',');
        }
        self.fields += 1;
    }

    /// One string element: the lower-case hex of every part, concatenated.
    fn key(&mut self, parts: &[&[u8]]) -> &mut Rows {
        self.separate();
        self.text.push('"');
        for part in parts {
            HEXLOWER.encode_append(part, &mut self.text);
        }
        self.text.push('"');
        self
    }

    /// One JSON string element.
    fn text(&mut self, value: &str) -> &mut Rows {
        use std::fmt::Write as _;
        self.separate();
        self.text.push('"');
        for c in value.chars() {
            match c {
                '"' => self.text.push_str("\\\""),
                '\\' => self.text.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(self.text, "\\u{:04x}", u32::from(c));
                }
                c => self.text.push(c),
            }
        }
        self.text.push('"');
        self
    }

    fn int(&mut self, value: i64) -> &mut Rows {
        use std::fmt::Write as _;
        self.separate();
        let _ = write!(self.text, "{value}");
        self
    }

    fn null(&mut self) -> &mut Rows {
        self.separate();
        self.text.push_str("null");
        self
    }

    /// An element that is already JSON (an audit entry's details).
    fn json(&mut self, value: &serde_json::Value) -> &mut Rows {
        use std::fmt::Write as _;
        self.separate();
        let _ = write!(self.text, "{value}");
        self
    }

    fn end(&mut self) {
        self.text.push(']');
    }

    /// Whether no row was added.
    fn is_empty(&self) -> bool {
        self.text.len() == 1
    }

    fn finish(mut self) -> String {
        self.text.push(']');
        self.text
    }
}

impl Binding for Sqlite {
    fn bind<'q>(
        query: Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments>,
        arg: &Arg<'_>,
    ) -> Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments> {
        match arg {
            Arg::Int(value) => query.bind(*value),
            Arg::Uuid(value) => query.bind(*value),
            Arg::Text(value) => query.bind(*value),
            Arg::Bytes(value) => query.bind(*value),
            Arg::Ids(ids) => query.bind(id_list(ids.iter().copied())),
            Arg::Texts(texts) => query.bind(texts.map(|texts| {
                serde_json::Value::Array(texts.iter().map(|text| text.as_str().into()).collect())
                    .to_string()
            })),
        }
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn map_error(error: sqlx::Error) -> StoreError {
        map_error(error)
    }
}

impl Backend for Sqlite {
    type Extra = SqliteFile;

    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    /// A read transaction (WAL): one snapshot for the counts and the pages.
    const BEGIN_FLEET_READ: &'static str = "BEGIN";
    const UNHELD_LICENSES: &'static str = "INDEXED BY licenses_unassigned";
    const SEARCHED_DEVICES: Option<(&'static str, &'static str)> =
        Some(("INDEXED BY devices_by_name", "length(d.name) >= 0"));
    /// The term of `devices_by_name` (`0008_device_name_carries_search.sql`).
    const BY_NAME: &'static str = " AND length(d.name) >= 0";
    const ONLINE_DEVICES: Option<(&'static str, &'static str)> =
        Some(("INDEXED BY devices_online", "length(d.name) >= 0"));
    const ID_IN_LIST: &'static str = " AND d.id IN (SELECT unhex(value) FROM json_each({list}))";
    const WORD_INDEX: WordIndex = WordIndex::Fts5;
    const UNINDEXED: &'static str = concat!(
        "((words_of IS NULL AND ended_at IS NULL) OR words_of IS NOT ",
        indexed_text!(),
        ")"
    );
    const UNINDEXED_DEVICES: &'static str = concat!(
        "SELECT id FROM devices INDEXED BY devices_unindexed \
         WHERE (words_of IS NULL AND ended_at IS NULL) OR words_of IS NOT ",
        indexed_text!(),
        " LIMIT $1"
    );
    const INDEX_WORDS: [&'static str; 3] = [
        "DELETE FROM device_words WHERE rowid IN (SELECT rowid FROM devices \
         WHERE id IN (SELECT unhex(value) FROM json_each($1)) AND words_of IS NOT NULL)",
        concat!(
            "INSERT INTO device_words (rowid, words) SELECT rowid, ",
            searched_text!(),
            " FROM devices WHERE id IN (SELECT unhex(value) FROM json_each($1)) \
             AND ended_at IS NULL"
        ),
        concat!(
            "UPDATE devices SET words_of = ",
            indexed_text!(),
            " WHERE id IN (SELECT unhex(value) FROM json_each($1))"
        ),
    ];

    const DEVICE_STATES: &'static str = "SELECT id, config_id, end_reason, end_cause, staged_revision FROM devices \
         WHERE id IN (SELECT unhex(value) FROM json_each(?))";
    const DEVICE_PRESENCE: &'static str = "SELECT id, online_conn, last_seen FROM devices \
         WHERE id IN (SELECT unhex(value) FROM json_each(?)) AND ended_at IS NULL";
    const WAITING_LINE: &'static str = concat!(
        "SELECT ",
        crate::line::waiting_columns!(),
        " FROM waiting_devices w WHERE w.org_id = ?1 ORDER BY w.seq LIMIT ?2"
    );
    const STAGE_DEVICES: &'static str = "UPDATE devices SET staged_revision = ?1 \
         WHERE org_id = ?2 AND config_id = ?3 AND ended_at IS NULL \
         AND id IN (SELECT unhex(value) FROM json_each(?4)) RETURNING id";
    const REVOKE_REPLACEMENT_CODES: &'static str = "UPDATE codes SET revoked_at = ?1 \
         WHERE replaces_device IN (SELECT unhex(value) FROM json_each(?2)) \
         AND replaces_device IS NOT NULL AND used_at IS NULL AND revoked_at IS NULL \
         RETURNING license_id";
    const EXPIRED_PAIRINGS: &'static str = "SELECT d.org_id, d.id FROM licenses l \
         JOIN devices d ON d.license_id = l.id AND d.ended_at IS NULL \
         WHERE l.device_id IS NOT NULL AND l.valid_until IS NOT NULL AND l.valid_until <= ? \
         LIMIT ?";
    crate::backend::batch_statements!(batch_sql);
    const AUDIT_OF_DEVICE: &'static str = audit_of_device!("IN (SELECT value FROM json_each($6))");
    /// Without statistics SQLite would take `audit_by_org`, which gives the order, and walk
    /// the organization's whole log for a window that holds less than a page.
    const AUDIT_OF_ORG_IN_TIME: &'static str = audit_of_org_in_time!(
        "audit_log a INDEXED BY audit_by_org_time",
        "IN (SELECT value FROM json_each($5))"
    );
    /// Each action's newest entries by `audit_by_org_action`, a correlated subquery per action.
    const AUDIT_OF_ORG_BY_ACTIONS: &'static str = concat!(
        "SELECT ",
        audit_columns!(),
        " FROM json_each($3) AS j, audit_log a \
         WHERE a.id IN (SELECT x.id FROM audit_log x \
         WHERE x.org_id = $1 AND x.action = j.value AND x.id < $2 ORDER BY x.id DESC LIMIT $4) \
         ORDER BY a.id DESC LIMIT $4"
    );
    const AUDIT_OF_SERVER: &'static str = audit_of_server!("IN (SELECT value FROM json_each($4))");
    // `BEGIN IMMEDIATE` holds the database's write lock: nothing changes these rows before the
    // transaction ends, so they are read without a lock of their own.
    const CODE_STATE_FOR_REVOCATION: &'static str = code_state_for_revocation!("");
    const CONFIG_REVISION_FOR_EDIT: &'static str = config_revision_for_edit!("");
    const CONFIG_DEVICES_FOR_DELETE: &'static str = config_devices_for_delete!("");
    const OPERATOR_TOKENS_FOR_REVOCATION: &'static str = operator_tokens_for_revocation!("");
    const ORGANIZATION_FOR_QUOTA: &'static str = organization_for_quota!("");
    const PINNED_CONFIGURATION_FOR_DELETE: &'static str = pinned_configuration_for_delete!("");

    async fn close(store: &SqliteStore) {
        store.readers.close().await;
        store.writer.close().await;
        store.extra.checkpointer.stop().await;
    }

    async fn reset_presence(store: &SqliteStore, now: Timestamp) -> StoreResult<()> {
        store
            .writer()
            .await?
            .execute(
                "UPDATE devices SET online_conn = NULL, last_seen = max(last_seen, $1) \
                 WHERE online_conn IS NOT NULL",
                &[now.0.into()],
            )
            .await?;
        // One node per database: the devices that waited in line waited on the previous
        // process's connections, all gone.
        store
            .writer()
            .await?
            .execute("DELETE FROM waiting_devices", &[])
            .await?;
        Ok(())
    }

    /// One node per SQLite database: nothing to hear from.
    async fn subscribe(_store: &SqliteStore) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        Ok(None)
    }

    /// One node per SQLite database: nobody to tell.
    async fn publish_events(
        _store: &SqliteStore,
        _org_id: OrgId,
        _events: &[OrgEvent],
    ) -> StoreResult<()> {
        Ok(())
    }

    /// One node per SQLite database: nobody to tell.
    async fn announce_watch(_store: &SqliteStore, _org_id: OrgId) -> StoreResult<()> {
        Ok(())
    }

    /// One node per SQLite database, and `reset_presence` clears a crashed previous life's
    /// presence at start: no heartbeats to keep.
    async fn heartbeat(
        _store: &SqliteStore,
        _node: i64,
        _now: Timestamp,
        _stale_before: Timestamp,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    async fn expire_nodes(_store: &SqliteStore, _stale_before: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }

    async fn mark_online(
        store: &SqliteStore,
        online: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(online.len(), 60);
        for (device, connection) in online {
            rows.row()
                .key(&[device.0.as_bytes()])
                .int(*connection)
                .end();
        }
        sqlx::query(
            "UPDATE devices SET online_conn = j.value ->> 1, last_seen = ?1 \
             FROM jsonb_each(?2) AS j \
             WHERE devices.id = unhex(j.value ->> 0) AND devices.ended_at IS NULL",
        )
        .bind(now.0)
        .bind(rows.finish())
        .execute(&store.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn publish(_tx: &mut SqlTx<Sqlite>, _change: &Change) -> StoreResult<()> {
        // One node per SQLite database: the actor that made the change already applied it.
        Ok(())
    }

    async fn claim_free_licenses(
        tx: &mut SqlTx<Sqlite>,
        org_id: OrgId,
        count: u32,
        now: Timestamp,
        claim: Claim,
    ) -> StoreResult<Vec<FreeLicense>> {
        // BEGIN IMMEDIATE holds the database's write lock: nobody else can take these licenses
        // before this transaction commits.
        // One row for the whole claim: the driver hands rows over from its worker thread one
        // message at a time, which cost ~10 µs per license at 2,000 licenses.
        let row = sqlx::query(batch_sql::CLAIM_FREE_LICENSES)
            .bind(org_id.0)
            .bind(now.0)
            .bind(i64::from(count))
            .bind(claim == Claim::ForLine)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        let ids: Option<Vec<u8>> = get(&row, 0)?;
        let ids = ids.unwrap_or_default();
        let valid_until: String = get(&row, 1)?;
        let valid_until: Vec<Option<i64>> = serde_json::from_str(&valid_until)
            .map_err(|error| StoreError::Other(format!("claimed licenses: {error}")))?;
        if ids.len() != valid_until.len() * 16 {
            return Err(StoreError::Other(
                "claimed licenses: ids and end dates do not line up".into(),
            ));
        }
        Ok(ids
            .chunks_exact(16)
            .zip(valid_until)
            .map(|(id, valid_until)| FreeLicense {
                id: LicenseId(Uuid::from_slice(id).unwrap_or_default()),
                valid_until: valid_until.map(Timestamp),
            })
            .collect())
    }

    /// The entries take the ids after the log's largest (the transaction holds the write lock,
    /// so no other writer takes them), given here rather than left to SQLite so that the
    /// devices each entry names are linked to it by the next statement.
    async fn insert_audit(tx: &mut SqlTx<Sqlite>, entries: &[NewAudit]) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(entries.len(), 200);
        let mut links = Rows::with_capacity(entries.len(), 48);
        for (index, entry) in entries.iter().enumerate() {
            let index = i64::try_from(index).unwrap_or(i64::MAX);
            for device in &entry.devices {
                links.row().int(index).key(&[device.0.as_bytes()]).end();
            }
            let row = rows.row();
            match entry.org_id {
                Some(org) => row.key(&[org.0.as_bytes()]),
                None => row.null(),
            };
            row.int(entry.at.0).text(&entry.actor).text(&entry.action);
            match &entry.subject {
                Some(subject) => row.text(subject),
                None => row.null(),
            };
            row.json(&entry.details).end();
        }
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit_log")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        sqlx::query(batch_sql::INSERT_AUDIT)
            .bind(last)
            .bind(rows.finish())
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        if !links.is_empty() {
            sqlx::query(batch_sql::LINK_AUDIT_DEVICES)
                .bind(last)
                .bind(links.finish())
                .execute(&mut *tx.tx)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn consume_single_use_codes(
        tx: &mut SqlTx<Sqlite>,
        uses: &[(CodeId, DeviceId)],
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut rows = Rows::with_capacity(uses.len(), 72);
        for (code, device) in uses {
            rows.row()
                .key(&[code.0.as_bytes(), device.0.as_bytes()])
                .end();
        }
        let changed = sqlx::query(batch_sql::CONSUME_SINGLE_USE_CODES)
            .bind(now.0)
            .bind(rows.finish())
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(changed.rows_affected())
    }

    async fn assign_licenses(
        tx: &mut SqlTx<Sqlite>,
        grants: &[LicenseGrant],
        now: Timestamp,
    ) -> StoreResult<u64> {
        // 48-byte records: license, device, and the single-use code (nil for a reusable one).
        let mut records = Vec::with_capacity(grants.len() * 48);
        for grant in grants {
            records.extend_from_slice(grant.license_id.0.as_bytes());
            records.extend_from_slice(grant.device_id.0.as_bytes());
            records.extend_from_slice(
                grant
                    .single_use_code
                    .map_or(Uuid::nil(), |code| code.0)
                    .as_bytes(),
            );
        }
        let changed = sqlx::query(batch_sql::ASSIGN_LICENSES)
            .bind(now.0)
            .bind(records)
            .bind(grants.len() as i64)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(changed.rows_affected())
    }

    async fn insert_devices(
        tx: &mut SqlTx<Sqlite>,
        org_id: OrgId,
        now: Timestamp,
        devices: &[NewDevice],
    ) -> StoreResult<u64> {
        // Fixed-width fields as 96-byte records (id, installation, credential hash, license,
        // code), sliced with substr; the variable-length ones as JSON rows.
        let mut records = Vec::with_capacity(devices.len() * 96);
        let mut rows = Rows::with_capacity(devices.len(), 80);
        for device in devices {
            let bytes;
            let config: &[&[u8]] = match &device.config_id {
                Some(config) => {
                    bytes = [config.0.as_bytes().as_slice()];
                    &bytes
                }
                None => &[],
            };
            records.extend_from_slice(device.id.0.as_bytes());
            records.extend_from_slice(device.installation_id.0.as_bytes());
            records.extend_from_slice(&device.credential_hash.0);
            records.extend_from_slice(device.license_id.0.as_bytes());
            records.extend_from_slice(device.paired_by_code.0.as_bytes());
            rows.row()
                .int(device.connection)
                .text(&device.details.name)
                .text(&device.details.model)
                .text(&device.details.os)
                .text(&device.details.app_version)
                // The configuration's id in hex, or "" for none.
                .key(config)
                .end();
        }
        let inserted = sqlx::query(batch_sql::INSERT_DEVICES)
            .bind(org_id.0)
            .bind(now.0)
            .bind(rows.finish())
            .bind(records)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(inserted.rows_affected())
    }

    async fn count_code_uses(
        tx: &mut SqlTx<Sqlite>,
        uses: &[(CodeId, u32)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(uses.len(), 48);
        for (code, count) in uses {
            rows.row()
                .key(&[code.0.as_bytes()])
                .int(i64::from(*count))
                .end();
        }
        sqlx::query(batch_sql::COUNT_CODE_USES)
            .bind(now.0)
            .bind(rows.finish())
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn touch_devices(
        tx: &mut SqlTx<Sqlite>,
        touches: &[DeviceTouch],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(touches.len(), 120);
        for touch in touches {
            rows.row()
                .key(&[touch.device_id.0.as_bytes()])
                .int(touch.connection)
                .text(&touch.details.name)
                .text(&touch.details.model)
                .text(&touch.details.os)
                .text(&touch.details.app_version)
                .end();
        }
        sqlx::query(batch_sql::TOUCH_DEVICES)
            .bind(now.0)
            .bind(rows.finish())
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn set_offline(
        tx: &mut SqlTx<Sqlite>,
        offline: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(offline.len(), 60);
        for (device, connection) in offline {
            rows.row()
                .key(&[device.0.as_bytes()])
                .int(*connection)
                .end();
        }
        sqlx::query(batch_sql::SET_OFFLINE)
            .bind(now.0)
            .bind(rows.finish())
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn write_acks(
        tx: &mut SqlTx<Sqlite>,
        acks: &[AckWrite],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(acks.len(), 96);
        for ack in acks {
            let row = rows
                .row()
                .key(&[ack.device_id.0.as_bytes(), ack.config_id.0.as_bytes()])
                .int(to_i64(ack.revision))
                .text(ack.status.as_str());
            match &ack.reason {
                Some(reason) => row.text(reason),
                None => row.null(),
            }
            .end();
        }
        sqlx::query(batch_sql::WRITE_ACKS)
            .bind(now.0)
            .bind(rows.finish())
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    /// SQLite plans every statement as it prepares it, from no statistics that could lag.
    async fn licenses_inserted(_tx: &mut SqlTx<Sqlite>, _count: usize) -> StoreResult<()> {
        Ok(())
    }
}

/// The statements of the batch path, named so that a test can check each one's query plan:
/// every one must visit only the rows of its batch, whatever the size of the tables.
pub(crate) mod batch_sql {
    use crate::rows::{active_device_columns, code_state_columns};

    pub const RECORD_ENDED_PAIRINGS: &str = "INSERT INTO ended_pairings \
             (installation_id, credential_hash, end_reason, end_cause, ended_at) \
             SELECT installation_id, credential_hash, end_reason, end_cause, ended_at FROM devices \
             WHERE id IN (SELECT unhex(value) FROM json_each(?)) AND ended_at IS NOT NULL \
             ON CONFLICT (installation_id) DO UPDATE SET credential_hash = excluded.credential_hash, \
             end_reason = excluded.end_reason, end_cause = excluded.end_cause, \
             ended_at = excluded.ended_at";
    pub const LOCK_CODES: &str = concat!(
        "SELECT ",
        code_state_columns!(),
        " FROM codes \
             WHERE id IN (SELECT unhex(value) FROM json_each(?))"
    );
    pub const ACTIVE_DEVICES_BY_INSTALLATION: &str = concat!(
        "SELECT ",
        active_device_columns!(),
        " FROM devices d JOIN licenses l ON l.id = d.license_id \
             WHERE d.installation_id IN (SELECT unhex(value) FROM json_each(?)) \
             AND d.ended_at IS NULL"
    );
    pub const ACTIVE_DEVICES: &str = concat!(
        "SELECT ",
        active_device_columns!(),
        " FROM devices d JOIN licenses l ON l.id = d.license_id \
             WHERE d.id IN (SELECT unhex(value) FROM json_each(?)) AND d.ended_at IS NULL"
    );
    pub const LOCK_LICENSES: &str = "SELECT id, org_id, valid_until, device_id, reserved_by, reserved_until FROM licenses \
             WHERE id IN (SELECT unhex(value) FROM json_each(?))";
    /// The claimed licenses as one row: their ids concatenated (16 bytes each) and a JSON
    /// array of their end dates, in the same order (both aggregates run over the same rows).
    pub const CLAIM_FREE_LICENSES: &str = "SELECT unhex(group_concat(hex(id), '')), \
             json_group_array(valid_until) FROM \
             (SELECT id, valid_until FROM licenses INDEXED BY licenses_unassigned \
             WHERE org_id = ?1 AND device_id IS NULL \
             AND (valid_until IS NULL OR valid_until > ?2) \
             AND (reserved_until IS NULL OR reserved_until <= ?2) \
             AND (?4 OR NOT EXISTS (SELECT 1 FROM waiting_devices WHERE org_id = ?1)) \
             ORDER BY id LIMIT ?3)";
    pub const CONSUME_SINGLE_USE_CODES: &str = "UPDATE codes SET used_at = ?1, used_by_device = substr(j.k, 17, 16), \
             uses = uses + 1, last_used_at = ?1 \
             FROM (SELECT unhex(value ->> 0) AS k FROM jsonb_each(?2)) AS j \
             WHERE codes.id = substr(j.k, 1, 16) AND +codes.kind = 'single_use' \
             AND +codes.used_at IS NULL AND +codes.revoked_at IS NULL AND codes.expires_at > ?1";
    pub const ASSIGN_LICENSES: &str = "WITH RECURSIVE batch_rows(i) AS \
             (SELECT 0 UNION ALL SELECT i + 1 FROM batch_rows WHERE i + 1 < ?3) \
             UPDATE licenses SET device_id = substr(?2, b.i * 48 + 17, 16), reserved_by = NULL, \
             reserved_until = NULL \
             FROM batch_rows AS b \
             WHERE licenses.id = substr(?2, b.i * 48 + 1, 16) AND licenses.device_id IS NULL \
             AND (licenses.valid_until IS NULL OR licenses.valid_until > ?1) \
             AND CASE WHEN substr(?2, b.i * 48 + 33, 16) = zeroblob(16) \
                 THEN (licenses.reserved_until IS NULL OR licenses.reserved_until <= ?1) \
                 ELSE licenses.reserved_by = substr(?2, b.i * 48 + 33, 16) END";
    pub const INSERT_DEVICES: &str = "INSERT INTO devices (id, org_id, installation_id, credential_hash, license_id, name, \
             model, os, app_version, paired_at, paired_by_code, config_id, assigned_at, \
             online_conn, last_seen) \
             SELECT substr(?4, j.key * 96 + 1, 16), ?1, substr(?4, j.key * 96 + 17, 16), \
             substr(?4, j.key * 96 + 33, 32), substr(?4, j.key * 96 + 65, 16), \
             j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, ?2, \
             substr(?4, j.key * 96 + 81, 16), unhex(nullif(j.value ->> 5, '')), \
             CASE WHEN j.value ->> 5 = '' THEN NULL ELSE ?2 END, \
             j.value ->> 0, ?2 \
             FROM jsonb_each(?3) AS j WHERE true \
             ON CONFLICT DO NOTHING";
    pub const COUNT_CODE_USES: &str = "UPDATE codes SET uses = uses + (j.value ->> 1), last_used_at = ?1 \
             FROM jsonb_each(?2) AS j WHERE codes.id = unhex(j.value ->> 0)";
    pub const TOUCH_DEVICES: &str = "UPDATE devices SET name = j.value ->> 2, model = j.value ->> 3, \
             os = j.value ->> 4, app_version = j.value ->> 5, \
             online_conn = j.value ->> 1, last_seen = ?1 \
             FROM jsonb_each(?2) AS j \
             WHERE devices.id = unhex(j.value ->> 0) AND +devices.ended_at IS NULL";
    pub const SET_OFFLINE: &str = "UPDATE devices SET online_conn = NULL, last_seen = ?1 \
             FROM jsonb_each(?2) AS j \
             WHERE devices.id = unhex(j.value ->> 0) \
             AND devices.online_conn = (j.value ->> 1)";
    pub const END_DEVICES: &str = "UPDATE devices SET ended_at = ?1, end_reason = ?2, end_cause = ?4, config_id = NULL, \
             online_conn = NULL, last_seen = ?1 \
             WHERE id IN (SELECT unhex(value) FROM json_each(?3)) AND ended_at IS NULL \
             RETURNING id, org_id, license_id";
    pub const RELEASE_LICENSES: &str = "UPDATE licenses SET device_id = NULL \
                 WHERE device_id IN (SELECT unhex(value) FROM json_each(?))";
    pub const ACK_TARGETS: &str = "SELECT d.id, d.config_id, \
         (CASE WHEN d.staged_revision > c.revision THEN d.staged_revision ELSE c.revision END), \
         d.applied_config_id, d.applied_revision, \
             d.ack_status, d.ack_reason, d.name, c.name \
             FROM devices d LEFT JOIN configurations c ON c.id = d.config_id \
             WHERE d.id IN (SELECT unhex(value) FROM json_each(?)) AND d.ended_at IS NULL";
    pub const WRITE_ACKS: &str = "UPDATE devices SET applied_config_id = substr(j.k, 17, 16), \
             applied_revision = j.v ->> 1, ack_status = j.v ->> 2, \
             ack_reason = j.v ->> 3, ack_at = ?1 \
             FROM (SELECT unhex(value ->> 0) AS k, value AS v FROM jsonb_each(?2)) AS j \
             WHERE devices.id = substr(j.k, 1, 16)";
    pub const CONFIG_ROWS: &str = "SELECT id, org_id, name, revision, body FROM configurations \
             WHERE id IN (SELECT unhex(value) FROM json_each(?))";
    /// `(largest id so far, entries)`: entry `key` (its place in the array) takes the id
    /// `largest + key + 1`.
    pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (id, org_id, at, actor, action, subject, \
             details) SELECT ?1 + key + 1, unhex(value ->> 0), value ->> 1, value ->> 2, \
             value ->> 3, value ->> 4, json(value -> 5) FROM jsonb_each(?2)";
    /// `(largest id before INSERT_AUDIT, [entry's place, device])`.
    pub const LINK_AUDIT_DEVICES: &str = "INSERT INTO audit_devices (device_id, audit_id) \
             SELECT unhex(value ->> 1), ?1 + (value ->> 0) + 1 FROM jsonb_each(?2)";
    pub const INSERT_LICENSES: &str = "INSERT INTO licenses (id, org_id, purchased_at, valid_until) \
             SELECT unhex(value), ?1, ?2, ?3 FROM json_each(?4)";
    pub const ASSIGN_CONFIGURATION: &str = "UPDATE devices SET config_id = ?1, assigned_at = ?2, \
             staged_revision = CASE WHEN config_id = ?1 THEN staged_revision END \
             WHERE org_id = ?3 AND ended_at IS NULL \
             AND id IN (SELECT unhex(value) FROM json_each(?4)) RETURNING id";
    pub const EXTEND_LICENSES: &str = "UPDATE licenses SET valid_until = ?1 \
             WHERE org_id = ?2 AND valid_until < ?1 \
             AND id IN (SELECT unhex(value) FROM json_each(?3)) RETURNING id, device_id";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan lines of a statement, from SQLite itself.
    async fn plan(store: &SqliteStore, sql: &'static str) -> Vec<String> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&store.writer)
            .await
            .unwrap_or_else(|error| panic!("{error}: {sql}"));
        rows.iter()
            .map(|row| get::<String, _>(row, 3).unwrap_or_default())
            .collect()
    }

    /// SQLite rolls a transaction back by itself on some errors (a full disk), which sqlx does
    /// not see: the writer, its only connection, must still begin transactions afterwards.
    /// The raw `ROLLBACK` stands in for SQLite's own (a real full disk is in the server's
    /// `disk_faults` test).
    #[tokio::test]
    async fn the_writer_begins_again_after_sqlite_rolled_a_transaction_back_by_itself() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("depth.db")))
            .await
            .expect("database");
        let begin = <Sqlite as Backend>::BEGIN;
        for _ in 0..3 {
            let mut transaction = store.writer.begin_with(begin).await.expect("begins");
            sqlx::query("ROLLBACK")
                .execute(&mut *transaction)
                .await
                .expect("SQLite rolls back");
            // Dropped, as a failed write drops it: sqlx's own rollback then fails.
            drop(transaction);
        }
        let mut transaction = store
            .writer
            .begin_with(begin)
            .await
            .expect("the writer begins a transaction again");
        sqlx::query("SELECT 1")
            .execute(&mut *transaction)
            .await
            .expect("and works in it");
        transaction.commit().await.expect("commits");
    }

    /// An export's connections have the small page cache, the readers the large one.
    #[tokio::test]
    async fn exports_read_through_a_small_page_cache() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("cache.db")))
            .await
            .expect("database");
        let cache = |pool: &SqlitePool| {
            let pool = pool.clone();
            async move {
                let row = sqlx::query("PRAGMA cache_size")
                    .fetch_one(&pool)
                    .await
                    .expect("cache_size");
                get::<i64, _>(&row, 0).expect("a number")
            }
        };
        assert_eq!(cache(&store.exports).await, -i64::from(EXPORT_CACHE_KIB));
        assert_eq!(cache(&store.readers).await, -32768);
    }

    /// Each audit read is driven by the index of its filter, newest first, and reads the log's
    /// other rows only by key: a filtered page never walks the whole log.
    #[tokio::test]
    async fn audit_reads_use_their_filter_s_index() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("plans.db")))
            .await
            .expect("database");
        let statements: &[(&str, &'static str, &[&str])] = &[
            (
                "AUDIT_OF_DEVICE",
                <Sqlite as Backend>::AUDIT_OF_DEVICE,
                &[
                    "SEARCH ad USING PRIMARY KEY (device_id=? AND audit_id<?)",
                    "SEARCH p USING INDEX audit_by_org_time (org_id=? AND at=? AND rowid<?)",
                ],
            ),
            (
                "AUDIT_OF_ORG_IN_TIME",
                <Sqlite as Backend>::AUDIT_OF_ORG_IN_TIME,
                &["SEARCH a USING INDEX audit_by_org_time (org_id=? AND at>? AND at<?)"],
            ),
            (
                "AUDIT_OF_ORG_BY_ACTIONS",
                <Sqlite as Backend>::AUDIT_OF_ORG_BY_ACTIONS,
                &["USING COVERING INDEX audit_by_org_action (org_id=? AND action=? AND id<?)"],
            ),
            (
                "AUDIT_OF_ORG",
                crate::audit::AUDIT_OF_ORG,
                &["SEARCH a USING INDEX audit_by_org (org_id=? AND id<?)"],
            ),
            (
                "AUDIT_OF_SERVER",
                <Sqlite as Backend>::AUDIT_OF_SERVER,
                &["SEARCH a USING INTEGER PRIMARY KEY (rowid<?)"],
            ),
        ];
        let mut problems = Vec::new();
        for (name, sql, wanted) in statements {
            let lines = plan(&store, sql).await;
            for want in *wanted {
                if !lines.iter().any(|line| line.contains(want)) {
                    problems.push(format!("{name}: no {want} in {lines:?}"));
                }
            }
            if let Some(scan) = lines.iter().find(|line| line.starts_with("SCAN a")) {
                problems.push(format!("{name}: {scan}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Every batch statement visits only its batch's rows: it scans the JSON array of the
    /// batch and reaches table rows by key. A plan that scans a table, or walks an index over
    /// many rows (say, every unassigned license for `device_id IS NULL`), costs time in
    /// proportion to the table: a 2,000-row batch took seconds before this test existed.
    #[tokio::test]
    async fn batch_statements_use_indexes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&SqliteSettings::new(dir.path().join("plans.db")))
            .await
            .expect("database");
        let by_key = [
            "VIRTUAL TABLE",
            // The rows of a batch bound as one BLOB, numbered by a recursive CTE.
            "CO-ROUTINE batch_rows",
            "MATERIALIZE batch_rows",
            "SETUP",
            "RECURSIVE STEP",
            "SCAN CONSTANT ROW",
            "SCAN batch_rows",
            "SCAN b",
            "CREATE BLOOM FILTER",
            "LIST SUBQUERY",
            "USING INTEGER PRIMARY KEY",
            "(id=?)",
            "USING INDEX devices_active_installation (installation_id=?)",
            "USING INDEX devices_by_org (org_id=? AND id=?)",
            // Foreign-key checks of the rows a statement inserts.
            "(license_id=?)",
        ];
        let statements: &[(&str, &'static str, &[&str])] = &[
            ("LOCK_CODES", batch_sql::LOCK_CODES, &[]),
            (
                "ACTIVE_DEVICES_BY_INSTALLATION",
                batch_sql::ACTIVE_DEVICES_BY_INSTALLATION,
                &[],
            ),
            ("ACTIVE_DEVICES", batch_sql::ACTIVE_DEVICES, &[]),
            ("LOCK_LICENSES", batch_sql::LOCK_LICENSES, &[]),
            // The free-license scan walks the organization's unassigned licenses in order and
            // stops after the batch's count; the aggregate reads that limited subquery.
            (
                "CLAIM_FREE_LICENSES",
                batch_sql::CLAIM_FREE_LICENSES,
                &[
                    "USING INDEX licenses_unassigned (org_id=?)",
                    "CO-ROUTINE (subquery-2)",
                    "SCAN (subquery-2)",
                    // The line's condition: one probe of its index, evaluated once.
                    "SCALAR SUBQUERY 1",
                    "SEARCH waiting_devices USING COVERING INDEX waiting_by_org (org_id=?)",
                ],
            ),
            (
                "CONSUME_SINGLE_USE_CODES",
                batch_sql::CONSUME_SINGLE_USE_CODES,
                &[],
            ),
            ("ASSIGN_LICENSES", batch_sql::ASSIGN_LICENSES, &[]),
            ("INSERT_DEVICES", batch_sql::INSERT_DEVICES, &[]),
            ("COUNT_CODE_USES", batch_sql::COUNT_CODE_USES, &[]),
            ("TOUCH_DEVICES", batch_sql::TOUCH_DEVICES, &[]),
            ("SET_OFFLINE", batch_sql::SET_OFFLINE, &[]),
            ("END_DEVICES", batch_sql::END_DEVICES, &[]),
            (
                "RELEASE_LICENSES",
                batch_sql::RELEASE_LICENSES,
                &["INDEX licenses_device (device_id=?)"],
            ),
            ("ACK_TARGETS", batch_sql::ACK_TARGETS, &[]),
            ("WRITE_ACKS", batch_sql::WRITE_ACKS, &[]),
            ("CONFIG_ROWS", batch_sql::CONFIG_ROWS, &[]),
            ("INSERT_AUDIT", batch_sql::INSERT_AUDIT, &[]),
            ("LINK_AUDIT_DEVICES", batch_sql::LINK_AUDIT_DEVICES, &[]),
            ("INSERT_LICENSES", batch_sql::INSERT_LICENSES, &[]),
            ("ASSIGN_CONFIGURATION", batch_sql::ASSIGN_CONFIGURATION, &[]),
            (
                "EXTEND_LICENSES",
                batch_sql::EXTEND_LICENSES,
                &["INDEX licenses_by_org (org_id=? AND id=?)"],
            ),
        ];
        let mut problems = Vec::new();
        for (name, sql, extra) in statements {
            for line in plan(&store, sql).await {
                let fine = by_key
                    .iter()
                    .chain(extra.iter())
                    .any(|ok| line.contains(ok));
                if !fine {
                    problems.push(format!("{name}: {line}"));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "plans that visit more than the batch:\n{}",
            problems.join("\n")
        );
    }
}
