//! A fleet: the simulated devices of one process, driven by [`Command`]s.
//!
//! The load tester runs one fleet in its own process, or, past the open-file cap of a process,
//! one per worker process (see [`crate::workers`]); the same commands drive both, so a scenario
//! does not know where its devices live. Devices are numbered within the fleet; the parent maps
//! them to global numbers by the fleet's offset.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use client::{ConnectOptions, Connection, DeviceIdentity, PairResult, ResumeResult};
use futures_util::StreamExt;
use protocol::{
    Ack, AckOutcome, Configuration, DeviceInfo, DeviceMessage, Encoding, ServerMessage,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Microseconds since the Unix epoch: the clock every process of a run shares.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sleeps until a time given by [`now_us`].
async fn sleep_until_us(at: u64) {
    let now = now_us();
    if at > now {
        tokio::time::sleep(Duration::from_micros(at - now)).await;
    }
}

/// How a fleet reaches the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetSpec {
    /// Device endpoints (the nodes of a cluster): device `i` of the fleet connects to
    /// `device_urls[i % len]`, every time, so that each node holds a known share.
    pub device_urls: Vec<String>,
    /// JSON text frames instead of postcard.
    pub json: bool,
    /// Local addresses to connect from, used in turn (empty: the system's choice).
    pub sources: Vec<IpAddr>,
    /// Where this fleet starts counting local ports (fleets sharing a source address start
    /// apart so that they do not race for the same ports).
    #[serde(default)]
    pub first_port: u32,
    /// Connections (or fresh pairings) in flight at once.
    pub concurrency: usize,
    pub connect_timeout_ms: u64,
    /// Devices record configurations but do not acknowledge them (to see a push without the
    /// acknowledgements' work on the server and its database).
    #[serde(default)]
    pub no_acks: bool,
}

/// What a fleet is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Open `count` new devices' connections and leave them idle, unpaired.
    Connect { count: u32 },
    /// Pair every device that is not paired yet.
    Pair(PairPlan),
    /// Reconnect every paired device that is not connected, resume its session and stay.
    Resume,
    /// Wait until every connected paired device has received (and had acknowledged) this
    /// revision of its configuration, or until the time limit.
    WaitRevision { revision: u64, timeout_ms: u64 },
    /// Count the connected devices and the connections lost since the last count.
    Status,
    /// Close the connections that connected devices kept open after a wave without `stay`
    /// (closing is not part of the wave, so it is not inside the wave's measurement).
    CloseFinished,
    /// Close every connection.
    Close,
}

/// One pairing wave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairPlan {
    /// Device `i` uses `codes[i % codes.len()]`.
    pub codes: Vec<String>,
    /// Each device opens its own connection (creating devices up to `devices`); otherwise the
    /// idle connections opened by [`Command::Connect`] pair.
    pub fresh: bool,
    /// For fresh pairing: how many devices the fleet should have.
    pub devices: u32,
    /// Stay connected after the configuration arrives (reading, answering keepalive pings and
    /// acknowledging configurations); otherwise close.
    pub stay: bool,
    /// Offered pairings per second (open loop): device `i` is scheduled at
    /// `start_us + i / rate` and its latency counts from then. `None`: all at once.
    pub rate: Option<f64>,
    /// When the wave starts ([`now_us`] clock), so that every process starts together.
    pub start_us: u64,
}

/// A fleet's answer to a [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Connected(Tally),
    Paired(Vec<DeviceResult>),
    Resumed(Tally),
    Revision(RevisionTimes),
    Status {
        connected: u64,
        lost: BTreeMap<String, u64>,
    },
    Closed,
    Failed(String),
}

/// Successes, their latencies and failures by reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub ok: u64,
    pub latencies_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, error: impl ToString) {
        *self.errors.entry(error.to_string()).or_default() += 1;
    }
}

/// When each connected device received a revision and when its acknowledgement was recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevisionTimes {
    pub received_us: Vec<u64>,
    /// The device endpoint (index into [`FleetSpec::device_urls`]) of each `received_us`.
    #[serde(default)]
    pub received_endpoints: Vec<u16>,
    pub acknowledged_us: Vec<u64>,
    /// Connected paired devices that did not receive it in time.
    pub missing: u64,
}

/// What one device's pairing ended with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceResult {
    /// The device's number within its fleet.
    pub device: u32,
    /// Index into the plan's codes.
    pub code: u32,
    /// When the answer (and the configuration) arrived, [`now_us`] clock.
    pub done_us: u64,
    pub outcome: Outcome,
    /// The pairing the server announced when the device failed after it (`Failed`): the
    /// device was told "paired" (device id, license id) but its configuration never came, as
    /// when the server is killed between the two. A pairing told is a pairing promised, so the
    /// crash checks expect it to survive whatever the outcome says.
    #[serde(default)]
    pub told_before_failing: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    Paired {
        device_id: String,
        license_id: String,
        already_paired: bool,
        /// From the scheduled (or actual) request to the configuration's arrival.
        latency_us: u64,
    },
    Refused(String),
    Failed(String),
}

#[derive(Debug)]
struct Device {
    identity: DeviceIdentity,
    paired: bool,
}

/// Revisions seen by the connected devices.
#[derive(Debug, Default)]
struct Seen {
    by_revision: Mutex<HashMap<u64, RevisionTimes>>,
    /// Devices staying connected now (their [`stay`] task has not ended). Kept as a counter so
    /// that a wait for a revision looks in O(1): scanning every task's state touched one cache
    /// line per device and took a tenth of the machine's CPU during a push to 100,000 devices.
    staying: AtomicUsize,
    /// The devices do not acknowledge configurations ([`FleetSpec::no_acks`]).
    no_acks: bool,
}

impl Seen {
    /// Records a revision received (or its acknowledgement) on a connection to `endpoint`.
    fn record(&self, revision: u64, acknowledged: bool, endpoint: u16) {
        let now = now_us();
        let mut map = self.by_revision.lock().expect("lock");
        let times = map.entry(revision).or_default();
        if acknowledged {
            times.acknowledged_us.push(now);
        } else {
            times.received_us.push(now);
            times.received_endpoints.push(endpoint);
        }
    }

    /// Devices that received `revision`, and acknowledgements recorded for it.
    fn counts(&self, revision: u64) -> (usize, usize) {
        let map = self.by_revision.lock().expect("lock");
        map.get(&revision).map_or((0, 0), |times| {
            (times.received_us.len(), times.acknowledged_us.len())
        })
    }

    fn times(&self, revision: u64) -> RevisionTimes {
        let map = self.by_revision.lock().expect("lock");
        map.get(&revision).cloned().unwrap_or_default()
    }
}

/// The devices of one process.
#[derive(Debug)]
pub struct Fleet {
    spec: FleetSpec,
    options: ConnectOptions,
    devices: Vec<Device>,
    /// Connected, unpaired: (device number, connection).
    idle: Vec<(u32, Connection)>,
    /// Paired and connected: one reading task each.
    live: Vec<JoinHandle<Option<String>>>,
    /// Paired in a wave without `stay`, waiting for [`Command::CloseFinished`].
    finished: Vec<Connection>,
    seen: Arc<Seen>,
    stop: watch::Sender<bool>,
    /// Completed units of the current command, for progress bars.
    pub progress: Arc<AtomicU64>,
}

/// What device `number` of a fleet says of itself: names, models, OS and app versions that vary
/// the way a real fleet's do, so that the fleet lists' searches and filters have something to
/// find (`Van 17`, `TC52`, `Android 14`, `4.3.0`, …). The same number says the same every time.
pub fn device_info(number: u32) -> DeviceInfo {
    const KINDS: [&str; 4] = ["Van", "Truck", "Meter reader", "Handheld"];
    const MODELS: [&str; 5] = ["TC52", "CT40", "TC21", "EDA52", "ZQ630"];
    const SYSTEMS: [&str; 3] = ["Android 13", "Android 14", "iOS 17"];
    const VERSIONS: [&str; 4] = ["4.2.1", "4.3.0", "4.3.1", "5.0.0"];
    let pick = |list: &[&'static str], divisor: u32| list[(number / divisor) as usize % list.len()];
    DeviceInfo {
        name: format!("{} {number}", pick(&KINDS, 1)),
        model: pick(&MODELS, 1).into(),
        os: pick(&SYSTEMS, 1).into(),
        app_version: pick(&VERSIONS, 7).into(),
    }
}

impl Fleet {
    pub fn new(spec: FleetSpec) -> Fleet {
        let encoding = if spec.json {
            Encoding::Json
        } else {
            Encoding::Postcard
        };
        let mut options = ConnectOptions::with_encoding(encoding);
        options.timeout = Duration::from_millis(spec.connect_timeout_ms.max(1));
        options.local_ports = Some(Arc::new(AtomicU32::new(spec.first_port)));
        let no_acks = spec.no_acks;
        Fleet {
            spec,
            options,
            devices: Vec::new(),
            idle: Vec::new(),
            live: Vec::new(),
            finished: Vec::new(),
            seen: Arc::new(Seen {
                no_acks,
                ..Seen::default()
            }),
            stop: watch::channel(false).0,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn handle(&mut self, command: Command) -> Reply {
        self.progress.store(0, Ordering::Relaxed);
        match command {
            Command::Connect { count } => Reply::Connected(self.connect(count).await),
            Command::Pair(plan) => Reply::Paired(self.pair(&plan).await),
            Command::Resume => Reply::Resumed(self.resume().await),
            Command::WaitRevision {
                revision,
                timeout_ms,
            } => Reply::Revision(self.wait_revision(revision, timeout_ms).await),
            Command::Status => {
                let (connected, lost) = self.status().await;
                Reply::Status { connected, lost }
            }
            Command::CloseFinished => {
                self.close_finished().await;
                Reply::Closed
            }
            Command::Close => {
                self.close().await;
                Reply::Closed
            }
        }
    }

    /// The endpoint device `device` connects to: its index in the spec's list.
    fn endpoint_of(&self, device: u32) -> u16 {
        (device as usize % self.spec.device_urls.len().max(1)) as u16
    }

    fn url_for(&self, device: u32) -> String {
        self.spec
            .device_urls
            .get(usize::from(self.endpoint_of(device)))
            .cloned()
            .unwrap_or_default()
    }

    fn options_for(&self, device: u32) -> ConnectOptions {
        let mut options = self.options.clone();
        if !self.spec.sources.is_empty() {
            options.local_address =
                Some(self.spec.sources[device as usize % self.spec.sources.len()]);
        }
        options
    }

    fn new_device(&mut self) -> std::io::Result<u32> {
        let number = u32::try_from(self.devices.len()).unwrap_or(u32::MAX);
        self.devices.push(Device {
            identity: DeviceIdentity::generate()?,
            paired: false,
        });
        Ok(number)
    }

    async fn connect(&mut self, count: u32) -> Tally {
        let mut tally = Tally::default();
        let mut numbers = Vec::new();
        for _ in 0..count {
            match self.new_device() {
                Ok(number) => numbers.push(number),
                Err(error) => tally.error(error),
            }
        }
        let progress = Arc::clone(&self.progress);
        let attempts: Vec<_> = futures_util::stream::iter(numbers)
            .map(|number| {
                let options = self.options_for(number);
                let url = self.url_for(number);
                let progress = Arc::clone(&progress);
                async move {
                    let begin = now_us();
                    let result = Connection::connect(&url, &options).await;
                    progress.fetch_add(1, Ordering::Relaxed);
                    (number, result, now_us().saturating_sub(begin))
                }
            })
            .buffer_unordered(self.spec.concurrency.max(1))
            .collect()
            .await;
        for (number, result, latency) in attempts {
            match result {
                Ok(connection) => {
                    tally.ok += 1;
                    tally.latencies_us.push(latency);
                    self.idle.push((number, connection));
                }
                Err(error) => tally.error(format!("connect: {error}")),
            }
        }
        tally
    }

    async fn pair(&mut self, plan: &PairPlan) -> Vec<DeviceResult> {
        if plan.codes.is_empty() {
            return Vec::new();
        }
        let plan = Arc::new(plan.clone());
        // Who pairs, each with its connection (or none: it opens its own).
        let mut wave: Vec<(u32, Option<Connection>)> = Vec::new();
        if plan.fresh {
            while self.devices.len() < plan.devices as usize {
                if self.new_device().is_err() {
                    break;
                }
            }
            let mut idle: HashMap<u32, Connection> = self.idle.drain(..).collect();
            for (number, device) in self.devices.iter().enumerate() {
                if !device.paired {
                    let number = number as u32;
                    wave.push((number, idle.remove(&number)));
                }
            }
        } else {
            wave = self
                .idle
                .drain(..)
                .map(|(number, connection)| (number, Some(connection)))
                .collect();
        }
        let limit = Arc::new(Semaphore::new(if plan.fresh {
            self.spec.concurrency.max(1)
        } else {
            Semaphore::MAX_PERMITS
        }));
        let tasks: Vec<_> = wave
            .into_iter()
            .enumerate()
            .map(|(position, (number, connection))| {
                let identity = self.devices[number as usize].identity.clone();
                let options = self.options_for(number);
                let task = PairTask {
                    plan: Arc::clone(&plan),
                    url: self.url_for(number),
                    endpoint: self.endpoint_of(number),
                    options,
                    identity,
                    number,
                    position: position as u64,
                    seen: Arc::clone(&self.seen),
                    stop: self.stop.subscribe(),
                    limit: Arc::clone(&limit),
                    progress: Arc::clone(&self.progress),
                };
                tokio::spawn(task.run(connection))
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            match task.await {
                Ok((result, after)) => {
                    if matches!(result.outcome, Outcome::Paired { .. }) {
                        self.devices[result.device as usize].paired = true;
                    }
                    match after {
                        After::Live(task) => self.live.push(task),
                        After::Open(connection) => self.finished.push(*connection),
                        After::Gone => {}
                    }
                    results.push(result);
                }
                Err(error) => results.push(DeviceResult {
                    device: u32::MAX,
                    code: 0,
                    done_us: now_us(),
                    outcome: Outcome::Failed(format!("task: {error}")),
                    told_before_failing: None,
                }),
            }
        }
        results
    }

    async fn close_finished(&mut self) {
        futures_util::stream::iter(self.finished.drain(..))
            .for_each_concurrent(self.spec.concurrency.max(1), Connection::close)
            .await;
    }

    async fn resume(&mut self) -> Tally {
        let targets: Vec<(u32, DeviceIdentity)> = self
            .devices
            .iter()
            .enumerate()
            .filter(|(_, device)| device.paired)
            .map(|(number, device)| (number as u32, device.identity.clone()))
            .collect();
        let progress = Arc::clone(&self.progress);
        let attempts: Vec<_> = futures_util::stream::iter(targets)
            .map(|(number, identity)| {
                let options = self.options_for(number);
                let url = self.url_for(number);
                let endpoint = self.endpoint_of(number);
                let progress = Arc::clone(&progress);
                let seen = Arc::clone(&self.seen);
                let stop = self.stop.subscribe();
                async move {
                    let begin = now_us();
                    let result = async {
                        let mut connection = Connection::connect(&url, &options)
                            .await
                            .map_err(|error| format!("connect: {error}"))?;
                        match connection
                            .resume(&identity, &device_info(number), None)
                            .await
                        {
                            Ok(ResumeResult::Resumed(_)) => Ok(connection),
                            Ok(ResumeResult::Ended(reason)) => Err(format!("ended: {reason:?}")),
                            Err(error) => Err(format!("resume: {error}")),
                        }
                    }
                    .await;
                    progress.fetch_add(1, Ordering::Relaxed);
                    let latency = now_us().saturating_sub(begin);
                    result.map(|connection| {
                        (latency, spawn_stay(connection, None, seen, endpoint, stop))
                    })
                }
            })
            .buffer_unordered(self.spec.concurrency.max(1))
            .collect()
            .await;
        let mut tally = Tally::default();
        for attempt in attempts {
            match attempt {
                Ok((latency, task)) => {
                    tally.ok += 1;
                    tally.latencies_us.push(latency);
                    self.live.push(task);
                }
                Err(error) => tally.error(error),
            }
        }
        tally
    }

    async fn wait_revision(&mut self, revision: u64, timeout_ms: u64) -> RevisionTimes {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        // Polled, not woken per message: the times are recorded as they arrive, so how soon the
        // wait notices changes nothing measured, and each look costs O(devices) once per tick
        // instead of once per message.
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tick.tick().await;
            let expected = self.seen.staying.load(Ordering::Relaxed);
            let (received, acknowledged) = self.seen.counts(revision);
            self.progress.store(received as u64, Ordering::Relaxed);
            let done = received >= expected && (self.spec.no_acks || acknowledged >= expected);
            if done || tokio::time::Instant::now() >= deadline {
                let times = self.seen.times(revision);
                let missing = expected.saturating_sub(times.received_us.len()) as u64;
                return RevisionTimes { missing, ..times };
            }
        }
    }

    async fn status(&mut self) -> (u64, BTreeMap<String, u64>) {
        let mut lost = BTreeMap::new();
        let mut still = Vec::with_capacity(self.live.len());
        for task in self.live.drain(..) {
            if task.is_finished() {
                let reason = match task.await {
                    Ok(Some(reason)) => reason,
                    Ok(None) => "closed".to_string(),
                    Err(error) => error.to_string(),
                };
                *lost.entry(reason).or_default() += 1;
            } else {
                still.push(task);
            }
        }
        self.live = still;
        (self.live.len() as u64, lost)
    }

    async fn close(&mut self) {
        self.close_finished().await;
        let _ = self.stop.send(true);
        for task in self.live.drain(..) {
            let _ = task.await;
        }
        let concurrency = self.spec.concurrency.max(1);
        futures_util::stream::iter(self.idle.drain(..))
            .for_each_concurrent(concurrency, |(_, connection)| connection.close())
            .await;
        self.stop = watch::channel(false).0;
    }
}

/// One device's pairing.
#[derive(Debug)]
struct PairTask {
    plan: Arc<PairPlan>,
    url: String,
    /// Index of `url` among the fleet's endpoints.
    endpoint: u16,
    options: ConnectOptions,
    identity: DeviceIdentity,
    number: u32,
    /// Place in the wave: its scheduled time under `--rate`.
    position: u64,
    seen: Arc<Seen>,
    stop: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
    progress: Arc<AtomicU64>,
}

impl PairTask {
    async fn run(self, connection: Option<Connection>) -> (DeviceResult, After) {
        let plan = &self.plan;
        let code_index = (self.number as usize % plan.codes.len()) as u32;
        let scheduled = match plan.rate {
            Some(rate) if rate > 0.0 => plan.start_us + (self.position as f64 * 1e6 / rate) as u64,
            _ => plan.start_us,
        };
        sleep_until_us(scheduled).await;
        let _permit = self.limit.acquire().await;
        // Open loop: latency counts from the scheduled time, waiting included. A burst: from
        // the moment this device may start (its turn under the concurrency limit).
        let scheduled = if plan.rate.is_some() {
            scheduled
        } else {
            now_us()
        };
        let connection = match connection {
            Some(connection) => Ok(connection),
            None => Connection::connect(&self.url, &self.options)
                .await
                .map_err(|error| format!("connect: {error}")),
        };
        let (outcome, connection, configuration, told_before_failing) = match connection {
            Ok(connection) => {
                pair_one(
                    connection,
                    &plan.codes[code_index as usize],
                    &self.identity,
                    &device_info(self.number),
                    scheduled,
                )
                .await
            }
            Err(error) => (Outcome::Failed(error), None, None, None),
        };
        let done_us = now_us();
        self.progress.fetch_add(1, Ordering::Relaxed);
        let after = match connection {
            Some(connection) if plan.stay && matches!(outcome, Outcome::Paired { .. }) => {
                After::Live(spawn_stay(
                    connection,
                    configuration,
                    self.seen,
                    self.endpoint,
                    self.stop,
                ))
            }
            // A fresh connection closes as part of its cycle.
            Some(connection) if plan.fresh => {
                connection.close().await;
                After::Gone
            }
            // Connected devices close after the wave: closing is not part of what is measured.
            Some(connection) => After::Open(Box::new(connection)),
            None => After::Gone,
        };
        let result = DeviceResult {
            device: self.number,
            code: code_index,
            done_us,
            outcome,
            told_before_failing,
        };
        (result, after)
    }
}

/// What is left of a device's connection after its pairing.
#[derive(Debug)]
enum After {
    Live(JoinHandle<Option<String>>),
    Open(Box<Connection>),
    Gone,
}

/// Pairs and waits for the configuration. The last element is the pairing the server announced
/// when the device then failed waiting for its configuration.
async fn pair_one(
    mut connection: Connection,
    code: &str,
    identity: &DeviceIdentity,
    info: &DeviceInfo,
    scheduled_us: u64,
) -> (
    Outcome,
    Option<Connection>,
    Option<Configuration>,
    Option<(String, String)>,
) {
    let paired = match connection.pair(code, identity, info).await {
        Ok(PairResult::Paired(paired)) => paired,
        Ok(PairResult::Refused(refused)) => {
            let reason = refused.reason.as_str().to_string();
            return (Outcome::Refused(reason), Some(connection), None, None);
        }
        Err(error) => return (Outcome::Failed(format!("pair: {error}")), None, None, None),
    };
    let told = (paired.device_id.to_string(), paired.license_id.to_string());
    let configuration = if paired.configuration_pending {
        None
    } else {
        match connection.recv().await {
            Ok(ServerMessage::Configuration(configuration)) => Some(configuration),
            Ok(other) => {
                let error = format!("expected a configuration, got {other:?}");
                return (Outcome::Failed(error), Some(connection), None, Some(told));
            }
            Err(error) => {
                return (
                    Outcome::Failed(format!("after pairing: {error}")),
                    None,
                    None,
                    Some(told),
                );
            }
        }
    };
    let outcome = Outcome::Paired {
        device_id: told.0,
        license_id: told.1,
        already_paired: paired.already_paired,
        latency_us: now_us().saturating_sub(scheduled_us),
    };
    (outcome, Some(connection), configuration, None)
}

/// Spawns [`stay`], counted in [`Seen::staying`] from now until the task ends (or is aborted).
fn spawn_stay(
    connection: Connection,
    first: Option<Configuration>,
    seen: Arc<Seen>,
    endpoint: u16,
    stop: watch::Receiver<bool>,
) -> JoinHandle<Option<String>> {
    seen.staying.fetch_add(1, Ordering::Relaxed);
    let counted = StayingGuard(Arc::clone(&seen));
    tokio::spawn(async move {
        let _counted = counted;
        stay(connection, first, seen, endpoint, stop).await
    })
}

/// Uncounts a staying device when its task's future is dropped.
struct StayingGuard(Arc<Seen>);

impl Drop for StayingGuard {
    fn drop(&mut self) {
        self.0.staying.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A paired device staying connected: it reads (which answers the server's keepalive pings),
/// records and acknowledges every configuration, until told to stop. Returns why it ended
/// early, if it did.
async fn stay(
    mut connection: Connection,
    first: Option<Configuration>,
    seen: Arc<Seen>,
    endpoint: u16,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    if let Some(configuration) = first
        && let Err(error) = apply(&mut connection, &configuration, &seen, endpoint).await
    {
        return Some(error);
    }
    loop {
        tokio::select! {
            message = connection.recv() => match message {
                Ok(ServerMessage::Configuration(configuration)) => {
                    if let Err(error) = apply(&mut connection, &configuration, &seen, endpoint).await {
                        return Some(error);
                    }
                }
                Ok(ServerMessage::Acknowledged(ack)) => seen.record(ack.revision, true, endpoint),
                Ok(ServerMessage::Ended(ended)) => return Some(format!("ended: {:?}", ended.reason)),
                Ok(_) => {}
                Err(error) => return Some(error.to_string()),
            },
            _ = stop.changed() => {
                connection.close().await;
                return None;
            }
        }
    }
}

/// Records a configuration as received and acknowledges it as applied (unless the fleet's
/// devices do not acknowledge).
async fn apply(
    connection: &mut Connection,
    configuration: &Configuration,
    seen: &Seen,
    endpoint: u16,
) -> Result<(), String> {
    seen.record(configuration.revision, false, endpoint);
    if seen.no_acks {
        return Ok(());
    }
    let ack = DeviceMessage::Ack(Ack {
        configuration_id: configuration.configuration_id,
        revision: configuration.revision,
        outcome: AckOutcome::Applied,
    });
    connection
        .send(&ack)
        .await
        .map_err(|error| format!("ack: {error}"))
}
