//! An online backup of a SQLite database: a consistent copy taken while a server writes to it.
//!
//! The copy is made with `VACUUM INTO` on a connection of its own. It reads one snapshot of the
//! database (a read transaction in WAL mode), so it holds every transaction committed before it
//! began and nothing of those committed after, and it never blocks the server's writer: WAL
//! lets the writer commit beside the reader. (SQLite's backup API would do the same, but sqlx
//! does not expose it without `unsafe`.)
//!
//! The copy is first written inside a private directory (0700) beside the target, made
//! readable by its owner only (0600), synced, and then linked to the target's name, which fails
//! if that name exists: an existing file is never overwritten, and no half-written copy is ever
//! found under the target's name, even after a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

/// What a backup made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteBackup {
    /// The copy's size in bytes.
    pub bytes: u64,
    /// The schema version of the copy: the last migration applied (`_sqlx_migrations`).
    pub schema_version: i64,
}

/// Why a backup was not made. Nothing is left at the target in any case.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists; a backup never overwrites a file, choose a new name")]
    TargetExists(PathBuf),
    #[error("there is no database at {0}")]
    NoDatabase(PathBuf),
    #[error("{path} is not a paird database (it has no schema version)")]
    NotPaird { path: PathBuf },
    #[error("cannot read the database {path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How long the backup waits for a lock held by another connection (the server's checkpoints
/// take one briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies the SQLite database at `database` to a new file `target`, while a server may be
/// running on it.
pub async fn backup_sqlite(database: &Path, target: &Path) -> Result<SqliteBackup, BackupError> {
    if !database.is_file() {
        return Err(BackupError::NoDatabase(database.to_path_buf()));
    }
    if target.symlink_metadata().is_ok() {
        return Err(BackupError::TargetExists(target.to_path_buf()));
    }
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| BackupError::Write {
            path: target.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_string_lossy()
        .into_owned();
    let staging = directory.join(format!(".{name}.partial-{}", std::process::id()));
    create_private_dir(&staging).map_err(|source| BackupError::Write {
        path: staging.clone(),
        source,
    })?;
    let copy = staging.join("copy.db");
    let made = copy_into(database, &copy, target).await;
    // The staging directory goes whatever happened; the target keeps its own link.
    let _ = std::fs::remove_dir_all(&staging);
    let made = made?;
    if let Ok(directory) = std::fs::File::open(&directory) {
        let _ = directory.sync_all();
    }
    Ok(made)
}

async fn copy_into(
    database: &Path,
    copy: &Path,
    target: &Path,
) -> Result<SqliteBackup, BackupError> {
    let failed = |error: sqlx::Error| BackupError::Database {
        path: database.to_path_buf(),
        message: error.to_string(),
    };
    // Not `read_only`: a read-only connection cannot open a WAL database whose shared-memory
    // file is absent (a stopped server removes it). This connection only reads.
    let mut connection = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .map_err(failed)?;
    let copied = async {
        let copy_text = copy.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO $1")
            .bind(copy_text)
            .execute(&mut connection)
            .await
    }
    .await;
    let _ = connection.close().await;
    copied.map_err(failed)?;

    let schema_version = schema_version(copy).await.map_err(|error| match error {
        None => BackupError::NotPaird {
            path: database.to_path_buf(),
        },
        Some(error) => failed(error),
    })?;
    let write_failed = |source: std::io::Error| BackupError::Write {
        path: target.to_path_buf(),
        source,
    };
    set_private(copy).map_err(write_failed)?;
    let file = std::fs::File::open(copy).map_err(write_failed)?;
    file.sync_all().map_err(write_failed)?;
    let bytes = file.metadata().map_err(write_failed)?.len();
    drop(file);
    // A hard link fails if the name exists: never an overwrite, even if the file appeared
    // while the copy was being made.
    std::fs::hard_link(copy, target).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::TargetExists(target.to_path_buf())
        } else {
            write_failed(source)
        }
    })?;
    Ok(SqliteBackup {
        bytes,
        schema_version,
    })
}

/// The schema version of the database at `path`; `Err(None)` when it has no migrations table.
async fn schema_version(path: &Path) -> Result<i64, Option<sqlx::Error>> {
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(true)
        .connect()
        .await
        .map_err(Some)?;
    let version: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut connection)
            .await;
    let _ = connection.close().await;
    match version {
        Ok(Some(version)) => Ok(version),
        Ok(None) => Err(None),
        Err(sqlx::Error::Database(error)) if error.message().contains("no such table") => Err(None),
        Err(error) => Err(Some(error)),
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

fn set_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{SqliteSettings, SqliteStore};

    #[tokio::test]
    async fn copies_a_paird_database_once_and_privately() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("paird.db");
        let store = SqliteStore::open(&SqliteSettings::new(&database))
            .await
            .unwrap();
        let target = dir.path().join("copy.db");
        let made = backup_sqlite(&database, &target).await.unwrap();
        assert!(made.bytes > 0);
        assert!(made.schema_version >= 9, "{made:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = backup_sqlite(&database, &target).await;
        assert!(
            matches!(again, Err(BackupError::TargetExists(_))),
            "{again:?}"
        );
        assert_eq!(std::fs::metadata(&target).unwrap().len(), made.bytes);
        // Nothing else is left beside the copy.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with("paird.db"))
            .collect();
        assert_eq!(names, ["copy.db"]);
        engine::store::Store::close(&store).await;
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_paird_database() {
        let dir = tempfile::tempdir().unwrap();
        let missing = backup_sqlite(&dir.path().join("none.db"), &dir.path().join("copy.db")).await;
        assert!(
            matches!(missing, Err(BackupError::NoDatabase(_))),
            "{missing:?}"
        );
        let other = dir.path().join("other.db");
        let mut connection = SqliteConnectOptions::new()
            .filename(&other)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        let target = dir.path().join("copy.db");
        let refused = backup_sqlite(&other, &target).await;
        assert!(
            matches!(refused, Err(BackupError::NotPaird { .. })),
            "{refused:?}"
        );
        assert!(!target.exists());
    }
}
