//! `/healthz` and `/readyz`: what a load balancer or a supervisor asks, without a token.

use serde_json::{Value, json};

use crate::support::*;

/// GET `path` on the admin listener with no token: its status and its JSON.
async fn ask(test: &TestServer, path: &str) -> (u16, Value) {
    let answer = reqwest::get(format!("{}{path}", test.server.admin_url()))
        .await
        .expect("the admin listener answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_without_a_token_and_readiness_ends_with_draining() {
    let test = TestServer::start().await;
    assert_eq!(
        ask(&test, "/healthz").await,
        (200, json!({"status": "alive"}))
    );
    assert_eq!(
        ask(&test, "/readyz").await,
        (
            200,
            json!({
                "status": "ready",
                "checks": {"listeners": "up", "database": "ok", "draining": false},
            })
        )
    );
    // The start of a graceful shutdown: not ready any more, but still alive and serving,
    // devices included, until the shutdown itself.
    test.server.drain();
    assert_eq!(
        ask(&test, "/readyz").await,
        (
            503,
            json!({
                "status": "draining",
                "checks": {"listeners": "closing", "database": "ok", "draining": true},
            })
        )
    );
    assert_eq!(ask(&test, "/healthz").await.0, 200);
    let (_, code) = test.admin.org_with_code("Acme", 1).await;
    pair_ok(&test.device_url(), &code).await;
    test.stop().await;
}
