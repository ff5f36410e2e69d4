//! Replacing a device: a replacement code moves the device's license, configuration, name and
//! notes to a new installation in one step, and the old installation is told.

use client::{PairResult, ResumeResult};
use protocol::{CloseCode, EndReason, RefusalReason, ServerMessage};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_takes_the_license_configuration_name_and_notes_and_the_old_device_is_told() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let meters = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (old_identity, mut old, paired) = pair_ok(&test.device_url(), &code).await;
    assert_eq!(next_configuration(&mut old).await.name, "Meters");
    let old_id = paired.device_id.to_string();
    let device_path = format!("/v1/organizations/{org}/devices/{old_id}");
    let (status, _) = admin
        .call(
            Method::PATCH,
            &device_path,
            Some(json!({ "name": "Van 7", "notes": "Spare battery in the glovebox" })),
        )
        .await;
    assert_eq!(status, 200);
    // A newer configuration is what new devices get; the replacement keeps the old device's.
    admin.create_config(&org, "Newer", "[GLOBAL]\n").await;

    let replacement = admin
        .post(&format!("{device_path}/replace"), json!({}))
        .await;
    let replacement_code = replacement["code"].as_str().unwrap().to_string();
    assert!(
        replacement["payload_uri"].as_str().is_some(),
        "{replacement}"
    );
    assert_eq!(replacement["replaces_device_id"], json!(old_id));
    assert_eq!(
        replacement["license_id"],
        json!(paired.license_id.to_string())
    );

    // The old device keeps working until the code is used.
    let (status, _) = admin
        .call(
            Method::PUT,
            &format!("/v1/organizations/{org}/configurations/{meters}"),
            Some(json!({ "body": "[GLOBAL]\nedited = 1\n" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(next_configuration(&mut old).await.revision, 2);

    // The new installation pairs with it: same license, same configuration.
    let (_, mut new, new_paired) = pair_ok(&test.device_url(), &replacement_code).await;
    assert_eq!(
        new_paired.license_id, paired.license_id,
        "no second license"
    );
    let pushed = next_configuration(&mut new).await;
    assert_eq!((pushed.name.as_str(), pushed.revision), ("Meters", 2));
    match old.recv_timeout(WAIT).await {
        Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Replaced),
        other => panic!("expected the replaced notice, got {other:?}"),
    }
    let closed = old.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::Replaced));

    let status = admin.get("/v1/status").await;
    assert_eq!(status["engine"]["replaced"], json!(1));
    let devices = admin.devices(&org).await;
    assert_eq!(devices.len(), 1, "{devices:?}");
    let device = &devices[0];
    assert_eq!(device["id"], json!(new_paired.device_id.to_string()));
    assert_eq!(device["name"], json!("Van 7"));
    assert_eq!(device["notes"], json!("Spare battery in the glovebox"));
    assert_eq!(device["configuration"]["id"], json!(meters), "{device}");
    let summary = admin.summary(&org).await;
    assert_eq!(
        (summary["assigned"].clone(), summary["free"].clone()),
        (json!(1), json!(0))
    );

    // The old installation hears why if it comes back; the code is spent.
    let mut again = test.connect().await;
    let resumed = again
        .resume(&old_identity, &device_info("device"), None)
        .await
        .unwrap();
    assert_eq!(resumed, ResumeResult::Ended(EndReason::Replaced));
    let (_, _, reused) = pair_new(&test.device_url(), &replacement_code).await;
    assert_eq!(refusal(&reused), Some(RefusalReason::CodeUsed));

    let audit = admin.audit(&org).await;
    let replaced = audit
        .iter()
        .find(|entry| entry["action"] == "device.replaced")
        .unwrap_or_else(|| panic!("no device.replaced entry: {audit:?}"));
    assert_eq!(replaced["subject"], json!(old_id));
    assert_eq!(
        replaced["details"]["replaced_by"],
        json!(new_paired.device_id.to_string())
    );
    assert_eq!(
        replaced["details"]["license_id"],
        json!(paired.license_id.to_string())
    );
    let created = audit
        .iter()
        .find(|entry| {
            entry["action"] == "code.created"
                && entry["details"]["replaces_device"] == json!(old_id)
        })
        .unwrap_or_else(|| panic!("no code.created entry for the replacement: {audit:?}"));
    assert_eq!(created["details"]["kind"], json!("single_use"));
    // The old device's history names both.
    let history = admin
        .get(&format!("/v1/organizations/{org}/audit?device={old_id}"))
        .await;
    let actions: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"device.replaced".to_string()),
        "{actions:?}"
    );
    assert!(actions.contains(&"code.created".to_string()), "{actions:?}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_code_lives_only_while_its_device_does() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let (_, _old, paired) = pair_ok(&test.device_url(), &code).await;
    let old_id = paired.device_id.to_string();
    let replace = format!("/v1/organizations/{org}/devices/{old_id}/replace");

    // Bad requests change nothing.
    let (status, answer) = admin
        .call(
            Method::POST,
            &replace,
            Some(json!({ "validity_seconds": 5 })),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], json!("validity_seconds"));
    let unknown = format!(
        "/v1/organizations/{org}/devices/{}/replace",
        engine::ids::DeviceId::generate()
    );
    let (status, answer) = admin.call(Method::POST, &unknown, Some(json!({}))).await;
    assert_eq!(status, 404, "{answer}");
    let other = admin.create_org("Other").await;
    let elsewhere = format!("/v1/organizations/{other}/devices/{old_id}/replace");
    let (status, _) = admin.call(Method::POST, &elsewhere, Some(json!({}))).await;
    assert_eq!(status, 404, "another organization's device is not found");

    // A second code replaces the first.
    let first = admin.post(&replace, json!({})).await;
    let second = admin
        .post(&replace, json!({ "validity_seconds": 86400 }))
        .await;
    let (_, _, result) = pair_new(&test.device_url(), first["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));

    // Unpairing the device revokes its replacement code and frees its license for anyone.
    admin.unpair(&org, &old_id).await;
    let (_, _, result) = pair_new(&test.device_url(), second["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));
    assert_eq!(admin.summary(&org).await["free"], json!(1));
    let (_, _, result) = pair_new(&test.device_url(), &code).await;
    assert!(matches!(result, PairResult::Paired(_)), "{result:?}");
    // An ended device cannot be replaced.
    let (status, _) = admin.call(Method::POST, &replace, Some(json!({}))).await;
    assert_eq!(status, 404);
    test.stop().await;
}
