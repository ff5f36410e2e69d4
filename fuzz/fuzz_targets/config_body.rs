//! Configuration bodies (`configformat::validate`, run on every body an admin saves or checks).
//! Properties: it never panics; every problem is on a line of the body (or on line 0, the whole
//! body, only for "no section"), with a one-line message; problems come in line order; a valid
//! report has no error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(failure) = server::fuzzing::config_body(input) {
        panic!("{failure}");
    }
});
