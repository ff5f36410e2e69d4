//! Device requests through the organization's actor on a real SQLite file: whatever the
//! batching, each license goes to one device, a single-use code has one winner, and an expired
//! pairing ends when its device comes back. Assertions read the engine's observable state.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use engine::admin::CreateSingleUseCode;
use engine::model::PageRequest;
use engine::query::{GetLicenseSummary, ListAudit, ListLicenses};
use engine::{
    Clock, Engine, EngineSettings, PairAnswer, Principal, Refusal, ResumeAnswer, SessionEnd,
};
use testkit::{Backend, Fixture, TestDevice, org_with_code};

const OPERATOR: Principal = Principal::Operator;

/// Pairs every device at once, each on a connection of its own; answers in device order.
async fn pair_all(engine: &Engine, devices: &[TestDevice], code: &str) -> Vec<PairAnswer> {
    let tasks: Vec<_> = devices
        .iter()
        .map(|device| {
            let engine = engine.clone();
            let request = device.pair_request(code);
            let link = device.connect(&engine);
            tokio::spawn(async move { engine.pair(request, &link).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_devices_than_licenses_get_each_license_once() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    let (org, code) = org_with_code(&engine, 10, None).await;
    let devices: Vec<TestDevice> = (0..30).map(|_| TestDevice::new()).collect();
    let answers = pair_all(&engine, &devices, &code.code).await;
    let licenses: HashSet<_> = answers
        .iter()
        .filter_map(|answer| match answer {
            PairAnswer::Paired(paired) => Some(paired.license_id),
            PairAnswer::Refused { .. } | PairAnswer::Waiting { .. } => None,
        })
        .collect();
    assert_eq!(
        licenses.len(),
        10,
        "ten devices paired, each on its own license"
    );
    let refused = answers
        .iter()
        .filter(|answer| {
            matches!(
                answer,
                PairAnswer::Refused {
                    reason: Refusal::NoFreeLicense,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refused, 20);
    let summary = engine
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!((summary.assigned, summary.free), (10, 0));
    let audit = engine
        .query(
            &OPERATOR,
            org.id,
            ListAudit {
                page: PageRequest::first(PageRequest::MAX_LIMIT),
                ..ListAudit::default()
            },
        )
        .await
        .unwrap();
    let count = |action: &str| audit.items.iter().filter(|e| e.action == action).count();
    assert_eq!((count("device.paired"), count("pairing.refused")), (10, 20));
    let metrics = engine.metrics();
    assert_eq!((metrics.pairings, metrics.refused_pairings), (10, 20));
    assert_eq!(metrics.batched_requests, 30);
    engine.shutdown().await;
}

/// A burst of devices on a code this node has not seen asks the database for it once: the
/// others wait for that answer rather than each looking it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_new_code_looks_the_code_up_once() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    let (_, code) = org_with_code(&engine, 300, None).await;
    let devices: Vec<TestDevice> = (0..300).map(|_| TestDevice::new()).collect();
    let answers = pair_all(&engine, &devices, &code.code).await;
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, PairAnswer::Paired(_)))
    );
    assert_eq!(engine.metrics().code_lookups, 1);
    // An unknown code is not remembered: each attempt asks again, and is refused.
    let strangers: Vec<TestDevice> = (0..3).map(|_| TestDevice::new()).collect();
    let answers = pair_all(&engine, &strangers, "ZZZZ-ZZZZ-ZZZZ").await;
    assert!(answers.iter().all(|answer| matches!(
        answer,
        PairAnswer::Refused {
            reason: Refusal::UnknownCode,
            ..
        }
    )));
    assert_eq!(engine.metrics().code_lookups, 4);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_code_scanned_by_many_at_once_has_one_winner() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    let (org, _) = org_with_code(&engine, 3, None).await;
    let license = engine
        .query(&OPERATOR, org.id, ListLicenses::default())
        .await
        .unwrap()
        .items[1]
        .license
        .id;
    let code = engine
        .run(&OPERATOR, org.id, CreateSingleUseCode::new(license, None))
        .await
        .unwrap();
    let devices: Vec<TestDevice> = (0..25).map(|_| TestDevice::new()).collect();
    let answers = pair_all(&engine, &devices, &code.code).await;
    let winners: Vec<_> = answers
        .iter()
        .filter_map(|answer| match answer {
            PairAnswer::Paired(paired) => Some(paired.license_id),
            PairAnswer::Refused { .. } | PairAnswer::Waiting { .. } => None,
        })
        .collect();
    assert_eq!(
        winners,
        vec![license],
        "one winner, on the code's own license"
    );
    assert!(answers.iter().all(|answer| matches!(
        answer,
        PairAnswer::Paired(_)
            | PairAnswer::Refused {
                reason: Refusal::CodeUsed,
                ..
            }
    )));
    let summary = engine
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!(
        (summary.assigned, summary.free, summary.reserved),
        (1, 2, 0)
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_group_commit_every_request_is_a_transaction_of_its_own() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let settings = EngineSettings {
        group_commit: false,
        ..EngineSettings::default()
    };
    let engine = fixture.start_with(settings).await;
    let (_, code) = org_with_code(&engine, 12, None).await;
    let devices: Vec<TestDevice> = (0..12).map(|_| TestDevice::new()).collect();
    let answers = pair_all(&engine, &devices, &code.code).await;
    assert!(answers.iter().all(|a| matches!(a, PairAnswer::Paired(_))));
    let metrics = engine.metrics();
    assert_eq!((metrics.batches, metrics.largest_batch), (12, 1));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pairing_ends_and_its_device_is_told_why() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    let hour = Duration::from_secs(3600);
    let valid_until = fixture.clock.now().plus(hour);
    let (org, code) = org_with_code(&engine, 1, Some(valid_until)).await;
    let device = TestDevice::new();
    let link = device.connect(&engine);
    let answer = engine.pair(device.pair_request(&code.code), &link).await;
    assert!(
        matches!(&answer, PairAnswer::Paired(p) if p.license_valid_until == Some(valid_until)),
        "{answer:?}"
    );
    engine.disconnected(&link).await;

    // The license's end passes; whether the sweep or the reconnection ends the pairing first,
    // the device is told its license expired, and the license is no longer assigned.
    fixture.clock.advance(2 * hour);
    let resumed = engine
        .resume(device.resume_request(), &device.connect(&engine))
        .await;
    assert_eq!(resumed, ResumeAnswer::Ended(SessionEnd::LicenseExpired));
    let summary = engine
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!((summary.assigned, summary.expired), (0, 1));
    // Pairing again needs a valid license: there is none.
    let again = engine
        .pair(device.pair_request(&code.code), &device.connect(&engine))
        .await;
    assert!(
        matches!(
            again,
            PairAnswer::Refused {
                reason: Refusal::NoFreeLicense,
                ..
            }
        ),
        "{again:?}"
    );
    engine.shutdown().await;
}

/// A device connected until the server stopped was seen then: after a crash and a restart it
/// does not count as unseen since it last connected (the inactive release would take its
/// license before it could reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_online_until_a_crash_counts_as_seen_at_the_restart() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    let (org, code) = org_with_code(&engine, 1, None).await;
    let setting = engine::admin::SetInactiveRelease {
        after_days: Some(30),
    };
    engine.run(&OPERATOR, org.id, setting).await.unwrap();
    let device = TestDevice::new();
    let link = device.connect(&engine);
    assert!(matches!(
        engine.pair(device.pair_request(&code.code), &link).await,
        PairAnswer::Paired(_)
    ));
    let day = Duration::from_secs(86_400);
    // Connected for forty days: never released.
    fixture.clock.advance(40 * day);
    assert_eq!(engine.sweep_expired().await.released_inactive, 0);

    // The process dies with the device connected; a new one starts on the same database.
    drop(link);
    drop(engine);
    let restarted = fixture.start().await;
    assert_eq!(restarted.sweep_expired().await.released_inactive, 0);
    let summary = restarted
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!(summary.assigned, 1);
    // It does not come back: thirty days after the restart its license is released (by this
    // sweep or by the duty, which the clock's jump also wakes).
    fixture.clock.advance(31 * day);
    restarted.sweep_expired().await;
    let summary = restarted
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!((summary.assigned, summary.free), (0, 1));
    restarted.shutdown().await;
}
