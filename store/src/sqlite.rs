//! The SQLite backend.
//!
//! - WAL journal, `synchronous=FULL` by default (a commit is on disk before any device is told
//!   "paired"), a busy timeout so that two processes on one file wait for each other instead of
//!   failing.
//! - One writer connection (SQLite has one writer at a time; a pool of writers would only queue on
//!   the file lock) and a small pool of readers, which WAL lets run beside the writer.
//! - Write transactions start with `BEGIN IMMEDIATE`: the write lock is taken up front, so a
//!   transaction that reads and then writes never fails as busy halfway.
//! - Set-based statements take their rows as one JSON array parameter expanded with `json_each`
//!   (ids as hex, decoded with `unhex`). Many `?NNN` placeholders in one statement cost sqlx time
//!   quadratic in their number; one parameter keeps a 2,000-row batch one cheap statement.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use data_encoding::HEXLOWER;
use engine::events::OrgEvent;
use engine::ids::{CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OrgId, Timestamp};
use engine::model::{
    AckStatus, AuditEntry, CodeInfo, CodeKind, Configuration, Device, License, LicenseStatus,
    LicenseSummary, OrgKeyInfo, Organization, Page, PageRequest,
};
use engine::secrets::SecretHash;
use engine::store::{
    AckTarget, AckWrite, ActiveDevice, AdminReads, AdminTx, Change, ChangeFeed, CodeRoute,
    CodeState, ConfigDelete, ConfigEdit, ConfigRow, ConfigUpdate, DeviceReads, DeviceState,
    DeviceTouch, EndedDevice, EndedPairing, FreeLicense, InstallationRoute, LicenseGrant,
    LicenseState, NewAudit, NewCode, NewDevice, NodeStore, PairingEnd, PairingTx, RevisionReports,
    RevokedCode, Store, StoreError, StoreResult, StoreTx, StoredReply, TokenOwner, Transaction,
};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::paging::{page_of, page_rows, to_i64, uuid_cursor};
use crate::rows::{
    CODE_COLUMNS, CONFIG_COLUMNS, DEVICE_COLUMNS, DEVICE_FROM, active_device_from_row,
    code_from_row, code_state_columns, code_state_from_row, config_row_from_row,
    configuration_from_row, device_from_row, device_state_from_row, get, get_hash, get_opt_ts,
    get_opt_u64, get_ts, get_u64, license_from_row, license_state_from_row,
    revision_reports_from_row,
};

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
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    checkpointer: Arc<Checkpointer>,
    path: PathBuf,
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
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
                if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(%error, "checkpoint failed");
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
        let writer = SqlitePoolOptions::new()
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
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options.clone())
            .await
            .map_err(map_error)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(settings.readers.max(1))
            .min_connections(1)
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options.read_only(true))
            .await
            .map_err(map_error)?;
        Ok(SqliteStore {
            writer,
            readers,
            checkpointer: Arc::new(Checkpointer::start(checkpoints, Duration::from_millis(200))),
            path: settings.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
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

    fn finish(mut self) -> String {
        self.text.push(']');
        self.text
    }
}

const LICENSE_STATUS: &str = "CASE WHEN valid_until IS NOT NULL AND valid_until <= ?1 THEN 'expired' \
     WHEN device_id IS NOT NULL THEN 'assigned' \
     WHEN reserved_until IS NOT NULL AND reserved_until > ?1 THEN 'reserved' \
     ELSE 'free' END";

const CODE_STATE_COLUMNS: &str = code_state_columns!();

// --- reads ----------------------------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_error)?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
        self.checkpointer.stop().await;
    }
}

#[async_trait]
impl NodeStore for SqliteStore {
    /// One node per SQLite database: nobody to tell.
    async fn publish_events(&self, _org_id: OrgId, _events: &[OrgEvent]) -> StoreResult<()> {
        Ok(())
    }

    /// One node per SQLite database: nobody to tell.
    async fn announce_watch(&self, _org_id: OrgId) -> StoreResult<()> {
        Ok(())
    }

    async fn reset_presence(&self) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET online_conn = NULL WHERE online_conn IS NOT NULL")
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    /// One node per SQLite database: nothing to hear from.
    async fn subscribe(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        Ok(None)
    }

    /// One node per SQLite database, and [`Store::reset_presence`] clears a crashed previous
    /// life's presence at start: no heartbeats to keep.
    async fn heartbeat(
        &self,
        _node: i64,
        _now: Timestamp,
        _stale_before: Timestamp,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    async fn expire_nodes(&self, _stale_before: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }

    async fn mark_online(&self, online: &[(DeviceId, i64)], now: Timestamp) -> StoreResult<()> {
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
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn expired_pairings(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrgId, DeviceId)>> {
        let rows = sqlx::query(
            "SELECT d.org_id, d.id FROM licenses l \
             JOIN devices d ON d.license_id = l.id AND d.ended_at IS NULL \
             WHERE l.device_id IS NOT NULL AND l.valid_until IS NOT NULL AND l.valid_until <= ? \
             LIMIT ?",
        )
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| Ok((OrgId(get(row, 0)?), DeviceId(get(row, 1)?))))
            .collect()
    }

    async fn prune_idempotency(&self, before: Timestamp) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(before.0)
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    async fn meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM server_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.writer)
            .await
            .map_err(map_error)?;
        row.map(|row| get::<Vec<u8>, _>(&row, 0)).transpose()
    }

    async fn set_meta(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO server_meta (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }
}

#[async_trait]
impl DeviceReads for SqliteStore {
    async fn find_code(&self, hash: &SecretHash) -> StoreResult<Option<CodeRoute>> {
        let row = sqlx::query("SELECT id, org_id FROM codes WHERE code_hash = ?")
            .bind(hash.0.as_slice())
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        row.map(|row| {
            Ok(CodeRoute {
                code_id: CodeId(get(&row, 0)?),
                org_id: OrgId(get(&row, 1)?),
            })
        })
        .transpose()
    }

    async fn find_installation(
        &self,
        installation_id: InstallationId,
    ) -> StoreResult<Option<InstallationRoute>> {
        let row = sqlx::query(
            "SELECT id, org_id FROM devices WHERE installation_id = ? AND ended_at IS NULL",
        )
        .bind(installation_id.0)
        .fetch_optional(&self.readers)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            Ok(InstallationRoute {
                device_id: DeviceId(get(&row, 0)?),
                org_id: OrgId(get(&row, 1)?),
            })
        })
        .transpose()
    }

    async fn last_ended_pairing(
        &self,
        installation_id: InstallationId,
    ) -> StoreResult<Option<EndedPairing>> {
        let row = sqlx::query(
            "SELECT credential_hash, end_reason FROM ended_pairings WHERE installation_id = ?",
        )
        .bind(installation_id.0)
        .fetch_optional(&self.readers)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            let reason: String = get(&row, 1)?;
            Ok(EndedPairing {
                credential_hash: get_hash(&row, 0)?,
                end_reason: PairingEnd::parse(&reason)
                    .ok_or_else(|| StoreError::Other(format!("unknown end reason {reason}")))?,
            })
        })
        .transpose()
    }

    async fn device_states(&self, ids: &[DeviceId]) -> StoreResult<Vec<DeviceState>> {
        let rows = sqlx::query(
            "SELECT id, config_id, end_reason FROM devices \
             WHERE id IN (SELECT unhex(value) FROM json_each(?))",
        )
        .bind(id_list(ids.iter().map(|id| id.0)))
        .fetch_all(&self.readers)
        .await
        .map_err(map_error)?;
        rows.iter().map(device_state_from_row).collect()
    }

    async fn config_row(&self, id: ConfigId) -> StoreResult<Option<ConfigRow>> {
        let row =
            sqlx::query("SELECT id, org_id, name, revision, body FROM configurations WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.readers)
                .await
                .map_err(map_error)?;
        row.map(|row| config_row_from_row(&row)).transpose()
    }
}

#[async_trait]
impl AdminReads for SqliteStore {
    async fn token_owner(&self, hash: &SecretHash) -> StoreResult<Option<TokenOwner>> {
        let operator = sqlx::query("SELECT 1 FROM operator_tokens WHERE token_hash = ?")
            .bind(hash.0.as_slice())
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        if operator.is_some() {
            return Ok(Some(TokenOwner::Operator));
        }
        let row = sqlx::query(
            "SELECT org_id, id FROM org_keys WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash.0.as_slice())
        .fetch_optional(&self.readers)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            Ok(TokenOwner::OrgKey {
                org_id: OrgId(get(&row, 0)?),
                key_id: KeyId(get(&row, 1)?),
            })
        })
        .transpose()
    }

    async fn has_operator_token(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 FROM operator_tokens LIMIT 1")
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        Ok(row.is_some())
    }

    async fn organization(&self, org_id: OrgId) -> StoreResult<Option<Organization>> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = ?")
            .bind(org_id.0)
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        row.map(|row| {
            Ok(Organization {
                id: OrgId(get(&row, 0)?),
                name: get(&row, 1)?,
                created_at: get_ts(&row, 2)?,
            })
        })
        .transpose()
    }

    async fn list_organizations(&self, page: &PageRequest) -> StoreResult<Page<Organization>> {
        let limit = page.effective_limit();
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM organizations WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(uuid_cursor(page)?)
        .bind(page_rows(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(map_error)?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(Organization {
                    id: OrgId(get(row, 0)?),
                    name: get(row, 1)?,
                    created_at: get_ts(row, 2)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |org| org.id.to_string()))
    }

    async fn list_org_keys(&self, org_id: OrgId) -> StoreResult<Vec<OrgKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, org_id, name, created_at, revoked_at FROM org_keys \
             WHERE org_id = ? ORDER BY id",
        )
        .bind(org_id.0)
        .fetch_all(&self.readers)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(OrgKeyInfo {
                    id: KeyId(get(row, 0)?),
                    organization_id: OrgId(get(row, 1)?),
                    name: get(row, 2)?,
                    created_at: get_ts(row, 3)?,
                    revoked_at: get_opt_ts(row, 4)?,
                })
            })
            .collect()
    }

    async fn license(
        &self,
        org_id: OrgId,
        id: LicenseId,
        now: Timestamp,
    ) -> StoreResult<Option<License>> {
        let sql = format!(
            "SELECT id, org_id, purchased_at, valid_until, device_id, {LICENSE_STATUS}, reserved_until \
             FROM licenses WHERE org_id = ?2 AND id = ?3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        row.map(|row| license_from_row(&row)).transpose()
    }

    async fn list_licenses(
        &self,
        org_id: OrgId,
        status: Option<LicenseStatus>,
        now: Timestamp,
        page: &PageRequest,
    ) -> StoreResult<Page<License>> {
        let limit = page.effective_limit();
        let sql = format!(
            "SELECT * FROM (SELECT id, org_id, purchased_at, valid_until, device_id, \
             {LICENSE_STATUS} AS status, reserved_until FROM licenses \
             WHERE org_id = ?2 AND id > ?3) \
             WHERE ?4 IS NULL OR status = ?4 ORDER BY id LIMIT ?5"
        );
        let status = status.map(|status| match status {
            LicenseStatus::Free => "free",
            LicenseStatus::Reserved => "reserved",
            LicenseStatus::Assigned => "assigned",
            LicenseStatus::Expired => "expired",
        });
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .bind(org_id.0)
            .bind(uuid_cursor(page)?)
            .bind(status)
            .bind(page_rows(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(map_error)?;
        let items = rows
            .iter()
            .map(license_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |license| license.id.to_string()))
    }

    async fn license_summary(&self, org_id: OrgId, now: Timestamp) -> StoreResult<LicenseSummary> {
        let sql = format!(
            "SELECT status, COUNT(*) FROM (SELECT {LICENSE_STATUS} AS status FROM licenses \
             WHERE org_id = ?2) GROUP BY status"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .bind(org_id.0)
            .fetch_all(&self.readers)
            .await
            .map_err(map_error)?;
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
        let sql = format!("SELECT {CODE_COLUMNS} FROM codes WHERE org_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        row.map(|row| code_from_row(&row, now)).transpose()
    }

    async fn sealed_code_secret(&self, org_id: OrgId, id: CodeId) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT sealed_secret FROM codes WHERE org_id = ? AND id = ?")
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        Ok(match row {
            Some(row) => get::<Option<Vec<u8>>, _>(&row, 0)?,
            None => None,
        })
    }

    async fn list_codes(
        &self,
        org_id: OrgId,
        kind: Option<CodeKind>,
        now: Timestamp,
        page: &PageRequest,
    ) -> StoreResult<Page<CodeInfo>> {
        let limit = page.effective_limit();
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM codes WHERE org_id = ?1 AND id > ?2 \
             AND (?3 IS NULL OR kind = ?3) ORDER BY id LIMIT ?4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(uuid_cursor(page)?)
            .bind(kind.map(CodeKind::as_str))
            .bind(page_rows(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(map_error)?;
        let items = rows
            .iter()
            .map(|row| code_from_row(row, now))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |code| code.id.to_string()))
    }

    async fn configuration(
        &self,
        org_id: OrgId,
        id: ConfigId,
    ) -> StoreResult<Option<Configuration>> {
        let sql = format!(
            "SELECT {CONFIG_COLUMNS}, c.body FROM configurations c \
             WHERE c.org_id = ?1 AND c.id = ?2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        row.map(|row| {
            let body = get::<Option<String>, _>(&row, 7)?;
            configuration_from_row(&row, body)
        })
        .transpose()
    }

    async fn configuration_reports(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Vec<RevisionReports>> {
        let rows = sqlx::query(
            "SELECT applied_revision, ack_status, COALESCE(config_id = applied_config_id, 0) != 0, COUNT(*) \
             FROM devices WHERE org_id = ? AND applied_config_id = ? AND ended_at IS NULL \
             AND applied_revision IS NOT NULL AND ack_status IS NOT NULL \
             GROUP BY 1, 2, 3",
        )
        .bind(org_id.0)
        .bind(config_id.0)
        .fetch_all(&self.readers)
        .await
        .map_err(map_error)?;
        rows.iter().map(revision_reports_from_row).collect()
    }

    async fn list_configurations(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<Configuration>> {
        let limit = page.effective_limit();
        let sql = format!(
            "SELECT {CONFIG_COLUMNS} FROM configurations c WHERE c.org_id = ? AND c.id > ? \
             ORDER BY c.id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(uuid_cursor(page)?)
            .bind(page_rows(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(map_error)?;
        let items = rows
            .iter()
            .map(|row| configuration_from_row(row, None))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |config| config.id.to_string()))
    }

    async fn device(&self, org_id: OrgId, id: DeviceId) -> StoreResult<Option<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} {DEVICE_FROM} \
             WHERE d.org_id = ? AND d.id = ? AND d.ended_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&self.readers)
            .await
            .map_err(map_error)?;
        row.map(|row| device_from_row(&row)).transpose()
    }

    async fn list_devices(&self, org_id: OrgId, page: &PageRequest) -> StoreResult<Page<Device>> {
        let limit = page.effective_limit();
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} {DEVICE_FROM} \
             WHERE d.org_id = ? AND d.ended_at IS NULL AND d.id > ? ORDER BY d.id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(uuid_cursor(page)?)
            .bind(page_rows(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(map_error)?;
        let items = rows
            .iter()
            .map(device_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |device| device.id.to_string()))
    }

    async fn list_audit(
        &self,
        org_id: Option<OrgId>,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        let limit = page.effective_limit();
        let before = match &page.after {
            None => i64::MAX,
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| StoreError::InvalidInput("cursor"))?,
        };
        let rows = sqlx::query(
            "SELECT id, org_id, at, actor, action, subject, details FROM audit_log \
             WHERE (?1 IS NULL OR org_id = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )
        .bind(org_id.map(|org| org.0))
        .bind(before)
        .bind(page_rows(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(map_error)?;
        let items = rows
            .iter()
            .map(|row| {
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
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |entry| entry.id.to_string()))
    }
}

// --- writes ---------------------------------------------------------------------------------

struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_error)
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        self.tx.rollback().await.map_err(map_error)
    }

    async fn insert_audit(&mut self, entries: &[NewAudit]) -> StoreResult<()> {
        let mut rows = Rows::with_capacity(entries.len(), 200);
        for entry in entries {
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
        sqlx::query(batch_sql::INSERT_AUDIT)
            .bind(rows.finish())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn publish(&mut self, _change: &Change) -> StoreResult<()> {
        // One node per SQLite database: the actor that made the change already applied it.
        Ok(())
    }

    async fn lock_licenses(&mut self, ids: &[LicenseId]) -> StoreResult<Vec<LicenseState>> {
        let rows = sqlx::query(batch_sql::LOCK_LICENSES)
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(license_state_from_row).collect()
    }

    async fn end_devices(
        &mut self,
        ids: &[DeviceId],
        reason: PairingEnd,
        now: Timestamp,
    ) -> StoreResult<Vec<EndedDevice>> {
        let rows = sqlx::query(batch_sql::END_DEVICES)
            .bind(now.0)
            .bind(reason.as_str())
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
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
            let ids = id_list(ended.iter().map(|device| device.device_id.0));
            sqlx::query(batch_sql::RELEASE_LICENSES)
                .bind(&ids)
                .execute(&mut *self.tx)
                .await
                .map_err(map_error)?;
            sqlx::query(batch_sql::RECORD_ENDED_PAIRINGS)
                .bind(&ids)
                .execute(&mut *self.tx)
                .await
                .map_err(map_error)?;
        }
        Ok(ended)
    }

    async fn config_rows(&mut self, ids: &[ConfigId]) -> StoreResult<Vec<ConfigRow>> {
        let rows = sqlx::query(batch_sql::CONFIG_ROWS)
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(config_row_from_row).collect()
    }
}

#[async_trait]
impl PairingTx for SqliteTx {
    async fn lock_codes(&mut self, ids: &[CodeId]) -> StoreResult<Vec<CodeState>> {
        let rows = sqlx::query(batch_sql::LOCK_CODES)
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(code_state_from_row).collect()
    }

    async fn active_devices_by_installation(
        &mut self,
        ids: &[InstallationId],
    ) -> StoreResult<Vec<ActiveDevice>> {
        let rows = sqlx::query(batch_sql::ACTIVE_DEVICES_BY_INSTALLATION)
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(active_device_from_row).collect()
    }

    async fn claim_free_licenses(
        &mut self,
        org_id: OrgId,
        count: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<FreeLicense>> {
        // BEGIN IMMEDIATE holds the database's write lock: nobody else can take these licenses
        // before this transaction commits.
        // One row for the whole claim: the driver hands rows over from its worker thread one
        // message at a time, which cost ~10 µs per license at 2,000 licenses.
        let row = sqlx::query(batch_sql::CLAIM_FREE_LICENSES)
            .bind(org_id.0)
            .bind(now.0)
            .bind(i64::from(count))
            .fetch_one(&mut *self.tx)
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

    async fn consume_single_use_codes(
        &mut self,
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
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(changed.rows_affected())
    }

    async fn assign_licenses(
        &mut self,
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
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(changed.rows_affected())
    }

    async fn insert_devices(
        &mut self,
        org_id: OrgId,
        config_id: Option<ConfigId>,
        now: Timestamp,
        devices: &[NewDevice],
    ) -> StoreResult<u64> {
        // Fixed-width fields as 96-byte records (id, installation, credential hash, license,
        // code), sliced with substr; the variable-length ones as JSON rows.
        let mut records = Vec::with_capacity(devices.len() * 96);
        let mut rows = Rows::with_capacity(devices.len(), 80);
        for device in devices {
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
                .end();
        }
        let inserted = sqlx::query(batch_sql::INSERT_DEVICES)
            .bind(org_id.0)
            .bind(config_id.map(|config| config.0))
            .bind(now.0)
            .bind(rows.finish())
            .bind(records)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(inserted.rows_affected())
    }

    async fn count_code_uses(&mut self, uses: &[(CodeId, u32)], now: Timestamp) -> StoreResult<()> {
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
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn touch_devices(&mut self, touches: &[DeviceTouch], now: Timestamp) -> StoreResult<()> {
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
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn set_offline(
        &mut self,
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
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn ack_targets(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<AckTarget>> {
        let rows = sqlx::query(batch_sql::ACK_TARGETS)
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(AckTarget {
                    device_id: DeviceId(get(row, 0)?),
                    config_id: get::<Option<Uuid>, _>(row, 1)?.map(ConfigId),
                    config_revision: get_opt_u64(row, 2)?,
                    applied_config_id: get::<Option<Uuid>, _>(row, 3)?.map(ConfigId),
                    applied_revision: get_opt_u64(row, 4)?,
                    ack_status: get::<Option<String>, _>(row, 5)?
                        .and_then(|status| AckStatus::parse(&status)),
                    ack_reason: get(row, 6)?,
                })
            })
            .collect()
    }

    async fn write_acks(&mut self, acks: &[AckWrite], now: Timestamp) -> StoreResult<()> {
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
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn newest_configuration(&mut self, org_id: OrgId) -> StoreResult<Option<ConfigRow>> {
        let row = sqlx::query(
            "SELECT id, org_id, name, revision, body FROM configurations WHERE org_id = ? \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(org_id.0)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        row.map(|row| config_row_from_row(&row)).transpose()
    }
}

#[async_trait]
impl AdminTx for SqliteTx {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()> {
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)")
            .bind(org.id.0)
            .bind(&org.name)
            .bind(org.created_at.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn insert_operator_token(
        &mut self,
        hash: &SecretHash,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO operator_tokens (token_hash, created_at) VALUES (?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(hash.0.as_slice())
        .bind(now.0)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn insert_org_key(&mut self, key: &OrgKeyInfo, hash: &SecretHash) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO org_keys (id, org_id, name, key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(key.id.0)
        .bind(key.organization_id.0)
        .bind(&key.name)
        .bind(hash.0.as_slice())
        .bind(key.created_at.0)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn revoke_org_key(
        &mut self,
        org_id: OrgId,
        key_id: KeyId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE org_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE org_id = ? AND id = ?",
        )
        .bind(now.0)
        .bind(org_id.0)
        .bind(key_id.0)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn insert_licenses(
        &mut self,
        org_id: OrgId,
        ids: &[LicenseId],
        purchased_at: Timestamp,
        valid_until: Option<Timestamp>,
    ) -> StoreResult<()> {
        sqlx::query(batch_sql::INSERT_LICENSES)
            .bind(org_id.0)
            .bind(purchased_at.0)
            .bind(valid_until.map(|until| until.0))
            .bind(id_list(ids.iter().map(|id| id.0)))
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn set_license_valid_until(
        &mut self,
        org_id: OrgId,
        id: LicenseId,
        valid_until: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<Option<License>> {
        let result = sqlx::query("UPDATE licenses SET valid_until = ? WHERE org_id = ? AND id = ?")
            .bind(valid_until.map(|until| until.0))
            .bind(org_id.0)
            .bind(id.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        let sql = format!(
            "SELECT id, org_id, purchased_at, valid_until, device_id, {LICENSE_STATUS}, reserved_until \
             FROM licenses WHERE org_id = ?2 AND id = ?3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .bind(org_id.0)
            .bind(id.0)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_error)?;
        license_from_row(&row).map(Some)
    }

    async fn insert_code(&mut self, code: &NewCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO codes (id, org_id, kind, code_hash, sealed_secret, label, license_id, \
             created_at, expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(code.id.0)
        .bind(code.org_id.0)
        .bind(code.kind.as_str())
        .bind(code.code_hash.0.as_slice())
        .bind(code.sealed_secret.as_deref())
        .bind(code.label.as_deref())
        .bind(code.license_id.map(|license| license.0))
        .bind(code.created_at.0)
        .bind(code.expires_at.0)
        .bind(code.max_uses.map(i64::from))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        if let Some(license_id) = code.license_id {
            sqlx::query("UPDATE licenses SET reserved_by = ?, reserved_until = ? WHERE id = ?")
                .bind(code.id.0)
                .bind(code.expires_at.0)
                .bind(license_id.0)
                .execute(&mut *self.tx)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn revoke_code(
        &mut self,
        org_id: OrgId,
        id: CodeId,
        now: Timestamp,
    ) -> StoreResult<Option<RevokedCode>> {
        let sql = format!("SELECT {CODE_STATE_COLUMNS} FROM codes WHERE org_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
        let state = code_state_from_row(&row)?;
        if state.revoked_at.is_none() {
            sqlx::query("UPDATE codes SET revoked_at = ? WHERE id = ?")
                .bind(now.0)
                .bind(id.0)
                .execute(&mut *self.tx)
                .await
                .map_err(map_error)?;
            sqlx::query(
                "UPDATE licenses SET reserved_by = NULL, reserved_until = NULL WHERE reserved_by = ?",
            )
            .bind(id.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        }
        let sql = format!("SELECT {CODE_COLUMNS} FROM codes WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(Some(RevokedCode {
            already_revoked: state.revoked_at.is_some(),
            code: code_from_row(&row, now)?,
        }))
    }

    async fn device(&mut self, org_id: OrgId, id: DeviceId) -> StoreResult<Option<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} {DEVICE_FROM} \
             WHERE d.org_id = ? AND d.id = ? AND d.ended_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.0)
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_error)?;
        row.map(|row| device_from_row(&row)).transpose()
    }

    async fn revoke_single_use_codes_of(
        &mut self,
        license_id: LicenseId,
        now: Timestamp,
    ) -> StoreResult<Vec<CodeId>> {
        let rows = sqlx::query(
            "UPDATE codes SET revoked_at = ? WHERE license_id = ? AND kind = 'single_use' \
             AND revoked_at IS NULL AND used_at IS NULL RETURNING id",
        )
        .bind(now.0)
        .bind(license_id.0)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(map_error)?;
        sqlx::query("UPDATE licenses SET reserved_by = NULL, reserved_until = NULL WHERE id = ?")
            .bind(license_id.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(|row| Ok(CodeId(get(row, 0)?))).collect()
    }

    async fn insert_configuration(&mut self, row: &ConfigRow, now: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO configurations (id, org_id, name, body, revision, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.id.0)
        .bind(row.org_id.0)
        .bind(&row.name)
        .bind(&row.body)
        .bind(to_i64(row.revision))
        .bind(now.0)
        .bind(now.0)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn update_configuration(
        &mut self,
        org_id: OrgId,
        id: ConfigId,
        edit: &ConfigEdit,
        now: Timestamp,
    ) -> StoreResult<ConfigUpdate> {
        let current =
            sqlx::query("SELECT revision FROM configurations WHERE org_id = ? AND id = ?")
                .bind(org_id.0)
                .bind(id.0)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_error)?;
        let Some(current) = current else {
            return Ok(ConfigUpdate::NotFound);
        };
        let revision = get_u64(&current, 0)?;
        if edit
            .if_revision
            .is_some_and(|expected| expected != revision)
        {
            return Ok(ConfigUpdate::RevisionMismatch(revision));
        }
        sqlx::query(
            "UPDATE configurations SET name = COALESCE(?, name), body = COALESCE(?, body), \
             revision = revision + 1, updated_at = ? WHERE id = ?",
        )
        .bind(edit.name.as_deref())
        .bind(edit.body.as_deref())
        .bind(now.0)
        .bind(id.0)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        let sql = format!("SELECT {CONFIG_COLUMNS}, c.body FROM configurations c WHERE c.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_error)?;
        let body = get::<Option<String>, _>(&row, 7)?;
        Ok(ConfigUpdate::Updated(configuration_from_row(&row, body)?))
    }

    async fn delete_configuration(
        &mut self,
        org_id: OrgId,
        id: ConfigId,
    ) -> StoreResult<ConfigDelete> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM devices d WHERE d.config_id = c.id AND d.ended_at IS NULL) \
             FROM configurations c WHERE c.org_id = ? AND c.id = ?",
        )
        .bind(org_id.0)
        .bind(id.0)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        let Some(row) = row else {
            return Ok(ConfigDelete::NotFound);
        };
        let assigned = get_u64(&row, 0)?;
        if assigned > 0 {
            return Ok(ConfigDelete::InUse(assigned));
        }
        sqlx::query("DELETE FROM configurations WHERE id = ?")
            .bind(id.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(ConfigDelete::Deleted)
    }

    async fn assign_configuration(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        device_ids: &[DeviceId],
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>> {
        let rows = sqlx::query(batch_sql::ASSIGN_CONFIGURATION)
            .bind(config_id.0)
            .bind(now.0)
            .bind(org_id.0)
            .bind(id_list(device_ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(|row| Ok(DeviceId(get(row, 0)?))).collect()
    }

    async fn assign_waiting_devices(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>> {
        let rows = sqlx::query(
            "UPDATE devices SET config_id = ?1, assigned_at = ?2 \
             WHERE org_id = ?3 AND ended_at IS NULL AND config_id IS NULL RETURNING id",
        )
        .bind(config_id.0)
        .bind(now.0)
        .bind(org_id.0)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(map_error)?;
        rows.iter().map(|row| Ok(DeviceId(get(row, 0)?))).collect()
    }

    async fn active_devices(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<ActiveDevice>> {
        let rows = sqlx::query(batch_sql::ACTIVE_DEVICES)
            .bind(id_list(ids.iter().map(|id| id.0)))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_error)?;
        rows.iter().map(active_device_from_row).collect()
    }

    async fn idempotent_reply(
        &mut self,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<StoredReply>> {
        let row = sqlx::query(
            "SELECT fingerprint, sealed_reply FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            let fingerprint: Vec<u8> = get(&row, 0)?;
            Ok(StoredReply {
                fingerprint: fingerprint
                    .try_into()
                    .map_err(|_| StoreError::Other("bad fingerprint".into()))?,
                sealed_reply: get(&row, 1)?,
            })
        })
        .transpose()
    }

    async fn store_idempotent_reply(
        &mut self,
        scope: &str,
        key: &str,
        reply: &StoredReply,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, sealed_reply, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(scope)
        .bind(key)
        .bind(reply.fingerprint.as_slice())
        .bind(reply.sealed_reply.as_slice())
        .bind(now.0)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }
}

/// The statements of the batch path, named so that a test can check each one's query plan:
/// every one must visit only the rows of its batch, whatever the size of the tables.
pub(crate) mod batch_sql {
    use crate::rows::{active_device_columns, code_state_columns};

    pub const RECORD_ENDED_PAIRINGS: &str = "INSERT INTO ended_pairings \
             (installation_id, credential_hash, end_reason, ended_at) \
             SELECT installation_id, credential_hash, end_reason, ended_at FROM devices \
             WHERE id IN (SELECT unhex(value) FROM json_each(?)) AND ended_at IS NOT NULL \
             ON CONFLICT (installation_id) DO UPDATE SET credential_hash = excluded.credential_hash, \
             end_reason = excluded.end_reason, ended_at = excluded.ended_at";
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
             SELECT substr(?5, j.key * 96 + 1, 16), ?1, substr(?5, j.key * 96 + 17, 16), \
             substr(?5, j.key * 96 + 33, 32), substr(?5, j.key * 96 + 65, 16), \
             j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, ?3, \
             substr(?5, j.key * 96 + 81, 16), ?2, CASE WHEN ?2 IS NULL THEN NULL ELSE ?3 END, \
             j.value ->> 0, ?3 \
             FROM jsonb_each(?4) AS j WHERE true \
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
    pub const END_DEVICES: &str = "UPDATE devices SET ended_at = ?1, end_reason = ?2, config_id = NULL, \
             online_conn = NULL, last_seen = ?1 \
             WHERE id IN (SELECT unhex(value) FROM json_each(?3)) AND ended_at IS NULL \
             RETURNING id, org_id, license_id";
    pub const RELEASE_LICENSES: &str = "UPDATE licenses SET device_id = NULL \
                 WHERE device_id IN (SELECT unhex(value) FROM json_each(?))";
    pub const ACK_TARGETS: &str = "SELECT d.id, d.config_id, c.revision, d.applied_config_id, d.applied_revision, \
             d.ack_status, d.ack_reason \
             FROM devices d LEFT JOIN configurations c ON c.id = d.config_id \
             WHERE d.id IN (SELECT unhex(value) FROM json_each(?)) AND d.ended_at IS NULL";
    pub const WRITE_ACKS: &str = "UPDATE devices SET applied_config_id = substr(j.k, 17, 16), \
             applied_revision = j.v ->> 1, ack_status = j.v ->> 2, \
             ack_reason = j.v ->> 3, ack_at = ?1 \
             FROM (SELECT unhex(value ->> 0) AS k, value AS v FROM jsonb_each(?2)) AS j \
             WHERE devices.id = substr(j.k, 1, 16)";
    pub const CONFIG_ROWS: &str = "SELECT id, org_id, name, revision, body FROM configurations \
             WHERE id IN (SELECT unhex(value) FROM json_each(?))";
    pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (org_id, at, actor, action, subject, details) \
             SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             json(value -> 5) FROM jsonb_each(?)";
    pub const INSERT_LICENSES: &str = "INSERT INTO licenses (id, org_id, purchased_at, valid_until) \
             SELECT unhex(value), ?1, ?2, ?3 FROM json_each(?4)";
    pub const ASSIGN_CONFIGURATION: &str = "UPDATE devices SET config_id = ?1, assigned_at = ?2 \
             WHERE org_id = ?3 AND ended_at IS NULL \
             AND id IN (SELECT unhex(value) FROM json_each(?4)) RETURNING id";
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
                    "CO-ROUTINE (subquery-1)",
                    "SCAN (subquery-1)",
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
            ("INSERT_LICENSES", batch_sql::INSERT_LICENSES, &[]),
            ("ASSIGN_CONFIGURATION", batch_sql::ASSIGN_CONFIGURATION, &[]),
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
