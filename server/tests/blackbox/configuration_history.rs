//! A configuration's history: every revision kept with who saved it and when, a diff between
//! any two, and revert, which saves an old body as a new revision that reaches the devices
//! like any edit (revision numbers only grow).

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

const FIRST: &str = "[GLOBAL]\nserver = one\ninterval = 10\n";
const SECOND: &str = "[GLOBAL]\nserver = two\ninterval = 10\n";
const THIRD: &str = "[GLOBAL]\nserver = two\ninterval = 30\nretries = 3\n";

fn revisions_of(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["revision"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revision_is_kept_diffed_and_can_be_reverted_to() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 2).await;
    let config = admin.create_config(&org, "Meters", FIRST).await;
    let (_, mut device, _) = pair_ok(&test.device_url(), &code).await;
    assert_eq!(next_configuration(&mut device).await.revision, 1);

    // Revision 2 saved with an organization key, revision 3 (renamed) by the operator.
    let key = admin.create_key(&org, "portal").await;
    let key_id = key["id"].as_str().unwrap();
    let as_key = admin.with_token(key["key"].as_str().unwrap());
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    as_key.put(&path, json!({ "body": SECOND })).await;
    admin
        .put(&path, json!({ "name": "Meters v3", "body": THIRD }))
        .await;
    assert_eq!(next_configuration(&mut device).await.revision, 2);
    assert_eq!(next_configuration(&mut device).await.revision, 3);

    // The history, newest first, without bodies; paged by revision.
    let history = admin.get(&format!("{path}/revisions")).await;
    assert_eq!(revisions_of(&history), [3, 2, 1]);
    let items = history["items"].as_array().unwrap();
    let saved_by: Vec<&str> = items
        .iter()
        .map(|item| item["saved_by"].as_str().unwrap())
        .collect();
    assert_eq!(saved_by, ["operator", &format!("key:{key_id}"), "operator"]);
    assert_eq!(items[0]["name"], json!("Meters v3"));
    assert_eq!(items[2]["name"], json!("Meters"));
    assert_eq!(items[2]["bytes"], json!(FIRST.len()));
    assert!(items.iter().all(|item| item["body"].is_null()));
    assert!(items.iter().all(|item| item["saved_at"].is_string()));
    let first_page = admin.get(&format!("{path}/revisions?limit=2")).await;
    assert_eq!(revisions_of(&first_page), [3, 2]);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let second_page = admin
        .get(&format!("{path}/revisions?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(revisions_of(&second_page), [1]);
    assert!(second_page["next_cursor"].is_null());

    // One revision with its body, as saved.
    let first = admin.get(&format!("{path}/revisions/1")).await;
    assert_shaped_as_documented("### Configuration revision", &first);
    assert_eq!(
        (first["revision"].clone(), first["body"].clone()),
        (json!(1), json!(FIRST))
    );

    // A diff between any two, in either order.
    let diff = admin.get(&format!("{path}/diff?from=1&to=3")).await;
    assert_eq!(
        (diff["lines_added"].clone(), diff["lines_removed"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(diff["name_changed"], json!(true));
    assert_shaped_as_documented("### Configuration diff", &diff);
    assert_eq!(
        diff["unified"],
        json!(
            "--- revision 1\n+++ revision 3\n@@ -1,3 +1,4 @@\n [GLOBAL]\n-server = one\n\
             -interval = 10\n+server = two\n+interval = 30\n+retries = 3\n"
        )
    );
    let back = admin.get(&format!("{path}/diff?from=3&to=2")).await;
    assert_eq!(
        (back["lines_added"].clone(), back["lines_removed"].clone()),
        (json!(1), json!(2))
    );
    let same = admin.get(&format!("{path}/diff?from=2&to=2")).await;
    assert_eq!(same["unified"], json!(""));

    // Revert to 1: its body saved as revision 4 (the name stays), pushed to the device.
    let reverted = admin
        .post(
            &format!("{path}/revisions/1/revert"),
            json!({ "if_revision": 3 }),
        )
        .await;
    assert_eq!(
        (
            reverted["revision"].clone(),
            reverted["body"].clone(),
            reverted["name"].clone()
        ),
        (json!(4), json!(FIRST), json!("Meters v3"))
    );
    let pushed = next_configuration(&mut device).await;
    assert_eq!((pushed.revision, pushed.body.as_str()), (4, FIRST));
    let history = admin.get(&format!("{path}/revisions")).await;
    assert_eq!(revisions_of(&history), [4, 3, 2, 1]);
    let entry = admin
        .audit(&org)
        .await
        .into_iter()
        .find(|entry| entry["action"] == "configuration.reverted")
        .unwrap();
    assert_eq!(
        (
            entry["details"]["reverted_to"].clone(),
            entry["details"]["revision"].clone()
        ),
        (json!(1), json!(4))
    );

    // Refusals change nothing: a stale revision, a revision or configuration that does not
    // exist, a diff without both sides, another organization's key.
    let (status, body) = admin
        .call(
            Method::POST,
            &format!("{path}/revisions/2/revert"),
            Some(json!({ "if_revision": 3 })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("revision_mismatch"))
    );
    for missing in [
        format!("{path}/revisions/99"),
        format!("{path}/diff?from=1&to=99"),
        format!("/v1/organizations/{org}/configurations/{org}/revisions"),
    ] {
        let (status, body) = admin.call(Method::GET, &missing, None).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (404, json!("not_found")),
            "{missing}"
        );
    }
    let (status, body) = admin
        .call(
            Method::POST,
            &format!("{path}/revisions/99/revert"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, body) = admin
        .call(Method::GET, &format!("{path}/diff?from=1"), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_request"))
    );
    let (other, _) = admin.org_with_code("Other", 0).await;
    let stranger = admin.with_token(admin.create_key(&other, "x").await["key"].as_str().unwrap());
    let (status, _) = stranger
        .call(Method::GET, &format!("{path}/revisions"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        revisions_of(&admin.get(&format!("{path}/revisions")).await),
        [4, 3, 2, 1]
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_configuration_takes_its_history_with_it() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let config = admin.create_config(&org, "Draft", FIRST).await;
    admin.edit_config(&org, &config, SECOND).await;
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    assert_eq!(
        revisions_of(&admin.get(&format!("{path}/revisions")).await),
        [2, 1]
    );
    let (status, _) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    for gone in [format!("{path}/revisions"), format!("{path}/revisions/1")] {
        let (status, _) = admin.call(Method::GET, &gone, None).await;
        assert_eq!(status, 404, "{gone}");
    }
    test.stop().await;
}
