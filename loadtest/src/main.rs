//! `paird-loadtest`: mass enrollment against a paird server, measured and verified.
//!
//! It provisions what it needs through the admin API (an organization, licenses, a
//! configuration, a reusable code), enrolls N devices, and reports throughput, latency
//! percentiles and refusals by reason. With `--verify` it checks the outcome against the admin
//! API: every device told "paired" is listed with the license it was told, no license is held
//! twice, and the refusals match the shortfall. It talks only to the addresses it is given (or to
//! the server it starts on 127.0.0.1), is bounded in count and time, and stops by itself.

mod admin;
mod enroll;
mod procstat;
mod spawn;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "paird-loadtest", version, about = "Load tests a paird server")]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args)]
pub struct Target {
    /// Start a throwaway paird (temporary data directory, loopback ports) and test it.
    #[arg(long, global = true)]
    start_server: bool,
    /// The paird binary to start (default: `paird` next to this program).
    #[arg(long, global = true)]
    paird: Option<std::path::PathBuf>,
    /// Admin API of an existing server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:7879")]
    admin: String,
    /// Device endpoint of an existing server.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:7878/device")]
    device_url: String,
    /// Operator token of an existing server.
    #[arg(long, global = true, env = "PAIRD_OPERATOR_TOKEN")]
    token: Option<String>,
    /// The pid of the server (on this machine), to report its CPU time and memory. Known
    /// without it when --start-server is used.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Print the result as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Devices pair with one reusable code and receive their configuration.
    Enroll(EnrollArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    /// Every device connects first (the app is open at the scan prompt), then all pair at once.
    Connected,
    /// Each device opens a fresh connection, pairs, receives its configuration and closes.
    Fresh,
}

#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// Devices to enroll.
    #[arg(long, default_value_t = 1000)]
    devices: u32,
    /// Licenses to provision (default: one per device). Fewer than devices makes a race.
    #[arg(long)]
    licenses: Option<u32>,
    #[arg(long, value_enum, default_value = "connected")]
    mode: Mode,
    /// Devices in flight at once (fresh mode) or connecting at once (connected mode).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Wire encoding.
    #[arg(long, default_value = "postcard")]
    encoding: String,
    /// Check the outcome against the admin API.
    #[arg(long)]
    verify: bool,
    /// Give up after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let server = if cli.target.start_server {
        Some(spawn::Spawned::start(cli.target.paird.as_deref()).await?)
    } else {
        None
    };
    let server_pid = server
        .as_ref()
        .and_then(|server| server.pid())
        .or(cli.target.server_pid);
    let (admin_url, device_url, token) = match &server {
        Some(server) => (
            server.admin_url.clone(),
            server.device_url.clone(),
            server.token.clone(),
        ),
        None => (
            cli.target.admin.clone(),
            cli.target.device_url.clone(),
            cli.target.token.clone().ok_or_else(|| {
                anyhow::anyhow!("give --token (or PAIRD_OPERATOR_TOKEN), or use --start-server")
            })?,
        ),
    };
    let admin = admin::Admin::new(&admin_url, &token);
    let outcome = match cli.scenario {
        Scenario::Enroll(args) => {
            let timeout = args.timeout;
            tokio::time::timeout(timeout, enroll::run(&admin, &device_url, &args, server_pid))
                .await
                .map_err(|_| anyhow::anyhow!("gave up after {timeout:?}"))??
        }
    };
    if let Some(server) = server {
        server.stop().await;
    }
    if cli.target.json {
        println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    } else {
        print!("{}", outcome.table());
    }
    if let Some(problems) = outcome.verification_failures() {
        anyhow::bail!("verification failed:\n{problems}");
    }
    Ok(())
}
