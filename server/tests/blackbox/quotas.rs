//! Per-organization quotas on configurations, keys and active codes: at the limit a creation is
//! refused (`quota_exceeded`, naming the quota and the limit) and changes nothing, and creations
//! sent all at once cannot overshoot (counted inside each insert's transaction).

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

const LIMIT: u64 = 5;
const ATTEMPTS: usize = 16;

async fn quota_server() -> TestServer {
    TestServer::start_with(|config| {
        config.engine.quotas = engine::settings::Quotas {
            configurations: LIMIT,
            keys: LIMIT,
            active_codes: LIMIT,
        };
    })
    .await
}

/// Sends `ATTEMPTS` creations at once; checks that exactly `LIMIT` succeeded and that every
/// other one was refused with the quota's error. Answers the successful ones' bodies.
async fn create_at_once(
    admin: &Admin,
    path: &str,
    body: impl Fn(usize) -> Value,
    quota: &str,
) -> Vec<Value> {
    let answers =
        join_all((0..ATTEMPTS).map(|i| admin.call(Method::POST, path, Some(body(i))))).await;
    let mut created = Vec::new();
    for (status, answer) in answers {
        match status {
            201 => created.push(answer),
            409 => {
                let error = &answer["error"];
                assert_eq!(error["code"], json!("quota_exceeded"), "{answer}");
                assert_eq!(error["quota"], json!(quota), "{answer}");
                assert_eq!(error["limit"], json!(LIMIT), "{answer}");
                let message = error["message"].as_str().unwrap();
                assert!(
                    message.contains(quota) && message.contains("5"),
                    "{message}"
                );
            }
            other => panic!("{path} answered {other}: {answer}"),
        }
    }
    assert_eq!(created.len() as u64, LIMIT, "{path}: {created:?}");
    created
}

#[tokio::test]
async fn concurrent_creations_stop_exactly_at_each_quota() {
    let server = quota_server().await;
    let admin = &server.admin;
    let org = admin.create_org("Acme").await;
    let other = admin.create_org("Other").await;

    let configurations = create_at_once(
        admin,
        &format!("/v1/organizations/{org}/configurations"),
        |i| json!({ "name": format!("config {i}"), "body": "[GLOBAL]\n" }),
        "configurations",
    )
    .await;
    let listed = admin
        .get(&format!("/v1/organizations/{org}/configurations"))
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len() as u64, LIMIT);

    let keys = create_at_once(
        admin,
        &format!("/v1/organizations/{org}/keys"),
        |i| json!({ "name": format!("key {i}") }),
        "keys",
    )
    .await;
    let listed = admin.get(&format!("/v1/organizations/{org}/keys")).await;
    assert_eq!(listed["items"].as_array().unwrap().len() as u64, LIMIT);

    create_at_once(
        admin,
        &format!("/v1/organizations/{org}/codes"),
        |_| json!({}),
        "active_codes",
    )
    .await;

    // Another organization has quotas of its own.
    admin.create_key(&other, "portal").await;
    admin.reusable_code(&other, json!({})).await;

    // A revoked key no longer counts, nor a revoked code, nor a deleted configuration.
    let key_id = keys[0]["id"].as_str().unwrap();
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{org}/keys/{key_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    admin.create_key(&org, "replacement").await;
    let (status, body) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/keys"),
            Some(json!({ "name": "one too many" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("quota_exceeded"))
    );

    let config_id = configurations[0]["id"].as_str().unwrap();
    let (status, body) = admin
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{org}/configurations/{config_id}"),
            None,
        )
        .await;
    assert!((200..300).contains(&status), "{body}");
    admin.create_config(&org, "replacement", "[GLOBAL]\n").await;

    // An expired code no longer counts: the manual clock passes every code's validity.
    admin.advance(31.0 * 24.0 * 3600.0).await;
    admin.reusable_code(&org, json!({})).await;
}
