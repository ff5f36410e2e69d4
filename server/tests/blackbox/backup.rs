//! `paird backup`: a copy taken with the real command while a real `paird serve` pairs a burst
//! of real devices, restored into a new data directory with the server key, holds every
//! pairing acknowledged before the backup began. SQLite only, whatever `PAIRD_TEST_BACKEND`
//! says: the command copies a SQLite database (PostgreSQL is backed up with pg_dump, and the
//! command says so).

use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use client::{PairResult, ResumeResult};
use futures_util::future::join_all;
use protocol::Encoding;
use tokio::process::Command;

use crate::processes::{sigterm, spawn_paird};
use crate::support::*;

/// Runs `paird backup` with `args`; returns whether it succeeded and what it printed.
async fn paird_backup(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_paird"))
        .arg("backup")
        .args(args)
        .env_remove("PAIRD_DATABASE_URL")
        .env_remove("PAIRD_DATA_DIR")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("paird backup runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_a_burst_restores_every_pairing_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let database = TestDatabase::sqlite(&data);
    let mut paird = spawn_paird(&data, &database, Some(OPERATOR_TOKEN)).await;
    let licenses = 3_000;
    let (org, code) = paird.admin.org_with_code("Acme", licenses).await;
    paird.admin.create_config(&org, "vans", "[GLOBAL]\n").await;

    // Streams of devices pair one after another, each noting when its answer arrived, until
    // the backup has finished and each stream has had a pairing answered after the backup
    // began: the backup runs in the middle of the burst, whatever the speed of either.
    let streams = 16;
    let answered = Arc::new(AtomicUsize::new(0));
    let began: Arc<OnceLock<Instant>> = Arc::default();
    let finished = Arc::new(AtomicBool::new(false));
    let burst = join_all((0..streams).map(|_| {
        let (code, url) = (code.clone(), paird.device_url.clone());
        let (answered, began, finished) = (
            Arc::clone(&answered),
            Arc::clone(&began),
            Arc::clone(&finished),
        );
        async move {
            let mut acknowledged = Vec::new();
            loop {
                let identity = identity();
                let mut connection = connect(&url, Encoding::Postcard).await;
                let result = connection
                    .pair(&code, &identity, &device_info("burst"))
                    .await
                    .expect("answered");
                let at = Instant::now();
                answered.fetch_add(1, Ordering::SeqCst);
                match result {
                    PairResult::Paired(paired) => acknowledged.push((identity, paired, at)),
                    PairResult::Refused(refused) => panic!("refused: {refused:?}"),
                }
                connection.close().await;
                let after_backup_began = began.get().is_some_and(|began| at > *began);
                if finished.load(Ordering::SeqCst) && after_backup_began {
                    return acknowledged;
                }
            }
        }
    }));
    let copy = dir.path().join("paird-copy.db");
    let backup = async {
        eventually("some pairings to be acknowledged", || async {
            (answered.load(Ordering::SeqCst) >= 40).then_some(())
        })
        .await;
        let _ = began.set(Instant::now());
        let result =
            paird_backup(&[copy.as_os_str(), "--data-dir".as_ref(), data.as_os_str()]).await;
        finished.store(true, Ordering::SeqCst);
        result
    };
    let (results, (succeeded, printed)) = tokio::join!(burst, backup);
    assert!(succeeded, "paird backup failed: {printed}");
    assert!(printed.contains("backed up"), "{printed}");
    assert!(printed.contains("schema version"), "{printed}");
    assert_eq!(mode(&copy), 0o600, "the copy is readable by its owner only");
    let began = *began.get().unwrap();
    let all: Vec<_> = results.into_iter().flatten().collect();
    let total = all.len();
    let before: Vec<_> = all.into_iter().filter(|(_, _, at)| *at < began).collect();
    assert!(before.len() >= 40, "{} pairings before", before.len());
    assert!(
        total >= before.len() + streams,
        "pairings went on while the backup ran"
    );

    // A second backup to the same name is refused and leaves the copy as it was.
    let size = std::fs::metadata(&copy).unwrap().len();
    let (succeeded, printed) =
        paird_backup(&[copy.as_os_str(), "--data-dir".as_ref(), data.as_os_str()]).await;
    assert!(!succeeded, "an existing file is never overwritten");
    assert!(printed.contains("exists"), "{printed}");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);

    sigterm(&mut paird.child).await;

    // Restore as the README says: a new data directory holding the copy as paird.db and the
    // server key.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::copy(&copy, restored.join("paird.db")).unwrap();
    std::fs::copy(data.join("server.key"), restored.join("server.key")).unwrap();
    let restored_database = TestDatabase::sqlite(&restored);
    let again = spawn_paird(&restored, &restored_database, Some(OPERATOR_TOKEN)).await;
    let listed = again.admin.license_of_each_device(&org).await;
    for (_, paired, _) in &before {
        assert_eq!(
            listed.get(&paired.device_id.to_string()),
            Some(&paired.license_id.to_string()),
            "a pairing acknowledged before the backup is missing from it"
        );
    }
    // The copy is one moment of the database: no license half-assigned or doubled, and no
    // more pairings than were made by the end of the burst.
    let (assigned, distinct, active) = restored_database.assignment_counts().await;
    assert_eq!((assigned, distinct), (active, active));
    assert!(active as usize >= before.len() && active as usize <= total);
    // Each pairing acknowledged before the backup holds its license and resumes with its
    // credential.
    for (identity, paired, _) in &before {
        let mut connection = connect(&again.device_url, Encoding::Postcard).await;
        let resumed = connection
            .resume(identity, &device_info("burst"), None)
            .await
            .unwrap();
        assert!(
            matches!(resumed, ResumeResult::Resumed(ref r) if r.device_id == paired.device_id),
            "{resumed:?}"
        );
        connection.close().await;
    }
}

#[tokio::test]
async fn backup_refuses_a_postgresql_database_and_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.db");
    let (succeeded, printed) = paird_backup(&[
        target.as_os_str(),
        "--database".as_ref(),
        "postgres://paird@127.0.0.1:1/paird".as_ref(),
    ])
    .await;
    assert!(!succeeded);
    assert!(printed.contains("pg_dump"), "{printed}");
    assert!(printed.contains("docs/deployment.md"), "{printed}");
    assert!(!target.exists());
}

#[tokio::test]
async fn backup_of_a_missing_database_says_so_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.db");
    let (succeeded, printed) = paird_backup(&[
        target.as_os_str(),
        "--data-dir".as_ref(),
        dir.path().join("nothing-here").as_os_str(),
    ])
    .await;
    assert!(!succeeded);
    assert!(printed.contains("no database"), "{printed}");
    assert!(!target.exists());
}
