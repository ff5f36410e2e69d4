//! What a run measured: phases with throughput, latency percentiles and failures by reason, named
//! figures, and the verification's findings. Printed as a table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::procstat;

#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub scenario: String,
    pub settings: BTreeMap<String, String>,
    pub phases: Vec<Phase>,
    /// Named results: memory per connection, push times, …
    pub figures: BTreeMap<String, f64>,
    /// `None` without `--verify`; otherwise the problems found (empty: passed).
    pub verification: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Default)]
pub struct Phase {
    pub name: String,
    pub attempted: u64,
    pub ok: u64,
    pub seconds: f64,
    /// `ok` per second.
    pub per_second: f64,
    pub latency_ms: Option<Percentiles>,
    pub refused: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Server CPU time (all threads; every node of a cluster) over the phase, per success, when
    /// the pids are known.
    pub server_cpu_us_per_op: Option<f64>,
    /// Server CPU seconds over the phase, every node together.
    pub server_cpu_seconds: Option<f64>,
    /// The same for each node, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_cpu_seconds: Vec<f64>,
    /// CPU seconds of the PostgreSQL server (postmaster and backends) over the phase, when this
    /// program started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_cpu_seconds: Option<f64>,
    /// The load tester's CPU seconds over the phase, its worker processes included.
    pub tester_cpu_seconds: Option<f64>,
}

#[derive(Debug, Serialize, Default, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of latencies in microseconds, in milliseconds; `None` when empty.
    pub fn of(latencies_us: impl IntoIterator<Item = u64>) -> Option<Percentiles> {
        let mut histogram = Histogram::<u64>::new(3).ok()?;
        for latency in latencies_us {
            let _ = histogram.record(latency.max(1));
        }
        if histogram.is_empty() {
            return None;
        }
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Some(Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: histogram.max() as f64 / 1000.0,
        })
    }
}

/// CPU samples at the start of a phase.
#[derive(Debug)]
pub struct Meter {
    /// Every server process (the nodes of a cluster), with its sample at the start.
    servers: Vec<(u32, Option<procstat::Sample>)>,
    /// The database server and its CPU seconds at the start.
    database: Option<(u32, Option<f64>)>,
    tester: Option<procstat::Sample>,
    /// The load tester's worker processes, with their samples at the start.
    workers: Vec<(u32, Option<procstat::Sample>)>,
}

impl Meter {
    pub fn start(server_pids: &[u32], database_pid: Option<u32>) -> Meter {
        Meter {
            servers: server_pids
                .iter()
                .map(|&pid| (pid, procstat::sample(pid)))
                .collect(),
            database: database_pid.map(|pid| (pid, procstat::tree_cpu_seconds(pid))),
            tester: procstat::sample_self(),
            workers: Vec::new(),
        }
    }

    /// Counts the CPU of the load tester's worker processes `pids` as the tester's too.
    pub fn with_workers(mut self, pids: &[u32]) -> Meter {
        self.workers = pids
            .iter()
            .map(|&pid| (pid, procstat::sample(pid)))
            .collect();
        self
    }

    /// Fills in the phase's CPU figures.
    pub fn finish(&self, phase: &mut Phase) {
        let mut nodes = Vec::with_capacity(self.servers.len());
        for (pid, before) in &self.servers {
            if let (Some(before), Some(after)) = (before, procstat::sample(*pid)) {
                nodes.push(after.cpu_seconds - before.cpu_seconds);
            }
        }
        if !nodes.is_empty() && nodes.len() == self.servers.len() {
            let total: f64 = nodes.iter().sum();
            phase.server_cpu_seconds = Some(total);
            if phase.ok > 0 {
                phase.server_cpu_us_per_op = Some(total * 1e6 / phase.ok as f64);
            }
            if nodes.len() > 1 {
                phase.node_cpu_seconds = nodes;
            }
        }
        if let Some((pid, Some(before))) = self.database
            && let Some(after) = procstat::tree_cpu_seconds(pid)
        {
            phase.database_cpu_seconds = Some(after - before);
        }
        if let (Some(before), Some(after)) = (self.tester, procstat::sample_self()) {
            let workers: f64 = self
                .workers
                .iter()
                .filter_map(|(pid, before)| {
                    Some(procstat::sample(*pid)?.cpu_seconds - before.as_ref()?.cpu_seconds)
                })
                .sum();
            phase.tester_cpu_seconds = Some(after.cpu_seconds - before.cpu_seconds + workers);
        }
    }
}

impl Phase {
    pub fn new(name: &str) -> Phase {
        Phase {
            name: name.to_string(),
            ..Phase::default()
        }
    }

    pub fn set_duration(&mut self, seconds: f64) {
        self.seconds = seconds;
        self.per_second = if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        };
    }
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verification
            .as_ref()
            .is_none_or(|problems| problems.is_empty())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario   {}", self.scenario);
        for (key, value) in &self.settings {
            let _ = writeln!(out, "  {key:<22} {value}");
        }
        for phase in &self.phases {
            let _ = writeln!(out, "phase      {}", phase.name);
            let _ = writeln!(
                out,
                "  ok                     {} of {} in {:.3} s: {:.0}/s",
                phase.ok, phase.attempted, phase.seconds, phase.per_second
            );
            if let Some(l) = phase.latency_ms {
                let _ = writeln!(
                    out,
                    "  latency                p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    l.p50, l.p90, l.p99, l.max
                );
            }
            for (reason, count) in &phase.refused {
                let _ = writeln!(out, "  refused                {count} {reason}");
            }
            for (error, count) in &phase.errors {
                let _ = writeln!(out, "  error                  {count} {error}");
            }
            if let Some(cpu) = phase.server_cpu_us_per_op {
                let _ = writeln!(out, "  server cpu             {cpu:.0} µs per success");
            }
            if let Some(seconds) = phase.server_cpu_seconds {
                let _ = write!(out, "  server cpu seconds     {seconds:.2} s");
                if !phase.node_cpu_seconds.is_empty() {
                    let nodes: Vec<String> = phase
                        .node_cpu_seconds
                        .iter()
                        .map(|seconds| format!("{seconds:.2}"))
                        .collect();
                    let _ = write!(out, " (nodes: {})", nodes.join(", "));
                }
                let _ = writeln!(out);
            }
            if let Some(seconds) = phase.database_cpu_seconds {
                let _ = writeln!(out, "  database cpu           {seconds:.2} s");
            }
            if let Some(cpu) = phase.tester_cpu_seconds {
                let _ = writeln!(out, "  tester cpu             {cpu:.2} s");
            }
        }
        if !self.figures.is_empty() {
            let _ = writeln!(out, "figures");
            for (name, value) in &self.figures {
                let _ = writeln!(out, "  {name:<34} {value:.1}");
            }
        }
        match &self.verification {
            None => {}
            Some(problems) if problems.is_empty() => {
                let _ = writeln!(out, "verification passed");
            }
            Some(problems) => {
                let _ = writeln!(out, "verification FAILED ({} problems)", problems.len());
                for problem in problems.iter().take(20) {
                    let _ = writeln!(out, "  {problem}");
                }
            }
        }
        out
    }
}

/// Runs `work` with a live progress bar (on a terminal, unless `quiet`) fed by `probe`.
pub async fn with_progress<T>(
    label: &str,
    total: u64,
    quiet: bool,
    probe: impl Fn() -> u64 + Send + 'static,
    work: impl Future<Output = T>,
) -> T {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(probe());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let result = work.await;
    ticker.abort();
    bar.finish_and_clear();
    result
}
