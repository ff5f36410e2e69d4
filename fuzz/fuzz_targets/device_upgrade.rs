//! The device endpoint's WebSocket upgrade: the bytes a client sends on a new connection, through
//! the server's own handshake code (`accept_upgrade`, path and subprotocol checks, forwarding
//! headers from a trusted proxy) on an in-memory stream. The first byte says whether the peer is
//! a trusted proxy. Properties (`server::fuzzing::device_upgrade`): an accepted upgrade answers
//! 101 with a subprotocol the client offered; a refusal answers 404 (path) or 400 (subprotocol);
//! forwarding headers count only from a trusted proxy.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::device_upgrade(input) {
        panic!("{failure}");
    }
});
