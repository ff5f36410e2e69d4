//! The database lost under two nodes during an enrollment burst:
//! - PostgreSQL failover: a pg_auto_failover formation (a monitor, a primary and a synchronous
//!   secondary, `pgtemp::Formation`), two `paird serve` processes on its multi-host URL
//!   (`target_session_attrs=read-write`), and the primary killed outright;
//! - PostgreSQL gone for 30 s (stopped, then started again on the same data).
//!
//! Each starts a database server of its own, separate from the shared cluster, since it takes
//! it down. `pg_autoctl` is installed by `scripts/failover-deps` on first run.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{ConnectOptions, Connection, DeviceIdentity, PairResult, ResumeResult};
use futures_util::future::join_all;
use protocol::{Encoding, Paired, RefusalReason};
use uuid::Uuid;

use crate::harness::*;
use crate::support::*;

/// Pairing workers per node during the burst: each pairs one new device after another.
const WORKERS_PER_NODE: usize = 8;

/// Pairings acknowledged before the primary is killed.
const KILL_AFTER: usize = 120;

/// Pairings each node must acknowledge after the database is back before the burst ends.
const AFTER_OUTAGE: usize = 40;

/// How long PostgreSQL stays away in the outage test.
const OUTAGE: Duration = Duration::from_secs(30);

/// The longest the burst may run, failover included.
const BURST_LIMIT: Duration = Duration::from_secs(180);

/// What one node's burst saw.
#[derive(Default)]
struct NodeLog {
    /// Every pairing the node acknowledged: the device, what it was told, when the attempt
    /// that succeeded started, and when it was answered.
    told: Vec<(DeviceIdentity, Paired, Instant, Instant)>,
    /// When each "unavailable" refusal came; each was retried by the same installation until
    /// it paired.
    unavailable: Vec<Instant>,
    /// Connections that failed or were closed (and were opened again).
    cut: usize,
}

/// Pairs new devices with `code` on `url`, one after another, until `stop`. A device refused
/// as `unavailable` waits as told and tries again with the same installation; a cut connection
/// is opened again. Any other answer, or none within [`WAIT`], fails the test.
async fn pairing_worker(
    url: String,
    code: String,
    log: Arc<Mutex<NodeLog>>,
    acknowledged: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let identity = identity();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let attempt_started = Instant::now();
            let attempt = async {
                let mut connection =
                    Connection::connect(&url, &ConnectOptions::with_encoding(Encoding::Postcard))
                        .await?;
                connection
                    .pair(&code, &identity, &device_info("failover"))
                    .await
            };
            match tokio::time::timeout(WAIT, attempt).await {
                Ok(Ok(PairResult::Paired(paired))) => {
                    log.lock().unwrap().told.push((
                        identity.clone(),
                        paired,
                        attempt_started,
                        Instant::now(),
                    ));
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(Ok(PairResult::Refused(refused))) => {
                    assert_eq!(
                        refused.reason,
                        RefusalReason::Unavailable,
                        "only `unavailable` while the database is away: {refused:?}"
                    );
                    let wait = refused
                        .retry_after_ms
                        .expect("`unavailable` says when to try again");
                    log.lock().unwrap().unavailable.push(Instant::now());
                    tokio::time::sleep(Duration::from_millis(wait.clamp(50, 2_000))).await;
                }
                Ok(Err(_)) => {
                    log.lock().unwrap().cut += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => panic!("a pairing was neither answered nor cut off within {WAIT:?}"),
            }
        }
    }
}

/// An enrollment burst on two nodes: [`WORKERS_PER_NODE`] pairing workers on each.
struct Burst {
    logs: Vec<Arc<Mutex<NodeLog>>>,
    acknowledged: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Burst {
    fn start(nodes: [&Node; 2], code: &str) -> Burst {
        let logs: Vec<Arc<Mutex<NodeLog>>> = (0..2).map(|_| Arc::default()).collect();
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..2)
            .flat_map(|index| (0..WORKERS_PER_NODE).map(move |_| index))
            .map(|index| {
                tokio::spawn(pairing_worker(
                    nodes[index].device_url.clone(),
                    code.to_string(),
                    Arc::clone(&logs[index]),
                    Arc::clone(&acknowledged),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        Burst {
            logs,
            acknowledged,
            stop,
            workers,
            started: Instant::now(),
        }
    }

    /// Waits until `count` pairings were acknowledged in all.
    async fn wait_for(&self, count: usize) {
        while self.acknowledged.load(Ordering::SeqCst) < count {
            assert!(
                self.started.elapsed() < BURST_LIMIT,
                "the burst did not reach {count} pairings"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Pairings acknowledged so far, per node.
    fn told_per_node(&self) -> Vec<usize> {
        self.logs
            .iter()
            .map(|log| log.lock().unwrap().told.len())
            .collect()
    }

    /// Waits until each node has acknowledged [`AFTER_OUTAGE`] pairings on attempts that
    /// started after `since`; `describe` says what to add to the failure.
    async fn wait_for_service_after(&self, since: Instant, describe: impl Fn() -> String) {
        loop {
            let done = self.logs.iter().all(|log| {
                let log = log.lock().unwrap();
                let after = log
                    .told
                    .iter()
                    .filter(|(_, _, started, _)| *started > since);
                after.count() >= AFTER_OUTAGE
            });
            if done {
                return;
            }
            assert!(
                self.started.elapsed() < BURST_LIMIT,
                "the nodes did not pair again within {BURST_LIMIT:?} of the burst's start; {}",
                describe()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Vec<NodeLog> {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            worker.await.expect("a pairing worker failed");
        }
        self.logs
            .into_iter()
            .map(|log| std::mem::take(&mut *log.lock().unwrap()))
            .collect()
    }
}

/// The time without service on each node: from `since` to the first pairing acknowledged on an
/// attempt that started after it (an attempt started before may have committed just before the
/// database went). Printed for BENCHMARKS.md (a figure, not an assertion).
fn report(what: &str, nodes: [&Node; 2], logs: &[NodeLog], before: &[usize], since: Instant) {
    for ((node, log), before) in nodes.iter().zip(logs).zip(before) {
        let first_after = log
            .told
            .iter()
            .filter(|(_, _, started, _)| *started > since)
            .map(|(_, _, _, answered)| *answered)
            .min()
            .expect("pairings after the outage");
        eprintln!(
            "{what}: node {}: {before} pairings before, {} in all, {} `unavailable` answers, \
             {} cut connections; first pairing {:?} after the database went",
            node.name,
            log.told.len(),
            log.unavailable.len(),
            log.cut,
            first_after - since
        );
    }
}

/// Checks that every pairing a device was told (in `logs`, and `earlier`) is in the database
/// with the license it was told, and that no license is held twice.
async fn assert_nothing_told_was_lost(
    database: &str,
    org: &str,
    logs: &[NodeLog],
    earlier: &[&Paired],
) {
    let pool = sql(database).await;
    let held = consistent_pairings(&pool, org).await;
    let mut told: HashMap<Uuid, Uuid> = HashMap::new();
    for paired in earlier {
        told.insert(paired.device_id, paired.license_id);
    }
    for log in logs {
        for (_, paired, _, _) in &log.told {
            if let Some(earlier) = told.insert(paired.device_id, paired.license_id) {
                assert_eq!(earlier, paired.license_id, "a device told two licenses");
            }
        }
    }
    for (device, license) in &told {
        assert_eq!(
            held.get(device),
            Some(license),
            "device {device} was told it is paired, but the database does not hold it"
        );
    }
    let distinct: HashSet<&Uuid> = held.values().collect();
    assert_eq!(distinct.len(), held.len(), "a license is held twice");
}

/// The devices paired on each node before `before` resume on the other node (up to ten each).
async fn assert_devices_resume_on_the_other_node(
    nodes: [&Node; 2],
    logs: &[NodeLog],
    before: Instant,
) {
    let movers: Vec<(&DeviceIdentity, &Paired, &str)> = logs
        .iter()
        .enumerate()
        .flat_map(|(index, log)| {
            let other = nodes[1 - index].device_url.as_str();
            log.told
                .iter()
                .filter(move |(_, _, _, answered)| *answered < before)
                .take(10)
                .map(move |(identity, paired, _, _)| (identity, paired, other))
        })
        .collect();
    assert!(!movers.is_empty());
    let resumed = join_all(movers.iter().map(|(identity, paired, url)| async move {
        let mut connection = connect(url, Encoding::Postcard).await;
        let answer = connection
            .resume(identity, &device_info("failover"), None)
            .await
            .expect("resume answered");
        (paired, answer)
    }))
    .await;
    for (paired, answer) in resumed {
        match answer {
            ResumeResult::Resumed(resumed) => {
                assert_eq!(resumed.device_id, paired.device_id);
                assert_eq!(resumed.license_id, paired.license_id);
            }
            ResumeResult::Ended(reason) => {
                panic!("device {} could not resume: {reason:?}", paired.device_id)
            }
        }
    }
}

/// Two nodes on one database, and an organization with a reusable code and a configuration.
struct TwoNodes {
    a: Node,
    b: Node,
    admin: Admin,
    org: String,
    code: String,
    config: String,
}

impl TwoNodes {
    /// Starts the nodes and provisions the organization `name`; one device pairs on each node
    /// and stays connected.
    async fn start(database: &str, name: &str) -> (TwoNodes, Vec<Connected>) {
        let a = Node::spawn("a", database, &[]).await;
        let b = Node::spawn("b", database, &[]).await;
        let admin = a.admin.clone();
        let (org, code) = admin.org_with_code(name, 5_000).await;
        let config = admin
            .create_config(&org, "Meters", "[GLOBAL]\nround=1\n")
            .await;
        let setup = TwoNodes {
            a,
            b,
            admin,
            org,
            code,
            config,
        };
        let connected = connect_one_per_node(setup.nodes(), &setup.code).await;
        (setup, connected)
    }

    fn nodes(&self) -> [&Node; 2] {
        [&self.a, &self.b]
    }
}

/// A device that stayed connected to one node through the outage.
struct Connected {
    node: &'static str,
    connection: Connection,
    paired: Paired,
    configuration: protocol::Configuration,
}

/// One device paired and connected on each node, with its configuration.
async fn connect_one_per_node(nodes: [&Node; 2], code: &str) -> Vec<Connected> {
    let mut connected = Vec::new();
    for node in nodes {
        let (_, mut connection, paired) = pair_ok(&node.device_url, code).await;
        let configuration = next_configuration(&mut connection).await;
        connected.push(Connected {
            node: node.name,
            connection,
            paired,
            configuration,
        });
    }
    connected
}

/// The change listeners work again: an edit sent to one node reaches the devices that stayed
/// connected to either node, live.
async fn assert_edits_reach_every_connected_device(
    admin: &Admin,
    org: &str,
    config: &str,
    connected: &mut [Connected],
) {
    let body = "[GLOBAL]\nround=2\n";
    admin.edit_config(org, config, body).await;
    for device in connected {
        let name = device.node;
        let before = device.configuration.revision;
        let connection = &mut device.connection;
        let pushed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let configuration = next_configuration(connection).await;
                if configuration.revision > before {
                    return configuration;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the device on node {name} did not get the edit"));
        assert_eq!(pushed.body, body, "node {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_postgresql_primary_mid_burst_fails_over_and_loses_no_acknowledged_pairing() {
    let installed = tokio::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/failover-deps"
    ))
    .status()
    .await
    .expect("scripts/failover-deps runs");
    assert!(installed.success(), "scripts/failover-deps failed");
    // PAIRD_FAILOVER_MONITOR=defaults keeps pg_auto_failover's production health-check timings
    // (a failover then takes about a minute); the default makes the monitor quick.
    let fast_monitor = std::env::var("PAIRD_FAILOVER_MONITOR").as_deref() != Ok("defaults");
    let formation =
        tokio::task::spawn_blocking(move || pgtemp::Formation::start_with(fast_monitor))
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("cannot start the pg_auto_failover formation: {error}"));
    let formation = Arc::new(Mutex::new(formation));
    let database = {
        let formation = Arc::clone(&formation);
        tokio::task::spawn_blocking(move || {
            formation.lock().unwrap().create_database("paird_failover")
        })
        .await
        .unwrap()
        .expect("a database on the primary")
    };
    let (setup, mut connected) = TwoNodes::start(&database, "Failover").await;
    let nodes = setup.nodes();
    let TwoNodes {
        admin,
        org,
        code,
        config,
        ..
    } = &setup;

    let burst = Burst::start(nodes, code);
    burst.wait_for(KILL_AFTER).await;
    let (old_primary, killed_at) = {
        let formation = Arc::clone(&formation);
        tokio::task::spawn_blocking(move || {
            let mut formation = formation.lock().unwrap();
            let primary = formation.primary().expect("a primary before the kill");
            formation.kill(primary);
            (primary, Instant::now())
        })
        .await
        .unwrap()
    };
    // When the new primary takes writes, as PostgreSQL itself says: the part of the time
    // without service that is the formation's, not paird's.
    let promoted_at = {
        let formation = Arc::clone(&formation);
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + BURST_LIMIT;
            while Instant::now() < deadline {
                let primary = formation.lock().unwrap().primary();
                if primary.is_some_and(|primary| primary != old_primary) {
                    return Some((primary, Instant::now()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
    };
    let before = burst.told_per_node();
    burst
        .wait_for_service_after(killed_at, || {
            format!("monitor: {}", formation.lock().unwrap().state())
        })
        .await;
    let logs = burst.stop().await;
    let (new_primary, promoted_at) = promoted_at
        .await
        .unwrap()
        .expect("the secondary was promoted");
    assert_ne!(new_primary, Some(old_primary));
    let new_primary = new_primary.expect("a new primary");
    eprintln!(
        "failover: the new primary took writes {:?} after the kill",
        promoted_at - killed_at
    );
    report("failover", nodes, &logs, &before, killed_at);

    let direct = formation
        .lock()
        .unwrap()
        .node_url(new_primary, "paird_failover");
    let earlier: Vec<&Paired> = connected.iter().map(|device| &device.paired).collect();
    assert_nothing_told_was_lost(&direct, org, &logs, &earlier).await;
    assert_devices_resume_on_the_other_node(nodes, &logs, killed_at).await;
    assert_edits_reach_every_connected_device(admin, org, config, &mut connected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_gone_for_30_s_mid_burst_refuses_as_retryable_loses_nothing_and_recovers() {
    let postgres = Arc::new(
        tokio::task::spawn_blocking(pgtemp::Cluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("cannot start PostgreSQL: {error}")),
    );
    let database = {
        let postgres = Arc::clone(&postgres);
        tokio::task::spawn_blocking(move || postgres.create_database())
            .await
            .unwrap()
            .unwrap()
    };
    let (setup, mut connected) = TwoNodes::start(&database, "Outage").await;
    let nodes = setup.nodes();
    let TwoNodes {
        admin,
        org,
        code,
        config,
        ..
    } = &setup;

    let burst = Burst::start(nodes, code);
    burst.wait_for(KILL_AFTER).await;
    let stopping = Arc::clone(&postgres);
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap()
        .expect("PostgreSQL stops");
    let gone_at = Instant::now();
    let before = burst.told_per_node();
    tokio::time::sleep(OUTAGE).await;
    for node in nodes {
        // `is_running` needs `&mut`; the burst holds shared references: check the log instead.
        assert!(
            !node.log().contains("panicked"),
            "node {} panicked",
            node.name
        );
    }
    // Taken before the start, which returns only once `pg_ctl` has seen the server take
    // connections, by which time the nodes may be pairing again.
    let back_at = Instant::now();
    let starting = Arc::clone(&postgres);
    tokio::task::spawn_blocking(move || starting.restart())
        .await
        .unwrap()
        .expect("PostgreSQL starts again");
    burst.wait_for_service_after(back_at, String::new).await;
    let logs = burst.stop().await;
    report("outage", nodes, &logs, &before, gone_at);
    // Refused, not left hanging: while the database was away every node answered pairings
    // with `unavailable` (and each worker waits at most WAIT for any answer, or fails the
    // test), and no pairing was acknowledged.
    for (node, log) in nodes.iter().zip(&logs) {
        let refused_meanwhile = log
            .unavailable
            .iter()
            .filter(|at| **at > gone_at && **at < back_at)
            .count();
        assert!(
            refused_meanwhile > 0,
            "node {} refused no pairing in {OUTAGE:?} without a database",
            node.name
        );
        let paired_meanwhile = log
            .told
            .iter()
            .filter(|(_, _, _, answered)| *answered > gone_at && *answered < back_at)
            .count();
        assert_eq!(
            paired_meanwhile, 0,
            "node {} acknowledged pairings while the database was down",
            node.name
        );
    }

    let earlier: Vec<&Paired> = connected.iter().map(|device| &device.paired).collect();
    assert_nothing_told_was_lost(&database, org, &logs, &earlier).await;
    assert_devices_resume_on_the_other_node(nodes, &logs, gone_at).await;
    assert_edits_reach_every_connected_device(admin, org, config, &mut connected).await;
}
