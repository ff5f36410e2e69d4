//! `--start-server`: a throwaway paird on loopback ports with a temporary data directory.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Spawned {
    child: Child,
    _data: tempfile::TempDir,
    pub admin_url: String,
    pub device_url: String,
    pub token: String,
}

impl Spawned {
    pub async fn start(paird: Option<&Path>) -> anyhow::Result<Spawned> {
        let binary = match paird {
            Some(path) => path.to_path_buf(),
            None => std::env::current_exe()?
                .parent()
                .context("no directory for this program")?
                .join("paird"),
        };
        let data = tempfile::tempdir()?;
        let token = format!("loadtest-{}", uuid::Uuid::new_v4().simple());
        let mut child = Command::new(&binary)
            .args(["serve", "--data-dir"])
            .arg(data.path())
            .args([
                "--device-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .env("PAIRD_OPERATOR_TOKEN", &token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut admin_url, mut device_url) = (None, None);
        let banner = async {
            while let Some(line) = lines.next_line().await? {
                let line = line.trim();
                if let Some(url) = line.strip_prefix("device endpoint") {
                    device_url = Some(url.trim().to_string());
                }
                if let Some(url) = line.strip_prefix("admin API") {
                    admin_url = Some(url.trim().to_string());
                }
                if line.starts_with("operator token") {
                    break;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), banner)
            .await
            .context("paird did not start in 30 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Spawned {
            child,
            _data: data,
            admin_url: admin_url.context("paird printed no admin address")?,
            device_url: device_url.context("paird printed no device address")?,
            token,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
