//! A flood of failed acknowledgements over a real WebSocket does not flood the audit log: at
//! most one entry per device per minute of the engine's clock, the failures in between counted
//! (`repeats`), and the device's record keeps the latest failure. Time is the manual clock's.

use protocol::AckOutcome;
use serde_json::{Value, json};

use crate::support::*;

async fn apply_failed_entries(admin: &Admin, org: &str) -> Vec<Value> {
    let page = admin
        .get(&format!(
            "/v1/organizations/{org}/audit?action=configuration.apply_failed&limit=1000"
        ))
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_acknowledgements_writes_one_audit_entry_per_minute() {
    let test = TestServer::start().await;
    let (org, code) = test.admin.org_with_code("Acme", 2).await;
    test.admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    let received = next_configuration(&mut connection).await;

    // Each failure has a reason of its own (about 1 KB), so each is a change of the device's
    // record: nothing is skipped as a repeat of the same acknowledgement.
    let flood = 300;
    for n in 0..flood {
        let reason = format!("{n:06} {}", "x".repeat(1000));
        assert!(acknowledge(&mut connection, &received, AckOutcome::Failed { reason }).await);
    }
    let entries = apply_failed_entries(&test.admin, &org).await;
    assert_eq!(entries.len(), 1, "one entry for the whole flood");
    assert_eq!(entries[0]["details"]["repeats"], json!(0));
    assert!(
        entries[0]["details"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("000000 "),
        "the first failure of the minute is the one logged"
    );
    let device = test.admin.device(&org, &paired.device_id.to_string()).await;
    assert_eq!(device["applied"]["status"], json!("failed"));
    assert!(
        device["applied"]["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{:06} ", flood - 1)),
        "the device's record keeps the latest failure"
    );

    // Within the minute, still nothing more; once it is over, the next failure is logged with
    // the count of those that were not.
    test.admin.advance(59.0).await;
    let reason = "still broken".to_string();
    assert!(acknowledge(&mut connection, &received, AckOutcome::Failed { reason }).await);
    assert_eq!(apply_failed_entries(&test.admin, &org).await.len(), 1);
    test.admin.advance(1.0).await;
    let reason = "broken again".to_string();
    assert!(acknowledge(&mut connection, &received, AckOutcome::Failed { reason }).await);
    let entries = apply_failed_entries(&test.admin, &org).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["details"]["reason"], json!("broken again"));
    assert_eq!(entries[0]["details"]["repeats"], json!(flood));

    // Another device of the organization has a window of its own.
    let (_, mut other, _) = pair_ok(&test.device_url(), &code).await;
    let received = next_configuration(&mut other).await;
    let reason = "other device".to_string();
    assert!(acknowledge(&mut other, &received, AckOutcome::Failed { reason }).await);
    assert_eq!(apply_failed_entries(&test.admin, &org).await.len(), 3);
}
