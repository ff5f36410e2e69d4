//! The audit log records admin changes and pairing outcomes.

use std::collections::HashSet;

use protocol::RefusalReason;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_admin_changes_and_pairing_outcomes() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let licenses = admin.add_licenses(&org, 2).await;
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    let config = portal.create_config(&org, "Meters", "[GLOBAL]\n").await;
    portal.edit_config(&org, &config, "[GLOBAL]\nv = 2\n").await;
    let code = portal.reusable_code(&org, json!({ "max_uses": 1 })).await;
    let code_text = code["code"].as_str().unwrap();
    let (_, _, paired) = pair_ok(&test.device_url(), code_text).await;
    let (_, _, refused) = pair_new(&test.device_url(), code_text).await;
    assert_eq!(refusal(&refused), Some(RefusalReason::CodeUseLimit));
    let single = portal.single_use_code(&org, &licenses[1]).await;
    let _ = single;
    portal
        .post(
            &format!(
                "/v1/organizations/{org}/codes/{}/revoke",
                code["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    portal.unpair(&org, paired.device_id).await;
    // Unknown codes are counted, not logged one by one.
    let unknown = "B".repeat(protocol::PairingCode::LEN);
    for _ in 0..3 {
        let (_, _, result) = pair_new(&test.device_url(), &unknown).await;
        assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    }

    let audit = admin.audit(&org).await;
    let actions: HashSet<&str> = audit
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for expected in [
        "organization.created",
        "licenses.added",
        "key.created",
        "configuration.created",
        "configuration.updated",
        "code.created",
        "device.paired",
        "pairing.refused",
        "code.revoked",
        "device.unpaired",
    ] {
        assert!(
            actions.contains(expected),
            "{expected} missing from {actions:?}"
        );
    }
    let by_key = format!("key:{}", key["id"].as_str().unwrap());
    let edit = audit
        .iter()
        .find(|entry| entry["action"] == json!("configuration.updated"))
        .unwrap();
    assert_eq!(edit["actor"], json!(by_key), "the audit names who did it");
    let refusal_entry = audit
        .iter()
        .find(|entry| entry["action"] == json!("pairing.refused"))
        .unwrap();
    assert_eq!(refusal_entry["details"]["reason"], json!("code_use_limit"));
    assert!(
        audit
            .iter()
            .all(|entry| entry["details"]["reason"] != json!("unknown_code"))
    );
    let status = admin.get("/v1/status").await;
    assert_eq!(status["engine"]["unknown_code_attempts"], json!(3));
    // Newest first.
    let ids: Vec<i64> = audit
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]));
    test.stop().await;
}
