//! The Devices section's API at fleet scale: what an admin says of a device (its name and
//! notes) kept apart from what the device reports.

use client::{PairResult, ResumeResult};
use protocol::Encoding;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_set_name_and_notes_survive_reconnections_and_can_be_cleared() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Fleet", 2).await;
    let identity = identity();
    let mut connection = connect(&test.device_url(), Encoding::Json).await;
    let PairResult::Paired(paired) = connection
        .pair(&code, &identity, &device_info("TC52-0042"))
        .await
        .unwrap()
    else {
        panic!("not paired");
    };
    let path = format!("/v1/organizations/{org}/devices/{}", paired.device_id);
    let device = admin.get(&path).await;
    assert_eq!(
        (
            &device["name"],
            &device["reported_name"],
            &device["admin_name"],
            &device["notes"]
        ),
        (
            &json!("TC52-0042"),
            &json!("TC52-0042"),
            &json!(null),
            &json!(null)
        )
    );

    let (status, edited) = admin
        .call(
            Method::PATCH,
            &path,
            Some(json!({ "name": "  Van 7 ", "notes": "Spare battery\nin the glovebox" })),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["name"], json!("Van 7"), "trimmed, and shown first");
    assert_eq!(edited["admin_name"], json!("Van 7"));
    assert_eq!(edited["reported_name"], json!("TC52-0042"));
    assert_eq!(edited["notes"], json!("Spare battery\nin the glovebox"));

    // The device reconnects and reports another name: the admin's name and notes stay.
    drop(connection);
    let mut again = connect(&test.device_url(), Encoding::Postcard).await;
    let resumed = again
        .resume(&identity, &device_info("paird command-line device"), None)
        .await
        .unwrap();
    assert!(matches!(resumed, ResumeResult::Resumed(_)), "{resumed:?}");
    let device = admin.get(&path).await;
    assert_eq!(device["name"], json!("Van 7"));
    assert_eq!(device["reported_name"], json!("paird command-line device"));
    assert_eq!(device["notes"], json!("Spare battery\nin the glovebox"));

    // Notes alone change; the name is left. Then the name is cleared: the reported one shows.
    let notes_only = admin
        .call(Method::PATCH, &path, Some(json!({ "notes": "Returned" })))
        .await
        .1;
    assert_eq!(
        (&notes_only["name"], &notes_only["notes"]),
        (&json!("Van 7"), &json!("Returned"))
    );
    let cleared = admin
        .call(
            Method::PATCH,
            &path,
            Some(json!({ "name": null, "notes": "" })),
        )
        .await
        .1;
    assert_eq!(cleared["name"], json!("paird command-line device"));
    assert_eq!(
        (&cleared["admin_name"], &cleared["notes"]),
        (&json!(null), &json!(null))
    );

    // Refused edits change nothing.
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({ "name": "" }), "invalid_request"),
        (json!({ "name": "x".repeat(129) }), "invalid_request"),
        // A right-to-left override would show "Van 12" as "21 naV" in every list.
        (json!({ "name": "Van \u{202E}12" }), "invalid_request"),
        (json!({ "name": "Van\u{200B}12" }), "invalid_request"),
        (json!({ "notes": "x".repeat(4097) }), "invalid_request"),
        (json!({ "colour": "red" }), "invalid_request"),
    ] {
        let (status, answer) = admin.call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (422, json!(code)),
            "{body}"
        );
    }
    assert_eq!(admin.get(&path).await, cleared);
    let audit = admin.audit(&org).await;
    let edits = audit
        .iter()
        .filter(|entry| entry["action"] == json!("device.edited"))
        .count();
    assert_eq!(edits, 3);

    // Another organization's key cannot edit it.
    let (other, _) = admin.org_with_code("Other", 1).await;
    let key = admin.create_key(&other, "other").await;
    let outsider = admin.with_token(key["key"].as_str().unwrap());
    let (status, _) = outsider
        .call(Method::PATCH, &path, Some(json!({ "name": "Mine" })))
        .await;
    assert_eq!(status, 404);
    test.stop().await;
}
