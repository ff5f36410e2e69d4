//! Configurations: which one a device gets, live edits and assignments, deletion.

use protocol::AckOutcome;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_gets_the_most_recently_created_configuration() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 2).await;
    admin
        .create_config(&org, "Old", "[GLOBAL]\nold = 1\n")
        .await;
    let newest = admin
        .create_config(&org, "New", "[GLOBAL]\nnew = 1\n")
        .await;
    let (_, mut connection, _) = pair_ok(&test.device_url(), &code).await;
    let received = next_configuration(&mut connection).await;
    assert_eq!(received.configuration_id.to_string(), newest);
    assert_eq!(received.name, "New");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_paired_before_any_configuration_receives_the_first_one_created() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    assert!(paired.configuration_pending);
    let device = paired.device_id.to_string();
    assert_eq!(
        admin.device(&org, &device).await["configuration"],
        json!(null)
    );

    let first = admin
        .create_config(&org, "First", "[GLOBAL]\nfirst = 1\n")
        .await;
    let received = next_configuration(&mut connection).await;
    assert_eq!(received.configuration_id.to_string(), first);
    // A later configuration is for new devices; this one keeps the first.
    admin.create_config(&org, "Second", "[GLOBAL]\n").await;
    assert_eq!(
        admin.device(&org, &device).await["configuration"]["id"],
        json!(first)
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reaches_every_connected_device_using_it_and_no_other() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 4).await;
    let other = admin
        .create_config(&org, "Other", "[GLOBAL]\nother = 1\n")
        .await;
    let (_, mut outsider, outsider_paired) = pair_ok(&test.device_url(), &code).await;
    next_configuration(&mut outsider).await;
    let shared = admin
        .create_config(&org, "Shared", "[GLOBAL]\nv = 1\n")
        .await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let (_, mut connection, _) = pair_ok(&test.device_url(), &code).await;
        assert_eq!(
            next_configuration(&mut connection)
                .await
                .configuration_id
                .to_string(),
            shared
        );
        users.push(connection);
    }
    let edited = admin.edit_config(&org, &shared, "[GLOBAL]\nv = 2\n").await;
    assert_eq!(edited["revision"], json!(2));
    for connection in &mut users {
        let received = next_configuration(connection).await;
        assert_eq!(
            (received.revision, received.body.as_str()),
            (2, "[GLOBAL]\nv = 2\n")
        );
    }
    // The outsider runs "Other": its next message is Other's edit, not Shared's.
    admin
        .edit_config(&org, &other, "[GLOBAL]\nother = 2\n")
        .await;
    let received = next_configuration(&mut outsider).await;
    assert_eq!(received.configuration_id.to_string(), other);
    assert_eq!(received.revision, 2);
    let shown = admin
        .device(&org, &outsider_paired.device_id.to_string())
        .await;
    assert_eq!(shown["configuration"]["revision"], json!(2));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigning_to_one_device_and_to_many_reaches_them() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    admin.create_config(&org, "Default", "[GLOBAL]\n").await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
        next_configuration(&mut connection).await;
        devices.push((connection, paired.device_id.to_string()));
    }
    let special = admin
        .create_config(&org, "Special", "[GLOBAL]\nspecial = 1\n")
        .await;
    let shown = admin
        .put(
            &format!(
                "/v1/organizations/{org}/devices/{}/configuration",
                devices[0].1
            ),
            json!({ "configuration_id": special }),
        )
        .await;
    assert_eq!(shown["configuration"]["id"], json!(special));
    let received = next_configuration(&mut devices[0].0).await;
    assert_eq!(received.configuration_id.to_string(), special);

    let bulk = admin
        .create_config(&org, "Bulk", "[GLOBAL]\nbulk = 1\n")
        .await;
    let ids: Vec<&str> = devices.iter().map(|(_, id)| id.as_str()).collect();
    let assigned = admin
        .post(
            &format!("/v1/organizations/{org}/configurations/{bulk}/assign"),
            json!({ "device_ids": ids }),
        )
        .await;
    assert_eq!(assigned["device_ids"].as_array().unwrap().len(), 3);
    for (connection, _) in &mut devices {
        let received = next_configuration(connection).await;
        assert_eq!(received.configuration_id.to_string(), bulk);
        assert!(acknowledge(connection, &received, AckOutcome::Applied).await);
    }
    for (_, id) in &devices {
        let shown = admin.device(&org, id).await;
        assert_eq!(shown["configuration"]["id"], json!(bulk));
        assert_eq!(shown["applied"]["configuration_id"], json!(bulk));
    }
    // One unknown device: nothing is assigned.
    let unknown = engine::ids::DeviceId::generate().to_string();
    let (status, _) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/configurations/{special}/assign"),
            Some(json!({ "device_ids": [devices[1].1, unknown] })),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        admin.device(&org, &devices[1].1).await["configuration"]["id"],
        json!(bulk)
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_cannot_be_deleted_while_assigned() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let used = admin.create_config(&org, "Used", "[GLOBAL]\n").await;
    let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    next_configuration(&mut connection).await;
    let path = format!("/v1/organizations/{org}/configurations/{used}");
    let (status, answer) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("configuration_in_use"))
    );
    assert_eq!(admin.get(&path).await["revision"], json!(1));

    let replacement = admin.create_config(&org, "Replacement", "[GLOBAL]\n").await;
    admin
        .put(
            &format!(
                "/v1/organizations/{org}/devices/{}/configuration",
                paired.device_id
            ),
            json!({ "configuration_id": replacement }),
        )
        .await;
    let (status, _) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = admin.call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_check_their_input() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let config = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    let (status, answer) = admin
        .call(
            Method::PUT,
            &path,
            Some(json!({ "body": "[GLOBAL]\nx = 1\n", "if_revision": 5 })),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("revision_mismatch"))
    );
    let too_big = "#".repeat(protocol::limits::MAX_CONFIGURATION_BODY_BYTES + 1);
    let (status, answer) = admin
        .call(Method::PUT, &path, Some(json!({ "body": too_big })))
        .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (422, json!("body"))
    );
    let (status, _) = admin
        .call(
            Method::PUT,
            &path,
            Some(json!({ "body": "[GLOBAL]\n", "colour": "red" })),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");
    // No text column holds a NUL (PostgreSQL refuses it): a typed refusal on both backends,
    // and nothing saved, neither by an edit nor by a creation.
    let (status, answer) = admin
        .call(
            Method::PUT,
            &path,
            Some(json!({ "body": "[GLOBAL]\nname = a\u{0}b\n" })),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (422, json!("body"))
    );
    let (status, answer) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/configurations"),
            Some(json!({ "name": "Nul", "body": "\u{0}" })),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (422, json!("body"))
    );
    assert_eq!(
        admin.get(&path).await["revision"],
        json!(1),
        "a refused edit changes nothing"
    );
    let max = format!(
        "[GLOBAL]\n{}",
        "#".repeat(protocol::limits::MAX_CONFIGURATION_BODY_BYTES - "[GLOBAL]\n".len())
    );
    let edited = admin
        .put(&path, json!({ "body": max, "if_revision": 1 }))
        .await;
    assert_eq!(edited["revision"], json!(2));
    assert_eq!(edited["body"].as_str().unwrap().len(), max.len());
    test.stop().await;
}

/// A body the app could not read is refused with every problem by line, on creation and on
/// edit, and nothing is saved or pushed; warnings alone do not refuse it. The check endpoint
/// reports the same problems without saving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_configuration_bodies_are_refused_by_line_and_nothing_is_saved() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nv = 1\n")
        .await;
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    let (_, mut connection, _) = pair_ok(&test.device_url(), &code).await;
    assert_eq!(next_configuration(&mut connection).await.revision, 1);

    let broken =
        "[GLOBAL]\nsynctime_high_threshold = 5\nsynctime_low_threshold = 60\nSpeed = 3\n[global]\n";
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    let (status, answer) = portal
        .call(Method::PUT, &path, Some(json!({ "body": broken })))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], json!("invalid_configuration"));
    assert_eq!(answer["error"]["field"], json!("body"));
    let problems: Vec<(u64, String)> = answer["error"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|problem| {
            (
                problem["line"].as_u64().unwrap(),
                problem["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let error = |line| (line, "error".to_string());
    assert_eq!(problems, vec![error(3), error(4), error(5)], "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("3 errors") && message.contains("line 3"),
        "{message}"
    );
    assert_eq!(
        admin.get(&path).await["revision"],
        json!(1),
        "nothing saved"
    );

    let (status, answer) = portal
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/configurations"),
            Some(json!({ "name": "Broken", "body": "[GLOBAL]\nsynctime_low_threshold = -1\n" })),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["problems"][0]["line"].clone()),
        (422, json!(2)),
        "{answer}"
    );
    let listed = admin
        .get(&format!("/v1/organizations/{org}/configurations"))
        .await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing created"
    );

    // The check endpoint: the same report and nothing saved, for any signed-in principal.
    let checked = portal
        .post("/v1/configuration-check", json!({ "body": broken }))
        .await;
    assert_eq!(
        (checked["valid"].clone(), checked["errors"].clone()),
        (json!(false), json!(3))
    );
    let misspelled = "[GLOBAL]\nsynctime_hihg_threshold = 600\n";
    let checked = portal
        .post("/v1/configuration-check", json!({ "body": misspelled }))
        .await;
    assert_eq!(
        (checked["valid"].clone(), checked["warnings"].clone()),
        (json!(true), json!(1))
    );
    assert!(
        checked["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("synctime_high_threshold"),
        "{checked}"
    );
    // A body of thousands of broken lines: every one counted, the first 200 listed.
    let many = format!("[GLOBAL]\n{}", "not a setting\n".repeat(5_000));
    let checked = portal
        .post("/v1/configuration-check", json!({ "body": many }))
        .await;
    assert_eq!(
        (
            checked["errors"].clone(),
            checked["problems"].as_array().map(Vec::len),
            checked["problems_truncated"].clone()
        ),
        (json!(5_000), Some(200), json!(true)),
        "{}",
        checked["errors"]
    );
    assert_eq!(checked["problems"][199]["line"], json!(201));
    let (status, _) = admin
        .with_token("not-a-token")
        .call(
            Method::POST,
            "/v1/configuration-check",
            Some(json!({ "body": "[GLOBAL]\n" })),
        )
        .await;
    assert_eq!(status, 401);

    // A body with only a warning is saved, and reaches the device; the refused edits never did.
    let edited = portal.put(&path, json!({ "body": misspelled })).await;
    assert_eq!(edited["revision"], json!(2));
    let received = next_configuration(&mut connection).await;
    assert_eq!((received.revision, received.body.as_str()), (2, misspelled));
    test.stop().await;
}

/// The rollout of a configuration: per revision, how many devices run it and how many failed
/// to apply it, and how many assigned devices run the current revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_rollout_counts_devices_per_revision_and_outcome() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nv = 1\n")
        .await;
    let rollout_path = format!("/v1/organizations/{org}/configurations/{config}/rollout");
    let mut devices = Vec::new();
    for _ in 0..3 {
        let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
        let received = next_configuration(&mut connection).await;
        assert!(acknowledge(&mut connection, &received, AckOutcome::Applied).await);
        devices.push((connection, paired.device_id.to_string()));
    }
    let rollout = admin.get(&rollout_path).await;
    assert_eq!(
        rollout,
        json!({
            "configuration_id": config,
            "revision": 1,
            "assigned_devices": 3,
            "up_to_date": 3,
            "revisions": [{ "revision": 1, "applied": 3, "failed": 0 }],
            "staged": null,
        })
    );

    // Revision 2: one device applies it, one fails, one has not answered yet.
    admin.edit_config(&org, &config, "[GLOBAL]\nv = 2\n").await;
    for (index, outcome) in [
        AckOutcome::Applied,
        AckOutcome::Failed {
            reason: "disk full".into(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let connection = &mut devices[index].0;
        let received = next_configuration(connection).await;
        assert_eq!(received.revision, 2);
        assert!(acknowledge(connection, &received, outcome).await);
    }
    let rollout = admin.get(&rollout_path).await;
    assert_eq!(
        (
            rollout["revision"].clone(),
            rollout["up_to_date"].clone(),
            rollout["revisions"].clone()
        ),
        (
            json!(2),
            json!(1),
            json!([
                { "revision": 2, "applied": 1, "failed": 1 },
                { "revision": 1, "applied": 1, "failed": 0 },
            ])
        )
    );

    // A device moved to another configuration still counts where it last reported, but not
    // as assigned.
    let other = admin
        .create_config(&org, "Other", "[GLOBAL]\nother = 1\n")
        .await;
    admin
        .post(
            &format!("/v1/organizations/{org}/configurations/{other}/assign"),
            json!({ "device_ids": [devices[0].1] }),
        )
        .await;
    let rollout = admin.get(&rollout_path).await;
    assert_eq!(
        (
            rollout["assigned_devices"].clone(),
            rollout["up_to_date"].clone(),
            rollout["revisions"][0].clone()
        ),
        (
            json!(2),
            json!(0),
            json!({ "revision": 2, "applied": 1, "failed": 1 })
        )
    );

    // Another organization's key does not see it.
    let stranger = admin.create_org("Stranger").await;
    let key = admin.create_key(&stranger, "theirs").await;
    let (status, _) = admin
        .with_token(key["key"].as_str().unwrap())
        .call(Method::GET, &rollout_path, None)
        .await;
    assert_eq!(status, 404);
    test.stop().await;
}
