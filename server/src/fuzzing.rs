//! Entry points for the fuzz targets (`fuzz/`, a cargo-fuzz project outside the workspace), built
//! with the `fuzzing` feature and in this crate's own tests. Not part of the server's API.
//!
//! Each entry point runs the server's own code on bytes from outside and checks the property its
//! target holds: `Err` says which property failed and how. The fuzz targets turn an `Err` into a
//! crash; a regression test asserts `Ok` on the input that once failed. What is driven:
//!
//! - [`device_upgrade`]: the device endpoint's WebSocket handshake (`accept_upgrade`, the code a
//!   TCP connection goes through) on an in-memory stream that carries the request's bytes.
//! - [`admin_request`]: the admin API's body and query string extractors and their rejection
//!   mapping, through an axum router with the API's body limit.
//! - [`proxy_start`]: the decision on a connection's first bytes from a trusted proxy (PROXY
//!   header v1 or v2, or none), as the header reader makes it on whatever part has arrived.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{self, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::admin::{BODY_TYPES, QUERY_TYPES, extractor_router};
use crate::config::DeviceSettings;
pub use crate::device::Upgrade;
use crate::device::{accept_upgrade, websocket_config};
use crate::metrics::ConnectionRefusal;
use crate::proxy::{Examined, PEEK_BYTES, TrustedProxies, examine_start};

thread_local! {
    /// One runtime per fuzzing thread: building one per input would cost more than the input.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without drivers builds");
    static ADMIN: axum::Router = extractor_router();
}

/// The peer of the fuzzed device connections; a trusted proxy when the input says so.
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// How a fuzzed upgrade request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeOutcome {
    Accepted(Upgrade),
    Refused(ConnectionRefusal),
}

/// The device endpoint's handshake on `input`: its first byte says whether the peer is a trusted
/// proxy (bit 0), the rest is what the client sends. Checks that an accepted upgrade answers
/// `101` with the subprotocol it chose, one the client offered, and takes forwarding headers
/// only from a trusted proxy; that a refusal for the path answers `404` and one for the
/// subprotocol `400`.
pub fn device_upgrade(input: &[u8]) -> Result<UpgradeOutcome, String> {
    let (from_proxy, request) = match input.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => (false, input),
    };
    let proxies = if from_proxy {
        let peer: crate::proxy::IpRange = "192.0.2.1".parse().expect("an address is a range");
        TrustedProxies::new(vec![peer])
    } else {
        TrustedProxies::default()
    };
    let (outcome, answer) = RUNTIME.with(|runtime| {
        runtime.block_on(async {
            // Larger than any request the fuzzer sends, so the client's write never waits for
            // the server to read.
            let (mut client, server) = tokio::io::duplex(request.len() + 64 * 1024);
            let client_side = async {
                // The server may stop reading and drop its end: the rest is not needed.
                let _ = client.write_all(request).await;
                let _ = client.shutdown().await;
                let mut answer = Vec::new();
                let _ = client.read_to_end(&mut answer).await;
                answer
            };
            let server_side = async {
                let forwarding = from_proxy.then_some((&proxies, PEER));
                let config = websocket_config(&DeviceSettings::default());
                match accept_upgrade(server, config, forwarding).await {
                    // Dropping the WebSocket closes the stream: the client's read ends.
                    Ok((_ws, upgrade)) => UpgradeOutcome::Accepted(upgrade),
                    Err((reason, _)) => UpgradeOutcome::Refused(reason),
                }
            };
            let (answer, outcome) = tokio::join!(client_side, server_side);
            (outcome, answer)
        })
    });
    let answer_text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let status_is = |code: &str| answer_text.starts_with(&format!("http/1.1 {code} "));
    match &outcome {
        UpgradeOutcome::Accepted(upgrade) => {
            let subprotocol = upgrade.encoding.subprotocol();
            if !status_is("101") {
                return Err(format!("accepted, but answered {answer_text:?}"));
            }
            if !answer_text.contains(&format!("\r\nsec-websocket-protocol: {subprotocol}\r\n")) {
                return Err(format!(
                    "accepted {subprotocol}, but the answer does not name it: {answer_text:?}"
                ));
            }
            if !contains(request, subprotocol.as_bytes()) {
                return Err(format!("{subprotocol} was chosen but never offered"));
            }
            if upgrade.forwarded_for.is_some() != from_proxy {
                return Err(format!(
                    "forwarding headers read: {:?}, from a trusted proxy: {from_proxy}",
                    upgrade.forwarded_for
                ));
            }
        }
        UpgradeOutcome::Refused(ConnectionRefusal::Path) if !status_is("404") => {
            return Err(format!("refused for its path with {answer_text:?}"));
        }
        UpgradeOutcome::Refused(ConnectionRefusal::Subprotocol) if !status_is("400") => {
            return Err(format!("refused for its subprotocol with {answer_text:?}"));
        }
        UpgradeOutcome::Refused(
            ConnectionRefusal::HandshakeTimeout | ConnectionRefusal::ProxyHeader,
        ) => {
            return Err(format!(
                "refused for a reason the handshake never gives: {outcome:?}"
            ));
        }
        UpgradeOutcome::Refused(_) => {
            if status_is("101") {
                return Err(format!("refused, but answered {answer_text:?}"));
            }
        }
    }
    Ok(outcome)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The kinds of `Content-Type` a fuzzed admin body is sent with.
const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    None,
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    Some("application/problem+json"),
];

/// Words a rejection's message must not hold unless the request did: the server's own type
/// names (the decoder's words for what it expected are rewritten in the API's words).
const INTERNAL_WORDS: &[&str] = &[
    "struct",
    "enum",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "usize",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "isize",
    "f32",
    "f64",
    "Uuid",
    "OrgId",
    "ConfigId",
    "DeviceId",
    "LicenseId",
    "KeyId",
    "CodeId",
    "WebhookId",
    "Timestamp",
    "FieldEdit",
    "Selection",
    "RolloutAudience",
    "CodeKind",
    "LicenseStatus",
    "FleetSort",
    "Option",
];

/// One admin request on the extractors alone: the first byte chooses a body type (sent as a
/// `POST` body, with one of [`CONTENT_TYPES`]) or a query string type (the rest is the query
/// string). Checks that an accepted request answers 204 and a refused one the documented error
/// object: `{"error": {"code", "message", "field"?}}` as JSON, with a status and code of the
/// documented table, in the API's words.
pub fn admin_request(input: &[u8]) -> Result<(), String> {
    let Some((&choice, rest)) = input.split_first() else {
        return Ok(());
    };
    let choice = usize::from(choice);
    let kinds = BODY_TYPES.len() + QUERY_TYPES.len();
    let kind = choice % kinds;
    let is_body = kind < BODY_TYPES.len();
    let request = if is_body {
        let content_type = CONTENT_TYPES[(choice / kinds) % CONTENT_TYPES.len()];
        let mut builder = http::Request::post(format!("/body/{}", BODY_TYPES[kind]));
        if let Some(content_type) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        builder.body(axum::body::Body::from(rest.to_vec()))
    } else {
        let name = QUERY_TYPES[kind - BODY_TYPES.len()];
        let mut uri = format!("/query/{name}?").into_bytes();
        uri.extend_from_slice(rest);
        // A request line that is no URI never reaches a handler: hyper refuses it first.
        let Ok(uri) = http::Uri::try_from(uri) else {
            return Ok(());
        };
        http::Request::get(uri).body(axum::body::Body::empty())
    };
    let request = request.map_err(|error| format!("the request does not build: {error}"))?;
    let (status, content_type, body) = RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let router = ADMIN.with(Clone::clone);
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            };
            let status = response.status();
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|value| value.as_bytes().to_vec());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            (status, content_type, body)
        })
    });
    let body = body.map_err(|error| format!("the answer's body cannot be read: {error}"))?;
    if status == StatusCode::NO_CONTENT {
        return Ok(());
    }
    let documented: &[(u16, &str)] = if is_body {
        &[
            (400, "invalid_json"),
            (413, "invalid_request"),
            (415, "invalid_request"),
            (422, "invalid_request"),
        ]
    } else {
        &[(400, "invalid_request")]
    };
    if content_type.as_deref() != Some(b"application/json".as_slice()) {
        return Err(format!(
            "{status} answered with Content-Type {content_type:?}"
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|error| format!("{status} answered with a body that is not JSON: {error}"))?;
    let error = match answer.as_object() {
        Some(object) if object.len() == 1 => {
            object.get("error").and_then(|error| error.as_object())
        }
        _ => None,
    }
    .ok_or_else(|| format!("{status} answered {answer}, not {{\"error\": {{…}}}}"))?;
    let code = error.get("code").and_then(|code| code.as_str());
    let message = error.get("message").and_then(|message| message.as_str());
    let (Some(code), Some(message)) = (code, message) else {
        return Err(format!("{status}: no code or message in {answer}"));
    };
    if !documented.contains(&(status.as_u16(), code)) {
        return Err(format!(
            "{status} {code} is not in the documented table: {answer}"
        ));
    }
    if message.is_empty() {
        return Err(format!("{status}: an empty message: {answer}"));
    }
    for (key, value) in error {
        let known = match key.as_str() {
            "code" | "message" => true,
            "field" => value.as_str().is_some_and(|field| !field.is_empty()),
            _ => false,
        };
        if !known {
            return Err(format!(
                "{status}: an undocumented member {key:?} in {answer}"
            ));
        }
    }
    let said = |word: &str| {
        message
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|said| said == word)
    };
    for word in INTERNAL_WORDS
        .iter()
        .chain(BODY_TYPES)
        .chain(QUERY_TYPES)
        .copied()
    {
        if said(word) && !contains(rest, word.as_bytes()) {
            return Err(format!("{status}: the message names {word:?}: {message:?}"));
        }
    }
    Ok(())
}

/// The decision on a connection's start from a trusted proxy. Checks that it does not depend on
/// how the bytes arrived: every part of the start (as one peek may see it) is either undecided
/// or decides as the whole start does; that a header is at most as long as its version allows
/// and no longer than what was read.
pub fn proxy_start(input: &[u8]) -> Result<(), String> {
    let start = &input[..input.len().min(PEEK_BYTES)];
    let whole = decision(start);
    if let Ok(Examined::Header { length, .. }) = whole {
        let most = if start.starts_with(b"PROXY ") {
            107
        } else {
            PEEK_BYTES
        };
        if length > start.len() || length > most {
            return Err(format!(
                "a header of {length} bytes out of {} read (at most {most})",
                start.len()
            ));
        }
    }
    for seen in 1..start.len() {
        let part = decision(&start[..seen]);
        if part != Ok(Examined::Incomplete) && part != whole {
            return Err(format!(
                "the first {seen} bytes decide {part:?}, all {} decide {whole:?}",
                start.len()
            ));
        }
    }
    Ok(())
}

fn decision(start: &[u8]) -> Result<Examined, String> {
    examine_start(start).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_upgrade_is_accepted_with_its_subprotocol() {
        let request = b"\x00GET /device HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, paird.v1.json\r\n\r\n";
        let outcome = device_upgrade(request);
        assert!(
            matches!(
                &outcome,
                Ok(UpgradeOutcome::Accepted(Upgrade {
                    encoding: protocol::Encoding::Json,
                    forwarded_for: None
                }))
            ),
            "{outcome:?}"
        );
        let wrong_path = String::from_utf8_lossy(request).replace("/device", "/other");
        assert_eq!(
            device_upgrade(wrong_path.as_bytes()),
            Ok(UpgradeOutcome::Refused(ConnectionRefusal::Path))
        );
        let no_protocol = String::from_utf8_lossy(request).replace("paird.v1.json", "v2");
        assert_eq!(
            device_upgrade(no_protocol.as_bytes()),
            Ok(UpgradeOutcome::Refused(ConnectionRefusal::Subprotocol))
        );
        assert_eq!(
            device_upgrade(b"\x00GET /device HTTP/1.1\r\n\r\n"),
            Ok(UpgradeOutcome::Refused(ConnectionRefusal::Handshake))
        );
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_proxy() {
        let request = "GET /device HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: paird.v1.postcard\r\n\
            X-Forwarded-For: 203.0.113.9\r\n\r\n";
        let forwarded = |first: u8| {
            let mut input = vec![first];
            input.extend_from_slice(request.as_bytes());
            match device_upgrade(&input) {
                Ok(UpgradeOutcome::Accepted(upgrade)) => upgrade.forwarded_for,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(forwarded(1), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(forwarded(0), None);
    }

    #[test]
    fn admin_rejections_are_the_documented_error_object() {
        let body = |name: &str, content_type: usize, text: &str| {
            let kind = BODY_TYPES
                .iter()
                .position(|listed| *listed == name)
                .unwrap();
            let kinds = BODY_TYPES.len() + QUERY_TYPES.len();
            let mut input = vec![u8::try_from(kind + content_type * kinds).unwrap()];
            input.extend_from_slice(text.as_bytes());
            input
        };
        for input in [
            body("NameBody", 0, r#"{"name": "Acme"}"#),
            body("NameBody", 0, r#"{"name": 7}"#),
            body("NameBody", 0, r#"{"name": "Acme", "colour": 1}"#),
            body("NameBody", 0, "{"),
            body("NameBody", 1, r#"{"name": "Acme"}"#),
            body("AddLicensesBody", 0, "null"),
        ] {
            assert_eq!(
                admin_request(&input),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
        let query = |name: &str, text: &str| {
            let kind = QUERY_TYPES
                .iter()
                .position(|listed| *listed == name)
                .unwrap();
            let mut input = vec![u8::try_from(BODY_TYPES.len() + kind).unwrap()];
            input.extend_from_slice(text.as_bytes());
            input
        };
        for input in [
            query("ListQuery", "limit=10"),
            query("ListQuery", "limit=x&y=1"),
        ] {
            assert_eq!(
                admin_request(&input),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn proxy_headers_decide_the_same_however_they_arrive() {
        for start in [
            b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET /device".as_slice(),
            b"PROXY UNKNOWN\r\n",
            b"GET /device HTTP/1.1\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x01\xdc\x04\x01\xbb",
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00",
        ] {
            assert_eq!(
                proxy_start(start),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(start)
            );
        }
    }
}
