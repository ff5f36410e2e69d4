//! Throwaway highly available PostgreSQL: a pg_auto_failover formation (a monitor, a primary and
//! a synchronous secondary) on loopback, for the failover tests.
//!
//! [`Formation::start`] runs `pg_autoctl create monitor` and then two `pg_autoctl create
//! postgres` nodes in a fresh temporary directory, each in a process group of its own on a free
//! loopback port, and waits until one node is the primary and the other its synchronous
//! secondary (pg_auto_failover's default with two nodes: a commit is acknowledged once the
//! secondary has it, so a failover loses nothing that was acknowledged). The monitor's health
//! checks are made faster than their production defaults (see [`FAST_MONITOR`]) so that a test
//! sees a failover within seconds; the defaults take about 50 s (BENCHMARKS.md).
//!
//! [`Formation::kill`] kills one node outright (SIGKILL to its keeper, its PostgreSQL and every
//! process they started), as a machine that loses power would. Dropping the formation kills
//! everything and removes the directory; a watchdog does the same if the process that started
//! it ends first.
//!
//! `pg_autoctl` comes from the Debian package `postgresql-15-auto-failover`
//! (`scripts/failover-deps`); without it [`Formation::start`] fails with
//! [`ClusterError::MissingAutoctl`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ClusterError, detached_shell, find_binaries, free_port, is_root, system_user};

/// The monitor's settings for tests: a node is checked every second and judged unhealthy after
/// 3 s without an answer, and the monitor promotes the secondary 3 s after asking the old
/// primary to step down (it is dead: nobody answers). The production defaults are 5 s, 20 s and
/// 30 s: a careful monitor, which a test would wait on for nothing.
pub const FAST_MONITOR: &[(&str, &str)] = &[
    ("pgautofailover.health_check_period", "1000"),
    ("pgautofailover.health_check_timeout", "1000"),
    ("pgautofailover.health_check_max_retries", "1"),
    ("pgautofailover.health_check_retry_delay", "500"),
    ("pgautofailover.node_considered_unhealthy_timeout", "3000"),
    ("pgautofailover.primary_demote_timeout", "3000"),
];

/// How long a node may take to join the formation (the secondary copies the primary first).
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// One `pg_autoctl` keeper and the PostgreSQL it runs.
#[derive(Debug)]
struct Keeper {
    name: String,
    port: u16,
    pgdata: PathBuf,
    /// `pg_autoctl ... --run`, the leader of its own process group.
    process: Option<Child>,
}

/// A running formation. Dropping it kills every process and removes its directory.
#[derive(Debug)]
pub struct Formation {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    monitor: Keeper,
    nodes: Vec<Keeper>,
}

impl Formation {
    /// Starts a monitor with [`FAST_MONITOR`] settings and two nodes, and waits for a primary
    /// with a synchronous secondary.
    pub fn start() -> Result<Formation, ClusterError> {
        Formation::start_with(true)
    }

    /// Starts a formation; `fast_monitor` false keeps pg_auto_failover's own health-check
    /// timings (to measure a failover as a production formation has it).
    pub fn start_with(fast_monitor: bool) -> Result<Formation, ClusterError> {
        let bin = find_binaries()?;
        let autoctl = find_autoctl()?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = tempfile::Builder::new().prefix("paird-paf-").tempdir()?;
        if let Some(user) = &run_as {
            let (uid, gid) = system_user(user)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut formation = Formation {
            monitor: Keeper::new(dir.path(), "monitor")?,
            nodes: vec![
                Keeper::new(dir.path(), "node_a")?,
                Keeper::new(dir.path(), "node_b")?,
            ],
            dir,
            bin,
            run_as,
        };
        formation.watchdog()?;

        let monitor_args = formation.keeper_args("monitor", &formation.monitor);
        let process = formation.spawn_keeper(&autoctl, &monitor_args, "monitor")?;
        formation.monitor.process = Some(process);
        formation.wait_until("the monitor accepts connections", JOIN_TIMEOUT, |f| {
            f.query(f.monitor.port, "pg_auto_failover", "SELECT 1")
                .is_ok_and(|out| out == "1")
        })?;
        // One command each: `psql -c` runs its text as one transaction, which ALTER SYSTEM
        // refuses.
        let settings = if fast_monitor { FAST_MONITOR } else { &[] };
        for (name, value) in settings {
            let sql = format!("ALTER SYSTEM SET {name} = {value}");
            formation.query(formation.monitor.port, "pg_auto_failover", &sql)?;
        }
        formation.query(
            formation.monitor.port,
            "pg_auto_failover",
            "SELECT pg_reload_conf()",
        )?;

        let monitor_url = formation.monitor_url();
        for index in 0..formation.nodes.len() {
            let mut args = formation.keeper_args("postgres", &formation.nodes[index]);
            args.extend(["--monitor".to_string(), monitor_url.clone()]);
            args.extend(["--name".to_string(), formation.nodes[index].name.clone()]);
            let name = formation.nodes[index].name.clone();
            let process = formation.spawn_keeper(&autoctl, &args, &name)?;
            formation.nodes[index].process = Some(process);
            // One at a time: the first becomes the primary, the second copies it.
            let wanted = index + 1;
            formation.wait_until("the node joins the formation", JOIN_TIMEOUT, |f| {
                f.settled_nodes().is_ok_and(|settled| settled == wanted)
            })?;
        }
        formation.wait_until(
            "the secondary replicates synchronously",
            JOIN_TIMEOUT,
            |f| {
                f.primary().is_some_and(|primary| {
                    f.query(
                        f.nodes[primary].port,
                        "postgres",
                        "SELECT count(*) FROM pg_stat_replication \
                         WHERE sync_state IN ('sync', 'quorum')",
                    )
                    .is_ok_and(|count| count == "1")
                })
            },
        )?;
        Ok(formation)
    }

    /// The multi-host URL of `database` as the superuser `postgres` (trust authentication on
    /// loopback), asking for the host that takes writes, as libpq clients do.
    pub fn url(&self, database: &str) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!(
            "postgres://postgres@{}/{database}?target_session_attrs=read-write",
            hosts.join(",")
        )
    }

    /// The single-host URL of `database` on node `index`.
    pub fn node_url(&self, index: usize, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.nodes[index].port
        )
    }

    /// Creates a database on the primary (the secondary replicates it) and returns its
    /// multi-host URL.
    pub fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        let primary = self.primary().ok_or_else(|| ClusterError::Failed {
            step: "createdb",
            detail: "no primary".into(),
        })?;
        self.query(
            self.nodes[primary].port,
            "postgres",
            &format!("CREATE DATABASE {name}"),
        )?;
        Ok(self.url(name))
    }

    /// The node that takes writes now, if one does.
    pub fn primary(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&index| {
            self.nodes[index].process.is_some()
                && self
                    .query(
                        self.nodes[index].port,
                        "postgres",
                        "SHOW transaction_read_only",
                    )
                    .is_ok_and(|read_only| read_only == "off")
        })
    }

    /// Kills node `index` outright: its keeper, its PostgreSQL, and what they started.
    pub fn kill(&mut self, index: usize) {
        kill_keeper(&mut self.nodes[index]);
    }

    /// Waits until a node other than `old` takes writes; returns it.
    pub fn wait_for_new_primary(
        &self,
        old: usize,
        timeout: Duration,
    ) -> Result<usize, ClusterError> {
        let mut found = None;
        self.wait_until("a new primary takes writes", timeout, |f| {
            found = f.primary().filter(|&primary| primary != old);
            found.is_some()
        })?;
        found.ok_or_else(|| ClusterError::Failed {
            step: "failover",
            detail: "no new primary".into(),
        })
    }

    /// The monitor's view of the nodes (`pg_autoctl show state`), for a failing test's message.
    pub fn state(&self) -> String {
        self.query(
            self.monitor.port,
            "pg_auto_failover",
            "SELECT string_agg(nodename || ' ' || nodeport || ' ' || reportedstate || ' -> ' || \
             goalstate, '; ' ORDER BY nodeid) FROM pgautofailover.node",
        )
        .unwrap_or_else(|error| format!("(monitor unreachable: {error})"))
    }

    /// The log of a keeper (`monitor`, `node_a`, `node_b`), for a failing test's message.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn monitor_url(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.monitor.port
        )
    }

    /// How many nodes the monitor sees settled (primary, secondary or single).
    fn settled_nodes(&self) -> Result<usize, ClusterError> {
        let count = self.query(
            self.monitor.port,
            "pg_auto_failover",
            "SELECT count(*) FROM pgautofailover.node WHERE reportedstate = goalstate \
             AND goalstate IN ('single', 'primary', 'secondary')",
        )?;
        count.parse().map_err(|_| ClusterError::Failed {
            step: "monitor query",
            detail: format!("not a count: {count:?}"),
        })
    }

    fn keeper_args(&self, what: &str, keeper: &Keeper) -> Vec<String> {
        let mut args: Vec<String> = [
            "create",
            what,
            "--pgctl",
            &self.bin.join("pg_ctl").display().to_string(),
            "--pgdata",
            &keeper.pgdata.display().to_string(),
            "--pgport",
            &keeper.port.to_string(),
            "--hostname",
            "127.0.0.1",
            "--listen",
            "127.0.0.1",
            "--auth",
            "trust",
            "--no-ssl",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.push("--run".to_string());
        args
    }

    /// Starts `pg_autoctl args` as the cluster user, in a process group of its own, with its
    /// configuration and state under the formation's directory, logging to `<name>.log`.
    fn spawn_keeper(
        &self,
        autoctl: &Path,
        args: &[String],
        name: &str,
    ) -> Result<Child, ClusterError> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let dir = self.dir.path();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--", "env"]);
                command
            }
            None => Command::new("env"),
        };
        command
            .arg(format!("PATH={path}"))
            .arg(format!("XDG_CONFIG_HOME={}", dir.join("config").display()))
            .arg(format!("XDG_DATA_HOME={}", dir.join("share").display()))
            .arg(format!("XDG_RUNTIME_DIR={}", dir.join("run").display()))
            // Unix sockets in the formation's directory, not on a shared path: the server
            // puts them where PG_REGRESS_SOCK_DIR says, the keeper looks where PGHOST says.
            .arg(format!("PG_REGRESS_SOCK_DIR={}", dir.display()))
            .arg(format!("PGHOST={}", dir.display()))
            .arg(autoctl)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command.spawn().map_err(|error| ClusterError::Failed {
            step: "pg_autoctl",
            detail: error.to_string(),
        })?;
        // The watchdog kills these process groups if this process ends first (a keeper
        // renames its processes, so they cannot be found by their command line).
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("keepers"))?
            .write_all(format!("{}\n", child.id()).as_bytes())?;
        Ok(child)
    }

    /// One SQL command through `psql` on a loopback port, as `postgres`; its output, trimmed.
    fn query(&self, port: u16, database: &str, sql: &str) -> Result<String, ClusterError> {
        let psql = if self.bin.join("psql").is_file() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let output = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "-d", database, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| ClusterError::Failed {
                step: "psql",
                detail: error.to_string(),
            })?;
        if !output.status.success() {
            return Err(ClusterError::Failed {
                step: "psql",
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn wait_until(
        &self,
        what: &'static str,
        timeout: Duration,
        mut done: impl FnMut(&Formation) -> bool,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(ClusterError::Failed {
            step: what,
            detail: format!(
                "not within {timeout:?}; monitor: {}\nlogs:\n{}",
                self.state(),
                ["monitor", "node_a", "node_b"]
                    .iter()
                    .map(|name| format!("--- {name}\n{}", tail(&self.log(name), 20)))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        })
    }

    /// A process that waits for this one to end, then kills what is left and removes the
    /// directory. When the formation is dropped normally it finds nothing left to do.
    fn watchdog(&self) -> Result<(), ClusterError> {
        let dir = self.dir.path().display().to_string();
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             for group in $(cat '{dir}/keepers' 2>/dev/null); do kill -9 -$group; done; \
             for pids in '{dir}'/*/postmaster.pid; do \
               pid=$(head -n 1 \"$pids\"); pkill -9 -P \"$pid\"; kill -9 \"$pid\"; \
             done 2>/dev/null; sleep 1; rm -rf '{dir}'",
            parent = std::process::id(),
        );
        detached_shell(&script).spawn()?;
        Ok(())
    }
}

impl Keeper {
    fn new(dir: &Path, name: &str) -> Result<Keeper, ClusterError> {
        Ok(Keeper {
            name: name.to_string(),
            port: free_port()?,
            pgdata: dir.join(name),
            process: None,
        })
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        kill_keeper(&mut self.monitor);
    }
}

/// Kills a keeper outright: first its PostgreSQL's children (a background worker orphaned by
/// its postmaster's death may run on: the monitor's health checks did), then its process
/// group (the keeper and the postmaster), then the postmaster if it left the group.
fn kill_keeper(keeper: &mut Keeper) {
    let postmaster = postmaster_pid(&keeper.pgdata);
    if let Some(pid) = postmaster {
        signal_kill(&["-P", &pid.to_string()], "pkill");
    }
    if let Some(mut process) = keeper.process.take() {
        signal_kill(&["--", &format!("-{}", process.id())], "kill");
        let _ = process.wait();
    }
    if let Some(pid) = postmaster {
        signal_kill(&[&pid.to_string()], "kill");
    }
}

/// SIGKILL through `program` (`kill` or `pkill`) to `targets`.
fn signal_kill(targets: &[&str], program: &str) {
    let _ = Command::new(program)
        .arg("-KILL")
        .args(targets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The pid of the PostgreSQL server of `pgdata`: the first line of `postmaster.pid`.
fn postmaster_pid(pgdata: &Path) -> Option<u32> {
    let pid_file = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    pid_file.lines().next()?.trim().parse().ok()
}

fn find_autoctl() -> Result<PathBuf, ClusterError> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("pg_autoctl"))
        .find(|path| path.is_file())
        .ok_or_else(|| ClusterError::MissingAutoctl("no pg_autoctl on PATH or in /usr/bin".into()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
