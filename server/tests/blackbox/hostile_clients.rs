//! Hostile clients at scale, against a real `paird` process (its memory is read from
//! `/proc/<pid>/status`, and its descriptors are its own, not shared with the test's): 5,000
//! TCP connections that never start the WebSocket handshake, spread over 25 loopback addresses
//! (200 each, under the default `--max-unproven-per-address` of 256) so that every one is
//! really held, a ping flood on one connection, and a reader of one byte a second. Meanwhile a real device pairs and memory
//! stays bounded.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use client::{ConnectOptions, Connection, PairResult};
use protocol::{CloseCode, Encoding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const HELD: usize = 5_000;
const ADDRESSES: usize = 25;

/// Descriptors the server may close meanwhile for its own reasons (an idle admin connection,
/// a pool's idle database connection): the count shows the held connections were accepted,
/// give or take these.
const SLACK: usize = 16;

/// PERFORMANCE.md allows 8 KB of server memory per idle device connection (one that finished
/// its handshake). A connection that never started one costs less; the bound is four times the
/// target, so that it catches a leak or a per-connection buffer, not allocator noise.
const GROWTH_PER_CONNECTION_BOUND: u64 = 4 * 8 * 1024;

/// The resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

/// Open descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("its descriptors")
        .count()
}

/// `ws://127.0.0.1:PORT/...` → the socket address.
fn socket_address(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let authority = rest.split('/').next().expect("an authority");
    authority.parse().expect("an address")
}

async fn tcp_from(address: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from((from, 0))).expect("binds");
    socket.connect(address).await.expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_a_ping_flood_and_a_slow_reader_leave_pairing_working_and_memory_bounded()
 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = TestDatabase::create(dir.path()).await;
    // The handshake timeout is raised far past the test's length, so that the held
    // connections are held by the server's choice, not cut while the test still counts them.
    let mut child = serve_command(dir.path())
        .args(database.serve_args())
        .args(["--handshake-timeout", "600s", "--hello-timeout", "3s"])
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .expect("paird starts");
    let started = wait_until_ready(&mut child)
        .await
        .unwrap_or_else(|error| panic!("paird did not start: {error}"));
    let pid = child.id().expect("running");
    let url = started.ready.device_url.clone();
    let admin = Admin::new(&started.ready.admin_url, OPERATOR_TOKEN);
    let (_, code) = admin.org_with_code("Acme", 10).await;
    // One device pairs first, so that the baseline includes what a first pairing allocates.
    // It stays connected, so that its descriptor is not closed while they are counted.
    let (_, _first, _) = pair_ok(&url, &code).await;
    let baseline = resident_bytes(pid);
    let files_before = open_files(pid);

    // The attack: connections that never send a byte.
    let address = socket_address(&url);
    let mut held = Vec::with_capacity(HELD);
    for index in 0..HELD {
        let from = [
            127,
            0,
            1,
            1 + u8::try_from(index % ADDRESSES).expect("small"),
        ];
        held.push(tcp_from(address, from).await);
    }
    let all_accepted = eventually("the server to accept every held connection", || async {
        (open_files(pid) + SLACK >= files_before + HELD).then_some(())
    });
    all_accepted.await;

    // A ping flood on one handshaken connection, from its own address: closed for policy
    // (default: 120 control frames a minute).
    let options = ConnectOptions {
        local_address: Some(IpAddr::from([127, 0, 2, 1])),
        ..ConnectOptions::with_encoding(Encoding::Postcard)
    };
    let mut flood = Connection::connect(&url, &options)
        .await
        .expect("the flooder connects");
    let mut closed = None;
    for _ in 0..2_000 {
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

    // A slow reader: it finishes the handshake, then reads one byte a second and never says
    // hello. The server answers the handshake whole and, the hello timeout (3 s here) past, ends
    // the connection; it does not keep a slow silent connection forever.
    let mut slow = tcp_from(address, [127, 0, 3, 1]).await;
    let path = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.find('/').map(|at| &rest[at..]))
        .expect("the device URL's path");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {}\r\n\r\n",
        Encoding::Postcard.subprotocol()
    );
    slow.write_all(request.as_bytes())
        .await
        .expect("sends the handshake");
    let mut received = Vec::new();
    for _ in 0..4 {
        let mut byte = [0u8; 1];
        let read = slow.read(&mut byte).await.expect("reads");
        received.extend_from_slice(&byte[..read]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::timeout(WAIT, slow.read_to_end(&mut received))
        .await
        .expect("the server ends the slow reader's connection")
        .ok();
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.starts_with("HTTP/1.1 101"),
        "the handshake's answer, whole: {received:?}"
    );

    // A real device still pairs, from the loopback address the tests use.
    let (_, _, result) = pair_new(&url, &code).await;
    assert!(matches!(result, PairResult::Paired(_)), "{result:?}");

    // Every held connection is still open (the server did not shed them to make room), and
    // the memory they cost stays within the bound.
    let mut buffer = [0u8; 1];
    for (index, stream) in held.iter().enumerate() {
        match stream.try_read(&mut buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("held connection {index} is no longer open: {other:?}"),
        }
    }
    let grown = resident_bytes(pid).saturating_sub(baseline);
    let bound = GROWTH_PER_CONNECTION_BOUND * HELD as u64;
    eprintln!(
        "{HELD} unfinished handshakes: server RSS grew by {} KiB ({} B each; bound {} KiB)",
        grown / 1024,
        grown / HELD as u64,
        bound / 1024
    );
    assert!(
        grown <= bound,
        "server memory grew by {grown} bytes for {HELD} connections (bound {bound})"
    );
    drop(held);
    crate::processes::sigterm(&mut child).await;
}
