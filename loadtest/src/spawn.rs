//! `--start-server`: a throwaway paird on loopback ports with a temporary data directory. It
//! can be killed (SIGKILL) and started again on the same database and ports. The nodes of
//! `--start-cluster` (see [`crate::cluster`]) are started the same way, with a database URL and
//! a server key of their own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use client::ready_line::{ReadyLine, read_startup};
use tokio::process::{Child, Command};

#[derive(Debug)]
pub struct Spawned {
    child: Child,
    binary: PathBuf,
    extra_args: Vec<String>,
    /// Environment given to the server beyond the operator token (e.g. `PAIRD_SERVER_KEY`).
    env: Vec<(String, String)>,
    data: tempfile::TempDir,
    pub admin_url: String,
    pub device_url: String,
    /// The addresses the (device, admin) listeners are bound to: a restart binds them again.
    addresses: (SocketAddr, SocketAddr),
    pub token: String,
}

impl Spawned {
    /// Starts `paird serve` (default: the `paird` next to this program) with `extra_args`.
    pub async fn start(paird: Option<&Path>, extra_args: &[String]) -> anyhow::Result<Spawned> {
        let token = format!("loadtest-{}", uuid::Uuid::new_v4().simple());
        Spawned::start_node(
            &paird_binary(paird)?,
            &token,
            ("127.0.0.1:0", "127.0.0.1:0"),
            extra_args,
            &[],
        )
        .await
    }

    /// Starts `paird serve` from `binary` with a temporary data directory of its own, listening
    /// on `(device, admin)` addresses, accepting `token`, with `extra_args` and `env`.
    pub async fn start_node(
        binary: &Path,
        token: &str,
        (device, admin): (&str, &str),
        extra_args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<Spawned> {
        let data = tempfile::tempdir()?;
        let (child, ready) =
            launch(binary, data.path(), token, (device, admin), extra_args, env).await?;
        Ok(Spawned {
            child,
            binary: binary.to_path_buf(),
            extra_args: extra_args.to_vec(),
            env: env.to_vec(),
            data,
            admin_url: ready.admin_url,
            device_url: ready.device_url,
            addresses: (ready.device_address, ready.admin_address),
            token: token.to_string(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the server with SIGKILL: no shutdown, no flush, as in a power cut of the process.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Starts the server again on the same database and the same ports.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let device = self.addresses.0.to_string();
        let admin = self.addresses.1.to_string();
        let (child, ready) = launch(
            &self.binary,
            self.data.path(),
            &self.token,
            (&device, &admin),
            &self.extra_args,
            &self.env,
        )
        .await?;
        self.child = child;
        self.admin_url = ready.admin_url;
        self.device_url = ready.device_url;
        self.addresses = (ready.device_address, ready.admin_address);
        Ok(())
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The paird binary to start: `paird`, or the `paird` next to this program.
pub fn paird_binary(paird: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match paird {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for this program")?
            .join("paird"),
    })
}

/// Starts paird and waits for its ready line, which says where it listens.
async fn launch(
    binary: &Path,
    data: &Path,
    token: &str,
    (device, admin): (&str, &str),
    extra_args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<(Child, ReadyLine)> {
    let mut child = Command::new(binary)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--device-listen", device, "--admin-listen", admin])
        // The scenarios' devices connect first and pair later, as a staged wave's do: with
        // 100,000 devices paired at a rate that is more than the 30 s paird allows by default
        // (`--server-arg` can still set it).
        .args(["--hello-timeout", "10m"])
        // ... and they all come from 127.0.0.1: no cap on one address's unpaired connections.
        .args(["--max-unproven-per-address", "0"])
        .args(extra_args)
        .env("PAIRD_OPERATOR_TOKEN", token)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let started = tokio::time::timeout(Duration::from_secs(60), read_startup(stdout))
        .await
        .context("paird did not start in 60 s")??;
    Ok((child, started.ready))
}
