//! `/metrics`: a real scrape passes `promtool check metrics` (the Prometheus project's own
//! linter, Debian package `prometheus`, installed by `scripts/test-deps` on first run), its
//! counters move by what a scenario did, and who may read it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use protocol::{AckOutcome, RefusalReason};
use serde_json::json;

use crate::support::*;

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef";

/// A scrape's samples: `name{labels}` → value, labels as the server wrote them.
#[derive(Debug, Clone)]
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                (series.to_string(), value.parse().expect("a number"))
            })
            .collect();
        Scrape { text, samples }
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} is not in the scrape:\n{}", self.text))
    }

    /// How much `series` moved since `before`.
    fn since(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }
}

/// GET /metrics from `source` (a loopback address of this machine) with an optional token:
/// the status and the body.
async fn scrape_from(
    test: &TestServer,
    source: IpAddr,
    token: Option<&str>,
) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .local_address(source)
        .build()
        .expect("an HTTP client");
    let mut request = client.get(format!("{}/metrics", test.server.admin_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.expect("the admin listener answers");
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    (status, content_type, answer.text().await.expect("a body"))
}

async fn scrape(test: &TestServer) -> Scrape {
    let (status, content_type, body) =
        scrape_from(test, IpAddr::from([127, 0, 0, 1]), Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Scrape::parse(body)
}

/// promtool, installed by `scripts/test-deps` when it is missing (once per test process).
fn promtool() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let installed = || {
                std::process::Command::new("promtool")
                    .arg("--version")
                    .output()
                    .is_ok_and(|output| output.status.success())
            };
            if !installed() {
                let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-deps");
                let status = std::process::Command::new("bash")
                    .arg(&script)
                    .status()
                    .expect("scripts/test-deps runs");
                assert!(status.success(), "scripts/test-deps installs promtool");
            }
            PathBuf::from("promtool")
        })
        .clone()
}

/// Every metric family of a scrape has its row in docs/admin-api.md's table of metrics.
fn every_metric_is_documented(text: &str) {
    let doc = admin_doc();
    let missing: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| !doc.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics without a row in docs/admin-api.md: {missing:?}"
    );
}

/// Runs `promtool check metrics` on an exposition; fails the test with what it said.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads the scrape");
    let output = child.wait_with_output().expect("promtool ends");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the scrape ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_passes_promtool_and_its_counters_follow_a_scenario() {
    let test = TestServer::start_with(|config| {
        // The fourth failure from one address within the window is refused as rate limited.
        config.engine.failures_per_address.max_failures = 3;
    })
    .await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 2).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nrev = 1\n")
        .await;
    let before = scrape(&test).await;
    promtool_check(&before.text);

    // Two devices pair (each is sent its configuration); a third finds no free license.
    let (_, mut first, _) = pair_ok(&test.device_url(), &code).await;
    let (_, mut second, _) = pair_ok(&test.device_url(), &code).await;
    let mut devices = Vec::new();
    for connection in [&mut first, &mut second] {
        let received = next_configuration(connection).await;
        assert_eq!(received.configuration_id.to_string(), config);
        devices.push(received);
    }
    let (_, third, refused) = pair_new(&test.device_url(), &code).await;
    assert_eq!(refusal(&refused), Some(RefusalReason::NoFreeLicense));
    // Unknown codes until the address is rate limited (each on a connection of its own).
    let unknown = "A".repeat(protocol::PairingCode::LEN);
    let mut unknown_codes = 0.0;
    let mut rate_limited = 0.0;
    for _ in 0..5 {
        let (_, _, result) = pair_new(&test.device_url(), &unknown).await;
        match refusal(&result) {
            Some(RefusalReason::UnknownCode) => unknown_codes += 1.0,
            Some(RefusalReason::RateLimited) => rate_limited += 1.0,
            other => panic!("an unknown code answered {other:?}"),
        }
    }
    assert_eq!((unknown_codes, rate_limited), (3.0, 2.0));
    // Both paired devices acknowledge; an edit is pushed to both, and acknowledged too.
    for (connection, received) in [&mut first, &mut second].into_iter().zip(&devices) {
        assert!(acknowledge(connection, received, AckOutcome::Applied).await);
    }
    admin
        .edit_config(&org, &config, "[GLOBAL]\nrev = 2\n")
        .await;
    for connection in [&mut first, &mut second] {
        let received = next_configuration(connection).await;
        assert_eq!(received.revision, 2);
        assert!(acknowledge(connection, &received, AckOutcome::Applied).await);
    }
    // A connection to the wrong path, and one offering no subprotocol of ours.
    let wrong_path = format!("ws://{}/nowhere", test.server.device_addr);
    assert!(tokio_tungstenite::connect_async(wrong_path).await.is_err());
    let no_subprotocol = format!("ws://{}{}", test.server.device_addr, protocol::DEVICE_PATH);
    assert!(
        tokio_tungstenite::connect_async(no_subprotocol)
            .await
            .is_err()
    );
    // A live-feed watcher.
    let _feed = EventFeed::open(admin, &org).await;

    // The refused handshakes are counted once the server has written its refusal: wait for it.
    let after = eventually("the refused handshakes are counted", || async {
        let now = scrape(&test).await;
        let refused = |reason: &str| {
            now.since(
                &before,
                &format!("paird_device_connections_refused_total{{reason=\"{reason}\"}}"),
            )
        };
        (refused("path") == 1.0 && refused("subprotocol") == 1.0).then_some(now)
    })
    .await;
    promtool_check(&after.text);
    every_metric_is_documented(&after.text);
    let moved = |series: &str| after.since(&before, series);
    assert_eq!(moved("paird_pairings_total{outcome=\"paired\"}"), 2.0);
    assert_eq!(moved("paird_pairings_total{outcome=\"repaired\"}"), 0.0);
    assert_eq!(moved("paird_pairings_total{outcome=\"refused\"}"), 6.0);
    let refusals = |reason: &str| {
        moved(&format!(
            "paird_pairing_refusals_total{{reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(refusals("no_free_license"), 1.0);
    assert_eq!(refusals("unknown_code"), unknown_codes);
    assert_eq!(refusals("rate_limited"), rate_limited);
    assert_eq!(refusals("code_revoked"), 0.0);
    assert_eq!(moved("paird_rate_limited_total"), rate_limited);
    assert_eq!(moved("paird_acknowledgements_total"), 4.0);
    assert_eq!(moved("paird_configuration_pushes_total"), 4.0);
    // 3 pairings + 3 unknown codes + 2 rate limited + 2 handshakes refused, at least (the
    // feed's and the scrapes' connections are the admin listener's, not counted here).
    assert_eq!(moved("paird_device_connections_accepted_total"), 10.0);
    assert_eq!(moved("paird_device_unproven_evicted_total"), 0.0);
    // The admin listener counts its own connections (the scrapes' and the admin calls').
    assert!(moved("paird_admin_connections_accepted_total") >= 1.0);
    assert!(after.get("paird_admin_connections_open") >= 1.0);
    assert_eq!(moved("paird_admin_connections_refused_total"), 0.0);
    // Batches: the histograms count each committed batch once, and its requests.
    let batches = moved("paird_batches_total");
    assert!(batches >= 1.0);
    assert_eq!(moved("paird_batch_size_requests_count"), batches);
    assert_eq!(moved("paird_batch_commit_duration_seconds_count"), batches);
    assert_eq!(
        moved("paird_batch_size_requests_bucket{le=\"+Inf\"}"),
        batches
    );
    assert!(moved("paird_batch_commit_duration_seconds_sum") > 0.0);
    // Three pairings (one refused by its batch) and four acknowledgements, at least: the
    // third device's and the refused ones' disconnections join batches too.
    assert!(moved("paird_batch_size_requests_sum") >= 7.0);
    // Everything was answered: nothing waits for an organization's actor.
    assert_eq!(after.get("paird_queued_requests"), 0.0);
    assert!(
        !after.text.contains("paird_organization_queued_requests{"),
        "only queues holding requests are named"
    );
    assert_eq!(after.get("paird_live_feed_watchers"), 1.0);
    assert_eq!(
        after.get("paird_live_feed_organizations{where=\"here\"}"),
        1.0
    );
    assert_eq!(after.get("paird_devices_connected"), 2.0);
    assert!(after.get("paird_process_resident_memory_bytes") > 1_000_000.0);
    assert!(after.get("paird_process_open_fds") > 0.0);
    assert!(after.get("paird_process_max_fds") >= after.get("paird_process_open_fds"));
    match &test.database {
        TestDatabase::Postgres { .. } => {
            assert!(after.get("paird_database_connections_open{pool=\"main\"}") >= 1.0);
            assert_eq!(
                after.get("paird_database_connections_max{pool=\"main\"}"),
                f64::from(test_config(test.dir.path()).database_pool_size)
            );
        }
        TestDatabase::Sqlite { .. } => {
            assert_eq!(
                after.get("paird_database_connections_max{pool=\"writer\"}"),
                1.0
            );
            assert_eq!(
                after.get("paird_database_connections_open{pool=\"writer\"}"),
                1.0
            );
            assert!(after.get("paird_database_connections_open{pool=\"readers\"}") >= 1.0);
        }
    }
    // The open-connection gauge falls back when devices leave.
    drop((first, second, third));
    eventually("closed connections leave the gauge", || async {
        let now = scrape(&test).await;
        (now.get("paird_device_connections_open") == 0.0).then_some(())
    })
    .await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_token_the_operator_and_allowed_addresses_read_the_metrics_no_one_else() {
    let test = TestServer::start_with(|config| {
        config.metrics.token = Some(METRICS_TOKEN.into());
        config.metrics.allow = server::metrics::parse_allow_list("127.0.0.2/32").unwrap();
    })
    .await;
    let org = test.admin.create_org("Acme").await;
    let key = test.admin.create_key(&org, "portal").await;
    let org_key = key["key"].as_str().unwrap();
    let here = IpAddr::from([127, 0, 0, 1]);
    let allowed = IpAddr::from([127, 0, 0, 2]);
    let status = |(status, _, _): (u16, Option<String>, String)| status;

    assert_eq!(status(scrape_from(&test, here, None).await), 401);
    assert_eq!(
        status(scrape_from(&test, here, Some("not-a-token")).await),
        401
    );
    assert_eq!(status(scrape_from(&test, here, Some(org_key)).await), 403);
    assert_eq!(
        status(scrape_from(&test, here, Some(METRICS_TOKEN)).await),
        200
    );
    assert_eq!(
        status(scrape_from(&test, here, Some(OPERATOR_TOKEN)).await),
        200
    );
    // From an allowed address, no token is needed.
    let (code, _, body) = scrape_from(&test, allowed, None).await;
    assert_eq!(code, 200);
    promtool_check(&body);
    // The metrics token reads the metrics and nothing else.
    let (code, _) = test
        .admin
        .with_token(METRICS_TOKEN)
        .call(reqwest::Method::GET, "/v1/status", None)
        .await;
    assert_eq!(code, 401);
    // A 401 is the documented error object.
    let answer = reqwest::get(format!("{}/metrics", test.server.admin_url()))
        .await
        .unwrap();
    assert_eq!(answer.headers()["www-authenticate"], "Bearer");
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], json!("unauthorized"));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_metrics_token_or_allow_list_only_the_operator_reads_the_metrics() {
    let test = TestServer::start().await;
    let here = IpAddr::from([127, 0, 0, 1]);
    let elsewhere = IpAddr::from([127, 0, 0, 2]);
    assert_eq!(scrape_from(&test, here, None).await.0, 401);
    assert_eq!(scrape_from(&test, elsewhere, None).await.0, 401);
    assert_eq!(scrape_from(&test, here, Some(METRICS_TOKEN)).await.0, 401);
    assert_eq!(scrape_from(&test, here, Some(OPERATOR_TOKEN)).await.0, 200);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_metrics_token_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.metrics.token = Some("short".into());
    let error = server::start(config).await.expect_err("the start fails");
    assert!(
        error
            .to_string()
            .contains("the metrics token must be at least 24 characters"),
        "{error:#}"
    );
}

/// A write lock taken on the server's database from outside it: the organization's next batch
/// waits for it, and its requests wait in the organization's queue meanwhile.
enum HeldLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl HeldLock {
    async fn take(database: &TestDatabase) -> HeldLock {
        use sqlx::Connection as _;
        match database {
            TestDatabase::Sqlite { path } => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut connection = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                // The write lock: the server's writer waits at its own BEGIN IMMEDIATE.
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut connection)
                    .await
                    .unwrap();
                HeldLock::Sqlite(connection)
            }
            TestDatabase::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
                sqlx::query("LOCK TABLE licenses IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut connection)
                    .await
                    .unwrap();
                HeldLock::Postgres(connection)
            }
        }
    }

    async fn release(self) {
        match self {
            HeldLock::Sqlite(mut connection) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            HeldLock::Postgres(mut connection) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_its_organization_is_in_the_queue_gauges_until_answered() {
    let test = TestServer::start().await;
    let (org, code) = test.admin.org_with_code("Acme", 1).await;
    let (_, idle_code) = test.admin.org_with_code("Idle", 1).await;
    // The idle organization's actor runs too (a pairing started it), with nothing waiting.
    pair_ok(&test.device_url(), &idle_code).await;

    let lock = HeldLock::take(&test.database).await;
    let url = test.device_url();
    let pairing = tokio::spawn(async move { pair_new(&url, &code).await });
    let busy = format!("paird_organization_queued_requests{{organization=\"{org}\"}}");
    let held = eventually("the pairing waits in its organization's queue", || async {
        let now = scrape(&test).await;
        now.samples.contains_key(&busy).then_some(now)
    })
    .await;
    assert_eq!(held.get(&busy), 1.0);
    assert_eq!(held.get("paird_queued_requests"), 1.0);
    let named = held
        .samples
        .keys()
        .filter(|series| series.starts_with("paird_organization_queued_requests{"))
        .count();
    assert_eq!(named, 1, "only a queue holding a request is named");

    lock.release().await;
    let (_, _connection, result) = pairing.await.unwrap();
    assert_eq!(refusal(&result), None, "paired once the lock went");
    let after = scrape(&test).await;
    assert_eq!(after.get("paird_queued_requests"), 0.0);
    assert!(!after.samples.contains_key(&busy));
    test.stop().await;
}

/// The command line's flags and environment: `paird serve` with `--metrics-allow` and
/// `PAIRD_METRICS_TOKEN` serves the allowed address and the token; a bad range stops the start
/// with the flag's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paird_serve_takes_the_allow_list_and_the_token_from_its_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    let mut command = serve_command(dir.path());
    command
        .args(database.serve_args())
        .args(["--metrics-allow", "127.0.0.2, 10.0.0.0/8"])
        .env("PAIRD_METRICS_TOKEN", METRICS_TOKEN)
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn");
    let mut child = command.spawn().expect("paird starts");
    let started = wait_until_ready(&mut child).await.expect("paird is ready");
    let metrics = format!("{}/metrics", started.ready.admin_url);
    let get = |source: [u8; 4], token: Option<&'static str>| {
        let metrics = metrics.clone();
        async move {
            let client = reqwest::Client::builder()
                .local_address(IpAddr::from(source))
                .build()
                .unwrap();
            let mut request = client.get(metrics);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(get([127, 0, 0, 2], None).await, 200);
    assert_eq!(get([127, 0, 0, 1], None).await, 401);
    assert_eq!(get([127, 0, 0, 1], Some(METRICS_TOKEN)).await, 200);
    child.kill().await.unwrap();

    let mut command = serve_command(dir.path());
    command
        .args(database.serve_args())
        .args(["--metrics-allow", "10.0.0.0/33"])
        .stderr(std::process::Stdio::piped());
    let output = command.output().await.unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--metrics-allow") && said.contains("not an address or a CIDR range"),
        "{said}"
    );
}
