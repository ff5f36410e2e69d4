//! Several nodes on one device port (`SO_REUSEPORT`): the kernel spreads devices over them.

use client::{ConnectOptions, Connection};
use protocol::Encoding;
use server::ServerConfig;

use crate::support::{Admin, OPERATOR_TOKEN, TestServer};

async fn accepted(admin: &Admin) -> u64 {
    admin.get("/v1/status").await["device_endpoint"]["accepted"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn two_nodes_share_one_device_port_and_both_serve_devices() {
    let first = TestServer::start_with(|config| config.reuse_port = true).await;
    let address = first.server.device_addr;
    // A second node on the same database and the same device port.
    let mut config: ServerConfig = first.node_config();
    config.device_listen = address;
    config.reuse_port = true;
    let second = server::start(config)
        .await
        .expect("a second node shares the port");
    let second_admin = Admin::new(&second.admin_url(), OPERATOR_TOKEN);

    // Without the flag the port is taken, and the node says so before opening anything.
    let mut refused = first.node_config();
    refused.device_listen = address;
    let Err(error) = server::start(refused).await else {
        panic!("a node without --reuse-port cannot bind a shared port");
    };
    assert!(
        format!("{error:#}").contains("cannot listen for devices"),
        "{error:#}"
    );

    // The kernel spreads connections by their addresses and ports: with 64 connections both
    // nodes get some (the chance that one gets none is 2^-63).
    let url = first.device_url();
    let mut connections = Vec::new();
    for _ in 0..64 {
        let options = ConnectOptions::with_encoding(Encoding::Postcard);
        connections.push(Connection::connect(&url, &options).await.unwrap());
    }
    let on_first = accepted(&first.admin).await;
    let on_second = accepted(&second_admin).await;
    assert_eq!(on_first + on_second, 64, "every connection reached a node");
    assert!(on_first > 0 && on_second > 0, "{on_first} and {on_second}");

    // A device pairs through the shared port whichever node it lands on.
    let org = first.admin.create_org("Shared port").await;
    first.admin.add_licenses(&org, 1).await;
    let code = first.admin.reusable_code(&org, serde_json::json!({})).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, paired) = crate::support::pair_ok(&url, &code).await;
    assert_eq!(paired.organization_id.to_string(), org);

    drop(connections);
    second.shutdown().await;
    first.stop().await;
}
