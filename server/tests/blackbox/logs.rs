//! The real binary's logs, as a log collector reads them (`--log-format json`, everything down
//! to `debug`): every line is a JSON object, an admin request's lines carry its request id, and
//! no secret used in a whole scenario appears in any line.

use std::process::Stdio;

use client::PairResult;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::processes::sigterm;
use crate::support::*;

const METRICS_TOKEN: &str = "metrics-token-for-the-log-test-0123456789";
const SERVER_KEY: &str = "5f1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100aa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let mut child = serve_command(dir.path())
        .args(database.serve_args())
        .args(["--log-format", "json"])
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("PAIRD_METRICS_TOKEN", METRICS_TOKEN)
        .env("PAIRD_SERVER_KEY", SERVER_KEY)
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("paird starts");
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let started = wait_until_ready(&mut child).await.expect("ready");
    let admin = Admin::new(&started.ready.admin_url, OPERATOR_TOKEN);
    let device_url = started.ready.device_url.clone();

    // A scenario that handles every kind of secret.
    let (org, code) = admin.org_with_code("Acme", 5).await;
    let key = admin.create_key(&org, "portal").await;
    let key_secret = key["key"].as_str().unwrap().to_string();
    let portal = admin.with_token(&key_secret);
    let config = portal
        .create_config(&org, "Meters", "[GLOBAL]\nsynctime = 1\n")
        .await;
    let license = admin.licenses(&org).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let single = admin.single_use_code(&org, &license).await;
    let single_code = single["code"].as_str().unwrap().to_string();
    let identity = identity();
    let mut device = client::Connection::connect(&device_url, &client::ConnectOptions::default())
        .await
        .unwrap();
    let paired = device
        .pair(&code, &identity, &device_info("logged"))
        .await
        .unwrap();
    assert!(matches!(paired, PairResult::Paired(_)), "{paired:?}");
    let (_, mut other, _) = pair_ok(&device_url, &single_code).await;
    let devices = portal.devices(&org).await;
    for listed in &devices {
        let id = listed["id"].as_str().unwrap();
        portal
            .put(
                &format!("/v1/organizations/{org}/devices/{id}/configuration"),
                json!({ "configuration_id": config }),
            )
            .await;
    }
    let received = next_configuration(&mut other).await;
    acknowledge(
        &mut other,
        &received,
        protocol::AckOutcome::Failed {
            reason: "cannot write the file".into(),
        },
    )
    .await;
    device.close().await;
    let mut again = client::Connection::connect(&device_url, &client::ConnectOptions::default())
        .await
        .unwrap();
    again
        .resume(&identity, &device_info("logged"), None)
        .await
        .unwrap();
    // Refused attempts: a wrong token, a wrong credential, an unknown code.
    let (status, _) = admin
        .with_token("paird_op_not-a-real-token-but-long-enough")
        .call(Method::GET, "/v1/whoami", None)
        .await;
    assert_eq!(status, 401);
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", started.ready.admin_url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // One request with an id of the caller's, one without.
    let (_, _) = admin
        .call_with(
            Method::GET,
            "/v1/whoami",
            None,
            &[("X-Request-Id", "trace-me-4711")],
        )
        .await;
    let answer = reqwest::Client::new()
        .get(format!("{}/healthz", started.ready.admin_url))
        .header("X-Request-Id", "trace-me-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-request-id"], "trace-me-4711");
    let made = reqwest::Client::new()
        .get(format!("{}/healthz", started.ready.admin_url))
        .send()
        .await
        .unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 32, "a request id is made: {made}");

    sigterm(&mut child).await;
    let logs = logs.await.unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect();
    assert!(
        lines.len() > 20,
        "a debug log of a whole scenario: {}",
        lines.len()
    );
    let traced: Vec<&Value> = lines
        .iter()
        .filter(|line| line["span"]["request_id"] == "trace-me-4711")
        .collect();
    assert!(
        traced
            .iter()
            .any(|line| line["fields"]["message"] == "admin request"
                && line["span"]["path"] == "/v1/whoami"),
        "the request's own line carries its id: {traced:?}"
    );
    assert!(
        lines.iter().any(|line| line["span"]["request_id"] == made),
        "a made id is in the log too"
    );

    let credential = identity.credential.to_text();
    let secrets = [
        ("the operator token", OPERATOR_TOKEN.to_string()),
        ("the metrics token", METRICS_TOKEN.to_string()),
        ("the server key", SERVER_KEY.to_string()),
        ("an organization key", key_secret.clone()),
        ("a reusable code", code.clone()),
        ("a single-use code", single_code.clone()),
        ("a device credential", credential),
        (
            "a wrong token",
            "paird_op_not-a-real-token-but-long-enough".to_string(),
        ),
    ];
    for (what, secret) in &secrets {
        // Long enough that a match is never chance.
        assert!(secret.len() >= 16, "{what}");
        if let Some(line) = logs.lines().find(|line| line.contains(secret.as_str())) {
            panic!("{what} is in the log: {line}");
        }
    }
}
