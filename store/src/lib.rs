//! Storage for the paird engine: [`engine::store::Store`] on SQLite (one node) and on PostgreSQL
//! (several nodes sharing one database), with sqlx.
//!
//! One store, two dialects. The engine's storage traits are implemented once, for
//! [`SqlStore<B>`](SqlStore), in SQL that both databases run as written (`$1`, `$2`…
//! placeholders bind by number on both). A backend `B` is one of sqlx's database types, and the
//! crate-private `Backend` trait is the only place where the two differ: how values and lists
//! of ids are bound, the statements whose text differs (the batch statements, and the reads
//! PostgreSQL locks), and the operations that differ beyond their text (batch writes, the
//! license claim, presence and heartbeats, notifications between nodes, opening and closing).
//! [`SqliteStore`] and [`PgStore`] are the two instances. Each backend has its own migrations,
//! embedded in the binary and applied at start-up. The backend is chosen by the database URL:
//! `sqlite:` (the default) or `postgres:` / `postgresql:`.
//!
//! Layout:
//! - this file: the database URL and [`open`];
//! - `backend`: the dialect seam — `Backend`, `Statements` (run a `&'static str` with bound
//!   values on any backend's connection) and the generic [`SqlStore`] and `SqlTx`;
//! - `node`, `reads`, `writes`: the engine's traits, written once — `Store` and `NodeStore`;
//!   `DeviceReads` and `AdminReads`; the transaction roles `StoreTx`, `PairingTx` and `AdminTx`;
//! - [`sqlite`] and [`postgres`]: each backend's `Backend` — connections and settings, error
//!   mapping, its `batch_sql` statements and the writes that bind them, and its answers to the
//!   cluster duties (SQLite: one node, nothing to tell; PostgreSQL: heartbeats, row locks,
//!   `SKIP LOCKED` claims, notifications);
//! - `notify`: the notification payload and the change feed between PostgreSQL nodes;
//! - `audit`: the audit log's filtered reads, one statement per shape of filter;
//! - `rows`: column lists and the functions that read them, for both backends' rows;
//! - `paging`: page cursors and limits;
//! - `retention`: the audit retention duty's deletes, a bounded batch at a time;
//! - [`backup`]: an online copy of a SQLite database (`paird backup`).

mod audit;
mod backend;
pub mod backup;
mod fleet;
mod line;
mod node;
mod notify;
mod paging;
mod pg_hosts;
pub mod postgres;
mod reads;
mod retention;
mod rollouts;
mod rows;
pub mod sqlite;
mod webhooks;
mod writes;

use std::path::PathBuf;
use std::sync::Arc;

use engine::store::{Store, StoreError};

pub use backend::SqlStore;
pub use postgres::{PgSettings, PgStore};
pub use sqlite::{Durability, SqliteSettings, SqliteStore};

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` or `sqlite:PATH` (a relative path is relative to the working directory).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, passed to the driver whole.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("a sqlite: URL needs a file path, e.g. sqlite://data/paird.db".into());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        Err(format!(
            "unsupported database URL {url:?}; use sqlite://PATH or postgres://HOST/DATABASE"
        ))
    }
}

/// Backend settings given with the URL; each applies to one backend only.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// SQLite's `synchronous` setting (PostgreSQL has its own `synchronous_commit`).
    pub durability: Durability,
    /// Connections in the PostgreSQL pool.
    pub pg_pool_size: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            durability: Durability::default(),
            pg_pool_size: PgSettings::new("").pool_size,
        }
    }
}

/// Opens the database named by `url`, applying its migrations.
pub async fn open(url: &DatabaseUrl, options: OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut settings = SqliteSettings::new(path);
            settings.durability = options.durability;
            Ok(Arc::new(SqliteStore::open(&settings).await?))
        }
        // Durability is PostgreSQL's own configuration (`synchronous_commit`), not ours.
        DatabaseUrl::Postgres(url) => {
            let mut settings = PgSettings::new(url);
            settings.pool_size = options.pg_pool_size.max(1);
            Ok(Arc::new(PgStore::open(&settings).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/paird.db"),
            Ok(DatabaseUrl::Sqlite("data/paird.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:/tmp/x.db?mode=rwc"),
            Ok(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }

    #[test]
    fn parses_postgres_urls() {
        assert_eq!(
            DatabaseUrl::parse("postgres://paird@db/paird"),
            Ok(DatabaseUrl::Postgres("postgres://paird@db/paird".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://db:5432/paird?sslmode=disable"),
            Ok(DatabaseUrl::Postgres(
                "postgresql://db:5432/paird?sslmode=disable".into()
            ))
        );
    }
}
