//! [`AdminClient`] honouring `Retry-After`, over a real socket, against a small HTTP server that
//! gives the answers a test lists, one per connection, and records the requests it received.
//! Against paird itself, a client refused by the admin listener's per-address cap is served once
//! a slot comes back (`server/tests/blackbox/limits.rs`).

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use client::admin::{AdminClient, Retries, retry_after};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as received: its request line, its `Idempotency-Key` and its body.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    line: String,
    idempotency_key: Option<String>,
    body: String,
}

/// Serves `answers` in order, each as `status` with `retry_after` (when given) and a small
/// JSON body, on a connection of its own; returns a client of it and what it received.
async fn serve(
    answers: Vec<(u16, Option<&'static str>)>,
) -> (AdminClient, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        for (status, retry_after) in answers {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = BufReader::new(socket);
            let mut line = String::new();
            socket.read_line(&mut line).await.unwrap();
            let (mut length, mut key) = (0, None);
            loop {
                let mut header = String::new();
                socket.read_line(&mut header).await.unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "idempotency-key" => key = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            socket.read_exact(&mut body).await.unwrap();
            log.lock().unwrap().push(Received {
                line: line.trim_end().to_string(),
                idempotency_key: key,
                body: String::from_utf8(body).unwrap(),
            });
            let retry_after = retry_after
                .map(|value| format!("Retry-After: {value}\r\n"))
                .unwrap_or_default();
            let body = json!({ "status": status }).to_string();
            let answer = format!(
                "HTTP/1.1 {status} Answer\r\n{retry_after}Content-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        }
    });
    (AdminClient::new(&base, "paird_key_test"), received)
}

/// One call, by a client retrying as `retries` says, to a server giving `answers`: the status
/// it ended with and the requests the server received.
async fn call(
    answers: Vec<(u16, Option<&'static str>)>,
    retries: Retries,
    method: Method,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, Vec<Received>) {
    let (client, received) = serve(answers).await;
    let answer = client
        .with_retries(retries)
        .call(method, "/v1/things", body, headers)
        .await
        .unwrap();
    let received = received.lock().unwrap().clone();
    (answer.status.as_u16(), received)
}

async fn get(answers: Vec<(u16, Option<&'static str>)>) -> (u16, usize) {
    let (status, received) = call(answers, Retries::DEFAULT, Method::GET, None, &[]).await;
    assert!(received.iter().all(|r| r.line == "GET /v1/things HTTP/1.1"));
    (status, received.len())
}

#[tokio::test]
async fn a_read_is_retried_through_503_and_429_until_it_is_served() {
    assert_eq!(
        get(vec![(503, Some("0")), (429, Some("0")), (200, None)]).await,
        (200, 3)
    );
}

#[tokio::test]
async fn a_create_without_an_idempotency_key_is_not_repeated_on_503() {
    let body = json!({"name": "Acme"});
    let answers = vec![(503, Some("0")), (201, None)];
    let (status, received) = call(answers, Retries::DEFAULT, Method::POST, Some(&body), &[]).await;
    // The server may have done it: not repeated.
    assert_eq!((status, received.len()), (503, 1));
}

#[tokio::test]
async fn a_create_with_an_idempotency_key_is_repeated_as_it_was() {
    let body = json!({"name": "Acme"});
    let key = [("Idempotency-Key", "create-acme")];
    let answers = vec![(503, Some("0")), (201, None)];
    let (status, received) = call(answers, Retries::DEFAULT, Method::POST, Some(&body), &key).await;
    assert_eq!((status, received.len()), (201, 2));
    assert_eq!(received[0], received[1], "the same request, key and body");
    assert_eq!(received[1].idempotency_key.as_deref(), Some("create-acme"));
    assert_eq!(received[1].body, body.to_string());
}

#[tokio::test]
async fn a_create_refused_with_429_is_repeated() {
    let answers = vec![(429, Some("0")), (201, None)];
    let (status, received) = call(
        answers,
        Retries::DEFAULT,
        Method::POST,
        Some(&json!({})),
        &[],
    )
    .await;
    assert_eq!((status, received.len()), (201, 2));
}

#[tokio::test]
async fn without_retry_after_or_past_the_longest_wait_the_answer_is_returned() {
    assert_eq!(get(vec![(503, None), (200, None)]).await, (503, 1));
    // An hour is longer than the client waits.
    assert_eq!(get(vec![(429, Some("3600")), (200, None)]).await, (429, 1));
}

#[tokio::test]
async fn attempts_are_bounded_and_never_can_be_asked_for() {
    let attempts = usize::try_from(Retries::DEFAULT.attempts).unwrap();
    assert_eq!(get(vec![(503, Some("0")); 5]).await, (503, attempts));
    let answers = vec![(503, Some("0")), (200, None)];
    let (status, received) = call(answers, Retries::NEVER, Method::GET, None, &[]).await;
    assert_eq!((status, received.len()), (503, 1));
}

#[test]
fn retry_after_is_read_as_seconds_or_as_a_date() {
    let header = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    };
    assert_eq!(retry_after(&header("7")), Some(Duration::from_secs(7)));
    assert_eq!(retry_after(&header(" 0 ")), Some(Duration::ZERO));
    assert_eq!(
        retry_after(&header("Sun, 06 Nov 1994 08:49:37 GMT")),
        Some(Duration::ZERO),
        "a date in the past is no wait"
    );
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let wait = retry_after(&header(&later)).unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    assert_eq!(retry_after(&header("soon")), None);
    assert_eq!(retry_after(&header("-1")), None);
    assert_eq!(retry_after(&HeaderMap::new()), None);
}
