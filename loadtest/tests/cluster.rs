//! The load tester against a two-node cluster on one throwaway PostgreSQL database: devices are
//! spread over both nodes, and an edit sent to node 1 reaches the devices of node 2. The nodes
//! run in this process (`server::start`); `--start-cluster`, which starts them as processes,
//! is exercised by the CI smoke run.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use loadtest::admin::Admin;
use loadtest::scenarios::{self, Common, PushArgs, Target};

const TOKEN: &str = "loadtest-cluster-token-0123456789";
const SERVER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_one_node_reaches_every_device_on_both() {
    let database = tokio::task::spawn_blocking(pgtemp::Cluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = database.create_database().unwrap();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server::ServerConfig::ephemeral(dir.path());
        config.database_url = Some(url.clone());
        config.database_pool_size = 4;
        config.operator_token = Some(TOKEN.into());
        config.server_key = Some(SERVER_KEY.into());
        // One after the other: the first creates the schema.
        nodes.push(server::start(config).await.unwrap());
        dirs.push(dir);
    }
    let mut target = Target::single(
        Admin::new(&nodes[0].admin_url(), TOKEN),
        &nodes[0].device_url(),
        None,
    );
    target.device_urls = nodes.iter().map(|node| node.device_url()).collect();
    target.node_admins = nodes
        .iter()
        .map(|node| Admin::new(&node.admin_url(), TOKEN))
        .collect();
    target.quiet = true;
    let args = PushArgs {
        devices: 40,
        edits: 2,
        pair_rate: None,
        common: Common {
            concurrency: 16,
            verify: true,
            timeout: Duration::from_secs(60),
            workers: None,
            sources: None,
            json_frames: false,
            connect_timeout: Duration::from_secs(20),
            no_acks: false,
        },
    };
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        scenarios::push(&mut target, &args),
    )
    .await
    .expect("the push run ends")
    .unwrap();
    assert_eq!(report.verification, Some(Vec::new()), "{}", report.table());
    // Half the devices on each node, so that node 2's received the edits through PostgreSQL.
    assert_eq!(report.figures.get("node 1 connections"), Some(&20.0));
    assert_eq!(report.figures.get("node 2 connections"), Some(&20.0));
    assert_eq!(report.figures.get("connections at the end"), Some(&40.0));
    let edits: Vec<_> = report
        .phases
        .iter()
        .filter(|phase| phase.name.starts_with("edit"))
        .collect();
    assert_eq!(edits.len(), 2);
    for phase in edits {
        assert_eq!((phase.ok, phase.attempted), (40, 40), "{}", phase.name);
    }
}
