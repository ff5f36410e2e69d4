//! The scenarios: enroll, hold, push, race and crash.
//!
//! Each provisions what it needs through the admin API, drives the fleets phase by phase,
//! measures every phase and, with `--verify`, checks the outcome against the admin API.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::admin::{Admin, Provisioned, configuration_body};
use crate::cluster::SpawnedCluster;
use crate::fleet::{Command, DeviceResult, FleetSpec, Outcome, PairPlan, Reply, Tally, now_us};
use crate::procstat;
use crate::report::{Meter, Percentiles, Phase, Report, with_progress};
use crate::spawn::Spawned;
use crate::verify::{Expectation, verify};
use crate::workers::{CONNECTIONS_PER_PROCESS, Fleets};

/// Connections per source address. The ephemeral range holds about 28,000 ports per address,
/// but the kernel's search for a free port slows sharply as the range fills (TIME_WAIT sockets of
/// earlier runs count): measured here, 19,000 connections from one address opened at 760/s,
/// from four at 6,300/s. So a new address every 10,000 connections.
const CONNECTIONS_PER_SOURCE: u32 = 10_000;

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Connections being opened (or fresh pairings in flight) at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Check the outcome against the admin API; exit with status 1 if it does not hold.
    #[arg(long)]
    pub verify: bool,
    /// Give up after this long (the run always stops by itself).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Worker processes holding the devices (default: enough to stay under the open-file cap
    /// of 20,000 per process).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Loopback source addresses to connect from, 127.0.0.1 upwards (default: enough for the
    /// ephemeral port range: one per 10,000 connections). Only for a loopback server.
    #[arg(long)]
    pub sources: Option<u32>,
    /// JSON text frames instead of postcard.
    #[arg(long)]
    pub json_frames: bool,
    /// Bound on each connection's TCP connect plus WebSocket handshake.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Devices do not acknowledge configurations (diagnosis: a push without the
    /// acknowledgements' work on the server and its database).
    #[arg(long)]
    pub no_acks: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    /// Every device connects first (the app is open at the scan prompt), then all pair at once.
    Connected,
    /// Each device opens a fresh connection, pairs, receives its configuration and closes.
    Fresh,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Codes {
    /// One reusable code for every device.
    Reusable,
    /// One single-use code per license; device `i` uses the code of license `i`.
    SingleUse,
}

#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// Devices to enroll.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Licenses to provision (default: one per device). Fewer than devices makes a race.
    #[arg(long)]
    pub licenses: Option<u32>,
    #[arg(long, value_enum, default_value = "connected")]
    pub mode: Mode,
    #[arg(long, value_enum, default_value = "reusable")]
    pub codes: Codes,
    /// Offered pairings per second (open loop; latency counts from each device's scheduled
    /// time). Without it every device pairs at once.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Devices stay connected after pairing (reading, acknowledging) until the run ends.
    #[arg(long)]
    pub stay: bool,
    /// Keep the organization's live feed open during the run, as a portal page would, and
    /// report what it told.
    #[arg(long)]
    pub watch: bool,
    /// A command that opens a portal page on the organization during the run (for example
    /// `python3 scripts/portal-page.py hold`): run with `PAIRD_PORTAL`, `PAIRD_ORG` and
    /// `PAIRD_KEY` set, the burst starts once it prints `ready`, and it is killed at the end.
    #[arg(long, value_name = "COMMAND")]
    pub page: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    /// Paired devices to hold connected.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// How long they stay connected, idle (the server's keepalive pings keep them).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Connected devices the configuration goes to.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Edits to make, one after the other; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    pub edits: u32,
    /// Pairings offered per second while the devices pair, before the edits (default: all at
    /// once). A burst larger than the server pairs in 15 s (its actors' call timeout) gets
    /// `unavailable` refusals: 100,000 devices on a six-node cluster here.
    #[arg(long)]
    pub pair_rate: Option<f64>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct RaceArgs {
    /// Devices pairing with one reusable code.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Free licenses for them (fewer than devices).
    #[arg(long, default_value_t = 900)]
    pub licenses: u32,
    /// Devices pairing at the same moment with one single-use code (its license is extra).
    #[arg(long, default_value_t = 100)]
    pub contenders: u32,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct CrashArgs {
    /// Devices in each cycle (enrolling in the burst the server is killed in, or paired before
    /// the push or the bulk command it is killed in). Default: 10,000 for one cycle, 1,000 per
    /// cycle with `--cycles`, so that 100 cycles take minutes.
    #[arg(long)]
    pub devices: Option<u32>,
    /// Kill the server (SIGKILL) once this fraction of the devices has been answered (one
    /// cycle; with several, each cycle's moment is drawn at random).
    #[arg(long, default_value_t = 0.5)]
    pub kill_at: f64,
    /// Kill and restart this many times in a row, each cycle on an organization of its own and
    /// of a kind drawn at random: during an enrollment burst, a configuration push or a bulk
    /// unpair.
    #[arg(long, default_value_t = 1)]
    pub cycles: u32,
    /// Seed of the cycles' kinds and moments (printed; default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

impl CrashArgs {
    /// Devices in each cycle: `--devices`, or the default for one cycle or several.
    pub fn devices_per_cycle(&self) -> u32 {
        self.devices
            .unwrap_or(if self.cycles > 1 { 1_000 } else { 10_000 })
    }
}

/// The server under test: one paird, or the nodes of a cluster.
#[derive(Debug)]
pub struct Target {
    /// The admin API the tester provisions through, edits through and verifies against (in a
    /// cluster, node 1's: an edit there reaches the devices of every node).
    pub admin: Admin,
    /// Device endpoints; devices are spread over them round robin.
    pub device_urls: Vec<String>,
    /// Every server process on this machine, for CPU time and memory (empty: not reported).
    pub server_pids: Vec<u32>,
    /// Each node's admin API, for its own status (connections held), when known.
    pub node_admins: Vec<Admin>,
    /// The PostgreSQL server (postmaster) this program started, for its CPU time.
    pub database_pid: Option<u32>,
    /// The server this program started, if it did.
    pub spawned: Option<Spawned>,
    /// The cluster this program started, if it did.
    pub cluster: Option<SpawnedCluster>,
    /// No progress bars.
    pub quiet: bool,
}

impl Target {
    /// A target of one server reached at `admin` and `device_url`.
    pub fn single(admin: Admin, device_url: &str, server_pid: Option<u32>) -> Target {
        Target {
            admin,
            device_urls: vec![device_url.to_string()],
            server_pids: server_pid.into_iter().collect(),
            node_admins: Vec::new(),
            database_pid: None,
            spawned: None,
            cluster: None,
            quiet: false,
        }
    }

    /// CPU samples of the servers, the database and the tester, at the start of a phase.
    pub(crate) fn meter(&self) -> Meter {
        Meter::start(&self.server_pids, self.database_pid)
    }

    /// Each server's memory now (`None` for one that cannot be read).
    fn memory(&self) -> Vec<Option<u64>> {
        self.server_pids
            .iter()
            .map(|&pid| procstat::sample(pid).map(|sample| sample.rss_bytes))
            .collect()
    }

    /// Open device connections of each node, from its status (when the nodes' admin APIs are
    /// known).
    async fn node_connections(&self) -> Vec<u64> {
        let mut counts = Vec::with_capacity(self.node_admins.len());
        for admin in &self.node_admins {
            let status = admin.get("/v1/status").await.unwrap_or_default();
            counts.push(
                status["device_endpoint"]["open_connections"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        counts
    }
}

/// A scenario's devices and bookkeeping.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) target: &'a mut Target,
    pub(crate) fleets: Fleets,
    /// (first global device number, devices) of each fleet.
    shares: Vec<(u32, u32)>,
    pub(crate) report: Report,
    common: Common,
}

/// Splits `total` devices into `parts` contiguous shares.
fn split(total: u32, parts: usize) -> Vec<(u32, u32)> {
    let parts = parts.max(1) as u32;
    let base = total / parts;
    let extra = total % parts;
    let mut offset = 0;
    (0..parts)
        .map(|part| {
            let count = base + u32::from(part < extra);
            let share = (offset, count);
            offset += count;
            share
        })
        .collect()
}

/// Source addresses for `connections` connections to `device_urls`: several loopback addresses
/// past the ephemeral port range of one, none for a remote server.
pub(crate) fn sources(device_urls: &[String], connections: u32, asked: Option<u32>) -> Vec<IpAddr> {
    let loopback = !device_urls.is_empty()
        && device_urls
            .iter()
            .all(|url| url.contains("://127.") || url.contains("://localhost"));
    if !loopback {
        return Vec::new();
    }
    let count = asked.unwrap_or_else(|| connections.div_ceil(CONNECTIONS_PER_SOURCE));
    if count <= 1 && asked.is_none() {
        return Vec::new();
    }
    (1..=count.clamp(1, 250))
        .map(|host| IpAddr::from([127, 0, 0, host as u8]))
        .collect()
}

impl<'a> Run<'a> {
    /// Fleets for `devices` devices, `held` of them connected at once at most.
    pub(crate) async fn start(
        target: &'a mut Target,
        scenario: &str,
        devices: u32,
        held: u32,
        common: &Common,
    ) -> anyhow::Result<Run<'a>> {
        let processes = common
            .workers
            .unwrap_or_else(|| held.div_ceil(CONNECTIONS_PER_PROCESS).max(1) as usize);
        let spec = FleetSpec {
            device_urls: target.device_urls.clone(),
            json: common.json_frames,
            sources: sources(&target.device_urls, devices, common.sources),
            first_port: 0,
            concurrency: common.concurrency.div_ceil(processes).max(1),
            connect_timeout_ms: common.connect_timeout.as_millis() as u64,
            no_acks: common.no_acks,
        };
        let mut report = Report {
            scenario: scenario.to_string(),
            ..Report::default()
        };
        report
            .settings
            .insert("devices".into(), devices.to_string());
        report
            .settings
            .insert("processes".into(), processes.to_string());
        if target.device_urls.len() > 1 {
            report.settings.insert(
                "device endpoints".into(),
                target.device_urls.len().to_string(),
            );
        }
        if let Some(cluster) = &target.cluster {
            report
                .settings
                .insert("nodes".into(), cluster.nodes.len().to_string());
            report.settings.insert(
                "database".into(),
                "PostgreSQL (throwaway), fsync on, synchronous_commit on".into(),
            );
        }
        report.settings.insert(
            "source addresses".into(),
            spec.sources.len().max(1).to_string(),
        );
        report
            .settings
            .insert("concurrency".into(), common.concurrency.to_string());
        let fleets = Fleets::start(&spec, processes).await?;
        Ok(Run {
            target,
            shares: split(devices, fleets.len()),
            fleets,
            report,
            common: common.clone(),
        })
    }

    /// CPU samples of the servers, the database, this process and its worker processes.
    fn meter(&self) -> Meter {
        self.target.meter().with_workers(&self.fleets.pids())
    }

    pub(crate) fn setting(&mut self, key: &str, value: impl ToString) {
        self.report.settings.insert(key.into(), value.to_string());
    }

    /// Opens every device's connection, idle: the handshake phase.
    pub(crate) async fn connect(&mut self) -> Phase {
        let meter = self.meter();
        let begin = Instant::now();
        let total: u32 = self.shares.iter().map(|share| share.1).sum();
        let shares = self.shares.clone();
        let probe = self.fleets.progress_probe();
        let replies = with_progress(
            "connect",
            u64::from(total),
            self.target.quiet,
            probe,
            self.fleets.run(|fleet| Command::Connect {
                count: shares[fleet].1,
            }),
        )
        .await;
        let mut phase = tally_phase("connect (WebSocket handshakes)", replies);
        phase.attempted = u64::from(total);
        phase.set_duration(begin.elapsed().as_secs_f64());
        meter.finish(&mut phase);
        phase
    }

    /// One pairing wave; `codes` gives each global device its code. Returns the phase and
    /// every device's result, by global device number.
    pub(crate) async fn pair(
        &mut self,
        name: &str,
        codes: &dyn Fn(u32) -> String,
        fresh: bool,
        stay: bool,
        rate: Option<f64>,
    ) -> (Phase, Vec<(u32, DeviceResult)>) {
        let start_us = now_us() + 100_000;
        let fleets = self.fleets.len() as f64;
        let plans: Vec<PairPlan> = self
            .shares
            .iter()
            .map(|&(offset, count)| PairPlan {
                codes: (offset..offset + count).map(codes).collect(),
                fresh,
                devices: count,
                stay,
                rate: rate.map(|rate| rate / fleets),
                start_us,
            })
            .collect();
        let total: u32 = self.shares.iter().map(|share| share.1).sum();
        let meter = self.meter();
        let probe = self.fleets.progress_probe();
        let replies = with_progress(
            name,
            u64::from(total),
            self.target.quiet,
            probe,
            self.fleets.run(|fleet| Command::Pair(plans[fleet].clone())),
        )
        .await;
        let mut phase = Phase::new(name);
        let mut results = Vec::new();
        let mut latencies = Vec::new();
        let mut last_us = start_us;
        for (fleet, reply) in replies.into_iter().enumerate() {
            let offset = self.shares[fleet].0;
            match reply {
                Reply::Paired(devices) => {
                    for result in devices {
                        phase.attempted += 1;
                        last_us = last_us.max(result.done_us);
                        match &result.outcome {
                            Outcome::Paired { latency_us, .. } => {
                                phase.ok += 1;
                                latencies.push(*latency_us);
                            }
                            Outcome::Refused(reason) => {
                                *phase.refused.entry(reason.clone()).or_default() += 1;
                            }
                            Outcome::Failed(error) => {
                                *phase.errors.entry(error.clone()).or_default() += 1;
                            }
                        }
                        results.push((offset + result.device, result));
                    }
                }
                other => {
                    *phase.errors.entry(unexpected(&other)).or_default() += 1;
                }
            }
        }
        phase.latency_ms = Percentiles::of(latencies);
        phase.set_duration(last_us.saturating_sub(start_us) as f64 / 1e6);
        meter.finish(&mut phase);
        if !fresh && !stay {
            self.fleets.all(&Command::CloseFinished).await;
        }
        (phase, results)
    }

    /// Waits until every connected device has received and acknowledged `revision`.
    pub(crate) async fn wait_revision(&mut self, revision: u64) -> crate::fleet::RevisionTimes {
        let timeout_ms = self.common.timeout.as_millis() as u64;
        let total: u32 = self.shares.iter().map(|share| share.1).sum();
        let probe = self.fleets.progress_probe();
        let replies = with_progress(
            &format!("revision {revision}"),
            u64::from(total),
            self.target.quiet,
            probe,
            self.fleets.all(&Command::WaitRevision {
                revision,
                timeout_ms,
            }),
        )
        .await;
        let mut all = crate::fleet::RevisionTimes::default();
        for reply in replies {
            if let Reply::Revision(times) = reply {
                all.received_us.extend(times.received_us);
                all.received_endpoints.extend(times.received_endpoints);
                all.acknowledged_us.extend(times.acknowledged_us);
                all.missing += times.missing;
            }
        }
        all
    }

    /// Connected devices now, and connections lost since the last count.
    pub(crate) async fn status(&mut self) -> (u64, BTreeMap<String, u64>) {
        let mut connected = 0;
        let mut lost = BTreeMap::new();
        for reply in self.fleets.all(&Command::Status).await {
            if let Reply::Status {
                connected: count,
                lost: reasons,
            } = reply
            {
                connected += count;
                for (reason, count) in reasons {
                    *lost.entry(reason).or_default() += count;
                }
            }
        }
        (connected, lost)
    }

    /// Checks the outcome when asked (adding the problems found before), closes the fleets and
    /// returns the report.
    pub(crate) async fn finish(
        mut self,
        verify_asked: bool,
        org: &str,
        expectation: &Expectation,
        mut problems: Vec<String>,
    ) -> anyhow::Result<Report> {
        if verify_asked {
            problems.extend(verify(&self.target.admin, org, expectation).await?);
            self.report.verification = Some(problems);
        }
        self.fleets.shutdown().await;
        Ok(self.report)
    }
}

fn unexpected(reply: &Reply) -> String {
    match reply {
        Reply::Failed(error) => error.clone(),
        other => format!("unexpected reply {other:?}"),
    }
}

/// A phase from the fleets' connect or resume tallies.
pub(crate) fn tally_phase(name: &str, replies: Vec<Reply>) -> Phase {
    let mut phase = Phase::new(name);
    let mut latencies = Vec::new();
    for reply in replies {
        match reply {
            Reply::Connected(tally) | Reply::Resumed(tally) => {
                let Tally {
                    ok,
                    latencies_us,
                    errors,
                } = tally;
                phase.ok += ok;
                phase.attempted += ok + errors.values().sum::<u64>();
                latencies.extend(latencies_us);
                for (error, count) in errors {
                    *phase.errors.entry(error).or_default() += count;
                }
            }
            other => *phase.errors.entry(unexpected(&other)).or_default() += 1,
        }
    }
    phase.latency_ms = Percentiles::of(latencies);
    phase
}

/// Adds a wave's results to an expectation (a device told "paired" that failed before its
/// configuration counts as told); returns devices told "paired" again with their existing
/// pairing (`already_paired`).
pub(crate) fn expect_results(
    expectation: &mut Expectation,
    results: &[(u32, DeviceResult)],
    problems: &mut Vec<String>,
) -> u64 {
    let mut again = 0;
    for (_, result) in results {
        match &result.outcome {
            Outcome::Paired {
                device_id,
                license_id,
                already_paired,
                ..
            } => {
                again += u64::from(*already_paired);
                expectation.told_paired(device_id, license_id, problems);
            }
            Outcome::Refused(reason) => {
                *expectation.refused.entry(reason.clone()).or_default() += 1;
            }
            Outcome::Failed(error) => {
                *expectation.errors.entry(error.clone()).or_default() += 1;
                // Told "paired", then cut off before the configuration: still a promise.
                if let Some((device_id, license_id)) = &result.told_before_failing {
                    expectation.told_paired(device_id, license_id, problems);
                }
            }
        }
    }
    again
}

/// `enroll`: devices pair with a reusable code or one single-use code each.
pub async fn enroll(target: &mut Target, args: &EnrollArgs) -> anyhow::Result<Report> {
    let licenses = args.licenses.unwrap_or(args.devices);
    let provisioned = target.admin.provision(licenses).await?;
    let codes = match args.codes {
        Codes::Reusable => vec![target.admin.reusable_code(&provisioned.org).await?],
        Codes::SingleUse => {
            target
                .admin
                .single_use_codes(&provisioned.org, &provisioned.license_ids, 600)
                .await?
        }
    };
    anyhow::ensure!(!codes.is_empty(), "no licenses, so no single-use codes");
    let held = if args.mode == Mode::Connected || args.stay {
        args.devices
    } else {
        args.common.concurrency as u32
    };
    let watcher = if args.watch {
        let feed = target.admin.open_feed(&provisioned.org).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        Some((stop, tokio::spawn(feed.tally(stopped))))
    } else {
        None
    };
    let page = match &args.page {
        Some(command) => Some(crate::page::open(&target.admin, &provisioned.org, command).await?),
        None => None,
    };
    let mut run = Run::start(target, "enroll", args.devices, held, &args.common).await?;
    run.setting("licenses", licenses);
    run.setting("live feed watched", args.watch);
    run.setting("portal page open", page.is_some());
    run.setting("mode", format!("{:?}", args.mode).to_lowercase());
    run.setting("codes", format!("{:?}", args.codes).to_lowercase());
    if let Some(rate) = args.rate {
        run.setting("offered rate", format!("{rate}/s"));
    }
    if args.mode == Mode::Connected {
        let phase = run.connect().await;
        run.report.phases.push(phase);
    }
    let code_of = |device: u32| codes[device as usize % codes.len()].clone();
    let (phase, results) = run
        .pair(
            "pair",
            &code_of,
            args.mode == Mode::Fresh,
            args.stay,
            args.rate,
        )
        .await;
    run.report.phases.push(phase);
    if let Some(page) = page {
        page.close().await;
    }
    if let Some((stop, tally)) = watcher {
        let _ = stop.send(());
        let tally = tally.await.context("the live-feed watcher")?;
        run.report
            .figures
            .insert("live feed events".into(), tally.events as f64);
        run.report
            .figures
            .insert("live feed device ids".into(), tally.device_ids as f64);
    }

    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    let winners = u64::from(args.devices.min(licenses));
    expectation.assigned = Some(winners);
    let refusal = match args.codes {
        Codes::Reusable => "no_free_license",
        Codes::SingleUse => "code_used",
    };
    let losers = u64::from(args.devices) - winners;
    expectation.refusals = Some(if losers > 0 {
        BTreeMap::from([(refusal.to_string(), losers)])
    } else {
        BTreeMap::new()
    });
    if args.codes == Codes::SingleUse {
        bind_single_use(&mut expectation, &results, &provisioned, codes.len());
    }
    run.finish(args.common.verify, &provisioned.org, &expectation, problems)
        .await
}

/// Devices that paired with a single-use code must hold that code's license.
fn bind_single_use(
    expectation: &mut Expectation,
    results: &[(u32, DeviceResult)],
    provisioned: &Provisioned,
    codes: usize,
) {
    for (device, result) in results {
        if let Outcome::Paired { device_id, .. } = &result.outcome {
            let license = &provisioned.license_ids[*device as usize % codes];
            expectation.bound.insert(device_id.clone(), license.clone());
        }
    }
}

/// `hold`: paired devices reconnect and stay connected, idle; reports the server's memory per
/// connection.
pub async fn hold(target: &mut Target, args: &HoldArgs) -> anyhow::Result<Report> {
    let provisioned = target.admin.provision(args.devices).await?;
    let code = target.admin.reusable_code(&provisioned.org).await?;
    let mut run = Run::start(target, "hold", args.devices, args.devices, &args.common).await?;
    run.setting("hold", humantime::format_duration(args.duration));
    // Pair everyone first, each on a connection of its own that closes.
    let (phase, results) = run
        .pair("enroll", &|_| code.clone(), true, false, None)
        .await;
    run.report.phases.push(phase);
    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);

    // Let the server finish closing those sessions, then take its memory as the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = run.target.memory();
    let meter = run.meter();
    let begin = Instant::now();
    let probe = run.fleets.progress_probe();
    let quiet = run.target.quiet;
    let replies = with_progress(
        "reconnect",
        u64::from(args.devices),
        quiet,
        probe,
        run.fleets.all(&Command::Resume),
    )
    .await;
    let mut phase = tally_phase("reconnect and resume", replies);
    phase.set_duration(begin.elapsed().as_secs_f64());
    meter.finish(&mut phase);
    run.report.phases.push(phase);
    let times = run.wait_revision(1).await;
    if times.missing > 0 {
        problems.push(format!(
            "{} devices did not receive their configuration on reconnecting",
            times.missing
        ));
    }

    // Hold, idle.
    let started = Instant::now();
    let duration = args.duration;
    with_progress(
        "hold (s)",
        duration.as_secs(),
        quiet,
        move || started.elapsed().as_secs(),
        tokio::time::sleep(duration),
    )
    .await;
    let (connected, lost) = run.status().await;
    let after = run.target.memory();
    run.report
        .figures
        .insert("connections held at the end".into(), connected as f64);
    for (reason, count) in &lost {
        problems.push(format!("{count} connections lost while idle: {reason}"));
    }
    memory_figures(&mut run.report, &baseline, &after, connected);
    node_figures(&mut run).await;
    if connected < u64::from(args.devices) {
        problems.push(format!(
            "{connected} of {} devices still connected after the hold",
            args.devices
        ));
    }
    expectation.assigned = Some(u64::from(args.devices));
    expectation.refusals = Some(BTreeMap::new());
    run.finish(args.common.verify, &provisioned.org, &expectation, problems)
        .await
}

/// The servers' memory before and after `connected` connections were opened: every node's
/// resident set, and the growth of their sum per connection.
fn memory_figures(
    report: &mut Report,
    before: &[Option<u64>],
    after: &[Option<u64>],
    connected: u64,
) {
    let complete =
        |samples: &[Option<u64>]| -> Option<Vec<u64>> { samples.iter().copied().collect() };
    let (Some(before), Some(after)) = (complete(before), complete(after)) else {
        return;
    };
    if before.is_empty() || connected == 0 {
        return;
    }
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let (sum_before, sum_after) = (before.iter().sum::<u64>(), after.iter().sum::<u64>());
    report
        .figures
        .insert("server rss before, MiB".into(), mib(sum_before));
    report
        .figures
        .insert("server rss held, MiB".into(), mib(sum_after));
    report.figures.insert(
        "server bytes per idle connection".into(),
        (sum_after as f64 - sum_before as f64) / connected as f64,
    );
    if after.len() > 1 {
        for (node, (before, after)) in before.iter().zip(&after).enumerate() {
            report
                .figures
                .insert(format!("node {} rss before, MiB", node + 1), mib(*before));
            report
                .figures
                .insert(format!("node {} rss held, MiB", node + 1), mib(*after));
        }
    }
}

/// Each node's open device connections, as it reports them, when the nodes are known.
async fn node_figures(run: &mut Run<'_>) {
    for (node, count) in run.target.node_connections().await.into_iter().enumerate() {
        run.report
            .figures
            .insert(format!("node {} connections", node + 1), count as f64);
    }
}

/// `push`: configuration edits pushed live to every connected device, timed until every device
/// has received the new revision and until every acknowledgement is recorded.
pub async fn push(target: &mut Target, args: &PushArgs) -> anyhow::Result<Report> {
    let provisioned = target.admin.provision(args.devices).await?;
    let code = target.admin.reusable_code(&provisioned.org).await?;
    let mut run = Run::start(target, "push", args.devices, args.devices, &args.common).await?;
    run.setting("edits", args.edits);
    if let Some(rate) = args.pair_rate {
        run.setting("offered pairing rate", format!("{rate}/s"));
    }
    let phase = run.connect().await;
    run.report.phases.push(phase);
    let (phase, results) = run
        .pair("pair", &|_| code.clone(), false, true, args.pair_rate)
        .await;
    run.report.phases.push(phase);
    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    let first = run.wait_revision(1).await;
    if first.missing > 0 {
        problems.push(format!("{} devices missed revision 1", first.missing));
    }
    node_figures(&mut run).await;

    let path = format!(
        "/v1/organizations/{}/configurations/{}",
        provisioned.org, provisioned.configuration
    );
    let mut all_received = Vec::new();
    let mut all_acknowledged = Vec::new();
    let mut received_latencies = Vec::new();
    // Per edit: when the edit request was answered, when the first device received it, and
    // when the last device of each endpoint (node) did; in ms after the request.
    let mut answered = Vec::new();
    let mut first_received = Vec::new();
    let mut by_endpoint: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    for edit in 1..=u64::from(args.edits) {
        let revision = edit + 1;
        let meter = run.meter();
        let sent_us = now_us();
        run.target
            .admin
            .put(&path, json!({ "body": configuration_body(edit + 1) }))
            .await
            .context("editing the configuration")?;
        answered.push(now_us().saturating_sub(sent_us) as f64 / 1000.0);
        let times = run.wait_revision(revision).await;
        let after_ms = |at: u64| at.saturating_sub(sent_us) as f64 / 1000.0;
        if let Some(first) = times.received_us.iter().min() {
            first_received.push(after_ms(*first));
        }
        let mut last_by_endpoint: BTreeMap<u16, u64> = BTreeMap::new();
        for (at, endpoint) in times.received_us.iter().zip(&times.received_endpoints) {
            let last = last_by_endpoint.entry(*endpoint).or_default();
            *last = (*last).max(*at);
        }
        for (endpoint, last) in last_by_endpoint {
            by_endpoint
                .entry(endpoint)
                .or_default()
                .push(after_ms(last));
        }
        if times.missing > 0 {
            problems.push(format!(
                "{} devices missed revision {revision}",
                times.missing
            ));
        }
        let mut phase = Phase::new(&format!("edit {edit}: revision {revision} received"));
        phase.attempted = u64::from(args.devices);
        phase.ok = times.received_us.len() as u64;
        let received_max = times.received_us.iter().max().copied().unwrap_or(sent_us);
        let acknowledged_max = times
            .acknowledged_us
            .iter()
            .max()
            .copied()
            .unwrap_or(sent_us);
        phase.set_duration(received_max.saturating_sub(sent_us) as f64 / 1e6);
        phase.latency_ms = Percentiles::of(
            times
                .received_us
                .iter()
                .map(|at| at.saturating_sub(sent_us)),
        );
        meter.finish(&mut phase);
        run.report.phases.push(phase);
        all_received.push(received_max.saturating_sub(sent_us) as f64 / 1000.0);
        all_acknowledged.push(acknowledged_max.saturating_sub(sent_us) as f64 / 1000.0);
        received_latencies.extend(
            times
                .received_us
                .iter()
                .map(|at| at.saturating_sub(sent_us)),
        );
        if !args.common.no_acks && times.acknowledged_us.len() < times.received_us.len() {
            problems.push(format!(
                "revision {revision}: {} received, {} acknowledgements recorded",
                times.received_us.len(),
                times.acknowledged_us.len()
            ));
        }
    }
    run.report.figures.insert(
        "all received, ms (median of edits)".into(),
        median(&all_received),
    );
    if !args.common.no_acks {
        run.report.figures.insert(
            "all acknowledged, ms (median of edits)".into(),
            median(&all_acknowledged),
        );
    }
    run.report.figures.insert(
        "edit answered, ms (median of edits)".into(),
        median(&answered),
    );
    run.report.figures.insert(
        "first received, ms (median of edits)".into(),
        median(&first_received),
    );
    if by_endpoint.len() > 1 {
        for (endpoint, lasts) in &by_endpoint {
            run.report.figures.insert(
                format!("endpoint {} all received, ms (median)", endpoint + 1),
                median(lasts),
            );
        }
    }
    let (connected, lost) = run.status().await;
    for (reason, count) in &lost {
        problems.push(format!("{count} connections lost: {reason}"));
    }
    run.report
        .figures
        .insert("connections at the end".into(), connected as f64);
    expectation.assigned = Some(u64::from(args.devices));
    expectation.refusals = Some(BTreeMap::new());
    run.finish(args.common.verify, &provisioned.org, &expectation, problems)
        .await
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `race`: more devices than free licenses on a reusable code, and many devices on one
/// single-use code, all at once.
pub async fn race(target: &mut Target, args: &RaceArgs) -> anyhow::Result<Report> {
    // The licenses for the reusable code, plus the one the single-use code reserves.
    let provisioned = target.admin.provision(args.licenses + 1).await?;
    let reserved = provisioned
        .license_ids
        .last()
        .context("no license")?
        .clone();
    let single = target
        .admin
        .single_use_codes(&provisioned.org, std::slice::from_ref(&reserved), 600)
        .await?
        .remove(0);
    let reusable = target.admin.reusable_code(&provisioned.org).await?;
    let total = args.devices + args.contenders;
    let mut run = Run::start(target, "race", total, total, &args.common).await?;
    run.setting("licenses", args.licenses);
    run.setting("single-use contenders", args.contenders);
    let phase = run.connect().await;
    run.report.phases.push(phase);
    // Contenders are spread among the other devices so that every process has some.
    let step = (total / args.contenders.max(1)).max(1);
    let contender = |device: u32| device.is_multiple_of(step) && device / step < args.contenders;
    let code_of = |device: u32| {
        if contender(device) {
            single.clone()
        } else {
            reusable.clone()
        }
    };
    let (phase, results) = run.pair("pair", &code_of, false, false, None).await;
    run.report.phases.push(phase);

    let mut problems = Vec::new();
    let mut expectation = Expectation::default();
    expect_results(&mut expectation, &results, &mut problems);
    let contenders = (0..total).filter(|device| contender(*device)).count() as u32;
    let reusable_devices = total - contenders;
    let winners = results
        .iter()
        .filter(|(device, result)| {
            contender(*device) && matches!(result.outcome, Outcome::Paired { .. })
        })
        .collect::<Vec<_>>();
    if contenders > 0 && winners.len() != 1 {
        problems.push(format!(
            "{} devices won the single-use code; exactly one must",
            winners.len()
        ));
    }
    for (_, winner) in &winners {
        if let Outcome::Paired {
            device_id,
            license_id,
            ..
        } = &winner.outcome
            && license_id != &reserved
        {
            problems.push(format!(
                "the single-use code's winner {device_id} holds {license_id}, not the code's \
                 license {reserved}"
            ));
        }
    }
    let reusable_winners = reusable_devices.min(args.licenses);
    expectation.assigned = Some(u64::from(reusable_winners) + u64::from(contenders > 0));
    let mut refusals = BTreeMap::new();
    if reusable_devices > reusable_winners {
        refusals.insert(
            "no_free_license".to_string(),
            u64::from(reusable_devices - reusable_winners),
        );
    }
    if contenders > 1 {
        refusals.insert("code_used".to_string(), u64::from(contenders - 1));
    }
    expectation.refusals = Some(refusals);
    run.report
        .figures
        .insert("single-use winners".into(), winners.len() as f64);
    run.finish(args.common.verify, &provisioned.org, &expectation, problems)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_device_once() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(2, 4), vec![(0, 1), (1, 1), (2, 0), (2, 0)]);
        assert_eq!(split(5, 0), vec![(0, 5)]);
    }

    #[test]
    fn several_sources_only_past_one_address_and_only_on_loopback() {
        let url = &["ws://127.0.0.1:7878/device".to_string()];
        assert!(sources(url, 10_000, None).is_empty());
        let many = sources(url, 25_000, None);
        assert_eq!(
            many,
            vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([127, 0, 0, 2]),
                IpAddr::from([127, 0, 0, 3])
            ]
        );
        assert_eq!(sources(url, 10, Some(2)).len(), 2);
        assert!(
            sources(
                &["ws://devices.example.com/device".to_string()],
                90_000,
                None
            )
            .is_empty()
        );
        let mixed = [
            "ws://127.0.0.1:7878/device".to_string(),
            "ws://10.0.0.2/device".to_string(),
        ];
        assert!(sources(&mixed, 90_000, None).is_empty());
    }
}
