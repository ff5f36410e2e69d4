//! Back-pressure: a device that stops reading cannot grow server memory, and running out of
//! file descriptors pauses accepting instead of crashing or spinning.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol::ServerMessage;
use serde_json::json;

use crate::support::*;

/// A configuration body of about 256 KiB whose content depends on `revision`.
fn big_body(revision: usize) -> String {
    let line = format!("# revision {revision:06} padding padding padding padding padding\n");
    let mut body = String::from("[GLOBAL]\n");
    while body.len() + line.len() < protocol::limits::MAX_CONFIGURATION_BODY_BYTES {
        body.push_str(&line);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_a_device_that_stops_reading_coalesce_to_the_newest_revision() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 2).await;
    let config = admin.create_config(&org, "Big", &big_body(1)).await;
    let (_, mut slow, _) = pair_ok(&test.device_url(), &code).await;
    assert_eq!(next_configuration(&mut slow).await.revision, 1);
    let (_, mut reader, _) = pair_ok(&test.device_url(), &code).await;
    assert_eq!(next_configuration(&mut reader).await.revision, 1);

    // 100 edits of 256 KiB: 25 MiB for each device, far more than socket buffers hold. The
    // slow device reads nothing meanwhile; the reading one keeps up.
    let edits = 100;
    let reading = tokio::spawn(async move {
        let mut last = 1;
        while last < edits + 1 {
            last = next_configuration(&mut reader).await.revision;
        }
        last
    });
    for revision in 2..=edits + 1 {
        admin
            .edit_config(&org, &config, &big_body(revision as usize))
            .await;
    }
    assert_eq!(reading.await.unwrap(), edits + 1);

    // Now the slow device reads: it gets what the socket held, then the newest revision, and
    // never the dozens in between.
    let mut received = 0;
    let newest = loop {
        match slow.recv_timeout(WAIT).await.expect("a configuration") {
            ServerMessage::Configuration(configuration) => {
                received += 1;
                if configuration.revision == edits + 1 {
                    assert_eq!(configuration.body, big_body(edits as usize + 1));
                    break configuration.revision;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(newest, edits + 1);
    assert!(
        received < edits as usize / 2,
        "received {received} of {edits} revisions"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_stuck_behind_a_full_socket_is_disconnected() {
    let test = TestServer::start_with(|config| {
        config.device.ping_interval = Duration::from_millis(100);
        config.device.silence_limit = Duration::from_millis(500);
    })
    .await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let config = admin.create_config(&org, "Big", &big_body(1)).await;
    let (_, stuck, _) = pair_ok(&test.device_url(), &code).await;
    let open = || {
        test.server
            .endpoint_stats()
            .open_connections
            .load(Ordering::Relaxed)
    };
    assert_eq!(open(), 1);
    for revision in 2..=40 {
        admin.edit_config(&org, &config, &big_body(revision)).await;
    }
    // The device never reads: its connection is ended rather than kept with data pinned.
    eventually("the stuck connection to be closed", || async {
        (open() == 0).then_some(())
    })
    .await;
    drop(stuck);
    // The connection reports the device offline to its organization's actor without waiting for
    // the commit, so the listing catches up a moment after the close.
    eventually("the stuck device to be shown offline", || async {
        (admin.devices(&org).await[0]["online"] == json!(false)).then_some(())
    })
    .await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_pauses_accepting_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    // A hard limit of 128 open files for the server process: ulimit sets both limits, so the
    // server cannot raise it. The connection ceiling is set above it, so that accepting runs
    // into the limit itself (what happens when other files or connections took descriptors).
    // The database arguments reach paird as the script's "$@".
    let command = format!(
        "ulimit -n 128 && exec {} serve --data-dir {} --device-listen 127.0.0.1:0 \
         --admin-listen 127.0.0.1:0 --handshake-timeout 60s --failures-per-address 0 \
         --max-device-connections 1000 \"$@\"",
        env!("CARGO_BIN_EXE_paird"),
        dir.path().display()
    );
    let mut child = tokio::process::Command::new("bash")
        .args(["-c", &command, "paird"])
        .args(database.serve_args())
        .env("PAIRD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready = wait_until_ready(&mut child)
        .await
        .unwrap_or_else(|error| panic!("paird did not start: {error}"))
        .ready;
    let admin = Admin::new(&ready.admin_url, OPERATOR_TOKEN);
    let (_, code) = admin.org_with_code("Acme", 5).await;

    // 200 connections that never say anything: more than the server can hold open. The kernel
    // completes every TCP handshake (the listen backlog is 4096); the server accepts until it
    // runs out of descriptors, then pauses and retries.
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            tokio::net::TcpStream::connect(ready.device_address)
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The process is alive and still serves what it has open.
    assert!(child.try_wait().unwrap().is_none(), "the server exited");

    // Free the descriptors: accepting resumes by itself and devices pair again.
    drop(idle);
    let (_, _, paired) = pair_ok(&ready.device_url, &code).await;
    let _ = paired;
    let status = eventually("the admin API to answer again", || async {
        let (code, status) = admin.call(reqwest::Method::GET, "/v1/status", None).await;
        (code == 200).then_some(status)
    })
    .await;
    let errors = status["device_endpoint"]["accept_errors"].as_u64().unwrap();
    assert!(errors > 0, "the descriptor limit was reached");
    // Each failed accept is followed by a pause, never a busy loop: at most one failure per
    // 50 ms pause, with a little slack.
    let bound = started.elapsed().as_millis() as u64 / 50 + 10;
    assert!(
        errors <= bound,
        "{errors} failed accepts in {:?}",
        started.elapsed()
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_ceiling_the_node_waits_for_a_connection_to_close() {
    let test = TestServer::start_with(|config| config.device.max_connections = Some(2)).await;
    let (org, code) = test.admin.org_with_code("Acme", 3).await;
    let (_, first, _) = pair_ok(&test.device_url(), &code).await;
    let (_, _second, _) = pair_ok(&test.device_url(), &code).await;

    // The third connection waits in the listen backlog: no handshake while two are open.
    let url = test.device_url();
    let third = tokio::spawn(async move { pair_ok(&url, &code).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third device was served above the ceiling"
    );
    assert_eq!(test.admin.summary(&org).await["assigned"], 2);

    // One closes: the third is accepted and pairs.
    drop(first);
    let (_, _third, paired) = tokio::time::timeout(Duration::from_secs(30), third)
        .await
        .expect("the waiting device is served once a connection closed")
        .expect("task");
    assert!(!paired.already_paired);
    assert_eq!(test.admin.summary(&org).await["assigned"], 3);
}
