//! A real throwaway cluster: started, given a database, stopped and started again, dropped.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use pgtemp::Cluster;

/// Runs one statement through the cluster's `psql` (beside its `createdb`).
fn psql(cluster: &Cluster, url: &str, sql: &str) -> String {
    let output = Command::new(cluster.bin_dir().join("psql"))
        .args([url, "-tA", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn a_cluster_serves_databases_stops_restarts_and_goes_away() {
    let cluster = Cluster::start().expect("cluster starts");
    let port = cluster.port();
    let first = cluster.create_database().expect("database");
    let second = cluster.create_database().expect("another database");
    assert_ne!(first, second, "each database has a name of its own");
    assert_eq!(psql(&cluster, &first, "SELECT 1 + 1"), "2");
    psql(
        &cluster,
        &first,
        "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)",
    );
    assert_eq!(
        psql(
            &cluster,
            &second,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'kept'"
        ),
        "0",
        "databases are separate"
    );

    cluster.stop().expect("stops");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens while stopped"
    );
    cluster.restart().expect("starts again");
    assert_eq!(
        psql(&cluster, &first, "SELECT n FROM kept"),
        "7",
        "data survives a restart"
    );

    drop(cluster);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server is gone once the cluster is dropped"
    );
}

/// A process that dies without dropping its cluster (here: `exit` with the cluster forgotten)
/// leaves nothing behind: the watchdog stops the server and removes the directory.
#[test]
fn a_cluster_outlived_by_nothing_when_its_process_dies() {
    const CHILD: &str = "PGTEMP_TEST_CHILD";
    const NAME: &str = "a_cluster_outlived_by_nothing_when_its_process_dies";
    if std::env::var_os(CHILD).is_some() {
        let cluster = Cluster::start().expect("cluster starts");
        println!("CLUSTER {} {}", cluster.port(), cluster.path().display());
        std::mem::forget(cluster);
        std::process::exit(0);
    }
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("child test process runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.split("CLUSTER ").nth(1))
        .unwrap_or_else(|| panic!("the child started no cluster: {stdout}"));
    let (port, dir) = line.split_once(' ').expect("port and directory");
    let port: u16 = port.parse().expect("port");
    // The watchdog polls once a second; the bound only keeps a broken watchdog from hanging
    // the suite.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listening = TcpStream::connect(("127.0.0.1", port)).is_ok();
        let present = std::path::Path::new(dir).exists();
        if !listening && !present {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a dead process's cluster is still there (listening: {listening}, directory: {present})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
