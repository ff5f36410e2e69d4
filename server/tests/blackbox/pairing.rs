//! Pairing with each kind of code, reconnection, acknowledgements, idempotency.

use client::{PairResult, ResumeResult};
use protocol::{AckOutcome, ConfigRef, Encoding, RefusalReason};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_code_kind_pairs_a_device_that_receives_its_configuration() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let licenses = admin.add_licenses(&org, 2).await;
    let body = "[GLOBAL]\r\nsynctime_high_threshold = 600  \r\n# ünïcode\r\n";
    let config = admin.create_config(&org, "Meters", body).await;

    // Reusable code, binary encoding.
    let reusable = admin.reusable_code(&org, json!({})).await;
    let (_, mut first, paired) =
        pair_ok(&test.device_url(), reusable["code"].as_str().unwrap()).await;
    assert!(!paired.already_paired);
    assert!(!paired.configuration_pending);
    let received = next_configuration(&mut first).await;
    assert_eq!(received.configuration_id.to_string(), config);
    assert_eq!(received.body, body, "delivered byte for byte");
    assert_eq!(received.revision, 1);

    // Single-use code for the other license, JSON encoding.
    let other = licenses
        .iter()
        .find(|license| **license != paired.license_id.to_string())
        .unwrap();
    let single = admin.single_use_code(&org, other).await;
    let mut second = connect(&test.device_url(), Encoding::Json).await;
    assert_eq!(second.encoding(), Encoding::Json);
    let result = second
        .pair(
            single["code"].as_str().unwrap(),
            &identity(),
            &device_info("json device"),
        )
        .await
        .unwrap();
    let PairResult::Paired(paired_single) = result else {
        panic!("single-use code refused: {result:?}")
    };
    assert_eq!(
        paired_single.license_id.to_string(),
        *other,
        "the code's own license"
    );
    assert_eq!(next_configuration(&mut second).await.body, body);

    let devices = admin.devices(&org).await;
    assert_eq!(devices.len(), 2);
    let by_code: Vec<&str> = devices
        .iter()
        .map(|device| device["paired_by_code"].as_str().unwrap())
        .collect();
    assert!(by_code.contains(&reusable["id"].as_str().unwrap()));
    assert!(by_code.contains(&single["id"].as_str().unwrap()));
    assert!(devices.iter().all(|device| device["online"] == json!(true)));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_device_receives_the_revision_it_missed() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nrev = 1\n")
        .await;
    let (identity, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    let first = next_configuration(&mut connection).await;
    let reference = ConfigRef {
        configuration_id: first.configuration_id,
        revision: first.revision,
    };
    connection
        .ack(reference, AckOutcome::Applied)
        .await
        .unwrap();
    connection.close().await;
    let device = paired.device_id.to_string();
    eventually("the device to be offline", || async {
        (admin.device(&org, &device).await["online"] == json!(false)).then_some(())
    })
    .await;

    // Two edits while the device is offline: it gets the newest one only.
    admin
        .edit_config(&org, &config, "[GLOBAL]\nrev = 2\n")
        .await;
    admin
        .edit_config(&org, &config, "[GLOBAL]\nrev = 3\n")
        .await;
    let mut again = test.connect().await;
    let resumed = again
        .resume(&identity, &device_info("device"), Some(reference))
        .await
        .unwrap();
    assert!(matches!(resumed, ResumeResult::Resumed(ref r) if r.device_id == paired.device_id));
    let missed = next_configuration(&mut again).await;
    assert_eq!(
        (missed.revision, missed.body.as_str()),
        (3, "[GLOBAL]\nrev = 3\n")
    );

    // A device that already runs the current revision is not sent it again: the next
    // message after resuming is the next edit.
    let current = ConfigRef {
        configuration_id: missed.configuration_id,
        revision: 3,
    };
    again.ack(current, AckOutcome::Applied).await.unwrap();
    again.close().await;
    let mut third = test.connect().await;
    third
        .resume(&identity, &device_info("renamed device"), Some(current))
        .await
        .unwrap();
    admin
        .edit_config(&org, &config, "[GLOBAL]\nrev = 4\n")
        .await;
    assert_eq!(next_configuration(&mut third).await.revision, 4);
    // Details are updated on every reconnect.
    assert_eq!(
        admin.device(&org, &device).await["name"],
        json!("renamed device")
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_are_recorded_and_repeating_one_changes_nothing() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let config = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    let device = paired.device_id.to_string();
    let received = next_configuration(&mut connection).await;
    let rev1 = ConfigRef {
        configuration_id: received.configuration_id,
        revision: 1,
    };

    let failed = AckOutcome::Failed {
        reason: "data folder missing".into(),
    };
    assert!(connection.ack(rev1, failed.clone()).await.unwrap().recorded);
    let shown = admin.device(&org, &device).await;
    assert_eq!(shown["applied"]["status"], json!("failed"));
    assert_eq!(shown["applied"]["reason"], json!("data folder missing"));
    assert_eq!(shown["applied"]["revision"], json!(1));
    let failures = |audit: &[serde_json::Value]| {
        audit
            .iter()
            .filter(|entry| entry["action"] == json!("configuration.apply_failed"))
            .count()
    };
    assert_eq!(failures(&admin.audit(&org).await), 1);
    // The same failure again: recorded (acknowledged) but nothing changes.
    assert!(connection.ack(rev1, failed).await.unwrap().recorded);
    assert_eq!(failures(&admin.audit(&org).await), 1);
    assert_eq!(
        admin.device(&org, &device).await["applied"],
        shown["applied"]
    );

    // Applied after a retry.
    assert!(
        connection
            .ack(rev1, AckOutcome::Applied)
            .await
            .unwrap()
            .recorded
    );
    let applied = admin.device(&org, &device).await;
    assert_eq!(applied["applied"]["status"], json!("applied"));
    assert_eq!(applied["applied"]["reason"], json!(null));
    assert!(
        connection
            .ack(rev1, AckOutcome::Applied)
            .await
            .unwrap()
            .recorded
    );
    assert_eq!(
        admin.device(&org, &device).await["applied"],
        applied["applied"]
    );

    // A revision that does not exist, or another configuration, is not recorded.
    let future = ConfigRef {
        configuration_id: received.configuration_id,
        revision: 9,
    };
    assert!(
        !connection
            .ack(future, AckOutcome::Applied)
            .await
            .unwrap()
            .recorded
    );
    let other = admin.create_config(&org, "Other", "[GLOBAL]\n").await;
    let other_ref = ConfigRef {
        configuration_id: other.parse().unwrap(),
        revision: 1,
    };
    assert!(
        !connection
            .ack(other_ref, AckOutcome::Applied)
            .await
            .unwrap()
            .recorded
    );
    assert_eq!(
        admin.device(&org, &device).await["applied"],
        applied["applied"]
    );
    assert_eq!(
        admin.device(&org, &device).await["configuration"]["id"],
        json!(config)
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_again_with_the_credential_returns_the_same_device_without_using_the_code() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 3).await;
    let code = admin.reusable_code(&org, json!({ "max_uses": 1 })).await;
    let code_text = code["code"].as_str().unwrap();
    let code_id = code["id"].as_str().unwrap();
    let (identity, first, paired) = pair_ok(&test.device_url(), code_text).await;
    first.close().await;

    let mut again = test.connect().await;
    let result = again
        .pair(code_text, &identity, &device_info("device"))
        .await
        .unwrap();
    let PairResult::Paired(repeat) = result else {
        panic!("repeat refused: {result:?}")
    };
    assert!(repeat.already_paired);
    assert_eq!(repeat.device_id, paired.device_id);
    assert_eq!(repeat.license_id, paired.license_id);
    let shown = admin
        .get(&format!("/v1/organizations/{org}/codes/{code_id}"))
        .await;
    assert_eq!(shown["uses"], json!(1), "the repeat did not count a use");

    // Whatever the state of the code: revoked, it still returns the same device.
    admin
        .post(
            &format!("/v1/organizations/{org}/codes/{code_id}/revoke"),
            json!({}),
        )
        .await;
    again.close().await;
    let mut third = test.connect().await;
    let result = third
        .pair(code_text, &identity, &device_info("device"))
        .await
        .unwrap();
    assert!(
        matches!(result, PairResult::Paired(ref p) if p.device_id == paired.device_id && p.already_paired)
    );
    assert_eq!(admin.summary(&org).await["assigned"], json!(1));
    assert_eq!(admin.devices(&org).await.len(), 1);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_id_without_its_credential_gets_nothing() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let (identity, _connection, paired) = pair_ok(&test.device_url(), &code).await;

    let impostor = client::DeviceIdentity {
        installation_id: identity.installation_id,
        credential: protocol::Credential([7; 32]),
    };
    let mut connection = test.connect().await;
    let result = connection
        .pair(&code, &impostor, &device_info("impostor"))
        .await
        .unwrap();
    assert_eq!(refusal(&result), Some(RefusalReason::CredentialMismatch));
    let resumed = connection
        .resume(&impostor, &device_info("impostor"), None)
        .await;
    assert!(
        matches!(
            resumed,
            Ok(ResumeResult::Ended(
                protocol::EndReason::AuthenticationFailed
            ))
        ),
        "{resumed:?}"
    );
    assert_eq!(admin.summary(&org).await["assigned"], json!(1));
    let devices = admin.devices(&org).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], json!(paired.device_id.to_string()));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_code_is_refused_as_already_paired_elsewhere() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (first_org, first_code) = admin.org_with_code("First", 1).await;
    let (second_org, second_code) = admin.org_with_code("Second", 1).await;
    let (identity, connection, _) = pair_ok(&test.device_url(), &first_code).await;
    connection.close().await;
    let mut other = test.connect().await;
    let result = other
        .pair(&second_code, &identity, &device_info("device"))
        .await
        .unwrap();
    assert_eq!(
        refusal(&result),
        Some(RefusalReason::AlreadyPairedElsewhere)
    );
    assert_eq!(admin.summary(&second_org).await["assigned"], json!(0));
    assert_eq!(admin.summary(&first_org).await["assigned"], json!(1));

    // Once unpaired from the first organization, the installation may join the second.
    let device = admin.devices(&first_org).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    admin
        .post(
            &format!("/v1/organizations/{first_org}/devices/{device}/unpair"),
            json!({}),
        )
        .await;
    let mut again = test.connect().await;
    let result = again
        .pair(&second_code, &identity, &device_info("device"))
        .await
        .unwrap();
    assert!(
        matches!(result, PairResult::Paired(ref p) if p.organization_id.to_string() == second_org)
    );
    test.stop().await;
}
