//! Bulk actions: unpairing devices, assigning a configuration and renewing licenses by a list
//! of ids, by a fleet filter, or all at once; each one command with one audit entry.

use client::Connection;
use engine::ids::Timestamp;
use protocol::{CloseCode, EndReason, ServerMessage};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

async fn server_now(admin: &Admin) -> Timestamp {
    let status = admin.get("/v1/status").await;
    Timestamp::parse_rfc3339(status["now"].as_str().unwrap()).unwrap()
}

/// A connected device is told it was unpaired, then its connection closes.
async fn told_unpaired(connection: &mut Connection) {
    match connection.recv_timeout(WAIT).await {
        Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Unpaired),
        other => panic!("expected the unpaired notice, got {other:?}"),
    }
    let closed = connection.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::Unpaired));
}

/// The entries of the organization's log with this action.
async fn entries(admin: &Admin, org: &str, action: &str) -> Vec<Value> {
    admin
        .audit(org)
        .await
        .into_iter()
        .filter(|entry| entry["action"] == json!(action))
        .collect()
}

/// The actions of a device's history.
async fn history(admin: &Admin, org: &str, device: &str) -> Vec<String> {
    let page = admin
        .get(&format!(
            "/v1/organizations/{org}/audit?device={device}&limit=1000"
        ))
        .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_unpair_by_filter_and_by_selection_tells_connected_devices() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 4).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let mut devices = Vec::new();
    for _ in 0..4 {
        let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
        next_configuration(&mut connection).await;
        devices.push((Some(connection), paired.device_id.to_string()));
    }
    // Another organization, with a device of its own.
    let (other, other_code) = admin.org_with_code("Other", 1).await;
    let (_, _other_connection, theirs) = pair_ok(&test.device_url(), &other_code).await;
    let theirs = theirs.device_id.to_string();
    let key = admin.create_key(&other, "theirs").await;
    let their_portal = admin.with_token(key["key"].as_str().unwrap());

    // Devices 0 and 1 leave, one after the other.
    for (connection, id) in devices.iter_mut().take(2) {
        admin.advance(60.0).await;
        drop(connection.take());
        let id = id.clone();
        eventually("the device is offline", || async {
            (admin.device(&org, &id).await["online"] == json!(false)).then_some(())
        })
        .await;
    }
    let unpair = format!("/v1/organizations/{org}/devices/unpair");

    // Mistakes that would reach every device, or too many ids, are refused and change nothing.
    let too_many: Vec<String> = (0..10_001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    for (body, field) in [
        (json!({}), "filter"),
        (json!({ "filter": {} }), "filter"),
        (json!({ "all": false }), "filter"),
        (json!({ "filter": { "q": "  " } }), "filter"),
        (json!({ "filter": { "online": "maybe" } }), "online"),
        (
            json!({ "filter": { "not_seen_since": "yesterday" } }),
            "not_seen_since",
        ),
        (json!({ "device_ids": [] }), "device_ids"),
        (json!({ "device_ids": too_many }), "device_ids"),
        (
            json!({ "device_ids": [devices[0].1], "all": true }),
            "device_ids",
        ),
    ] {
        let (status, answer) = admin.call(Method::POST, &unpair, Some(body.clone())).await;
        assert_eq!(
            (status, &answer["error"]["field"]),
            (422, &json!(field)),
            "{body}"
        );
    }
    assert_eq!(admin.devices(&org).await.len(), 4);

    // Another organization's key never touches these devices, by ids or by filter.
    let (status, answer) = their_portal
        .call(
            Method::POST,
            &format!("/v1/organizations/{other}/devices/unpair"),
            Some(json!({ "device_ids": [devices[0].1, devices[2].1] })),
        )
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({ "matched": 0, "unpaired": 0 }))
    );
    let (status, _) = their_portal
        .call(Method::POST, &unpair, Some(json!({ "all": true })))
        .await;
    assert_eq!(status, 404);
    assert_eq!(admin.devices(&org).await.len(), 4);

    // By filter: offline and not seen since device 1 left matches device 0 only.
    let seen = admin.device(&org, &devices[1].1).await["last_seen"].clone();
    let filter = json!({ "not_seen_since": seen, "online": false });
    let answer = admin.post(&unpair, json!({ "filter": filter })).await;
    assert_eq!(answer, json!({ "matched": 1, "unpaired": 1 }));
    let left: Vec<String> = admin
        .devices(&org)
        .await
        .iter()
        .map(|device| device["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 3);
    assert!(!left.contains(&devices[0].1));
    let unpaired = entries(admin, &org, "devices.unpaired").await;
    assert_eq!(unpaired.len(), 1);
    assert_eq!(unpaired[0]["details"]["matched"], json!(1));
    assert_eq!(unpaired[0]["details"]["unpaired"], json!(1));
    assert_eq!(unpaired[0]["details"]["filter"]["online"], json!(false));
    assert!(
        history(admin, &org, &devices[0].1)
            .await
            .contains(&"devices.unpaired".to_string())
    );
    assert!(
        !history(admin, &org, &devices[1].1)
            .await
            .contains(&"devices.unpaired".to_string())
    );

    // By selection: unknown ids and another organization's device do not match; the connected
    // device is told at once.
    let answer = admin
        .post(
            &unpair,
            json!({ "device_ids": [devices[2].1, devices[0].1, theirs, uuid::Uuid::new_v4()] }),
        )
        .await;
    assert_eq!(answer, json!({ "matched": 1, "unpaired": 1 }));
    told_unpaired(devices[2].0.as_mut().unwrap()).await;
    assert_eq!(admin.devices(&other).await.len(), 1);
    let unpaired = entries(admin, &org, "devices.unpaired").await;
    assert_eq!(unpaired.len(), 2);
    assert!(
        history(admin, &org, &devices[2].1)
            .await
            .contains(&"devices.unpaired".to_string())
    );

    // All, under an idempotency key: a replay answers the same and changes nothing.
    let path = &unpair;
    let all = |key: &'static str| async move {
        admin
            .call_with(
                Method::POST,
                path,
                Some(json!({ "filter": {}, "all": true })),
                &[("Idempotency-Key", key)],
            )
            .await
    };
    let (status, answer) = all("all-1").await;
    assert_eq!(
        (status, answer),
        (200, json!({ "matched": 2, "unpaired": 2 }))
    );
    told_unpaired(devices[3].0.as_mut().unwrap()).await;
    let (status, answer) = all("all-1").await;
    assert_eq!(
        (status, answer),
        (200, json!({ "matched": 2, "unpaired": 2 }))
    );
    assert_eq!(entries(admin, &org, "devices.unpaired").await.len(), 3);
    assert!(admin.devices(&org).await.is_empty());
    assert_eq!(admin.summary(&org).await["free"], json!(4));
    // The other organization's device was never touched.
    assert_eq!(admin.devices(&other).await.len(), 1);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_assign_by_filter_pushes_the_configuration_to_connected_devices() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let first = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let mut connections = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
        next_configuration(&mut connection).await;
        connections.push(connection);
        ids.push(paired.device_id.to_string());
    }
    let second = admin
        .create_config(&org, "Doors", "[GLOBAL]\nmode=doors\n")
        .await;
    let assign = format!("/v1/organizations/{org}/configurations/{second}/assign");

    // An empty filter is refused.
    let (status, answer) = admin
        .call(Method::POST, &assign, Some(json!({ "filter": {} })))
        .await;
    assert_eq!((status, &answer["error"]["field"]), (422, &json!("filter")));

    // The list form answers as before, with its counts.
    let answer = admin.post(&assign, json!({ "device_ids": [ids[0]] })).await;
    assert_eq!(answer["device_ids"], json!([ids[0]]));
    assert_eq!(
        (answer["matched"].clone(), answer["assigned"].clone()),
        (json!(1), json!(1))
    );
    let pushed = next_configuration(&mut connections[0]).await;
    assert_eq!(pushed.configuration_id.to_string(), second);

    // By filter: the three run a configuration; the one that has it already is left alone.
    let body = json!({ "filter": { "online": true } });
    let (status, answer) = admin
        .call_with(
            Method::POST,
            &assign,
            Some(body.clone()),
            &[("Idempotency-Key", "assign-1")],
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({ "configuration_id": second, "matched": 3, "assigned": 2 })
        )
    );
    for connection in &mut connections[1..] {
        let pushed = next_configuration(connection).await;
        assert_eq!(pushed.configuration_id.to_string(), second);
    }
    // A replay answers the same; without the key nothing is left to change.
    let (_, replayed) = admin
        .call_with(
            Method::POST,
            &assign,
            Some(body.clone()),
            &[("Idempotency-Key", "assign-1")],
        )
        .await;
    assert_eq!(replayed["assigned"], json!(2));
    let again = admin.post(&assign, body).await;
    assert_eq!(
        (again["matched"].clone(), again["assigned"].clone()),
        (json!(3), json!(0))
    );
    let assigned = entries(admin, &org, "configuration.assigned").await;
    assert_eq!(assigned.len(), 3);
    let by_filter = assigned
        .iter()
        .find(|entry| entry["details"]["devices"] == json!(2))
        .unwrap();
    assert_eq!(by_filter["details"]["matched"], json!(3));
    assert_eq!(by_filter["details"]["filter"]["online"], json!(true));
    assert!(
        history(admin, &org, &ids[2])
            .await
            .contains(&"configuration.assigned".to_string())
    );

    // Back to the first for all, by filter on the configuration.
    let answer = admin
        .post(
            &format!("/v1/organizations/{org}/configurations/{first}/assign"),
            json!({ "all": true }),
        )
        .await;
    assert_eq!(
        (answer["matched"].clone(), answer["assigned"].clone()),
        (json!(3), json!(3))
    );
    for connection in &mut connections {
        let pushed = next_configuration(connection).await;
        assert_eq!(pushed.configuration_id.to_string(), first);
    }
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_renew_is_for_the_operator_and_never_shortens_a_license() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let now = server_now(admin).await;
    let day = 86_400_000;
    let licenses = format!("/v1/organizations/{org}/licenses");
    // The device takes the only license there is at first.
    let held = admin
        .post(
            &licenses,
            json!({ "count": 1, "valid_until": now.plus_millis(10 * day) }),
        )
        .await;
    let held = ids(&held["license_ids"]);
    let code = admin.reusable_code(&org, json!({})).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut connection, paired) =
        pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
    assert_eq!(paired.license_id.to_string(), held[0]);
    next_configuration(&mut connection).await;
    let soon = admin
        .post(
            &licenses,
            json!({ "count": 1, "valid_until": now.plus_millis(10 * day) }),
        )
        .await;
    let late = admin
        .post(
            &licenses,
            json!({ "count": 1, "valid_until": now.plus_millis(100 * day) }),
        )
        .await;
    let endless = admin.post(&licenses, json!({ "count": 1 })).await;
    let soon = ids(&soon["license_ids"]);
    let late = ids(&late["license_ids"]);
    let endless = ids(&endless["license_ids"]);
    let other = admin.create_org("Other").await;
    let theirs = admin
        .post(
            &format!("/v1/organizations/{other}/licenses"),
            json!({ "count": 1, "valid_until": now.plus_millis(day) }),
        )
        .await;
    let theirs = ids(&theirs["license_ids"]);

    let renew = format!("/v1/organizations/{org}/licenses/renew");
    let until = now.plus_millis(30 * day);
    // An organization key may not renew.
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    let (status, _) = portal
        .call(
            Method::POST,
            &renew,
            Some(json!({ "valid_until": until, "all": true })),
        )
        .await;
    assert_eq!(status, 403);
    // A time in the past, a bad time and an empty filter are refused.
    for (body, field) in [
        (
            json!({ "valid_until": now.plus_millis(-day), "all": true }),
            "valid_until",
        ),
        (json!({ "valid_until": "soon", "all": true }), "valid_until"),
        (json!({ "valid_until": until, "filter": {} }), "filter"),
        (
            json!({ "valid_until": until, "license_ids": [] }),
            "license_ids",
        ),
    ] {
        let (status, answer) = admin.call(Method::POST, &renew, Some(body.clone())).await;
        assert_eq!(
            (status, &answer["error"]["field"]),
            (422, &json!(field)),
            "{body}"
        );
    }

    // By selection: another organization's license does not match.
    let answer = admin
        .post(
            &renew,
            json!({ "valid_until": until, "license_ids": [soon[0], theirs[0]] }),
        )
        .await;
    assert_eq!(
        answer,
        json!({ "matched": 1, "renewed": 1, "valid_until": until })
    );
    // By filter (the assigned license, held by the device), then all: those ending later, or
    // never, are matched but not shortened.
    let answer = admin
        .post(
            &renew,
            json!({ "valid_until": until, "filter": { "status": "assigned" } }),
        )
        .await;
    assert_eq!(
        (answer["matched"].clone(), answer["renewed"].clone()),
        (json!(1), json!(1))
    );
    let answer = admin
        .post(&renew, json!({ "valid_until": until, "all": true }))
        .await;
    assert_eq!(
        (answer["matched"].clone(), answer["renewed"].clone()),
        (json!(4), json!(0))
    );
    let license = |id: &str| {
        let path = format!("{licenses}/{id}");
        async move { admin.get(&path).await }
    };
    let until_text = json!(until);
    for id in [&held[0], &soon[0]] {
        assert_eq!(license(id).await["valid_until"], until_text);
    }
    assert_eq!(
        license(&late[0]).await["valid_until"],
        json!(now.plus_millis(100 * day))
    );
    assert_eq!(license(&endless[0]).await["valid_until"], json!(null));
    let theirs_now = admin
        .get(&format!("/v1/organizations/{other}/licenses/{}", theirs[0]))
        .await;
    assert_eq!(theirs_now["valid_until"], json!(now.plus_millis(day)));

    let renewed = entries(admin, &org, "licenses.renewed").await;
    assert_eq!(renewed.len(), 3);
    assert!(
        history(admin, &org, &paired.device_id.to_string())
            .await
            .contains(&"licenses.renewed".to_string())
    );
    test.stop().await;
}
