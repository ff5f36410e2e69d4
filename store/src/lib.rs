//! Storage backends for the paird engine.
//!
//! Each backend implements [`engine::store::Store`] with its own SQL and its own migrations,
//! embedded in the binary and applied at start-up. The backend is chosen by the database URL:
//! `sqlite:` (the default, one node). PostgreSQL for clusters is planned behind the same trait.
//!
//! Layout: [`sqlite`] — the SQLite backend; this file — URL parsing and opening.

mod paging;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use engine::store::{Store, StoreError};

pub use sqlite::{Durability, SqliteSettings, SqliteStore};

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` or `sqlite:PATH` (a relative path is relative to the working directory).
    Sqlite(PathBuf),
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
            return Err("PostgreSQL is not supported by this build yet; use a sqlite: URL".into());
        }
        Err(format!(
            "unsupported database URL {url:?}; use sqlite://PATH"
        ))
    }
}

/// Backend settings that apply whatever the URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    pub durability: Durability,
}

/// Opens the database named by `url`, applying its migrations.
pub async fn open(url: &DatabaseUrl, options: OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut settings = SqliteSettings::new(path);
            settings.durability = options.durability;
            Ok(Arc::new(SqliteStore::open(&settings).await?))
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
}
