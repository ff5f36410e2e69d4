//! The waiting list: a device refused `no_free_license` may wait in line instead; it stays
//! connected and is paired, in the order it arrived, when a license is added or freed. A device
//! that disconnects loses its place; an admin may dismiss one.

use std::collections::HashSet;

use client::{Connection, DeviceIdentity, PairOrWaitResult, PairResult};
use protocol::RefusalReason;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// A new device that asks to pair or wait with `code`; answers its connection and the first
/// answer.
async fn pair_or_wait(url: &str, code: &str) -> (DeviceIdentity, Connection, PairOrWaitResult) {
    let identity = identity();
    let mut connection = connect(url, protocol::Encoding::Json).await;
    let answer = connection
        .pair_or_wait(code, &identity, &device_info("waiting device"))
        .await
        .expect("an answer");
    (identity, connection, answer)
}

async fn line(admin: &Admin, org: &str) -> Vec<Value> {
    let page = admin
        .get(&format!("/v1/organizations/{org}/waiting?limit=500"))
        .await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_waiting_devices_are_paired_in_arrival_order_as_licenses_come_ten_at_a_time() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let code = admin.reusable_code(&org, json!({})).await;
    let code = code["code"].as_str().unwrap();
    let mut feed = EventFeed::open(admin, &org).await;

    // No license: each waits, in the order it came.
    let mut waiting = Vec::new();
    for place in 1..=200 {
        let (identity, connection, answer) = pair_or_wait(&test.device_url(), code).await;
        match answer {
            PairOrWaitResult::Waiting(waiting) => assert_eq!(waiting.position, place),
            other => panic!("device {place} was not put in line: {other:?}"),
        }
        waiting.push((identity, connection));
    }
    feed.next_named("waiting", None).await;
    let listed = line(admin, &org).await;
    assert_eq!(listed.len(), 200);
    assert_shaped_as_documented("### Waiting device", &listed[0]);
    let order: Vec<String> = listed
        .iter()
        .map(|device| device["installation_id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = waiting
        .iter()
        .map(|(identity, _)| identity.installation_id.to_string())
        .collect();
    assert_eq!(order, expected, "listed in arrival order");
    let positions: Vec<u64> = listed
        .iter()
        .map(|device| device["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=200).collect::<Vec<u64>>());

    // Ten licenses at a time: the next ten in line are paired, nobody else.
    let mut licenses = HashSet::new();
    for round in 0..20 {
        admin.add_licenses(&org, 10).await;
        for (_, connection) in &mut waiting[round * 10..round * 10 + 10] {
            match connection.wait_for_turn().await.expect("an answer") {
                PairResult::Paired(paired) => {
                    assert!(!paired.already_paired);
                    assert!(licenses.insert(paired.license_id), "a license given twice");
                }
                PairResult::Refused(refused) => panic!("round {round}: refused {refused:?}"),
            }
        }
        let left = line(admin, &org).await;
        assert_eq!(left.len(), 200 - (round + 1) * 10, "round {round}");
        if let (Some(next), Some((identity, _))) = (left.first(), waiting.get((round + 1) * 10)) {
            assert_eq!(
                next["installation_id"],
                json!(identity.installation_id),
                "round {round}: the next in line is the next to have come"
            );
            assert_eq!(next["position"], json!(1));
        }
    }
    assert_eq!(licenses.len(), 200);
    assert_eq!(admin.devices(&org).await.len(), 200);
    assert_eq!(admin.summary(&org).await["free"], json!(0));
    let (assigned, devices, distinct) = test.database.assignment_counts().await;
    assert_eq!((assigned, devices, distinct), (200, 200, 200));

    // A paired device is served like any other: it acknowledges and resumes.
    let (identity, _) = &waiting[0];
    let mut again = test.connect().await;
    let resumed = again
        .resume(identity, &device_info("waiting device"), None)
        .await
        .unwrap();
    assert!(matches!(resumed, client::ResumeResult::Resumed(_)));
    let status = admin.get("/v1/status").await;
    assert_eq!(status["engine"]["served_from_line"], json!(200));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_leaves_loses_its_place_and_one_dismissed_is_told_why() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let code = admin.reusable_code(&org, json!({})).await;
    let code = code["code"].as_str().unwrap();
    let (_, first, _) = pair_or_wait(&test.device_url(), code).await;
    let (_, mut second, _) = pair_or_wait(&test.device_url(), code).await;
    let (_, mut third, answer) = pair_or_wait(&test.device_url(), code).await;
    assert!(matches!(answer, PairOrWaitResult::Waiting(ref waiting) if waiting.position == 3));

    // A pairing that does not wait is refused as before, whatever the line.
    let (_, _, refused) = pair_new(&test.device_url(), code).await;
    assert_eq!(refusal(&refused), Some(RefusalReason::NoFreeLicense));

    // The first leaves: it loses its place.
    first.close().await;
    eventually("the first device left the line", || async {
        (line(admin, &org).await.len() == 2).then_some(())
    })
    .await;
    // The third is dismissed: it is told, and its connection stays open.
    let listed = line(admin, &org).await;
    let ticket = listed[1]["ticket"].as_u64().unwrap();
    let path = format!("/v1/organizations/{org}/waiting/{ticket}");
    let (status, _) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    match third.wait_for_turn().await.unwrap() {
        PairResult::Refused(refused) => assert_eq!(refused.reason, RefusalReason::Dismissed),
        other => panic!("the dismissed device was not told: {other:?}"),
    }
    let (status, answer) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404, "{answer}");
    let other = admin.create_org("Other").await;
    let ticket_of_second = listed[0]["ticket"].as_u64().unwrap();
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{other}/waiting/{ticket_of_second}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "another organization's line is not this one");
    let dismissed: Vec<Value> = admin
        .audit(&org)
        .await
        .into_iter()
        .filter(|entry| entry["action"] == "waiting.dismissed")
        .collect();
    assert_eq!(dismissed.len(), 1);
    assert_eq!(dismissed[0]["subject"], json!(ticket.to_string()));

    // A license freed by an unpairing, or added, goes to the one left in line.
    admin.add_licenses(&org, 1).await;
    match second.wait_for_turn().await.unwrap() {
        PairResult::Paired(paired) => assert!(!paired.already_paired),
        other => panic!("the device left in line was not paired: {other:?}"),
    }
    assert!(line(admin, &org).await.is_empty());
    // The dismissed device may ask again; it waits at the end of the (now empty) line.
    let third_again = third
        .pair_or_wait(code, &identity(), &device_info("again"))
        .await
        .unwrap();
    assert!(matches!(third_again, PairOrWaitResult::Waiting(ref waiting) if waiting.position == 1));
    let devices = admin.devices(&org).await;
    assert_eq!(devices.len(), 1);
    admin.unpair(&org, devices[0]["id"].as_str().unwrap()).await;
    match third.wait_for_turn().await.unwrap() {
        PairResult::Paired(_) => {}
        other => panic!("the freed license did not reach the line: {other:?}"),
    }
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_asks_to_wait_is_paired_at_once_when_a_license_is_free() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut connection, answer) = pair_or_wait(&test.device_url(), &code).await;
    assert!(matches!(answer, PairOrWaitResult::Paired(_)), "{answer:?}");
    assert_eq!(next_configuration(&mut connection).await.name, "Meters");
    // The line is empty and stays so.
    assert!(line(admin, &org).await.is_empty());
    // A bad code is refused, not put in line.
    let (_, _, answer) = pair_or_wait(&test.device_url(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert!(
        matches!(answer, PairOrWaitResult::Refused(ref refused) if refused.reason == RefusalReason::UnknownCode),
        "{answer:?}"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_keeps_at_most_its_share_of_the_line() {
    let test = TestServer::start_with(|config| config.device.max_waiting_per_address = 2).await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let code = admin.reusable_code(&org, json!({})).await;
    let code = code["code"].as_str().unwrap();
    let (_, first, answer) = pair_or_wait(&test.device_url(), code).await;
    assert!(matches!(answer, PairOrWaitResult::Waiting(_)), "{answer:?}");
    let (_, _second, answer) = pair_or_wait(&test.device_url(), code).await;
    assert!(matches!(answer, PairOrWaitResult::Waiting(_)), "{answer:?}");
    // A third from the same address is answered as a pairing that does not wait.
    let (_, _third, answer) = pair_or_wait(&test.device_url(), code).await;
    assert!(
        matches!(answer, PairOrWaitResult::Refused(ref refused) if refused.reason == RefusalReason::NoFreeLicense),
        "{answer:?}"
    );
    assert_eq!(line(admin, &org).await.len(), 2);
    // One leaves: there is room again.
    first.close().await;
    eventually("the first device left the line", || async {
        (line(admin, &org).await.len() == 1).then_some(())
    })
    .await;
    let (_, _fourth, answer) = pair_or_wait(&test.device_url(), code).await;
    assert!(matches!(answer, PairOrWaitResult::Waiting(_)), "{answer:?}");
    test.stop().await;
}
