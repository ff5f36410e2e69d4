//! Admin API request bodies and query strings, through the API's own extractors (`Body<T>`,
//! `Params<T>`) for every body and query type, and their rejection mapping, in an axum router with
//! the API's body limit. The first byte chooses the type (and a body's Content-Type). Properties
//! (`server::fuzzing::admin_request`): every rejection is the documented error object, with a
//! status and code of docs/admin-api.md's table, in the API's words (no server type names).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::admin_request(input) {
        panic!("{failure}");
    }
});
