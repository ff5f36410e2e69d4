//! Staged rollouts: an edit that a share (or a chosen set) of a configuration's devices run
//! first, promoted by an admin or by itself after a period with few enough failed
//! acknowledgements, halted by more. Driven by the engine's clock; revisions only grow for
//! every device.

use std::collections::HashMap;

use client::{Connection, ResumeResult};
use protocol::AckOutcome;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

const STABLE: &str = "[GLOBAL]\nserver = one\n";
const STAGED: &str = "[GLOBAL]\nserver = two\n";
const LATER: &str = "[GLOBAL]\nserver = three\n";

/// An organization with `count` connected devices on one configuration, each having applied
/// its first revision: (organization, configuration, devices by id).
async fn fleet(
    test: &TestServer,
    count: u32,
) -> (
    String,
    String,
    HashMap<String, (client::DeviceIdentity, Connection)>,
) {
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", count + 2).await;
    let config = admin.create_config(&org, "Meters", STABLE).await;
    let mut devices = HashMap::new();
    for _ in 0..count {
        let (identity, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
        let first = next_configuration(&mut connection).await;
        assert_eq!(first.revision, 1);
        assert!(acknowledge(&mut connection, &first, AckOutcome::Applied).await);
        devices.insert(paired.device_id.to_string(), (identity, connection));
    }
    (org, config, devices)
}

/// Each device's revision to run, as the device list shows it.
async fn revisions(admin: &Admin, org: &str) -> HashMap<String, u64> {
    admin
        .devices(org)
        .await
        .iter()
        .map(|device| {
            (
                device["id"].as_str().unwrap().to_string(),
                device["configuration"]["revision"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn rollout_view(admin: &Admin, org: &str, config: &str) -> Value {
    admin
        .get(&format!(
            "/v1/organizations/{org}/configurations/{config}/rollout"
        ))
        .await
}

/// Waits until the configuration's latest rollout is in `state`; answers the view.
async fn rollout_in(admin: &Admin, org: &str, config: &str, state: &str) -> Value {
    eventually(&format!("the rollout is {state}"), || async {
        let view = rollout_view(admin, org, config).await;
        (view["staged"]["state"] == json!(state)).then_some(view)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_edit_reaches_its_share_first_and_every_device_once_promoted() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, config, mut devices) = fleet(&test, 10).await;
    let mut feed = EventFeed::open(admin, &org).await;
    let path = format!("/v1/organizations/{org}/configurations/{config}");

    let (status, started) = admin
        .call(
            Method::POST,
            &format!("{path}/rollout"),
            Some(json!({ "body": STAGED, "share_percent": 30, "if_revision": 1 })),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    assert_shaped_as_documented("### Staged rollout", &started);
    assert_eq!(started["state"], json!("running"));
    assert_eq!(
        (
            started["revision"].clone(),
            started["stable_revision"].clone()
        ),
        (json!(2), json!(1))
    );
    assert_eq!(started["chosen_devices"], json!(3));
    assert_eq!(started["started_by"], json!("operator"));
    assert!(started["promote_at"].is_null());
    let event = feed.next_named("rollout", None).await;
    assert_eq!(event.data["state"], json!("running"));
    assert_eq!(event.data["configuration_id"], json!(config));

    // Three devices run revision 2, the others keep revision 1; the configuration says both.
    let targets = revisions(admin, &org).await;
    let chosen: Vec<String> = targets
        .iter()
        .filter(|(_, revision)| **revision == 2)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(chosen.len(), 3, "{targets:?}");
    assert_eq!(
        targets.values().filter(|revision| **revision == 1).count(),
        7
    );
    let configuration = admin.get(&path).await;
    assert_eq!(
        (
            configuration["revision"].clone(),
            configuration["staged_revision"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(configuration["body"], json!(STABLE));
    for id in &chosen {
        let (_, connection) = devices.get_mut(id).unwrap();
        let pushed = next_configuration(connection).await;
        assert_eq!((pushed.revision, pushed.body.as_str()), (2, STAGED));
        assert!(acknowledge(connection, &pushed, AckOutcome::Applied).await);
    }
    // A device that was not chosen cannot report the staged revision: it was never sent it.
    let (other, (_, connection)) = devices
        .iter_mut()
        .find(|(id, _)| !chosen.contains(id))
        .unwrap();
    let other = other.clone();
    let unsent = protocol::Configuration {
        configuration_id: config.parse().unwrap(),
        revision: 2,
        name: "Meters".into(),
        body: STAGED.into(),
    };
    assert!(!acknowledge(connection, &unsent, AckOutcome::Applied).await);

    // Reconnecting, each gets what it should run; a device paired now gets the stable one.
    for (id, expected) in [(chosen[0].clone(), 2), (other.clone(), 1)] {
        let (identity, _) = devices.get(&id).unwrap();
        let mut again = test.connect().await;
        let resumed = again
            .resume(identity, &device_info("device"), None)
            .await
            .unwrap();
        assert!(matches!(resumed, ResumeResult::Resumed(_)), "{resumed:?}");
        assert_eq!(next_configuration(&mut again).await.revision, expected);
        let (_, old) = devices.get_mut(&id).unwrap();
        *old = again;
    }
    let code = admin.reusable_code(&org, json!({})).await;
    let (_, mut newcomer, _) = pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
    assert_eq!(next_configuration(&mut newcomer).await.revision, 1);

    let view = rollout_view(admin, &org, &config).await;
    assert_eq!(view["staged"]["staged_devices"], json!(3));
    assert_eq!(view["up_to_date"], json!(10), "{view}");
    assert_eq!(
        view["revisions"],
        json!([
            { "revision": 2, "applied": 3, "failed": 0 },
            { "revision": 1, "applied": 7, "failed": 0 },
        ])
    );
    let pending = admin
        .get(&format!("/v1/organizations/{org}/devices?revision=pending"))
        .await;
    // Only the newcomer, which has not acknowledged yet.
    assert_eq!(pending["items"].as_array().unwrap().len(), 1, "{pending}");

    // Promoted: the others receive revision 2 live, and it is the configuration's own.
    let promoted = admin
        .post(&format!("{path}/rollout/promote"), json!({}))
        .await;
    assert_eq!(promoted["state"], json!("promoted"));
    assert_eq!(promoted["ended_by"], json!("operator"));
    assert_eq!(
        feed.next_named("rollout", None).await.data["state"],
        json!("promoted")
    );
    for (id, (_, connection)) in devices.iter_mut() {
        if !chosen.contains(id) {
            assert_eq!(next_configuration(connection).await.revision, 2);
        }
    }
    assert_eq!(next_configuration(&mut newcomer).await.revision, 2);
    assert!(
        revisions(admin, &org)
            .await
            .values()
            .all(|revision| *revision == 2)
    );
    let configuration = admin.get(&path).await;
    assert_eq!(
        (
            configuration["revision"].clone(),
            configuration["staged_revision"].clone()
        ),
        (json!(2), Value::Null)
    );
    assert_eq!(configuration["body"], json!(STAGED));
    let (status, again) = admin
        .call(
            Method::POST,
            &format!("{path}/rollout/promote"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], json!("no_rollout_in_progress"));

    let actions: Vec<Value> = admin
        .audit(&org)
        .await
        .into_iter()
        .filter(|entry| {
            entry["action"]
                .as_str()
                .unwrap()
                .starts_with("configuration.rollout")
        })
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(
        actions[0]["action"],
        json!("configuration.rollout_promoted")
    );
    assert_eq!(actions[1]["action"], json!("configuration.rollout_started"));
    assert_eq!(actions[1]["details"]["chosen_devices"], json!(3));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_halt_a_rollout_and_one_within_its_threshold_promotes_itself() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, config, mut devices) = fleet(&test, 4).await;
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    let ids: Vec<String> = {
        let mut ids: Vec<String> = devices.keys().cloned().collect();
        ids.sort();
        ids
    };

    // Two chosen devices, an hour before promotion, no failure allowed.
    let started = admin
        .post(
            &format!("{path}/rollout"),
            json!({
                "body": STAGED,
                "device_ids": [ids[0], ids[1]],
                "promote_after_seconds": 3600,
            }),
        )
        .await;
    assert!(started["share_percent"].is_null());
    assert_eq!(started["chosen_devices"], json!(2));
    assert!(started["promote_at"].is_string());
    let (_, first) = devices.get_mut(&ids[0]).unwrap();
    let pushed = next_configuration(first).await;
    let failed = AckOutcome::Failed {
        reason: "unknown key".into(),
    };
    assert!(acknowledge(first, &pushed, failed).await);

    // One failure is more than none: halted by the duty, which says so; time passing does not
    // promote it.
    let view = rollout_in(admin, &org, &config, "halted").await;
    assert_eq!(view["staged"]["failed_devices"], json!(1));
    assert_eq!(view["staged"]["ended_by"], json!("system"));
    let halted: Vec<Value> = admin
        .audit(&org)
        .await
        .into_iter()
        .filter(|entry| entry["action"] == "configuration.rollout_halted")
        .collect();
    assert_eq!(halted.len(), 1);
    assert_eq!(halted[0]["actor"], json!("system"));
    assert_eq!(halted[0]["details"]["failed_devices"], json!(1));
    admin.advance(7200.0).await;
    admin.post("/v1/test/sweep", json!({})).await;
    assert_eq!(
        rollout_view(admin, &org, &config).await["staged"]["state"],
        json!("halted")
    );
    let targets = revisions(admin, &org).await;
    assert_eq!(targets[&ids[2]], 1);
    assert_eq!(targets[&ids[1]], 2);

    // A plain edit supersedes it: revision 3 (after the staged 2) for every device.
    let edited = admin.edit_config(&org, &config, LATER).await;
    assert_eq!(edited["revision"], json!(3));
    assert!(edited["staged_revision"].is_null());
    for (_, connection) in devices.values_mut() {
        let mut pushed = next_configuration(connection).await;
        if pushed.revision == 2 {
            pushed = next_configuration(connection).await;
        }
        assert_eq!(pushed.revision, 3);
        assert!(acknowledge(connection, &pushed, AckOutcome::Applied).await);
    }
    assert_eq!(
        rollout_view(admin, &org, &config).await["staged"]["state"],
        json!("superseded")
    );

    // Half the devices, one failure allowed: one fails, and an hour later it promotes itself.
    let started = admin
        .post(
            &format!("{path}/rollout"),
            json!({
                "body": STAGED,
                "share_percent": 50,
                "promote_after_seconds": 3600,
                "max_failures": 1,
            }),
        )
        .await;
    assert_eq!(
        (
            started["revision"].clone(),
            started["chosen_devices"].clone()
        ),
        (json!(4), json!(2))
    );
    let chosen: Vec<String> = revisions(admin, &org)
        .await
        .into_iter()
        .filter(|(_, revision)| *revision == 4)
        .map(|(id, _)| id)
        .collect();
    let (_, connection) = devices.get_mut(&chosen[0]).unwrap();
    let pushed = next_configuration(connection).await;
    let failed = AckOutcome::Failed {
        reason: "unknown key".into(),
    };
    assert!(acknowledge(connection, &pushed, failed).await);
    admin.post("/v1/test/sweep", json!({})).await;
    assert_eq!(
        rollout_view(admin, &org, &config).await["staged"]["state"],
        json!("running")
    );
    admin.advance(3601.0).await;
    let view = rollout_in(admin, &org, &config, "promoted").await;
    assert_eq!(view["staged"]["ended_by"], json!("system"));
    assert_eq!(view["revision"], json!(4));
    for (id, (_, connection)) in devices.iter_mut() {
        if id != &chosen[0] {
            assert_eq!(next_configuration(connection).await.revision, 4);
        }
    }
    let status = admin.get("/v1/status").await;
    assert_eq!(status["engine"]["rollouts_promoted"], json!(1));
    assert_eq!(status["engine"]["rollouts_halted"], json!(1));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rollout_takes_over_the_first_ones_devices_and_a_restart_keeps_it() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, config, _devices) = fleet(&test, 10).await;
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    admin
        .post(
            &format!("{path}/rollout"),
            json!({ "body": STAGED, "share_percent": 30 }),
        )
        .await;
    let first: Vec<String> = revisions(admin, &org)
        .await
        .into_iter()
        .filter(|(_, revision)| *revision == 2)
        .map(|(id, _)| id)
        .collect();
    let second = admin
        .post(
            &format!("{path}/rollout"),
            json!({ "body": LATER, "share_percent": 50, "promote_after_seconds": 60 }),
        )
        .await;
    assert_eq!(second["revision"], json!(3));
    assert_eq!(second["stable_revision"], json!(1));
    assert_eq!(second["chosen_devices"], json!(5));
    let targets = revisions(admin, &org).await;
    assert!(first.iter().all(|id| targets[id] == 3), "{targets:?}");
    assert_eq!(
        targets.values().filter(|revision| **revision == 3).count(),
        5
    );
    assert_eq!(
        targets.values().filter(|revision| **revision == 1).count(),
        5
    );
    let history = admin.get(&format!("{path}/revisions")).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 3);

    // After a restart the rollout, and who runs what, are as they were; it still promotes.
    drop(_devices);
    let test = test.restart().await;
    let admin = &test.admin;
    assert_eq!(revisions(admin, &org).await, targets);
    let view = rollout_view(admin, &org, &config).await;
    assert_eq!(view["staged"]["state"], json!("running"));
    assert_eq!(view["staged"]["revision"], json!(3));
    admin.advance(61.0).await;
    rollout_in(admin, &org, &config, "promoted").await;
    assert!(
        revisions(admin, &org)
            .await
            .values()
            .all(|revision| *revision == 3)
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollouts_are_refused_and_change_nothing() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, config, _devices) = fleet(&test, 2).await;
    let other_org = admin.create_org("Other").await;
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    let stranger = admin.create_config(&org, "Other", STABLE).await;
    let not_on_it = {
        let code = admin.reusable_code(&org, json!({})).await;
        let (_, _, paired) = pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
        admin
            .call(
                Method::POST,
                &format!("/v1/organizations/{org}/configurations/{stranger}/assign"),
                Some(json!({ "device_ids": [paired.device_id] })),
            )
            .await;
        paired.device_id.to_string()
    };
    let cases = [
        (
            json!({ "body": STAGED, "share_percent": 0 }),
            422,
            "share_percent",
        ),
        (
            json!({ "body": STAGED, "share_percent": 101 }),
            422,
            "share_percent",
        ),
        (json!({ "body": STAGED }), 422, "share_percent"),
        (
            json!({ "body": STAGED, "share_percent": 10, "device_ids": [not_on_it] }),
            422,
            "share_percent",
        ),
        (
            json!({ "body": STAGED, "device_ids": [] }),
            422,
            "device_ids",
        ),
        (
            json!({ "body": STAGED, "device_ids": [not_on_it] }),
            422,
            "device_ids",
        ),
        (
            json!({ "body": STAGED, "share_percent": 10, "promote_after_seconds": 10 }),
            422,
            "promote_after_seconds",
        ),
        (
            json!({ "body": STAGED, "share_percent": 10, "max_failures": 2_000_000 }),
            422,
            "max_failures",
        ),
        (
            json!({ "body": STAGED, "share_percent": 10, "if_revision": 7 }),
            409,
            "",
        ),
        (json!({ "body": "[GLOBAL\n", "share_percent": 10 }), 422, ""),
    ];
    for (body, expected, field) in cases {
        let (status, answer) = admin
            .call(Method::POST, &format!("{path}/rollout"), Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{body} → {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], json!(field), "{body} → {answer}");
        }
    }
    for (path, expected) in [
        (
            format!("/v1/organizations/{other_org}/configurations/{config}/rollout"),
            404,
        ),
        (format!("{path}/rollout/halt"), 409),
        (format!("{path}/rollout/promote"), 409),
    ] {
        let body = json!({ "body": STAGED, "share_percent": 5 });
        let (status, answer) = admin.call(Method::POST, &path, Some(body)).await;
        assert_eq!(status, expected, "{path} → {answer}");
    }
    let view = rollout_view(admin, &org, &config).await;
    assert!(view["staged"].is_null(), "{view}");
    let history = admin.get(&format!("{path}/revisions")).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
    test.stop().await;
}
