//! The PROXY protocol header (v1 text, v2 binary) a trusted proxy sends before a device
//! connection's own bytes: the decision the device listener takes on them (`examine_start`, with
//! `parse_v1` and `parse_v2`). Properties (`server::fuzzing::proxy_start`): the decision does not
//! depend on how the bytes arrive (every prefix is undecided or decides as the whole does); a
//! header is no longer than its version allows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::proxy_start(input) {
        panic!("{failure}");
    }
});
