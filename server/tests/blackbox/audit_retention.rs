//! Audit retention (`--audit-retention`): the duty deletes the entries older than the
//! retention, and their links to devices, and keeps the others; driven by the manual clock.

use std::time::Duration;

use protocol::AckOutcome;
use serde_json::Value;

use crate::support::*;

const DAY: f64 = 24.0 * 3600.0;

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_older_than_the_retention_are_deleted_and_the_others_kept() {
    let test = TestServer::start_with(|config| {
        config.engine.audit_retention = Some(Duration::from_secs(400 * 24 * 3600));
    })
    .await;
    let (org, code) = test.admin.org_with_code("Acme", 2).await;
    test.admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut connection, _) = pair_ok(&test.device_url(), &code).await;
    let received = next_configuration(&mut connection).await;
    let reason = "old failure".to_string();
    assert!(acknowledge(&mut connection, &received, AckOutcome::Failed { reason }).await);
    let old = test.admin.audit(&org).await;
    assert!(old.len() >= 4, "{:?}", actions(&old));

    // 300 days later: newer entries, one of which names the device.
    test.admin.advance(300.0 * DAY).await;
    let reason = "new failure".to_string();
    assert!(acknowledge(&mut connection, &received, AckOutcome::Failed { reason }).await);
    test.admin.create_config(&org, "Later", "[GLOBAL]\n").await;
    let all = test.admin.audit(&org).await;
    assert_eq!(all.len(), old.len() + 2);
    assert_eq!(
        test.database
            .integers("SELECT count(*) FROM audit_devices")
            .await,
        vec![2],
        "each failure entry names the device"
    );

    // 101 more days: the first entries are past 400 days, the newer ones are not.
    test.admin.advance(101.0 * DAY).await;
    let kept = eventually("old entries to be deleted", || async {
        let entries = test.admin.audit(&org).await;
        (entries.len() == 2).then_some(entries)
    })
    .await;
    assert_eq!(
        actions(&kept),
        ["configuration.created", "configuration.apply_failed"]
    );
    assert_eq!(
        test.database
            .integers("SELECT count(*) FROM audit_devices")
            .await,
        vec![1],
        "the deleted entry's link to its device went with it"
    );
}

#[tokio::test]
async fn without_a_retention_nothing_is_deleted() {
    let test = TestServer::start().await;
    let (org, _) = test.admin.org_with_code("Acme", 1).await;
    let before = test.admin.audit(&org).await.len();
    test.admin.advance(10_000.0 * DAY).await;
    // A later entry is written after the clock jumped, so the duties have had their turn.
    test.admin.create_config(&org, "Later", "[GLOBAL]\n").await;
    assert_eq!(test.admin.audit(&org).await.len(), before + 1);
}

#[tokio::test]
async fn a_retention_under_an_hour_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = serve_command(dir.path())
        .args(["--audit-retention", "40s"])
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--audit-retention"), "{said}");
    assert!(said.contains("less than an hour"), "{said}");
    assert!(!dir.path().join("paird.db").exists(), "nothing was created");
}
