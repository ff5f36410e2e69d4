//! Failures: a node killed mid-burst, a device moving to another node, PostgreSQL stopped and
//! started under the nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use client::device::DeviceEvent;
use client::{
    ClientError, ConnectOptions, Connection, DeviceIdentity, DeviceState, PairResult, ResumeResult,
};
use futures_util::StreamExt;
use futures_util::future::join_all;
use protocol::{AckOutcome, ConfigRef, Encoding, Paired, RefusalReason};
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::harness::*;
use crate::support::*;

/// One device of a burst: connects to `url` and pairs. `None` when the node never answered
/// (it was killed before or during the request).
async fn try_pair(url: &str, code: &str) -> (DeviceIdentity, Option<Paired>) {
    let identity = identity();
    let answer = async {
        let mut connection =
            Connection::connect(url, &ConnectOptions::with_encoding(Encoding::Postcard)).await?;
        connection
            .pair(code, &identity, &device_info("burst"))
            .await
    };
    match tokio::time::timeout(WAIT, answer).await {
        Ok(Ok(PairResult::Paired(paired))) => (identity, Some(paired)),
        Ok(Ok(PairResult::Refused(refused))) => panic!("a burst pairing was refused: {refused:?}"),
        Ok(Err(_)) => (identity, None),
        Err(_) => panic!("a burst pairing was neither answered nor cut off in time"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_loses_no_acknowledged_pairing() {
    let mut cluster = ThreeNodes::start().await;
    let admin = cluster.b.admin.clone();
    let (org, code) = admin.org_with_code("Crash", 500).await;
    let (a_url, b_url, c_url) = (
        cluster.a.device_url.clone(),
        cluster.b.device_url.clone(),
        cluster.c.device_url.clone(),
    );

    // Node a gets a closed-loop stream of 300 pairings, 20 in flight at any time, so that it is
    // killed with requests in flight whatever its speed; b and c get 100 each, all at once.
    const KILL_AFTER: usize = 60;
    let acknowledged_on_a = Arc::new(AtomicUsize::new(0));
    let kill_now = Arc::new(Notify::new());
    let on_a = futures_util::stream::iter(0..300)
        .map(|_| {
            let (url, code) = (a_url.clone(), code.clone());
            let (acknowledged, kill_now) = (Arc::clone(&acknowledged_on_a), Arc::clone(&kill_now));
            async move {
                let (identity, paired) = try_pair(&url, &code).await;
                if paired.is_some() && acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER
                {
                    kill_now.notify_one();
                }
                (identity, paired)
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<_>>();
    let on_b = join_all((0..100).map(|_| try_pair(&b_url, &code)));
    let on_c = join_all((0..100).map(|_| try_pair(&c_url, &code)));
    let killer = async {
        kill_now.notified().await;
        cluster.a.child.start_kill().expect("SIGKILL sent");
    };
    let (on_a, on_b, on_c, ()) = tokio::join!(on_a, on_b, on_c, killer);
    let _ = tokio::time::timeout(WAIT, cluster.a.child.wait())
        .await
        .expect("node a exits");

    let told_on_a: Vec<(DeviceIdentity, Paired)> = on_a
        .into_iter()
        .filter_map(|(identity, paired)| paired.map(|paired| (identity, paired)))
        .collect();
    assert!(told_on_a.len() >= KILL_AFTER);
    assert!(
        told_on_a.len() < 300,
        "node a was killed before its burst ended"
    );
    let mut told: Vec<Paired> = told_on_a.iter().map(|(_, paired)| paired.clone()).collect();
    for (node, results) in [("b", on_b), ("c", on_c)] {
        for (_, paired) in results {
            told.push(paired.unwrap_or_else(|| panic!("node {node} did not answer a pairing")));
        }
    }

    // Every acknowledged pairing is in the database with the license the device was told; no
    // license is held twice, and the licenses and devices tables agree.
    let pool = sql(&cluster.database).await;
    let held = consistent_pairings(&pool, &org).await;
    for paired in &told {
        assert_eq!(
            held.get(&paired.device_id),
            Some(&paired.license_id),
            "an acknowledged pairing was lost"
        );
    }
    let distinct: std::collections::HashSet<&Uuid> = held.values().collect();
    assert_eq!(distinct.len(), held.len(), "a license is held twice");
    let summary = admin.summary(&org).await;
    assert_eq!(summary["assigned"], json!(held.len()));
    assert_eq!(summary["free"], json!(500 - held.len()));

    // The devices node a acknowledged reconnect to the surviving nodes.
    let resumed = join_all(
        told_on_a
            .iter()
            .enumerate()
            .map(|(index, (identity, paired))| {
                let url = if index % 2 == 0 { &b_url } else { &c_url };
                async move {
                    let mut connection = connect(url, Encoding::Postcard).await;
                    let answer = tokio::time::timeout(
                        WAIT,
                        connection.resume(identity, &device_info("burst"), None),
                    )
                    .await
                    .expect("resume answered in time")
                    .expect("resume answered");
                    (paired, answer)
                }
            }),
    )
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

/// The device's next event, bounded in time.
async fn next_event(
    received: &mut tokio::sync::mpsc::UnboundedReceiver<DeviceEvent>,
    what: &str,
) -> DeviceEvent {
    tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap_or_else(|_| panic!("no device event while waiting for {what}"))
        .expect("device events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_node_dies_moves_to_another_and_gets_what_changed_meanwhile() {
    let mut cluster = ThreeNodes::start().await;
    let (org, code) = cluster.a.admin.org_with_code("Roaming", 1).await;
    let config = cluster
        .a
        .admin
        .create_config(&org, "Meters", "[GLOBAL]\nv = 1\n")
        .await;
    let (identity, mut connection, paired) = pair_ok(&cluster.a.device_url, &code).await;
    let first = next_configuration(&mut connection).await;
    connection.close().await;

    // The device knows two addresses: node a, and node b behind a gate that the test opens once
    // the change is made, so that the change is certainly made while the device is away.
    let gate = Gate::to(cluster.b.device_addr).await;
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("device.json");
    DeviceState {
        servers: vec![cluster.a.device_url.clone(), gate.url.clone()],
        identity,
        device_id: Some(paired.device_id),
        organization_id: Some(paired.organization_id),
        configuration: Some(ConfigRef {
            configuration_id: first.configuration_id,
            revision: first.revision,
        }),
    }
    .save(&state_path)
    .unwrap();

    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut on_event = move |event: DeviceEvent| {
        let _ = events.send(event);
    };
    let mut apply = |_: &protocol::Configuration| -> Result<(), String> { Ok(()) };
    let info = device_info("roaming");
    let options = ConnectOptions::with_encoding(Encoding::Json);
    let device = client::device::run(&state_path, &info, &options, &mut apply, &mut on_event);
    tokio::pin!(device);

    let scenario = async {
        assert_eq!(
            next_event(&mut received, "the connection to node a").await,
            DeviceEvent::Connected {
                server: cluster.a.device_url.clone()
            }
        );
        assert!(matches!(
            next_event(&mut received, "the resumption on node a").await,
            DeviceEvent::Resumed(ref resumed) if resumed.device_id == paired.device_id
        ));

        cluster.a.sigkill().await;
        eventually("the device to try the next address", || async {
            (gate.attempts() > 0).then_some(())
        })
        .await;
        cluster
            .c
            .admin
            .edit_config(&org, &config, "[GLOBAL]\nv = 2\n")
            .await;
        gate.open();

        let mut moved = false;
        loop {
            match next_event(&mut received, "the new revision").await {
                DeviceEvent::Connected { server } => moved = server == gate.url,
                DeviceEvent::Configuration(configuration) => {
                    assert!(moved, "the configuration came from node b");
                    assert_eq!(configuration.revision, 2);
                    assert_eq!(configuration.body, "[GLOBAL]\nv = 2\n");
                    break;
                }
                DeviceEvent::Resumed(resumed) => assert_eq!(resumed.device_id, paired.device_id),
                DeviceEvent::Disconnected { .. }
                | DeviceEvent::Waiting { .. }
                | DeviceEvent::Paired(_) => {}
            }
        }
        // The acknowledgement went through node b; node c shows it.
        let shown = cluster
            .c
            .admin
            .device(&org, &paired.device_id.to_string())
            .await;
        assert_eq!(shown["applied"]["revision"], json!(2), "{shown}");
    };
    tokio::select! {
        outcome = &mut device => panic!("the device stopped: {outcome:?}"),
        () = scenario => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairings_while_postgresql_is_down_are_refused_as_retryable_and_work_again_after() {
    // A cluster of its own: stopping the shared one would stop every other test's database.
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
    let mut cluster = ThreeNodes::start_on(database, &[]).await;
    let admin = cluster.a.admin.clone();
    let (org, code) = admin.org_with_code("Outage", 10).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let mut connected = Vec::new();
    for index in 0..3 {
        let (_, mut connection, _) = pair_ok(&cluster.node(index).device_url, &code).await;
        let configuration = next_configuration(&mut connection).await;
        connected.push((index, connection, configuration));
    }

    let stopping = Arc::clone(&postgres);
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap()
        .expect("PostgreSQL stops");

    // One new device per node pairs while the database is down: each is answered in bounded
    // time, "unavailable" with a retry-after, and nothing crashes.
    let attempts = join_all((0..3).map(|index| {
        let url = cluster.node(index).device_url.clone();
        let code = code.clone();
        async move {
            let identity = identity();
            let mut connection = connect(&url, Encoding::Postcard).await;
            let started = Instant::now();
            let answer = tokio::time::timeout(
                WAIT,
                connection.pair(&code, &identity, &device_info("outage")),
            )
            .await;
            (index, identity, answer, started.elapsed())
        }
    }))
    .await;
    let mut retry = Vec::new();
    for (index, identity, answer, took) in attempts {
        let name = cluster.node(index).name;
        match answer {
            Ok(Ok(PairResult::Refused(refused))) => {
                eprintln!("node {name}: {refused:?} after {took:?}");
                assert_eq!(
                    refused.reason,
                    RefusalReason::Unavailable,
                    "node {name}, after {took:?}"
                );
                assert!(
                    refused.retry_after_ms.is_some(),
                    "node {name}: no retry-after"
                );
            }
            Ok(other) => panic!("node {name} answered {other:?} after {took:?}"),
            Err(_) => panic!("node {name} did not answer a pairing within {WAIT:?}"),
        }
        retry.push((index, identity));
    }
    for node in [&mut cluster.a, &mut cluster.b, &mut cluster.c] {
        assert!(node.is_running(), "node {} exited", node.name);
    }

    let starting = Arc::clone(&postgres);
    tokio::task::spawn_blocking(move || starting.restart())
        .await
        .unwrap()
        .expect("PostgreSQL starts again");

    // The same installations retry: each node pairs again once it reconnects to the database.
    for (index, identity) in retry {
        let node = cluster.node(index);
        let paired = poll_for(Duration::from_secs(60), || async {
            let mut connection = connect(&node.device_url, Encoding::Postcard).await;
            match tokio::time::timeout(
                WAIT,
                connection.pair(&code, &identity, &device_info("outage")),
            )
            .await
            {
                Ok(Ok(PairResult::Paired(paired))) => Some(paired),
                Ok(Ok(PairResult::Refused(refused)))
                    if refused.reason == RefusalReason::Unavailable =>
                {
                    None
                }
                other => panic!("node {} answered {other:?}", node.name),
            }
        })
        .await;
        let paired = paired.unwrap_or_else(|| {
            panic!(
                "node {} does not pair again after PostgreSQL came back",
                node.name
            )
        });
        // "unavailable" means nothing changed: the refused attempt was not committed later
        // behind the device's back, so the retry is a new pairing.
        assert!(
            !paired.already_paired,
            "node {}: a pairing answered \"unavailable\" was committed after all",
            node.name
        );
    }

    // The devices connected before the outage are still connected, on the same sessions, and
    // those sessions still reach the database.
    for (index, connection, configuration) in &mut connected {
        let name = cluster.node(*index).name;
        let answer = tokio::time::timeout(
            WAIT,
            connection.ack(
                ConfigRef {
                    configuration_id: configuration.configuration_id,
                    revision: configuration.revision,
                },
                AckOutcome::Applied,
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("no acknowledgement from node {name}"));
        match answer {
            Ok(acknowledged) => assert!(acknowledged.recorded, "node {name}"),
            Err(error @ ClientError::Closed { .. }) | Err(error @ ClientError::Transport(_)) => {
                panic!("the device on node {name} was disconnected by the outage: {error}")
            }
            Err(error) => panic!("node {name}: {error}"),
        }
    }
    assert_eq!(admin.devices(&org).await.len(), 6);
    let pool = sql(&cluster.database).await;
    assert_eq!(
        consistent_pairings(&pool, &org).await.len(),
        6,
        "one license per device, whatever was retried"
    );
}
