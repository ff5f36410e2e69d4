//! Storage backends for the paird engine.
//!
//! Each backend implements [`engine::store::Store`] with its own SQL and its own migrations,
//! embedded in the binary and applied at start-up. The backend is chosen by the database URL:
//! `sqlite:` (the default, one node) or `postgres:` / `postgresql:` (several nodes sharing one
//! database).
//!
//! Layout: [`sqlite`] — the SQLite backend; [`postgres`] — the PostgreSQL backend; `notify` —
//! change notifications between PostgreSQL nodes; `rows` — column lists and row readers
//! shared by both; `paging` —
//! pagination shared by both; this file — URL parsing and opening.

mod backend;
mod node;
mod notify;
mod paging;
pub mod postgres;
mod reads;
mod rows;
pub mod sqlite;
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
