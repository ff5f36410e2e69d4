//! Operator tokens and organization keys: listing, creating and revoking operator tokens, last
//! use, expiry by the manual clock, and tokens given in `PAIRD_OPERATOR_TOKEN` (checked for
//! strength, replaced by the next one, revocable) with the real binary restarted.

use std::process::Stdio;

use engine::ids::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::processes::{Paird, sigterm, spawn_paird};
use crate::support::*;

/// An RFC 3339 time `seconds` after the RFC 3339 time `from`.
fn later(from: &Value, seconds: i64) -> String {
    Timestamp::parse_rfc3339(from.as_str().expect("a time"))
        .expect("an RFC 3339 time")
        .plus_millis(seconds * 1000)
        .to_rfc3339()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn operator_tokens(admin: &Admin) -> Vec<Value> {
    admin.get("/v1/operator-tokens").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn operator_tokens_are_listed_created_and_revoked_but_never_the_last() {
    let server = TestServer::start().await;
    let admin = &server.admin;

    // The environment's token, and nothing that could be a secret.
    let listed = operator_tokens(admin).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let first = &listed[0];
    assert_eq!(first["source"], json!("environment"));
    assert!(
        first["last_used_at"].is_string(),
        "this listing used it: {first}"
    );
    assert_eq!(first["expires_at"], Value::Null);
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(OPERATOR_TOKEN));
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "label",
            "last_used_at",
            "source"
        ]
    );

    // The last one cannot be revoked.
    let first_id = first["id"].as_str().unwrap().to_string();
    let (status, body) = admin
        .call(
            Method::DELETE,
            &format!("/v1/operator-tokens/{first_id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "last_operator_token"),
        "{body}"
    );

    // A new one, with a label: shown once, then listed without its secret.
    let (status, created) = admin
        .call(
            Method::POST,
            "/v1/operator-tokens",
            Some(json!({ "label": "ci deploys" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], json!("api"));
    assert_eq!(created["label"], json!("ci deploys"));
    assert_eq!(created["last_used_at"], Value::Null);
    let token = created["token"].as_str().unwrap().to_string();
    let second = admin.with_token(&token);
    assert_eq!(second.get("/v1/whoami").await["role"], json!("operator"));
    let listed = operator_tokens(admin).await;
    assert_eq!(listed.len(), 2);
    assert!(!serde_json::to_string(&listed).unwrap().contains(&token));

    // Bad input: a typed error naming the field, nothing created.
    for (body, field) in [
        (json!({ "label": "" }), "label"),
        (
            json!({ "label": "x", "expires_at": "yesterday" }),
            "expires_at",
        ),
        (json!({ "label": "x", "colour": "red" }), "colour"),
    ] {
        let (status, answer) = admin
            .call(Method::POST, "/v1/operator-tokens", Some(body))
            .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["field"], json!(field), "{answer}");
    }
    let past = later(&created["created_at"], -1);
    let (status, answer) = admin
        .call(
            Method::POST,
            "/v1/operator-tokens",
            Some(json!({ "label": "x", "expires_at": past })),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (422, json!("expires_at"))
    );
    assert_eq!(operator_tokens(admin).await.len(), 2);

    // The environment's token can be revoked now: refused from then on.
    let (status, _) = second
        .call(
            Method::DELETE,
            &format!("/v1/operator-tokens/{first_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = admin.call(Method::GET, "/v1/whoami", None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = second
        .call(
            Method::DELETE,
            &format!("/v1/operator-tokens/{first_id}"),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    // Organization keys cannot touch operator tokens.
    let org = second.create_org("Acme").await;
    let key = second.create_key(&org, "portal").await;
    let as_key = second.with_token(key["key"].as_str().unwrap());
    let (status, body) = as_key.call(Method::GET, "/v1/operator-tokens", None).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = as_key
        .call(
            Method::POST,
            "/v1/operator-tokens",
            Some(json!({ "label": "mine" })),
        )
        .await;
    assert_eq!(status, 403);

    // The server's audit log has both.
    let audit = second.get("/v1/audit").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .filter(|action| action.starts_with("operator_token."))
        .collect();
    assert!(actions.contains(&"operator_token.revoked"), "{actions:?}");
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "operator_token.created")
            .count(),
        2,
        "{actions:?}"
    );
}

#[tokio::test]
async fn expired_tokens_and_keys_are_refused_like_unknown_ones() {
    let server = TestServer::start().await;
    let admin = &server.admin;
    let org = admin.create_org("Acme").await;
    let now = admin.get(&format!("/v1/organizations/{org}")).await["created_at"].clone();

    let key = admin
        .post(
            &format!("/v1/organizations/{org}/keys"),
            json!({ "name": "temporary", "expires_at": later(&now, 3600) }),
        )
        .await;
    assert_eq!(key["expires_at"], json!(later(&now, 3600)));
    let as_key = admin.with_token(key["key"].as_str().unwrap());
    let token = admin
        .post(
            "/v1/operator-tokens",
            json!({ "label": "an hour", "expires_at": later(&now, 3600) }),
        )
        .await;
    let as_token = admin.with_token(token["token"].as_str().unwrap());
    assert_eq!(as_key.call(Method::GET, "/v1/whoami", None).await.0, 200);
    assert_eq!(as_token.call(Method::GET, "/v1/whoami", None).await.0, 200);

    // A key that expires in the past is refused as bad input.
    let (status, body) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/keys"),
            Some(json!({ "name": "late", "expires_at": later(&now, -60) })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (422, json!("expires_at"))
    );

    admin.advance(3599.0).await;
    assert_eq!(as_key.call(Method::GET, "/v1/whoami", None).await.0, 200);
    admin.advance(1.0).await;
    for holder in [&as_key, &as_token] {
        let (status, body) = holder.call(Method::GET, "/v1/whoami", None).await;
        assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    }
    // Still listed, with their expiry, until revoked.
    let keys = admin.get(&format!("/v1/organizations/{org}/keys")).await;
    assert_eq!(keys["items"][0]["expires_at"], json!(later(&now, 3600)));
    // An expired token does not count as a usable one: the last usable cannot be revoked.
    let listed = operator_tokens(admin).await;
    let (status, body) = revoke_environment_token(admin, &listed).await;
    assert_eq!((status, error_code(&body)), (409, "last_operator_token"));
}

#[tokio::test]
async fn keys_show_when_they_were_last_used() {
    let server = TestServer::start().await;
    let admin = &server.admin;
    let org = admin.create_org("Acme").await;
    let key = admin.create_key(&org, "portal").await;
    let keys = admin.get(&format!("/v1/organizations/{org}/keys")).await;
    assert_eq!(keys["items"][0]["last_used_at"], Value::Null);

    admin.advance(120.0).await;
    let as_key = admin.with_token(key["key"].as_str().unwrap());
    as_key.get(&format!("/v1/organizations/{org}")).await;
    let used_at = later(&key["created_at"], 120);
    let keys = admin.get(&format!("/v1/organizations/{org}/keys")).await;
    assert_eq!(keys["items"][0]["last_used_at"], json!(used_at));

    // Written by the usage duty (at the latest when the server stops), kept across a restart.
    let database = server.database.clone();
    let dir = server.stop().await;
    let mut config = test_config(dir.path());
    database.configure(&mut config);
    let restarted = server::start(config).await.expect("server starts");
    let admin = Admin::new(&restarted.admin_url(), OPERATOR_TOKEN);
    let keys = admin.get(&format!("/v1/organizations/{org}/keys")).await;
    assert_eq!(keys["items"][0]["last_used_at"], json!(used_at));
    restarted.shutdown().await;
}

// --- PAIRD_OPERATOR_TOKEN on the real binary ---------------------------------------------------

const FIRST_ENV_TOKEN: &str = "9f2c4e81b07a3d5f6e1c28a94b7d0e35f1a6c9d2e8b4706153af92c7d1e08b6a";
const SECOND_ENV_TOKEN: &str = "3b8e0d6a41f7c95e2d1b07a8c6f349e5d0b2a7c8e91f6d4b3a05c7e2f8d1b96c";

/// Starts `paird serve` with `token` in `PAIRD_OPERATOR_TOKEN`; waits for its ready line.
async fn serve_with_token(
    dir: &std::path::Path,
    database: &TestDatabase,
    token: &str,
) -> (Paird, Admin) {
    let paird = spawn_paird(dir, database, Some(token)).await;
    let admin = paird.admin.clone();
    (paird, admin)
}

async fn stop(mut paird: Paird) {
    sigterm(&mut paird.child).await;
}

/// Revokes the environment's operator token among `listed`, as `admin`.
async fn revoke_environment_token(admin: &Admin, listed: &[Value]) -> (u16, Value) {
    let environment = listed
        .iter()
        .find(|token| token["source"] == json!("environment"))
        .unwrap();
    let id = environment["id"].as_str().unwrap();
    admin
        .call(Method::DELETE, &format!("/v1/operator-tokens/{id}"), None)
        .await
}

#[tokio::test]
async fn a_new_environment_token_replaces_the_old_one_and_leaves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;

    let (first, admin) = serve_with_token(dir.path(), &database, FIRST_ENV_TOKEN).await;
    let api_token = admin
        .post("/v1/operator-tokens", json!({ "label": "kept" }))
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    stop(first).await;

    // Restarted with a new token: the old one no longer works, the API's still does.
    let (second, admin) = serve_with_token(dir.path(), &database, SECOND_ENV_TOKEN).await;
    assert_eq!(admin.get("/v1/whoami").await["role"], json!("operator"));
    let (status, _) = admin
        .with_token(FIRST_ENV_TOKEN)
        .call(Method::GET, "/v1/whoami", None)
        .await;
    assert_eq!(status, 401);
    let as_api = admin.with_token(&api_token);
    assert_eq!(as_api.get("/v1/whoami").await["role"], json!("operator"));
    let listed = operator_tokens(&admin).await;
    let sources: Vec<&str> = listed
        .iter()
        .map(|token| token["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["api", "environment"], "{listed:?}");

    // Revoked like any other; restarting with it does not bring it back.
    let (status, _) = revoke_environment_token(&as_api, &listed).await;
    assert_eq!(status, 204);
    stop(second).await;
    let (third, admin) = serve_with_token(dir.path(), &database, SECOND_ENV_TOKEN).await;
    let (status, _) = admin.call(Method::GET, "/v1/whoami", None).await;
    assert_eq!(status, 401, "a revoked environment token stays revoked");
    assert_eq!(
        admin.with_token(&api_token).get("/v1/whoami").await["role"],
        json!("operator")
    );
    stop(third).await;
}

#[tokio::test]
async fn a_weak_environment_token_stops_the_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    for (token, why) in [
        ("aaaaaaaaaaaaaaaa", "too short"),
        (&*"a".repeat(40), "different characters"),
        (&*"0123456789".repeat(4), "repeated"),
    ] {
        let mut command = serve_command(dir.path());
        command
            .args(database.serve_args())
            .env("PAIRD_OPERATOR_TOKEN", token)
            .stderr(Stdio::piped());
        let child = command.spawn().expect("paird starts");
        let output = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .expect("paird exits")
            .unwrap();
        assert!(!output.status.success(), "{token:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{token:?}: {stderr}");
        assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
        assert!(!stderr.contains(token), "the token is not echoed: {stderr}");
    }
}
