//! The engine's main flows through every layer of each backend: pairing, a push, an
//! acknowledgement, a single-use code, an edit, a reconnection and an unpairing, on a real
//! SQLite file and on a real PostgreSQL database.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use engine::admin::{CreateConfiguration, CreateSingleUseCode, UnpairDevice, UpdateConfiguration};
use engine::query::{GetLicenseSummary, ListAudit, ListDevices};
use engine::{AckAnswer, AckOutcome, AckRequest, PairAnswer, Principal, ResumeAnswer, SessionEnd};
use testkit::{Backend, Fixture, TestDevice, org_with_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_flows_on_sqlite() {
    main_flows(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_flows_on_postgres() {
    main_flows(Backend::Postgres).await;
}

async fn main_flows(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let engine = fixture.start().await;
    let op = Principal::Operator;
    let (org, code) = org_with_code(&engine, 2, None).await;
    let config = engine
        .run(
            &op,
            org.id,
            CreateConfiguration {
                name: "Main".into(),
                body: "[GLOBAL]\n".into(),
            },
        )
        .await
        .unwrap();

    // A device pairs and is handed the newest configuration; it applies it.
    let device = TestDevice::new();
    let link = device.connect(&engine);
    let answer = engine.pair(device.pair_request(&code.code), &link).await;
    let PairAnswer::Paired(paired) = answer else {
        panic!("not paired: {answer:?}")
    };
    assert!(!paired.already_paired);
    let update = link.take();
    assert_eq!(update.configuration.map(|c| c.id), Some(config.id));
    let ack = engine
        .acknowledge(
            &link,
            AckRequest {
                config_id: config.id,
                revision: 1,
                outcome: AckOutcome::Applied,
            },
        )
        .await;
    assert_eq!(ack, AckAnswer::Recorded(true));
    let devices = engine
        .query(&op, org.id, ListDevices::default())
        .await
        .unwrap();
    assert_eq!(devices.items.len(), 1);
    assert!(devices.items[0].online);
    assert_eq!(
        devices.items[0].applied.as_ref().map(|a| a.revision),
        Some(1)
    );

    // Pairing again is idempotent: the same device and license, no new license taken.
    let again = engine
        .pair(device.pair_request(&code.code), &device.connect(&engine))
        .await;
    assert!(
        matches!(&again, PairAnswer::Paired(p) if p.already_paired && p.device_id == paired.device_id),
        "{again:?}"
    );
    assert_eq!(link.take().end, Some(SessionEnd::Superseded));

    // A single-use code for the other license pairs a second device on it.
    let licenses = engine.query(&op, org.id, GetLicenseSummary).await.unwrap();
    assert_eq!((licenses.free, licenses.assigned), (1, 1));
    let other_license = engine
        .query(
            &op,
            org.id,
            engine::query::ListLicenses {
                filter: engine::model::FleetFilter {
                    license_status: Some(engine::model::LicenseStatus::Free),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items[0]
        .license
        .id;
    let single = engine
        .run(&op, org.id, CreateSingleUseCode::new(other_license, None))
        .await
        .unwrap();
    let second = TestDevice::new();
    let second_link = second.connect(&engine);
    let answer = engine
        .pair(second.pair_request(&single.code), &second_link)
        .await;
    let PairAnswer::Paired(second_paired) = answer else {
        panic!("not paired with the single-use code: {answer:?}")
    };
    assert_eq!(second_paired.license_id, other_license);

    // An edit reaches the connected device, and answers the revision it made.
    let edited = engine
        .run(
            &op,
            org.id,
            UpdateConfiguration {
                config_id: config.id,
                name: None,
                body: Some("[GLOBAL]\nedited = 1\n".into()),
                if_revision: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(edited.revision, 2);
    let pushed = second_link
        .take()
        .configuration
        .expect("the edit is pushed");
    assert_eq!(pushed.revision, 2);

    // The first device reconnects, then is unpaired: its connection is told, its license freed.
    let reconnected = device.connect(&engine);
    let resumed = engine.resume(device.resume_request(), &reconnected).await;
    assert!(matches!(resumed, ResumeAnswer::Resumed(_)), "{resumed:?}");
    let unpaired = engine
        .run(
            &op,
            org.id,
            UnpairDevice {
                device_id: paired.device_id,
            },
        )
        .await
        .unwrap();
    assert_eq!(unpaired.license_id, paired.license_id);
    assert_eq!(reconnected.take().end, Some(SessionEnd::Unpaired));
    let summary = engine.query(&op, org.id, GetLicenseSummary).await.unwrap();
    assert_eq!((summary.free, summary.assigned), (1, 1));
    // Its credential no longer works, and it is told why.
    let after = engine
        .resume(device.resume_request(), &device.connect(&engine))
        .await;
    assert_eq!(after, ResumeAnswer::Ended(SessionEnd::Unpaired));
    let audit = engine
        .query(&op, org.id, ListAudit::default())
        .await
        .unwrap();
    assert!(audit.items.iter().any(|e| e.action == "device.paired"));
    assert!(audit.items.iter().any(|e| e.action == "device.unpaired"));
    engine.shutdown().await;
}
