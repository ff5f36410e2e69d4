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
