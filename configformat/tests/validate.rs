//! Behaviour of `validate` on hand-written bodies: one test per kind of problem, each pinning the
//! line number and that the message names what is wrong.

use configformat::{KNOWN_GLOBAL_KEYS, Problem, Report, Severity, WHOLE_BODY_LINE, validate};

/// The sample configuration the server offers as a template.
const SAMPLE_CONFIGURATION: &str = include_str!("../../server/src/sample_configuration.ini");

/// The body the load tester saves over and over.
const LOAD_TEST_BODY: &str = "[GLOBAL]\nsynctime_high_threshold = 600\n# loadtest edit 7\n";

/// The line and severity of every problem, for comparing whole reports at a glance.
fn lines_and_severities(report: &Report) -> Vec<(usize, Severity)> {
    report
        .problems
        .iter()
        .map(|problem| (problem.line, problem.severity))
        .collect()
}

/// Validates `body` and returns its only problem, failing when there is not exactly one.
fn only_problem(body: &str) -> Problem {
    let report = validate(body);
    assert_eq!(
        report.problems.len(),
        1,
        "expected exactly one problem in {body:?}, got {:#?}",
        report.problems
    );
    report.problems[0].clone()
}

/// Validates `body` and returns its only problem, failing unless it is an error on `line` whose
/// message contains every one of `message_parts`.
fn only_error_on_line(body: &str, line: usize, message_parts: &[&str]) -> Problem {
    let problem = only_problem(body);
    assert_eq!(problem.severity, Severity::Error, "{problem}");
    assert_eq!(problem.line, line, "{problem}");
    for part in message_parts {
        assert!(
            problem.message.contains(part),
            "message {:?} does not contain {part:?}",
            problem.message
        );
    }
    problem
}

#[test]
fn the_sample_configuration_has_no_problems_at_all() {
    let report = validate(SAMPLE_CONFIGURATION);
    assert_eq!(report.problems, Vec::new());
    assert!(report.is_valid());
}

#[test]
fn the_sample_configuration_sets_every_known_global_key() {
    // The sample is the template users start from, so it should show every key this crate knows.
    for key in KNOWN_GLOBAL_KEYS {
        let setting = format!("\n{key} =");
        assert!(SAMPLE_CONFIGURATION.contains(&setting), "{key}");
    }
}

#[test]
fn the_load_test_body_has_no_problems() {
    let report = validate(LOAD_TEST_BODY);
    assert_eq!(report.problems, Vec::new());
    assert!(report.is_valid());
}

#[test]
fn a_lower_case_section_name_is_an_error_that_gives_the_upper_case_name() {
    only_error_on_line(
        "[GLOBAL]\nrest_timeout = 30\n[communication]\nretries = 3\n",
        3,
        &["[communication]", "upper case", "[COMMUNICATION]"],
    );
}

#[test]
fn a_mixed_case_section_name_is_an_error() {
    only_error_on_line("[GLOBAL]\n\n[Display]\n", 3, &["[Display]", "[DISPLAY]"]);
}

#[test]
fn a_lower_case_first_global_section_is_reported_once() {
    // The case error already says what to write; "the first section must be GLOBAL" would repeat
    // it.
    only_error_on_line(
        "[global]\nrest_timeout = 30\n",
        1,
        &["[global]", "[GLOBAL]"],
    );
}

#[test]
fn a_section_name_with_other_characters_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\n[READ OUT]\n",
        2,
        &["[READ OUT]", "A-Z, 0-9 and _"],
    );
    only_error_on_line("[GLOBAL]\n[READ-OUT]\n", 2, &["[READ-OUT]"]);
    only_error_on_line("[GLOBAL]\n[ÜBER]\n", 2, &["[ÜBER]"]);
}

#[test]
fn spaces_inside_the_brackets_are_an_error() {
    only_error_on_line("[GLOBAL]\n[ DISPLAY ]\n", 2, &["[ DISPLAY ]"]);
}

#[test]
fn an_empty_section_name_is_an_error() {
    only_error_on_line("[GLOBAL]\n[]\n", 2, &["empty section name"]);
}

#[test]
fn an_upper_case_key_name_is_an_error_that_gives_the_lower_case_name() {
    only_error_on_line(
        "[GLOBAL]\nrest_timeout = 30\nREST_URL = https://x\n",
        3,
        &["`REST_URL`", "lower case", "`rest_url`"],
    );
}

#[test]
fn a_mixed_case_key_name_in_another_section_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\n[DISPLAY]\nLanguage = en\n",
        3,
        &["`Language`", "`language`"],
    );
}

#[test]
fn a_key_name_with_other_characters_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\nrest url = https://x\n",
        2,
        &["`rest url`", "a-z, 0-9, _, . and -"],
    );
    only_error_on_line("[GLOBAL]\nrest/url = x\n", 2, &["`rest/url`"]);
}

#[test]
fn key_names_may_use_dots_dashes_and_digits() {
    let report = validate("[GLOBAL]\n[READOUT]\nregister.1-8-0_name = x\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_key_before_the_first_section_is_an_error() {
    only_error_on_line(
        "# settings\ndata_folder = /sdcard\n[GLOBAL]\n",
        2,
        &["`data_folder`", "outside any section"],
    );
}

#[test]
fn a_duplicate_section_is_an_error_on_its_second_header() {
    only_error_on_line(
        "[GLOBAL]\n[DISPLAY]\nlanguage = en\n[READOUT]\n[DISPLAY]\nlanguage = de\n",
        5,
        &["duplicate section [DISPLAY]", "line 2"],
    );
}

#[test]
fn a_duplicate_key_is_an_error_on_its_second_line() {
    only_error_on_line(
        "[GLOBAL]\nrest_timeout = 30\nrest_url = https://x\nrest_timeout = 60\n",
        4,
        &["duplicate key `rest_timeout`", "[GLOBAL]", "line 2"],
    );
}

#[test]
fn the_same_key_in_two_sections_is_not_a_duplicate() {
    let report = validate("[GLOBAL]\nretries = 1\n[COMMUNICATION]\nretries = 3\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_first_section_other_than_global_is_an_error_on_its_header() {
    only_error_on_line(
        "# comment\n\n[COMMUNICATION]\nretries = 3\n[GLOBAL]\nrest_timeout = 30\n",
        3,
        &["first section must be [GLOBAL]", "[COMMUNICATION]"],
    );
}

#[test]
fn a_body_without_any_section_is_an_error_of_the_whole_body() {
    for body in ["", "\n\n", "# only a comment\n", "\u{FEFF}"] {
        let problem = only_error_on_line(body, WHOLE_BODY_LINE, &["no section", "[GLOBAL]"]);
        assert!(
            problem.to_string().starts_with("whole body: error: "),
            "{problem}"
        );
    }
}

#[test]
fn keys_without_any_section_are_reported_each_and_the_body_as_a_whole() {
    let report = validate("rest_timeout = 30\nrest_url = x\n");
    assert_eq!(
        lines_and_severities(&report),
        [
            (WHOLE_BODY_LINE, Severity::Error),
            (1, Severity::Error),
            (2, Severity::Error)
        ]
    );
}

#[test]
fn a_negative_threshold_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\nsynctime_high_threshold = -600\n",
        2,
        &[
            "`synctime_high_threshold`",
            "whole number",
            "negative",
            "`-600`",
        ],
    );
    only_error_on_line(
        "[GLOBAL]\nsynctime_low_threshold = -5\n",
        2,
        &["`synctime_low_threshold`", "`-5`"],
    );
}

#[test]
fn a_non_numeric_threshold_is_an_error() {
    for value in ["ten", "5.5", "+5", "5 s", "1e3", "٥"] {
        let body = format!("[GLOBAL]\nsynctime_low_threshold = {value}\n");
        only_error_on_line(&body, 2, &["`synctime_low_threshold`", value]);
    }
}

#[test]
fn a_comment_after_a_number_is_part_of_the_value() {
    only_error_on_line(
        "[GLOBAL]\nrest_timeout = 30 # seconds\n",
        2,
        &["`rest_timeout`", "`30 # seconds`"],
    );
}

#[test]
fn a_number_too_large_to_read_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\nsynctime_high_threshold = 99999999999999999999999\n",
        2,
        &["`synctime_high_threshold`", "too large"],
    );
}

#[test]
fn an_empty_typed_value_is_an_error() {
    for key in [
        "synctime_high_threshold",
        "synctime_low_threshold",
        "force_set_time_default",
        "default_registers",
        "default_load_profiles",
        "rest_timeout",
    ] {
        let body = format!("[GLOBAL]\n{key} =\n");
        only_error_on_line(&body, 2, &[&format!("`{key}` is empty")]);
    }
}

#[test]
fn an_empty_untyped_value_is_allowed() {
    let report =
        validate("[GLOBAL]\nlicense_key =\ndata_folder =   \nrest_url=\n[DISPLAY]\nlanguage =\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_low_threshold_above_the_high_threshold_is_an_error_on_the_low_line() {
    let problem = only_error_on_line(
        "[GLOBAL]\nsynctime_high_threshold = 600\nrest_timeout = 30\nsynctime_low_threshold = 700\n",
        4,
        &[
            "`synctime_low_threshold` (700)",
            "`synctime_high_threshold` (600, line 2)",
        ],
    );
    assert_eq!(
        problem.to_string(),
        format!("line 4: error: {}", problem.message)
    );
}

#[test]
fn the_threshold_order_in_the_body_does_not_matter() {
    only_error_on_line(
        "[GLOBAL]\nsynctime_low_threshold = 10\nsynctime_high_threshold = 5\n",
        2,
        &["(10)", "(5, line 3)"],
    );
}

#[test]
fn equal_thresholds_are_allowed() {
    let report = validate("[GLOBAL]\nsynctime_high_threshold = 5\nsynctime_low_threshold = 5\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn thresholds_are_only_compared_inside_global() {
    let report =
        validate("[GLOBAL]\n[READOUT]\nsynctime_high_threshold = 5\nsynctime_low_threshold = 9\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn every_documented_boolean_spelling_is_accepted() {
    for value in [
        "1", "Y", "TRUE", "YES", "0", "N", "FALSE", "NO", "y", "true", "Yes", "n", "False", "no",
    ] {
        let body = format!("[GLOBAL]\nforce_set_time_default = {value}\n");
        assert_eq!(validate(&body).problems, Vec::new(), "{value}");
    }
}

#[test]
fn an_unreadable_boolean_is_an_error() {
    for value in ["maybe", "2", "T", "on", "yess"] {
        let body = format!("[GLOBAL]\nforce_set_time_default = {value}\n");
        only_error_on_line(
            &body,
            2,
            &["`force_set_time_default`", "boolean", &format!("`{value}`")],
        );
    }
}

#[test]
fn lists_accept_items_with_spaces_around_the_commas() {
    let report = validate(
        "[GLOBAL]\ndefault_registers = 1.8.0, 1.8.1 ,2.8.0\ndefault_load_profiles = 1 , 2\n",
    );
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_register_list_with_an_empty_item_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\ndefault_registers = 1.8.0,,1.8.1,\n",
        2,
        &["`default_registers`", "empty item at position 2", "1 more"],
    );
}

#[test]
fn a_load_profile_list_with_a_non_number_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\ndefault_load_profiles = 1,two,-3\n",
        2,
        &["`default_load_profiles`", "`two`", "position 2", "1 more"],
    );
    only_error_on_line(
        "[GLOBAL]\ndefault_load_profiles = 1,\n",
        2,
        &["`default_load_profiles`", "empty item at position 2"],
    );
}

#[test]
fn a_line_without_equals_sign_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\nrest_url https://x\n",
        2,
        &["`rest_url https://x`", "missing `=`"],
    );
}

#[test]
fn an_unclosed_section_header_is_an_error_and_the_section_is_still_read() {
    // Reading on as if the header were closed keeps the keys below from all being reported too.
    only_error_on_line(
        "[GLOBAL\nrest_timeout = 30\n",
        1,
        &["`[GLOBAL`", "no closing `]`"],
    );
    let report = validate("[GLOBAL\nforce_set_time_default = perhaps\n");
    assert_eq!(
        lines_and_severities(&report),
        [(1, Severity::Error), (2, Severity::Error)]
    );
    assert!(report.problems[1].message.contains("`perhaps`"));
}

#[test]
fn text_after_a_section_header_is_an_error() {
    only_error_on_line(
        "[GLOBAL] # main settings\n",
        1,
        &["`# main settings`", "[GLOBAL]"],
    );
}

#[test]
fn an_empty_key_is_an_error() {
    only_error_on_line("[GLOBAL]\n= 5\n", 2, &["empty key name", "`= 5`"]);
    only_error_on_line("[GLOBAL]\n  =\n", 2, &["empty key name"]);
}

#[test]
fn a_semicolon_comment_is_an_error() {
    only_error_on_line(
        "[GLOBAL]\n; old style comment\n",
        2,
        &["comments start with #"],
    );
}

#[test]
fn indented_comments_and_keys_are_read() {
    let report = validate("  [GLOBAL]\n   # note\n\trest_timeout = 30\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn unknown_sections_and_unknown_keys_are_allowed_silently() {
    let report = validate("[GLOBAL]\nmeter_vendor = acme\n[EXTRA_1]\nanything.goes = here = too\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_misspelled_known_key_is_a_warning_and_the_body_stays_valid() {
    let report = validate("[GLOBAL]\nsynctime_hihg_threshold = 600\n");
    assert!(report.is_valid());
    assert_eq!(report.errors().count(), 0);
    let warnings: Vec<&Problem> = report.warnings().collect();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].line, 2);
    assert_eq!(
        warnings[0].message,
        "unknown key `synctime_hihg_threshold`; did you mean `synctime_high_threshold`?"
    );
    assert_eq!(
        warnings[0].to_string(),
        "line 2: warning: unknown key `synctime_hihg_threshold`; did you mean \
         `synctime_high_threshold`?"
    );
}

#[test]
fn a_key_that_differs_only_in_underscores_is_a_warning() {
    let report = validate("[GLOBAL]\nforce_settime_default = Y\nresturl = x\n");
    let warnings: Vec<(usize, &str)> = report
        .warnings()
        .map(|warning| (warning.line, warning.message.as_str()))
        .collect();
    assert_eq!(
        warnings,
        [
            (
                2,
                "unknown key `force_settime_default`; did you mean `force_set_time_default`?"
            ),
            (3, "unknown key `resturl`; did you mean `rest_url`?")
        ]
    );
    assert!(report.is_valid());
}

#[test]
fn misspellings_are_only_looked_for_in_global() {
    let report = validate("[GLOBAL]\n[READOUT]\nrest_uri = x\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_body_with_several_problems_reports_all_of_them_in_line_order() {
    let body = "\
data_folder = /sdcard
[COMMUNICATION]
Retries = 3
; comment
[GLOBAL]
synctime_high_threshold = 60
synctime_low_threshold = 90
force_set_time_default = sometimes
rest_uri = https://x
rest_uri = https://y
[display]
[COMMUNICATION]
= 1
language
";
    let report = validate(body);
    assert_eq!(
        lines_and_severities(&report),
        [
            (1, Severity::Error),    // key outside any section
            (2, Severity::Error),    // first section is not GLOBAL
            (3, Severity::Error),    // upper-case key
            (4, Severity::Error),    // `;` comment
            (7, Severity::Error),    // low above high
            (8, Severity::Error),    // unreadable boolean
            (9, Severity::Warning),  // misspelled rest_url
            (10, Severity::Error),   // duplicate key, before ...
            (10, Severity::Warning), // ... the misspelling on the same line
            (11, Severity::Error),   // lower-case section name
            (12, Severity::Error),   // duplicate section
            (13, Severity::Error),   // empty key
            (14, Severity::Error),   // missing `=`
        ]
    );
    assert!(!report.is_valid());
    assert_eq!(report.errors().count(), 11);
    assert_eq!(report.warnings().count(), 2);
    assert!(report.problems[0].message.contains("`data_folder`"));
    assert!(report.problems[4].message.contains("(90)"));
    assert!(
        report.problems[7]
            .message
            .contains("duplicate key `rest_uri`")
    );
}

#[test]
fn crlf_line_endings_give_the_same_report() {
    let body = "[GLOBAL]\nsynctime_high_threshold = 600\nsynctime_low_threshold = x\n\n\
                [display]\nlanguage = en\nlanguage = de\nbroken line\n";
    let crlf_body = body.replace('\n', "\r\n");
    let report = validate(body);
    assert_eq!(
        lines_and_severities(&report),
        [
            (3, Severity::Error),
            (5, Severity::Error),
            (7, Severity::Error),
            (8, Severity::Error)
        ]
    );
    assert_eq!(validate(&crlf_body), report);

    let crlf_sample = SAMPLE_CONFIGURATION.replace('\n', "\r\n");
    assert_eq!(validate(&crlf_sample).problems, Vec::new());
}

#[test]
fn a_body_without_final_line_ending_is_read_completely() {
    only_error_on_line("[GLOBAL]\nrest_timeout = x", 2, &["`rest_timeout`"]);
    only_error_on_line("[GLOBAL]\r\nrest_timeout = x\r", 2, &["`x`"]);
}

#[test]
fn trailing_spaces_are_ignored() {
    let body_with_trailing_blanks: String = SAMPLE_CONFIGURATION
        .lines()
        .map(|line| format!("{line}   \t \n"))
        .collect();
    assert_eq!(validate(&body_with_trailing_blanks).problems, Vec::new());

    let report = validate("[GLOBAL]   \nforce_set_time_default = Y   \nrest_timeout = 30  \r\n");
    assert_eq!(report.problems, Vec::new());
}

#[test]
fn a_byte_order_mark_at_the_start_is_ignored() {
    let body = format!("\u{FEFF}{SAMPLE_CONFIGURATION}");
    assert_eq!(validate(&body).problems, Vec::new());
}

#[test]
fn a_byte_order_mark_elsewhere_is_not_ignored() {
    only_error_on_line("[GLOBAL]\n\u{FEFF}[DISPLAY]\n", 2, &["`\u{FEFF}[DISPLAY]`"]);
}

#[test]
fn long_and_control_text_is_shortened_and_escaped_in_messages() {
    let long_value = "z".repeat(500);
    let body = format!("[GLOBAL]\nrest_timeout = {long_value}\u{7}\n");
    let problem = only_error_on_line(&body, 2, &["`rest_timeout`", "…"]);
    assert!(problem.message.len() < 200, "{}", problem.message);
    let problem = only_error_on_line("[GLOBAL]\nrest_timeout = 3\u{7}0\n", 2, &["3\\u{7}0"]);
    assert!(!problem.message.contains('\u{7}'));
}
