//! What one client can hold: connections that never pair, admin connections that never finish
//! a request, control-frame floods. Each test runs the attack and shows that the server stays
//! available to everyone else.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use client::admin::AdminClient;
use client::{ConnectOptions, Connection};
use protocol::{CloseCode, Encoding};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const SECOND_ADDRESS: [u8; 4] = [127, 0, 0, 2];

async fn connect_from(url: &str, from: [u8; 4]) -> Connection {
    let options = ConnectOptions {
        local_address: Some(IpAddr::from(from)),
        ..ConnectOptions::with_encoding(Encoding::Postcard)
    };
    Connection::connect(url, &options)
        .await
        .expect("device connects")
}

async fn tcp_from(address: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(address).await.unwrap()
}

/// Reads until the server closes the connection; what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

/// One plain admin request on its own connection from `from`; the status line's code.
async fn admin_status_from(address: SocketAddr, from: [u8; 4], path: &str) -> u16 {
    let mut stream = tcp_from(address, from).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: paird\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = until_closed(&mut stream).await;
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The organization's one device, connected on `connection`, still gets what an admin pushes.
async fn still_served(test: &TestServer, org: &str, connection: &mut Connection) {
    let config = test
        .admin
        .create_config(org, "Meters", "[GLOBAL]\nsynctime = 1\n")
        .await;
    let device = test.admin.devices(org).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    test.admin
        .put(
            &format!("/v1/organizations/{org}/devices/{device}/configuration"),
            serde_json::json!({ "configuration_id": config }),
        )
        .await;
    let pushed = next_configuration(connection).await;
    assert_eq!(pushed.configuration_id.to_string(), config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_cannot_keep_out_devices_that_pair() {
    let test = TestServer::start_with(|config| config.device.max_unproven_per_address = 3).await;
    let (org, code) = test.admin.org_with_code("Acme", 10).await;
    let url = test.device_url();
    // The attack: connections that finish the handshake and never pair.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(test.connect().await);
    }
    let elsewhere = connect_from(&url, SECOND_ADDRESS).await;
    // A fourth from the same address takes the oldest one's place.
    idle.push(test.connect().await);
    let error = idle[0].recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(error.close_code(), Some(CloseCode::HelloTimeout));
    // A device from the same address pairs at once, and once paired holds no slot: a new
    // wave of idle connections does not close it.
    let (_, mut paired, _) = pair_ok(&url, &code).await;
    for _ in 0..6 {
        idle.push(test.connect().await);
    }
    still_served(&test, &org, &mut paired).await;
    // The other address's idle connection was never touched: it can still pair.
    let mut elsewhere = elsewhere;
    let result = elsewhere
        .pair(&code, &identity(), &device_info("elsewhere"))
        .await
        .unwrap();
    assert!(
        matches!(result, client::PairResult::Paired(_)),
        "{result:?}"
    );
    assert!(
        test.server
            .endpoint_stats()
            .evicted_unproven
            .load(Ordering::Relaxed)
            >= 7
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_frame_flood_closes_only_its_connection() {
    let test = TestServer::start_with(|config| {
        config.device.max_control_frames_per_minute = 50;
    })
    .await;
    let (org, code) = test.admin.org_with_code("Acme", 2).await;
    let url = test.device_url();
    let (_, mut neighbour, _) = pair_ok(&url, &code).await;
    let mut flood = test.connect().await;
    let mut closed = None;
    for _ in 0..1_000 {
        if let Err(error) = flood.send_raw(Message::Ping(Default::default())).await {
            closed = error.close_code();
            break;
        }
    }
    if closed.is_none() {
        closed = loop {
            match flood.recv_timeout(WAIT).await {
                Ok(_) => continue,
                Err(error) => break error.close_code(),
            }
        };
    }
    assert_eq!(closed, Some(CloseCode::PolicyViolation));
    // A few pings are nothing: the neighbour pings, then is served as before.
    for _ in 0..5 {
        neighbour
            .send_raw(Message::Ping(Default::default()))
            .await
            .unwrap();
    }
    still_served(&test, &org, &mut neighbour).await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_that_never_finish_their_headers_are_closed() {
    let test = TestServer::start_with(|config| {
        config.admin.header_timeout = Duration::from_millis(300);
        config.admin.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let address = test.server.admin_addr;
    // Slow headers: a start, then nothing.
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: paird\r\nX-Slow: ")
        .await
        .unwrap();
    until_closed(&mut slow).await;
    // Nothing at all.
    let mut silent = TcpStream::connect(address).await.unwrap();
    until_closed(&mut silent).await;
    assert_eq!(
        admin_status_from(address, [127, 0, 0, 1], "/healthz").await,
        200
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_admin_connection_is_closed() {
    let test = TestServer::start_with(|config| {
        config.admin.header_timeout = Duration::from_secs(3600);
        config.admin.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let address = test.server.admin_addr;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: paird\r\n\r\n")
        .await
        .unwrap();
    // Kept alive after its answer, then closed for idleness.
    let received = until_closed(&mut stream).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(
        test.server
            .admin_listener_stats()
            .idle_closed
            .load(Ordering::Relaxed)
            >= 1
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_the_admin_connection_budget() {
    let test = TestServer::start_with(|config| {
        config.admin.header_timeout = Duration::from_secs(3600);
        config.admin.max_per_address = 3;
    })
    .await;
    let address = test.server.admin_addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(address).await.unwrap());
    }
    // Past the cap, a request is answered 429 and its connection closed.
    let mut refused = TcpStream::connect(address).await.unwrap();
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: paird\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // One that sends no request is closed without an answer (after a second).
    let mut silent = TcpStream::connect(address).await.unwrap();
    assert_eq!(until_closed(&mut silent).await, "");
    // Another address is served.
    assert_eq!(
        admin_status_from(address, SECOND_ADDRESS, "/healthz").await,
        200
    );
    // A client that honours Retry-After waits for a slot: refused first, it is served once a
    // connection is given back.
    let refused_before = refused_per_address(&test);
    let patient = AdminClient::new(test.admin.base(), OPERATOR_TOKEN);
    let waiting =
        tokio::spawn(async move { patient.call(Method::GET, "/healthz", None, &[]).await });
    eventually("the patient client to be refused once", || async {
        (refused_per_address(&test) > refused_before).then_some(())
    })
    .await;
    drop(held.pop());
    let answer = waiting.await.unwrap().expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.text);
    test.stop().await;
}

fn refused_per_address(test: &TestServer) -> u64 {
    test.server
        .admin_listener_stats()
        .refused_per_address
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_at_their_ceiling_leave_the_device_endpoint_serving() {
    let test = TestServer::start_with(|config| {
        config.admin.header_timeout = Duration::from_secs(3600);
        config.admin.max_connections = 4;
        config.admin.max_per_address = 0;
    })
    .await;
    let (org, code) = test.admin.org_with_code("Acme", 5).await;
    let address = test.server.admin_addr;
    // More idle admin connections than the admin side may hold: the rest wait in the backlog.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(address).await.unwrap());
    }
    eventually("the admin ceiling to fill", || async {
        let open = test
            .server
            .admin_listener_stats()
            .open_connections
            .load(Ordering::Relaxed);
        (open >= 4).then_some(())
    })
    .await;
    for _ in 0..5 {
        pair_ok(&test.device_url(), &code).await;
    }
    drop(held);
    assert_eq!(test.admin.devices(&org).await.len(), 5);
    test.stop().await;
}
