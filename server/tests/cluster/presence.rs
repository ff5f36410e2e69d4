//! Presence across nodes: a device is shown online only while a live node holds its connection.

use protocol::Encoding;
use serde_json::json;

use crate::harness::*;
use crate::support::*;

/// The nodes give up a node whose heartbeat is older than this (`--node-timeout`).
const NODE_TIMEOUT_SECONDS: f64 = 30.0;

/// Under test hooks each node has a manual clock of its own, which moves only when told, and a
/// node records its heartbeat at its own clock's time. Moving one node's clock far past the others'
/// makes that node take them all for dead. So time is moved on one survivor first (node c: it gives
/// up the killed node a, and also node b, which holds no device yet), then on the other (node b),
/// by the same amount, before anything is connected to b. Moving them in alternate small steps
/// instead raced with the nodes' asynchronous heartbeats on a loaded machine (a node's recorded
/// heartbeat fell a few steps behind the other's clock).
const JUMP_SECONDS: f64 = 2.0 * NODE_TIMEOUT_SECONDS;

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
    // Time passes on node c, past the node time-out of the killed one. Node b's clock stays
    // behind: from b's side nobody is stale, so b marks nothing offline.
    cluster.c.admin.advance(JUMP_SECONDS).await;
    eventually(
        "the device of the killed node to be shown offline by node b",
        || async { (!online(on_a.device_id).await).then_some(()) },
    )
    .await;
    assert!(
        online(on_c.device_id).await,
        "the device on the live node c is still shown online"
    );

    // Node b catches up before the device moves to it, so that c does not take b for dead.
    cluster.b.admin.advance(JUMP_SECONDS).await;
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
