//! Many devices at once: the database decides, exactly.

use std::collections::HashSet;

use client::PairResult;
use futures_util::future::join_all;
use protocol::{Encoding, RefusalReason};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_race_for_fifty_licenses_with_one_reusable_code() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 50).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;

    // The app is open at the scan prompt: every device is connected before the burst.
    let url = test.device_url();
    let connections = join_all((0..200).map(|_| connect(&url, Encoding::Postcard))).await;
    let results = join_all(connections.into_iter().map(|mut connection| {
        let code = code.clone();
        async move {
            let result = connection
                .pair(&code, &identity(), &device_info("racer"))
                .await
                .expect("answered");
            (result, connection)
        }
    }))
    .await;

    let mut licenses = HashSet::new();
    let mut devices = HashSet::new();
    let mut refused = 0;
    for (result, _) in &results {
        match result {
            PairResult::Paired(paired) => {
                assert!(
                    licenses.insert(paired.license_id),
                    "license handed out twice"
                );
                assert!(devices.insert(paired.device_id));
            }
            PairResult::Refused(refusal) => {
                assert_eq!(refusal.reason, RefusalReason::NoFreeLicense);
                refused += 1;
            }
        }
    }
    assert_eq!(licenses.len(), 50);
    assert_eq!(refused, 150);
    assert_eq!(test.database.assignment_counts().await, (50, 50, 50));
    let summary = admin.summary(&org).await;
    assert_eq!(
        (summary["assigned"].clone(), summary["free"].clone()),
        (json!(50), json!(0))
    );
    drop(results);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_devices_scanning_one_single_use_code_at_once_pair_exactly_one() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let licenses = admin.add_licenses(&org, 5).await;
    let code = admin.single_use_code(&org, &licenses[0]).await;
    let code = code["code"].as_str().unwrap().to_string();

    let url = test.device_url();
    let connections = join_all((0..50).map(|_| connect(&url, Encoding::Json))).await;
    let results = join_all(connections.into_iter().map(|mut connection| {
        let code = code.clone();
        async move {
            connection
                .pair(&code, &identity(), &device_info("scanner"))
                .await
                .expect("answered")
        }
    }))
    .await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|result| match result {
            PairResult::Paired(paired) => Some(paired.license_id.to_string()),
            PairResult::Refused(_) => None,
        })
        .collect();
    assert_eq!(winners, vec![licenses[0].clone()]);
    assert!(
        results
            .iter()
            .filter_map(refusal)
            .all(|reason| reason == RefusalReason::CodeUsed)
    );
    assert_eq!(test.database.assignment_counts().await, (1, 1, 1));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_in_a_burst_are_refused_alone_and_the_rest_commit() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 100).await;
    let (_, other_code) = admin.org_with_code("Other", 5).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    // An installation already paired elsewhere, which will scan this organization's code.
    let (elsewhere, _keep, _) = pair_ok(&test.device_url(), &other_code).await;
    // An installation paired here, whose credential an impostor will not have.
    let (paired_here, _keep2, _) = pair_ok(&test.device_url(), &code).await;
    let impostor = client::DeviceIdentity {
        installation_id: paired_here.installation_id,
        credential: protocol::Credential([9; 32]),
    };
    // One installation that scans twice in the same burst.
    let twice = identity();

    let mut identities: Vec<(client::DeviceIdentity, Option<RefusalReason>)> =
        (0..60).map(|_| (identity(), None)).collect();
    identities.insert(10, (elsewhere, Some(RefusalReason::AlreadyPairedElsewhere)));
    identities.insert(20, (impostor, Some(RefusalReason::CredentialMismatch)));
    identities.insert(30, (twice.clone(), None));
    identities.insert(31, (twice.clone(), None));

    let url = test.device_url();
    let connections = join_all(identities.iter().map(|_| connect(&url, Encoding::Postcard))).await;
    let results = join_all(connections.into_iter().zip(identities.iter()).map(
        |(mut connection, (identity, _))| {
            let code = code.clone();
            async move {
                let result = connection
                    .pair(&code, identity, &device_info("burst"))
                    .await
                    .expect("answered");
                (result, connection)
            }
        },
    ))
    .await;
    let mut twice_devices = HashSet::new();
    for ((result, _), (identity, expected)) in results.iter().zip(&identities) {
        match (result, expected) {
            (PairResult::Paired(paired), None) => {
                if identity.installation_id == twice.installation_id {
                    twice_devices.insert(paired.device_id);
                }
            }
            (PairResult::Refused(refused), Some(reason)) => assert_eq!(refused.reason, *reason),
            (other, expected) => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    assert_eq!(
        twice_devices.len(),
        1,
        "the installation that scanned twice got one device"
    );
    // 60 new devices, the double scanner once, and the device paired before the burst.
    assert_eq!(admin.devices(&org).await.len(), 62);
    let (assigned, distinct, _) = test.database.assignment_counts().await;
    assert_eq!((assigned, distinct), (63, 63));
    drop(results);
    test.stop().await;
}
