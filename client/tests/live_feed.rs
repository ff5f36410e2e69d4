//! The live feed reader over a real socket, against a small HTTP server that answers with what
//! a test gives it, in the pieces the test chooses. The reader against paird itself is tested
//! by the server's black-box suite (`server/tests/blackbox/events.rs`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use client::admin::AdminClient;
use client::live_feed::LiveFeedError;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ORG: &str = "0195f3c6-0c4d-7a9e-b1f2-6d7e8f901234";
const TOKEN: &str = "paird_key_test";

/// Serves one request: checks that it asks for the feed with the token, then writes `head` and
/// each of `body`'s pieces (with a pause between them, so that they arrive apart) and closes.
async fn serve_once(head: &'static str, body: Vec<Vec<u8>>) -> AdminClient {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.unwrap();
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with(&format!("get /v1/organizations/{ORG}/events http/1.1\r\n")),
            "{request}"
        );
        assert!(
            request.contains(&format!("authorization: bearer {TOKEN}\r\n").to_ascii_lowercase()),
            "{request}"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        for piece in body {
            socket.write_all(&piece).await.unwrap();
            socket.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    AdminClient::new(&format!("{base}/"), TOKEN)
}

const EVENT_STREAM: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            cache-control: no-cache\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn events_after_ready_arrive_whole_whatever_the_pieces() {
    let admin = serve_once(
        EVENT_STREAM,
        vec![
            b"event: ready\ndata: {}\n\n: keep-alive\n".to_vec(),
            b"\nevent: devi".to_vec(),
            b"ces\ndata: {\"kind\":\"devices\",\"change\":\"paired\",\"device_ids\":[\"d\xc3"
                .to_vec(),
            b"\xa9\"]}\n".to_vec(),
            b"\nevent: licenses\ndata: {\"kind\":\"licenses\"}\n\n".to_vec(),
        ],
    )
    .await;
    let mut feed = admin.open_live_feed(ORG).await.unwrap();
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let event = feed.next_event().await.unwrap().unwrap();
    assert_eq!(event.name, "devices");
    assert_eq!(
        event.data,
        json!({"kind": "devices", "change": "paired", "device_ids": ["dé"]})
    );
    let event = feed.next_event().await.unwrap().unwrap();
    assert_eq!(event.name, "licenses");
    assert_eq!(event.data, json!({"kind": "licenses"}));
    // The server closed the stream.
    assert!(feed.next_event().await.unwrap().is_none());
}

#[tokio::test]
async fn a_refusal_is_told_with_its_status_and_body() {
    let admin = serve_once(
        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 33\r\n\
         connection: close\r\n\r\n{\"error\":{\"code\":\"unauthorized\"}}",
        Vec::new(),
    )
    .await;
    match admin.open_live_feed(ORG).await.unwrap_err() {
        LiveFeedError::Refused { status, body } => {
            assert_eq!(status, 401);
            assert!(body.contains("unauthorized"), "{body}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_answer_that_is_not_an_event_stream_is_refused() {
    let admin = serve_once(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
         connection: close\r\n\r\n{}",
        Vec::new(),
    )
    .await;
    match admin.open_live_feed(ORG).await.unwrap_err() {
        LiveFeedError::NotEventStream(content_type) => {
            assert_eq!(content_type, "application/json");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_feed_must_open_with_ready() {
    let admin = serve_once(EVENT_STREAM, vec![b"event: devices\ndata: {}\n\n".to_vec()]).await;
    let error = admin.open_live_feed(ORG).await.unwrap_err();
    assert!(
        matches!(&error, LiveFeedError::NoReady(Some(event)) if event.name == "devices"),
        "{error:?}"
    );
    let admin = serve_once(EVENT_STREAM, Vec::new()).await;
    let error = admin.open_live_feed(ORG).await.unwrap_err();
    assert!(matches!(error, LiveFeedError::NoReady(None)), "{error:?}");
}

#[tokio::test]
async fn data_that_is_not_json_is_an_error() {
    let admin = serve_once(
        EVENT_STREAM,
        vec![b"event: ready\ndata: {}\n\nevent: devices\ndata: not json\n\n".to_vec()],
    )
    .await;
    let mut feed = admin.open_live_feed(ORG).await.unwrap();
    let error = feed.next_event().await.unwrap_err();
    assert!(
        matches!(&error, LiveFeedError::NotJson { name, .. } if name == "devices"),
        "{error:?}"
    );
}
