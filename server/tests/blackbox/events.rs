//! The live feed (`GET /v1/organizations/{org}/events`): every kind of change is told, by id,
//! only to its own organization's watchers, and only to those allowed to see it.

use protocol::AckOutcome;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_tells_each_change_of_its_organization_by_id() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 2).await;
    let (other, other_code) = admin.org_with_code("Globex", 1).await;
    let mut feed = EventFeed::open(admin, &org).await;

    // Pairing: the device's id, as "paired".
    let (identity, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    let device = paired.device_id.to_string();
    let event = feed.next_named("devices", Some("paired")).await;
    assert_eq!(event.data["device_ids"], json!([device]));
    assert_eq!(event.data["kind"], "devices");

    // Another organization's pairing is not told here: the next event is this one's.
    let _other_device = pair_ok(&test.device_url(), &other_code).await;
    admin.add_licenses(&org, 1).await;
    let event = feed.next().await.expect("an event");
    assert_eq!(event.name, "licenses", "{event:?}");

    // A configuration created, then received and applied by the device.
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    assert_eq!(feed.next().await.expect("an event").name, "configurations");
    let received = next_configuration(&mut connection).await;
    assert!(acknowledge(&mut connection, &received, AckOutcome::Applied).await);
    let event = feed.next_named("devices", Some("acknowledged")).await;
    assert_eq!(event.data["device_ids"], json!([device]));

    // Offline, then online again.
    connection.close().await;
    let event = feed.next_named("devices", Some("offline")).await;
    assert_eq!(event.data["device_ids"], json!([device]));
    let mut again = test.connect().await;
    again
        .resume(&identity, &device_info("device"), None)
        .await
        .unwrap();
    let event = feed.next_named("devices", Some("online")).await;
    assert_eq!(event.data["device_ids"], json!([device]));

    // Assigned another configuration, then unpaired.
    let second = admin.create_config(&org, "Water", "[GLOBAL]\n").await;
    admin
        .put(
            &format!("/v1/organizations/{org}/devices/{device}/configuration"),
            json!({ "configuration_id": second }),
        )
        .await;
    let event = feed.next_named("devices", Some("assigned")).await;
    assert_eq!(event.data["device_ids"], json!([device]));
    admin.unpair(&org, &device).await;
    let event = feed.next_named("devices", Some("ended")).await;
    assert_eq!(event.data["device_ids"], json!([device]));

    // Codes.
    admin.reusable_code(&org, json!({})).await;
    feed.next_named("codes", None).await;

    // The other organization's feed saw none of this organization's devices.
    let mut other_feed = EventFeed::open(admin, &other).await;
    admin.add_licenses(&other, 1).await;
    assert_eq!(other_feed.next().await.expect("an event").name, "licenses");

    // The server stopping ends the stream rather than waiting for it. The device's connection
    // closing on the way may still be told first.
    drop(again);
    test.stop().await;
    while let Some(event) = feed.next().await {
        assert_eq!(event.name, "devices", "{event:?}");
        assert_eq!(event.data["change"], "offline", "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operator_and_the_organizations_own_key_may_watch() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let a = admin.create_org("Acme").await;
    let b = admin.create_org("Globex").await;
    let key_b = admin.create_key(&b, "portal").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/organizations/{a}/events");
    let (status, body) = admin
        .with_token(&key_b)
        .call(Method::GET, &path, None)
        .await;
    assert!(status == 403 || status == 404, "{status} {body}");
    let (status, body) = admin
        .with_token("wrong")
        .call(Method::GET, &path, None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = admin
        .call(
            Method::GET,
            "/v1/organizations/00000000-0000-0000-0000-000000000000/events",
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Its own key may.
    let _feed = EventFeed::open(&admin.with_token(&key_b), &b).await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_ends_the_feeds_opened_with_it() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let revoked = admin.create_key(&org, "leaving").await;
    let kept = admin.create_key(&org, "staying").await;
    let as_key = |key: &serde_json::Value| admin.with_token(key["key"].as_str().unwrap());
    let mut revoked_feed = EventFeed::open(&as_key(&revoked), &org).await;
    let mut kept_feed = EventFeed::open(&as_key(&kept), &org).await;
    let mut operator_feed = EventFeed::open(admin, &org).await;

    admin
        .call(
            Method::DELETE,
            &format!(
                "/v1/organizations/{org}/keys/{}",
                revoked["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    // The revoked key's feed ends; the others are told which key went, and go on.
    assert_eq!(revoked_feed.next().await, None);
    for feed in [&mut kept_feed, &mut operator_feed] {
        let event = feed.next_named("key_revoked", None).await;
        assert_eq!(event.data["key_id"], revoked["id"]);
    }
    admin.add_licenses(&org, 1).await;
    kept_feed.next_named("licenses", None).await;
    // And it cannot open a new one.
    let (status, _) = as_key(&revoked)
        .call(
            Method::GET,
            &format!("/v1/organizations/{org}/events"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_ends_when_the_key_it_was_opened_with_expires() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let status = admin.get("/v1/status").await;
    let now = engine::ids::Timestamp::parse_rfc3339(status["now"].as_str().unwrap()).unwrap();
    let expiring = admin
        .post(
            &format!("/v1/organizations/{org}/keys"),
            json!({ "name": "temporary", "expires_at": now.plus_millis(3_600_000) }),
        )
        .await;
    let as_key = admin.with_token(expiring["key"].as_str().unwrap());
    let mut feed = EventFeed::open(&as_key, &org).await;
    let mut operator_feed = EventFeed::open(admin, &org).await;
    admin.add_licenses(&org, 1).await;
    feed.next_named("licenses", None).await;

    // Past its expiry (by the engine's clock) the key's feed ends; the operator's goes on.
    admin.advance(3601.0).await;
    assert_eq!(feed.next().await, None);
    admin.add_licenses(&org, 1).await;
    operator_feed.next_named("licenses", None).await;
    operator_feed.next_named("licenses", None).await;
    test.stop().await;
}
