//! Presence across nodes: a device is shown online only while a live node holds its connection.

use serde_json::json;

use crate::harness::*;
use crate::support::*;

/// How far the surviving nodes' clocks are moved after the kill: past any heartbeat expiry a
/// node could be configured with in these tests.
const PAST_HEARTBEAT_EXPIRY_SECONDS: f64 = 300.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connected_to_a_killed_node_does_not_stay_online() {
    let mut cluster = ThreeNodes::start().await;
    let admin = cluster.b.admin.clone();
    let (org, code) = admin.org_with_code("Presence", 2).await;
    let (_, _on_a, on_a) = pair_ok(&cluster.a.device_url, &code).await;
    let (_, _on_c, on_c) = pair_ok(&cluster.c.device_url, &code).await;
    let online = |device: uuid::Uuid| {
        let (admin, org) = (admin.clone(), org.clone());
        async move { admin.device(&org, &device.to_string()).await["online"] == json!(true) }
    };
    eventually("both devices shown online by node b", || async {
        (online(on_a.device_id).await && online(on_c.device_id).await).then_some(())
    })
    .await;

    cluster.a.sigkill().await;
    // Time passes on the surviving nodes (their clocks are manual under test hooks).
    for node in [&cluster.b, &cluster.c] {
        node.admin.advance(PAST_HEARTBEAT_EXPIRY_SECONDS).await;
    }
    eventually(
        "the device of the killed node to be shown offline by node b",
        || async { (!online(on_a.device_id).await).then_some(()) },
    )
    .await;
    // The device on a live node is still shown online.
    eventually("the device on node c to be shown online", || async {
        online(on_c.device_id).await.then_some(())
    })
    .await;
}
