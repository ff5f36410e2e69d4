//! `--start-cluster N`: a throwaway PostgreSQL cluster and N paird nodes on one database.
//!
//! The database is a [`pgtemp::Cluster`] with `fsync` on (and PostgreSQL's default
//! `synchronous_commit = on`), so that "paired" means "committed to disk" as it does for a
//! single node on SQLite with `synchronous=FULL`. Its `max_connections` covers every node's pool
//! plus its change listener, with room to spare. The nodes share the database URL, one server
//! key and one operator token; each has its own data directory and admin port, and either a
//! device port of its own (the load tester spreads its devices over them round robin, so that
//! every node holds a known share) or one shared device port (`--reuse-port`; the kernel spreads
//! the connections).
//!
//! Everything listens on 127.0.0.1 only. [`SpawnedCluster::stop`] stops the nodes (SIGTERM,
//! then SIGKILL) and then the database. If this program dies without stopping them, a watchdog
//! process kills the nodes it recorded, and pgtemp's own watchdog stops the database.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::spawn::Spawned;

/// Database connections PostgreSQL keeps beyond the nodes' pools and listeners: for `psql`,
/// for a node's connection retries and for PostgreSQL's own reserved slots.
const SPARE_DATABASE_CONNECTIONS: u32 = 20;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// paird processes.
    pub nodes: usize,
    /// `--database-pool-size` of every node.
    pub pool_size: u32,
    /// One device port shared by every node (`--reuse-port`) instead of one port each.
    pub shared_port: bool,
    /// The paird binary.
    pub paird: PathBuf,
    /// More arguments for every node.
    pub server_args: Vec<String>,
    /// Load `pg_stat_statements` so that [`SpawnedCluster::statement_profile`] can tell where
    /// the database's time went.
    pub profile_database: bool,
    /// More postgresql.conf lines (`name = value`) for the throwaway database.
    pub database_settings: Vec<String>,
}

/// The running cluster.
#[derive(Debug)]
pub struct SpawnedCluster {
    /// The paird nodes, in start order; node 1 (index 0) is the one the tester provisions
    /// through and sends its edits to.
    pub nodes: Vec<Spawned>,
    pub token: String,
    /// The database URL every node uses.
    pub database_url: String,
    /// The pid of the PostgreSQL server (the postmaster), for its CPU time.
    pub database_pid: Option<u32>,
    /// Kills the nodes listed in `pids` if this process ends without stopping them.
    watchdog: Child,
    /// The file the watchdog reads the nodes' pids from.
    pids: tempfile::NamedTempFile,
    /// Declared last: dropped after everything else (the nodes hold connections to it).
    database: pgtemp::Cluster,
}

/// `max_connections` for `nodes` nodes with `pool_size` connections each, plus their change
/// listeners.
pub fn max_connections(nodes: usize, pool_size: u32) -> u32 {
    nodes as u32 * (pool_size + 1) + SPARE_DATABASE_CONNECTIONS
}

impl SpawnedCluster {
    pub async fn start(settings: &ClusterSettings) -> anyhow::Result<SpawnedCluster> {
        anyhow::ensure!(settings.nodes >= 1, "a cluster needs at least one node");
        let mut options = pgtemp::ClusterOptions {
            fsync: true,
            max_connections: max_connections(settings.nodes, settings.pool_size),
            settings: Vec::new(),
        };
        if settings.profile_database {
            options.settings.extend([
                "shared_preload_libraries = 'pg_stat_statements, auto_explain'".to_string(),
                "pg_stat_statements.track = all".to_string(),
                "pg_stat_statements.track_planning = on".to_string(),
                "track_io_timing = on".to_string(),
                // The plans of slow statements, in the server log (kept by `statement_profile`).
                "auto_explain.log_min_duration = '50ms'".to_string(),
                "auto_explain.log_nested_statements = on".to_string(),
                "log_min_messages = log".to_string(),
                "log_lock_waits = on".to_string(),
            ]);
        }
        options
            .settings
            .extend(settings.database_settings.iter().cloned());
        let profile = settings.profile_database;
        let (database, database_url) = tokio::task::spawn_blocking(move || {
            let database = pgtemp::Cluster::start_with(options)?;
            let url = database.create_database()?;
            if profile {
                psql(
                    database.bin_dir(),
                    &url,
                    "CREATE EXTENSION pg_stat_statements",
                )?;
            }
            anyhow::Ok((database, url))
        })
        .await
        .context("starting PostgreSQL")?
        .context("starting PostgreSQL")?;
        let database_pid = postmaster_pid(database.path());

        let pids = tempfile::Builder::new()
            .prefix("paird-loadtest-nodes-")
            .tempfile()?;
        let watchdog = watchdog(pids.path())?;
        let mut cluster = SpawnedCluster {
            nodes: Vec::with_capacity(settings.nodes),
            token: format!("loadtest-{}", uuid::Uuid::new_v4().simple()),
            database_url,
            database_pid,
            watchdog,
            pids,
            database,
        };
        let server_key = random_hex(32)?;
        let env = vec![("PAIRD_SERVER_KEY".to_string(), server_key)];
        let device_listen = if settings.shared_port {
            format!("127.0.0.1:{}", free_port()?)
        } else {
            "127.0.0.1:0".to_string()
        };
        let mut args = vec![
            "--database".to_string(),
            cluster.database_url.clone(),
            format!("--database-pool-size={}", settings.pool_size),
        ];
        if settings.shared_port {
            args.push("--reuse-port".into());
        }
        args.extend(settings.server_args.iter().cloned());
        // One after the other: the first creates the schema and records the server key and
        // the operator token, the others find them.
        for index in 0..settings.nodes {
            let node = Spawned::start_node(
                &settings.paird,
                &cluster.token,
                (&device_listen, "127.0.0.1:0"),
                &args,
                &env,
            )
            .await
            .with_context(|| format!("starting node {}", index + 1))?;
            if let Some(pid) = node.pid() {
                writeln!(cluster.pids.as_file(), "{pid}")?;
                cluster.pids.as_file().sync_all()?;
            }
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// The statements the database spent most time on since it started (`pg_stat_statements`,
    /// loaded with [`ClusterSettings::profile_database`]), as psql prints them.
    pub async fn statement_profile(&self) -> anyhow::Result<String> {
        let query = "SELECT calls, round(total_exec_time) AS total_ms, \
             round(total_plan_time) AS plan_ms, \
             round((total_exec_time / NULLIF(calls, 0))::numeric, 3) AS mean_ms, rows, \
             round((100 * total_exec_time / sum(total_exec_time) OVER ())::numeric, 1) AS pct, \
             left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query \
             FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20";
        let bin = self.database.bin_dir().to_path_buf();
        let url = self.database_url.clone();
        let log = self.database.path().join("server.log");
        tokio::task::spawn_blocking(move || {
            let profile = psql(&bin, &url, query)?;
            // The log (with the plans of statements over 50 ms) outlives the cluster.
            let kept = std::env::temp_dir().join(format!(
                "paird-loadtest-database-{}.log",
                std::process::id()
            ));
            std::fs::copy(&log, &kept).context("copying the database log")?;
            Ok(format!(
                "{profile}(database log with slow plans: {})\n",
                kept.display()
            ))
        })
        .await
        .context("psql")?
    }

    /// Every node's pid.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Spawned::pid).collect()
    }

    /// Stops the nodes (all at once, each SIGTERM then SIGKILL after 15 s), then the database.
    pub async fn stop(mut self) {
        futures_util::future::join_all(self.nodes.drain(..).map(Spawned::stop)).await;
        let _ = self.watchdog.kill().await;
        let database = self.database;
        let _ = tokio::task::spawn_blocking(move || drop(database)).await;
    }
}

/// Runs one statement with the `psql` in `bin` and returns what it printed.
fn psql(bin: &Path, url: &str, statement: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new(bin.join("psql"))
        .args([url, "-X", "-v", "ON_ERROR_STOP=1", "-c", statement])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    anyhow::ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The postmaster's pid: the first line of `postmaster.pid` in the data directory.
fn postmaster_pid(cluster_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(cluster_dir.join("data").join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A process that waits for this one to end and then kills every pid listed in `pids` (if the
/// file is still there: a normal stop removes it, and kills the watchdog).
fn watchdog(pids: &Path) -> anyhow::Result<Child> {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
         [ -f '{file}' ] && kill -KILL $(cat '{file}') 2>/dev/null; rm -f '{file}'",
        parent = std::process::id(),
        file = pids.display(),
    );
    Command::from(pgtemp::detached_shell(&script))
        .spawn()
        .context("cannot start the nodes' watchdog")
}

/// `bytes` random bytes as hex, from the system's generator.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    let mut random = std::fs::File::open("/dev/urandom").context("/dev/urandom")?;
    std::io::Read::read_exact(&mut random, &mut buffer)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_connections_cover_every_pool_and_listener() {
        assert_eq!(max_connections(6, 16), 6 * 17 + SPARE_DATABASE_CONNECTIONS);
        assert!(max_connections(1, 1) > 2);
    }

    #[test]
    fn server_keys_are_64_hex_characters() {
        let key = random_hex(32).unwrap_or_default();
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }
}
