//! Fleets spread over processes.
//!
//! One process may hold at most 20,000 open files here, so a run that keeps more connections
//! open at once splits its devices over worker processes: this program started again with the
//! hidden `worker` subcommand, each running one [`Fleet`]. The parent sends a [`Command`] per
//! line on the worker's stdin; the worker answers with progress lines and then its [`Reply`] on
//! stdout, as JSON. A run that fits in one process keeps its fleet in process.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::fleet::{Command, Fleet, FleetSpec, Reply};

/// Connections one process keeps open at most: the open-file cap (20,000 here) less room for
/// the program's own files.
pub const CONNECTIONS_PER_PROCESS: u32 = 19_000;

/// A line a worker writes.
#[derive(Debug, Serialize, Deserialize)]
enum WorkerLine {
    Progress(u64),
    Reply(Reply),
}

/// Raises this process's soft open-file limit to its hard limit; returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

/// The fleets of a run: one in process, or one per worker process.
#[derive(Debug)]
pub struct Fleets {
    members: Vec<Member>,
}

#[derive(Debug)]
enum Member {
    Local(Box<Fleet>),
    Remote(Box<Worker>),
}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    progress: Arc<AtomicU64>,
}

impl Fleets {
    /// `processes` fleets (1: in this process), each with `spec`.
    pub async fn start(spec: &FleetSpec, processes: usize) -> anyhow::Result<Fleets> {
        if processes <= 1 {
            return Ok(Fleets {
                members: vec![Member::Local(Box::new(Fleet::new(spec.clone())))],
            });
        }
        let exe = std::env::current_exe().context("cannot find this program")?;
        let mut members = Vec::with_capacity(processes);
        for index in 0..processes {
            let mut spec = spec.clone();
            spec.first_port = (index as u64 * u64::from(client::connection::local_port_count())
                / processes as u64) as u32;
            let mut child = tokio::process::Command::new(&exe)
                .arg("worker")
                .arg(serde_json::to_string(&spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            members.push(Member::Remote(Box::new(Worker {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
                progress: Arc::new(AtomicU64::new(0)),
            })));
        }
        Ok(Fleets { members })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The worker processes' pids (none when the fleet runs in this process).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|member| match member {
                Member::Local(_) => None,
                Member::Remote(worker) => worker.child.id(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A reader of the units done in the current command, over every fleet, usable while the
    /// command runs.
    pub fn progress_probe(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let counters: Vec<Arc<AtomicU64>> = self
            .members
            .iter()
            .map(|member| match member {
                Member::Local(fleet) => Arc::clone(&fleet.progress),
                Member::Remote(worker) => Arc::clone(&worker.progress),
            })
            .collect();
        move || {
            counters
                .iter()
                .map(|counter| counter.load(Ordering::Relaxed))
                .sum()
        }
    }

    /// Sends each fleet its command (`command(i)` for fleet `i`) and waits for every reply.
    pub async fn run(&mut self, command: impl Fn(usize) -> Command) -> Vec<Reply> {
        let calls = self.members.iter_mut().enumerate().map(|(index, member)| {
            let command = command(index);
            async move {
                match member {
                    Member::Local(fleet) => fleet.handle(command).await,
                    Member::Remote(worker) => worker
                        .call(&command)
                        .await
                        .unwrap_or_else(|error| Reply::Failed(format!("worker: {error:#}"))),
                }
            }
        });
        futures_util::future::join_all(calls).await
    }

    /// Sends every fleet the same command.
    pub async fn all(&mut self, command: &Command) -> Vec<Reply> {
        self.run(|_| command.clone()).await
    }

    /// Closes every connection and ends the worker processes.
    pub async fn shutdown(mut self) {
        self.all(&Command::Close).await;
        for member in self.members {
            if let Member::Remote(worker) = member {
                let mut worker = *worker;
                drop(worker.stdin);
                let _ = tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await;
                let _ = worker.child.kill().await;
            }
        }
    }
}

impl Worker {
    async fn call(&mut self, command: &Command) -> anyhow::Result<Reply> {
        self.progress.store(0, Ordering::Relaxed);
        let mut line = serde_json::to_string(command)?;
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        loop {
            let line = self
                .lines
                .next_line()
                .await?
                .context("the worker process ended")?;
            match serde_json::from_str(&line)? {
                WorkerLine::Progress(done) => self.progress.store(done, Ordering::Relaxed),
                WorkerLine::Reply(reply) => return Ok(reply),
            }
        }
    }
}

/// The worker process: one fleet, driven over stdin and stdout.
pub async fn serve(spec: &str) -> anyhow::Result<()> {
    raise_open_file_limit();
    let spec: FleetSpec = serde_json::from_str(spec).context("fleet spec")?;
    let mut fleet = Fleet::new(spec);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let command: Command = serde_json::from_str(&line).context("command")?;
        let progress = Arc::clone(&fleet.progress);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
        // Progress lines every 200 ms while the command runs.
        let reporter = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let line = WorkerLine::Progress(progress.load(Ordering::Relaxed));
                if tx
                    .send(serde_json::to_string(&line).unwrap_or_default())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let handling = fleet.handle(command);
        tokio::pin!(handling);
        let reply = loop {
            tokio::select! {
                reply = &mut handling => break reply,
                Some(line) = rx.recv() => {
                    stdout.write_all(line.as_bytes()).await?;
                    stdout.write_all(b"\n").await?;
                    stdout.flush().await?;
                }
            }
        };
        reporter.abort();
        let mut line = serde_json::to_string(&WorkerLine::Reply(reply))?;
        line.push('\n');
        stdout.write_all(line.as_bytes()).await?;
        stdout.flush().await?;
    }
    fleet.handle(Command::Close).await;
    Ok(())
}
