//! Which configuration new devices get: the most recently created one by default (the source
//! product's rule), or the one an admin pinned. Devices already paired keep theirs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

async fn paired_configuration(test: &TestServer, code: &str) -> uuid::Uuid {
    let (_, mut device, _) = pair_ok(&test.device_url(), code).await;
    next_configuration(&mut device).await.configuration_id
}

fn rule(answer: &Value) -> (Value, Value) {
    (answer["rule"].clone(), answer["configuration_id"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_devices_get_the_newest_configuration_unless_one_is_pinned() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 5).await;
    let path = format!("/v1/organizations/{org}/new-device-configuration");
    let none = admin.get(&path).await;
    assert_eq!(rule(&none), (json!("newest"), Value::Null));
    let first = admin.create_config(&org, "First", "[GLOBAL]\n").await;
    let second = admin.create_config(&org, "Second", "[GLOBAL]\n").await;

    // The default: the most recently created.
    let newest = admin.get(&path).await;
    assert_eq!(rule(&newest), (json!("newest"), json!(second)));
    assert_eq!(
        (newest["name"].clone(), newest["revision"].clone()),
        (json!("Second"), json!(1))
    );
    assert_eq!(paired_configuration(&test, &code).await.to_string(), second);

    // Pinned: new devices get the pinned one, even after a newer one is created.
    let pinned = admin.put(&path, json!({ "configuration_id": first })).await;
    assert_eq!(rule(&pinned), (json!("pinned"), json!(first)));
    assert_eq!(admin.get(&path).await, pinned);
    assert_eq!(paired_configuration(&test, &code).await.to_string(), first);
    let third = admin.create_config(&org, "Third", "[GLOBAL]\n").await;
    assert_eq!(paired_configuration(&test, &code).await.to_string(), first);

    // A pinned configuration cannot be deleted, even with no device on it.
    admin.put(&path, json!({ "configuration_id": third })).await;
    let (status, body) = admin
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{org}/configurations/{third}"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("configuration_in_use"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pinned"),
        "{body}"
    );

    // Unpinned: back to the newest.
    let unpinned = admin.put(&path, json!({ "configuration_id": null })).await;
    assert_eq!(rule(&unpinned), (json!("newest"), json!(third)));
    assert_eq!(paired_configuration(&test, &code).await.to_string(), third);
    let actions: Vec<String> = admin
        .audit(&org)
        .await
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .filter(|action| action.contains("pinned"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        actions,
        [
            "configuration.unpinned",
            "configuration.pinned",
            "configuration.pinned"
        ]
    );

    // Refusals change nothing: another organization's configuration, one that does not exist,
    // a malformed id, another organization's key.
    let (other, _) = admin.org_with_code("Other", 0).await;
    let foreign = admin.create_config(&other, "Foreign", "[GLOBAL]\n").await;
    for (body, expected) in [
        (json!({ "configuration_id": foreign }), 404),
        (json!({ "configuration_id": uuid::Uuid::now_v7() }), 404),
        (json!({ "configuration_id": "not-an-id" }), 422),
        (json!({ "configuration": third }), 422),
    ] {
        let (status, _) = admin.call(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(status, expected, "{body}");
    }
    let stranger = admin.with_token(admin.create_key(&other, "x").await["key"].as_str().unwrap());
    let (status, _) = stranger
        .call(
            Method::PUT,
            &path,
            Some(json!({ "configuration_id": third })),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        rule(&admin.get(&path).await),
        (json!("newest"), json!(third))
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_that_carries_a_configuration_gives_it_to_the_devices_it_pairs() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, plain) = admin.org_with_code("Acme", 10).await;
    let carried = admin.create_config(&org, "Carried", "[GLOBAL]\n").await;
    let newest = admin.create_config(&org, "Newest", "[GLOBAL]\n").await;
    let code = admin
        .reusable_code(
            &org,
            json!({ "configuration_id": carried, "label": "vans" }),
        )
        .await;
    assert_eq!(code["configuration_id"], json!(carried));
    let code_id = code["id"].as_str().unwrap();
    let shown = admin
        .get(&format!("/v1/organizations/{org}/codes/{code_id}"))
        .await;
    assert_eq!(shown["configuration_id"], json!(carried));
    let carrying = code["code"].as_str().unwrap().to_string();

    // Devices of one burst on both codes: each gets its code's configuration, or the
    // organization's for new devices.
    let url = test.device_url();
    let pairings = (0..6).map(|i| {
        let (url, code) = (
            url.clone(),
            if i % 2 == 0 {
                carrying.clone()
            } else {
                plain.clone()
            },
        );
        async move {
            let (_, mut device, _) = pair_ok(&url, &code).await;
            (
                i,
                next_configuration(&mut device)
                    .await
                    .configuration_id
                    .to_string(),
            )
        }
    });
    for (i, configuration) in futures_util::future::join_all(pairings).await {
        let expected = if i % 2 == 0 { &carried } else { &newest };
        assert_eq!(&configuration, expected, "device {i}");
    }
    // The code's own configuration wins over a pinned one.
    let pin = format!("/v1/organizations/{org}/new-device-configuration");
    admin.put(&pin, json!({ "configuration_id": newest })).await;
    assert_eq!(
        paired_configuration(&test, &carrying).await.to_string(),
        carried
    );
    assert_eq!(
        paired_configuration(&test, &plain).await.to_string(),
        newest
    );
    admin.put(&pin, json!({ "configuration_id": null })).await;

    // A configuration a usable code carries cannot be deleted; once the code is revoked it can,
    // and the code lets go of it.
    let spare = admin.create_config(&org, "Spare", "[GLOBAL]\n").await;
    let holder = admin
        .reusable_code(&org, json!({ "configuration_id": spare }))
        .await;
    let holder_id = holder["id"].as_str().unwrap();
    let spare_path = format!("/v1/organizations/{org}/configurations/{spare}");
    let (status, body) = admin.call(Method::DELETE, &spare_path, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("configuration_in_use"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("code"),
        "{body}"
    );
    admin
        .post(
            &format!("/v1/organizations/{org}/codes/{holder_id}/revoke"),
            json!({}),
        )
        .await;
    let (status, _) = admin.call(Method::DELETE, &spare_path, None).await;
    assert_eq!(status, 204);
    let released = admin
        .get(&format!("/v1/organizations/{org}/codes/{holder_id}"))
        .await;
    assert_eq!(released["configuration_id"], Value::Null);

    // Another organization's configuration, or none at all, is not found; nothing is created.
    let (other, _) = admin.org_with_code("Other", 0).await;
    let foreign = admin.create_config(&other, "Foreign", "[GLOBAL]\n").await;
    let codes_before = admin.get(&format!("/v1/organizations/{org}/codes")).await["items"]
        .as_array()
        .unwrap()
        .len();
    for configuration in [json!(foreign), json!(uuid::Uuid::now_v7())] {
        let (status, body) = admin
            .call(
                Method::POST,
                &format!("/v1/organizations/{org}/codes"),
                Some(json!({ "configuration_id": configuration })),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (404, json!("not_found"))
        );
    }
    let codes_after = admin.get(&format!("/v1/organizations/{org}/codes")).await["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(codes_after, codes_before);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_made_to_carry_a_configuration_while_it_is_deleted_gets_a_clear_answer() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    // Each round races a code carrying the configuration against its deletion: one of them
    // wins, the other is told why (never a server error, never a code left carrying nothing).
    for round in 0..20 {
        let config = admin
            .create_config(&org, &format!("Config {round}"), "[GLOBAL]\n")
            .await;
        let codes = format!("/v1/organizations/{org}/codes");
        let configuration = format!("/v1/organizations/{org}/configurations/{config}");
        let code = admin.call(
            Method::POST,
            &codes,
            Some(json!({ "configuration_id": config })),
        );
        let delete = admin.call(Method::DELETE, &configuration, None);
        let ((code_status, code_answer), (delete_status, delete_answer)) =
            tokio::join!(code, delete);
        match (code_status, delete_status) {
            (201, 409) => assert_eq!(
                delete_answer["error"]["code"],
                json!("configuration_in_use"),
                "{delete_answer}"
            ),
            (404, 204) => assert_eq!(code_answer["error"]["code"], json!("not_found")),
            other => panic!("round {round}: {other:?}: {code_answer} / {delete_answer}"),
        }
        if code_status == 201 {
            let revoke = format!(
                "/v1/organizations/{org}/codes/{}/revoke",
                code_answer["id"].as_str().unwrap()
            );
            admin.post(&revoke, json!({})).await;
        }
    }
    test.stop().await;
}
