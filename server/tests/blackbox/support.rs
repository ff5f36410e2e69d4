//! The test harness: a server with a throwaway data directory and database, an admin client,
//! devices.
//!
//! The database backend comes from `PAIRD_TEST_BACKEND`: `sqlite` (the default) puts each
//! server's SQLite file in its data directory; `postgres` gives each server a database of its own
//! on one throwaway PostgreSQL cluster (`pgtemp`) shared by the whole test process.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use client::admin::{AdminClient, Retries};
pub use client::live_feed::FeedEvent;
use client::live_feed::LiveFeed;
pub use client::ready_line::Startup;
use client::ready_line::read_startup;
use client::{ConnectOptions, Connection, DeviceIdentity, PairResult};
use protocol::{DeviceInfo, Encoding, ServerMessage};
use reqwest::Method;
use serde_json::{Value, json};
use server::{RunningServer, ServerConfig};

pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789abcdef";

/// Bound on every wait in the tests: long enough for a loaded CI machine, short enough that a
/// hang fails instead of blocking the suite.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub server: RunningServer,
    pub admin: Admin,
    pub dir: tempfile::TempDir,
    /// The database the server runs on, for tests that look at what it holds.
    pub database: TestDatabase,
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
        let database = TestDatabase::create(dir.path()).await;
        let mut config = test_config(dir.path());
        database.configure(&mut config);
        adjust(&mut config);
        let server = server::start(config).await.expect("server starts");
        let admin = Admin::new(&server.admin_url(), OPERATOR_TOKEN);
        TestServer {
            server,
            admin,
            dir,
            database,
        }
    }

    /// The configuration of another node on this server's data directory and database.
    pub fn node_config(&self) -> ServerConfig {
        let mut config = test_config(self.dir.path());
        self.database.configure(&mut config);
        config
    }

    pub fn device_url(&self) -> String {
        self.server.device_url()
    }

    pub async fn connect(&self) -> Connection {
        connect(&self.device_url(), Encoding::Postcard).await
    }

    /// Stops the server and starts another on the same data directory and database: what it
    /// serves afterwards is what the database kept.
    pub async fn restart(self) -> TestServer {
        let config = self.node_config();
        let TestServer {
            server,
            dir,
            database,
            ..
        } = self;
        server.shutdown().await;
        let server = server::start(config).await.expect("server starts again");
        let admin = Admin::new(&server.admin_url(), OPERATOR_TOKEN);
        TestServer {
            server,
            admin,
            dir,
            database,
        }
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

/// Acknowledges `received` with `outcome`; true when the server recorded it.
pub async fn acknowledge(
    connection: &mut Connection,
    received: &protocol::Configuration,
    outcome: protocol::AckOutcome,
) -> bool {
    let reference = protocol::ConfigRef {
        configuration_id: received.configuration_id,
        revision: received.revision,
    };
    connection
        .ack(reference, outcome)
        .await
        .expect("an acknowledgement answer")
        .recorded
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

/// `paird serve` on `data_dir`, on ephemeral loopback ports and with no failure limit per
/// address; its standard output piped (for [`wait_until_ready`]), killed when dropped. The
/// caller adds the database, the environment and where the log goes.
pub fn serve_command(data_dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_paird"));
    command
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args([
            "--device-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--failures-per-address",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Waits, at most [`WAIT`], for the ready line of a `paird serve` started with its standard
/// output piped; answers it with the banner printed before it, or says why it did not come.
pub async fn wait_until_ready(child: &mut tokio::process::Child) -> Result<Startup, String> {
    let stdout = child
        .stdout
        .take()
        .expect("paird's standard output is piped");
    match tokio::time::timeout(WAIT, read_startup(stdout)).await {
        Ok(Ok(startup)) => Ok(startup),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no ready line within {WAIT:?}")),
    }
}

/// An organization's live feed (`GET …/events`), read with the client library's reader, every
/// wait bounded by [`WAIT`].
pub struct EventFeed {
    feed: LiveFeed,
}

impl EventFeed {
    /// Opens the feed and waits for its `ready` event: whatever happens after this returns is
    /// told on the feed.
    pub async fn open(admin: &Admin, org: &str) -> EventFeed {
        let feed = tokio::time::timeout(WAIT, admin.api.open_live_feed(org))
            .await
            .expect("the feed opens within the wait")
            .expect("the feed opens with its ready event");
        assert_eq!(
            feed.headers()["content-type"],
            "text/event-stream",
            "server-sent events"
        );
        EventFeed { feed }
    }

    /// The next event (keep-alive comments skipped), or `None` when the stream ended; fails
    /// after [`WAIT`].
    pub async fn next(&mut self) -> Option<FeedEvent> {
        tokio::time::timeout(WAIT, self.feed.next_event())
            .await
            .expect("a feed event within the wait")
            .expect("the feed reads")
    }

    /// The next event with this name and, for `devices` events, this change, skipping others;
    /// fails after [`WAIT`] or at the end of the stream.
    pub async fn next_named(&mut self, name: &str, change: Option<&str>) -> FeedEvent {
        loop {
            let event = self.next().await.expect("the feed is still open");
            if event.name == name && change.is_none_or(|change| event.data["change"] == change) {
                return event;
            }
        }
    }
}

/// An HTTP client for the admin API, for tests: every status is answered as the server gave it
/// (never retried, even with `Retry-After`), a failed exchange fails the test.
#[derive(Clone)]
pub struct Admin {
    api: AdminClient,
}

impl Admin {
    pub fn new(base: &str, token: &str) -> Admin {
        Admin {
            api: AdminClient::new(base, token).with_retries(Retries::NEVER),
        }
    }

    /// An admin API served over TLS, trusting what `tls` trusts.
    pub fn with_tls(base: &str, token: &str, tls: &rustls::ClientConfig) -> Admin {
        Admin {
            api: AdminClient::with_tls(base, token, tls)
                .expect("an HTTPS client")
                .with_retries(Retries::NEVER),
        }
    }

    pub fn with_token(&self, token: &str) -> Admin {
        Admin {
            api: self.api.with_token(token),
        }
    }

    /// The admin API's address, `http://host:port`.
    pub fn base(&self) -> &str {
        self.api.base()
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
        let answer = self
            .api
            .call(method, path, body.as_ref(), headers)
            .await
            .expect("admin API answers");
        (answer.status.as_u16(), answer.json())
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

    /// Unpairs a device; returns the answer (`{"device_id", "license_id"}`).
    pub async fn unpair(&self, org: &str, device: impl std::fmt::Display) -> Value {
        self.post(
            &format!("/v1/organizations/{org}/devices/{device}/unpair"),
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

    /// Each device of `org` (up to 1,000) with the license it holds: device id → license id.
    pub async fn license_of_each_device(
        &self,
        org: &str,
    ) -> std::collections::HashMap<String, String> {
        self.devices(org)
            .await
            .into_iter()
            .map(|device| {
                (
                    device["id"].as_str().unwrap().to_string(),
                    device["license_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
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

/// The database backend of the servers under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From `PAIRD_TEST_BACKEND`: `sqlite` (also when unset) or `postgres`. Anything else fails
    /// loudly rather than quietly testing SQLite under another name.
    pub fn current() -> Backend {
        match std::env::var("PAIRD_TEST_BACKEND") {
            Err(std::env::VarError::NotPresent) => Backend::Sqlite,
            Ok(value) => match value.as_str() {
                "" | "sqlite" => Backend::Sqlite,
                "postgres" => Backend::Postgres,
                other => panic!("PAIRD_TEST_BACKEND={other:?}: use sqlite or postgres"),
            },
            Err(error) => panic!("PAIRD_TEST_BACKEND: {error}"),
        }
    }
}

/// Connections the shared cluster accepts. Every server opens a pool of up to 16 (the PostgreSQL
/// store's default pool size, `PgSettings::pool_size`); tests run in parallel, one per core,
/// some with two servers or processes, and a failed test may keep its server's pool open until
/// the process ends. 500 leaves room for all of that.
const CLUSTER_CONNECTIONS: u32 = 500;

/// The PostgreSQL cluster that every test of this process shares, started on first use. A
/// `static` is never dropped: `pgtemp`'s watchdog stops the cluster when the process exits.
fn cluster() -> &'static pgtemp::Cluster {
    static CLUSTER: OnceLock<Result<pgtemp::Cluster, String>> = OnceLock::new();
    let started = CLUSTER.get_or_init(|| {
        pgtemp::Cluster::start_with(pgtemp::ClusterOptions {
            max_connections: CLUSTER_CONNECTIONS,
            ..pgtemp::ClusterOptions::default()
        })
        .map_err(|error| error.to_string())
    });
    match started {
        Ok(cluster) => cluster,
        Err(error) => panic!("PAIRD_TEST_BACKEND=postgres, but no PostgreSQL cluster: {error}"),
    }
}

/// The database of one server, or of several processes that share it, on the current backend.
#[derive(Debug, Clone)]
pub enum TestDatabase {
    /// `paird.db` in the data directory, where a server given no database URL keeps it.
    Sqlite { path: PathBuf },
    /// A database of its own on the shared cluster.
    Postgres {
        url: String,
        /// Where the cluster's write-ahead log stood once the database existed: everything
        /// written to this database since is in the log from there on.
        wal_start: String,
    },
}

impl TestDatabase {
    /// A new, empty database for a server whose data directory is `data_dir`.
    pub async fn create(data_dir: &Path) -> TestDatabase {
        match Backend::current() {
            Backend::Sqlite => TestDatabase::sqlite(data_dir),
            Backend::Postgres => {
                // Starting the cluster and `createdb` are blocking process runs.
                let url = tokio::task::spawn_blocking(|| cluster().create_database())
                    .await
                    .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
                    .unwrap_or_else(|error| panic!("cannot create a test database: {error}"));
                let pool = postgres_pool(&url).await;
                let (wal_start,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text")
                    .fetch_one(&pool)
                    .await
                    .expect("query");
                pool.close().await;
                TestDatabase::Postgres { url, wal_start }
            }
        }
    }

    /// The SQLite file in `data_dir`, whatever the backend: for tests about SQLite itself.
    pub fn sqlite(data_dir: &Path) -> TestDatabase {
        TestDatabase::Sqlite {
            path: data_dir.join("paird.db"),
        }
    }

    /// Points a server's configuration at this database. SQLite is the server's default (the
    /// file in its data directory), so that default is what the tests exercise.
    pub fn configure(&self, config: &mut ServerConfig) {
        if let TestDatabase::Postgres { url, .. } = self {
            config.database_url = Some(url.clone());
        }
    }

    /// The `paird serve` arguments that select this database.
    pub fn serve_args(&self) -> Vec<String> {
        match self {
            TestDatabase::Sqlite { .. } => Vec::new(),
            TestDatabase::Postgres { url, .. } => vec!["--database".into(), url.clone()],
        }
    }

    /// The one row `sql` returns, every column read as an integer (counts).
    pub async fn integers(&self, sql: &'static str) -> Vec<i64> {
        fn columns<R: sqlx::Row>(row: &R) -> Vec<i64>
        where
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            (0..row.len())
                .map(|index| row.try_get::<i64, usize>(index).expect("an integer"))
                .collect()
        }
        match self {
            TestDatabase::Sqlite { path } => {
                let pool = sqlite_pool(path).await;
                let row = sqlx::query(sql).fetch_one(&pool).await.expect("query");
                pool.close().await;
                columns(&row)
            }
            TestDatabase::Postgres { url, .. } => {
                let pool = postgres_pool(url).await;
                let row = sqlx::query(sql).fetch_one(&pool).await.expect("query");
                pool.close().await;
                columns(&row)
            }
        }
    }

    /// (assigned licenses, distinct devices holding them, active devices), read from the
    /// database itself rather than through the server.
    pub async fn assignment_counts(&self) -> (i64, i64, i64) {
        let licenses = self
            .integers(
                "SELECT COUNT(*), COUNT(DISTINCT device_id) FROM licenses \
                 WHERE device_id IS NOT NULL",
            )
            .await;
        let devices = self
            .integers("SELECT COUNT(*) FROM devices WHERE ended_at IS NULL")
            .await;
        (licenses[0], licenses[1], devices[0])
    }

    /// Everything this database has stored, as (where, bytes), for tests that look for what must
    /// never be stored. Call it after the server stopped.
    ///
    /// SQLite: the database file and its companions (`-wal`, `-shm`, `-journal`).
    ///
    /// PostgreSQL: after a `CHECKPOINT` (so that every committed page has been written out to
    /// the files, not only kept in shared memory), the files of this database's directory
    /// (tables, indexes, TOAST) and the write-ahead log segments written since the database was
    /// made. The log holds every row version ever written, also those since overwritten or
    /// removed; it also holds other tests' databases, which only widens the search. Values over
    /// about 2 KB may be stored compressed, where no byte search can see into them, so every
    /// table's rows are also read back with SQL (as JSON: `bytea` shows as `\x` and hex).
    pub async fn stored_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut stored = Vec::new();
        match self {
            TestDatabase::Sqlite { path } => {
                let dir = path.parent().expect("a data directory");
                let name = path.file_name().expect("a file name").to_string_lossy();
                for entry in std::fs::read_dir(dir).expect("data directory readable") {
                    let path = entry.expect("directory entry").path();
                    let file = path.file_name().expect("a file name").to_string_lossy();
                    if file.starts_with(&*name) {
                        stored.push((file.to_string(), std::fs::read(&path).expect("readable")));
                    }
                }
            }
            TestDatabase::Postgres { url, wal_start } => {
                let pool = postgres_pool(url).await;
                sqlx::query("CHECKPOINT")
                    .execute(&pool)
                    .await
                    .expect("checkpoint");
                let (oid, first_segment, last_segment): (String, String, String) = sqlx::query_as(
                    "SELECT (SELECT oid FROM pg_database WHERE datname = current_database())
                                    ::text,
                                pg_walfile_name($1::pg_lsn),
                                pg_walfile_name(pg_current_wal_lsn())",
                )
                .bind(wal_start)
                .fetch_one(&pool)
                .await
                .expect("query");
                let data = cluster().path().join("data");
                let base = data.join("base").join(&oid);
                for entry in std::fs::read_dir(&base).expect("database directory readable") {
                    let path = entry.expect("directory entry").path();
                    let file = path.file_name().expect("a file name").to_string_lossy();
                    stored.push((format!("base/{oid}/{file}"), read_file(&path)));
                }
                let wal = data.join("pg_wal");
                for entry in std::fs::read_dir(&wal).expect("pg_wal readable") {
                    let path = entry.expect("directory entry").path();
                    let file = path.file_name().expect("a file name").to_string_lossy();
                    // Segment names are 24 hex digits that sort in log order.
                    let segment = file.len() == 24 && file.chars().all(|c| c.is_ascii_hexdigit());
                    if segment
                        && first_segment.as_str() <= &*file
                        && &*file <= last_segment.as_str()
                    {
                        stored.push((format!("pg_wal/{file}"), read_file(&path)));
                    }
                }
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                )
                .fetch_all(&pool)
                .await
                .expect("query");
                for (table,) in tables {
                    // The table names come from the catalog, not from a peer.
                    let sql = format!("SELECT to_jsonb(t)::text FROM \"{table}\" AS t");
                    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&pool)
                        .await
                        .expect("query");
                    let text: Vec<String> = rows.into_iter().map(|(row,)| row).collect();
                    stored.push((format!("rows of {table}"), text.join("\n").into_bytes()));
                }
                pool.close().await;
            }
        }
        stored
    }
}

/// A file of the cluster. Tables and indexes grow in the background; a file removed meanwhile
/// (a dropped temporary relation) holds nothing of ours.
fn read_file(path: &Path) -> Vec<u8> {
    match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    }
}

/// The SQLite file, read-only: the server may still have it open.
async fn sqlite_pool(path: &Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("database opens")
}

pub async fn postgres_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("database opens")
}

/// docs/admin-api.md's text.
pub fn admin_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/admin-api.md");
    std::fs::read_to_string(path).expect("docs/admin-api.md exists")
}

/// The first JSON example after `heading` in the admin API document.
pub fn documented_example(heading: &str) -> Value {
    let doc = admin_doc();
    let section = &doc[doc.find(heading).unwrap_or_else(|| panic!("no {heading}"))..];
    let start = section.find("```json\n").expect("a JSON example") + "```json\n".len();
    let end = start + section[start..].find("\n```").expect("its end");
    serde_json::from_str(&section[start..end]).expect("the example is JSON")
}

/// The documented example of `heading`'s object has exactly the fields of `live`, an answer of
/// the running server: the document shows every field there is and none that is not.
pub fn assert_shaped_as_documented(heading: &str, live: &Value) {
    let fields = |value: &Value| -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        fields(&documented_example(heading)),
        fields(live),
        "docs/admin-api.md, {heading}"
    );
}

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: String,
    pub event_id: String,
    pub signature: String,
    pub body: String,
}

/// A webhook receiver on 127.0.0.1 for tests: records each request and answers the statuses
/// it is told (200 when told none).
#[derive(Clone, Default)]
pub struct Inbox {
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    /// The statuses of the next answers (200 when empty).
    answers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl Inbox {
    /// Starts receiving; answers the URL to register.
    pub async fn listen(&self) -> String {
        async fn hook(
            axum::extract::State(inbox): axum::extract::State<Inbox>,
            headers: axum::http::HeaderMap,
            body: String,
        ) -> axum::http::StatusCode {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            inbox.received.lock().unwrap().push(Received {
                kind: header("paird-event"),
                event_id: header("paird-event-id"),
                signature: header("paird-signature"),
                body,
            });
            let status = inbox.answers.lock().unwrap().pop_front().unwrap_or(200);
            axum::http::StatusCode::from_u16(status).unwrap()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/hook")
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn answer_next(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    /// Waits until `count` requests came; answers them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        eventually(&format!("{count} deliveries"), || async {
            let received = self.received();
            (received.len() >= count).then_some(received)
        })
        .await
    }
}

/// Checks a delivery's signature against `secret` with the Python verification example of
/// docs/admin-api.md, and that a changed body does not verify.
pub fn verify_with_documented_example(secret: &str, received: &Received) {
    let doc = admin_doc();
    let start = doc
        .find("```python\n")
        .expect("a Python verification example")
        + "```python\n".len();
    let end = start + doc[start..].find("\n```").expect("its end");
    let example = &doc[start..end];
    let program = format!(
        "import os, sys\n{example}\n\
         ok = verify(os.environ['SECRET'], os.environ['SIGNATURE'], os.environ['BODY'].encode())\n\
         sys.exit(0 if ok else 1)\n"
    );
    let run = |body: &str| {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(&program)
            .env("SECRET", secret)
            .env("SIGNATURE", &received.signature)
            .env("BODY", body)
            .status()
            .expect("python3 runs")
            .success()
    };
    assert!(
        run(&received.body),
        "the documented example rejects {received:?}"
    );
    assert!(
        !run(&format!("{} ", received.body)),
        "a changed body must not verify"
    );
}
