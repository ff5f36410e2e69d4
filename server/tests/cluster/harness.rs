//! Three real `paird serve` processes on one PostgreSQL database, and what the tests need around
//! them: the throwaway PostgreSQL cluster they share, SQL on the test's database, a gate that
//! holds a device's connection until the test lets it through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::support::{Admin, OPERATOR_TOKEN, WAIT, serve_command, wait_until_ready};

/// The server key every node of a test is given: the nodes of one cluster must share it (it
/// seals reusable codes and idempotent replies, and each database remembers which key it met
/// first). Each test has a database of its own, so one constant serves them all.
const SERVER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The PostgreSQL cluster shared by every test of this binary (each test creates a database of
/// its own on it). Started on first use; never dropped: pgtemp's watchdog stops it when the test
/// process ends.
static POSTGRES: OnceLock<pgtemp::Cluster> = OnceLock::new();

pub fn shared_postgres() -> &'static pgtemp::Cluster {
    POSTGRES.get_or_init(|| {
        pgtemp::Cluster::start_with(pgtemp::ClusterOptions {
            fsync: false,
            // Three nodes per test, each with a pool of up to 16 connections and a listener,
            // with the tests of this binary running two or more at a time.
            max_connections: 400,
            ..pgtemp::ClusterOptions::default()
        })
        .unwrap_or_else(|error| panic!("cannot start the throwaway PostgreSQL cluster: {error}"))
    })
}

/// A new, empty database on the shared cluster; returns its URL.
pub async fn new_database() -> String {
    tokio::task::spawn_blocking(|| shared_postgres().create_database())
        .await
        .expect("createdb task")
        .unwrap_or_else(|error| panic!("cannot create a database: {error}"))
}

/// A small pool on a test's database, to check what PostgreSQL holds.
pub async fn sql(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(WAIT)
        .connect(url)
        .await
        .expect("the test connects to its database")
}

/// One `paird serve` process.
pub struct Node {
    pub name: &'static str,
    pub child: Child,
    /// `ws://127.0.0.1:PORT/device`
    pub device_url: String,
    pub device_addr: SocketAddr,
    pub admin: Admin,
    /// The process's standard error (its log), kept for the failure report.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts `paird serve` on `database`, with test hooks (a manual clock), no failure limits
    /// that a burst of valid pairings could meet, and `extra` arguments.
    pub async fn spawn(name: &'static str, database: &str, extra: &[&str]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("paird-node-{name}-"))
            .tempdir()
            .expect("temporary directory");
        let log = dir.path().join("stderr.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = serve_command(dir.path());
        command
            .args(["--database", database])
            .args([
                "--failures-per-code",
                "0",
                "--sweep-interval",
                "200ms",
                "--test-hooks",
            ])
            .args(extra)
            .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("PAIRD_SERVER_KEY", SERVER_KEY)
            .env_remove("PAIRD_DATABASE_URL")
            // The log goes to a file and is printed with a failure: no colour codes.
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("PAIRD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stderr(Stdio::from(log_file));
        let mut child = command.spawn().expect("paird starts");
        let ready = match wait_until_ready(&mut child).await {
            Ok(started) => started.ready,
            Err(error) => {
                let _ = child.start_kill();
                panic!(
                    "node {name} did not start ({error}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Node {
            name,
            child,
            device_addr: ready.device_address,
            admin: Admin::new(&ready.admin_url, OPERATOR_TOKEN),
            device_url: ready.device_url,
            log,
            _dir: dir,
        }
    }

    /// Kills the process with SIGKILL (no shutdown, no goodbye to its devices) and reaps it.
    pub async fn sigkill(&mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the killed node exits")
            .expect("wait");
    }

    /// Whether the process is still running (it neither crashed nor exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Three nodes, `a`, `b` and `c`, on one database. When a test fails, the nodes' logs are
/// printed with its output.
pub struct ThreeNodes {
    pub a: Node,
    pub b: Node,
    pub c: Node,
    /// The URL of the test's database.
    pub database: String,
}

impl ThreeNodes {
    /// Three nodes on a new database of the shared cluster.
    pub async fn start() -> ThreeNodes {
        Self::start_with(&[]).await
    }

    /// Three nodes on a new database of the shared cluster, with `extra` arguments.
    pub async fn start_with(extra: &[&str]) -> ThreeNodes {
        let database = new_database().await;
        Self::start_on(database, extra).await
    }

    /// Three nodes on `database`. The first one starts alone (it applies the migrations and
    /// records the server key's check value), the other two together.
    pub async fn start_on(database: String, extra: &[&str]) -> ThreeNodes {
        let a = Node::spawn("a", &database, extra).await;
        let (b, c) = tokio::join!(
            Node::spawn("b", &database, extra),
            Node::spawn("c", &database, extra)
        );
        ThreeNodes { a, b, c, database }
    }

    /// Node 0, 1 or 2 (`a`, `b`, `c`), for spreading devices over the three.
    pub fn node(&self, index: usize) -> &Node {
        match index % 3 {
            0 => &self.a,
            1 => &self.b,
            _ => &self.c,
        }
    }
}

impl Drop for ThreeNodes {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for node in [&self.a, &self.b, &self.c] {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "---- node {} ({}) log, last {} lines ----\n{}",
                node.name,
                node.device_url,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Active pairings of an organization as PostgreSQL holds them: device id → license id.
pub async fn active_devices(pool: &PgPool, org: &str) -> HashMap<Uuid, Uuid> {
    let org: Uuid = org.parse().expect("organization id");
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, license_id FROM devices WHERE org_id = $1 AND ended_at IS NULL")
            .bind(org)
            .fetch_all(pool)
            .await
            .expect("devices query");
    rows.into_iter().collect()
}

/// Assigned licenses of an organization: license id → device id.
pub async fn assigned_licenses(pool: &PgPool, org: &str) -> HashMap<Uuid, Uuid> {
    let org: Uuid = org.parse().expect("organization id");
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, device_id FROM licenses WHERE org_id = $1 AND device_id IS NOT NULL",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("licenses query");
    rows.into_iter().collect()
}

/// Checks that the licenses and devices tables agree on who holds what: every assigned license
/// is held by an active device that names it, and the other way round. Returns the pairings
/// (device id → license id).
pub async fn consistent_pairings(pool: &PgPool, org: &str) -> HashMap<Uuid, Uuid> {
    let devices = active_devices(pool, org).await;
    let licenses = assigned_licenses(pool, org).await;
    assert_eq!(
        devices.len(),
        licenses.len(),
        "as many assigned licenses as active devices"
    );
    for (device, license) in &devices {
        assert_eq!(
            licenses.get(license),
            Some(device),
            "device {device} names license {license}, which is not assigned to it"
        );
    }
    devices
}

/// A loopback TCP gate in front of a node's device endpoint: it accepts connections at once
/// (so the client's connect succeeds and its WebSocket handshake waits) but forwards them to the
/// node only once opened. A test uses it to make "the device is away, trying to reconnect" a
/// state it can observe and hold instead of a timing.
pub struct Gate {
    /// `ws://127.0.0.1:PORT/device`, through the gate.
    pub url: String,
    open: watch::Sender<bool>,
    attempts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Gate {
    pub async fn to(target: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("gate binds");
        let url = format!(
            "ws://{}{}",
            listener.local_addr().expect("gate address"),
            protocol::DEVICE_PATH
        );
        let (open, opened) = watch::channel(false);
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut opened = opened.clone();
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate {
            url,
            open,
            attempts,
            task,
        }
    }

    /// Lets waiting and future connections through.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }

    /// Connections accepted so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` until it returns `Some` or `limit` passes; `None` on time-out. For the waits
/// whose bound is not the suite's [`WAIT`].
pub async fn poll_for<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
