//! `enroll --page CMD`: a portal page open on the organization while the devices pair.
//!
//! The load tester makes an organization key and runs `CMD` (through `sh -c`) with the portal's
//! address, the organization and the key in its environment (`PAIRD_PORTAL`, `PAIRD_ORG`,
//! `PAIRD_KEY`). The command opens the page (`scripts/portal-page.py hold` does it in a headless
//! Chromium) and prints a line `ready` once the page shows its first rows; the burst starts only
//! then. When the run ends its standard input is closed (the command closes the page and exits)
//! and, if it is still running 10 s later, it is killed. Comparing a run with `--page` and one
//! without gives what an open Devices page costs the pairing path.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::admin::Admin;

/// How long the page may take to show its first rows.
const PAGE_READY: Duration = Duration::from_secs(60);

/// How long the command may take to close the page once told.
const PAGE_CLOSE: Duration = Duration::from_secs(10);

/// The page's command, running until [`OpenPage::close`] (or killed when dropped).
#[derive(Debug)]
pub struct OpenPage {
    child: Child,
}

impl OpenPage {
    /// Tells the command to close the page (end of its input) and waits for it to exit.
    pub async fn close(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(PAGE_CLOSE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Runs `command` on `org` and waits for its `ready` line.
pub async fn open(admin: &Admin, org: &str, command: &str) -> anyhow::Result<OpenPage> {
    let key = admin.create_key(org, "loadtest page").await?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PAIRD_PORTAL", format!("{}/portal/", admin.base()))
        .env("PAIRD_ORG", org)
        .env("PAIRD_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running the page command {command:?}"))?;
    let stdout = child.stdout.take().context("the page command's output")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(PAGE_READY, async {
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "ready" {
                return Ok(true);
            }
            eprintln!("page: {line}");
        }
        Ok::<_, std::io::Error>(false)
    })
    .await
    .with_context(|| format!("the page command did not print `ready` within {PAGE_READY:?}"))??;
    anyhow::ensure!(ready, "the page command ended before it printed `ready`");
    // Keep reading its output, so that it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("page: {line}");
        }
    });
    Ok(OpenPage { child })
}

impl Admin {
    /// A new key of `org`, for a page or a client that signs in as the organization.
    pub async fn create_key(&self, org: &str, name: &str) -> anyhow::Result<String> {
        let key = self
            .post(
                &format!("/v1/organizations/{org}/keys"),
                json!({ "name": name }),
            )
            .await?;
        Ok(key["key"].as_str().context("the new key")?.to_string())
    }
}
