//! The PostgreSQL backend, for several paird nodes sharing one database.
//!
//! The engine's rules are the same as on SQLite, and so is most of the SQL (see `backend`);
//! what changes is who arbitrates between writers. On SQLite one writer connection and
//! `BEGIN IMMEDIATE` serialize every write transaction. Here several nodes write at once, and
//! PostgreSQL's row locks and constraints decide. This file holds what that changes:
//!
//! - **Pool.** One [`PgPool`] (16 connections unless [`PgSettings::pool_size`] says otherwise)
//!   serves both reads and write transactions: PostgreSQL runs them side by side, so there is no
//!   reason for SQLite's separate writer and readers. Migrations are embedded from
//!   `migrations/postgres` and applied at open (sqlx takes an advisory lock, so nodes starting
//!   together do not apply them twice).
//! - **Transactions.** `Store::begin` starts a `READ COMMITTED` transaction. Each statement
//!   sees what was committed before it started, and a conditional `UPDATE` that meets a row
//!   locked by another transaction waits for it and then re-checks its `WHERE` on the row's new
//!   version. That re-check is what makes the engine's conditional writes ("only where still
//!   unassigned", "only where still unused") correct across nodes: the loser changes fewer rows
//!   than it planned, and the engine rolls back and retries.
//! - **Row locks.** The rows a batch decides on are locked up front with `SELECT ... FOR UPDATE`,
//!   in id order so that two transactions locking overlapping sets cannot deadlock on each other:
//!   codes (`lock_codes`; a reusable code without a use limit only `FOR KEY SHARE`, so that every
//!   node's batches use it at once), licenses (`lock_licenses`) and the active pairings of the
//!   batch's installations and devices, so that a device is not ended on one node while another
//!   node is telling it "resumed". Admin commands lock the code they revoke and the
//!   configuration they edit or delete.
//! - **`SKIP LOCKED`.** `claim_free_licenses` takes the oldest free licenses with
//!   `FOR UPDATE SKIP LOCKED`: two nodes granting licenses of one organization at once each get
//!   different licenses instead of the second queueing behind the first's commit.
//! - **Arrays.** Set-based statements take their rows as arrays bound once and expanded with
//!   `UNNEST` (or compared with `= ANY`): one statement per batch, whatever its size, and no
//!   statement text that grows with the batch.
//! - **Notifications.** `StoreTx::publish` calls `pg_notify('paird_changes', ..)` inside the
//!   transaction; PostgreSQL delivers it at commit, and drops it on rollback. The payload names
//!   rows (ids only, never data) and stays under PostgreSQL's 8,000-byte limit: a change naming
//!   more devices than fit says "resync" for the whole organization instead.
//! - **Change feed.** `NodeStore::subscribe` opens a `LISTEN` connection of its own (module
//!   `notify`); after any drop it reconnects and tells the engine to resynchronise.
//! - **Presence.** Nodes share the `devices` table, so a node that starts cannot clear everybody's
//!   presence as the SQLite backend does. Each node records a heartbeat in `nodes`; the high half
//!   of a device's `online_conn` is its node's id, and every node's sweep marks offline the
//!   devices of nodes whose heartbeat went stale (`NodeStore::expire_nodes`).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::events::OrgEvent;
use engine::ids::{CodeId, DeviceId, LicenseId, OrgId, Timestamp};
use engine::store::{
    AckWrite, Change, ChangeFeed, Claim, DeviceTouch, FreeLicense, LicenseGrant, NewAudit,
    NewDevice, StoreError, StoreResult,
};
use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgQueryResult};
use sqlx::query::Query;
use uuid::Uuid;

use crate::audit::{audit_columns, audit_of_device, audit_of_org_in_time, audit_of_server};
use crate::backend::{Arg, Backend, Binding, SqlStore, SqlTx, WordIndex};
use crate::paging::to_i64;
use crate::pg_hosts::{self, HostFollower, PgTargets};
use crate::rows::{get, get_opt_ts, indexed_text, searched_text};
use crate::writes::{
    code_state_for_revocation, config_devices_for_delete, config_revision_for_edit,
    operator_tokens_for_revocation, organization_for_quota, pinned_configuration_for_delete,
};
use node::PgNode;

pub use crate::notify::{CHANGE_CHANNEL, LISTENER_APPLICATION_NAME};

/// Settings of the PostgreSQL backend.
#[derive(Clone)]
pub struct PgSettings {
    /// A `postgres://` or `postgresql://` URL.
    pub url: String,
    /// Connections in the pool, shared by reads and write transactions.
    pub pool_size: u32,
    /// How long a caller waits for a free connection before the store answers "unavailable".
    pub acquire_timeout: Duration,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> Self {
        PgSettings {
            url: url.into(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The URL may carry a password, and settings end up in logs: it is left out.
impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &"<hidden>")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// The PostgreSQL store.
pub type PgStore = SqlStore<Postgres>;

// In a module of its own so that no other crate can name it: it appears in `Backend`'s impl.
mod node {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use std::sync::Arc;

    use engine::ids::OrgId;
    use uuid::Uuid;

    use crate::pg_hosts::HostFollower;

    /// What a PostgreSQL store keeps beside its pool: what makes it one node among several.
    pub struct PgNode {
        /// Where the pools connect: the URL's host, or the one of its hosts that takes
        /// writes now (the change listener's pool follows it too).
        pub(super) hosts: Arc<HostFollower>,
        /// Random per store: written into every notification this store publishes, so that its
        /// own change feed skips them.
        pub(super) origin: u64,
        /// Per organization, the highest license id this node claimed: see
        /// `claim_free_licenses`.
        pub(super) claim_hints: Mutex<HashMap<OrgId, Uuid>>,
    }

    /// The connect options carry the password (their own `Debug` shows it), and a store's
    /// `Debug` may end up in logs: they are left out, as `PgSettings` leaves out its URL.
    impl std::fmt::Debug for PgNode {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PgNode")
                .field("hosts", &"<hidden>")
                .field("origin", &self.origin)
                .field("claim_hints", &self.claim_hints)
                .finish()
        }
    }
}

/// The `application_name` of the store's pool connections.
const APPLICATION_NAME: &str = "paird";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl PgStore {
    /// Connects and brings the schema up to date.
    pub async fn open(settings: &PgSettings) -> StoreResult<PgStore> {
        let targets = PgTargets::parse(&settings.url)
            .map_err(|error| StoreError::Other(format!("database URL: {error}")))?;
        let hosts = HostFollower::start(targets).await?;
        let pool = pg_hosts::pool_options(hosts.attrs())
            .max_connections(settings.pool_size.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(hosts.options(APPLICATION_NAME))
            .await
            .map_err(map_error)?;
        hosts.follow(&pool, APPLICATION_NAME);
        // A migration that cannot reach the server is worth retrying; any other failure
        // (a bad migration, a database changed by hand) needs a person.
        MIGRATOR.run(&pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(inner) => match map_error(inner) {
                StoreError::Unavailable(detail) => StoreError::Unavailable(detail),
                other => StoreError::Other(format!("migrations: {other}")),
            },
            other => StoreError::Other(format!("migrations: {other}")),
        })?;
        let origin = u64::from_le_bytes(engine::secrets::random_bytes());
        Ok(SqlStore {
            writer: pool.clone(),
            readers: pool.clone(),
            exports: pool,
            extra: Arc::new(PgNode {
                hosts,
                origin,
                claim_hints: Mutex::default(),
            }),
        })
    }

    /// The pool, for tests and tools that look at the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.writer
    }

    /// Sends one notification on the change channel, outside any transaction.
    async fn notify(&self, payload: String) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGE_CHANNEL)
            .bind(payload)
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(())
    }
}

// --- conversions ----------------------------------------------------------------------------

/// Maps a driver error to the engine's categories. SQLSTATE classes decide: connection
/// problems, resource exhaustion, shutdowns, cancellations and lock waits that PostgreSQL broke
/// (deadlocks, serialization failures) are worth retrying; integrity violations of any kind are
/// conflicts, as every constraint violation is on SQLite; the rest is a bug or a corrupt row.
fn map_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(database) => {
            let code = database
                .code()
                .map(|code| code.to_string())
                .unwrap_or_default();
            match sqlstate_kind(&code) {
                SqlStateKind::Transient => StoreError::Unavailable(error.to_string()),
                SqlStateKind::Integrity => StoreError::Conflict(error.to_string()),
                SqlStateKind::Other => StoreError::Other(error.to_string()),
            }
        }
        _ => StoreError::Other(error.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlStateKind {
    Transient,
    Integrity,
    Other,
}

fn sqlstate_kind(code: &str) -> SqlStateKind {
    match code {
        // 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available,
        // 57014 query_canceled (a statement timeout), 57P01..57P03 shutdowns and start-up,
        // 25006 read_only_sql_transaction (the host stopped being the primary: a failover).
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "25006" => {
            SqlStateKind::Transient
        }
        // Class 08: connection exceptions; class 53: insufficient resources (disk full, out of
        // memory, too many connections), like SQLITE_FULL on the other backend.
        _ if code.starts_with("08") || code.starts_with("53") => SqlStateKind::Transient,
        // Class 23: unique, exclusion, foreign-key, check and not-null violations.
        _ if code.starts_with("23") => SqlStateKind::Integrity,
        _ => SqlStateKind::Other,
    }
}

fn uuids<T>(ids: &[T], id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    ids.iter().map(id).collect()
}

impl Binding for Postgres {
    fn bind<'q>(
        query: Query<'q, Postgres, <Postgres as sqlx::Database>::Arguments>,
        arg: &Arg<'_>,
    ) -> Query<'q, Postgres, <Postgres as sqlx::Database>::Arguments> {
        match arg {
            Arg::Int(value) => query.bind(*value),
            Arg::Uuid(value) => query.bind(*value),
            Arg::Text(value) => query.bind(*value),
            Arg::Bytes(value) => query.bind(*value),
            Arg::Ids(ids) => query.bind(ids.as_slice()),
            Arg::Texts(texts) => query.bind(*texts),
        }
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn map_error(error: sqlx::Error) -> StoreError {
        map_error(error)
    }
}

impl Backend for Postgres {
    type Extra = PgNode;

    /// READ COMMITTED (PostgreSQL's default, stated so that a server configured otherwise does
    /// not change the rules): conditional writes re-check their conditions on the newest
    /// committed version of a row they had to wait for.
    ///
    /// No sequential scans: every statement of a write transaction reaches its rows by key or
    /// through an index, whatever the planner believes of the tables' sizes. During an
    /// enrollment burst the statistics lag behind the tables (autovacuum analyses a table a
    /// minute or more after it grew), and statements planned from them scanned the whole
    /// `devices` table at every batch.
    const BEGIN: &'static str =
        "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL enable_seqscan = off";

    /// One snapshot for the counts and the pages; and, as in write transactions, no
    /// sequential scans: an organization's rows are reached through its indexes, whatever the
    /// planner believes of the tables (a count of up to 10,000 rows planned as a scan of every
    /// organization's devices and a hash join, from statistics that lag a burst).
    const BEGIN_FLEET_READ: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
         SET LOCAL enable_seqscan = off";
    const UNHELD_LICENSES: &'static str = "";
    const SEARCHED_DEVICES: Option<(&'static str, &'static str)> = None;
    const BY_NAME: &'static str = "";
    const ONLINE_DEVICES: Option<(&'static str, &'static str)> = None;
    const ID_IN_LIST: &'static str = " AND d.id = ANY({list})";
    const WORD_INDEX: WordIndex = WordIndex::TsVector;
    const UNINDEXED: &'static str = concat!(
        "((words_of IS NULL AND ended_at IS NULL) OR words_of IS DISTINCT FROM ",
        indexed_text!(),
        ")"
    );
    const UNINDEXED_DEVICES: &'static str = concat!(
        "SELECT id FROM devices WHERE (words_of IS NULL AND ended_at IS NULL) \
         OR words_of IS DISTINCT FROM ",
        indexed_text!(),
        " LIMIT $1 FOR UPDATE SKIP LOCKED"
    );
    const INDEX_WORDS: [&'static str; 3] = [
        "DELETE FROM device_words WHERE device_id = ANY($1)",
        // Its words: the text cut at spaces, each word cut to 500 characters (a lexeme holds
        // 2 KB), none empty, each once.
        concat!(
            "INSERT INTO device_words (device_id, org_id, words) \
             SELECT id, org_id, array_to_tsvector(ARRAY(SELECT DISTINCT left(word, 500) \
             FROM unnest(string_to_array(",
            searched_text!(),
            ", ' ')) AS word WHERE word <> '')) \
             FROM devices WHERE id = ANY($1) AND ended_at IS NULL"
        ),
        concat!(
            "UPDATE devices SET words_of = ",
            indexed_text!(),
            " WHERE id = ANY($1)"
        ),
    ];

    const DEVICE_STATES: &'static str = "SELECT id, config_id, end_reason, end_cause, staged_revision FROM devices WHERE id = ANY($1)";
    const DEVICE_PRESENCE: &'static str = "SELECT id, online_conn, last_seen FROM devices \
         WHERE id = ANY($1) AND ended_at IS NULL";
    const WAITING_LINE: &'static str = concat!(
        "SELECT ",
        crate::line::waiting_columns!(),
        " FROM waiting_devices w WHERE w.org_id = $1 ORDER BY w.seq LIMIT $2 FOR UPDATE"
    );
    const STAGE_DEVICES: &'static str = "UPDATE devices SET staged_revision = $1 \
         WHERE org_id = $2 AND config_id = $3 AND ended_at IS NULL AND id = ANY($4) RETURNING id";
    const REVOKE_REPLACEMENT_CODES: &'static str = "UPDATE codes SET revoked_at = $1 \
         WHERE replaces_device = ANY($2) AND replaces_device IS NOT NULL \
         AND used_at IS NULL AND revoked_at IS NULL RETURNING license_id";
    /// Driven by `licenses_expiring` (its predicate, in its order), so that the sweep reads
    /// only expired assigned licenses whatever the planner believes of the tables' sizes: a
    /// join planned from stale statistics during an enrollment burst walked every active
    /// device at each sweep of each node.
    const EXPIRED_PAIRINGS: &'static str = "WITH due AS MATERIALIZED (SELECT id FROM licenses \
         WHERE device_id IS NOT NULL AND valid_until IS NOT NULL AND valid_until <= $1 \
         ORDER BY valid_until LIMIT $2) \
         SELECT d.org_id, d.id FROM due \
         JOIN devices d ON d.license_id = due.id AND d.ended_at IS NULL";
    crate::backend::batch_statements!(batch_sql);
    /// Locked, so that two nodes revoking (or one revoking while another pairs with it) see
    /// each other's outcome instead of both acting on the unrevoked state.
    const AUDIT_OF_DEVICE: &'static str = audit_of_device!("= ANY($6)");
    const AUDIT_OF_ORG_IN_TIME: &'static str = audit_of_org_in_time!("audit_log a", "= ANY($5)");
    /// Each action's newest entries by `audit_by_org_action`, one `LATERAL` scan per action.
    const AUDIT_OF_ORG_BY_ACTIONS: &'static str = concat!(
        "SELECT a.* FROM unnest($3::text[]) AS j(action) CROSS JOIN LATERAL (SELECT ",
        audit_columns!(),
        " FROM audit_log a WHERE a.org_id = $1 AND a.action = j.action AND a.id < $2 \
         ORDER BY a.id DESC LIMIT $4) AS a ORDER BY a.id DESC LIMIT $4"
    );
    const AUDIT_OF_SERVER: &'static str = audit_of_server!("= ANY($4)");
    const CODE_STATE_FOR_REVOCATION: &'static str = code_state_for_revocation!(" FOR UPDATE");
    /// Locked: the revision compared with `if_revision` must still be the current one when the
    /// update increments it, whatever another node does meanwhile; rollout decisions and codes
    /// made to carry the configuration wait for each other the same way. `NO KEY`: pairings
    /// that assign the configuration meanwhile (their foreign-key checks take a key-share lock)
    /// do not wait for an edit.
    const CONFIG_REVISION_FOR_EDIT: &'static str = config_revision_for_edit!(" FOR NO KEY UPDATE");
    /// The configuration row is locked before its devices are counted: a device assigned to it
    /// by another node meanwhile waits (its foreign-key check takes a share lock on this row),
    /// and if one got in first the delete fails on the foreign key as a conflict.
    const CONFIG_DEVICES_FOR_DELETE: &'static str = config_devices_for_delete!(" FOR UPDATE OF c");
    const OPERATOR_TOKENS_FOR_REVOCATION: &'static str =
        operator_tokens_for_revocation!(" FOR UPDATE");
    /// `FOR NO KEY UPDATE`: quota checks of one organization wait for each other (so two nodes
    /// cannot both count one below the limit and both insert), while pairings, whose inserts
    /// take a key-share lock on the organization for their foreign keys, do not wait.
    const ORGANIZATION_FOR_QUOTA: &'static str = organization_for_quota!(" FOR NO KEY UPDATE");
    const PINNED_CONFIGURATION_FOR_DELETE: &'static str =
        pinned_configuration_for_delete!(" FOR NO KEY UPDATE");

    async fn close(store: &PgStore) {
        store.writer.close().await;
    }

    async fn reset_presence(_store: &PgStore, _now: Timestamp) -> StoreResult<()> {
        // Several nodes share this database, and the devices online on the other nodes are
        // still online: clearing every row's presence, as a lone SQLite node does at start-up,
        // would show them offline. A node that crashed is found by its stale heartbeat instead
        // (`expire_nodes`, run by every node), and a restarted node has a new node id.
        Ok(())
    }

    async fn subscribe(store: &PgStore) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        // A connection of its own, outside the pool: a listener holds it for good.
        let hosts = &store.extra.hosts;
        let pool = pg_hosts::pool_options(hosts.attrs())
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(hosts.options(LISTENER_APPLICATION_NAME));
        hosts.follow(&pool, LISTENER_APPLICATION_NAME);
        let feed = crate::notify::PgFeed::start(pool, store.extra.origin)
            .await
            .map_err(map_error)?;
        Ok(Some(Box::new(feed)))
    }

    async fn publish_events(
        store: &PgStore,
        org_id: OrgId,
        events: &[OrgEvent],
    ) -> StoreResult<()> {
        store
            .notify(crate::notify::events_payload(
                org_id,
                events,
                store.extra.origin,
            ))
            .await
    }

    async fn announce_watch(store: &PgStore, org_id: OrgId) -> StoreResult<()> {
        store
            .notify(crate::notify::watch_payload(org_id, store.extra.origin))
            .await
    }

    async fn heartbeat(
        store: &PgStore,
        node: i64,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<bool> {
        // The previous heartbeat is read in the same statement that replaces it.
        let previous: Option<i64> = sqlx::query_scalar(
            "WITH previous AS (SELECT heartbeat_at FROM nodes WHERE id = $1) \
             INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = GREATEST(nodes.heartbeat_at, $2) \
             RETURNING (SELECT heartbeat_at FROM previous)",
        )
        .bind(node)
        .bind(now.0)
        .fetch_one(&store.writer)
        .await
        .map_err(map_error)?;
        Ok(previous.is_some_and(|at| at >= stale_before.0))
    }

    async fn expire_nodes(store: &PgStore, stale_before: Timestamp) -> StoreResult<u64> {
        // Runs on every node, over and over while a node stays dead: once its devices are
        // offline the index finds nothing more to change. A device that reconnected elsewhere
        // is online on another node's connection and is not touched. Rows of nodes dead for a
        // week are forgotten.
        //
        // The stale nodes' rows are locked (and re-checked after any wait) for the statement:
        // a node that beats again meanwhile either commits its heartbeat first and is no longer
        // stale here, or waits for this statement and then learns from its heartbeat that it
        // was given up, and marks its devices online again after this cleared them.
        let offline = sqlx::query(
            "WITH dead AS (SELECT id, heartbeat_at FROM nodes WHERE heartbeat_at < $1 \
             ORDER BY id FOR UPDATE) \
             UPDATE devices SET online_conn = NULL, \
             last_seen = GREATEST(devices.last_seen, dead.heartbeat_at) \
             FROM dead WHERE devices.online_conn IS NOT NULL \
             AND (devices.online_conn >> 32) = dead.id",
        )
        .bind(stale_before.0)
        .execute(&store.writer)
        .await
        .map_err(map_error)?
        .rows_affected();
        // The devices that waited in line on their connections lose their places.
        sqlx::query(
            "DELETE FROM waiting_devices w USING nodes n \
             WHERE n.heartbeat_at < $1 AND (w.connection >> 32) = n.id",
        )
        .bind(stale_before.0)
        .execute(&store.writer)
        .await
        .map_err(map_error)?;
        sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1 - 604800000")
            .bind(stale_before.0)
            .execute(&store.writer)
            .await
            .map_err(map_error)?;
        Ok(offline)
    }

    async fn mark_online(
        store: &PgStore,
        online: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let ids: Vec<Uuid> = online.iter().map(|(device, _)| device.0).collect();
        let connections: Vec<i64> = online.iter().map(|(_, connection)| *connection).collect();
        sqlx::query(
            "UPDATE devices SET online_conn = u.connection, last_seen = $1 \
             FROM UNNEST($2::uuid[], $3::bigint[]) AS u(id, connection) \
             WHERE devices.id = ANY($2::uuid[]) AND devices.id = u.id \
             AND num_nulls(devices.ended_at) = 1",
        )
        .bind(now.0)
        .bind(ids)
        .bind(connections)
        .execute(&store.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn publish(tx: &mut SqlTx<Postgres>, change: &Change) -> StoreResult<()> {
        // Delivered to every listening node when this transaction commits (and never if it
        // rolls back); listeners re-read the rows it names.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGE_CHANNEL)
            .bind(crate::notify::change_payload(change, tx.extra.origin))
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn claim_free_licenses(
        tx: &mut SqlTx<Postgres>,
        org_id: OrgId,
        count: u32,
        now: Timestamp,
        claim: Claim,
    ) -> StoreResult<Vec<FreeLicense>> {
        // SKIP LOCKED: licenses another node's open transaction holds are passed over, so two
        // nodes granting at once get disjoint licenses without waiting for each other. The
        // locks taken here last until commit, so the licenses stay ours until assigned.
        //
        // The scan starts after the last license this node claimed for the organization (the
        // licenses before it were taken, unless one was freed since), and only if that finds
        // too few does a second scan look before it. Whichever index the planner walks, a
        // claim then reads about as many rows as it takes: from the start, a burst of 100,000
        // pairings walked every license already assigned at each batch.
        let hint = tx
            .extra
            .claim_hints
            .lock()
            .map_or(None, |hints| hints.get(&org_id).copied());
        let mut claimed = Vec::new();
        for (after, before) in [
            (hint.unwrap_or(Uuid::nil()), Uuid::max()),
            (Uuid::nil(), hint.unwrap_or(Uuid::nil())),
        ] {
            let wanted = i64::from(count) - claimed.len() as i64;
            if wanted <= 0 || after >= before {
                continue;
            }
            let rows = sqlx::query(batch_sql::CLAIM_FREE_LICENSES)
                .bind(org_id.0)
                .bind(now.0)
                .bind(wanted)
                .bind(after)
                .bind(before)
                .bind(claim == Claim::ForLine)
                .fetch_all(&mut *tx.tx)
                .await
                .map_err(map_error)?;
            for row in &rows {
                claimed.push(FreeLicense {
                    id: LicenseId(get(row, 0)?),
                    valid_until: get_opt_ts(row, 1)?,
                });
            }
        }
        // The highest id claimed: beyond the hint if the first scan found any, otherwise from
        // the second scan, where the walk restarts.
        if let Some(last) = claimed.iter().map(|license| license.id.0).max()
            && let Ok(mut hints) = tx.extra.claim_hints.lock()
        {
            hints.insert(org_id, last);
        }
        Ok(claimed)
    }

    async fn insert_audit(tx: &mut SqlTx<Postgres>, entries: &[NewAudit]) -> StoreResult<()> {
        let orgs: Vec<Option<Uuid>> = entries
            .iter()
            .map(|entry| entry.org_id.map(|org| org.0))
            .collect();
        let times: Vec<i64> = entries.iter().map(|entry| entry.at.0).collect();
        let actors: Vec<&str> = entries.iter().map(|entry| entry.actor.as_str()).collect();
        let actions: Vec<&str> = entries.iter().map(|entry| entry.action.as_str()).collect();
        let subjects: Vec<Option<&str>> = entries
            .iter()
            .map(|entry| entry.subject.as_deref())
            .collect();
        // Compact JSON text, as SQLite's `json()` stores it.
        let details: Vec<String> = entries
            .iter()
            .map(|entry| entry.details.to_string())
            .collect();
        // The devices each entry names: (the entry's place, from 1, as `WITH ORDINALITY`
        // counts; the device).
        let (places, devices): (Vec<i64>, Vec<Uuid>) = entries
            .iter()
            .zip(1_i64..)
            .flat_map(|(entry, place)| entry.devices.iter().map(move |device| (place, device.0)))
            .unzip();
        sqlx::query(batch_sql::INSERT_AUDIT)
            .bind(orgs)
            .bind(times)
            .bind(actors)
            .bind(actions)
            .bind(subjects)
            .bind(details)
            .bind(places)
            .bind(devices)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn consume_single_use_codes(
        tx: &mut SqlTx<Postgres>,
        uses: &[(CodeId, DeviceId)],
        now: Timestamp,
    ) -> StoreResult<u64> {
        let changed = sqlx::query(batch_sql::CONSUME_SINGLE_USE_CODES)
            .bind(now.0)
            .bind(uuids(uses, |(code, _)| code.0))
            .bind(uuids(uses, |(_, device)| device.0))
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(changed.rows_affected())
    }

    async fn assign_licenses(
        tx: &mut SqlTx<Postgres>,
        grants: &[LicenseGrant],
        now: Timestamp,
    ) -> StoreResult<u64> {
        let codes: Vec<Option<Uuid>> = grants
            .iter()
            .map(|grant| grant.single_use_code.map(|code| code.0))
            .collect();
        let changed = sqlx::query(batch_sql::ASSIGN_LICENSES)
            .bind(now.0)
            .bind(uuids(grants, |grant| grant.license_id.0))
            .bind(uuids(grants, |grant| grant.device_id.0))
            .bind(codes)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(changed.rows_affected())
    }

    async fn insert_devices(
        tx: &mut SqlTx<Postgres>,
        org_id: OrgId,
        now: Timestamp,
        devices: &[NewDevice],
    ) -> StoreResult<u64> {
        let text =
            |field: fn(&NewDevice) -> &str| -> Vec<&str> { devices.iter().map(field).collect() };
        let hashes: Vec<&[u8]> = devices
            .iter()
            .map(|device| device.credential_hash.0.as_slice())
            .collect();
        let connections: Vec<i64> = devices.iter().map(|device| device.connection).collect();
        let configs: Vec<Option<uuid::Uuid>> = devices
            .iter()
            .map(|device| device.config_id.map(|config| config.0))
            .collect();
        let inserted = sqlx::query(batch_sql::INSERT_DEVICES)
            .bind(org_id.0)
            .bind(configs)
            .bind(now.0)
            .bind(uuids(devices, |device| device.id.0))
            .bind(uuids(devices, |device| device.installation_id.0))
            .bind(hashes)
            .bind(uuids(devices, |device| device.license_id.0))
            .bind(text(|device| &device.details.name))
            .bind(text(|device| &device.details.model))
            .bind(text(|device| &device.details.os))
            .bind(text(|device| &device.details.app_version))
            .bind(uuids(devices, |device| device.paired_by_code.0))
            .bind(connections)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(inserted.rows_affected())
    }

    async fn count_code_uses(
        tx: &mut SqlTx<Postgres>,
        uses: &[(CodeId, u32)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let counts: Vec<i64> = uses.iter().map(|(_, count)| i64::from(*count)).collect();
        sqlx::query(batch_sql::COUNT_CODE_USES)
            .bind(now.0)
            .bind(uuids(uses, |(code, _)| code.0))
            .bind(counts)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn touch_devices(
        tx: &mut SqlTx<Postgres>,
        touches: &[DeviceTouch],
        now: Timestamp,
    ) -> StoreResult<()> {
        let text =
            |field: fn(&DeviceTouch) -> &str| -> Vec<&str> { touches.iter().map(field).collect() };
        let connections: Vec<i64> = touches.iter().map(|touch| touch.connection).collect();
        sqlx::query(batch_sql::TOUCH_DEVICES)
            .bind(now.0)
            .bind(uuids(touches, |touch| touch.device_id.0))
            .bind(connections)
            .bind(text(|touch| &touch.details.name))
            .bind(text(|touch| &touch.details.model))
            .bind(text(|touch| &touch.details.os))
            .bind(text(|touch| &touch.details.app_version))
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn set_offline(
        tx: &mut SqlTx<Postgres>,
        offline: &[(DeviceId, i64)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let connections: Vec<i64> = offline.iter().map(|(_, connection)| *connection).collect();
        sqlx::query(batch_sql::SET_OFFLINE)
            .bind(now.0)
            .bind(uuids(offline, |(device, _)| device.0))
            .bind(connections)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn write_acks(
        tx: &mut SqlTx<Postgres>,
        acks: &[AckWrite],
        now: Timestamp,
    ) -> StoreResult<()> {
        let revisions: Vec<i64> = acks.iter().map(|ack| to_i64(ack.revision)).collect();
        let statuses: Vec<&str> = acks.iter().map(|ack| ack.status.as_str()).collect();
        let reasons: Vec<Option<&str>> = acks.iter().map(|ack| ack.reason.as_deref()).collect();
        sqlx::query(batch_sql::WRITE_ACKS)
            .bind(now.0)
            .bind(uuids(acks, |ack| ack.device_id.0))
            .bind(uuids(acks, |ack| ack.config_id.0))
            .bind(revisions)
            .bind(statuses)
            .bind(reasons)
            .execute(&mut *tx.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn licenses_inserted(tx: &mut SqlTx<Postgres>, count: usize) -> StoreResult<()> {
        if count >= ANALYZE_AFTER_LICENSES {
            // Licenses are bought in bulk and then taken in a burst; autovacuum may not have
            // analysed the table for another minute. Planned from the old statistics (a few
            // licenses), the burst's statements scanned the whole table at every batch.
            // ANALYZE counts this transaction's own rows and publishes at commit.
            sqlx::query("ANALYZE licenses")
                .execute(&mut *tx.tx)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }
}

/// Licenses added at once from which [`engine::store::AdminTx::insert_licenses`] refreshes the
/// table's statistics.
const ANALYZE_AFTER_LICENSES: usize = 1_000;

/// The statements of the batch path. Each takes its rows as arrays bound once, so one statement
/// serves a batch of any size.
///
/// An `UPDATE ... FROM UNNEST(..)` also says `id = ANY(<the same ids>)`: that gives the planner
/// a primary-key path whose row count it knows (the array's length), so it reaches the batch's
/// rows by key. Without it, the planner chose by its table statistics, which are stale during
/// an enrollment burst: it hashed every free license (or every device) at each batch, work that
/// grows with the table, not with the batch. For the same reason, statements that name their
/// rows by id write "not ended" as `num_nulls(ended_at) = 1`: the same test, but one that does
/// not match the predicate of a partial index, which the planner otherwise read whole (as a
/// bitmap) when it believed the table small. Write transactions also run with
/// `enable_seqscan = off` ([`engine::store::Store::begin`]).
pub(crate) mod batch_sql {
    use crate::rows::{active_device_columns, code_state_columns};

    /// Single-use codes and reusable codes with a use limit are locked exclusively (in id
    /// order, so transactions locking overlapping sets cannot deadlock): their state decides
    /// who may use them. A reusable code without a limit only has to stay unrevoked until the
    /// batch commits, so it is locked `FOR KEY SHARE`: the batches of every node that scan it
    /// run at once, a revocation (`FOR UPDATE`) waits for them, and each batch's use count
    /// (`COUNT_CODE_USES`, an update that `KEY SHARE` does not block) is its last statement,
    /// so batches queue on the row only for their commit. A code's kind and limit never
    /// change after it is created.
    pub const LOCK_CODES: &str = concat!(
        "WITH decisive AS (SELECT ",
        code_state_columns!(),
        " FROM codes WHERE id = ANY($1::uuid[]) \
         AND (kind = 'single_use' OR max_uses IS NOT NULL) ORDER BY id FOR UPDATE), \
         open AS (SELECT ",
        code_state_columns!(),
        " FROM codes WHERE id = ANY($1::uuid[]) AND kind = 'reusable' AND max_uses IS NULL \
         ORDER BY id FOR KEY SHARE) \
         SELECT * FROM decisive UNION ALL SELECT * FROM open"
    );
    /// The active pairings of a batch are locked too: an unpair or expiry on another node waits
    /// until this batch has committed (and then ends the pairing it finds), instead of ending it
    /// while this batch tells the device "resumed".
    pub const ACTIVE_DEVICES_BY_INSTALLATION: &str = concat!(
        "SELECT ",
        active_device_columns!(),
        " FROM devices d JOIN licenses l ON l.id = d.license_id \
         WHERE d.installation_id = ANY($1::uuid[]) AND d.ended_at IS NULL \
         ORDER BY d.id FOR UPDATE OF d"
    );
    pub const ACTIVE_DEVICES: &str = concat!(
        "SELECT ",
        active_device_columns!(),
        " FROM devices d JOIN licenses l ON l.id = d.license_id \
         WHERE d.id = ANY($1::uuid[]) AND num_nulls(d.ended_at) = 1 \
         ORDER BY d.id FOR UPDATE OF d"
    );
    pub const LOCK_LICENSES: &str = "SELECT id, org_id, valid_until, device_id, reserved_by, \
         reserved_until FROM licenses WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE";
    /// The limit applies after the locked rows are skipped (PostgreSQL locks below the limit),
    /// so a claim returns `count` licenses whenever that many are free and unlocked.
    pub const CLAIM_FREE_LICENSES: &str = "SELECT id, valid_until FROM licenses \
         WHERE org_id = $1 AND device_id IS NULL AND id > $4 AND id <= $5 \
         AND (valid_until IS NULL OR valid_until > $2) \
         AND (reserved_until IS NULL OR reserved_until <= $2) \
         AND ($6 OR NOT EXISTS (SELECT 1 FROM waiting_devices w WHERE w.org_id = $1)) \
         ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED";
    pub const CONSUME_SINGLE_USE_CODES: &str = "UPDATE codes SET used_at = $1, \
         used_by_device = u.device_id, uses = uses + 1, last_used_at = $1 \
         FROM UNNEST($2::uuid[], $3::uuid[]) AS u(code_id, device_id) \
         WHERE codes.id = ANY($2::uuid[]) AND codes.id = u.code_id AND codes.kind = 'single_use' \
         AND codes.used_at IS NULL AND codes.revoked_at IS NULL AND codes.expires_at > $1";
    /// A grant without a single-use code (NULL in the third array) needs an unreserved
    /// license; a grant from a single-use code needs the license that code reserved.
    ///
    /// Every condition on the license is written inside one `CASE` on the batch's row, so
    /// that none can be pushed down to the scan of `licenses`: that scan is then only
    /// `id = ANY(..)`, whose row count the planner knows (the batch's), and it hashes one side
    /// and probes with the other. With the conditions pushed down it expected one license from
    /// the scan, and either rescanned the batch's array for each license found (quadratic in
    /// the batch) or, with the partial index's predicate among them, read every free license
    /// at each batch; during a burst of 100,000 pairings that was over 100 ms a batch.
    pub const ASSIGN_LICENSES: &str = "UPDATE licenses SET device_id = g.device_id, \
         reserved_by = NULL, reserved_until = NULL \
         FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[]) AS g(license_id, device_id, code_id) \
         WHERE licenses.id = ANY($2::uuid[]) AND licenses.id = g.license_id \
         AND CASE WHEN g.code_id IS NULL \
             THEN licenses.device_id IS NULL \
                 AND (licenses.valid_until IS NULL OR licenses.valid_until > $1) \
                 AND (licenses.reserved_until IS NULL OR licenses.reserved_until <= $1) \
             ELSE licenses.device_id IS NULL \
                 AND (licenses.valid_until IS NULL OR licenses.valid_until > $1) \
                 AND licenses.reserved_by = g.code_id END";
    /// `ON CONFLICT DO NOTHING` without a target covers every unique index, the partial ones
    /// included (one active pairing per installation, one active device per license).
    pub const INSERT_DEVICES: &str = "INSERT INTO devices (id, org_id, installation_id, \
         credential_hash, license_id, name, model, os, app_version, paired_at, paired_by_code, \
         config_id, assigned_at, online_conn, last_seen) \
         SELECT n.id, $1, n.installation_id, n.credential_hash, n.license_id, n.name, n.model, \
         n.os, n.app_version, $3, n.code_id, n.config_id, \
         CASE WHEN n.config_id IS NULL THEN NULL ELSE $3::bigint END, n.conn, $3 \
         FROM UNNEST($4::uuid[], $5::uuid[], $6::bytea[], $7::uuid[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::uuid[], $13::bigint[], $2::uuid[]) \
         WITH ORDINALITY AS n(id, installation_id, credential_hash, license_id, name, model, os, \
         app_version, code_id, conn, config_id, i) \
         ORDER BY n.i \
         ON CONFLICT DO NOTHING";
    /// The rows are locked in id order first: two batches counting uses of the same codes
    /// cannot deadlock.
    pub const COUNT_CODE_USES: &str = "WITH locked AS (SELECT id FROM codes \
         WHERE id = ANY($2::uuid[]) ORDER BY id FOR NO KEY UPDATE) \
         UPDATE codes SET uses = uses + u.n, last_used_at = $1 \
         FROM UNNEST($2::uuid[], $3::bigint[]) AS u(code_id, n), locked \
         WHERE codes.id = u.code_id AND locked.id = u.code_id";
    pub const TOUCH_DEVICES: &str = "UPDATE devices SET name = t.name, model = t.model, \
         os = t.os, app_version = t.app_version, online_conn = t.conn, last_seen = $1 \
         FROM UNNEST($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
         AS t(id, conn, name, model, os, app_version) \
         WHERE devices.id = ANY($2::uuid[]) AND devices.id = t.id \
         AND num_nulls(devices.ended_at) = 1";
    pub const SET_OFFLINE: &str = "UPDATE devices SET online_conn = NULL, last_seen = $1 \
         FROM UNNEST($2::uuid[], $3::bigint[]) AS o(id, conn) \
         WHERE devices.id = ANY($2::uuid[]) AND devices.id = o.id \
         AND devices.online_conn = o.conn";
    pub const END_DEVICES: &str = "UPDATE devices SET ended_at = $1, end_reason = $2, end_cause = $4, \
         config_id = NULL, online_conn = NULL, last_seen = $1 \
         WHERE id = ANY($3::uuid[]) AND num_nulls(ended_at) = 1 \
         RETURNING id, org_id, license_id";
    pub const RELEASE_LICENSES: &str =
        "UPDATE licenses SET device_id = NULL WHERE device_id = ANY($1::uuid[])";
    /// One row per installation: PostgreSQL refuses an upsert that would change the same row
    /// twice (only one pairing per installation is active, so this never drops one).
    pub const RECORD_ENDED_PAIRINGS: &str = "INSERT INTO ended_pairings \
         (installation_id, credential_hash, end_reason, end_cause, ended_at) \
         SELECT DISTINCT ON (installation_id) installation_id, credential_hash, end_reason, \
         end_cause, ended_at FROM devices WHERE id = ANY($1::uuid[]) AND ended_at IS NOT NULL \
         ORDER BY installation_id, ended_at DESC \
         ON CONFLICT (installation_id) DO UPDATE SET credential_hash = excluded.credential_hash, \
         end_reason = excluded.end_reason, end_cause = excluded.end_cause, \
         ended_at = excluded.ended_at";
    pub const ACK_TARGETS: &str = "SELECT d.id, d.config_id, \
         (CASE WHEN d.staged_revision > c.revision THEN d.staged_revision ELSE c.revision END), \
         d.applied_config_id, \
         d.applied_revision, d.ack_status, d.ack_reason, d.name, c.name \
         FROM devices d LEFT JOIN configurations c ON c.id = d.config_id \
         WHERE d.id = ANY($1::uuid[]) AND num_nulls(d.ended_at) = 1";
    pub const WRITE_ACKS: &str = "UPDATE devices SET applied_config_id = a.config_id, \
         applied_revision = a.revision, ack_status = a.status, ack_reason = a.reason, ack_at = $1 \
         FROM UNNEST($2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::text[]) \
         AS a(device_id, config_id, revision, status, reason) \
         WHERE devices.id = ANY($2::uuid[]) AND devices.id = a.device_id";
    pub const CONFIG_ROWS: &str = "SELECT id, org_id, name, revision, body FROM configurations \
         WHERE id = ANY($1::uuid[])";
    /// In the given order: audit ids come from a sequence and follow the order rows are
    /// inserted, which is what the log's order means. The ids are drawn first (`entry`), so
    /// that the devices each entry names are linked to it in the same statement: the entry's
    /// place indexes the array of ids, whatever the batch's size (no join to plan).
    pub const INSERT_AUDIT: &str = "WITH entry AS MATERIALIZED ( \
         SELECT nextval(pg_get_serial_sequence('audit_log', 'id')) AS id, e.* FROM ( \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
         $6::text[]) WITH ORDINALITY AS e(org_id, at, actor, action, subject, details, i) \
         ORDER BY e.i) AS e), \
         inserted AS (INSERT INTO audit_log (id, org_id, at, actor, action, subject, details) \
         OVERRIDING SYSTEM VALUE \
         SELECT id, org_id, at, actor, action, subject, details FROM entry ORDER BY i) \
         INSERT INTO audit_devices (device_id, audit_id) \
         SELECT l.device_id, (SELECT array_agg(id ORDER BY i) FROM entry)[l.i::int] \
         FROM UNNEST($7::bigint[], $8::uuid[]) AS l(i, device_id)";
    pub const INSERT_LICENSES: &str = "INSERT INTO licenses (id, org_id, purchased_at, \
         valid_until) SELECT t.id, $1, $2, $3 FROM UNNEST($4::uuid[]) AS t(id)";
    pub const ASSIGN_CONFIGURATION: &str = "UPDATE devices SET config_id = $1, assigned_at = $2, \
         staged_revision = CASE WHEN config_id = $1 THEN staged_revision END \
         WHERE org_id = $3 AND num_nulls(ended_at) = 1 AND id = ANY($4::uuid[]) RETURNING id";
    pub const EXTEND_LICENSES: &str = "UPDATE licenses SET valid_until = $1 \
         WHERE org_id = $2 AND id = ANY($3::uuid[]) AND valid_until < $1 \
         RETURNING id, device_id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_never_shows_its_password() {
        let node = PgNode {
            hosts: HostFollower::new(
                PgTargets::parse("postgres://paird:hunter2-secret@a,b/fleet").unwrap(),
            ),
            origin: 7,
            claim_hints: Mutex::default(),
        };
        let shown = format!("{node:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("origin: 7"), "{shown}");
    }

    #[test]
    fn sqlstates_map_to_the_engine_categories() {
        assert_eq!(sqlstate_kind("23505"), SqlStateKind::Integrity);
        assert_eq!(sqlstate_kind("23P01"), SqlStateKind::Integrity);
        assert_eq!(sqlstate_kind("23514"), SqlStateKind::Integrity);
        assert_eq!(sqlstate_kind("08006"), SqlStateKind::Transient);
        assert_eq!(sqlstate_kind("53100"), SqlStateKind::Transient);
        assert_eq!(sqlstate_kind("40P01"), SqlStateKind::Transient);
        assert_eq!(sqlstate_kind("57P01"), SqlStateKind::Transient);
        assert_eq!(sqlstate_kind("25006"), SqlStateKind::Transient);
        assert_eq!(sqlstate_kind("42601"), SqlStateKind::Other);
        assert_eq!(sqlstate_kind(""), SqlStateKind::Other);
    }
}
