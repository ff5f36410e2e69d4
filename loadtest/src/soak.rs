//! The soak: a fleet kept connected for a long time under a steady mix of what a fleet does
//! (devices unpaired by their admin and paired again as new installations, devices dropping
//! their connection and resuming, configuration edits every connected device receives and
//! acknowledges), with the server's memory, open files and task count sampled every minute.
//!
//! What it shows is whether anything grows that should not: after the warm-up (every device
//! paired and connected), resident memory, open files and tokio tasks stay flat while the mix
//! runs. With `--verify` it fails when they do not (see [`flatness`]), or when anything other
//! than the expected happened (an unpaired device's close is expected; a refusal, a lost
//! connection or a failed admin call is not).
//!
//! One process holds every device (at most [`CONNECTIONS_PER_PROCESS`], the open-file cap), one
//! task each; the mix is open loop, at fixed rates, from a seeded generator (`--seed`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use client::{ClientError, ConnectOptions, Connection, DeviceIdentity, PairResult, ResumeResult};
use protocol::{
    Ack, AckOutcome, CloseCode, ConfigRef, DeviceMessage, Encoding, EndReason, ServerMessage,
};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use uuid::Uuid;

use crate::admin::configuration_body;
use crate::fleet::device_info;
use crate::report::{Phase, Report};
use crate::scenarios::{Common, Target, sources};
use crate::seeded::Seeded;
use crate::workers::CONNECTIONS_PER_PROCESS;

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Devices kept paired and connected (one process holds them: at most 19,000).
    #[arg(long, default_value_t = 19_000)]
    pub devices: u32,
    /// How long the steady mix runs, after the warm-up.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Devices unpaired by the admin per second; each pairs again as a new installation.
    #[arg(long, default_value_t = 5.0)]
    pub unpairs_per_second: f64,
    /// Devices per second that drop their connection and reconnect (resume) 0.5–3 s later.
    #[arg(long, default_value_t = 10.0)]
    pub reconnects_per_second: f64,
    /// Time between configuration edits (each reaches every connected device, which
    /// acknowledges it).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub edit_every: Duration,
    /// Time between samples of the server.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// Seed of the mix (which devices are unpaired and reconnect).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub common: Common,
}

/// What a device slot is told to do.
#[derive(Debug, Clone, Copy)]
enum Control {
    Reconnect,
}

/// Operations counted since the last sample (swapped to zero at each).
#[derive(Debug, Default)]
struct Counters {
    paired: AtomicU64,
    resumed: AtomicU64,
    unpaired: AtomicU64,
    acknowledged: AtomicU64,
    edits: AtomicU64,
}

/// What the device slots and the mix share.
struct Shared {
    device_urls: Vec<String>,
    options: Vec<ConnectOptions>,
    code: String,
    /// The device id each slot holds now (`None` while it pairs).
    devices: Vec<Mutex<Option<Uuid>>>,
    counters: Counters,
    /// What went wrong, by kind, since the start.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Devices paired and connected now.
    connected: AtomicU32,
    /// Connections being opened at once, during the warm-up.
    opening: Semaphore,
    /// Set once, when the run ends.
    stop: watch::Sender<bool>,
}

impl Shared {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn error(&self, kind: impl Into<String>) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .entry(kind.into())
            .or_default() += 1;
    }

    async fn connect(&self, slot: usize) -> Result<Connection, ClientError> {
        let options = &self.options[slot % self.options.len()];
        let url = &self.device_urls[slot % self.device_urls.len()];
        Connection::connect(url, options).await
    }
}

/// One server sample.
#[derive(Debug, Clone, Default)]
struct Sample {
    seconds: f64,
    rss_mib: f64,
    open_files: u64,
    tasks: Option<u64>,
    connections: Option<u64>,
    connected_devices: u32,
    operations: [u64; 5],
}

pub async fn soak(target: &mut Target, args: &SoakArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.devices <= CONNECTIONS_PER_PROCESS,
        "the soak holds its devices in one process: at most {CONNECTIONS_PER_PROCESS}"
    );
    let server_pid = *target
        .server_pids
        .first()
        .context("the soak samples the server's process: use --start-server or --server-pid")?;
    let admin = target.admin.clone();
    // Licenses for every device, and for those unpaired meanwhile: an unpaired device's license
    // is free again at once, so a few extra cover the pairings in flight.
    let provisioned = admin
        .provision(args.devices + args.devices / 10 + 100)
        .await?;
    let org = provisioned.org.clone();
    let code = admin.reusable_code(&org).await?;
    let source_addresses = sources(&target.device_urls, args.devices, args.common.sources);
    let base = ConnectOptions {
        encodings: vec![if args.common.json_frames {
            Encoding::Json
        } else {
            Encoding::Postcard
        }],
        timeout: args.common.connect_timeout,
        ..ConnectOptions::default()
    };
    let options = if source_addresses.is_empty() {
        vec![base]
    } else {
        source_addresses
            .iter()
            .enumerate()
            .map(|(index, address)| ConnectOptions {
                local_address: Some(*address),
                local_ports: Some(Arc::new(AtomicU32::new(index as u32 * 7919))),
                ..base.clone()
            })
            .collect()
    };
    let shared = Arc::new(Shared {
        device_urls: target.device_urls.clone(),
        options,
        code,
        devices: (0..args.devices).map(|_| Mutex::new(None)).collect(),
        counters: Counters::default(),
        errors: Mutex::default(),
        connected: AtomicU32::new(0),
        opening: Semaphore::new(args.common.concurrency.max(1)),
        stop: watch::Sender::new(false),
    });

    let started = Instant::now();
    let mut controls = Vec::with_capacity(args.devices as usize);
    let mut slots = Vec::with_capacity(args.devices as usize);
    for slot in 0..args.devices as usize {
        let (sender, receiver) = mpsc::channel(1);
        controls.push(sender);
        slots.push(tokio::spawn(device_slot(
            slot,
            Arc::clone(&shared),
            receiver,
        )));
    }

    // Warm-up: every device paired and connected.
    let mut samples = Vec::new();
    let warm_limit = started + args.common.timeout;
    let mut next_sample = started + args.sample_every;
    while shared.connected.load(Ordering::SeqCst) < args.devices {
        anyhow::ensure!(
            Instant::now() < warm_limit,
            "only {} of {} devices connected within {:?}",
            shared.connected.load(Ordering::SeqCst),
            args.devices,
            args.common.timeout
        );
        if Instant::now() >= next_sample {
            samples.push(sample(&admin, server_pid, &shared, started).await);
            print_sample(samples.last(), target.quiet, "warm-up");
            next_sample += args.sample_every;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warm_seconds = started.elapsed().as_secs_f64();
    let warm = sample(&admin, server_pid, &shared, started).await;
    print_sample(Some(&warm), target.quiet, "warm");
    let errors_at_warm = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();

    // The steady mix.
    let mut mix = Seeded::new(args.seed);
    let mix_started = Instant::now();
    let mix_end = mix_started + args.duration;
    let unpair_every = Duration::from_secs_f64(1.0 / args.unpairs_per_second.max(0.001));
    let reconnect_every = Duration::from_secs_f64(1.0 / args.reconnects_per_second.max(0.001));
    let mut next_unpair = mix_started + unpair_every;
    let mut next_reconnect = mix_started + reconnect_every;
    let mut next_edit = mix_started + args.edit_every;
    let mut next_sample = mix_started + args.sample_every;
    let mut edit = 1u64;
    let mut steady = vec![warm.clone()];
    let edit_path = format!(
        "/v1/organizations/{org}/configurations/{}",
        provisioned.configuration
    );
    while Instant::now() < mix_end {
        let now = Instant::now();
        if now >= next_unpair {
            next_unpair += unpair_every;
            let slot = mix.below(shared.devices.len());
            let device = shared.devices[slot]
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .take();
            if let Some(device) = device {
                let path = format!("/v1/organizations/{org}/devices/{device}/unpair");
                match admin.post(&path, json!({})).await {
                    Ok(_) => {
                        shared.counters.unpaired.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => shared.error(format!("unpair: {error:#}")),
                }
            }
        }
        if now >= next_reconnect {
            next_reconnect += reconnect_every;
            let slot = mix.below(controls.len());
            // A slot already busy (reconnecting, pairing) lets this one go.
            let _ = controls[slot].try_send(Control::Reconnect);
        }
        if now >= next_edit {
            next_edit += args.edit_every;
            edit += 1;
            match admin
                .put(&edit_path, json!({ "body": configuration_body(edit) }))
                .await
            {
                Ok(_) => {
                    shared.counters.edits.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => shared.error(format!("edit: {error:#}")),
            }
        }
        if now >= next_sample {
            next_sample += args.sample_every;
            steady.push(sample(&admin, server_pid, &shared, started).await);
            print_sample(steady.last(), target.quiet, "mix");
        }
        let wake = next_unpair
            .min(next_reconnect)
            .min(next_edit)
            .min(next_sample)
            .min(mix_end);
        tokio::time::sleep_until(wake.into()).await;
    }
    steady.push(sample(&admin, server_pid, &shared, started).await);
    print_sample(steady.last(), target.quiet, "end");
    shared.stop.send_replace(true);
    for slot in slots {
        let _ = slot.await;
    }

    // The report.
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    let mut phase = Phase::new("steady mix");
    let totals: Vec<u64> = (0..5)
        .map(|index| steady.iter().skip(1).map(|s| s.operations[index]).sum())
        .collect();
    phase.ok = totals.iter().sum();
    phase.attempted = phase.ok + errors.values().sum::<u64>();
    phase.set_duration(mix_started.elapsed().as_secs_f64());
    phase.errors = errors.clone();
    let mut figures = BTreeMap::new();
    figures.insert("warm_up_seconds".into(), warm_seconds);
    for (name, total) in ["paired", "resumed", "unpaired", "acknowledged", "edits"]
        .iter()
        .zip(&totals)
    {
        figures.insert(format!("mix_{name}"), *total as f64);
    }
    let last = steady.last().cloned().unwrap_or_default();
    figures.insert("rss_mib_warm".into(), warm.rss_mib);
    figures.insert("rss_mib_end".into(), last.rss_mib);
    figures.insert(
        "rss_mib_max_in_mix".into(),
        steady.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
    );
    figures.insert("open_files_warm".into(), warm.open_files as f64);
    figures.insert("open_files_end".into(), last.open_files as f64);
    if let (Some(first), Some(end)) = (warm.tasks, last.tasks) {
        figures.insert("tasks_warm".into(), first as f64);
        figures.insert("tasks_end".into(), end as f64);
    }
    let mut settings = BTreeMap::new();
    settings.insert("devices".into(), args.devices.to_string());
    settings.insert("duration".into(), format!("{:?}", args.duration));
    settings.insert(
        "mix".into(),
        format!(
            "{}/s unpaired, {}/s reconnect, an edit every {:?}",
            args.unpairs_per_second, args.reconnects_per_second, args.edit_every
        ),
    );
    settings.insert("seed".into(), args.seed.to_string());
    let verification = args.common.verify.then(|| {
        let mut problems = flatness(&steady, args);
        for (kind, count) in &errors {
            let before = errors_at_warm.get(kind).copied().unwrap_or(0);
            problems.push(format!(
                "{count} × {kind} ({before} of them during the warm-up)"
            ));
        }
        problems
    });
    Ok(Report {
        scenario: "soak".into(),
        settings,
        phases: vec![phase],
        figures,
        verification,
    })
}

/// What "flat after warm-up" means, as problems found in the samples of the mix: resident
/// memory no more than 10 % (and 32 MiB) above its level at the first minute of the mix, open
/// files and tasks within what the devices in flight explain (reconnecting devices hold no
/// connection for up to 3 s; each holds one file and two tasks at most).
fn flatness(steady: &[Sample], args: &SoakArgs) -> Vec<String> {
    let mut problems = Vec::new();
    // The first sample of the mix, a minute in: the edits' and unpairings' structures have been
    // made once.
    let Some(reference) = steady.get(1).or(steady.first()) else {
        return problems;
    };
    let in_flight = (args.reconnects_per_second * 3.0 + args.unpairs_per_second * 3.0).ceil()
        as u64
        + args.common.concurrency as u64;
    let memory_slack = (reference.rss_mib * 0.10).max(32.0);
    for sample in steady.iter().skip(2) {
        if sample.rss_mib > reference.rss_mib + memory_slack {
            problems.push(format!(
                "resident memory grew from {:.0} MiB to {:.0} MiB by {:.0} s",
                reference.rss_mib, sample.rss_mib, sample.seconds
            ));
        }
        if sample.open_files > reference.open_files + in_flight {
            problems.push(format!(
                "open files grew from {} to {} by {:.0} s",
                reference.open_files, sample.open_files, sample.seconds
            ));
        }
        if let (Some(first), Some(now)) = (reference.tasks, sample.tasks)
            && now > first + 2 * in_flight
        {
            problems.push(format!(
                "tasks grew from {first} to {now} by {:.0} s",
                sample.seconds
            ));
        }
    }
    problems
}

/// One device slot: pairs a new installation, stays connected acknowledging what it receives,
/// reconnects when told, and pairs a new installation again when its admin unpairs it.
async fn device_slot(slot: usize, shared: Arc<Shared>, mut control: mpsc::Receiver<Control>) {
    let info = device_info(slot as u32);
    let mut stop = shared.stop.subscribe();
    'install: while !shared.stopped() {
        let Ok(identity) = DeviceIdentity::generate() else {
            shared.error("no identity");
            return;
        };
        let permit = shared.opening.acquire().await;
        let mut connection = match pair(&shared, slot, &identity, &info).await {
            Some(connection) => connection,
            None => {
                drop(permit);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue 'install;
            }
        };
        drop(permit);
        shared.connected.fetch_add(1, Ordering::SeqCst);
        let mut current: Option<ConfigRef> = None;
        loop {
            enum Event {
                Stop,
                Control(Option<Control>),
                Message(Result<ServerMessage, ClientError>),
            }
            let event = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => Event::Stop,
                control = control.recv() => Event::Control(control),
                message = connection.recv() => Event::Message(message),
            };
            match event {
                Event::Stop | Event::Control(None) => {
                    connection.close().await;
                    shared.connected.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                Event::Control(Some(Control::Reconnect)) => {
                    connection.close().await;
                    shared.connected.fetch_sub(1, Ordering::SeqCst);
                    let pause = 500 + (slot as u64 * 7_919 % 2_500);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    match resume(&shared, slot, &identity, &info, current).await {
                        Resumption::Resumed(again) => {
                            connection = *again;
                            shared.connected.fetch_add(1, Ordering::SeqCst);
                        }
                        Resumption::Ended => continue 'install,
                        Resumption::Stopped => return,
                    }
                }
                Event::Message(Ok(ServerMessage::Configuration(configuration))) => {
                    let reference = ConfigRef {
                        configuration_id: configuration.configuration_id,
                        revision: configuration.revision,
                    };
                    current = Some(reference);
                    let ack = DeviceMessage::Ack(Ack {
                        configuration_id: reference.configuration_id,
                        revision: reference.revision,
                        outcome: AckOutcome::Applied,
                    });
                    if connection.send(&ack).await.is_err() {
                        shared.error("ack not sent");
                    }
                }
                Event::Message(Ok(ServerMessage::Acknowledged(acknowledged))) => {
                    if acknowledged.recorded {
                        shared.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Message(Ok(ServerMessage::Ended(ended))) => {
                    shared.connected.fetch_sub(1, Ordering::SeqCst);
                    if ended.reason != EndReason::Unpaired {
                        shared.error(format!("ended: {:?}", ended.reason));
                    }
                    continue 'install;
                }
                Event::Message(Ok(other)) => {
                    shared.error(format!("unexpected message: {}", message_kind(&other)));
                }
                Event::Message(Err(error)) => {
                    shared.connected.fetch_sub(1, Ordering::SeqCst);
                    if error.close_code() == Some(CloseCode::Unpaired) {
                        continue 'install;
                    }
                    shared.error(format!("connection lost: {}", error_kind(&error)));
                    match resume(&shared, slot, &identity, &info, current).await {
                        Resumption::Resumed(again) => {
                            connection = *again;
                            shared.connected.fetch_add(1, Ordering::SeqCst);
                        }
                        Resumption::Ended => continue 'install,
                        Resumption::Stopped => return,
                    }
                }
            }
        }
    }
}

/// Connects and pairs a new installation; `None` (counted) when it did not pair.
async fn pair(
    shared: &Shared,
    slot: usize,
    identity: &DeviceIdentity,
    info: &protocol::DeviceInfo,
) -> Option<Connection> {
    let mut connection = match shared.connect(slot).await {
        Ok(connection) => connection,
        Err(error) => {
            shared.error(format!("connect: {}", error_kind(&error)));
            return None;
        }
    };
    match connection.pair(&shared.code, identity, info).await {
        Ok(PairResult::Paired(paired)) => {
            *shared.devices[slot]
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()) = Some(paired.device_id);
            shared.counters.paired.fetch_add(1, Ordering::Relaxed);
            Some(connection)
        }
        Ok(PairResult::Refused(refused)) => {
            shared.error(format!("refused: {:?}", refused.reason));
            None
        }
        Err(error) => {
            shared.error(format!("pair: {}", error_kind(&error)));
            None
        }
    }
}

enum Resumption {
    Resumed(Box<Connection>),
    /// The session is over (unpaired meanwhile): pair again.
    Ended,
    Stopped,
}

/// Reconnects and resumes, trying again each second until it works, the session is over, or
/// the run stops.
async fn resume(
    shared: &Shared,
    slot: usize,
    identity: &DeviceIdentity,
    info: &protocol::DeviceInfo,
    current: Option<ConfigRef>,
) -> Resumption {
    loop {
        if shared.stopped() {
            return Resumption::Stopped;
        }
        match shared.connect(slot).await {
            Ok(mut connection) => match connection.resume(identity, info, current).await {
                Ok(ResumeResult::Resumed(_)) => {
                    shared.counters.resumed.fetch_add(1, Ordering::Relaxed);
                    return Resumption::Resumed(Box::new(connection));
                }
                Ok(ResumeResult::Ended(EndReason::Unpaired)) => return Resumption::Ended,
                Ok(ResumeResult::Ended(reason)) => {
                    shared.error(format!("resume ended: {reason:?}"));
                    return Resumption::Ended;
                }
                Err(error) if error.close_code() == Some(CloseCode::Unpaired) => {
                    return Resumption::Ended;
                }
                Err(error) => shared.error(format!("resume: {}", error_kind(&error))),
            },
            Err(error) => shared.error(format!("reconnect: {}", error_kind(&error))),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn error_kind(error: &ClientError) -> String {
    match error {
        ClientError::Closed { code, .. } => format!("closed {}", code.unwrap_or(0)),
        ClientError::Timeout => "timeout".into(),
        ClientError::Connect(_) => "connect".into(),
        ClientError::Transport(_) => "transport".into(),
        ClientError::Handshake(_) => "handshake".into(),
        other => other.to_string(),
    }
}

fn message_kind(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Paired(_) => "paired",
        ServerMessage::Refused(_) => "refused",
        ServerMessage::Resumed(_) => "resumed",
        ServerMessage::Configuration(_) => "configuration",
        ServerMessage::Acknowledged(_) => "acknowledged",
        ServerMessage::Ended(_) => "ended",
        ServerMessage::Waiting(_) => "waiting",
    }
}

/// The server's resident memory and open files (/proc), and its task and connection counts
/// (its metrics), with the operations counted since the last sample.
async fn sample(
    admin: &crate::admin::Admin,
    pid: u32,
    shared: &Shared,
    started: Instant,
) -> Sample {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count() as u64)
        .unwrap_or(0);
    let metrics = admin.get_text("/metrics").await.unwrap_or_default();
    let gauge = |name: &str| {
        metrics.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
            rest.trim().parse::<f64>().ok().map(|value| value as u64)
        })
    };
    let counters = &shared.counters;
    Sample {
        seconds: started.elapsed().as_secs_f64(),
        rss_mib: rss_kib as f64 / 1024.0,
        open_files,
        tasks: gauge("paird_runtime_tasks_alive"),
        connections: gauge("paird_device_connections_open"),
        connected_devices: shared.connected.load(Ordering::SeqCst),
        operations: [
            counters.paired.swap(0, Ordering::Relaxed),
            counters.resumed.swap(0, Ordering::Relaxed),
            counters.unpaired.swap(0, Ordering::Relaxed),
            counters.acknowledged.swap(0, Ordering::Relaxed),
            counters.edits.swap(0, Ordering::Relaxed),
        ],
    }
}

fn print_sample(sample: Option<&Sample>, quiet: bool, phase: &str) {
    let Some(sample) = sample else { return };
    if quiet {
        return;
    }
    let [paired, resumed, unpaired, acknowledged, edits] = sample.operations;
    eprintln!(
        "soak {phase:>7} {:>6.0}s  rss {:>7.1} MiB  files {:>6}  tasks {:>6}  connections {:>6}  \
         devices {:>6}  | paired {paired} resumed {resumed} unpaired {unpaired} \
         acknowledged {acknowledged} edits {edits}",
        sample.seconds,
        sample.rss_mib,
        sample.open_files,
        sample
            .tasks
            .map_or_else(|| "?".to_string(), |tasks| tasks.to_string()),
        sample
            .connections
            .map_or_else(|| "?".to_string(), |count| count.to_string()),
        sample.connected_devices,
    );
}
