//! `paird backup PATH`: a consistent copy of the SQLite database, taken while the server runs.
//!
//! Like `paird operator-token`, it opens the database itself and starts no engine, so it runs
//! beside a server on the same data directory; unlike it, it does not open the store (which
//! would apply migrations and start a checkpointer): it only reads (see `store::backup`).

use std::path::{Path, PathBuf};

use store::DatabaseUrl;
use store::backup::SqliteBackup;

/// What a backup did, to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub database: PathBuf,
    pub target: PathBuf,
    pub made: SqliteBackup,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "backed up {} to {} ({} bytes, schema version {}, readable by you only)",
            self.database.display(),
            self.target.display(),
            self.made.bytes,
            self.made.schema_version
        )?;
        write!(
            f,
            "keep the server key (server.key in the data directory, or PAIRD_SERVER_KEY) with it: \
             the database does not start without it; to restore, see docs/deployment.md"
        )
    }
}

/// Copies the database named by `database_url` to the new file `target`. Refuses a PostgreSQL
/// URL (pg_dump is the tool) and an existing `target`.
pub async fn backup(database_url: &str, target: &Path) -> anyhow::Result<BackupReport> {
    let url = DatabaseUrl::parse(database_url).map_err(anyhow::Error::msg)?;
    let database = match url {
        DatabaseUrl::Sqlite(path) => path,
        DatabaseUrl::Postgres(_) => anyhow::bail!(
            "paird backup copies a SQLite database; for PostgreSQL use pg_dump \
             (pg_dump --format=custom --file=paird.dump DATABASE_URL), and keep the server key \
             with the dump: see docs/deployment.md, \"Backups and restore\""
        ),
    };
    let made = store::backup::backup_sqlite(&database, target).await?;
    Ok(BackupReport {
        database,
        target: target.to_path_buf(),
        made,
    })
}
