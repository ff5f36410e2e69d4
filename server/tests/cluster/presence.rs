//! Presence across nodes: a device is shown online only while a live node holds its connection.

use protocol::Encoding;
use serde_json::json;

use crate::harness::*;
use crate::support::*;

/// The nodes give up a node whose heartbeat is older than this (`--node-timeout`).
const NODE_TIMEOUT_SECONDS: f64 = 30.0;

/// Under test hooks each node has a manual clock of its own, which moves only when told. The
/// surviving nodes' clocks are moved in steps of this size, one node after the other, so that
/// they never drift apart by more than a step: well under the node time-out, so that neither
/// gives the other up while the killed node's heartbeat goes stale.
const STEP_SECONDS: f64 = 5.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connected_to_a_killed_node_does_not_stay_online() {
    let mut cluster = ThreeNodes::start_with(&["--node-timeout", "30s"]).await;
    let admin = cluster.b.admin.clone();
    let (org, code) = admin.org_with_code("Presence", 2).await;
    let (identity_a, _on_a, on_a) = pair_ok(&cluster.a.device_url, &code).await;
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
    // Time passes on the surviving nodes, past the node time-out of the killed one.
    let mut moved = 0.0;
    while moved <= NODE_TIMEOUT_SECONDS + 2.0 * STEP_SECONDS {
        for node in [&cluster.b, &cluster.c] {
            node.admin.advance(STEP_SECONDS).await;
        }
        moved += STEP_SECONDS;
    }
    eventually(
        "the device of the killed node to be shown offline by node b",
        || async { (!online(on_a.device_id).await).then_some(()) },
    )
    .await;
    assert!(
        online(on_c.device_id).await,
        "the device on the live node c is still shown online"
    );

    // The device reconnects to another node: online again.
    let mut moved_to_b = connect(&cluster.b.device_url, Encoding::Postcard).await;
    let resumed = moved_to_b
        .resume(&identity_a, &device_info("device"), None)
        .await
        .unwrap();
    assert!(matches!(resumed, client::ResumeResult::Resumed(_)));
    eventually("the moved device to be shown online again", || async {
        online(on_a.device_id).await.then_some(())
    })
    .await;
}
