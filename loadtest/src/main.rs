//! `paird-loadtest`: mass enrollment, idle connections, configuration pushes, races and crashes
//! against a paird server, measured and verified.
//!
//! It provisions what it needs through the admin API (an organization, licenses, a
//! configuration, codes), drives simulated devices over real WebSocket connections, and reports
//! throughput, latency percentiles and failures by reason. With `--verify` it checks the outcome
//! against the admin API. Past the open-file cap of one process it spreads the devices over
//! worker processes, and over several loopback source addresses past the ephemeral port range.
//! It talks only to the addresses it is given (or to the server it starts on 127.0.0.1), is
//! bounded in count and time, and stops by itself.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadtest::admin::Admin;
use loadtest::bulk::{self, BulkArgs};
use loadtest::cluster::{ClusterSettings, SpawnedCluster};
use loadtest::lists::{self, ListsArgs};
use loadtest::scenarios::{self, CrashArgs, EnrollArgs, HoldArgs, PushArgs, RaceArgs, Target};
use loadtest::soak::{self, SoakArgs};
use loadtest::spawn::{self, Spawned};
use loadtest::workers;

#[derive(Debug, Parser)]
#[command(name = "paird-loadtest", version, about = "Load tests a paird server")]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Start a throwaway paird (temporary data directory, loopback ports) and test it.
    #[arg(long, global = true, conflicts_with = "start_cluster")]
    start_server: bool,
    /// Start a throwaway PostgreSQL (fsync on) and N paird nodes on one database (loopback
    /// ports, one device port each) and test them as one cluster: devices are spread over the
    /// nodes round robin; provisioning, edits and verification go through node 1's admin API.
    #[arg(long, global = true, value_name = "N")]
    start_cluster: Option<usize>,
    /// With --start-cluster: every node on one shared device port (--reuse-port; the kernel
    /// spreads the connections) instead of a port each.
    #[arg(long, global = true, requires = "start_cluster")]
    shared_port: bool,
    /// With --start-cluster: each node's --database-pool-size (PostgreSQL's max_connections is
    /// sized for it).
    #[arg(long, global = true, default_value_t = 16)]
    database_pool_size: u32,
    /// With --start-cluster: load pg_stat_statements in the database and print, at the end,
    /// the statements it spent most time on (to standard error).
    #[arg(long, global = true, requires = "start_cluster")]
    profile_database: bool,
    /// With --start-cluster: a postgresql.conf line for the throwaway database (repeatable),
    /// e.g. `--database-setting "autovacuum_naptime = 5s"`.
    #[arg(long, global = true, requires = "start_cluster", value_name = "LINE")]
    database_setting: Vec<String>,
    /// The paird binary to start (default: `paird` next to this program).
    #[arg(long, global = true)]
    paird: Option<std::path::PathBuf>,
    /// An argument for the server this program starts (repeatable), e.g.
    /// `--server-arg=--no-group-commit`.
    #[arg(long, global = true, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Admin API of an existing server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:7879")]
    admin: String,
    /// Device endpoint of an existing server; repeat it for the nodes of a cluster (devices are
    /// spread over them round robin).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:7878/device")]
    device_url: Vec<String>,
    /// Operator token of an existing server.
    #[arg(long, global = true, env = "PAIRD_OPERATOR_TOKEN")]
    token: Option<String>,
    /// The pid of the server (on this machine), to report its CPU time and memory; repeat it
    /// for every node of a cluster. Known without it when --start-server or --start-cluster is
    /// used.
    #[arg(long, global = true)]
    server_pid: Vec<u32>,
    /// Print the result as JSON instead of a table (and no progress bars).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Devices pair (connected first, or each on a fresh connection; one reusable code or a
    /// single-use code each) and receive their configuration.
    Enroll(EnrollArgs),
    /// Paired devices reconnect and stay connected, idle; reports server memory per connection.
    Hold(HoldArgs),
    /// Configuration edits pushed to every connected device: time until all received, until
    /// all acknowledged.
    Push(PushArgs),
    /// More devices than free licenses, and many devices on one single-use code, all at once.
    Race(RaceArgs),
    /// Kills the server (SIGKILL) mid-burst, restarts it on the same database, verifies.
    Crash(CrashArgs),
    /// Seeds an organization with paired devices, then times the first pages of the fleet
    /// lists (searches, filters, sorts) as the Devices section asks for them.
    Lists(ListsArgs),
    /// N devices pair and stay connected, then one command unpairs them all by a filter:
    /// the command's time, and every connected device told (issue 15).
    Bulk(BulkArgs),
    /// Devices kept connected for a long time under a steady mix (unpaired and paired again,
    /// reconnecting, acknowledging edits); the server's memory, open files and tasks sampled
    /// every minute (issue 18).
    Soak(SoakArgs),
    /// A worker process holding part of the devices (started by this program itself).
    #[command(hide = true)]
    Worker { spec: String },
}

/// The server under test: started here (one, or a cluster) or given by address.
async fn target(args: &TargetArgs) -> anyhow::Result<Target> {
    if let Some(nodes) = args.start_cluster {
        let settings = ClusterSettings {
            nodes,
            pool_size: args.database_pool_size.max(1),
            shared_port: args.shared_port,
            paird: spawn::paird_binary(args.paird.as_deref())?,
            server_args: args.server_arg.clone(),
            profile_database: args.profile_database,
            database_settings: args.database_setting.clone(),
        };
        let cluster = SpawnedCluster::start(&settings).await?;
        let mut device_urls: Vec<String> = Vec::new();
        for node in &cluster.nodes {
            if !device_urls.contains(&node.device_url) {
                device_urls.push(node.device_url.clone());
            }
        }
        let first = cluster.nodes.first().context("no node")?;
        let mut target = Target::single(
            Admin::new(&first.admin_url, &cluster.token),
            &first.device_url,
            None,
        );
        target.device_urls = device_urls;
        target.server_pids = cluster.pids();
        target.node_admins = cluster
            .nodes
            .iter()
            .map(|node| Admin::new(&node.admin_url, &cluster.token))
            .collect();
        target.database_pid = cluster.database_pid;
        target.cluster = Some(cluster);
        target.quiet = args.json;
        return Ok(target);
    }
    if args.start_server {
        let server = Spawned::start(args.paird.as_deref(), &args.server_arg).await?;
        let mut target = Target::single(
            Admin::new(&server.admin_url, &server.token),
            &server.device_url,
            server.pid(),
        );
        target.spawned = Some(server);
        target.quiet = args.json;
        return Ok(target);
    }
    let token = args.token.as_deref().ok_or_else(|| {
        anyhow::anyhow!("give --token (or PAIRD_OPERATOR_TOKEN), or use --start-server")
    })?;
    let mut target = Target::single(Admin::new(&args.admin, token), "", None);
    target.device_urls = args.device_url.clone();
    target.server_pids = args.server_pid.clone();
    target.quiet = args.json;
    Ok(target)
}

/// mimalloc instead of glibc malloc: with thousands of connections opened from two worker
/// threads, glibc's per-thread arenas grew a page range at a time (`mprotect`) and allocation
/// was a seventh of the tester's CPU in the connect phase, CPU the server under test then lacks
/// on a shared machine. The tester's own memory is not a measured figure.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    workers::raise_open_file_limit();
    if let Scenario::Worker { spec } = &cli.scenario {
        return workers::serve(spec).await;
    }
    let mut target = target(&cli.target).await?;
    let timeout = match &cli.scenario {
        Scenario::Enroll(args) => args.common.timeout,
        Scenario::Hold(args) => args.common.timeout + args.duration,
        Scenario::Push(args) => args.common.timeout,
        Scenario::Race(args) => args.common.timeout,
        // `--timeout` bounds each cycle (the cycle that overruns it is named); this is a backstop.
        Scenario::Crash(args) => args.common.timeout * args.cycles.max(1) + Duration::from_secs(60),
        Scenario::Lists(args) => args.common.timeout,
        Scenario::Bulk(args) => args.common.timeout,
        Scenario::Soak(args) => args.common.timeout + args.duration + Duration::from_secs(60),
        Scenario::Worker { .. } => unreachable!("handled above"),
    };
    let work = async {
        match &cli.scenario {
            Scenario::Enroll(args) => scenarios::enroll(&mut target, args).await,
            Scenario::Hold(args) => scenarios::hold(&mut target, args).await,
            Scenario::Push(args) => scenarios::push(&mut target, args).await,
            Scenario::Race(args) => scenarios::race(&mut target, args).await,
            Scenario::Crash(args) => loadtest::crash_cycles::crash(&mut target, args).await,
            Scenario::Lists(args) => lists::lists(&mut target, args).await,
            Scenario::Bulk(args) => bulk::bulk(&mut target, args).await,
            Scenario::Soak(args) => soak::soak(&mut target, args).await,
            Scenario::Worker { .. } => unreachable!("handled above"),
        }
    };
    let report = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow::anyhow!("gave up after {timeout:?}"));
    if let Some(server) = target.spawned.take() {
        server.stop().await;
    }
    if let Some(cluster) = target.cluster.take() {
        if cli.target.profile_database {
            match cluster.statement_profile().await {
                Ok(profile) => eprintln!("database statements by time:\n{profile}"),
                Err(error) => eprintln!("no statement profile: {error:#}"),
            }
        }
        cluster.stop().await;
    }
    let report = report??;
    if cli.target.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if !report.passed() {
        anyhow::bail!("verification failed");
    }
    Ok(())
}
