//! An admin command sent to one node reaches devices connected to the others (PostgreSQL
//! LISTEN/NOTIFY between the nodes), also across a lost listener connection; which configuration
//! new devices get (a pin, a code's own) and a revert hold whichever node they were made on; every
//! webhook event is delivered once however many nodes send.

use client::Connection;
use protocol::{AckOutcome, CloseCode, ConfigRef, EndReason, Paired, ServerMessage};
use serde_json::json;

use crate::harness::*;
use crate::support::*;

/// Pairs a device on `node` and reads its first configuration.
async fn paired_device(node: &Node, code: &str) -> (Connection, Paired, protocol::Configuration) {
    let (_, mut connection, paired) = pair_ok(&node.device_url, code).await;
    let configuration = next_configuration(&mut connection).await;
    (connection, paired, configuration)
}

/// The next configuration a device receives, saying which node it was connected to when it did
/// not arrive.
async fn receives(connection: &mut Connection, node: &Node, what: &str) -> protocol::Configuration {
    match connection.recv_timeout(WAIT).await {
        Ok(ServerMessage::Configuration(configuration)) => configuration,
        other => panic!(
            "a device on node {} did not receive {what}: got {other:?}",
            node.name
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_one_node_reaches_devices_on_the_other_two() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Edits", 5).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nedit = 1\n")
        .await;

    let mut devices = Vec::new();
    for node in [&cluster.b, &cluster.b, &cluster.c, &cluster.c, &cluster.a] {
        let (connection, paired, first) = paired_device(node, &code).await;
        assert_eq!(first.revision, 1);
        devices.push((node, connection, paired));
    }

    admin
        .edit_config(&org, &config, "[GLOBAL]\nedit = 2\n")
        .await;
    for (node, connection, _) in &mut devices {
        let configuration = receives(connection, node, "the edit made on node a").await;
        assert_eq!(configuration.revision, 2);
        assert_eq!(configuration.body, "[GLOBAL]\nedit = 2\n");
        let recorded = connection
            .ack(
                ConfigRef {
                    configuration_id: configuration.configuration_id,
                    revision: 2,
                },
                AckOutcome::Applied,
            )
            .await
            .expect("acknowledged");
        assert!(recorded.recorded);
    }
    // The node that made the edit sees every device's acknowledgement.
    for (node, _, paired) in &devices {
        let shown = admin.device(&org, &paired.device_id.to_string()).await;
        assert_eq!(
            shown["applied"]["revision"],
            json!(2),
            "device on node {}: {shown}",
            node.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_and_an_unpair_sent_to_one_node_reach_a_device_on_another() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Assign", 2).await;
    let older = admin
        .create_config(&org, "Older", "[GLOBAL]\nolder = 1\n")
        .await;
    let newer = admin
        .create_config(&org, "Newer", "[GLOBAL]\nnewer = 1\n")
        .await;

    let (mut on_c, paired, first) = paired_device(&cluster.c, &code).await;
    assert_eq!(
        first.configuration_id.to_string(),
        newer,
        "new devices get the newest configuration"
    );

    admin
        .post(
            &format!("/v1/organizations/{org}/configurations/{older}/assign"),
            json!({ "device_ids": [paired.device_id] }),
        )
        .await;
    let assigned = receives(&mut on_c, &cluster.c, "the assignment made on node a").await;
    assert_eq!(assigned.configuration_id.to_string(), older);
    assert_eq!(assigned.body, "[GLOBAL]\nolder = 1\n");

    admin.unpair(&org, paired.device_id).await;
    match on_c.recv_timeout(WAIT).await {
        Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Unpaired),
        other => panic!("the device on node c was not told it was unpaired: got {other:?}"),
    }
    let closed = on_c.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::Unpaired));
    assert_eq!(cluster.c.admin.summary(&org).await["free"], json!(2));
}

/// Bulk actions by filter sent to node a reach devices connected to nodes b and c: the
/// assignment is pushed, the unpairing told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_assignment_and_unpair_by_filter_reach_devices_on_other_nodes() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Bulk", 2).await;
    let older = admin
        .create_config(&org, "Older", "[GLOBAL]\nolder = 1\n")
        .await;
    admin
        .create_config(&org, "Newer", "[GLOBAL]\nnewer = 1\n")
        .await;
    let (mut on_b, _, _) = paired_device(&cluster.b, &code).await;
    let (mut on_c, _, _) = paired_device(&cluster.c, &code).await;

    let answer = admin
        .post(
            &format!("/v1/organizations/{org}/configurations/{older}/assign"),
            json!({ "filter": { "online": true } }),
        )
        .await;
    assert_eq!(
        (answer["matched"].clone(), answer["assigned"].clone()),
        (json!(2), json!(2))
    );
    for (connection, node) in [(&mut on_b, &cluster.b), (&mut on_c, &cluster.c)] {
        let assigned = receives(connection, node, "the bulk assignment made on node a").await;
        assert_eq!(assigned.configuration_id.to_string(), older);
    }

    let answer = admin
        .post(
            &format!("/v1/organizations/{org}/devices/unpair"),
            json!({ "filter": { "configuration": older } }),
        )
        .await;
    assert_eq!(answer, json!({ "matched": 2, "unpaired": 2 }));
    for connection in [&mut on_b, &mut on_c] {
        match connection.recv_timeout(WAIT).await {
            Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Unpaired),
            other => panic!("a device on another node was not told it was unpaired: {other:?}"),
        }
        let closed = connection.recv_timeout(WAIT).await.unwrap_err();
        assert_eq!(closed.close_code(), Some(CloseCode::Unpaired));
    }
    assert_eq!(cluster.b.admin.summary(&org).await["free"], json!(2));
}

/// The node's LISTEN connection is killed by PostgreSQL while an edit is made on another node:
/// the notification of that edit is never delivered to it, and the node must still bring its
/// devices up to date once it listens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_still_receives_an_edit_made_while_its_node_lost_its_listener() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Listener", 2).await;
    let config = admin
        .create_config(&org, "Meters", "[GLOBAL]\nv = 1\n")
        .await;
    let (mut on_b, _, first) = paired_device(&cluster.b, &code).await;
    assert_eq!(first.revision, 1);

    let pool = sql(&cluster.database).await;
    let listeners = || async {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'paird-listener'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        count
    };
    eventually(
        "a LISTEN connection from each of the three nodes",
        || async { (listeners().await >= 3).then_some(()) },
    )
    .await;

    // Every listener of this test's database (only this one: the cluster is shared with other
    // tests). pg_stat_activity cannot tell which node a connection belongs to, so node b's goes
    // with the other two; node a applies its own edit without its listener anyway.
    let (terminated,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'paird-listener') \
         AS killed",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(terminated >= 3, "terminated {terminated} listeners");
    admin.edit_config(&org, &config, "[GLOBAL]\nv = 2\n").await;
    let configuration = receives(
        &mut on_b,
        &cluster.b,
        "the edit made on node a while node b's listener was down",
    )
    .await;
    assert_eq!(configuration.revision, 2);

    // The nodes listen again, and later edits keep arriving.
    eventually("the nodes to listen again", || async {
        (listeners().await >= 3).then_some(())
    })
    .await;
    admin.edit_config(&org, &config, "[GLOBAL]\nv = 3\n").await;
    let configuration = receives(&mut on_b, &cluster.b, "the next edit").await;
    assert_eq!(configuration.revision, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_feed_on_one_node_tells_what_happens_on_the_others() {
    let cluster = ThreeNodes::start().await;
    let (org, code) = cluster.a.admin.org_with_code("Feed", 3).await;
    cluster
        .a
        .admin
        .create_config(&org, "Meters", "[GLOBAL]\n")
        .await;
    let mut feed = EventFeed::open(&cluster.a.admin, &org).await;
    // The other nodes hear of the watcher through PostgreSQL; they publish once they have.
    for node in [&cluster.b, &cluster.c] {
        eventually("the other nodes hear of the watcher", || async {
            let status = node.admin.get("/v1/status").await;
            (status["engine"]["live_feed_watched_elsewhere"] == 1).then_some(())
        })
        .await;
    }

    // A device pairs on node b, applies its configuration there and goes offline.
    let (_, mut connection, paired) = pair_ok(&cluster.b.device_url, &code).await;
    let device = json!([paired.device_id.to_string()]);
    let event = feed.next_named("devices", Some("paired")).await;
    assert_eq!(event.data["device_ids"], device);
    let received = next_configuration(&mut connection).await;
    assert!(acknowledge(&mut connection, &received, AckOutcome::Applied).await);
    let event = feed.next_named("devices", Some("acknowledged")).await;
    assert_eq!(event.data["device_ids"], device);
    connection.close().await;
    let event = feed.next_named("devices", Some("offline")).await;
    assert_eq!(event.data["device_ids"], device);

    // An admin command on node c.
    cluster.c.admin.add_licenses(&org, 1).await;
    feed.next_named("licenses", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_a_code_of_its_own_and_a_revert_made_on_one_node_hold_on_the_others() {
    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("New devices", 4).await;
    let pinned = admin
        .create_config(&org, "Pinned", "[GLOBAL]\npinned = 1\n")
        .await;
    let carried = admin
        .create_config(&org, "Carried", "[GLOBAL]\ncarried = 1\n")
        .await;
    // Newest is "Carried"; the pin, made through node b, wins for pairings on node c.
    cluster
        .b
        .admin
        .put(
            &format!("/v1/organizations/{org}/new-device-configuration"),
            json!({ "configuration_id": pinned }),
        )
        .await;
    let (mut on_c, _, first) = paired_device(&cluster.c, &code).await;
    assert_eq!(first.configuration_id.to_string(), pinned);
    // A code made on node a that carries its own configuration gives it on node b.
    let own = admin
        .reusable_code(&org, json!({ "configuration_id": carried }))
        .await;
    let (_, _, first) = paired_device(&cluster.b, own["code"].as_str().unwrap()).await;
    assert_eq!(first.configuration_id.to_string(), carried);

    // An edit and a revert to revision 1 made on node b: the device on node c gets revision 2,
    // then revision 3 with revision 1's body.
    let path = format!("/v1/organizations/{org}/configurations/{pinned}");
    cluster
        .b
        .admin
        .put(&path, json!({ "body": "[GLOBAL]\npinned = 2\n" }))
        .await;
    assert_eq!(
        receives(&mut on_c, &cluster.c, "the edit").await.revision,
        2
    );
    let reverted = cluster
        .b
        .admin
        .post(&format!("{path}/revisions/1/revert"), json!({}))
        .await;
    assert_eq!(reverted["revision"], json!(3));
    let configuration = receives(&mut on_c, &cluster.c, "the revert").await;
    assert_eq!(
        (configuration.revision, configuration.body.as_str()),
        (3, "[GLOBAL]\npinned = 1\n")
    );
    let history = cluster.c.admin.get(&format!("{path}/revisions")).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_event_is_delivered_once_whichever_nodes_send() {
    use std::sync::{Arc, Mutex};
    /// (event id, kind) of each request, in arrival order.
    type Received = Arc<Mutex<Vec<(String, String)>>>;
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(received): axum::extract::State<Received>,
                 headers: axum::http::HeaderMap| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    received
                        .lock()
                        .unwrap()
                        .push((header("paird-event-id"), header("paird-event")));
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(Arc::clone(&received));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cluster = ThreeNodes::start().await;
    let admin = &cluster.a.admin;
    let (org, code) = admin.org_with_code("Hooks", 6).await;
    admin
        .post(
            &format!("/v1/organizations/{org}/webhooks"),
            json!({ "url": url, "events": ["pairings", "unpairings"] }),
        )
        .await;
    // Pairings on nodes b and c, one at a time (an event each), then an unpairing on node a.
    let mut devices = Vec::new();
    for node in [&cluster.b, &cluster.c, &cluster.b, &cluster.c] {
        let (_, connection, paired) = pair_ok(&node.device_url, &code).await;
        devices.push((connection, paired));
    }
    admin.unpair(&org, devices[0].1.device_id).await;
    let events = eventually("five events", || async {
        let events = received.lock().unwrap().clone();
        (events.len() >= 5).then_some(events)
    })
    .await;
    // Three nodes send; each event arrives once, and the unpairing (last made) last.
    let ids: std::collections::HashSet<&String> = events.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "an event delivered twice: {events:?}"
    );
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(events[4].1, "unpairings", "{events:?}");
    let pool = sql(&cluster.database).await;
    let delivered: Vec<i64> =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(delivered, [5]);
}
