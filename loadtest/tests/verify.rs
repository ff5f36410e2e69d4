//! `--verify` catches a wrong outcome: a real server, real devices over WebSocket, then the
//! server's state made to disagree with what the devices were told.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use loadtest::admin::Admin;
use loadtest::fleet::{Command, Fleet, FleetSpec, Outcome, PairPlan, Reply, now_us};
use loadtest::verify::{Expectation, verify};
use serde_json::json;

const TOKEN: &str = "loadtest-verify-token-0123456789";

struct Setup {
    server: server::RunningServer,
    admin: Admin,
    org: String,
    expectation: Expectation,
    _dir: tempfile::TempDir,
}

/// Ten devices race for eight licenses: eight paired, two refused, all verified as told.
async fn enrolled() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::ServerConfig::ephemeral(dir.path());
    config.operator_token = Some(TOKEN.into());
    let server = server::start(config).await.unwrap();
    let admin = Admin::new(&server.admin_url(), TOKEN);
    let provisioned = admin.provision(8).await.unwrap();
    let code = admin.reusable_code(&provisioned.org).await.unwrap();
    let mut fleet = Fleet::new(FleetSpec {
        device_urls: vec![server.device_url()],
        json: false,
        sources: Vec::new(),
        first_port: 0,
        concurrency: 16,
        connect_timeout_ms: 20_000,
        no_acks: false,
    });
    let Reply::Connected(tally) = fleet.handle(Command::Connect { count: 10 }).await else {
        panic!("connect");
    };
    assert_eq!(tally.ok, 10);
    let plan = PairPlan {
        codes: vec![code],
        fresh: false,
        devices: 10,
        stay: false,
        rate: None,
        start_us: now_us(),
    };
    let Reply::Paired(results) = fleet.handle(Command::Pair(plan)).await else {
        panic!("pair");
    };
    let mut expectation = Expectation::default();
    let mut problems = Vec::new();
    for result in &results {
        match &result.outcome {
            Outcome::Paired {
                device_id,
                license_id,
                ..
            } => expectation.told_paired(device_id, license_id, &mut problems),
            Outcome::Refused(reason) => {
                *expectation.refused.entry(reason.clone()).or_default() += 1;
            }
            Outcome::Failed(error) => panic!("device failed: {error}"),
        }
    }
    assert!(problems.is_empty());
    expectation.assigned = Some(8);
    expectation.refusals = Some(BTreeMap::from([("no_free_license".to_string(), 2)]));
    fleet.handle(Command::Close).await;
    // The true outcome verifies.
    let found = verify(&admin, &provisioned.org, &expectation)
        .await
        .unwrap();
    assert_eq!(found, Vec::<String>::new());
    Setup {
        server,
        admin,
        org: provisioned.org,
        expectation,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_told_paired_but_not_paired_is_caught() {
    let setup = enrolled().await;
    // The server loses one pairing the device was told about.
    let (device, _) = setup.expectation.told.iter().next().unwrap();
    setup
        .admin
        .post(
            &format!("/v1/organizations/{}/devices/{device}/unpair", setup.org),
            json!({}),
        )
        .await
        .unwrap();
    let found = verify(&setup.admin, &setup.org, &setup.expectation)
        .await
        .unwrap();
    assert!(
        found
            .iter()
            .any(|problem| problem.contains(device.as_str()) && problem.contains("not listed")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|problem| problem.contains("expected 8 assigned")),
        "{found:?}"
    );
    setup.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_license_told_to_two_devices_is_caught() {
    let setup = enrolled().await;
    let mut told: Vec<(String, String)> = setup.expectation.told.clone().into_iter().collect();
    told.sort();
    // Two devices told the same license: a double assignment as the devices saw it.
    let mut wrong = setup.expectation.clone();
    wrong.told.insert(told[0].0.clone(), told[1].1.clone());
    let found = verify(&setup.admin, &setup.org, &wrong).await.unwrap();
    assert!(
        found
            .iter()
            .any(|problem| problem.contains("handed out more than once")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|problem| problem.contains(&told[0].0) && problem.contains("but holds")),
        "{found:?}"
    );
    setup.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_do_not_match_the_shortfall_are_caught() {
    let setup = enrolled().await;
    let mut wrong = setup.expectation.clone();
    wrong.refusals = Some(BTreeMap::from([("no_free_license".to_string(), 3)]));
    let found = verify(&setup.admin, &setup.org, &wrong).await.unwrap();
    assert!(
        found
            .iter()
            .any(|problem| problem.starts_with("expected refusals")),
        "{found:?}"
    );
    let mut failed = setup.expectation.clone();
    failed.errors.insert("connection lost".into(), 1);
    let found = verify(&setup.admin, &setup.org, &failed).await.unwrap();
    assert!(
        found
            .iter()
            .any(|problem| problem.contains("failed with errors")),
        "{found:?}"
    );
    setup.server.shutdown().await;
}
