//! The test harness: a server with a throwaway data directory, an admin client, devices.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use client::{ConnectOptions, Connection, DeviceIdentity, PairResult};
use protocol::{DeviceInfo, Encoding, ServerMessage};
use reqwest::Method;
use serde_json::{Value, json};
use server::{RunningServer, ServerConfig};

pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";

/// Bound on every wait in the tests: long enough for a loaded CI machine, short enough that a
/// hang fails instead of blocking the suite.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub server: RunningServer,
    pub admin: Admin,
    pub dir: tempfile::TempDir,
}

/// The configuration every test starts from: ephemeral loopback ports, test hooks (manual
/// clock), generous failure limits (tests that check them set their own).
pub fn test_config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::ephemeral(dir);
    config.test_hooks = true;
    config.operator_token = Some(OPERATOR_TOKEN.into());
    config.engine.failures_per_address.max_failures = 10_000;
    config.engine.failures_per_code.max_failures = 10_000;
    config.engine.sweep_interval = Duration::from_millis(200);
    config
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let server = server::start(config).await.expect("server starts");
        let admin = Admin::new(&server.admin_url(), OPERATOR_TOKEN);
        TestServer { server, admin, dir }
    }

    pub fn device_url(&self) -> String {
        self.server.device_url()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("paird.db")
    }

    pub async fn connect(&self) -> Connection {
        connect(&self.device_url(), Encoding::Postcard).await
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.server.shutdown().await;
        self.dir
    }
}

pub async fn connect(url: &str, encoding: Encoding) -> Connection {
    Connection::connect(url, &ConnectOptions::with_encoding(encoding))
        .await
        .expect("device connects")
}

pub fn device_info(name: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.into(),
        model: "TC52".into(),
        os: "Android 13".into(),
        app_version: "4.2.1".into(),
    }
}

pub fn identity() -> DeviceIdentity {
    DeviceIdentity::generate().expect("random identity")
}

/// A new device that connects and pairs with `code`.
pub async fn pair_new(url: &str, code: &str) -> (DeviceIdentity, Connection, PairResult) {
    let identity = identity();
    let mut connection = connect(url, Encoding::Postcard).await;
    let result = connection
        .pair(code, &identity, &device_info("device"))
        .await
        .expect("pairing answered");
    (identity, connection, result)
}

/// Pairs a new device and expects success.
pub async fn pair_ok(url: &str, code: &str) -> (DeviceIdentity, Connection, protocol::Paired) {
    let (identity, connection, result) = pair_new(url, code).await;
    match result {
        PairResult::Paired(paired) => (identity, connection, paired),
        PairResult::Refused(refused) => panic!("pairing refused: {refused:?}"),
    }
}

pub fn refusal(result: &PairResult) -> Option<protocol::RefusalReason> {
    match result {
        PairResult::Paired(_) => None,
        PairResult::Refused(refused) => Some(refused.reason),
    }
}

/// The next configuration pushed to a device (skipping nothing else: anything else fails).
pub async fn next_configuration(connection: &mut Connection) -> protocol::Configuration {
    match connection.recv_timeout(WAIT).await.expect("a message") {
        ServerMessage::Configuration(configuration) => configuration,
        other => panic!("expected a configuration, got {other:?}"),
    }
}

/// Waits until `check` returns `Some`, polling; fails after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP client for the admin API.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    pub base: String,
    token: String,
}

impl Admin {
    pub fn new(base: &str, token: &str) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    pub fn with_token(&self, token: &str) -> Admin {
        Admin::new(&self.base, token)
    }

    /// Any request; returns the status and the JSON body (`null` when empty or not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn expect(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {value}"
        );
        value
    }

    pub async fn get(&self, path: &str) -> Value {
        self.expect(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.expect(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.expect(Method::PUT, path, Some(body)).await
    }

    pub async fn create_org(&self, name: &str) -> String {
        let org = self
            .post("/v1/organizations", json!({ "name": name }))
            .await;
        org["id"].as_str().expect("organization id").to_string()
    }

    /// A new organization key; returns the whole answer (`id`, `key`, …).
    pub async fn create_key(&self, org: &str, name: &str) -> Value {
        self.post(
            &format!("/v1/organizations/{org}/keys"),
            json!({ "name": name }),
        )
        .await
    }

    pub async fn add_licenses(&self, org: &str, count: u32) -> Vec<String> {
        let added = self
            .post(
                &format!("/v1/organizations/{org}/licenses"),
                json!({ "count": count }),
            )
            .await;
        ids(&added["license_ids"])
    }

    pub async fn create_config(&self, org: &str, name: &str, body: &str) -> String {
        let config = self
            .post(
                &format!("/v1/organizations/{org}/configurations"),
                json!({ "name": name, "body": body }),
            )
            .await;
        config["id"].as_str().expect("configuration id").to_string()
    }

    pub async fn edit_config(&self, org: &str, config: &str, body: &str) -> Value {
        self.put(
            &format!("/v1/organizations/{org}/configurations/{config}"),
            json!({ "body": body }),
        )
        .await
    }

    /// A reusable code; returns the whole response (code, payload_uri, qr_svg, id, …).
    pub async fn reusable_code(&self, org: &str, body: Value) -> Value {
        self.post(&format!("/v1/organizations/{org}/codes"), body)
            .await
    }

    pub async fn single_use_code(&self, org: &str, license: &str) -> Value {
        self.post(
            &format!("/v1/organizations/{org}/licenses/{license}/single-use-code"),
            json!({}),
        )
        .await
    }

    pub async fn devices(&self, org: &str) -> Vec<Value> {
        let page = self
            .get(&format!("/v1/organizations/{org}/devices?limit=1000"))
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn device(&self, org: &str, device: &str) -> Value {
        self.get(&format!("/v1/organizations/{org}/devices/{device}"))
            .await
    }

    pub async fn licenses(&self, org: &str) -> Vec<Value> {
        let page = self
            .get(&format!("/v1/organizations/{org}/licenses?limit=1000"))
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn summary(&self, org: &str) -> Value {
        self.get(&format!("/v1/organizations/{org}/licenses/summary"))
            .await
    }

    pub async fn audit(&self, org: &str) -> Vec<Value> {
        let page = self
            .get(&format!("/v1/organizations/{org}/audit?limit=1000"))
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn advance(&self, seconds: f64) {
        self.post("/v1/test/clock/advance", json!({ "seconds": seconds }))
            .await;
    }

    /// A new organization with `licenses` licenses and a reusable code; returns (org, code).
    pub async fn org_with_code(&self, name: &str, licenses: u32) -> (String, String) {
        let org = self.create_org(name).await;
        if licenses > 0 {
            self.add_licenses(&org, licenses).await;
        }
        let code = self.reusable_code(&org, json!({})).await;
        (org, code["code"].as_str().expect("code").to_string())
    }
}

pub fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Opens the server's SQLite file directly, read-only, to check what the database holds.
pub async fn database(path: &std::path::Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("database opens")
}

/// (assigned licenses, distinct devices holding them, active devices) read from the file.
pub async fn assignment_counts(path: &std::path::Path) -> (i64, i64, i64) {
    let pool = database(path).await;
    let (assigned, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT device_id) FROM licenses WHERE device_id IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    let (active,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM devices WHERE ended_at IS NULL")
        .fetch_one(&pool)
        .await
        .expect("query");
    pool.close().await;
    (assigned, distinct, active)
}
