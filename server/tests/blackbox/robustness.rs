//! Bad input: refused cleanly, nothing changes, other connections carry on; failures are rate
//! limited; silent connections are closed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use client::{PairResult, ResumeResult};
use protocol::{CloseCode, DeviceMessage, Encoding, EndReason, RefusalReason};
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::support::*;

/// A raw handshake offering `protocols` at `path`; the HTTP status of a refusal, or 101.
async fn handshake_status(addr: std::net::SocketAddr, path: &str, protocols: Option<&str>) -> u16 {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(protocols) = protocols {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected handshake error: {other}"),
    }
}

/// Counts what the database holds, to show that bad input changed nothing.
async fn footprint(admin: &Admin, org: &str) -> (serde_json::Value, usize, usize) {
    (
        admin.summary(org).await,
        admin.devices(org).await.len(),
        admin.audit(org).await.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subprotocols_and_paths_are_refused_at_the_handshake() {
    let test = TestServer::start().await;
    let addr = test.server.device_addr;
    assert_eq!(
        handshake_status(addr, "/device", Some("paird.v2.json")).await,
        400
    );
    assert_eq!(handshake_status(addr, "/device", Some("chat")).await, 400);
    assert_eq!(handshake_status(addr, "/device", None).await, 400);
    assert_eq!(
        handshake_status(addr, "/elsewhere", Some("paird.v1.json")).await,
        404
    );
    assert_eq!(
        handshake_status(addr, "/device", Some("chat, paird.v1.json")).await,
        101
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_only_their_connection_and_change_nothing() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let config = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut bystander, _) = pair_ok(&test.device_url(), &code).await;
    next_configuration(&mut bystander).await;
    let before = footprint(admin, &org).await;

    let url = test.device_url();
    let cases: Vec<(Encoding, Message, CloseCode)> = vec![
        (
            Encoding::Postcard,
            Message::Binary(vec![0xff, 0x00, 0x13].into()),
            CloseCode::InvalidPayload,
        ),
        (
            Encoding::Postcard,
            Message::Binary(Vec::new().into()),
            CloseCode::InvalidPayload,
        ),
        (
            Encoding::Postcard,
            Message::Text("{\"pair\":{}}".into()),
            CloseCode::UnsupportedData,
        ),
        (
            Encoding::Json,
            Message::Text("{\"pair\": 42}".into()),
            CloseCode::InvalidPayload,
        ),
        (
            Encoding::Json,
            Message::Text("not json".into()),
            CloseCode::InvalidPayload,
        ),
        (
            Encoding::Json,
            Message::Binary(vec![1, 2, 3].into()),
            CloseCode::UnsupportedData,
        ),
        (
            Encoding::Json,
            Message::Text(
                "x".repeat(protocol::limits::DEFAULT_MAX_DEVICE_FRAME_BYTES + 1)
                    .into(),
            ),
            CloseCode::MessageTooBig,
        ),
        (
            Encoding::Postcard,
            Message::Binary(vec![0; 64 * 1024].into()),
            CloseCode::MessageTooBig,
        ),
    ];
    for (encoding, frame, expected) in cases {
        let mut connection = connect(&url, encoding).await;
        connection.send_raw(frame).await.unwrap();
        let error = connection.recv_timeout(WAIT).await.unwrap_err();
        assert_eq!(error.close_code(), Some(expected), "{error}");
    }
    // Acknowledging before pairing is a protocol violation.
    let mut early = test.connect().await;
    early
        .send(&DeviceMessage::Ack(protocol::Ack {
            configuration_id: config.parse().unwrap(),
            revision: 1,
            outcome: protocol::AckOutcome::Applied,
        }))
        .await
        .unwrap();
    assert_eq!(
        early.recv_timeout(WAIT).await.unwrap_err().close_code(),
        Some(CloseCode::PolicyViolation)
    );

    assert_eq!(footprint(admin, &org).await, before);
    // The bystander never noticed and still receives pushes.
    admin
        .edit_config(&org, &config, "[GLOBAL]\nafter = 1\n")
        .await;
    assert_eq!(next_configuration(&mut bystander).await.revision, 2);

    // A failure reason with a NUL in it cannot be stored (PostgreSQL refuses it in text): the
    // acknowledgement is malformed, on both backends, and nothing is recorded.
    let (_, mut nul_reason, paired) = pair_ok(&url, &code).await;
    next_configuration(&mut nul_reason).await;
    nul_reason
        .send(&DeviceMessage::Ack(protocol::Ack {
            configuration_id: config.parse().unwrap(),
            revision: 1,
            outcome: protocol::AckOutcome::Failed {
                reason: "disk\0full".into(),
            },
        }))
        .await
        .unwrap();
    assert_eq!(
        nul_reason
            .recv_timeout(WAIT)
            .await
            .unwrap_err()
            .close_code(),
        Some(CloseCode::InvalidPayload)
    );
    let device = admin.device(&org, &paired.device_id.to_string()).await;
    assert_eq!(device["applied"], serde_json::Value::Null, "{device}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_bad_fields_are_refused_as_malformed_and_keep_the_connection() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let mut connection = test.connect().await;
    let long_name = device_info(&"n".repeat(protocol::limits::MAX_DEVICE_FIELD_BYTES + 1));
    let result = connection
        .pair(&code, &identity(), &long_name)
        .await
        .unwrap();
    assert_eq!(refusal(&result), Some(RefusalReason::Malformed));
    let result = connection
        .pair("not-a-code", &identity(), &device_info("device"))
        .await
        .unwrap();
    assert_eq!(refusal(&result), Some(RefusalReason::Malformed));
    let result = connection
        .pair(&code, &identity(), &device_info("device"))
        .await
        .unwrap();
    assert!(matches!(result, PairResult::Paired(_)), "{result:?}");
    // A name that would read backwards (a right-to-left override) or hide a zero-width space.
    for name in ["Van \u{202E}12", "Van\u{200B}12"] {
        let mut connection = test.connect().await;
        let result = connection
            .pair(&code, &identity(), &device_info(name))
            .await
            .unwrap();
        assert_eq!(refusal(&result), Some(RefusalReason::Malformed), "{name:?}");
    }
    assert_eq!(admin.devices(&org).await.len(), 1);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_rate_limited_per_connection_address_and_code() {
    let test = TestServer::start_with(|config| {
        config.engine.failures_per_address.max_failures = 5;
        config.engine.failures_per_address.window = Duration::from_secs(60);
        config.engine.failures_per_code.max_failures = 3;
    })
    .await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let unknown = "A".repeat(protocol::PairingCode::LEN);

    // Per connection: the third failure closes it.
    let mut connection = test.connect().await;
    for _ in 0..2 {
        let result = connection
            .pair(&unknown, &identity(), &device_info("guess"))
            .await
            .unwrap();
        assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    }
    let result = connection
        .pair(&unknown, &identity(), &device_info("guess"))
        .await
        .unwrap();
    assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    assert_eq!(
        connection
            .recv_timeout(WAIT)
            .await
            .unwrap_err()
            .close_code(),
        Some(CloseCode::TooManyFailures)
    );

    // Per address: 5 failures in the window, then refusals of pairings with a retry-after.
    let mut other = test.connect().await;
    let result = other
        .pair(&unknown, &identity(), &device_info("guess"))
        .await
        .unwrap();
    assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    let mut third = test.connect().await;
    let result = third
        .pair(&unknown, &identity(), &device_info("guess"))
        .await
        .unwrap();
    assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    let result = third
        .pair(&code, &identity(), &device_info("legit"))
        .await
        .unwrap();
    let PairResult::Refused(refused) = result else {
        panic!("expected a refusal, got {result:?}")
    };
    assert_eq!(refused.reason, RefusalReason::RateLimited);
    assert!(
        refused
            .retry_after_ms
            .is_some_and(|ms| ms > 0 && ms <= 60_000)
    );
    // A reconnection from the blocked address is decided by its credential, not refused for
    // the address: an unknown one fails authentication (and counts), and handshakes go on.
    let result = third
        .resume(&identity(), &device_info("guess"), None)
        .await
        .expect("a resume is answered");
    assert_eq!(result, ResumeResult::Ended(EndReason::AuthenticationFailed));
    let addr = test.server.device_addr;
    let mut request = format!("ws://{addr}/device").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("paird.v1.postcard"),
    );
    let (handshake, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a blocked address still completes a handshake");
    drop(handshake);
    // The window slides: after it, the address may try again, and success does not count.
    admin.advance(61.0).await;
    let (_, _, paired) = pair_ok(&test.device_url(), &code).await;
    let _ = paired;
    pair_ok(&test.device_url(), &code).await;

    // Per code: a revoked code hammered from fresh addresses' point of view is still limited
    // by the code's own window (3 failures).
    let revoked = admin.reusable_code(&org, json!({})).await;
    admin
        .post(
            &format!(
                "/v1/organizations/{org}/codes/{}/revoke",
                revoked["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let revoked_code = revoked["code"].as_str().unwrap();
    admin.advance(61.0).await;
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let (_, _, result) = pair_new(&test.device_url(), revoked_code).await;
        reasons.push(refusal(&result).unwrap());
        admin.advance(0.001).await;
    }
    assert_eq!(
        reasons,
        vec![
            RefusalReason::CodeRevoked,
            RefusalReason::CodeRevoked,
            RefusalReason::CodeRevoked,
            RefusalReason::RateLimited
        ]
    );
    assert_eq!(admin.devices(&org).await.len(), 2);
    test.stop().await;
}

/// The lock-out reported against the deployment the README recommends (every device behind one
/// address): 11 connections from the address each send 3 unknown codes, with the default
/// limits. The address is then limited (a new pairing from it is refused with a wait), but the
/// devices that prove themselves with their credential are not: a paired device behind the same
/// address reconnects, and re-pairs with its credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_neighbour_never_locks_out_devices_that_hold_a_credential() {
    // The server's default address limit (the test servers' own is looser).
    let test = TestServer::start_with(|config| {
        config.engine.failures_per_address =
            engine::settings::EngineSettings::default().failures_per_address;
    })
    .await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 3).await;
    let url = test.device_url();
    let (paired_identity, connection, paired) = pair_ok(&url, &code).await;
    drop(connection);
    let unknown = "A".repeat(protocol::PairingCode::LEN);
    for _ in 0..11 {
        let mut guesser = test.connect().await;
        for _ in 0..3 {
            let result = guesser
                .pair(&unknown, &identity(), &device_info("guess"))
                .await;
            // The third failure closes the connection; an answer before that is a refusal.
            if let Ok(result) = result {
                assert!(refusal(&result).is_some(), "{result:?}");
            }
        }
    }
    // The address is limited for pairing with a code.
    let (_, _, result) = pair_new(&url, &code).await;
    let PairResult::Refused(refused) = result else {
        panic!("expected a refusal, got {result:?}")
    };
    assert_eq!(refused.reason, RefusalReason::RateLimited);
    assert!(refused.retry_after_ms.is_some_and(|ms| ms > 0));
    // The paired device reconnects...
    let mut device = test.connect().await;
    let resumed = device
        .resume(&paired_identity, &device_info("device"), None)
        .await
        .expect("a resume is answered");
    let ResumeResult::Resumed(resumed) = resumed else {
        panic!("expected to resume, got {resumed:?}")
    };
    assert_eq!(resumed.device_id, paired.device_id);
    drop(device);
    // ...and re-pairs with its credential: the same device.
    let mut device = test.connect().await;
    let repaired = device
        .pair(&code, &paired_identity, &device_info("device"))
        .await
        .expect("a pairing is answered");
    let PairResult::Paired(repaired) = repaired else {
        panic!("expected the re-pair to be answered, got {repaired:?}")
    };
    assert_eq!(repaired.device_id, paired.device_id);
    assert_eq!(admin.devices(&org).await.len(), 1);
    test.stop().await;
}

/// The command-line device honours `retry_after_ms`: told to wait (its address limited), it
/// waits as long as it was told and pairs once the limit has passed, instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_told_to_wait_waits_and_then_pairs() {
    let test = TestServer::start_with(|config| {
        config.engine.failures_per_address.max_failures = 2;
        config.engine.failures_per_address.window = Duration::from_millis(300);
    })
    .await;
    let admin = &test.admin;
    let (org, _) = admin.org_with_code("Acme", 1).await;
    let payload = admin.reusable_code(&org, json!({})).await["payload_uri"]
        .as_str()
        .expect("a payload")
        .to_string();
    let unknown = "A".repeat(protocol::PairingCode::LEN);
    let mut guesser = test.connect().await;
    for _ in 0..2 {
        let result = guesser
            .pair(&unknown, &identity(), &device_info("guess"))
            .await
            .expect("a refusal");
        assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state_path = dir.path().join("device.json");
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut on_event = move |event: client::device::DeviceEvent| {
        let _ = events.send(event);
    };
    let mut apply = |_: &protocol::Configuration| -> Result<(), String> { Ok(()) };
    let info = device_info("patient");
    let options = client::ConnectOptions::with_encoding(Encoding::Json);
    let device = client::device::pair_and_run(
        &payload,
        &state_path,
        &info,
        &options,
        &mut apply,
        &mut on_event,
    );
    tokio::pin!(device);
    let scenario = async {
        let mut waited = None;
        loop {
            let event = tokio::time::timeout(WAIT, received.recv())
                .await
                .expect("a device event")
                .expect("device events");
            match event {
                client::device::DeviceEvent::Waiting { retry_in, .. } => {
                    // What the server said: the window's rest, at most 300 ms.
                    assert!(retry_in > Duration::ZERO && retry_in <= Duration::from_millis(300));
                    waited = Some(retry_in);
                    // The engine's clock is the test's: let the window pass.
                    admin.advance(0.4).await;
                }
                client::device::DeviceEvent::Paired(_) => break,
                _ => {}
            }
        }
        assert!(waited.is_some(), "the device was told to wait");
    };
    tokio::select! {
        () = scenario => {}
        outcome = &mut device => panic!("the device stopped: {outcome:?}"),
    }
    assert_eq!(admin.devices(&org).await.len(), 1);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_by_keepalive() {
    let test = TestServer::start_with(|config| {
        config.device.ping_interval = Duration::from_millis(100);
        config.device.silence_limit = Duration::from_millis(300);
    })
    .await;
    let stats = || {
        test.server
            .endpoint_stats()
            .open_connections
            .load(Ordering::Relaxed)
    };
    // A client that completes the handshake, then never reads: it never answers the server's
    // pings. Its socket is read raw afterwards, to find the close frame the server sent.
    let mut request = test.device_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("paird.v1.json"),
    );
    let (silent, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let tokio_tungstenite::MaybeTlsStream::Plain(mut socket) = silent.into_inner() else {
        panic!("plain TCP expected")
    };
    eventually("the server to see the connection", || async {
        (stats() == 1).then_some(())
    })
    .await;
    eventually("the silent connection to be closed", || async {
        (stats() == 0).then_some(())
    })
    .await;
    let mut bytes = Vec::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut bytes),
    )
    .await
    .expect("the server closed the socket")
    .unwrap();
    assert_eq!(
        close_code_in(&bytes),
        Some(CloseCode::KeepaliveTimeout.code())
    );

    // A client that reads answers pings and stays connected past the silence limit.
    let (_, code) = test.admin.org_with_code("Acme", 1).await;
    let (_, mut alive, _) = pair_ok(&test.device_url(), &code).await;
    let outcome = alive.recv_timeout(Duration::from_millis(1000)).await;
    assert!(
        matches!(outcome, Err(client::ClientError::Timeout)),
        "{outcome:?}"
    );
    test.stop().await;
}

/// The code of the first close frame in a raw stream of server frames (unmasked).
fn close_code_in(bytes: &[u8]) -> Option<u16> {
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (length, header) = match bytes[at + 1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                4,
            ),
            127 => return None,
            short => (usize::from(short), 2),
        };
        let payload = bytes.get(at + header..at + header + length)?;
        if opcode == 0x8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
        at += header + length;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_says_hello_is_closed() {
    let test = TestServer::start_with(|config| {
        config.device.hello_timeout = Duration::from_millis(200);
    })
    .await;
    let mut connection = test.connect().await;
    let error = connection.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(error.close_code(), Some(CloseCode::HelloTimeout));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_pairings_never_count_as_failures() {
    let test = TestServer::start_with(|config| {
        config.engine.failures_per_address.max_failures = 2;
        config.engine.failures_per_code.max_failures = 2;
    })
    .await;
    let (org, code) = test.admin.org_with_code("Acme", 20).await;
    for _ in 0..20 {
        pair_ok(&test.device_url(), &code).await;
    }
    assert_eq!(test.admin.devices(&org).await.len(), 20);
    // Nor does a pairing refused for lack of licenses: that is the server's state, not the
    // device's fault.
    for _ in 0..5 {
        let (_, _, result) = pair_new(&test.device_url(), &code).await;
        assert_eq!(refusal(&result), Some(RefusalReason::NoFreeLicense));
    }
    test.stop().await;
}

/// A body or a query string the admin API cannot read is answered with the documented error
/// object: a stable code, the field when the decoder names one, and a message in the API's words,
/// never the server's own type names or its decoder's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_admin_requests_get_the_error_object_without_internals() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let codes = format!("/v1/organizations/{org}/codes");
    // (method, path, body, status, field)
    let cases = [
        (Method::POST, codes.clone(), Some(json!(null)), 422, None),
        (Method::POST, codes.clone(), Some(json!([1, 2])), 422, None),
        (
            Method::POST,
            codes.clone(),
            Some(json!({"colour": "red"})),
            422,
            Some("colour"),
        ),
        (
            Method::POST,
            codes.clone(),
            Some(json!({"max_uses": "many"})),
            422,
            Some("max_uses"),
        ),
        (
            Method::GET,
            format!("{codes}?colour=red"),
            None,
            400,
            Some("colour"),
        ),
        (Method::GET, format!("{codes}?limit=-1"), None, 400, None),
    ];
    for (method, path, body, status, field) in cases {
        let (answered, answer) = admin.call(method.clone(), &path, body.clone()).await;
        assert_eq!(answered, status, "{method} {path} {body:?} → {answer}");
        let error = &answer["error"];
        assert_eq!(error["code"], json!("invalid_request"), "{answer}");
        if let Some(field) = field {
            assert_eq!(error["field"], json!(field), "{answer}");
        }
        let message = error["message"].as_str().expect("a message");
        for internal in [
            "Failed to deserialize",
            "struct",
            "CreateCode",
            "Query",
            "u32",
            "i64",
        ] {
            assert!(!message.contains(internal), "{internal:?} in {message:?}");
        }
    }
    test.stop().await;
}
