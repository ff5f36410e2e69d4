//! Properties of `validate` on generated bodies: it never panics, and every problem points at a
//! line that exists (or at the whole body), in report order.

use configformat::{Report, Severity, WHOLE_BODY_LINE, validate};
use proptest::prelude::*;

/// The number of lines `validate` numbers, as its documentation defines them.
fn line_count(body: &str) -> usize {
    body.strip_prefix('\u{FEFF}')
        .unwrap_or(body)
        .lines()
        .count()
}

/// Checks the invariants every report must meet for `body`.
fn check_report_invariants(body: &str, report: &Report) -> Result<(), TestCaseError> {
    let last_line = line_count(body);
    for problem in &report.problems {
        prop_assert!(
            problem.line <= last_line,
            "line {} beyond the {last_line} lines of {body:?}",
            problem.line
        );
        if problem.line == WHOLE_BODY_LINE {
            prop_assert_eq!(problem.severity, Severity::Error);
            prop_assert!(problem.message.contains("no section"));
        }
        prop_assert!(!problem.message.is_empty());
        prop_assert!(!problem.message.contains('\n'), "{:?}", problem.message);
    }
    let is_sorted = report.problems.windows(2).all(|pair| {
        let rank = |severity: Severity| usize::from(severity == Severity::Warning);
        (pair[0].line, rank(pair[0].severity)) <= (pair[1].line, rank(pair[1].severity))
    });
    prop_assert!(is_sorted, "{:#?}", report.problems);
    prop_assert_eq!(report.is_valid(), report.errors().next().is_none());
    prop_assert_eq!(
        report.errors().count() + report.warnings().count(),
        report.problems.len()
    );
    Ok(())
}

/// Lines that look like configuration, so that generated bodies reach every check rather than
/// stopping at "not a `key = value` line".
fn configuration_like_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("[GLOBAL]".to_owned()),
        "\\[[A-Za-z_ 0-9]{0,8}\\]?[ #a-z]{0,3}",
        "[ \t]{0,2}[#;][^\n]{0,10}",
        prop::sample::select(vec![
            "synctime_high_threshold",
            "synctime_low_threshold",
            "synctime_hihg_threshold",
            "force_set_time_default",
            "default_registers",
            "default_load_profiles",
            "rest_timeout",
            "rest_url",
            "Rest_Url",
            "",
        ])
        .prop_flat_map(|key| {
            "[ \t]{0,2}=[ \t]{0,2}(-?[0-9]{0,25}|[A-Za-z]{0,5}|[0-9,. ]{0,10}|[^\n]{0,8})[ \t\r]{0,2}"
                .prop_map(move |rest| format!("{key}{rest}"))
        }),
        "[a-zA-Z_.=\\[\\] -]{0,12}",
        "[^\n]{0,16}",
    ]
}

/// Bodies made of configuration-like lines joined by either line ending, maybe with a BOM.
fn configuration_like_body() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec((configuration_like_line(), any::<bool>()), 0..24),
        any::<bool>(),
    )
        .prop_map(|(has_byte_order_mark, lines, ends_with_line_ending)| {
            let mut body = String::new();
            if has_byte_order_mark {
                body.push('\u{FEFF}');
            }
            let line_total = lines.len();
            for (line_index, (line, uses_crlf)) in lines.into_iter().enumerate() {
                body.push_str(&line);
                if line_index + 1 < line_total || ends_with_line_ending {
                    body.push_str(if uses_crlf { "\r\n" } else { "\n" });
                }
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_unicode_never_panics_and_points_at_existing_lines(body in any::<String>()) {
        let report = validate(&body);
        check_report_invariants(&body, &report)?;
    }

    #[test]
    fn arbitrary_line_soup_never_panics_and_points_at_existing_lines(
        body in "[\\[\\]=#;\r\n \ta-zA-Z0-9_,.\u{FEFF}\u{0}-\u{10FFFF}]{0,200}",
    ) {
        let report = validate(&body);
        check_report_invariants(&body, &report)?;
    }

    #[test]
    fn configuration_like_bodies_never_panic_and_point_at_existing_lines(
        body in configuration_like_body(),
    ) {
        let report = validate(&body);
        check_report_invariants(&body, &report)?;
    }

    #[test]
    fn crlf_and_lf_bodies_give_the_same_report(body in configuration_like_body()) {
        // Only bodies whose lines carry no `\r` of their own are comparable after the conversion.
        let lf_body = body.replace('\r', "");
        let crlf_body = lf_body.replace('\n', "\r\n");
        prop_assert_eq!(validate(&lf_body), validate(&crlf_body));
    }
}
