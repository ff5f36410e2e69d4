//! The dialect seam: what the SQL written once needs from each backend, and the two types it is
//! written over.
//!
//! Most of the engine's storage is the same SQL on SQLite and PostgreSQL. Placeholders are
//! written `$1`, `$2`… on both: sqlx's SQLite driver binds a parameter named `$NNN` to argument
//! NNN, as it does `?NNN` (a test below holds it to that), and PostgreSQL needs no casts on
//! them because sqlx declares every bound value's type when it prepares a statement. That SQL
//! is written once, in generic code over a [`Backend`]: the engine's traits are implemented
//! once each, for [`SqlStore`] (`node`, `reads`) and [`SqlTx`] (`writes`).
//!
//! A backend is one of sqlx's database types (`sqlx::Sqlite`, `sqlx::Postgres`), and
//! [`Backend`] is everything that differs between the two:
//!
//! - how a value is bound ([`Arg`]; a list of ids is one JSON text parameter on SQLite, expanded
//!   with `json_each`, and a `uuid[]` on PostgreSQL), and how driver errors map to the engine's
//!   categories;
//! - the statements whose text differs: those that take a list of ids (the batch statements of
//!   each backend's `batch_sql` module) and the reads that PostgreSQL locks (`FOR UPDATE`) and
//!   SQLite need not (its write transactions hold the database's write lock);
//! - the operations that differ beyond their text: the batch writes (rows bound as JSON or blobs
//!   on SQLite, as arrays expanded with `UNNEST` on PostgreSQL), the license claim, presence and
//!   heartbeats, notifications between nodes and the change feed, and how a store is opened and
//!   closed.
//!
//! Rows are read the same way on both through [`crate::rows::Columns`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use engine::events::OrgEvent;
use engine::ids::{CodeId, DeviceId, OrgId, Timestamp};
use engine::store::{
    AckWrite, Change, ChangeFeed, Claim, DeviceTouch, FreeLicense, LicenseGrant, NewAudit,
    NewDevice, StoreError, StoreResult,
};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Pool, SqlSafeStr};
use uuid::Uuid;

use crate::rows::Columns;

/// A value bound to a statement. `None` binds NULL, typed, so that PostgreSQL knows what the
/// parameter is without a cast.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Uuid(Option<Uuid>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
    /// A list of ids, bound as the backend binds a list: a JSON array of hex ids on SQLite (the
    /// statement expands it with `json_each` and `unhex`), a `uuid[]` on PostgreSQL.
    Ids(Vec<Uuid>),
    /// A list of texts, bound as the backend binds a list: a JSON array on SQLite, a `text[]`
    /// on PostgreSQL; `None` binds NULL.
    Texts(Option<&'a [String]>),
}

impl Arg<'_> {
    /// A list of ids.
    pub fn ids<T>(items: &[T], id: impl Fn(&T) -> Uuid) -> Arg<'static> {
        Arg::Ids(items.iter().map(id).collect())
    }
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

impl From<Uuid> for Arg<'_> {
    fn from(value: Uuid) -> Self {
        Arg::Uuid(Some(value))
    }
}

impl From<Option<Uuid>> for Arg<'_> {
    fn from(value: Option<Uuid>) -> Self {
        Arg::Uuid(value)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Arg::Text(Some(value))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Arg::Text(value)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(value: &'a [u8]) -> Self {
        Arg::Bytes(Some(value))
    }
}

impl<'a> From<Option<&'a [u8]>> for Arg<'a> {
    fn from(value: Option<&'a [u8]>) -> Self {
        Arg::Bytes(value)
    }
}

/// A connection that runs a statement with its bound values and answers with the backend's
/// rows, readable through [`Columns`]. Implemented once, below, for the connections of every
/// [`Backend`]; a transaction and a pooled connection both dereference to one.
///
/// Statements are `&'static str`: SQL is never assembled at run time here.
pub trait Statements: Send {
    type Row: Columns + Send + Sync;

    fn fetch_all(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Vec<Self::Row>>> + Send;

    fn fetch_optional(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Option<Self::Row>>> + Send;

    /// Exactly one row; none is an error.
    fn fetch_one(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Self::Row>> + Send;

    /// Runs a statement that returns no rows; answers how many rows it changed.
    fn execute(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Every row, each read with `read`.
    fn read_all<T: Send>(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
        read: impl Fn(&Self::Row) -> StoreResult<T> + Send,
    ) -> impl Future<Output = StoreResult<Vec<T>>> + Send {
        async move { self.fetch_all(sql, args).await?.iter().map(read).collect() }
    }

    /// The row, if any, read with `read`.
    fn read_optional<T: Send>(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
        read: impl Fn(&Self::Row) -> StoreResult<T> + Send,
    ) -> impl Future<Output = StoreResult<Option<T>>> + Send {
        async move {
            self.fetch_optional(sql, args)
                .await?
                .as_ref()
                .map(read)
                .transpose()
        }
    }
}

fn query<'q, B: Binding>(
    sql: impl SqlSafeStr + Send,
    args: &[Arg<'_>],
) -> Query<'q, B, <B as sqlx::Database>::Arguments> {
    args.iter().fold(sqlx::query(sql), B::bind)
}

impl<C> Statements for C
where
    C: sqlx::Connection<Database: Binding>,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    <C::Database as sqlx::Database>::Row: Columns + Sync,
{
    type Row = <C::Database as sqlx::Database>::Row;

    async fn fetch_all(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<Self::Row>> {
        query::<C::Database>(sql, args)
            .fetch_all(self)
            .await
            .map_err(C::Database::map_error)
    }

    async fn fetch_optional(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<Self::Row>> {
        query::<C::Database>(sql, args)
            .fetch_optional(self)
            .await
            .map_err(C::Database::map_error)
    }

    async fn fetch_one(
        &mut self,
        sql: impl SqlSafeStr + Send,
        args: &[Arg<'_>],
    ) -> StoreResult<Self::Row> {
        query::<C::Database>(sql, args)
            .fetch_one(self)
            .await
            .map_err(C::Database::map_error)
    }

    async fn execute(&mut self, sql: impl SqlSafeStr + Send, args: &[Arg<'_>]) -> StoreResult<u64> {
        let result = query::<C::Database>(sql, args)
            .execute(self)
            .await
            .map_err(C::Database::map_error)?;
        Ok(C::Database::rows_affected(&result))
    }
}

/// The engine's storage on one backend. [`crate::SqliteStore`] and [`crate::PgStore`] are its
/// two instances (opened with `SqliteStore::open` and `PgStore::open`); the engine's traits
/// are implemented once, for both.
pub struct SqlStore<B: Backend> {
    /// Write transactions, and the writes and server settings outside them. On SQLite the one
    /// writer connection; on PostgreSQL the pool, the same one as `readers`.
    pub(crate) writer: Pool<B>,
    /// Reads outside transactions. On SQLite read-only connections beside the writer (WAL lets
    /// them read while it writes); on PostgreSQL the same pool as `writer`.
    pub(crate) readers: Pool<B>,
    /// The chunks of an export, which walk a whole fleet list. On SQLite read-only connections
    /// of their own whose page cache is small: through a reader, the walk would fill its 32 MB
    /// cache and the server would keep that memory; on PostgreSQL the same pool as `readers`
    /// (the server's cache is the database's, not the server process's).
    pub(crate) exports: Pool<B>,
    /// What only this backend keeps beside its connections.
    pub(crate) extra: Arc<B::Extra>,
}

impl<B: Backend> SqlStore<B> {
    /// A connection for a read outside a transaction.
    pub(crate) async fn reader(&self) -> StoreResult<PoolConnection<B>> {
        self.readers.acquire().await.map_err(B::map_error)
    }

    /// A connection for a write outside a transaction.
    pub(crate) async fn writer(&self) -> StoreResult<PoolConnection<B>> {
        self.writer.acquire().await.map_err(B::map_error)
    }
}

impl<B: Backend> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        SqlStore {
            writer: self.writer.clone(),
            readers: self.readers.clone(),
            exports: self.exports.clone(),
            extra: Arc::clone(&self.extra),
        }
    }
}

impl<B: Backend> fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &B::NAME)
            .field("writer", &self.writer)
            .field("readers", &self.readers)
            .field("extra", &self.extra)
            .finish()
    }
}

/// A write transaction on one backend: what [`engine::store::Store::begin`] hands out.
pub struct SqlTx<B: Backend> {
    pub(crate) tx: sqlx::Transaction<'static, B>,
    /// The store's own part, for the operations that need it (PostgreSQL's notifications say
    /// which store published them; its claims start where the store's last claim ended).
    pub(crate) extra: Arc<B::Extra>,
}

impl<B: Backend> fmt::Debug for SqlTx<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTx")
            .field("backend", &B::NAME)
            .finish_non_exhaustive()
    }
}

/// A backend's index of the words of its devices' searched text (both written by the words
/// duty; see the migrations `0009_device_words.sql` (SQLite) and `0005_device_words.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordIndex {
    /// An FTS5 table, `device_words`, its rowid the device's: asked with one `MATCH` of every
    /// word as a quoted prefix.
    Fts5,
    /// A table of one `tsvector` per device, `device_words (device_id, words)`, with a GIN index:
    /// asked with one `@@ 'word':*` per word.
    TsVector,
}

/// How a backend binds values, counts changed rows and reads driver errors: what running a
/// statement on its connections needs (see [`Statements`]). Part of [`Backend`].
pub trait Binding: sqlx::Database<Arguments: sqlx::IntoArguments<Self>> {
    /// Binds one value.
    fn bind<'q>(
        query: Query<'q, Self, <Self as sqlx::Database>::Arguments>,
        arg: &Arg<'_>,
    ) -> Query<'q, Self, <Self as sqlx::Database>::Arguments>;

    fn rows_affected(result: &<Self as sqlx::Database>::QueryResult) -> u64;

    /// Maps a driver error to the engine's categories (retryable, conflict, other).
    fn map_error(error: sqlx::Error) -> StoreError;
}

/// Everything that differs between SQLite and PostgreSQL below the engine's traits (see the
/// module documentation). Implemented by `sqlx::Sqlite` (in `sqlite`) and `sqlx::Postgres` (in
/// `postgres`).
///
/// The operations take the store or the transaction they work on, and have the meaning of the
/// engine's trait method of the same name.
//
// `pub` in a private module: it bounds the public `SqlStore`, but no other crate can name it.
pub trait Backend: Binding + sqlx::Database<Connection: Statements> {
    /// What a store of this backend keeps beside its connections.
    type Extra: fmt::Debug + Send + Sync + 'static;

    /// The statement that starts a write transaction.
    const BEGIN: &'static str;

    /// The statement that starts the read-only transaction of a fleet list: one snapshot for
    /// its counts and its pages, and plans that reach rows through indexes.
    const BEGIN_FLEET_READ: &'static str;

    /// What follows `licenses l` in a fleet statement that reads only licenses no device holds,
    /// in id order: SQLite has no statistics to tell it that the partial index of those licenses
    /// is the short walk (it would walk all the organization's licenses for their order), so it
    /// is named; PostgreSQL's planner knows from its statistics.
    const UNHELD_LICENSES: &'static str;

    /// A walk of an organization's devices through the index of the searched text
    /// (`fleet::SEARCHED_TEXT`), when the backend has one: what follows `devices d`, and the
    /// condition that the index's statements add (a partial index's own term, if it has one).
    /// SQLite's is the name sort's index, which carries the text as its last column
    /// (`0008_device_name_carries_search.sql`), read alone, without the table's rows.
    /// PostgreSQL has none (it cannot read an expression index without the table).
    const SEARCHED_DEVICES: Option<(&'static str, &'static str)>;

    /// A walk of an organization's online devices through an index of those alone, when the
    /// backend has one: what follows `devices d`, and the condition that the index's statements
    /// add. SQLite's plain online filter otherwise reads every device of the organization (it
    /// plans without statistics); PostgreSQL has none (its planner, with statistics, does well
    /// enough without).
    const ONLINE_DEVICES: Option<(&'static str, &'static str)>;

    /// What the statements that walk devices by name add (` AND …`): the name sort's index's
    /// own term, on a backend whose planner would otherwise walk that index for other lists.
    const BY_NAME: &'static str;

    /// How the search's word index is asked (`fleet`, "The search's candidates").
    const WORD_INDEX: WordIndex;

    /// The condition that a device is unindexed (`rows::indexed_text`), over `devices`
    /// unaliased: the term of the partial index of those, `devices_unindexed`, word for word.
    const UNINDEXED: &'static str;

    /// `(limit)` → ids of unindexed devices (`rows::indexed_text`), of every organization; on a
    /// backend that locks rows, locked, skipping those another transaction holds.
    const UNINDEXED_DEVICES: &'static str;

    /// `(ids)` each, in order: brings those devices' entries in the word index up to date with
    /// their text, and records it in `words_of`.
    const INDEX_WORDS: [&'static str; 3];

    /// ` AND d.id IN …` the ids bound to `{list}` (a list of ids, `Arg::Ids`).
    const ID_IN_LIST: &'static str;

    // --- statements whose text differs ---------------------------------------------------------
    //
    // Each takes the same values, in the same order, on both backends (a list of ids is one
    // `Arg::Ids`); the shared code binds them and reads the rows.

    /// `(ids)` → `id, config_id, end_reason, end_cause, staged_revision` of those devices.
    const DEVICE_STATES: &'static str;
    /// `(now, limit)` → `org_id, id` of active devices whose license has expired.
    const EXPIRED_PAIRINGS: &'static str;
    /// `(ids)` → `id, online_conn, last_seen` of the active ones.
    const DEVICE_PRESENCE: &'static str;
    /// `(org id, limit)` → the first devices of the organization's line (`line::waiting_columns`),
    /// in order, locked where the backend locks rows.
    const WAITING_LINE: &'static str;
    /// `(revision, org id, config id, device ids)` stages the active devices among them that
    /// are assigned the configuration → the ids it staged.
    const STAGE_DEVICES: &'static str;
    /// `(now, device ids)` revokes the unused replacement codes of those devices → the
    /// licenses they reserved.
    const REVOKE_REPLACEMENT_CODES: &'static str;

    // The batch statements, from the backend's `batch_sql` module (`batch_statements!`).

    /// `(ids)` → license states (`rows::license_state_from_row`), locked.
    const LOCK_LICENSES: &'static str;
    /// `(ids)` → code states (`rows::code_state_from_row`), locked.
    const LOCK_CODES: &'static str;
    /// `(installation ids)` → active devices (`rows::active_device_from_row`), locked.
    const ACTIVE_DEVICES_BY_INSTALLATION: &'static str;
    /// `(device ids)` → active devices (`rows::active_device_from_row`), locked.
    const ACTIVE_DEVICES: &'static str;
    /// `(now, reason, ids)` ends the active ones → `id, org_id, license_id` of those it ended.
    const END_DEVICES: &'static str;
    /// `(ended device ids)` frees their licenses.
    const RELEASE_LICENSES: &'static str;
    /// `(ended device ids)` records how their pairings ended, one row per installation.
    const RECORD_ENDED_PAIRINGS: &'static str;
    /// `(ids)` → configurations with their bodies (`rows::config_row_from_row`).
    const CONFIG_ROWS: &'static str;
    /// `(device ids)` → what the acknowledgement rules need of the active ones, and the names
    /// of each device and its configuration.
    const ACK_TARGETS: &'static str;
    /// `(config id, now, org id, device ids)` → ids of the organization's active devices it
    /// assigned.
    const ASSIGN_CONFIGURATION: &'static str;
    /// `(valid_until, org id, license ids)` moves the end of those that end earlier → `id,
    /// device_id` of those it changed.
    const EXTEND_LICENSES: &'static str;
    /// `(org id, purchased at, valid until, ids)` inserts licenses.
    const INSERT_LICENSES: &'static str;

    // The audit log's reads (see `audit`): those with a list of actions, built by the macros in
    // `audit` with the backend's list expansion.

    /// `(device, before id, org or NULL, from, until, actions or NULL, rows)` → audit entries.
    const AUDIT_OF_DEVICE: &'static str;
    /// `(org, before id, from, until, actions or NULL, rows)` → audit entries.
    const AUDIT_OF_ORG_IN_TIME: &'static str;
    /// `(org, before id, actions, rows)` → audit entries: a page of each action, merged.
    const AUDIT_OF_ORG_BY_ACTIONS: &'static str;
    /// `(before id, from, until, actions or NULL, rows)` → audit entries of every organization.
    const AUDIT_OF_SERVER: &'static str;

    // The reads of admin commands that PostgreSQL locks and SQLite need not, built by the
    // macros in `writes` with the backend's locking clause.

    /// `(org id, code id)` → the code's state (`rows::code_state_from_row`), locked against
    /// concurrent revocation and use where the backend locks rows.
    const CODE_STATE_FOR_REVOCATION: &'static str;
    /// `(org id, config id)` → the configuration's revision and name, locked against concurrent
    /// edits where the backend locks rows.
    const CONFIG_REVISION_FOR_EDIT: &'static str;
    /// `(org id, config id)` → how many active devices are assigned the configuration, and its
    /// name, with the configuration locked against concurrent assignment where the backend
    /// locks rows.
    const CONFIG_DEVICES_FOR_DELETE: &'static str;
    /// `()` → the operator tokens not revoked, locked against a concurrent revocation where
    /// the backend locks rows.
    const OPERATOR_TOKENS_FOR_REVOCATION: &'static str;
    /// `(org id)` → the organization, locked against a concurrent quota check where the
    /// backend locks rows.
    const ORGANIZATION_FOR_QUOTA: &'static str;
    /// `(org id)` → the organization's pinned configuration, its row locked against a
    /// concurrent pin where the backend locks rows.
    const PINNED_CONFIGURATION_FOR_DELETE: &'static str;

    // --- the store: closing, presence, heartbeats, notifications -------------------------------

    /// Closes the connections (and stops what runs beside them).
    fn close(store: &SqlStore<Self>) -> impl Future<Output = ()> + Send;
    fn reset_presence(
        store: &SqlStore<Self>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn subscribe(
        store: &SqlStore<Self>,
    ) -> impl Future<Output = StoreResult<Option<Box<dyn ChangeFeed>>>> + Send;
    fn publish_events(
        store: &SqlStore<Self>,
        org_id: OrgId,
        events: &[OrgEvent],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn announce_watch(
        store: &SqlStore<Self>,
        org_id: OrgId,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn heartbeat(
        store: &SqlStore<Self>,
        node: i64,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn expire_nodes(
        store: &SqlStore<Self>,
        stale_before: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn mark_online(
        store: &SqlStore<Self>,
        online: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // --- a transaction: notifications, the license claim, the batch writes ---------------------

    fn publish(
        tx: &mut SqlTx<Self>,
        change: &Change,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn claim_free_licenses(
        tx: &mut SqlTx<Self>,
        org_id: OrgId,
        count: u32,
        now: Timestamp,
        claim: Claim,
    ) -> impl Future<Output = StoreResult<Vec<FreeLicense>>> + Send;
    fn insert_audit(
        tx: &mut SqlTx<Self>,
        entries: &[NewAudit],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn consume_single_use_codes(
        tx: &mut SqlTx<Self>,
        uses: &[(CodeId, DeviceId)],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn assign_licenses(
        tx: &mut SqlTx<Self>,
        grants: &[LicenseGrant],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn insert_devices(
        tx: &mut SqlTx<Self>,
        org_id: OrgId,
        now: Timestamp,
        devices: &[NewDevice],
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn count_code_uses(
        tx: &mut SqlTx<Self>,
        uses: &[(CodeId, u32)],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn touch_devices(
        tx: &mut SqlTx<Self>,
        touches: &[DeviceTouch],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_offline(
        tx: &mut SqlTx<Self>,
        offline: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn write_acks(
        tx: &mut SqlTx<Self>,
        acks: &[AckWrite],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Called after [`Backend::INSERT_LICENSES`] added `count` licenses, for a backend whose
    /// planner needs to hear of a bulk insert at once.
    fn licenses_inserted(
        tx: &mut SqlTx<Self>,
        count: usize,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Defines the [`Backend`] constants that are batch statements from a backend's `batch_sql`
/// module, which names them the same (so every backend's module has them all).
macro_rules! batch_statements {
    ($module:ident) => {
        const LOCK_LICENSES: &'static str = $module::LOCK_LICENSES;
        const LOCK_CODES: &'static str = $module::LOCK_CODES;
        const ACTIVE_DEVICES_BY_INSTALLATION: &'static str =
            $module::ACTIVE_DEVICES_BY_INSTALLATION;
        const ACTIVE_DEVICES: &'static str = $module::ACTIVE_DEVICES;
        const END_DEVICES: &'static str = $module::END_DEVICES;
        const RELEASE_LICENSES: &'static str = $module::RELEASE_LICENSES;
        const RECORD_ENDED_PAIRINGS: &'static str = $module::RECORD_ENDED_PAIRINGS;
        const CONFIG_ROWS: &'static str = $module::CONFIG_ROWS;
        const ACK_TARGETS: &'static str = $module::ACK_TARGETS;
        const ASSIGN_CONFIGURATION: &'static str = $module::ASSIGN_CONFIGURATION;
        const EXTEND_LICENSES: &'static str = $module::EXTEND_LICENSES;
        const INSERT_LICENSES: &'static str = $module::INSERT_LICENSES;
    };
}

pub(crate) use batch_statements;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::get;

    /// Shared statements are written with `$N` placeholders; on SQLite they must bind by number,
    /// not by position in the text, and a number used twice must bind the same value.
    #[tokio::test]
    async fn sqlite_binds_numbered_dollar_placeholders_by_number() {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        let row = conn
            .fetch_one(
                "SELECT $2, $1, $2, $3 IS NULL",
                &[7_i64.into(), "second".into(), Arg::Text(None)],
            )
            .await
            .expect("statement");
        assert_eq!(get::<String, _>(&row, 0).expect("column"), "second");
        assert_eq!(get::<i64, _>(&row, 1).expect("column"), 7);
        assert_eq!(get::<String, _>(&row, 2).expect("column"), "second");
        assert!(get::<bool, _>(&row, 3).expect("column"));
    }
}
