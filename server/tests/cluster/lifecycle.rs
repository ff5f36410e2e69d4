//! The device lifecycle across nodes: a replacement made through one node and used on another
//! ends the old device connected to a third; the inactive release run by one node's duty spares
//! a device connected to another node and releases an offline one; a staged rollout made on one
//! node reaches the chosen devices on the others and is promoted once, by whichever duty is first;
//! devices waiting in line on two nodes are paired in arrival order by licenses added on a third.

use client::ResumeResult;
use protocol::{CloseCode, EndReason, ServerMessage};
use serde_json::{Value, json};

use crate::harness::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_used_on_one_node_ends_the_old_device_on_another() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Replacements", 1).await;
    let (old_identity, mut old, paired) = pair_ok(&cluster.b.device_url, &code).await;
    let replacement = admin
        .post(
            &format!(
                "/v1/organizations/{org}/devices/{}/replace",
                paired.device_id
            ),
            json!({}),
        )
        .await;
    let replacement = replacement["code"].as_str().unwrap().to_string();

    let (_, _new, new_paired) = pair_ok(&cluster.c.device_url, &replacement).await;
    assert_eq!(new_paired.license_id, paired.license_id);
    match old.recv_timeout(WAIT).await {
        Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Replaced),
        other => panic!("the old device on node b was not told: {other:?}"),
    }
    let closed = old.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::Replaced));
    let mut again = connect(&cluster.a.device_url, protocol::Encoding::Json).await;
    let resumed = again
        .resume(&old_identity, &device_info("device"), None)
        .await
        .unwrap();
    assert_eq!(resumed, ResumeResult::Ended(EndReason::Replaced));
    let pool = sql(&cluster.database).await;
    assert_eq!(
        active_devices(&pool, &org).await.len(),
        1,
        "one device on the license"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inactive_release_on_one_node_spares_a_device_connected_to_another() {
    // Each node runs on its own test clock, moved one at a time: with the default node timeout a
    // node whose clock ran ahead would take the others' heartbeats for stale and mark their
    // devices offline, seen last at their node's last heartbeat (before the jump). On real
    // clocks that heartbeat is seconds old; here it would be a month old. A timeout longer than
    // the jump keeps every node alive to the others.
    let cluster = ThreeNodes::start_with(&["--node-timeout", "90days"]).await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Inactive", 2).await;
    let (_, _connected, kept) = pair_ok(&cluster.b.device_url, &code).await;
    let (_, leaving, released) = pair_ok(&cluster.c.device_url, &code).await;
    leaving.close().await;
    let released_id = released.device_id.to_string();
    eventually("the device on node c is offline", || async {
        (admin.device(&org, &released_id).await["online"] == json!(false)).then_some(())
    })
    .await;
    admin
        .put(
            &format!("/v1/organizations/{org}/inactive-release"),
            json!({ "after_days": 30 }),
        )
        .await;
    // Every node's clock moves, then node a's duty finds them due.
    for node in [&cluster.a, &cluster.b, &cluster.c] {
        node.admin.advance(31.0 * 86_400.0).await;
    }
    admin.post("/v1/test/sweep", json!({})).await;
    let pool = sql(&cluster.database).await;
    let active = active_devices(&pool, &org).await;
    assert_eq!(active.len(), 1, "{active:?}");
    assert!(
        active.contains_key(&kept.device_id.to_string().parse().unwrap()),
        "the device connected to node b keeps its license"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_made_on_one_node_reaches_devices_on_others_and_is_promoted_once() {
    const STABLE: &str = "[GLOBAL]\nserver = one\n";
    const STAGED: &str = "[GLOBAL]\nserver = two\n";
    // Every node's clock is moved below, one at a time (see the inactive release's test).
    let cluster = ThreeNodes::start_with(&["--node-timeout", "90days"]).await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Rollouts", 6).await;
    let config = admin.create_config(&org, "Meters", STABLE).await;
    // Six devices, three on node b and three on node c, each on revision 1.
    let mut devices = Vec::new();
    for index in 0..6 {
        let node = if index % 2 == 0 {
            &cluster.b
        } else {
            &cluster.c
        };
        let (_, mut connection, paired) = pair_ok(&node.device_url, &code).await;
        let first = next_configuration(&mut connection).await;
        assert!(acknowledge(&mut connection, &first, protocol::AckOutcome::Applied).await);
        devices.push((paired.device_id.to_string(), connection));
    }

    // Made on node a for one device on node b and one on node c: only those two are sent it.
    let chosen = [devices[0].0.clone(), devices[1].0.clone()];
    let path = format!("/v1/organizations/{org}/configurations/{config}");
    let started = admin
        .post(
            &format!("{path}/rollout"),
            json!({ "body": STAGED, "device_ids": chosen, "promote_after_seconds": 3600 }),
        )
        .await;
    assert_eq!(started["revision"], json!(2));
    for (_, connection) in &mut devices[..2] {
        let pushed = next_configuration(connection).await;
        assert_eq!((pushed.revision, pushed.body.as_str()), (2, STAGED));
        assert!(acknowledge(connection, &pushed, protocol::AckOutcome::Applied).await);
    }
    let revisions: Vec<Value> = cluster
        .c
        .admin
        .devices(&org)
        .await
        .iter()
        .map(|device| device["configuration"]["revision"].clone())
        .collect();
    assert_eq!(
        revisions
            .iter()
            .filter(|revision| **revision == json!(2))
            .count(),
        2,
        "{revisions:?}"
    );

    // An hour later on every node: each node's duty finds it due; it is promoted once, and
    // the devices that were not chosen, on both nodes, receive the revision.
    for node in [&cluster.a, &cluster.b, &cluster.c] {
        node.admin.advance(3601.0).await;
    }
    eventually("the rollout is promoted", || async {
        let view = cluster.b.admin.get(&format!("{path}/rollout")).await;
        (view["staged"]["state"] == json!("promoted")).then_some(())
    })
    .await;
    for (_, connection) in &mut devices[2..] {
        assert_eq!(next_configuration(connection).await.revision, 2);
    }
    let promotions = admin
        .audit(&org)
        .await
        .into_iter()
        .filter(|entry| entry["action"] == "configuration.rollout_promoted")
        .count();
    assert_eq!(promotions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_waiting_on_two_nodes_are_paired_in_arrival_order_by_licenses_added_on_a_third() {
    use client::{PairOrWaitResult, PairResult};
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let org = admin.create_org("Line").await;
    let code = admin.reusable_code(&org, json!({})).await;
    let code = code["code"].as_str().unwrap().to_string();
    // Four devices wait, alternately on nodes b and c.
    let mut waiting = Vec::new();
    for place in 1..=4 {
        let node = if place % 2 == 1 {
            &cluster.b
        } else {
            &cluster.c
        };
        let identity = identity();
        let mut connection = connect(&node.device_url, protocol::Encoding::Json).await;
        let answer = connection
            .pair_or_wait(&code, &identity, &device_info("waiting"))
            .await
            .unwrap();
        assert!(
            matches!(answer, PairOrWaitResult::Waiting(ref waiting) if waiting.position == place),
            "device {place} on node {}: {answer:?}",
            node.name
        );
        waiting.push(connection);
    }
    // Two licenses added on node a: the first two in line (one on b, one on c) are paired.
    admin.add_licenses(&org, 2).await;
    for connection in &mut waiting[..2] {
        match connection.wait_for_turn().await.unwrap() {
            PairResult::Paired(paired) => assert!(!paired.already_paired),
            other => panic!("not paired from the line: {other:?}"),
        }
    }
    let line = cluster
        .c
        .admin
        .get(&format!("/v1/organizations/{org}/waiting"))
        .await;
    let left: Vec<u64> = line["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|device| device["position"].as_u64().unwrap())
        .collect();
    assert_eq!(left, [1, 2], "{line}");
    // One dismissed through node b is told on node c; the last one gets the next license.
    let ticket = line["items"][0]["ticket"].as_u64().unwrap();
    let (status, _) = cluster
        .b
        .admin
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/organizations/{org}/waiting/{ticket}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    match waiting[2].wait_for_turn().await.unwrap() {
        PairResult::Refused(refused) => {
            assert_eq!(refused.reason, protocol::RefusalReason::Dismissed);
        }
        other => panic!("the dismissed device was not told: {other:?}"),
    }
    cluster.c.admin.add_licenses(&org, 1).await;
    assert!(matches!(
        waiting[3].wait_for_turn().await.unwrap(),
        PairResult::Paired(_)
    ));
    let pool = sql(&cluster.database).await;
    assert_eq!(active_devices(&pool, &org).await.len(), 3);
}
