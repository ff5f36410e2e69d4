//! An organization key reaches its own organization only, on every endpoint.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_key_cannot_read_or_change_another_organization() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let own = admin.create_org("Own").await;
    let key = admin.create_key(&own, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());

    // Another organization with one of everything.
    let other = admin.create_org("Other").await;
    let licenses = admin.add_licenses(&other, 2).await;
    let config = admin.create_config(&other, "Theirs", "[GLOBAL]\n").await;
    let code = admin.reusable_code(&other, json!({})).await;
    let code_id = code["id"].as_str().unwrap().to_string();
    let (_, _connection, paired) =
        pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
    let device = paired.device_id.to_string();
    let other_key = admin.create_key(&other, "theirs").await;
    let other_key_id = other_key["id"].as_str().unwrap().to_string();
    let free_license = licenses
        .iter()
        .find(|license| **license != paired.license_id.to_string())
        .unwrap()
        .clone();
    let before = snapshot(admin, &other).await;

    let o = format!("/v1/organizations/{other}");
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, o.clone(), None),
        (Method::GET, format!("{o}/keys"), None),
        (
            Method::POST,
            format!("{o}/keys"),
            Some(json!({ "name": "x" })),
        ),
        (Method::DELETE, format!("{o}/keys/{other_key_id}"), None),
        (Method::GET, format!("{o}/licenses"), None),
        (Method::GET, format!("{o}/licenses/summary"), None),
        (Method::GET, format!("{o}/licenses/{free_license}"), None),
        (
            Method::POST,
            format!("{o}/licenses"),
            Some(json!({ "count": 1 })),
        ),
        (
            Method::PATCH,
            format!("{o}/licenses/{free_license}"),
            Some(json!({ "valid_until": null })),
        ),
        (
            Method::POST,
            format!("{o}/licenses/{free_license}/single-use-code"),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("{o}/licenses/{free_license}/single-use-code"),
            None,
        ),
        (Method::GET, format!("{o}/codes"), None),
        (Method::POST, format!("{o}/codes"), Some(json!({}))),
        (Method::GET, format!("{o}/codes/{code_id}"), None),
        (Method::GET, format!("{o}/codes/{code_id}/reveal"), None),
        (Method::GET, format!("{o}/codes/{code_id}/qr.svg"), None),
        (Method::GET, format!("{o}/codes/{code_id}/qr.png"), None),
        (
            Method::POST,
            format!("{o}/codes/{code_id}/revoke"),
            Some(json!({})),
        ),
        (Method::GET, format!("{o}/configurations"), None),
        (
            Method::POST,
            format!("{o}/configurations"),
            Some(json!({ "name": "x", "body": "[GLOBAL]\n" })),
        ),
        (Method::GET, format!("{o}/configurations/{config}"), None),
        (
            Method::PUT,
            format!("{o}/configurations/{config}"),
            Some(json!({ "body": "[GLOBAL]\nhacked = 1\n" })),
        ),
        (Method::DELETE, format!("{o}/configurations/{config}"), None),
        (
            Method::POST,
            format!("{o}/configurations/{config}/assign"),
            Some(json!({ "device_ids": [device] })),
        ),
        (Method::GET, format!("{o}/devices"), None),
        (Method::GET, format!("{o}/devices/{device}"), None),
        (
            Method::PUT,
            format!("{o}/devices/{device}/configuration"),
            Some(json!({ "configuration_id": config })),
        ),
        (
            Method::POST,
            format!("{o}/devices/{device}/unpair"),
            Some(json!({})),
        ),
        (Method::GET, format!("{o}/audit"), None),
        // Ids of the other organization used under the key's own organization.
        (
            Method::GET,
            format!("/v1/organizations/{own}/devices/{device}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/organizations/{own}/devices/{device}/unpair"),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/v1/organizations/{own}/configurations/{config}"),
            Some(json!({ "body": "[GLOBAL]\nx = 1\n" })),
        ),
        (
            Method::GET,
            format!("/v1/organizations/{own}/codes/{code_id}/reveal"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/organizations/{own}/codes/{code_id}/revoke"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{own}/licenses/{free_license}/single-use-code"),
            Some(json!({})),
        ),
        // Server-wide endpoints are the operator's.
        (Method::GET, "/v1/audit".to_string(), None),
        (Method::GET, "/v1/status".to_string(), None),
        (
            Method::POST,
            "/v1/organizations".to_string(),
            Some(json!({ "name": "x" })),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = portal.call(method.clone(), &path, body).await;
        assert!(
            status == 404 || status == 403,
            "{method} {path} answered {status}: {answer}"
        );
        assert!(
            answer["error"]["code"].is_string(),
            "{method} {path}: {answer}"
        );
    }
    // The key lists only its own organization.
    let listed = portal.get("/v1/organizations").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], json!(own));

    assert_eq!(snapshot(admin, &other).await, before, "nothing changed");
    test.stop().await;
}

/// Everything the operator sees of an organization.
async fn snapshot(admin: &Admin, org: &str) -> Vec<Value> {
    let o = format!("/v1/organizations/{org}");
    let mut all = Vec::new();
    for path in [
        "keys",
        "licenses",
        "codes",
        "configurations",
        "devices",
        "audit",
    ] {
        let mut page = admin.get(&format!("{o}/{path}")).await;
        if let Some(items) = page["items"].as_array_mut() {
            for item in items.iter_mut() {
                // Presence and last-seen change on their own.
                if let Some(object) = item.as_object_mut() {
                    object.remove("last_seen");
                }
            }
        }
        all.push(page);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_and_revoked_keys_stop_working() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    for token in ["", "nonsense", "paird_op_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        let (status, answer) = admin
            .with_token(token)
            .call(Method::GET, &format!("/v1/organizations/{org}"), None)
            .await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
    }
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    assert_eq!(
        portal.get(&format!("/v1/organizations/{org}")).await["id"],
        json!(org)
    );
    let keys = admin.get(&format!("/v1/organizations/{org}/keys")).await;
    assert_eq!(keys["items"][0]["name"], json!("portal"));
    assert!(
        keys["items"][0].get("key").is_none(),
        "a key's secret is shown only once"
    );
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!(
                "/v1/organizations/{org}/keys/{}",
                key["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = portal
        .call(Method::GET, &format!("/v1/organizations/{org}"), None)
        .await;
    assert_eq!(status, 401);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_tokens_role_and_organization_and_the_servers_clock() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let key = admin.create_key(&org, "portal").await;
    let me = admin.get("/v1/whoami").await;
    assert_eq!(me["role"], "operator");
    assert!(me.get("organization_id").is_none());
    let before = admin.get("/v1/whoami").await["now"].clone();
    admin.advance(3600.0).await;
    let after = admin.get("/v1/whoami").await["now"].clone();
    assert_ne!(before, after, "now is the server's (manual) clock");

    let as_key = admin.with_token(key["key"].as_str().unwrap());
    let me = as_key.get("/v1/whoami").await;
    assert_eq!(me["role"], "organization_key");
    assert_eq!(me["organization_id"], org.as_str());
    assert_eq!(me["key_id"], key["id"]);
    let (status, _) = admin
        .with_token("not-a-token")
        .call(Method::GET, "/v1/whoami", None)
        .await;
    assert_eq!(status, 401);
    test.stop().await;
}
