//! The QR payload URI (`PairingPayload::parse`, what a device reads from a scanned code) and the
//! two secrets' text forms. Properties: a payload that parses formats (`to_uri`) to an upper-case
//! URI in the QR alphanumeric alphabet that parses back to the same payload; its host is what
//! docs/protocol.md allows (a DNS name or IPv4 address, or an IPv6 address); its WebSocket URL is
//! `ws://` or `wss://` to that host and port, at `/device`. A pairing code or a credential that
//! parses formats to a text that parses back to the same value.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use protocol::{Credential, PairingCode, PairingPayload};

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    if let Ok(payload) = PairingPayload::parse(&text) {
        let uri = payload.to_uri();
        assert!(
            uri.bytes().all(|b| b.is_ascii_digit()
                || b.is_ascii_uppercase()
                || b" $%*+-./:[]".contains(&b)),
            "{uri:?} is not QR alphanumeric"
        );
        assert_eq!(PairingPayload::parse(&uri), Ok(payload.clone()), "{uri:?}");
        let host = &payload.host;
        let documented = if host.contains(':') {
            host.parse::<Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        assert!(documented, "{text:?} parsed with the host {host:?}");
        let url = payload.websocket_url();
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
        assert_eq!(url, format!("{scheme}{host_part}{port_part}/device"));
    }
    if let Ok(code) = PairingCode::parse(&text) {
        assert_eq!(code.as_str().len(), PairingCode::LEN);
        assert_eq!(PairingCode::parse(code.as_str()), Ok(code.clone()));
    }
    if let Ok(credential) = Credential::from_text(&text) {
        assert_eq!(Credential::from_text(&credential.to_text()), Ok(credential));
    }
});
