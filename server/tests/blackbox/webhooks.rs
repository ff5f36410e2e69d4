//! Webhooks: an organization's events delivered to a real HTTP receiver on loopback, signed
//! (checked with the verification example of docs/admin-api.md, run by Python), in order,
//! retried after failures by the engine's clock, replayed on demand, and not lost by a restart.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

async fn create_webhook(admin: &Admin, org: &str, url: &str, events: &[&str]) -> Value {
    let (status, created) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/webhooks"),
            Some(json!({ "url": url, "events": events })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_in_order_retried_after_failures_and_replayed() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let inbox = Inbox::default();
    let url = inbox.listen().await;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let webhook = create_webhook(
        admin,
        &org,
        &url,
        &["pairings", "unpairings", "no_free_license"],
    )
    .await;
    assert_shaped_as_documented("### Webhook", &webhook);
    let secret = webhook["secret"].as_str().unwrap().to_string();
    let webhook_id = webhook["id"].as_str().unwrap().to_string();
    // The receiver fails twice before it accepts anything.
    inbox.answer_next(&[500, 503]);

    let (_, _, paired) = pair_ok(&test.device_url(), &code).await;
    for _ in 0..2 {
        let (_, _, refused) = pair_new(&test.device_url(), &code).await;
        assert_eq!(
            refusal(&refused),
            Some(protocol::RefusalReason::NoFreeLicense)
        );
    }
    admin.unpair(&org, paired.device_id).await;

    // The first event is tried, fails, and everything behind it waits its turn.
    let first = inbox.wait_for(1).await;
    assert_eq!(first[0].kind, "pairings");
    admin.advance(11.0).await;
    inbox.wait_for(2).await;
    admin.advance(21.0).await;
    // Then it is delivered, and the others follow in the order they happened; two refusals
    // within the interval make one event.
    let received = inbox.wait_for(5).await;
    let kinds: Vec<&str> = received.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "pairings",
            "pairings",
            "pairings",
            "no_free_license",
            "unpairings"
        ],
        "{received:?}"
    );
    assert_eq!(
        received[0].event_id, received[2].event_id,
        "the same event, retried"
    );
    let mut ids: Vec<&str> = received[2..].iter().map(|r| r.event_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for delivery in &received {
        verify_with_documented_example(&secret, delivery);
    }
    let body: Value = serde_json::from_str(&received[2].body).unwrap();
    assert_eq!(body["kind"], json!("pairings"));
    assert_eq!(body["organization_id"], json!(org));
    assert_eq!(body["entries"][0]["action"], json!("device.paired"));
    assert_eq!(
        body["entries"][0]["subject"],
        json!(paired.device_id.to_string())
    );
    let body: Value = serde_json::from_str(&received[4].body).unwrap();
    assert_eq!(body["entries"][0]["action"], json!("device.unpaired"));

    // The deliveries and their outcomes, newest first.
    let deliveries = admin
        .get(&format!(
            "/v1/organizations/{org}/webhooks/{webhook_id}/deliveries"
        ))
        .await;
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_shaped_as_documented("### Webhook delivery", &items[0]);
    let oldest = &items[2];
    assert_eq!(
        (
            oldest["state"].clone(),
            oldest["attempts"].clone(),
            oldest["last_status"].clone()
        ),
        (json!("delivered"), json!(3), json!(200))
    );
    assert!(items.iter().all(|item| item["state"] == "delivered"));

    // A replay sends the same event again.
    let replay = format!(
        "/v1/organizations/{org}/webhooks/{webhook_id}/deliveries/{}/replay",
        items[1]["id"]
    );
    let (status, _) = admin.call(Method::POST, &replay, None).await;
    assert_eq!(status, 202);
    let again = inbox.wait_for(6).await;
    assert_eq!(again[5].event_id, received[3].event_id);
    assert_eq!(again[5].kind, "no_free_license");

    // Deleted: nothing more is sent.
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{org}/webhooks/{webhook_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let listed = admin
        .get(&format!("/v1/organizations/{org}/webhooks"))
        .await;
    assert_eq!(listed["items"], json!([]));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_restart_are_delivered_after_it() {
    let test = TestServer::start().await;
    let inbox = Inbox::default();
    let url = inbox.listen().await;
    let (org, code) = test.admin.org_with_code("Acme", 5).await;
    create_webhook(&test.admin, &org, &url, &["pairings"]).await;
    // The receiver fails the first attempt.
    inbox.answer_next(&[503]);
    for _ in 0..3 {
        pair_ok(&test.device_url(), &code).await;
    }
    inbox.wait_for(1).await;
    let test = test.restart().await;
    // Later than any retry the first server planned.
    test.admin.advance(3600.0).await;
    let received = eventually("every event after the restart", || async {
        let received = inbox.received();
        let mut delivered: Vec<String> = received
            .iter()
            .skip(1)
            .map(|r| r.event_id.clone())
            .collect();
        delivered.dedup();
        (delivered.len() == 3).then_some(received)
    })
    .await;
    let bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert!(bodies.iter().all(|body| body["kind"] == "pairings"));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_are_refused() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let path = format!("/v1/organizations/{org}/webhooks");
    for (body, field) in [
        (
            json!({ "url": "http://portal.example.com/hook", "events": ["pairings"] }),
            "url",
        ),
        (json!({ "url": "ftp://x", "events": ["pairings"] }), "url"),
        (
            json!({ "url": "https://portal.example.com/hook", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "https://portal.example.com/hook", "events": ["everything"] }),
            "events",
        ),
        (
            json!({
                "url": "https://portal.example.com/hook",
                "events": ["licenses_expiring"],
                "expiring_within_days": 0,
            }),
            "expiring_within_days",
        ),
    ] {
        let (status, answer) = admin.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], json!(field), "{body} → {answer}");
    }
    let created = create_webhook(
        admin,
        &org,
        "https://portal.example.com/hook",
        &["pairings"],
    )
    .await;
    let other = admin.create_org("Other").await;
    let id = created["id"].as_str().unwrap();
    for (method, path) in [
        (
            Method::DELETE,
            format!("/v1/organizations/{other}/webhooks/{id}"),
        ),
        (
            Method::GET,
            format!("/v1/organizations/{other}/webhooks/{id}/deliveries"),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/webhooks/{id}/deliveries/1/replay"),
        ),
    ] {
        let (status, answer) = admin.call(method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path} → {answer}");
    }
    let listed = admin.get(&path).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        listed["items"][0]["secret"].is_null(),
        "a secret is shown once"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licenses_that_end_within_the_webhooks_days_are_told_once_a_day() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let inbox = Inbox::default();
    let url = inbox.listen().await;
    let org = admin.create_org("Acme").await;
    let (status, webhook) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/webhooks"),
            Some(json!({ "url": url, "events": ["licenses_expiring"], "expiring_within_days": 5 })),
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    assert_eq!(webhook["expiring_within_days"], json!(5));
    let deliveries = format!(
        "/v1/organizations/{org}/webhooks/{}/deliveries",
        webhook["id"].as_str().unwrap()
    );
    let now = admin.get("/v1/status").await["now"]
        .as_str()
        .unwrap()
        .to_string();
    let now = humantime::parse_rfc3339(&now).unwrap();
    let in_days = |days: u64| {
        humantime::format_rfc3339_millis(now + std::time::Duration::from_secs(days * 86_400))
            .to_string()
    };
    let licenses = format!("/v1/organizations/{org}/licenses");
    admin
        .post(&licenses, json!({ "count": 2, "valid_until": in_days(3) }))
        .await;
    // Beyond the webhook's five days: not told.
    admin
        .post(&licenses, json!({ "count": 1, "valid_until": in_days(6) }))
        .await;

    // The duty looks every ten minutes of the engine's clock.
    admin.advance(601.0).await;
    let received = inbox.wait_for(1).await;
    let body: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(received[0].kind, "licenses_expiring");
    assert_eq!(body["count"], json!(2), "{body}");
    assert_eq!(body["within_days"], json!(5));
    assert_eq!(body["licenses"].as_array().unwrap().len(), 2);
    // Not again the same day (the sweep runs the duty now, and writes nothing new)…
    admin.advance(601.0).await;
    admin.post("/v1/test/sweep", json!({})).await;
    let listed = admin.get(&deliveries).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    // …and again the next.
    admin.advance(86_400.0).await;
    inbox.wait_for(2).await;
    let listed = admin.get(&deliveries).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    test.stop().await;
}
