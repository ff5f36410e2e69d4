//! A pg_auto_failover formation starts, replicates synchronously, and promotes its secondary
//! when the primary is killed, keeping what was committed.

use std::process::Command;
use std::time::Duration;

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-d", url, "-c", sql])
        .output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

#[test]
fn the_secondary_takes_over_with_every_committed_row_when_the_primary_is_killed() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/failover-deps");
    let installed = Command::new(script).status().expect("failover-deps runs");
    assert!(installed.success(), "scripts/failover-deps failed");
    let mut formation = pgtemp::Formation::start().unwrap_or_else(|error| panic!("{error}"));
    let url = formation.create_database("kept").expect("a database");
    // libpq (psql) follows target_session_attrs=read-write to the primary.
    psql(
        &url,
        "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)",
    )
    .expect("writes on the primary");
    let primary = formation.primary().expect("a primary");
    formation.kill(primary);
    let promoted = formation
        .wait_for_new_primary(primary, Duration::from_secs(120))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(promoted, primary);
    let count = psql(
        &formation.node_url(promoted, "kept"),
        "SELECT count(*) FROM t",
    )
    .expect("reads on the new primary");
    assert_eq!(count, "1000", "a committed row was lost in the failover");
    psql(&url, "INSERT INTO t VALUES (1001)").expect("writes through the multi-host URL");
}
