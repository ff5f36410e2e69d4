//! The enroll scenario.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{ConnectOptions, Connection, DeviceIdentity, PairResult};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use protocol::{DeviceInfo, Encoding, ServerMessage};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::admin::Admin;
use crate::procstat;
use crate::{EnrollArgs, Mode};

/// The measured result.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub mode: String,
    pub devices: u32,
    pub licenses: u32,
    pub paired: u64,
    pub refused: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// From the first pairing request to the last answer.
    pub seconds: f64,
    pub pairings_per_second: f64,
    /// From a device's request to its configuration, in milliseconds.
    pub latency_ms: Percentiles,
    /// CPU time the server used during the measured phase (when its pid is known).
    pub server_cpu_seconds: Option<f64>,
    /// The server's CPU time per pairing, in microseconds.
    pub server_cpu_us_per_pairing: Option<f64>,
    /// CPU time this load tester used during the measured phase.
    pub loadtest_cpu_seconds: Option<f64>,
    /// The server's resident memory at the end of the measured phase, in MiB.
    pub server_rss_mib: Option<f64>,
    pub verification: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

pub struct Outcome {
    pub report: Report,
}

impl Outcome {
    pub fn table(&self) -> String {
        let r = &self.report;
        let mut out = String::new();
        let _ = writeln!(out, "scenario      enroll ({})", r.mode);
        let _ = writeln!(out, "devices       {} (licenses {})", r.devices, r.licenses);
        let _ = writeln!(out, "paired        {}", r.paired);
        for (reason, count) in &r.refused {
            let _ = writeln!(out, "refused       {count} {reason}");
        }
        for (error, count) in &r.errors {
            let _ = writeln!(out, "errors        {count} {error}");
        }
        let _ = writeln!(out, "duration      {:.3} s", r.seconds);
        let _ = writeln!(out, "throughput    {:.0} pairings/s", r.pairings_per_second);
        if let (Some(cpu), Some(per)) = (r.server_cpu_seconds, r.server_cpu_us_per_pairing) {
            let _ = writeln!(out, "server cpu    {cpu:.2} s ({per:.0} µs per pairing)");
        }
        if let Some(cpu) = r.loadtest_cpu_seconds {
            let _ = writeln!(out, "tester cpu    {cpu:.2} s");
        }
        if let Some(rss) = r.server_rss_mib {
            let _ = writeln!(out, "server rss    {rss:.1} MiB");
        }
        let l = &r.latency_ms;
        let _ = writeln!(
            out,
            "latency       p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            l.p50, l.p90, l.p99, l.max
        );
        match &r.verification {
            None => {}
            Some(problems) if problems.is_empty() => {
                let _ = writeln!(out, "verification  passed");
            }
            Some(problems) => {
                let _ = writeln!(out, "verification  FAILED ({} problems)", problems.len());
            }
        }
        out
    }

    pub fn verification_failures(&self) -> Option<String> {
        match &self.report.verification {
            Some(problems) if !problems.is_empty() => Some(problems.join("\n")),
            _ => None,
        }
    }
}

/// What one device ended with.
enum DeviceResult {
    Paired {
        device_id: String,
        license_id: String,
        latency: Duration,
    },
    Refused(String),
    Failed(String),
}

pub async fn run(
    admin: &Admin,
    device_url: &str,
    args: &EnrollArgs,
    server_pid: Option<u32>,
) -> anyhow::Result<Outcome> {
    let licenses = args.licenses.unwrap_or(args.devices);
    let (org, code) = admin.provision(licenses).await?;
    let encoding = match args.encoding.as_str() {
        "json" => Encoding::Json,
        _ => Encoding::Postcard,
    };
    let options = ConnectOptions::with_encoding(encoding);
    let started;
    let before;
    let mut open: Vec<Connection> = Vec::new();
    let results: Vec<DeviceResult> = match args.mode {
        Mode::Connected => {
            // Connect everyone first, a bounded number at a time.
            let connections: Vec<Result<Connection, String>> =
                futures_util::stream::iter(0..args.devices)
                    .map(|_| {
                        let options = options.clone();
                        async move {
                            Connection::connect(device_url, &options)
                                .await
                                .map_err(|error| error.to_string())
                        }
                    })
                    .buffer_unordered(args.concurrency.max(1))
                    .collect()
                    .await;
            started = Instant::now();
            before = (procstat::sample(server_pid), procstat::sample(None));
            let tasks: Vec<_> = connections
                .into_iter()
                .map(|connection| {
                    let code = code.clone();
                    tokio::spawn(async move {
                        match connection {
                            Ok(connection) => {
                                let (result, connection) = enroll_one(connection, &code).await;
                                (result, Some(connection))
                            }
                            Err(error) => (DeviceResult::Failed(format!("connect: {error}")), None),
                        }
                    })
                })
                .collect();
            // The devices stay connected: closing is not part of what is measured.
            let mut results = Vec::with_capacity(tasks.len());
            for task in tasks {
                match task.await {
                    Ok((result, connection)) => {
                        results.push(result);
                        open.extend(connection);
                    }
                    Err(error) => results.push(DeviceResult::Failed(error.to_string())),
                }
            }
            results
        }
        Mode::Fresh => {
            started = Instant::now();
            before = (procstat::sample(server_pid), procstat::sample(None));
            let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
            let tasks: Vec<_> = (0..args.devices)
                .map(|_| {
                    let code = code.clone();
                    let options = options.clone();
                    let limit = Arc::clone(&limit);
                    let url = device_url.to_string();
                    tokio::spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        let begin = Instant::now();
                        match Connection::connect(&url, &options).await {
                            Ok(connection) => {
                                let (result, connection) = enroll_one(connection, &code).await;
                                connection.close().await;
                                match result {
                                    DeviceResult::Paired {
                                        device_id,
                                        license_id,
                                        ..
                                    } => DeviceResult::Paired {
                                        device_id,
                                        license_id,
                                        latency: begin.elapsed(),
                                    },
                                    other => other,
                                }
                            }
                            Err(error) => DeviceResult::Failed(format!("connect: {error}")),
                        }
                    })
                })
                .collect();
            join(tasks).await
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let after = (procstat::sample(server_pid), procstat::sample(None));
    let server_cpu = match (before.0, after.0) {
        (Some(before), Some(after)) => Some(after.cpu_seconds - before.cpu_seconds),
        _ => None,
    };
    let loadtest_cpu = match (before.1, after.1) {
        (Some(before), Some(after)) => Some(after.cpu_seconds - before.cpu_seconds),
        _ => None,
    };
    futures_util::stream::iter(open)
        .for_each_concurrent(args.concurrency.max(1), |connection| connection.close())
        .await;

    let mut histogram = Histogram::<u64>::new(3)?;
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut paired: HashMap<String, String> = HashMap::new();
    let mut told_licenses = Vec::new();
    for result in &results {
        match result {
            DeviceResult::Paired {
                device_id,
                license_id,
                latency,
            } => {
                let _ = histogram.record(
                    u64::try_from(latency.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
                paired.insert(device_id.clone(), license_id.clone());
                told_licenses.push(license_id.clone());
            }
            DeviceResult::Refused(reason) => *refused.entry(reason.clone()).or_default() += 1,
            DeviceResult::Failed(error) => *errors.entry(error.clone()).or_default() += 1,
        }
    }
    let verification = if args.verify {
        Some(
            verify(
                admin,
                &org,
                args.devices,
                licenses,
                &paired,
                &told_licenses,
                &refused,
                &errors,
            )
            .await?,
        )
    } else {
        None
    };
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let report = Report {
        scenario: "enroll",
        mode: format!("{:?}", args.mode).to_lowercase(),
        devices: args.devices,
        licenses,
        paired: paired.len() as u64,
        refused,
        errors,
        seconds,
        pairings_per_second: if seconds > 0.0 {
            paired.len() as f64 / seconds
        } else {
            0.0
        },
        latency_ms: if histogram.is_empty() {
            Percentiles::default()
        } else {
            Percentiles {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                max: histogram.max() as f64 / 1000.0,
            }
        },
        server_cpu_seconds: server_cpu,
        server_cpu_us_per_pairing: server_cpu
            .filter(|_| !paired.is_empty())
            .map(|cpu| cpu * 1e6 / paired.len() as f64),
        loadtest_cpu_seconds: loadtest_cpu,
        server_rss_mib: after
            .0
            .map(|sample| sample.rss_bytes as f64 / (1024.0 * 1024.0)),
        verification,
    };
    Ok(Outcome { report })
}

/// Waits for every device's task, in order.
async fn join(tasks: Vec<tokio::task::JoinHandle<DeviceResult>>) -> Vec<DeviceResult> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(
            task.await
                .unwrap_or_else(|error| DeviceResult::Failed(error.to_string())),
        );
    }
    results
}

/// Pairs and waits for the configuration; returns the connection, still open.
async fn enroll_one(mut connection: Connection, code: &str) -> (DeviceResult, Connection) {
    let identity = match DeviceIdentity::generate() {
        Ok(identity) => identity,
        Err(error) => return (DeviceResult::Failed(error.to_string()), connection),
    };
    let info = DeviceInfo {
        name: "loadtest device".into(),
        model: "loadtest".into(),
        os: "loadtest".into(),
        app_version: env!("CARGO_PKG_VERSION").into(),
    };
    let begin = Instant::now();
    let result = match connection.pair(code, &identity, &info).await {
        Ok(PairResult::Paired(paired)) => match connection.recv().await {
            Ok(ServerMessage::Configuration(_)) => DeviceResult::Paired {
                device_id: paired.device_id.to_string(),
                license_id: paired.license_id.to_string(),
                latency: begin.elapsed(),
            },
            Ok(other) => DeviceResult::Failed(format!("expected a configuration, got {other:?}")),
            Err(error) => DeviceResult::Failed(format!("after pairing: {error}")),
        },
        Ok(PairResult::Refused(refused)) => {
            DeviceResult::Refused(refused.reason.as_str().to_string())
        }
        Err(error) => DeviceResult::Failed(format!("pair: {error}")),
    };
    (result, connection)
}

/// Checks the outcome against what the admin API lists. Returns the problems found.
#[allow(clippy::too_many_arguments)]
async fn verify(
    admin: &Admin,
    org: &str,
    devices: u32,
    licenses: u32,
    paired: &HashMap<String, String>,
    told_licenses: &[String],
    refused: &BTreeMap<String, u64>,
    errors: &BTreeMap<String, u64>,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let listed = admin
        .all(&format!("/v1/organizations/{org}/devices"))
        .await?;
    let listed: HashMap<String, String> = listed
        .iter()
        .filter_map(|device| {
            Some((
                device["id"].as_str()?.to_string(),
                device["license_id"].as_str()?.to_string(),
            ))
        })
        .collect();
    for (device, license) in paired {
        match listed.get(device) {
            None => problems.push(format!(
                "device {device} was told \"paired\" but is not listed"
            )),
            Some(listed_license) if listed_license != license => problems.push(format!(
                "device {device} was told license {license} but holds {listed_license}"
            )),
            Some(_) => {}
        }
    }
    let distinct: HashSet<&String> = told_licenses.iter().collect();
    if distinct.len() != told_licenses.len() {
        problems.push(format!(
            "{} licenses were handed out more than once",
            told_licenses.len() - distinct.len()
        ));
    }
    let held: HashSet<&String> = listed.values().collect();
    if held.len() != listed.len() {
        problems.push("the server lists a license held by two devices".into());
    }
    let summary = admin
        .get(&format!("/v1/organizations/{org}/licenses/summary"))
        .await?;
    let assigned = summary["assigned"].as_u64().unwrap_or(u64::MAX);
    if assigned != paired.len() as u64 {
        problems.push(format!(
            "{} devices were told \"paired\" but the server counts {assigned} assigned licenses",
            paired.len()
        ));
    }
    let failed: u64 = errors.values().sum();
    if failed == 0 {
        let expected_refusals = u64::from(devices.saturating_sub(licenses));
        let no_license = refused.get("no_free_license").copied().unwrap_or(0);
        let other: u64 = refused.values().sum::<u64>() - no_license;
        if no_license != expected_refusals || other != 0 {
            problems.push(format!(
                "expected {expected_refusals} no_free_license refusals and no others, got {refused:?}"
            ));
        }
    } else {
        problems.push(format!("{failed} devices failed with errors: {errors:?}"));
    }
    Ok(problems)
}
