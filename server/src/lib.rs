//! paird's server: the glue between the network and the engine.
//!
//! - [`start`] opens the database, starts the engine, and serves the device WebSocket endpoint
//!   and the admin HTTP API on their own listeners; [`RunningServer`] stops them gracefully.
//! - `device`: the device endpoint (tokio-tungstenite, one task per connection).
//! - `admin`: the admin API (axum).
//! - `portal`: the Customer Portal's pages, served with the admin API under `/portal/`.
//! - [`qr`]: QR rendering. [`config`]: what the server can be told. `demo`: demo data.
//!   [`backup`]: `paird backup`, an online copy of the SQLite database.
//! - [`metrics`]: who may read the Prometheus metrics, and their exposition.
//! - `fuzzing` (the `fuzzing` feature and tests only): entry points for the fuzz targets.
//!
//! No pairing rule lives here: every decision is the engine's.

mod address_slots;
mod admin;
pub mod backup;
pub mod config;
mod demo;
mod device;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod portal;
mod proxy;
pub mod qr;
mod tls;
mod webhooks;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::secrets::ServerKey;
use engine::{Clock, Engine, ManualClock, SystemClock};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub use admin::listener::AdminListenerStats;
pub use config::{AdminLimits, DeviceSettings, IpRange, ServerConfig, TlsFiles, TrustedProxies};
pub use demo::{DEMO_KEY_FILE, DemoKey, DemoSeed, seed_demo};
pub use device::EndpointStats;

/// The sample configuration offered to admins as a template (not sent to devices).
pub const SAMPLE_CONFIGURATION: &str = include_str!("sample_configuration.ini");

/// The listen backlog: pending connections wait here while the server is busy (somaxconn on
/// this machine is 4096).
const LISTEN_BACKLOG: u32 = 4096;

/// A started server. Its `Debug` leaves out the new operator token.
pub struct RunningServer {
    pub device_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub engine: Engine,
    /// A newly created operator token, when this start created one (show it once).
    pub new_operator_token: Option<String>,
    /// Both listeners speak TLS.
    tls: bool,
    manual_clock: Option<Arc<ManualClock>>,
    public: admin::PublicAddress,
    endpoint: Arc<device::DeviceEndpoint>,
    admin_stats: Arc<admin::listener::AdminListenerStats>,
    stop: watch::Sender<bool>,
    /// True from the start of a graceful shutdown (`/readyz` answers 503).
    draining: Arc<AtomicBool>,
    drain_grace: Duration,
    tracker: TaskTracker,
    /// The admin API runs on a runtime thread of its own, so that its answers do not queue
    /// behind the device connections' tasks (an edit pushed to 16,000 devices of this node used
    /// to be answered only after all of them had run). Stopped after the engine, because
    /// database connections opened by admin requests are driven by its runtime.
    admin_thread: engine::RuntimeThread,
    admin_task: JoinHandle<()>,
    device_task: JoinHandle<()>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("device_addr", &self.device_addr)
            .field("admin_addr", &self.admin_addr)
            .field(
                "new_operator_token",
                &self.new_operator_token.as_ref().map(|_| "<set>"),
            )
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The manual clock, when started with test hooks.
    pub fn manual_clock(&self) -> Option<&Arc<ManualClock>> {
        self.manual_clock.as_ref()
    }

    pub fn device_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.device_addr, protocol::DEVICE_PATH)
    }

    pub fn admin_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.admin_addr)
    }

    /// The Customer Portal, served by the admin listener.
    pub fn portal_url(&self) -> String {
        format!("{}/portal/", self.admin_url())
    }

    /// The QR payload URI of a pairing code, with this server's public device address.
    pub fn payload_uri(&self, code: &str) -> anyhow::Result<String> {
        self.public
            .payload(code)
            .map_err(|_| anyhow::anyhow!("not a pairing code"))
    }

    pub fn endpoint_stats(&self) -> &EndpointStats {
        &self.endpoint.stats
    }

    /// The admin listener's counters.
    pub fn admin_listener_stats(&self) -> &AdminListenerStats {
        &self.admin_stats
    }

    /// Says "draining" from now on: `/readyz` answers 503, while everything else is served as
    /// before, so that a load balancer sends new connections elsewhere.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Stops accepting, closes every device connection with "going away" (1001), finishes the
    /// admin requests in flight, then stops the engine.
    pub async fn shutdown(self) {
        self.drain();
        let _ = self.stop.send(true);
        let _ = self.device_task.await;
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some device connections did not close in time");
        }
        let _ = self.admin_task.await;
        self.engine.shutdown().await;
        self.admin_thread.stop();
    }

    /// Runs until `signal` completes, then drains for the configured grace and shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.drain();
        if !self.drain_grace.is_zero() {
            tracing::info!(grace = ?self.drain_grace, "draining: /readyz answers 503");
            tokio::time::sleep(self.drain_grace).await;
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Opens the database, starts the engine and both listeners.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    config
        .metrics
        .validate()
        .map_err(|error| anyhow::anyhow!("--metrics-token: {error}"))?;
    let open_files = raise_open_file_limit();
    let (ceiling, admin_connections) = open_file_budget(&config, open_files);
    tracing::info!(
        open_file_limit = open_files,
        device_connection_ceiling = ceiling,
        admin_connection_ceiling = admin_connections,
        "each connection takes one open file"
    );
    // Listen first: an address in use fails the start before the database is opened.
    let device_listener = listen(config.device_listen, config.reuse_port)
        .with_context(|| format!("cannot listen for devices on {}", config.device_listen))?;
    let admin_listener = listen(config.admin_listen, false)
        .with_context(|| format!("cannot listen for the admin API on {}", config.admin_listen))?;
    let tls = config.tls.as_ref().map(tls::ServerTls::load).transpose()?;
    create_private_dir(&config.data_dir)?;
    let (key, new_key_file) = load_or_create_server_key(&config)?;
    // Checked before the database is opened: a new key is recorded in the database before its
    // file is written, so finding out only then would leave a database whose key is nowhere.
    if config.database_url.is_none() || new_key_file.is_some() {
        ensure_writable_dir(&config.data_dir)?;
    }
    if config.database_url.is_none() {
        create_private_file(&config.data_dir.join("paird.db"))?;
    }
    let url = store::DatabaseUrl::parse(&config.database_url()).map_err(anyhow::Error::msg)?;
    let store = store::open(
        &url,
        store::OpenOptions {
            durability: config.durability,
            pg_pool_size: config.database_pool_size,
        },
    )
    .await
    .context("cannot open the database")?;
    let manual_clock = config.test_hooks.then(ManualClock::starting_now);
    let clock: Arc<dyn Clock> = match &manual_clock {
        Some(clock) => Arc::clone(clock) as Arc<dyn Clock>,
        None => Arc::new(SystemClock),
    };
    let engine = Engine::start(store, clock, &key, config.engine.clone()).await?;
    // A new key is kept only once the database has recorded it (a database made with another
    // key refuses to start above, and leaves no key file behind to be mistaken for its own).
    if let Some(path) = new_key_file {
        write_secret_file(&path, &key.to_hex())?;
        tracing::info!(path = %path.display(), "created a new server key; back it up with the database");
    }
    let new_operator_token = engine
        .ensure_operator_token(config.operator_token.as_deref())
        .await
        .map_err(|error| anyhow::anyhow!("operator token: {error}"))?;
    if let Some(token) = &new_operator_token {
        write_secret_file(&config.data_dir.join("operator-token"), token)?;
    }

    let device_addr = device_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let endpoint = Arc::new(device::DeviceEndpoint {
        engine: engine.clone(),
        settings: config.device.clone(),
        stats: EndpointStats::default(),
        unproven: address_slots::AddressSlots::new(config.device.max_unproven_per_address),
        waiting: address_slots::AddressSlots::new(config.device.max_waiting_per_address),
        tls: tls.clone(),
        trusted: config.trusted_proxies.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    let tracker = TaskTracker::new();
    let device_task = tokio::spawn(device::serve(
        device_listener,
        Arc::clone(&endpoint),
        Arc::new(tokio::sync::Semaphore::new(ceiling.max(1))),
        stopped.clone(),
        tracker.clone(),
    ));

    tracker.spawn(webhooks::deliver(engine.clone(), stopped.clone()));

    let public = public_address(&config, device_addr)?;
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(stopped.clone()));
    }
    let admin_stats = Arc::new(admin::listener::AdminListenerStats::default());
    let state = admin::AppState {
        engine: engine.clone(),
        public: public.clone(),
        endpoint: Arc::clone(&endpoint),
        manual_clock: manual_clock.clone(),
        started: Instant::now(),
        stopped: stopped.clone(),
        draining: Arc::clone(&draining),
        metrics: Arc::new(config.metrics.clone()),
        admin_listener: Arc::clone(&admin_stats),
        main_runtime: tokio::runtime::Handle::current(),
    };
    let router = admin::router(state, config.test_hooks)
        .merge(portal::router())
        .layer(axum::middleware::from_fn(admin::request_id::layer));
    let admin_thread = engine::RuntimeThread::start("paird-admin")?;
    // Moved to the admin runtime: a listener is driven by the runtime it is registered with.
    let admin_listener = {
        let _admin_runtime = admin_thread.handle().enter();
        TcpListener::from_std(admin_listener.into_std()?)?
    };
    let admin_task = admin_thread.handle().spawn(admin::listener::serve(
        admin_listener,
        router,
        AdminLimits {
            max_connections: admin_connections,
            ..config.admin.clone()
        },
        Arc::clone(&admin_stats),
        tls,
        config.trusted_proxies.clone(),
        stopped,
    ));
    tracing::info!(%device_addr, %admin_addr, database = %config.database_url_shown(), "paird started");
    Ok(RunningServer {
        device_addr,
        admin_addr,
        engine,
        new_operator_token,
        tls: config.tls.is_some(),
        manual_clock,
        public,
        endpoint,
        admin_stats,
        stop,
        draining,
        drain_grace: config.drain_grace,
        tracker,
        admin_thread,
        admin_task,
        device_task,
    })
}

fn listen(address: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft open-file limit to the hard limit and returns the limit in force.
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Open files kept for the database connections (the pool, the change listener, SQLite's
/// files), log and data files, besides the pool itself and the admin listener's budget.
const RESERVED_OPEN_FILES: u64 = 100;

/// How the open files are shared: (device connections, admin connections) this node accepts at
/// once. The admin side's budget comes out of the reserve, so that admin connections can never
/// take the descriptors devices or the database need (20,200 idle admin connections once left
/// the device endpoint unable to accept). Without a device ceiling, devices arriving faster than
/// they leave took every descriptor, and the node could no longer open a database connection
/// (its pairings were refused `unavailable` while its devices stayed connected). A small limit
/// (a test's `ulimit -n 128`) keeps at least three quarters for devices.
fn open_file_budget(config: &ServerConfig, open_files: u64) -> (usize, usize) {
    let admin = (config.admin.max_connections as u64)
        .min(open_files / 8)
        .max(1);
    let devices = config.device.max_connections.unwrap_or_else(|| {
        let reserve = (RESERVED_OPEN_FILES + u64::from(config.database_pool_size))
            .min(open_files / 8)
            + admin;
        usize::try_from(open_files.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
    });
    (devices, usize::try_from(admin).unwrap_or(usize::MAX))
}

fn public_address(
    config: &ServerConfig,
    device_addr: SocketAddr,
) -> anyhow::Result<admin::PublicAddress> {
    let (host, port) = match &config.public_address {
        Some(text) => {
            let parsed = protocol::PairingPayload::parse(&format!(
                "paird://{text}/{}",
                "A".repeat(protocol::PairingCode::LEN)
            ))
            .map_err(|error| anyhow::anyhow!("--public-address {text:?}: {error}"))?;
            (parsed.host, parsed.port)
        }
        None => {
            let ip = if device_addr.ip().is_unspecified() {
                tracing::warn!(
                    "the device endpoint listens on all addresses; set --public-address so that \
                     QR codes carry an address devices can reach"
                );
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                device_addr.ip()
            };
            (ip.to_string(), Some(device_addr.port()))
        }
    };
    Ok(admin::PublicAddress {
        tls: config.public_tls || config.tls.is_some(),
        host,
        port,
    })
}

/// The server key: from the configuration (environment), else the key file in the data
/// directory, created on first start.
/// The server key: from `PAIRD_SERVER_KEY`, from `<data_dir>/server.key`, or a new one, with
/// the file it is to be kept in once the database has recorded it.
fn load_or_create_server_key(
    config: &ServerConfig,
) -> anyhow::Result<(ServerKey, Option<std::path::PathBuf>)> {
    if let Some(hex) = &config.server_key {
        let key = ServerKey::from_hex(hex)
            .map_err(|error| anyhow::anyhow!("PAIRD_SERVER_KEY: {error}"))?;
        return Ok((key, None));
    }
    let path = config.data_dir.join("server.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = ServerKey::from_hex(&text)
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            Ok((key, None))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok((ServerKey::generate(), Some(path)))
        }
        Err(error) => Err(anyhow::anyhow!("cannot read {}: {error}", path.display())),
    }
}

/// The data directory, created readable by the owner only (0700) when it does not exist.
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))
}

/// Fails with a clear error when nothing can be created in `dir` (a read-only mount, say): paird
/// keeps its SQLite database there, with the journal files SQLite creates beside it, and writes
/// the server key there on a first start. Without this check a read-only directory holding a
/// database surfaced as SQLite's bare "unable to open database file".
fn ensure_writable_dir(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(format!(".paird-write-check-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) => Err(anyhow::anyhow!(
            "cannot write in the data directory {}: {error}; paird keeps its SQLite database \
             there (unless --database names another) and writes its server key there on a \
             first start (unless PAIRD_SERVER_KEY is set)",
            dir.display()
        )),
    }
}

/// An empty file readable by the owner only (0600), unless it exists: the SQLite database, whose
/// journal files SQLite then creates with the same mode.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(anyhow::anyhow!("cannot create {}: {error}", path.display())),
    }
}

/// Writes a secret to a file readable by the owner only, atomically: a temporary file beside
/// it, written and synced, renamed over it, and the directory synced, so that a crash leaves
/// the old file or the new one, never a part.
pub(crate) fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(directory) = path.parent()
        && let Ok(directory) = std::fs::File::open(directory)
    {
        directory.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_budget_comes_out_of_the_reserve_not_the_devices_share() {
        let config = ServerConfig::new("unused");
        // This machine's limit: the reserve (100 + a pool of 16) and the admin budget (256).
        assert_eq!(open_file_budget(&config, 20_000), (20_000 - 116 - 256, 256));
        // A small limit keeps three quarters for devices; the admin side gets an eighth.
        let (devices, admin) = open_file_budget(&config, 128);
        assert_eq!(admin, 16);
        assert_eq!(devices, 128 - 16 - 16);
        // A configured device ceiling is taken as it is.
        let mut capped = ServerConfig::new("unused");
        capped.device.max_connections = Some(500);
        capped.admin.max_connections = 10;
        assert_eq!(open_file_budget(&capped, 20_000), (500, 10));
    }
}
