//! Device and server frames in the postcard encoding (`paird.v1.postcard`, binary frames), as
//! `Encoding::decode_device` / `decode_server` read them from the socket. Property: a frame that
//! decodes re-encodes to a frame that decodes to the same message, in postcard and in JSON (every
//! message one encoding carries, the other carries too); the wrong frame type is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::device_frame(protocol::Encoding::Postcard, input) {
        panic!("{failure}");
    }
});
