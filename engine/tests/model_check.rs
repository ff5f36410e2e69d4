//! A randomized model check of the license rules (issue 18): two engines (two nodes) on one
//! database run a seeded random stream of operations — pair with a reusable code (with
//! `max_uses`) or a single-use code, re-pair, resume, unpair, revoke codes, add and renew
//! licenses, expire by moving the manual clock, and kill a node mid-batch and start a fresh one
//! on the same database. After every step the database is compared with a simple model:
//!
//! - never two devices on one license, and a license's holder is the device holding it;
//! - never a use past `max_uses`, never a single-use code used twice;
//! - every acknowledged pairing is there (it may only go by a later acknowledged unpair or
//!   expiry), and no acknowledged unpairing comes back;
//! - per organization, free + reserved + assigned + expired = total = licenses added, and
//!   assigned = devices.
//!
//! An operation whose answer was lost to a kill is "unknown": either outcome is allowed, and the
//! next check adopts what the database says, which must hold from then on.
//!
//! Knobs: `PAIRD_MODEL_SEED` (replay one seed), `PAIRD_MODEL_OPS` (operations per backend).
//! A failure prints the seed, the step and the tail of the history, and the command to replay.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};

use std::time::{Duration, Instant};

use engine::admin::{
    AddLicenses, CreateReusableCode, CreateSingleUseCode, RenewLicense, RevokeCode,
    RevokeSingleUseCode, UnpairDevice,
};
use engine::ids::{CodeId, DeviceId, LicenseId, OrgId, Timestamp};
use engine::limiter::FailureLimit;
use engine::model::{CodeInfo, LicenseStatus, PageRequest};
use engine::query::{GetCode, GetLicenseSummary, ListDevices, ListLicenses};
use engine::{Clock, Engine, EngineSettings, PairAnswer, Principal, Refusal, ResumeAnswer};
use testkit::{Backend, Fixture, TestDevice, org_with_code};

const ORGS: usize = 2;
const DEVICES_PER_ORG: usize = 10;
const NODES: usize = 2;
const MAX_LICENSES_PER_ORG: usize = 24;
const HOUR: Duration = Duration::from_secs(3600);

/// splitmix64: small, seedable, the same on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the model knows of an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    Unpaired,
    Paired {
        org: usize,
        device: DeviceId,
        license: LicenseId,
    },
    /// An answer was lost (a kill): the next check adopts what the database says.
    Unknown,
}

#[derive(Debug, Clone)]
struct ReusableCode {
    id: CodeId,
    code: String,
    max_uses: Option<u32>,
    /// Uses acknowledged, and uses possibly made by operations whose answer was lost.
    uses: u32,
    unknown_uses: u32,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct SingleUseCode {
    id: CodeId,
    code: String,
    license: LicenseId,
    /// Which installation used it, if the model saw it.
    used_by: Option<usize>,
    maybe_used: bool,
    /// Revoked by an acknowledged `RevokeSingleUseCode` on its license.
    revoked: bool,
}

#[derive(Debug)]
struct OrgModel {
    id: OrgId,
    /// Licenses added (acknowledged), and batches of them whose answer was lost.
    licenses: Vec<LicenseId>,
    unknown_adds: bool,
    /// valid_until per license; `None` in the map means no end; absent means unknown.
    valid_until: HashMap<LicenseId, Option<Timestamp>>,
    reusable: Vec<ReusableCode>,
    single: Vec<SingleUseCode>,
}

#[derive(Debug)]
struct Model {
    orgs: Vec<OrgModel>,
    devices: Vec<TestDevice>,
    /// The organization whose codes an installation mostly presents (now and then it tries
    /// another's).
    home: Vec<usize>,
    pairing: Vec<Pairing>,
}

/// One operation of a batch, chosen before it runs.
#[derive(Debug, Clone, Copy)]
enum Op {
    PairReusable {
        dev: usize,
        org: usize,
        code: usize,
    },
    PairSingle {
        dev: usize,
        org: usize,
        code: usize,
    },
    Resume {
        dev: usize,
    },
    Unpair {
        dev: usize,
        org: usize,
        device: DeviceId,
    },
    RevokeReusable {
        org: usize,
        code: usize,
    },
    CreateReusable {
        org: usize,
        max_uses: Option<u32>,
    },
    CreateSingle {
        org: usize,
        license: LicenseId,
    },
    RevokeSingle {
        org: usize,
        license: LicenseId,
    },
    AddLicenses {
        org: usize,
        count: u32,
        hours: Option<u64>,
    },
    Renew {
        org: usize,
        license: LicenseId,
        hours: Option<u64>,
    },
}

/// What an operation's answer says, for the model.
#[derive(Debug)]
enum Outcome {
    Paired {
        device: DeviceId,
        license: LicenseId,
        already: bool,
    },
    Refused(Refusal),
    Resumed(DeviceId),
    Ended,
    Unpaired,
    NothingDone(String),
    CreatedReusable(CodeInfo, String),
    CreatedSingle(CodeInfo, String),
    Added(Vec<LicenseId>),
    Renewed(Option<Timestamp>),
    Revoked,
}

fn settings() -> EngineSettings {
    let generous = FailureLimit {
        max_failures: u32::MAX / 2,
        window: Duration::from_secs(1),
    };
    EngineSettings {
        failures_per_address: generous,
        failures_per_code: generous,
        ..EngineSettings::default()
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: a number"))
    })
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// Runs the model check; the seed comes from `PAIRD_MODEL_SEED` or the clock.
async fn model_check(backend: Backend, default_ops: u64) {
    let ops = env_u64("PAIRD_MODEL_OPS").unwrap_or(default_ops);
    let seed = env_u64("PAIRD_MODEL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let test = format!("model_check_{}", backend_name(backend));
    eprintln!("{test}: seed {seed}, {ops} operations");
    let started = Instant::now();
    let mut run = Run::new(backend, seed).await;
    let done = run.go(ops).await;
    let elapsed = started.elapsed();
    match done {
        Ok(stats) => {
            eprintln!(
                "{test}: seed {seed}: {ops} operations in {:.1} s ({:.0} ops/s); {stats}",
                elapsed.as_secs_f64(),
                ops as f64 / elapsed.as_secs_f64()
            );
            run.shutdown().await;
        }
        Err((step, message)) => {
            let tail: Vec<String> = run.history.iter().cloned().collect();
            panic!(
                "{test}: seed {seed}, step {step}: {message}\nlast operations:\n  {}\nreplay: \
                 PAIRD_MODEL_SEED={seed} PAIRD_MODEL_OPS={ops} cargo test -p engine --test \
                 model_check {test} -- --nocapture",
                tail.join("\n  ")
            );
        }
    }
}

struct Run {
    fixture: Fixture,
    nodes: Vec<Engine>,
    model: Model,
    rng: Rng,
    history: VecDeque<String>,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    paired: u64,
    refused: u64,
    unpaired: u64,
    kills: u64,
    lost: u64,
    expired: u64,
    checks: u64,
    /// Why answers said "try again" (or an error that may hide a write).
    retry: Vec<String>,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pairings, {} refusals, {} unpairs, {} expired, {} kills ({} answers lost), {} \
             checks, {} answers said try again",
            self.paired,
            self.refused,
            self.unpaired,
            self.expired,
            self.kills,
            self.lost,
            self.checks,
            self.retry.len()
        )
    }
}

type Failure = (u64, String);

impl Run {
    async fn new(backend: Backend, seed: u64) -> Run {
        let fixture = Fixture::new(backend).await;
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            nodes.push(fixture.start_with(settings()).await);
        }
        let mut orgs = Vec::new();
        for _ in 0..ORGS {
            let (org, code) = org_with_code(&nodes[0], 0, None).await;
            orgs.push(OrgModel {
                id: org.id,
                licenses: Vec::new(),
                unknown_adds: false,
                valid_until: HashMap::new(),
                reusable: vec![ReusableCode {
                    id: code.info.id,
                    code: code.code,
                    max_uses: None,
                    uses: 0,
                    unknown_uses: 0,
                    revoked: false,
                }],
                single: Vec::new(),
            });
        }
        let devices = (0..ORGS * DEVICES_PER_ORG)
            .map(|_| TestDevice::new())
            .collect();
        let home = (0..ORGS * DEVICES_PER_ORG)
            .map(|dev| dev / DEVICES_PER_ORG)
            .collect();
        Run {
            fixture,
            nodes,
            model: Model {
                orgs,
                devices,
                home,
                pairing: vec![Pairing::Unpaired; ORGS * DEVICES_PER_ORG],
            },
            rng: Rng(seed),
            history: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    async fn shutdown(&self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }

    fn note(&mut self, step: u64, line: String) {
        if self.history.len() == 40 {
            self.history.pop_front();
        }
        self.history.push_back(format!("{step}: {line}"));
    }

    async fn go(&mut self, ops: u64) -> Result<String, Failure> {
        let mut step = 0;
        let mut reported = 0;
        let started = Instant::now();
        while step < ops {
            // Long runs say how far they are, every tenth of the way.
            if ops >= 100_000 && step >= reported + ops / 10 {
                reported = step;
                eprintln!(
                    "  step {step} of {ops}, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let roll = self.rng.below(100);
            if roll < 4 {
                self.advance_clock(step).await?;
                step += 1;
            } else {
                let size = 1 + self.rng.below(4);
                let kill = self.rng.chance(3);
                let batch = self.choose_batch(size);
                step += batch.len().max(1) as u64;
                self.run_batch(step, batch, kill).await?;
            }
            self.check(step).await?;
        }
        Ok(self.stats.to_string())
    }

    /// Up to `size` operations on distinct installations (their answers then come in order).
    fn choose_batch(&mut self, size: usize) -> Vec<Op> {
        let mut batch = Vec::new();
        let mut busy = Vec::new();
        let mut busy_licenses = Vec::new();
        for _ in 0..size {
            let dev = self.rng.below(self.model.devices.len());
            if busy.contains(&dev) {
                continue;
            }
            let home = self.model.home[dev];
            // Now and then a device tries the other organization's code.
            let org = if self.rng.chance(5) {
                self.rng.below(ORGS)
            } else {
                home
            };
            let model = &self.model.orgs[org];
            let op = match self.rng.below(100) {
                0..=34 if !model.reusable.is_empty() => Op::PairReusable {
                    dev,
                    org,
                    code: self.rng.below(model.reusable.len()),
                },
                35..=49 if !model.single.is_empty() => Op::PairSingle {
                    dev,
                    org,
                    code: self.rng.below(model.single.len()),
                },
                35..=64 => Op::Resume { dev },
                65..=77 => match self.model.pairing[dev] {
                    Pairing::Paired { org, device, .. } => Op::Unpair { dev, org, device },
                    _ => Op::Resume { dev },
                },
                78..=80
                    if model.reusable.len() > 1 && !model.reusable.iter().any(|c| c.revoked) =>
                {
                    Op::RevokeReusable {
                        org,
                        code: self.rng.below(model.reusable.len()),
                    }
                }
                78..=83 if model.reusable.len() < 4 => Op::CreateReusable {
                    org,
                    max_uses: if self.rng.chance(70) {
                        Some(1 + self.rng.below(6) as u32)
                    } else {
                        None
                    },
                },
                84..=89 if !model.licenses.is_empty() && model.single.len() < 6 => {
                    Op::CreateSingle {
                        org,
                        license: model.licenses[self.rng.below(model.licenses.len())],
                    }
                }
                95..=96 if !model.single.is_empty() => Op::RevokeSingle {
                    org,
                    license: model.single[self.rng.below(model.single.len())].license,
                },
                90..=94 if model.licenses.len() < MAX_LICENSES_PER_ORG => Op::AddLicenses {
                    org,
                    count: 1 + self.rng.below(3) as u32,
                    hours: if self.rng.chance(70) {
                        Some(1 + self.rng.below(48) as u64)
                    } else {
                        None
                    },
                },
                _ if !model.licenses.is_empty() => Op::Renew {
                    org,
                    license: model.licenses[self.rng.below(model.licenses.len())],
                    hours: if self.rng.chance(80) {
                        Some(1 + self.rng.below(72) as u64)
                    } else {
                        None
                    },
                },
                _ => Op::Resume { dev },
            };
            // Two commands on one license in one batch would race: their order is unknown.
            let license = match op {
                Op::Renew { license, .. }
                | Op::CreateSingle { license, .. }
                | Op::RevokeSingle { license, .. } => Some(license),
                Op::PairSingle { org, code, .. } => Some(self.model.orgs[org].single[code].license),
                _ => None,
            };
            if let Some(license) = license {
                if busy_licenses.contains(&license) {
                    continue;
                }
                busy_licenses.push(license);
            }
            busy.push(dev);
            batch.push(op);
        }
        batch
    }

    async fn advance_clock(&mut self, step: u64) -> Result<(), Failure> {
        let hours = 1 + self.rng.below(24) as u64;
        self.fixture.clock.advance(HOUR * hours as u32);
        let node = self.rng.below(NODES);
        let swept = self.nodes[node].sweep_expired().await;
        self.note(
            step,
            format!("clock +{hours} h, sweep on node {node}: {swept:?}"),
        );
        // Every pairing whose license ended is gone; the model learns which from its ends.
        let now = self.fixture.clock.now();
        for dev in 0..self.model.pairing.len() {
            if let Pairing::Paired { org, license, .. } = self.model.pairing[dev] {
                let org = &self.model.orgs[org];
                match org.valid_until.get(&license) {
                    Some(Some(end)) if *end <= now => {
                        self.model.pairing[dev] = Pairing::Unpaired;
                        self.stats.expired += 1;
                    }
                    Some(_) => {}
                    None => self.model.pairing[dev] = Pairing::Unknown,
                }
            }
        }
        Ok(())
    }

    async fn run_batch(&mut self, step: u64, batch: Vec<Op>, kill: bool) -> Result<(), Failure> {
        let mut tasks = Vec::new();
        for op in &batch {
            let node = self.rng.below(NODES);
            let engine = self.nodes[node].clone();
            let request = self.prepare(op);
            tasks.push((node, tokio::spawn(execute(engine, request))));
        }
        let victim = if kill {
            Some(self.rng.below(NODES))
        } else {
            None
        };
        if let Some(victim) = victim {
            // Let the requests get under way, then the node dies with them in flight.
            for _ in 0..self.rng.below(6) {
                tokio::task::yield_now().await;
            }
            for (node, task) in &tasks {
                if *node == victim {
                    task.abort();
                }
            }
            self.nodes[victim].shutdown().await;
            self.stats.kills += 1;
        }
        let mut outcomes = Vec::new();
        for (node, task) in tasks {
            let outcome = match task.await {
                Ok(outcome) => Some(outcome),
                Err(error) if error.is_cancelled() => None,
                Err(error) => return Err((step, format!("an operation panicked: {error}"))),
            };
            outcomes.push((node, outcome));
        }
        if let Some(victim) = victim {
            self.nodes[victim] = self.fixture.start_with(settings()).await;
            self.note(
                step,
                format!("kill node {victim} mid-batch, fresh node started"),
            );
        }
        for (op, (node, outcome)) in batch.into_iter().zip(outcomes) {
            self.note(step, format!("node {node}: {op:?} -> {outcome:?}"));
            self.apply(step, op, outcome)?;
        }
        Ok(())
    }

    fn prepare(&self, op: &Op) -> Request {
        match *op {
            Op::PairReusable { dev, org, code } => Request::Pair(
                self.model.devices[dev].clone(),
                self.model.orgs[org].reusable[code].code.clone(),
            ),
            Op::PairSingle { dev, org, code } => Request::Pair(
                self.model.devices[dev].clone(),
                self.model.orgs[org].single[code].code.clone(),
            ),
            Op::Resume { dev } => Request::Resume(self.model.devices[dev].clone()),
            Op::Unpair { org, device, .. } => Request::Unpair(self.model.orgs[org].id, device),
            Op::RevokeReusable { org, code } => Request::Revoke(
                self.model.orgs[org].id,
                self.model.orgs[org].reusable[code].id,
            ),
            Op::CreateReusable { org, max_uses } => {
                Request::CreateReusable(self.model.orgs[org].id, max_uses)
            }
            Op::CreateSingle { org, license } => {
                Request::CreateSingle(self.model.orgs[org].id, license)
            }
            Op::RevokeSingle { org, license } => {
                Request::RevokeSingle(self.model.orgs[org].id, license)
            }
            Op::AddLicenses { org, count, hours } => {
                let end = hours.map(|hours| self.fixture.clock.now().plus(HOUR * hours as u32));
                Request::Add(self.model.orgs[org].id, count, end)
            }
            Op::Renew {
                org,
                license,
                hours,
            } => {
                let end = hours.map(|hours| self.fixture.clock.now().plus(HOUR * hours as u32));
                Request::Renew(self.model.orgs[org].id, license, end)
            }
        }
    }

    /// The model takes in one answer (or its loss).
    fn apply(&mut self, step: u64, op: Op, outcome: Option<Outcome>) -> Result<(), Failure> {
        let Some(outcome) = outcome else {
            self.stats.lost += 1;
            self.forget(op);
            return Ok(());
        };
        if let Outcome::NothingDone(why) = &outcome {
            // "Try again" answers and errors after which the write may have happened.
            self.stats.retry.push(why.clone());
            self.forget(op);
            return Ok(());
        }
        let fail = |message: String| Err((step, message));
        match (op, outcome) {
            (Op::PairReusable { dev, org, code } | Op::PairSingle { dev, org, code }, outcome) => {
                let single = matches!(op, Op::PairSingle { .. });
                match outcome {
                    Outcome::Paired {
                        device,
                        license,
                        already,
                    } => {
                        self.stats.paired += 1;
                        match self.model.pairing[dev] {
                            Pairing::Paired {
                                org: known_org,
                                device: known,
                                license: held,
                            } if !(already
                                && known_org == org
                                && known == device
                                && held == license) =>
                            {
                                return fail(format!(
                                    "installation {dev}, paired as {known} on {held}, paired \
                                     again as {device} on {license} (already: {already})"
                                ));
                            }
                            Pairing::Unpaired if already => {
                                return fail(format!(
                                    "installation {dev} is unpaired but was told already paired"
                                ));
                            }
                            _ => {}
                        }
                        self.model.pairing[dev] = Pairing::Paired {
                            org,
                            device,
                            license,
                        };
                        if !already {
                            self.count_use(step, dev, org, code, license, single)?;
                        }
                    }
                    Outcome::Refused(
                        reason @ (Refusal::Malformed
                        | Refusal::CredentialMismatch
                        | Refusal::RateLimited
                        | Refusal::UnknownCode),
                    ) => return fail(format!("a pairing refused: {reason:?}")),
                    Outcome::Refused(_) => self.stats.refused += 1,
                    other => return fail(format!("a pairing answered {other:?}")),
                }
            }
            (Op::Resume { dev }, Outcome::Resumed(device)) => match self.model.pairing[dev] {
                Pairing::Paired { device: known, .. } if known != device => {
                    return fail(format!(
                        "installation {dev} resumed as {device}, not {known}"
                    ));
                }
                Pairing::Unpaired => {
                    return fail(format!("installation {dev} resumed while unpaired"));
                }
                Pairing::Unknown => {
                    // Which license, the next check says.
                }
                Pairing::Paired { .. } => {}
            },
            (Op::Resume { dev }, Outcome::Ended) => {
                if let Pairing::Paired { license, .. } = self.model.pairing[dev] {
                    return fail(format!(
                        "installation {dev}, paired on {license}, was told its session ended"
                    ));
                }
            }
            (Op::Unpair { dev, .. }, Outcome::Unpaired) => {
                self.stats.unpaired += 1;
                if self.model.pairing[dev] == Pairing::Unpaired {
                    return fail(format!("installation {dev} unpaired while unpaired"));
                }
                self.model.pairing[dev] = Pairing::Unpaired;
            }
            (Op::Unpair { dev, .. }, Outcome::Refused(_)) => {
                // Not paired, as far as the engine knew.
                if let Pairing::Paired { .. } = self.model.pairing[dev] {
                    return fail(format!(
                        "installation {dev} is paired but unpair found nothing"
                    ));
                }
            }
            (Op::RevokeReusable { org, code }, Outcome::Revoked) => {
                self.model.orgs[org].reusable[code].revoked = true;
            }
            (Op::CreateReusable { org, max_uses }, Outcome::CreatedReusable(info, secret)) => {
                self.model.orgs[org].reusable.push(ReusableCode {
                    id: info.id,
                    code: secret,
                    max_uses,
                    uses: 0,
                    unknown_uses: 0,
                    revoked: false,
                });
            }
            (Op::CreateSingle { org, license }, Outcome::CreatedSingle(info, secret)) => {
                self.model.orgs[org].single.push(SingleUseCode {
                    id: info.id,
                    code: secret,
                    license,
                    used_by: None,
                    maybe_used: false,
                    revoked: false,
                });
            }
            (Op::CreateSingle { .. }, Outcome::Refused(_)) => {}
            (Op::RevokeSingle { org, license }, Outcome::Revoked) => {
                for code in &mut self.model.orgs[org].single {
                    if code.license == license && code.used_by.is_none() && !code.maybe_used {
                        code.revoked = true;
                    }
                }
            }
            (Op::RevokeSingle { .. }, Outcome::Refused(_)) => {}
            (Op::AddLicenses { org, .. }, Outcome::Added(ids)) => {
                for id in ids {
                    self.model.orgs[org].licenses.push(id);
                    self.model.orgs[org].valid_until.remove(&id);
                }
            }
            (Op::Renew { org, license, .. }, Outcome::Renewed(end)) => {
                self.model.orgs[org].valid_until.insert(license, end);
            }
            (Op::Renew { .. }, Outcome::Refused(_)) => {}
            (op, outcome) => return fail(format!("{op:?} answered {outcome:?}")),
        }
        Ok(())
    }

    /// A use of a code the model saw acknowledged.
    fn count_use(
        &mut self,
        step: u64,
        dev: usize,
        org: usize,
        code: usize,
        license: LicenseId,
        single: bool,
    ) -> Result<(), Failure> {
        let org = &mut self.model.orgs[org];
        if single {
            let code = &mut org.single[code];
            if code.license != license {
                return Err((
                    step,
                    format!(
                        "single-use code {} bound to {} paired onto {license}",
                        code.id, code.license
                    ),
                ));
            }
            if code.revoked {
                return Err((
                    step,
                    format!("revoked single-use code {} paired {dev}", code.id),
                ));
            }
            if let Some(before) = code.used_by {
                return Err((
                    step,
                    format!(
                        "single-use code {} used twice (installations {before} and {dev})",
                        code.id
                    ),
                ));
            }
            code.used_by = Some(dev);
        } else {
            let code = &mut org.reusable[code];
            code.uses += 1;
            if let Some(max) = code.max_uses
                && code.uses > max
            {
                return Err((
                    step,
                    format!("code {} used {} times, max {max}", code.id, code.uses),
                ));
            }
        }
        Ok(())
    }

    /// The answer to `op` was lost: what it may have changed becomes unknown.
    fn forget(&mut self, op: Op) {
        match op {
            Op::PairReusable { dev, org, code } => {
                self.model.pairing[dev] = Pairing::Unknown;
                self.model.orgs[org].reusable[code].unknown_uses += 1;
            }
            Op::PairSingle { dev, org, code } => {
                self.model.pairing[dev] = Pairing::Unknown;
                self.model.orgs[org].single[code].maybe_used = true;
            }
            Op::Resume { .. } => {}
            Op::Unpair { dev, .. } => {
                if self.model.pairing[dev] != Pairing::Unpaired {
                    self.model.pairing[dev] = Pairing::Unknown;
                }
            }
            Op::RevokeReusable { org, code } => {
                // Treated as revoked: the model no longer counts on it working.
                self.model.orgs[org].reusable[code].revoked = true;
            }
            Op::RevokeSingle { .. } => {
                // Either way: a code revoked or not is checked by its uses alone.
            }
            Op::CreateReusable { .. } | Op::CreateSingle { .. } => {
                // A code nobody knows the secret of: nothing to check.
            }
            Op::AddLicenses { org, .. } => self.model.orgs[org].unknown_adds = true,
            Op::Renew { org, license, .. } => {
                self.model.orgs[org].valid_until.remove(&license);
            }
        }
    }
}

/// An operation with everything it needs, to run on a node of its own task.
#[derive(Debug)]
enum Request {
    Pair(TestDevice, String),
    Resume(TestDevice),
    Unpair(OrgId, DeviceId),
    Revoke(OrgId, CodeId),
    CreateReusable(OrgId, Option<u32>),
    CreateSingle(OrgId, LicenseId),
    RevokeSingle(OrgId, LicenseId),
    Add(OrgId, u32, Option<Timestamp>),
    Renew(OrgId, LicenseId, Option<Timestamp>),
}

/// An admin command's error: "try again" and internal errors may hide a write; the others are
/// refusals.
fn admin_error(error: engine::EngineError) -> Outcome {
    match error {
        engine::EngineError::Unavailable { .. } | engine::EngineError::Internal => {
            Outcome::NothingDone(error.to_string())
        }
        _ => Outcome::Refused(Refusal::Malformed),
    }
}

async fn execute(engine: Engine, request: Request) -> Outcome {
    let op = Principal::Operator;
    match request {
        Request::Pair(device, code) => {
            let link = device.connect(&engine);
            let answer = engine.pair(device.pair_request(&code), &link).await;
            engine.disconnected(&link).await;
            match answer {
                PairAnswer::Paired(paired) => Outcome::Paired {
                    device: paired.device_id,
                    license: paired.license_id,
                    already: paired.already_paired,
                },
                PairAnswer::Refused {
                    reason: Refusal::Unavailable,
                    ..
                } => Outcome::NothingDone("unavailable".into()),
                PairAnswer::Refused { reason, .. } => Outcome::Refused(reason),
                PairAnswer::Waiting { .. } => Outcome::NothingDone("waiting".into()),
            }
        }
        Request::Resume(device) => {
            let link = device.connect(&engine);
            let answer = engine.resume(device.resume_request(), &link).await;
            engine.disconnected(&link).await;
            match answer {
                ResumeAnswer::Resumed(resumed) => Outcome::Resumed(resumed.device_id),
                ResumeAnswer::Ended(_) => Outcome::Ended,
                other => Outcome::NothingDone(format!("{other:?}")),
            }
        }
        Request::Unpair(org, device_id) => {
            match engine.run(&op, org, UnpairDevice { device_id }).await {
                Ok(_) => Outcome::Unpaired,
                Err(error) => admin_error(error),
            }
        }
        Request::Revoke(org, code_id) => match engine.run(&op, org, RevokeCode { code_id }).await {
            Ok(_) => Outcome::Revoked,
            Err(error) => admin_error(error),
        },
        Request::CreateReusable(org, max_uses) => {
            let command =
                CreateReusableCode::new(Some(Duration::from_secs(3 * 24 * 3600)), max_uses, None);
            match engine.run(&op, org, command).await {
                Ok(code) => Outcome::CreatedReusable(code.info, code.code),
                Err(error) => admin_error(error),
            }
        }
        Request::CreateSingle(org, license) => {
            let command = CreateSingleUseCode::new(license, Some(Duration::from_secs(24 * 3600)));
            match engine.run(&op, org, command).await {
                Ok(code) => Outcome::CreatedSingle(code.info, code.code),
                Err(error) => admin_error(error),
            }
        }
        Request::RevokeSingle(org, license_id) => {
            match engine
                .run(&op, org, RevokeSingleUseCode { license_id })
                .await
            {
                Ok(_) => Outcome::Revoked,
                Err(error) => admin_error(error),
            }
        }
        Request::Add(org, count, valid_until) => {
            match engine
                .run(&op, org, AddLicenses { count, valid_until })
                .await
            {
                Ok(added) => Outcome::Added(added.license_ids),
                Err(error) => admin_error(error),
            }
        }
        Request::Renew(org, license_id, valid_until) => {
            let command = RenewLicense {
                license_id,
                valid_until,
            };
            match engine.run(&op, org, command).await {
                Ok(license) => Outcome::Renewed(license.valid_until),
                Err(error) => admin_error(error),
            }
        }
    }
}

fn all() -> PageRequest {
    PageRequest {
        limit: PageRequest::MAX_LIMIT,
        after: None,
    }
}

impl Run {
    /// Compares the database with the model, then adopts what the database says of whatever
    /// the model did not know.
    async fn check(&mut self, step: u64) -> Result<(), Failure> {
        self.stats.checks += 1;
        let fail = |message: String| Err((step, message));
        let node = &self.nodes[self.rng.below(NODES)];
        let op = Principal::Operator;
        let now = self.fixture.clock.now();
        let mut db_pairing: Vec<Option<Pairing>> = vec![None; self.model.devices.len()];
        for o in 0..ORGS {
            let org_id = self.model.orgs[o].id;
            let summary = node.query(&op, org_id, GetLicenseSummary).await.unwrap();
            let licenses = node
                .query(
                    &op,
                    org_id,
                    ListLicenses {
                        page: all(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let devices = node
                .query(
                    &op,
                    org_id,
                    ListDevices {
                        page: all(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let org = &mut self.model.orgs[o];
            // Licenses: the ones added, with the ends they were given.
            let mut db_ids: Vec<LicenseId> = licenses.items.iter().map(|l| l.license.id).collect();
            db_ids.sort();
            if org.unknown_adds {
                org.licenses = db_ids.clone();
                org.unknown_adds = false;
            }
            let mut model_ids = org.licenses.clone();
            model_ids.sort();
            if model_ids != db_ids {
                return fail(format!(
                    "org {o}: licenses {db_ids:?}, the model added {model_ids:?}"
                ));
            }
            if summary.total != db_ids.len() as u64
                || summary.free + summary.reserved + summary.assigned + summary.expired
                    != summary.total
            {
                return fail(format!(
                    "org {o}: {summary:?} with {} licenses",
                    db_ids.len()
                ));
            }
            if summary.assigned != devices.items.len() as u64 {
                return fail(format!(
                    "org {o}: {summary:?} with {} devices",
                    devices.items.len()
                ));
            }
            let mut holder = HashMap::new();
            for item in &licenses.items {
                let license = &item.license;
                match org.valid_until.get(&license.id) {
                    Some(end) if *end != license.valid_until => {
                        return fail(format!(
                            "license {}: ends {:?}, the model says {end:?}",
                            license.id, license.valid_until
                        ));
                    }
                    Some(_) => {}
                    None => {
                        org.valid_until.insert(license.id, license.valid_until);
                    }
                }
                let assigned = license.status == LicenseStatus::Assigned;
                if assigned != license.device_id.is_some() {
                    return fail(format!("license {license:?}: status and holder disagree"));
                }
                if let Some(device) = license.device_id {
                    holder.insert(license.id, device);
                    if license.valid_until.is_some_and(|end| end <= now) {
                        return fail(format!(
                            "expired license {} still held by {device}",
                            license.id
                        ));
                    }
                }
            }
            // Devices: one per license, the license's holder.
            let mut seen = HashMap::new();
            for device in &devices.items {
                if let Some(other) = seen.insert(device.license_id, device.id) {
                    return fail(format!(
                        "license {} held by two devices: {other} and {}",
                        device.license_id, device.id
                    ));
                }
                if holder.get(&device.license_id) != Some(&device.id) {
                    return fail(format!(
                        "device {} on license {}, whose holder is {:?}",
                        device.id,
                        device.license_id,
                        holder.get(&device.license_id)
                    ));
                }
            }
            for device in &devices.items {
                let Some(dev) = self
                    .model
                    .devices
                    .iter()
                    .position(|d| d.installation_id == device.installation_id)
                else {
                    return fail(format!("org {o}: a device nobody paired: {device:?}"));
                };
                let found = Pairing::Paired {
                    org: o,
                    device: device.id,
                    license: device.license_id,
                };
                if db_pairing[dev].replace(found).is_some() {
                    return fail(format!("installation {dev} paired twice"));
                }
            }
            // Codes: uses within what the model allows, never past max_uses.
            let org = &mut self.model.orgs[o];
            for code in &mut org.reusable {
                let info = node
                    .query(&op, org_id, GetCode { code_id: code.id })
                    .await
                    .unwrap();
                if info.uses < code.uses || info.uses > code.uses + code.unknown_uses {
                    return fail(format!(
                        "code {}: {} uses, the model says {} (+{} unknown)",
                        code.id, info.uses, code.uses, code.unknown_uses
                    ));
                }
                if code.max_uses.is_some_and(|max| info.uses > max) {
                    return fail(format!(
                        "code {}: {} uses, max {:?}",
                        code.id, info.uses, code.max_uses
                    ));
                }
                code.uses = info.uses;
                code.unknown_uses = 0;
                code.revoked |= info.revoked_at.is_some() || info.expires_at <= now;
            }
            org.reusable.retain(|code| !code.revoked);
            let mut done = Vec::new();
            for (index, code) in org.single.iter_mut().enumerate() {
                let info = node
                    .query(&op, org_id, GetCode { code_id: code.id })
                    .await
                    .unwrap();
                let expected = match (code.used_by, code.maybe_used) {
                    (Some(_), _) => Some(1),
                    (None, false) => Some(0),
                    (None, true) => None,
                };
                if info.uses > 1 || expected.is_some_and(|uses| uses != info.uses) {
                    return fail(format!(
                        "single-use code {}: {} uses, the model says {expected:?}",
                        code.id, info.uses
                    ));
                }
                if info.uses == 1 && code.used_by.is_none() {
                    code.used_by = Some(usize::MAX);
                }
                code.maybe_used = false;
                if code.used_by.is_some() || info.revoked_at.is_some() || info.expires_at <= now {
                    done.push(index);
                }
            }
            // A used code stays in the model a while, so that a second use would be seen.
            if org.single.len() >= 6 {
                for index in done.into_iter().rev().take(2) {
                    org.single.remove(index);
                }
            }
        }
        // Each installation: as the model says, or adopted if unknown.
        for (dev, found) in db_pairing.into_iter().enumerate() {
            let found = found.unwrap_or(Pairing::Unpaired);
            match self.model.pairing[dev] {
                Pairing::Unknown => self.model.pairing[dev] = found,
                known if known != found => {
                    return fail(format!(
                        "installation {dev}: the model says {known:?}, the database {found:?}"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Default sizes: bounded for CI, under a minute each in a debug build on a 2-core machine
/// (see BENCHMARKS.md, "Model check"); `PAIRD_MODEL_OPS` overrides them.
const CI_OPS_SQLITE: u64 = 15_000;
const CI_OPS_POSTGRES: u64 = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check_sqlite() {
    model_check(Backend::Sqlite, CI_OPS_SQLITE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check_postgres() {
    model_check(Backend::Postgres, CI_OPS_POSTGRES).await;
}
