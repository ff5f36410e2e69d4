//! The QR payload URI (`PairingPayload::parse`, what a device reads from a scanned code) and the
//! two secrets' text forms. Properties: a payload that parses formats (`to_uri`) to an upper-case
//! URI in the QR alphanumeric alphabet that parses back to the same payload; its host is what
//! docs/protocol.md allows (a DNS name or IPv4 address, or an IPv6 address); its WebSocket URL is
//! `ws://` or `wss://` to that host and port, at `/device`. A pairing code or a credential that
//! parses formats to a text that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::payload_uri(input) {
        panic!("{failure}");
    }
});
