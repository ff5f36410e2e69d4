//! Idempotency keys: a retried create returns the same reply and creates nothing twice.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_with_the_same_key_creates_nothing_twice() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let key = [("Idempotency-Key", "order-4711")];

    let (status, first) = admin
        .call_with(
            Method::POST,
            "/v1/organizations",
            Some(json!({ "name": "Acme" })),
            &key,
        )
        .await;
    assert_eq!(status, 201);
    let (status, again) = admin
        .call_with(
            Method::POST,
            "/v1/organizations",
            Some(json!({ "name": "Acme" })),
            &key,
        )
        .await;
    assert_eq!((status, &again), (201, &first));
    let org = first["id"].as_str().unwrap().to_string();
    let listed = admin.get("/v1/organizations").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // The same key for another request is refused, and that request is not run.
    let (status, refused) = admin
        .call_with(
            Method::POST,
            "/v1/organizations",
            Some(json!({ "name": "Other" })),
            &key,
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (409, json!("idempotency_key_reused"))
    );

    // Licenses: a retried purchase adds them once.
    let licenses = format!("/v1/organizations/{org}/licenses");
    let purchase = [("Idempotency-Key", "purchase-1")];
    let (_, bought) = admin
        .call_with(
            Method::POST,
            &licenses,
            Some(json!({ "count": 3 })),
            &purchase,
        )
        .await;
    let (_, retried) = admin
        .call_with(
            Method::POST,
            &licenses,
            Some(json!({ "count": 3 })),
            &purchase,
        )
        .await;
    assert_eq!(bought, retried);
    assert_eq!(admin.summary(&org).await["total"], json!(3));

    // Codes: the retry returns the same code (secrets included), and only one exists.
    let codes = format!("/v1/organizations/{org}/codes");
    let code_key = [("Idempotency-Key", "code-1")];
    let (_, created) = admin
        .call_with(
            Method::POST,
            &codes,
            Some(json!({ "max_uses": 5 })),
            &code_key,
        )
        .await;
    let (_, retried) = admin
        .call_with(
            Method::POST,
            &codes,
            Some(json!({ "max_uses": 5 })),
            &code_key,
        )
        .await;
    assert_eq!(created["code"], retried["code"]);
    assert_eq!(created["id"], retried["id"]);
    assert_eq!(
        admin.get(&codes).await["items"].as_array().unwrap().len(),
        1
    );

    // Keys are scoped to the caller: an organization key's "code-1" is its own.
    let org_key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(org_key["key"].as_str().unwrap());
    let (status, theirs) = portal
        .call_with(
            Method::POST,
            &codes,
            Some(json!({ "max_uses": 5 })),
            &code_key,
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(theirs["id"], created["id"]);

    // A malformed key is refused before anything runs.
    let (status, _) = admin
        .call_with(
            Method::POST,
            &codes,
            Some(json!({})),
            &[("Idempotency-Key", "")],
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        admin.get(&codes).await["items"].as_array().unwrap().len(),
        2
    );
    test.stop().await;
}
