//! Faults of the disk: the data directory on a small filesystem that fills up during a pairing
//! burst (SQLite, whatever `PAIRD_TEST_BACKEND` says: the database file is what fills the
//! disk), and a data directory that cannot be written at start (both backends).
//!
//! The filesystems are real: a tmpfs with a size limit, mounted by the test (it runs as root,
//! as CI does) and unmounted when the test ends. A test that cannot mount one fails and says
//! why; it never passes without having run.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use client::{Connection, DeviceIdentity, PairResult};
use futures_util::future::join_all;
use protocol::{Encoding, RefusalReason};
use reqwest::Method;
use serde_json::json;

use crate::processes::sigterm;
use crate::support::*;

/// A tmpfs of a given size mounted on a temporary directory; unmounted on drop.
pub(crate) struct SmallFilesystem {
    mount_point: tempfile::TempDir,
}

impl SmallFilesystem {
    pub(crate) fn mount(size_mib: u32) -> SmallFilesystem {
        let mount_point = tempfile::tempdir().expect("temporary directory");
        let options = format!("size={size_mib}m,mode=0700");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(mount_point.path())
            .output()
            .unwrap_or_else(|error| panic!("cannot run mount: {error}"));
        assert!(
            output.status.success(),
            "cannot mount a {size_mib} MiB tmpfs on {} (this test needs root, or \
             CAP_SYS_ADMIN, to make a filesystem it can fill): {}",
            mount_point.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        SmallFilesystem { mount_point }
    }

    pub(crate) fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// Remounts it read-only, or writable again. As root, permission bits do not stop a
    /// write; a read-only mount does.
    pub(crate) fn set_read_only(&self, read_only: bool) {
        let options = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let output = std::process::Command::new("mount")
            .args(["-o", options])
            .arg(self.path())
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "cannot remount {} ({options}): {}",
            self.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let path = self.mount_point.path();
        let unmounted = std::process::Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Something still holds a file there (a failed test's server): detach it now,
            // the kernel frees it when the last file closes.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(path)
                .status();
        }
    }
}

/// Grows `path` until the filesystem has no room left; returns its size.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => return written,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
}

/// A device refused for now, kept with its connection to try again as a client would.
struct Waiting {
    identity: DeviceIdentity,
    connection: Connection,
}

/// What a wave of pairings was told.
#[derive(Default)]
struct Told {
    /// Device id → license id, for every device told "paired".
    paired: HashMap<String, String>,
    waiting: Vec<Waiting>,
}

impl Told {
    fn paired(&mut self, paired: &protocol::Paired) {
        let license = paired.license_id.to_string();
        if let Some(earlier) = self
            .paired
            .insert(paired.device_id.to_string(), license.clone())
        {
            assert_eq!(earlier, license, "a device told two different licenses");
        }
    }

    /// Records one answer: paired, or refused as `unavailable` with a time to wait. Anything
    /// else (another reason, an error, a closed connection) fails the test.
    fn answer(&mut self, identity: DeviceIdentity, connection: Connection, result: PairResult) {
        match result {
            PairResult::Paired(paired) => self.paired(&paired),
            PairResult::Refused(refused) => {
                assert_eq!(refused.reason, RefusalReason::Unavailable, "{refused:?}");
                assert!(
                    refused.retry_after_ms.is_some_and(|wait| wait > 0),
                    "`unavailable` says when to try again: {refused:?}"
                );
                self.waiting.push(Waiting {
                    identity,
                    connection,
                });
            }
        }
    }
}

/// `count` new devices connect and pair with `code` at once.
async fn wave(url: &str, code: &str, count: usize, told: &mut Told) -> usize {
    let answers = join_all((0..count).map(|_| async {
        let identity = identity();
        let mut connection = connect(url, Encoding::Postcard).await;
        let result = connection
            .pair(code, &identity, &device_info("burst"))
            .await
            .expect("every pairing is answered, on a full disk too");
        (identity, connection, result)
    }))
    .await;
    let mut refused = 0;
    for (identity, connection, result) in answers {
        refused += usize::from(matches!(result, PairResult::Refused(_)));
        told.answer(identity, connection, result);
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_pairings_as_unavailable_loses_nothing_and_recovers_without_restart() {
    let disk = SmallFilesystem::mount(16);
    let data = disk.path().join("data");
    // The default database: SQLite in the data directory, on the small filesystem.
    let server = server::start(test_config(&data))
        .await
        .expect("server starts");
    let admin = Admin::new(&server.admin_url(), OPERATOR_TOKEN);
    let url = server.device_url();
    let (org, code) = admin.org_with_code("Acme", 1500).await;
    let mut told = Told::default();
    wave(&url, &code, 40, &mut told).await;
    assert_eq!(
        told.paired.len(),
        40,
        "room on the disk: every device pairs"
    );

    // The burst: waves of pairings while a file grows to the filesystem's limit, then until
    // the database itself has no room left (it may still reuse space it holds for a while).
    let filler_path = disk.path().join("filler");
    let filler = tokio::task::spawn_blocking({
        let filler_path = filler_path.clone();
        move || fill(&filler_path)
    });
    let mut refused_in_burst = 0;
    for _ in 0..60 {
        refused_in_burst += wave(&url, &code, 10, &mut told).await;
        if filler.is_finished() && refused_in_burst > 0 {
            break;
        }
    }
    let filled = filler.await.expect("the filler");
    assert!(filled > 8 * 1024 * 1024, "the filler took {filled} bytes");
    assert!(
        refused_in_burst > 0,
        "the disk is full, yet no pairing was refused"
    );

    // The server stays up and answers: reads work, every acknowledged pairing is listed with
    // the license its device was told, and admin writes are refused as retryable.
    let (status, _) = admin.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let listed = admin.license_of_each_device(&org).await;
    for (device, license) in &told.paired {
        assert_eq!(listed.get(device), Some(license), "device {device}");
    }
    let mut admin_refused = false;
    for _ in 0..50 {
        let path = format!("/v1/organizations/{org}/licenses");
        let (status, body) = admin
            .call(Method::POST, &path, Some(json!({"count": 1})))
            .await;
        match status {
            200..=299 => continue,
            503 => {
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                admin_refused = true;
                break;
            }
            other => panic!("an admin write on a full disk answered {other}: {body}"),
        }
    }
    assert!(admin_refused, "admin writes kept succeeding on a full disk");

    // Room again: the devices that were told to wait try again, on the same connections, and
    // pair without a restart; so does a new device, and so do admin writes.
    std::fs::remove_file(&filler_path).expect("the filler goes");
    let waiting = std::mem::take(&mut told.waiting);
    let deadline = tokio::time::Instant::now() + WAIT;
    for Waiting {
        identity,
        mut connection,
    } in waiting
    {
        loop {
            let result = connection
                .pair(&code, &identity, &device_info("burst"))
                .await
                .expect("answered");
            match result {
                PairResult::Paired(paired) => {
                    told.paired(&paired);
                    break;
                }
                PairResult::Refused(refused) => {
                    assert_eq!(refused.reason, RefusalReason::Unavailable);
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "pairing did not resume once the disk had room"
                    );
                    // The wait the server asked for, as a client does: not a timed assertion.
                    let wait = refused.retry_after_ms.unwrap_or(1000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }
    let (_, _, paired) = pair_ok(&url, &code).await;
    told.paired(&paired);
    admin.add_licenses(&org, 1).await;
    let listed = admin.license_of_each_device(&org).await;
    assert_eq!(listed.len(), told.paired.len());
    for (device, license) in &told.paired {
        assert_eq!(listed.get(device), Some(license), "device {device}");
    }
    server.shutdown().await;

    // The database is intact, and holds each pairing once.
    assert_eq!(integrity_check(&data.join("paird.db")).await, "ok");
    let told_count = told.paired.len() as i64;
    assert_eq!(
        TestDatabase::sqlite(&data).assignment_counts().await,
        (told_count, told_count, told_count)
    );
}

/// `PRAGMA integrity_check` on a SQLite file no server has open.
async fn integrity_check(path: &Path) -> String {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("the database opens");
    let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .expect("integrity_check runs");
    connection.close().await.expect("closes");
    verdict
}

/// `paird serve` on `data_dir`: its exit status and standard error once it has exited by
/// itself (bounded by [`WAIT`]).
async fn serve_expecting_exit(
    data_dir: &Path,
    database: &TestDatabase,
) -> (std::process::ExitStatus, String) {
    let child = serve_command(data_dir)
        .args(database.serve_args())
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("paird starts");
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("paird exits by itself")
        .expect("paird's output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts `paird serve` on `data_dir`, waits until it is ready, and stops it with SIGTERM.
async fn serve_until_ready(data_dir: &Path, database: &TestDatabase) {
    let mut child = serve_command(data_dir)
        .args(database.serve_args())
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .expect("paird starts");
    if let Err(error) = wait_until_ready(&mut child).await {
        panic!("paird did not start on a writable data directory: {error}");
    }
    sigterm(&mut child).await;
}

fn assert_refused_clearly(status: std::process::ExitStatus, stderr: &str, data_dir: &Path) {
    assert!(!status.success(), "paird started: {stderr}");
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a signal: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let expected = format!(
        "cannot write in the data directory {}: Read-only file system",
        data_dir.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_that_cannot_be_written_stops_the_start_with_a_clear_error() {
    let disk = SmallFilesystem::mount(8);
    let data = disk.path().to_path_buf();
    let database = TestDatabase::create(&data).await;

    // A first start on a read-only directory: nowhere to create the database (SQLite) or to
    // keep the new server key (PostgreSQL). It says so and exits with an error.
    disk.set_read_only(true);
    let (status, stderr) = serve_expecting_exit(&data, &database).await;
    assert_refused_clearly(status, &stderr, &data);

    // Writable, it starts: on PostgreSQL this shows that the refused start recorded no key in
    // the database (a database that knows a key its data directory lacks refuses to start).
    disk.set_read_only(false);
    serve_until_ready(&data, &database).await;

    // Read-only again, now holding its files.
    disk.set_read_only(true);
    match Backend::current() {
        // The database must be written: a clear error, not SQLite's "unable to open".
        Backend::Sqlite => {
            let (status, stderr) = serve_expecting_exit(&data, &database).await;
            assert_refused_clearly(status, &stderr, &data);
        }
        // Nothing to write there any more (its key is in the file, the token in the
        // environment): a read-only data directory is a valid deployment.
        Backend::Postgres => serve_until_ready(&data, &database).await,
    }
}
