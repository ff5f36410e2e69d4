//! Device and server frames in the JSON encoding (`paird.v1.json`, text frames), as
//! `Encoding::decode_device` / `decode_server` read them from the socket. Property: a frame that
//! decodes re-encodes to a frame that decodes to the same message, in JSON and in postcard (every
//! message one encoding carries, the other carries too); the wrong frame type is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::device_frame(protocol::Encoding::Json, input) {
        panic!("{failure}");
    }
});
