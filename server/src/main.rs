//! The `paird` command: the server, a command-line device, and operator tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use client::ConnectOptions;
use client::device::DeviceEvent;
use client::ready_line::{ReadyLine, ReadyMarker};
use engine::EngineSettings;
use engine::limiter::FailureLimit;
use protocol::{DeviceInfo, Encoding};
use server::{AdminLimits, DeviceSettings, IpRange, ServerConfig, TrustedProxies};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "paird",
    version,
    about = "Pairs fleets of mobile devices with organizations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines (standard error) are written: `text` for people, `json` (one object a
    /// line, with the span's fields such as an admin request's `request_id`) for collectors.
    #[arg(
        long,
        global = true,
        env = "PAIRD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// Once it serves, it prints a banner for humans and then one line of JSON for programs
    /// that start it: {"paird":"ready","version":…,"device_url":…,"admin_url":…,
    /// "portal_url":…,"device_address":…,"admin_address":…,"database":…,
    /// "new_operator_token":…} (see README.md, "The ready line").
    Serve(Box<ServeArgs>),
    /// Act as a device: pair from a QR payload, then stay connected and print configurations.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Create an additional operator token (the existing ones keep working) and print it.
    OperatorToken {
        /// Data directory of the server.
        #[arg(long, env = "PAIRD_DATA_DIR", default_value = "paird-data")]
        data_dir: PathBuf,
        /// Database URL (default: sqlite://<data-dir>/paird.db).
        #[arg(long, env = "PAIRD_DATABASE_URL")]
        database: Option<String>,
    },
    /// Copy the SQLite database to a new file while the server runs (a consistent snapshot;
    /// never overwrites a file). Keep the server key with the copy. For PostgreSQL use pg_dump.
    Backup {
        /// The new file to write (0600); it must not exist.
        path: PathBuf,
        /// Data directory of the server.
        #[arg(long, env = "PAIRD_DATA_DIR", default_value = "paird-data")]
        data_dir: PathBuf,
        /// Database URL (default: sqlite://<data-dir>/paird.db).
        #[arg(long, env = "PAIRD_DATABASE_URL")]
        database: Option<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Where the SQLite database, the server key and the first operator token live.
    #[arg(long, env = "PAIRD_DATA_DIR", default_value = "paird-data")]
    data_dir: PathBuf,
    /// Database URL (default: sqlite://<data-dir>/paird.db).
    #[arg(long, env = "PAIRD_DATABASE_URL")]
    database: Option<String>,
    /// `full` (default): a crash of the process or of the machine never loses an acknowledged
    /// pairing. `normal`: faster; a power loss or kernel crash may lose the last pairings
    /// (a process crash still loses nothing).
    #[arg(long, env = "PAIRD_DURABILITY", default_value = "full")]
    durability: store::Durability,
    /// PostgreSQL only: connections in the node's pool, shared by reads and write transactions
    /// (the change listener has one more of its own). Every node holds this many, so the
    /// database's max_connections must cover nodes × (pool size + 1) plus room for tools.
    #[arg(long, env = "PAIRD_DATABASE_POOL_SIZE", default_value_t = 16)]
    database_pool_size: u32,
    /// Address of the device WebSocket endpoint.
    #[arg(long, env = "PAIRD_DEVICE_LISTEN", default_value = "127.0.0.1:7878")]
    device_listen: SocketAddr,
    /// Share the device address with other paird processes (SO_REUSEPORT): the kernel spreads
    /// new connections over every process listening with this flag.
    #[arg(long, env = "PAIRD_REUSE_PORT")]
    reuse_port: bool,
    /// Most device connections open at once (default: the open-file limit minus a reserve for
    /// the database pool, the admin API and files). At the ceiling the node stops accepting
    /// until a connection closes.
    #[arg(long, env = "PAIRD_MAX_DEVICE_CONNECTIONS")]
    max_device_connections: Option<usize>,
    /// Address of the admin HTTP API.
    #[arg(long, env = "PAIRD_ADMIN_LISTEN", default_value = "127.0.0.1:7879")]
    admin_listen: SocketAddr,
    /// host[:port] devices use to reach the device endpoint, written into QR codes
    /// (default: the device listen address).
    #[arg(long, env = "PAIRD_PUBLIC_ADDRESS")]
    public_address: Option<String>,
    /// Devices reach the server over TLS (wss://, terminated by a proxy in front of paird).
    /// Implied by --tls-cert.
    #[arg(long, env = "PAIRD_PUBLIC_TLS")]
    public_tls: bool,
    /// Serve both listeners over TLS with this certificate chain (PEM, leaf first). Read again
    /// on SIGHUP and when the file changes.
    #[arg(long, env = "PAIRD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PAIRD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A proxy in front of paird (an address or CIDR range; repeat, or separate with commas):
    /// from it only, the client's address is taken from a PROXY protocol header (device
    /// listener) or from Forwarded / X-Forwarded-For (both listeners).
    #[arg(long = "trusted-proxy", env = "PAIRD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_ip_range)]
    trusted_proxies: Vec<IpRange>,
    /// Seed a demo organization with licenses, a configuration, a reusable code and a key, and
    /// print the code's QR, the portal's address and the key to sign in with (kept in
    /// <data-dir>/demo-key, owner-only, so that it is the same at every start).
    #[arg(long)]
    demo: bool,
    /// On SIGTERM or Ctrl-C, how long `/readyz` answers 503 "draining" while the server still
    /// serves, before it stops accepting and closes the device connections (1001): give a load
    /// balancer's health check time to see it, e.g. `10s`.
    #[arg(long, env = "PAIRD_DRAIN_GRACE", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_grace: Duration,
    /// A bearer token that reads `/metrics` and nothing else (at least 24 characters). Prefer
    /// the environment variable: a flag is visible to every user of the machine.
    #[arg(long, env = "PAIRD_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Addresses or CIDR ranges that read `/metrics` without a token, separated by commas
    /// (e.g. `127.0.0.1,10.0.0.0/8`); the TCP peer's address counts, never a forwarded one.
    /// With neither this nor a metrics token, only the operator token reads the metrics.
    #[arg(long, env = "PAIRD_METRICS_ALLOW")]
    metrics_allow: Option<server::metrics::AllowList>,
    /// Ping interval on device connections.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ping_interval: Duration,
    /// Close a device connection after this long without hearing from it.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    silence_limit: Duration,
    /// Time allowed for the WebSocket handshake.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Time allowed between the handshake and the first pair or resume: a connection that holds
    /// no credential yet is closed after it (4004). Raise it for devices that connect and wait
    /// for a staged roll-out's wave before they pair.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    hello_timeout: Duration,
    /// Most device connections one address (an IPv6 client's /64) holds before they pair or
    /// resume: a newer one takes the oldest one's place, which is closed (4004). Devices behind
    /// one NAT that resume or pair as soon as they connect are not affected. 0: no cap.
    #[arg(long, env = "PAIRD_MAX_UNPROVEN_PER_ADDRESS", default_value_t = 256)]
    max_unproven_per_address: usize,
    /// Most connections one address (an IPv6 client's /64) keeps waiting in line for a
    /// license; past it, a device that asks to wait is refused `no_free_license` as one that
    /// does not. 0: no cap.
    #[arg(long, env = "PAIRD_MAX_WAITING_PER_ADDRESS", default_value_t = 256)]
    max_waiting_per_address: usize,
    /// Most configurations one organization may hold (`quota_exceeded` past it).
    #[arg(
        long,
        env = "PAIRD_MAX_CONFIGURATIONS_PER_ORG",
        default_value_t = 10_000
    )]
    max_configurations_per_org: u64,
    /// Most keys one organization may hold, neither revoked nor expired.
    #[arg(long, env = "PAIRD_MAX_KEYS_PER_ORG", default_value_t = 1_000)]
    max_keys_per_org: u64,
    /// Most codes one organization may hold that can still pair (neither revoked, used, used
    /// up nor expired).
    #[arg(
        long,
        env = "PAIRD_MAX_ACTIVE_CODES_PER_ORG",
        default_value_t = 100_000
    )]
    max_active_codes_per_org: u64,
    /// Most control frames (ping, pong) one device connection may send in a minute; past it
    /// the connection is closed (1008).
    #[arg(long, default_value_t = 120)]
    max_control_frames_per_minute: u32,
    /// Time allowed for an admin request's headers to arrive.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    admin_header_timeout: Duration,
    /// An admin connection with no traffic for this long is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    admin_idle_timeout: Duration,
    /// Most admin connections open at once; they are counted in the open files kept from
    /// devices (the limit is also at most an eighth of the open-file limit).
    #[arg(long, default_value_t = 256)]
    admin_max_connections: usize,
    /// Most admin connections from one address (an IPv6 client's /64); past it a new one is
    /// answered 429 (0: no cap).
    #[arg(long, default_value_t = 64)]
    admin_max_connections_per_address: usize,
    /// Largest device-to-server frame, in bytes.
    #[arg(long, default_value_t = protocol::limits::DEFAULT_MAX_DEVICE_FRAME_BYTES)]
    max_frame: usize,
    /// Failed attempts on one connection before it is closed.
    #[arg(long, default_value_t = 3)]
    failures_per_connection: u32,
    /// Failed attempts per source address within --failure-window (0: no limit).
    #[arg(long, default_value_t = 30)]
    failures_per_address: u32,
    /// Failed attempts per code within --failure-window (0: no limit).
    #[arg(long, default_value_t = 100)]
    failures_per_code: u32,
    /// The sliding window of the failure limits.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    failure_window: Duration,
    /// One transaction per pairing instead of group commit (for comparison only).
    #[arg(long)]
    no_group_commit: bool,
    /// Most device requests committed in one transaction.
    #[arg(long, default_value_t = 2048)]
    max_batch: usize,
    /// How often expired licenses are looked for (and, on PostgreSQL, how often the node records
    /// its heartbeat).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    sweep_interval: Duration,
    /// PostgreSQL only: a node that has not recorded a heartbeat for this long is taken for dead
    /// by the others, which mark its devices offline. Several sweep intervals.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    node_timeout: Duration,
    /// Delete audit entries older than this, e.g. `400d` (at least 1h). Default: keep the audit
    /// log forever.
    #[arg(long, env = "PAIRD_AUDIT_RETENTION", value_parser = parse_audit_retention)]
    audit_retention: Option<Duration>,
    /// Test hooks: a manual clock (POST /v1/test/clock/advance) and fault injection.
    /// Never use in production.
    #[arg(long, hide = true)]
    test_hooks: bool,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Pair with the code in a QR payload (PAIRD://HOST:PORT/CODE), then stay connected.
    Pair {
        /// The payload of the QR code.
        payload: String,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Reconnect a paired device from its state file and stay connected.
    Run {
        #[command(flatten)]
        device: DeviceArgs,
    },
}

#[derive(Debug, Args)]
struct DeviceArgs {
    /// The device's state file (its identity and credential; keep it private).
    #[arg(long, default_value = "paird-device.json")]
    state: PathBuf,
    #[arg(long, default_value = "paird command-line device")]
    name: String,
    #[arg(long, default_value = "cli")]
    model: String,
    #[arg(long, default_value = std::env::consts::OS)]
    os: String,
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    app_version: String,
    /// Wire encoding.
    #[arg(long, value_enum, default_value = "postcard")]
    encoding: EncodingArg,
    /// Write each configuration received to this file.
    #[arg(long)]
    config_out: Option<PathBuf>,
    /// Exit after the first configuration is received and acknowledged.
    #[arg(long)]
    once: bool,
    /// Trust this CA's certificates (PEM) for wss://, besides the system's roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EncodingArg {
    Postcard,
    Json,
}

/// Holds secrets (a database URL's password, the metrics token): never printed whole.
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs").finish_non_exhaustive()
    }
}

fn parse_ip_range(text: &str) -> Result<IpRange, String> {
    text.parse()
}

/// jemalloc instead of glibc's malloc. Under a fleet's steady churn (devices reconnecting,
/// unpaired and paired again) glibc's per-thread arenas fragmented: in a soak of 19,000 devices
/// the live heap stayed at 219 MB while resident memory rose without end (+26 MiB in the first
/// nine minutes, +59 MiB in thirty). jemalloc holds it flat, for about 6 % more memory per idle
/// connection (BENCHMARKS.md, "Soak").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Device { command } => device(command).await,
        Command::OperatorToken { data_dir, database } => operator_token(data_dir, database).await,
        Command::Backup {
            path,
            data_dir,
            database,
        } => {
            let mut config = ServerConfig::new(&data_dir);
            config.database_url = database;
            let report = server::backup::backup(&config.database_url(), &path).await?;
            println!("{report}");
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(&args.data_dir);
    config.database_url = args.database;
    config.durability = args.durability;
    config.database_pool_size = args.database_pool_size.max(1);
    config.device_listen = args.device_listen;
    config.reuse_port = args.reuse_port;
    config.admin_listen = args.admin_listen;
    config.public_address = args.public_address;
    config.public_tls = args.public_tls;
    config.trusted_proxies = TrustedProxies::new(args.trusted_proxies.clone());
    if let (Some(certificate), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) {
        config.tls = Some(server::TlsFiles { certificate, key });
    }
    config.operator_token = std::env::var("PAIRD_OPERATOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    config.server_key = std::env::var("PAIRD_SERVER_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.test_hooks = args.test_hooks;
    config.drain_grace = args.drain_grace;
    config.metrics = server::metrics::MetricsSettings {
        token: args.metrics_token.filter(|token| !token.is_empty()),
        allow: args.metrics_allow.unwrap_or_default().0,
    };
    config.device = DeviceSettings {
        max_frame: args.max_frame,
        handshake_timeout: args.handshake_timeout,
        hello_timeout: args.hello_timeout,
        ping_interval: args.ping_interval,
        silence_limit: args.silence_limit,
        failures_per_connection: args.failures_per_connection,
        max_connections: args.max_device_connections,
        max_unproven_per_address: args.max_unproven_per_address,
        max_waiting_per_address: args.max_waiting_per_address,
        max_control_frames_per_minute: args.max_control_frames_per_minute,
        ..DeviceSettings::default()
    };
    config.admin = AdminLimits {
        header_timeout: args.admin_header_timeout,
        idle_timeout: args.admin_idle_timeout,
        max_connections: args.admin_max_connections,
        max_per_address: args.admin_max_connections_per_address,
    };
    config.engine = EngineSettings {
        group_commit: !args.no_group_commit,
        max_batch: args.max_batch.max(1),
        failures_per_address: FailureLimit {
            max_failures: args.failures_per_address,
            window: args.failure_window,
        },
        failures_per_code: FailureLimit {
            max_failures: args.failures_per_code,
            window: args.failure_window,
        },
        sweep_interval: args.sweep_interval,
        node_timeout: args.node_timeout,
        audit_retention: args.audit_retention,
        quotas: engine::settings::Quotas {
            configurations: args.max_configurations_per_org,
            keys: args.max_keys_per_org,
            active_codes: args.max_active_codes_per_org,
        },
        ..EngineSettings::default()
    };
    let database = config.database_url_shown();
    let server = server::start(config).await?;
    println!("paird is running");
    println!("  device endpoint  {}", server.device_url());
    println!("  admin API        {}", server.admin_url());
    println!("  portal           {}", server.portal_url());
    println!("  database         {database}");
    match &server.new_operator_token {
        Some(token) => {
            println!("  operator token   {token}");
            println!(
                "                   (new; also saved in {}; keep it secret)",
                args.data_dir.join("operator-token").display()
            );
        }
        None if std::env::var("PAIRD_OPERATOR_TOKEN").is_ok() => {
            println!("  operator token   from PAIRD_OPERATOR_TOKEN");
        }
        None => println!(
            "  operator token   created on first start (see {}), or run: paird operator-token",
            args.data_dir.join("operator-token").display()
        ),
    }
    if args.demo {
        let seed = server::seed_demo(&server.engine, &args.data_dir).await?;
        let payload = server.payload_uri(&seed.code.code)?;
        println!();
        println!(
            "demo organization {} ({})",
            seed.organization.name, seed.organization.id
        );
        println!("portal    {}", server.portal_url());
        println!("demo key  {}", seed.key.secret);
        let kept = if seed.key.created {
            "created by this start, saved in"
        } else {
            "kept from an earlier start in"
        };
        println!(
            "          ({kept} {}, readable by you only)",
            seed.key.path.display()
        );
        println!(
            "          sign in to the portal with it; revoked, it is replaced at the next --demo start"
        );
        println!(
            "reusable code {} (valid until {})",
            seed.code.info.id, seed.code.info.expires_at
        );
        println!("{}", server::qr::terminal(&payload)?);
        println!("payload  {payload}");
        println!("pair a device:  paird device pair '{payload}'");
    }
    // Last, once everything above is done: the line programs that start paird wait for and
    // read instead of the banner (client::ready_line; README.md, "The ready line").
    let ready = ReadyLine {
        paird: ReadyMarker::Ready,
        version: env!("CARGO_PKG_VERSION").to_string(),
        device_url: server.device_url(),
        admin_url: server.admin_url(),
        portal_url: server.portal_url(),
        device_address: server.device_addr,
        admin_address: server.admin_addr,
        database,
        new_operator_token: server.new_operator_token.clone(),
    };
    println!("{}", ready.to_line());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run_until(shutdown_signal()).await;
    Ok(())
}

/// An audit retention: a duration of at least an hour (a typo such as `40s` for `40d` would
/// otherwise delete the whole log).
fn parse_audit_retention(text: &str) -> Result<Duration, String> {
    let retention = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if retention < Duration::from_secs(3600) {
        return Err(format!(
            "{text:?} is less than an hour; say how long to keep the audit log, e.g. 400d"
        ));
    }
    Ok(retention)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn device(command: DeviceCommand) -> anyhow::Result<()> {
    let (payload, args) = match command {
        DeviceCommand::Pair { payload, device } => (Some(payload), device),
        DeviceCommand::Run { device } => (None, device),
    };
    let info = DeviceInfo {
        name: args.name.clone(),
        model: args.model.clone(),
        os: args.os.clone(),
        app_version: args.app_version.clone(),
    };
    let mut options = ConnectOptions::with_encoding(match args.encoding {
        EncodingArg::Postcard => Encoding::Postcard,
        EncodingArg::Json => Encoding::Json,
    });
    options.tls = Some(client::stream::client_config(args.ca_file.as_deref())?);
    let config_out = args.config_out.clone();
    let mut apply = move |configuration: &protocol::Configuration| -> Result<(), String> {
        if let Some(path) = &config_out {
            std::fs::write(path, &configuration.body).map_err(|error| error.to_string())?;
        }
        Ok(())
    };
    let once = args.once;
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let mut on_event = move |event: DeviceEvent| {
        match event {
            DeviceEvent::Connected { server } => println!("connected to {server}"),
            DeviceEvent::Paired(paired) => println!(
                "paired: device {} in organization {} with license {}{}",
                paired.device_id,
                paired.organization_id,
                paired.license_id,
                if paired.configuration_pending {
                    " (waiting for the organization's first configuration)"
                } else {
                    ""
                }
            ),
            DeviceEvent::Resumed(resumed) => println!("resumed: device {}", resumed.device_id),
            DeviceEvent::Configuration(configuration) => {
                println!(
                    "configuration {:?} revision {} ({}), {} bytes:",
                    configuration.name,
                    configuration.revision,
                    configuration.configuration_id,
                    configuration.body.len()
                );
                println!("{}", configuration.body);
                if once {
                    let _ = done.send(true);
                }
            }
            DeviceEvent::Disconnected { reason, retry_in } => {
                println!("disconnected ({reason}); reconnecting in {retry_in:.1?}");
            }
            DeviceEvent::Waiting { reason, retry_in } => {
                println!("{reason}; the server asks to wait: trying again in {retry_in:.1?}");
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };
    let run = async {
        match &payload {
            Some(payload) => {
                client::device::pair_and_run(
                    payload,
                    &args.state,
                    &info,
                    &options,
                    &mut apply,
                    &mut on_event,
                )
                .await
            }
            None => {
                client::device::run(&args.state, &info, &options, &mut apply, &mut on_event).await
            }
        }
    };
    tokio::select! {
        result = run => result.map_err(|error| anyhow::anyhow!("{error}")),
        _ = finished.wait_for(|done| *done) => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn operator_token(data_dir: PathBuf, database: Option<String>) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(&data_dir);
    config.database_url = database;
    let url = store::DatabaseUrl::parse(&config.database_url()).map_err(anyhow::Error::msg)?;
    let store = store::open(&url, store::OpenOptions::default())
        .await
        .context("cannot open the database")?;
    let token =
        engine::new_operator_token(store.as_ref(), engine::Clock::now(&engine::SystemClock))
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    println!("{token}");
    Ok(())
}
