//! Two engines on one PostgreSQL database, as two nodes of a cluster: PostgreSQL arbitrates who
//! holds which license, and changes made on one node reach devices connected to the other.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use engine::admin::{AssignConfiguration, CreateConfiguration, UnpairDevice, UpdateConfiguration};
use engine::model::PageRequest;
use engine::query::{ListAudit, ListDevices};
use engine::{Clock, Engine, PairAnswer, Principal, Refusal, SessionEnd};
use testkit::{Backend, Fixture, TestDevice, next_update, org_with_code};

/// Two nodes on one fresh database, sharing a manual clock and a server key.
async fn two_nodes() -> (Fixture, Vec<Engine>) {
    let fixture = Fixture::new(Backend::Postgres).await;
    let nodes = vec![fixture.start().await, fixture.start().await];
    (fixture, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_hand_out_a_license_twice() {
    const LICENSES: u32 = 4;
    const DEVICES: usize = 12;
    let (_fixture, nodes) = two_nodes().await;
    let (org, code) = org_with_code(&nodes[0], LICENSES, None).await;

    let mut tasks = Vec::new();
    for device in 0..DEVICES {
        let engine = nodes[device % 2].clone();
        let device = TestDevice::new();
        let code = code.code.clone();
        tasks.push(tokio::spawn(async move {
            // A batch that lost a race is retried by the engine; "unavailable" after that
            // means "try again", as a device would.
            for _ in 0..50 {
                let link = device.connect(&engine);
                match engine.pair(device.pair_request(&code), &link).await {
                    PairAnswer::Refused {
                        reason: Refusal::Unavailable,
                        ..
                    } => tokio::time::sleep(Duration::from_millis(20)).await,
                    answer => return answer,
                }
            }
            panic!("still unavailable after 50 attempts");
        }));
    }
    let mut licenses = HashSet::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            PairAnswer::Paired(paired) => {
                assert!(
                    licenses.insert(paired.license_id),
                    "license {:?} handed out twice",
                    paired.license_id
                );
            }
            PairAnswer::Refused { reason, .. } => {
                assert_eq!(reason, Refusal::NoFreeLicense);
                refused += 1;
            }
            PairAnswer::Waiting { .. } => panic!("none of these pairings asked to wait"),
        }
    }
    assert_eq!(licenses.len(), LICENSES as usize);
    assert_eq!(refused, DEVICES - LICENSES as usize);
    let devices = nodes[1]
        .query(&Principal::Operator, org.id, ListDevices::default())
        .await
        .unwrap();
    assert_eq!(devices.items.len(), LICENSES as usize);
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_node_reach_devices_on_another() {
    let (fixture, nodes) = two_nodes().await;
    let (admin_node, device_node) = (&nodes[0], &nodes[1]);
    let op = Principal::Operator;
    let (org, code) = org_with_code(admin_node, 2, None).await;
    let first = admin_node
        .run(
            &op,
            org.id,
            CreateConfiguration {
                name: "First".into(),
                body: "[GLOBAL]\n".into(),
            },
        )
        .await
        .unwrap();

    // Two devices connected to the other node.
    let mut links = Vec::new();
    for _ in 0..2 {
        let device = TestDevice::new();
        let link = device.connect(device_node);
        let PairAnswer::Paired(paired) = device_node
            .pair(device.pair_request(&code.code), &link)
            .await
        else {
            panic!("pairing refused");
        };
        let update = next_update(&link).await;
        assert_eq!(
            update.configuration.map(|c| (c.id, c.revision)),
            Some((first.id, 1))
        );
        links.push((paired.device_id, link));
    }

    // An edit on the admin node reaches both.
    admin_node
        .run(
            &op,
            org.id,
            UpdateConfiguration {
                config_id: first.id,
                name: None,
                body: Some("[GLOBAL]\nsynctime_low_threshold = 5\n".into()),
                if_revision: None,
            },
        )
        .await
        .unwrap();
    for (_, link) in &links {
        let pushed = next_update(link)
            .await
            .configuration
            .expect("a configuration");
        assert_eq!((pushed.id, pushed.revision), (first.id, 2));
        assert!(pushed.body.contains("synctime_low_threshold"));
    }

    // An assignment to one device reaches that device only.
    let second = admin_node
        .run(
            &op,
            org.id,
            CreateConfiguration {
                name: "Second".into(),
                body: "[GLOBAL]\n".into(),
            },
        )
        .await
        .unwrap();
    admin_node
        .run(
            &op,
            org.id,
            AssignConfiguration {
                config_id: second.id,
                device_ids: vec![links[0].0],
            },
        )
        .await
        .unwrap();
    let pushed = next_update(&links[0].1)
        .await
        .configuration
        .expect("a configuration");
    assert_eq!((pushed.id, pushed.revision), (second.id, 1));

    // The listeners' connections die while an unpair happens: the device is still told.
    assert_eq!(fixture.database.kill_listeners().await, 2);
    admin_node
        .run(
            &op,
            org.id,
            UnpairDevice {
                device_id: links[1].0,
            },
        )
        .await
        .unwrap();
    let update = next_update(&links[1].1).await;
    assert_eq!(update.end, Some(SessionEnd::Unpaired));
    // The other device saw no spurious change: nothing is waiting for it.
    assert!(links[0].1.take().configuration.is_none());
    assert_eq!(links[0].1.ended(), None);

    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_sweep_expired_licenses_and_each_pairing_ends_once() {
    const PER_NODE: usize = 3;
    let (fixture, nodes) = two_nodes().await;
    let hour = Duration::from_secs(3600);
    let valid_until = fixture.clock.now().plus(hour);
    let (org, code) = org_with_code(&nodes[0], 2 * PER_NODE as u32, Some(valid_until)).await;
    let mut links = Vec::new();
    for index in 0..2 * PER_NODE {
        let node = &nodes[index % 2];
        let device = TestDevice::new();
        let link = device.connect(node);
        assert!(matches!(
            node.pair(device.pair_request(&code.code), &link).await,
            PairAnswer::Paired(_)
        ));
        links.push(link);
    }

    // The shared clock jumps past the licenses' end: both nodes' sweeps run at once.
    fixture.clock.advance(2 * hour);
    for link in &links {
        assert_eq!(
            next_update(link).await.end,
            Some(SessionEnd::LicenseExpired)
        );
    }
    // Once more, side by side: nothing is left to end.
    let (first, second) = tokio::join!(nodes[0].sweep_expired(), nodes[1].sweep_expired());
    assert_eq!((first.expired, second.expired), (0, 0));
    let audit = nodes[1]
        .query(
            &Principal::Operator,
            org.id,
            ListAudit {
                page: PageRequest::first(500),
                ..ListAudit::default()
            },
        )
        .await
        .unwrap();
    let expiries = audit
        .items
        .iter()
        .filter(|entry| entry.action == "device.license_expired")
        .count();
    assert_eq!(
        expiries,
        2 * PER_NODE,
        "each pairing ended (and audited) once"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}
