//! Configuration bodies (`configformat::validate`, run on every body an admin saves or checks).
//! Properties: it never panics; every problem is on a line of the body (or on line 0, the whole
//! body, only for "no section"), with a one-line message; problems come in line order; a valid
//! report has no error.
#![no_main]

use configformat::{Severity, WHOLE_BODY_LINE, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // Bodies arrive as JSON strings: always UTF-8.
    let body = String::from_utf8_lossy(input);
    let report = validate(&body);
    let lines = body
        .strip_prefix('\u{FEFF}')
        .unwrap_or(&body)
        .lines()
        .count();
    for problem in &report.problems {
        assert!(
            problem.line <= lines,
            "line {} of a body of {lines} lines: {problem:?}",
            problem.line
        );
        if problem.line == WHOLE_BODY_LINE {
            assert_eq!(problem.severity, Severity::Error, "{problem:?}");
        }
        assert!(
            !problem.message.is_empty() && !problem.message.contains('\n'),
            "{problem:?}"
        );
    }
    assert!(
        report
            .problems
            .windows(2)
            .all(|pair| pair[0].line <= pair[1].line),
        "{:?}",
        report.problems
    );
    assert_eq!(report.is_valid(), report.errors().next().is_none());
});
