//! Throwaway PostgreSQL clusters for paird's tests and load runs.
//!
//! [`Cluster::start`] runs `initdb` in a fresh temporary directory, starts `postgres` on a free
//! loopback port (its unix socket in the same directory, nothing on a shared path), and stops it
//! when the [`Cluster`] is dropped. A watchdog process stops the cluster and removes its
//! directory if the process that started it ends first (a cluster kept in a `static` for a whole
//! test binary is never dropped; a test binary can be killed), so no cluster outlives its tests.
//!
//! The server binaries (`initdb`, `pg_ctl`, `postgres`, and `createdb` beside them) are found on
//! `PATH` or in `/usr/lib/postgresql/<version>/bin`. When they are missing, [`Cluster::start`]
//! fails with [`ClusterError::Missing`], whose message says how to get them.
//!
//! PostgreSQL refuses to run as root. When the caller is root (containers, CI machines), the
//! binaries run as the `postgres` system user (through `runuser`) in a directory owned by it.
//!
//! Layout: this file (one cluster); `formation` ([`Formation`]: a pg_auto_failover monitor, a
//! primary and a synchronous secondary, for the failover tests).

mod formation;

pub use formation::{FAST_MONITOR, Formation};

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries not found ({0}). paird's PostgreSQL tests start a throwaway \
         cluster with initdb and pg_ctl: install PostgreSQL 15's server package (Debian: \
         `apt-get install postgresql-15`, then put /usr/lib/postgresql/15/bin on PATH) or put \
         initdb, pg_ctl and postgres on PATH"
    )]
    Missing(String),
    #[error(
        "pg_auto_failover not found ({0}). paird's failover tests run a throwaway formation \
         with pg_autoctl: install it with scripts/failover-deps (Debian package \
         postgresql-15-auto-failover)"
    )]
    MissingAutoctl(String),
    #[error("running as root, but there is no `postgres` system user to run PostgreSQL as: {0}")]
    NoUser(String),
    #[error("{step} failed: {detail}")]
    Failed { step: &'static str, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How a cluster runs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `fsync` in postgresql.conf. Off suits tests (nothing here survives a machine crash
    /// anyway); load runs that measure durable commits keep it on.
    pub fsync: bool,
    pub max_connections: u32,
    /// More `name = value` lines for postgresql.conf (written after the ones above, so they
    /// win), e.g. `shared_preload_libraries = 'pg_stat_statements'` for a profile.
    pub settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            fsync: false,
            max_connections: 300,
            settings: Vec::new(),
        }
    }
}

/// A running throwaway cluster. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Cluster {
    /// Holds the data directory, the log and the socket; removed on drop.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The system user the binaries run as (when the caller is root).
    run_as: Option<String>,
    port: u16,
    options: ClusterOptions,
}

/// Numbers the databases [`Cluster::create_database`] makes, per process.
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

impl Cluster {
    /// Starts a cluster with the default options (fsync off).
    pub fn start() -> Result<Cluster, ClusterError> {
        Cluster::start_with(ClusterOptions::default())
    }

    pub fn start_with(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin = find_binaries()?;
        let run_as = if is_root() {
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("paird-pg-").tempdir()?;
        if let Some(user) = &run_as {
            let (uid, gid) = system_user(user)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            run_as,
            port: 0,
            options,
        };
        cluster.run(
            "initdb",
            cluster
                .tool("initdb")
                .arg("-D")
                .arg(cluster.data_dir())
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
                .arg("--no-sync"),
        )?;
        cluster.write_settings()?;
        cluster.watchdog()?;
        // A free port can be taken between the check and the start: try a few.
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| ClusterError::Failed {
            step: "pg_ctl start",
            detail: "no attempt".into(),
        }))
    }

    /// The directory of the server binaries in use (it also holds `psql`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's directory (data, log, socket).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser `postgres` (trust authentication on
    /// loopback only).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database with a name of its own and returns its URL.
    pub fn create_database(&self) -> Result<String, ClusterError> {
        let name = format!(
            "paird_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let mut createdb = self.tool("createdb");
        createdb
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(&name);
        self.run("createdb", &mut createdb)?;
        Ok(self.url(&name))
    }

    /// Stops the server (fast shutdown: connections are closed), keeping the data, so that a
    /// test can see how paird behaves while the database is unreachable.
    pub fn stop(&self) -> Result<(), ClusterError> {
        self.run(
            "pg_ctl stop",
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "stop"]),
        )
    }

    /// Starts the server again after [`Cluster::stop`], on the same port and data.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.start_server()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn write_settings(&self) -> Result<(), ClusterError> {
        use std::io::Write as _;
        // A small WAL: every test database is made by copying the template through the WAL
        // (PostgreSQL 15's default), and with the default max_wal_size of 1 GB a suite's run
        // keeps a gigabyte of segments on disk.
        let mut settings = format!(
            "\n# paird throwaway cluster\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket}'\nfsync = {fsync}\n\
             max_connections = {max}\nlog_min_messages = warning\n\
             max_wal_size = 64MB\nmin_wal_size = 32MB\n",
            socket = self.dir.path().display(),
            fsync = if self.options.fsync { "on" } else { "off" },
            max = self.options.max_connections,
        );
        for line in &self.options.settings {
            settings.push_str(line);
            settings.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))?;
        file.write_all(settings.as_bytes())?;
        Ok(())
    }

    fn start_server(&self) -> Result<(), ClusterError> {
        self.run(
            "pg_ctl start",
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .arg("-o")
                .arg(format!("-p {}", self.port))
                .args(["-w", "-t", "60", "start"]),
        )
    }

    /// Starts a process that waits for this one to end, then stops the server and removes the
    /// directory. When the cluster is dropped normally it finds nothing left to do.
    fn watchdog(&self) -> Result<(), ClusterError> {
        let stop = self.shell_words(&[
            &self.bin.join("pg_ctl").display().to_string(),
            "-D",
            &self.data_dir().display().to_string(),
            "-m",
            "immediate",
            "stop",
        ]);
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; \
             rm -rf '{dir}'",
            parent = std::process::id(),
            dir = self.dir.path().display(),
        );
        detached_shell(&script).spawn()?;
        Ok(())
    }

    /// A shell command line running `words` as the cluster's user.
    fn shell_words(&self, words: &[&str]) -> String {
        let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
        match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {}", quoted.join(" ")),
            None => quoted.join(" "),
        }
    }

    /// A command for one of the server binaries, as the cluster's user.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run(&self, step: &'static str, command: &mut Command) -> Result<(), ClusterError> {
        let output = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|error| ClusterError::Failed {
                step,
                detail: error.to_string(),
            })?;
        if output.status.success() {
            return Ok(());
        }
        let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        if step == "pg_ctl start" {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            detail = format!("{detail}\nserver log:\n{log}");
        }
        Err(ClusterError::Failed { step, detail })
    }
}

/// `sh -c script` in a session of its own (`setsid`, where there is one), with no standard
/// input or output: for watchdogs that outlive this process. A test runner or a shell that kills
/// this process group on a timeout must not take the watchdog down with it.
pub fn detached_shell(script: &str) -> Command {
    let mut command = if Path::new("/usr/bin/setsid").is_file() {
        let mut command = Command::new("/usr/bin/setsid");
        command.arg("sh");
        command
    } else {
        Command::new("sh")
    };
    command
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `createdb`.
fn find_binaries() -> Result<PathBuf, ClusterError> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // Follow a symlink (Debian links /usr/local/bin/initdb into the versioned
                // directory, which also holds createdb).
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    candidates.push(parent.to_path_buf());
                }
            }
        }
    }
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = versions
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
            .collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|dir| has_binaries(dir))
        .ok_or_else(|| {
            ClusterError::Missing("no initdb on PATH or in /usr/lib/postgresql/*/bin".into())
        })
}

fn has_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres", "createdb"]
        .iter()
        .all(|name| dir.join(name).is_file())
}

fn is_root() -> bool {
    // No libc call (the workspace forbids `unsafe`): ask `id`.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .is_some_and(|uid| uid.trim() == "0")
}

/// The uid and gid of a system user, from /etc/passwd.
fn system_user(user: &str) -> Result<(u32, u32), ClusterError> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() == Some(&user) && fields.len() > 3 {
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            } else {
                None
            }
        })
        .ok_or_else(|| ClusterError::NoUser(format!("no {user:?} in /etc/passwd")))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
