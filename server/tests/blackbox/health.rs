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

/// On PostgreSQL (the database is another process there): while the database refuses paird's
/// connections, `/readyz` answers 503 naming the database, and 200 again once it accepts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_when_the_database_does_not_answer() {
    let test = TestServer::start().await;
    let TestDatabase::Postgres { url, .. } = &test.database else {
        // SQLite is a file inside the process: nothing to take away from it here.
        test.stop().await;
        return;
    };
    let (cluster, name) = url.rsplit_once('/').expect("a database URL");
    let superuser = postgres_pool(&format!("{cluster}/postgres")).await;
    let allow = |allowed: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allowed}");
    sqlx::query(sqlx::AssertSqlSafe(allow(false)))
        .execute(&superuser)
        .await
        .expect("connections refused");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&superuser)
    .await
    .expect("paird's connections ended");
    eventually("/readyz to say the database does not answer", || async {
        let (status, body) = ask(&test, "/readyz").await;
        (status == 503
            && body["checks"]["database"] == "unreachable"
            && body["status"] == "not_ready")
            .then_some(())
    })
    .await;
    assert_eq!(ask(&test, "/healthz").await.0, 200);
    sqlx::query(sqlx::AssertSqlSafe(allow(true)))
        .execute(&superuser)
        .await
        .expect("connections allowed again");
    eventually("/readyz to be ready again", || async {
        (ask(&test, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    test.stop().await;
}
