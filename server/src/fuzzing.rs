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
//! - [`device_frame`]: a device frame in either encoding (both directions' decoders, and encode
//!   ∘ decode the identity in both encodings).
//! - [`config_body`]: the configuration validator (`configformat`) on any body.
//! - [`payload_uri`]: the pairing payload URI, a pairing code and a credential as text.
//!
//! [`TARGETS`] names every target with its entry point; the corpora under `fuzz/corpus/` and the
//! inputs that once failed, under `fuzz/regressions/`, are replayed through them by this
//! module's tests, so `cargo test` runs them on every build without a nightly toolchain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use configformat::{Severity, WHOLE_BODY_LINE};
use protocol::limits::{DEFAULT_MAX_DEVICE_FRAME_BYTES, MAX_SERVER_FRAME_BYTES};
use protocol::{Credential, DecodeError, Encoding, PairingCode, PairingPayload};

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
    // What the request said, as the decoder read it: a query string's names and values are
    // percent-decoded (`i%332` is the field name `i32`, which a message may quote back).
    let sent = if is_body {
        rest.to_vec()
    } else {
        form_urlencoded::parse(rest)
            .flat_map(|(name, value)| [name, value])
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes()
    };
    for word in INTERNAL_WORDS
        .iter()
        .chain(BODY_TYPES)
        .chain(QUERY_TYPES)
        .copied()
    {
        if said(word) && !contains(rest, word.as_bytes()) && !contains(&sent, word.as_bytes()) {
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

/// A fuzz target's entry point: `Err` says which property failed (the target crashes on it).
pub type Entry = fn(&[u8]) -> Result<(), String>;

/// Every fuzz target (the name of its binary in `fuzz/` and of its corpus directory) and the
/// entry point it runs.
pub const TARGETS: &[(&str, Entry)] = &[
    ("admin_request", admin_request),
    ("config_body", config_body),
    ("device_json", |input| device_frame(Encoding::Json, input)),
    ("device_postcard", |input| {
        device_frame(Encoding::Postcard, input)
    }),
    ("device_upgrade", |input| device_upgrade(input).map(|_| ())),
    ("payload_uri", payload_uri),
    ("proxy_header", proxy_start),
];

/// `Err(what())` unless `holds`.
fn check(holds: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if holds { Ok(()) } else { Err(what()) }
}

/// A frame as a device's connection in `encoding` receives it (text frames for JSON, binary for
/// postcard), and as a client receives the server's. Checks that whatever decodes encodes back,
/// in both encodings, to the same message; and that the frame in the other frame type is refused
/// for its type (or its size), never decoded.
pub fn device_frame(encoding: Encoding, frame: &[u8]) -> Result<(), String> {
    let text = encoding.uses_text_frames();
    if let Ok(message) = encoding.decode_device(frame, text, DEFAULT_MAX_DEVICE_FRAME_BYTES) {
        round_trips(&message, Encoding::encode_device, |other, bytes| {
            other.decode_device(bytes, other.uses_text_frames(), usize::MAX)
        })?;
    }
    if let Ok(message) = encoding.decode_server(frame, text, MAX_SERVER_FRAME_BYTES) {
        round_trips(&message, Encoding::encode_server, |other, bytes| {
            other.decode_server(bytes, other.uses_text_frames(), usize::MAX)
        })?;
    }
    let wrong = encoding.decode_device(frame, !text, DEFAULT_MAX_DEVICE_FRAME_BYTES);
    check(
        matches!(
            wrong,
            Err(DecodeError::WrongFrameType { .. } | DecodeError::TooLarge { .. })
        ),
        || format!("in the wrong frame type: {wrong:?}"),
    )
}

/// `message`, encoded in each encoding, decodes back to itself.
fn round_trips<M: PartialEq + std::fmt::Debug>(
    message: &M,
    encode: impl Fn(Encoding, &M) -> Vec<u8>,
    decode: impl Fn(Encoding, &[u8]) -> Result<M, DecodeError>,
) -> Result<(), String> {
    for other in [Encoding::Json, Encoding::Postcard] {
        let again = encode(other, message);
        let decoded = decode(other, &again);
        check(decoded.as_ref() == Ok(message), || {
            format!("{message:?} in {other:?} is {again:?}, which decodes to {decoded:?}")
        })?;
    }
    Ok(())
}

/// A configuration body (bodies arrive as JSON strings: always UTF-8). Checks that the
/// validator's problems are on lines of the body, in line order, each with a one-line message;
/// that a problem of the whole body is an error; and that the report is valid exactly when it
/// holds no error.
pub fn config_body(input: &[u8]) -> Result<(), String> {
    let body = String::from_utf8_lossy(input);
    let report = configformat::validate(&body);
    let lines = body
        .strip_prefix('\u{FEFF}')
        .unwrap_or(&body)
        .lines()
        .count();
    for problem in &report.problems {
        check(problem.line <= lines, || {
            format!(
                "line {} of a body of {lines} lines: {problem:?}",
                problem.line
            )
        })?;
        check(
            problem.line != WHOLE_BODY_LINE || problem.severity == Severity::Error,
            || format!("a problem of the whole body that is not an error: {problem:?}"),
        )?;
        check(
            !problem.message.is_empty() && !problem.message.contains('\n'),
            || format!("an empty or multi-line message: {problem:?}"),
        )?;
    }
    check(
        report
            .problems
            .windows(2)
            .all(|pair| pair[0].line <= pair[1].line),
        || format!("problems out of line order: {:?}", report.problems),
    )?;
    check(
        report.is_valid() == report.errors().next().is_none(),
        || {
            format!(
                "valid: {}, but the errors are {:?}",
                report.is_valid(),
                report.problems
            )
        },
    )
}

/// Text as a pairing payload URI, a pairing code and a credential. Checks that a payload that
/// parses prints as QR alphanumeric text that parses back to it, with a host of the documented
/// form and the WebSocket URL its parts say; that a code that parses has the code's length and
/// parses back; and that a credential's text round-trips.
pub fn payload_uri(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    if let Ok(payload) = PairingPayload::parse(&text) {
        let uri = payload.to_uri();
        check(
            uri.bytes().all(|b| {
                b.is_ascii_digit() || b.is_ascii_uppercase() || b" $%*+-./:[]".contains(&b)
            }),
            || format!("{uri:?} is not QR alphanumeric"),
        )?;
        let again = PairingPayload::parse(&uri);
        check(again.as_ref() == Ok(&payload), || {
            format!("{text:?} prints as {uri:?}, which parses to {again:?}")
        })?;
        let host = &payload.host;
        let documented = if host.contains(':') {
            host.parse::<Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        check(documented, || {
            format!("{text:?} parsed with the host {host:?}")
        })?;
        let scheme = if payload.tls { "wss://" } else { "ws://" };
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let port_part = payload
            .port
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        let expected = format!("{scheme}{host_part}{port_part}/device");
        let url = payload.websocket_url();
        check(url == expected, || {
            format!("{text:?} gives the URL {url:?}, not {expected:?}")
        })?;
    }
    if let Ok(code) = PairingCode::parse(&text) {
        check(code.as_str().len() == PairingCode::LEN, || {
            format!(
                "{text:?} parsed as a code of {} characters",
                code.as_str().len()
            )
        })?;
        check(
            PairingCode::parse(code.as_str()) == Ok(code.clone()),
            || format!("{text:?} parsed as a code that does not parse back"),
        )?;
    }
    if let Ok(credential) = Credential::from_text(&text) {
        // The credential is not printed: a failure names the input only.
        check(
            Credential::from_text(&credential.to_text()) == Ok(credential),
            || format!("{text:?} parsed as a credential whose text does not parse back"),
        )?;
    }
    Ok(())
}

fn decision(start: &[u8]) -> Result<Examined, String> {
    examine_start(start).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through its
    /// target's entry point; every corpus directory is a known target, every target has one.
    #[test]
    fn the_fuzz_corpora_and_regressions_replay_clean() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut failures = Vec::new();
        let mut replayed = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(directories) = std::fs::read_dir(fuzz.join(kind)) else {
                assert_eq!(kind, "regressions", "no fuzz/{kind}");
                continue;
            };
            for directory in directories {
                let directory = directory.unwrap().path();
                let name = directory
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let Some((_, entry)) = TARGETS.iter().find(|(target, _)| *target == name) else {
                    panic!("fuzz/{kind}/{name} is no target's");
                };
                for file in std::fs::read_dir(&directory).unwrap() {
                    let file = file.unwrap().path();
                    let input = std::fs::read(&file).unwrap();
                    replayed += 1;
                    if let Err(failure) = entry(&input) {
                        failures.push(format!("{}: {failure}", file.display()));
                    }
                }
            }
        }
        for (target, _) in TARGETS {
            let corpus = fuzz.join("corpus").join(target);
            assert!(
                std::fs::read_dir(&corpus).is_ok_and(|mut files| files.next().is_some()),
                "{} is missing or empty",
                corpus.display()
            );
        }
        assert!(replayed > 0);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

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
