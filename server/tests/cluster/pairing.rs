//! Pairing on three nodes at once: PostgreSQL, not any node's memory, decides who gets what.

use std::collections::{HashMap, HashSet};

use client::{Connection, DeviceIdentity, PairResult};
use futures_util::future::join_all;
use protocol::{Encoding, Paired, RefusalReason};
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;
use crate::support::*;

/// Connects `count` devices spread over the three nodes (device `i` on node `i % 3`).
async fn connect_spread(cluster: &ThreeNodes, count: usize) -> Vec<(usize, Connection)> {
    let mut connections = Vec::with_capacity(count);
    for index in 0..count {
        let node = index % 3;
        connections.push((
            node,
            connect(&cluster.node(node).device_url, Encoding::Postcard).await,
        ));
    }
    connections
}

/// Sends every pairing at once and waits for every answer: (node, identity, answer).
async fn pair_all(
    connections: Vec<(usize, Connection)>,
    code: &str,
) -> Vec<(usize, DeviceIdentity, PairResult)> {
    join_all(connections.into_iter().map(|(node, mut connection)| {
        let code = code.to_string();
        async move {
            let identity = identity();
            let result = tokio::time::timeout(
                WAIT,
                connection.pair(&code, &identity, &device_info("racer")),
            )
            .await
            .expect("pairing answered in time")
            .expect("pairing answered");
            (node, identity, result)
        }
    }))
    .await
}

fn paired(results: &[(usize, DeviceIdentity, PairResult)]) -> Vec<(usize, &Paired)> {
    results
        .iter()
        .filter_map(|(node, _, result)| match result {
            PairResult::Paired(paired) => Some((*node, paired)),
            PairResult::Refused(_) => None,
        })
        .collect()
}

fn uuids(ids: &[String]) -> HashSet<Uuid> {
    ids.iter()
        .map(|id| id.parse().expect("uuid"))
        .collect::<HashSet<_>>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_fifty_devices_on_three_nodes_race_for_sixty_licenses() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let org = admin.create_org("Short pool").await;
    let licenses = uuids(&admin.add_licenses(&org, 60).await);
    let code = admin.reusable_code(&org, json!({})).await;
    let code_id: Uuid = code["id"].as_str().unwrap().parse().unwrap();
    let code = code["code"].as_str().unwrap();

    let connections = connect_spread(&cluster, 150).await;
    let results = pair_all(connections, code).await;

    let granted = paired(&results);
    let per_node: Vec<usize> = (0..3)
        .map(|node| granted.iter().filter(|(n, _)| *n == node).count())
        .collect();
    assert_eq!(
        granted.len(),
        60,
        "exactly as many pairings as licenses (per node: {per_node:?})"
    );
    let refusals: Vec<RefusalReason> = results.iter().filter_map(|(_, _, r)| refusal(r)).collect();
    assert_eq!(refusals.len(), 90);
    assert!(
        refusals
            .iter()
            .all(|reason| *reason == RefusalReason::NoFreeLicense),
        "every refusal says no_free_license: {refusals:?}"
    );
    let told: HashMap<Uuid, Uuid> = granted
        .iter()
        .map(|(_, paired)| (paired.device_id, paired.license_id))
        .collect();
    assert_eq!(told.len(), 60, "no device id told twice");
    let told_licenses: HashSet<Uuid> = told.values().copied().collect();
    assert_eq!(
        told_licenses, licenses,
        "every license handed out, each once"
    );
    assert!(granted.iter().all(|(_, paired)| !paired.already_paired));

    // PostgreSQL holds exactly what the devices were told.
    let pool = sql(&cluster.database).await;
    assert_eq!(consistent_pairings(&pool, &org).await, told);
    let (uses,): (i64,) = sqlx::query_as("SELECT uses FROM codes WHERE id = $1")
        .bind(code_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(uses, 60, "the code counted one use per pairing");
    // Every node's admin API reads the same answer.
    for node in [&cluster.a, &cluster.b, &cluster.c] {
        let summary = node.admin.summary(&org).await;
        assert_eq!(summary["assigned"], json!(60), "node {}", node.name);
        assert_eq!(summary["free"], json!(0), "node {}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_single_use_code_scanned_on_three_nodes_at_once_pairs_exactly_one_device() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.b.admin;
    let org = admin.create_org("One scan").await;
    // Other licenses are free: a losing scan must not take one of them instead.
    let licenses = admin.add_licenses(&org, 3).await;
    let code = admin.single_use_code(&org, &licenses[0]).await;
    let code_id: Uuid = code["id"].as_str().unwrap().parse().unwrap();
    let code = code["code"].as_str().unwrap();

    let connections = connect_spread(&cluster, 60).await;
    let results = pair_all(connections, code).await;

    let granted = paired(&results);
    assert_eq!(granted.len(), 1, "exactly one winner");
    let winner = granted[0].1;
    assert_eq!(winner.license_id.to_string(), licenses[0]);
    let refusals: Vec<RefusalReason> = results.iter().filter_map(|(_, _, r)| refusal(r)).collect();
    assert_eq!(refusals.len(), 59);
    assert!(
        refusals
            .iter()
            .all(|reason| *reason == RefusalReason::CodeUsed),
        "every other scan is refused with code_used: {refusals:?}"
    );

    let pool = sql(&cluster.database).await;
    assert_eq!(
        consistent_pairings(&pool, &org).await,
        HashMap::from([(winner.device_id, winner.license_id)])
    );
    let (used_by, uses): (Option<Uuid>, i64) = sqlx::query_as(
        "SELECT used_by_device, uses FROM codes WHERE id = $1 AND used_at IS NOT NULL",
    )
    .bind(code_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(used_by, Some(winner.device_id));
    assert!(uses <= 1, "a single-use code counted {uses} uses");
    let summary = cluster.c.admin.summary(&org).await;
    assert_eq!(summary["assigned"], json!(1));
    assert_eq!(summary["free"], json!(2));
}

/// The reply to a pairing is lost (the device never read it); the device scans again and its
/// retry lands on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_retried_on_another_node_gets_the_same_device_back() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let org = admin.create_org("Retry").await;
    let licenses = admin.add_licenses(&org, 3).await;
    let reusable = admin.reusable_code(&org, json!({})).await;
    let reusable_id = reusable["id"].as_str().unwrap().to_string();
    let reusable = reusable["code"].as_str().unwrap().to_string();
    let pool = sql(&cluster.database).await;

    // Reusable code: paired on A, the answer dropped with the connection, retried on B.
    let identity = identity();
    let mut on_a = connect(&cluster.a.device_url, Encoding::Postcard).await;
    let PairResult::Paired(first) = on_a
        .pair(&reusable, &identity, &device_info("retry"))
        .await
        .unwrap()
    else {
        panic!("first pairing refused")
    };
    drop(on_a);
    let mut on_b = connect(&cluster.b.device_url, Encoding::Json).await;
    let PairResult::Paired(again) = on_b
        .pair(&reusable, &identity, &device_info("retry"))
        .await
        .unwrap()
    else {
        panic!("retried pairing refused")
    };
    assert_eq!(again.device_id, first.device_id, "the same device");
    assert_eq!(again.license_id, first.license_id, "the same license");
    assert!(again.already_paired, "the retry says it was already paired");
    let code = cluster
        .c
        .admin
        .get(&format!("/v1/organizations/{org}/codes/{reusable_id}"))
        .await;
    assert_eq!(code["uses"], json!(1), "the retry counted no use: {code}");
    let (uses,): (i64,) = sqlx::query_as("SELECT uses FROM codes WHERE id = $1")
        .bind(reusable_id.parse::<Uuid>().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(uses, 1);

    // Single-use code: used on B, the same installation retries it on C after the reply was
    // lost. The code is spent, but the installation gets its device back.
    let free = licenses
        .iter()
        .find(|license| **license != first.license_id.to_string())
        .unwrap();
    let single = admin.single_use_code(&org, free).await;
    let single = single["code"].as_str().unwrap().to_string();
    let other = crate::support::identity();
    let mut on_b = connect(&cluster.b.device_url, Encoding::Postcard).await;
    let PairResult::Paired(first_single) = on_b
        .pair(&single, &other, &device_info("retry"))
        .await
        .unwrap()
    else {
        panic!("single-use pairing refused")
    };
    assert_eq!(&first_single.license_id.to_string(), free);
    drop(on_b);
    let mut on_c = connect(&cluster.c.device_url, Encoding::Postcard).await;
    let PairResult::Paired(again_single) = on_c
        .pair(&single, &other, &device_info("retry"))
        .await
        .unwrap()
    else {
        panic!("retried single-use pairing refused")
    };
    assert_eq!(again_single.device_id, first_single.device_id);
    assert_eq!(again_single.license_id, first_single.license_id);
    assert!(again_single.already_paired);

    // Two devices, two licenses, nothing else taken.
    assert_eq!(
        consistent_pairings(&pool, &org).await,
        HashMap::from([
            (first.device_id, first.license_id),
            (first_single.device_id, first_single.license_id),
        ])
    );
    assert_eq!(admin.summary(&org).await["free"], json!(1));
}
