//! Validation of Collector Mobile Client configuration bodies.
//!
//! paird stores configuration bodies and delivers them to devices byte for byte. The Collector
//! Mobile Client reads them as INI text, and a mistake in a body is only noticed on the device,
//! far from whoever made it. This crate reads a body the way the app is known to read it and
//! reports every problem it finds by line, so that a body can be checked before it is saved. It
//! never rewrites a body and holds no I/O, so the server decides what to do with a [`Report`] (and
//! how to present it as JSON).
//!
//! Layout:
//!
//! - `lib.rs`: the public API ([`validate`], [`Report`], [`Problem`], [`Severity`],
//!   [`KNOWN_GLOBAL_KEYS`], [`WHOLE_BODY_LINE`]) and the walk over a body's lines that applies the
//!   section and key rules.
//! - `line.rs`: classifies one line as blank, comment, section header, `key = value` or malformed.
//! - `global.rs`: the known keys of the `GLOBAL` section and the checks on their values.
//! - `spelling.rs`: finds the known key an unknown key was probably meant to be.
//!
//! The format, as far as it is known:
//!
//! - Sections are written `[NAME]` with upper-case names (`A`-`Z`, `0`-`9`, `_`); the first section
//!   must be `[GLOBAL]`. Other sections may have any valid name.
//! - Inside a section, lines are `key = value` with lower-case key names (`a`-`z`, `0`-`9`, `_`,
//!   `.`, `-`). Spaces and tabs around the key, the `=` and the value are ignored. Only the first
//!   `=` separates, so a value may contain `=`.
//! - A line whose first non-blank character is `#` is a comment. There are no comments after a
//!   value: `rest_timeout = 30 # seconds` has the value `30 # seconds`. A `;` line is an error,
//!   because other INI dialects use `;` for comments and this one does not.
//! - Blank lines are allowed; `\n` and `\r\n` line endings are both read; a UTF-8 byte order mark
//!   at the very start is ignored.
//! - The known `GLOBAL` keys (see [`KNOWN_GLOBAL_KEYS`]) have typed values; unknown keys are
//!   allowed, and an unknown `GLOBAL` key that looks like a misspelled known key draws a warning.

mod global;
mod line;
mod spelling;

use std::collections::HashMap;
use std::fmt;

use global::{
    GLOBAL_SECTION_NAME, SYNCTIME_HIGH_THRESHOLD_KEY, SYNCTIME_LOW_THRESHOLD_KEY, ValueKind,
};
use line::{LineKind, SectionHeader};

/// The line number of a problem that belongs to the whole body rather than to one line.
///
/// Real lines are numbered from 1, so 0 cannot be mistaken for one. It is used when a body has no
/// section at all, which includes an empty body: there is no line to point at that would be more
/// right than any other.
pub const WHOLE_BODY_LINE: usize = 0;

/// The keys of the `GLOBAL` section that this crate knows, in the order of the sample
/// configuration.
///
/// Known keys with a type (thresholds, booleans, lists, the REST timeout) have their values
/// checked; the others (folders, licence key, REST URL) take any text. Unknown keys close to one of
/// these draw a misspelling warning.
pub const KNOWN_GLOBAL_KEYS: &[&str] = &[
    "data_folder",
    "export_folder",
    SYNCTIME_HIGH_THRESHOLD_KEY,
    SYNCTIME_LOW_THRESHOLD_KEY,
    "force_set_time_default",
    "default_registers",
    "default_load_profiles",
    "license_key",
    "rest_url",
    "rest_timeout",
];

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The body does not follow the format; it should not be saved as it is.
    Error,
    /// The body follows the format but probably does not say what was meant; saving is allowed.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One problem found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The 1-based line the problem is on, or [`WHOLE_BODY_LINE`] (0) for a problem of the whole
    /// body. Lines are counted as [`str::lines`] counts them, after a leading byte order mark is
    /// removed.
    pub line: usize,
    /// Whether the problem blocks saving.
    pub severity: Severity,
    /// What is wrong, in English, naming the offending section, key or value.
    pub message: String,
}

impl Problem {
    /// Creates an error on `line`.
    fn error(line: usize, message: String) -> Self {
        Self {
            line,
            severity: Severity::Error,
            message,
        }
    }

    /// Creates a warning on `line`.
    fn warning(line: usize, message: String) -> Self {
        Self {
            line,
            severity: Severity::Warning,
            message,
        }
    }
}

impl fmt::Display for Problem {
    /// Writes `line 7: error: ...`, or `whole body: error: ...` for [`WHOLE_BODY_LINE`].
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == WHOLE_BODY_LINE {
            write!(formatter, "whole body: {}: {}", self.severity, self.message)
        } else {
            write!(
                formatter,
                "line {}: {}: {}",
                self.line, self.severity, self.message
            )
        }
    }
}

/// Everything [`validate`] found in one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every problem found, sorted by line; on one line errors come before warnings, and problems
    /// of the same severity keep the order in which the line was read.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether the body has no errors; warnings do not make a body invalid.
    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The errors, in report order.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|problem| problem.severity == Severity::Error)
    }

    /// The warnings, in report order.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|problem| problem.severity == Severity::Warning)
    }
}

/// The UTF-8 byte order mark, ignored at the very start of a body.
const BYTE_ORDER_MARK: char = '\u{FEFF}';

/// Reads `body` as a Collector Mobile Client configuration and reports every problem found.
///
/// Reading never stops at the first problem: after a broken line the next line is read as usual,
/// and after a broken section header the section is still entered under the name as written, so
/// that one mistake does not hide the lines after it or make them all look wrong.
pub fn validate(body: &str) -> Report {
    let body = body.strip_prefix(BYTE_ORDER_MARK).unwrap_or(body);
    let mut validator = Validator::default();
    for (line_index, line_text) in body.lines().enumerate() {
        validator.read_line(line_index + 1, line_text);
    }
    validator.finish()
}

/// What is known about the section being read.
#[derive(Debug)]
struct OpenSection<'body> {
    /// The name as written between the brackets.
    name: &'body str,
    /// Whether this is the `GLOBAL` section, whose known keys are checked.
    is_global: bool,
    /// The line on which each key was first set in this section, to report duplicates.
    first_line_of_key: HashMap<&'body str, usize>,
    /// The last readable `synctime_high_threshold` with its line.
    high_threshold: Option<(u64, usize)>,
    /// The last readable `synctime_low_threshold` with its line.
    low_threshold: Option<(u64, usize)>,
}

/// The state of one walk over a body.
#[derive(Debug, Default)]
struct Validator<'body> {
    /// Problems in the order found; sorted by [`Validator::finish`].
    problems: Vec<Problem>,
    /// The line on which each section was first opened, to report duplicates.
    first_line_of_section: HashMap<&'body str, usize>,
    /// The section being read, or `None` before the first section header.
    open_section: Option<OpenSection<'body>>,
}

impl<'body> Validator<'body> {
    /// Reads one line, numbered from 1.
    fn read_line(&mut self, line_number: usize, line_text: &'body str) {
        match line::classify(line_text) {
            LineKind::Blank | LineKind::Comment => {}
            LineKind::SemicolonComment => self.problems.push(Problem::error(
                line_number,
                "comments start with #, not ;".to_owned(),
            )),
            LineKind::Section(header) => self.read_section_header(line_number, &header),
            LineKind::KeyValue { key, value } => self.read_key_value(line_number, key, value),
            LineKind::Malformed { text } => self.problems.push(Problem::error(
                line_number,
                format!(
                    "`{}` is not a section header, a `key = value` line or a comment \
                     (missing `=`?)",
                    shown(text)
                ),
            )),
        }
    }

    /// Reads a section header and opens its section.
    fn read_section_header(&mut self, line_number: usize, header: &SectionHeader<'body>) {
        let name = header.name;
        if !header.is_closed {
            self.problems.push(Problem::error(
                line_number,
                format!("section header `[{}` has no closing `]`", shown(name)),
            ));
        }
        if !header.text_after_bracket.is_empty() {
            self.problems.push(Problem::error(
                line_number,
                format!(
                    "unexpected text `{}` after section header `[{}]`",
                    shown(header.text_after_bracket),
                    shown(name)
                ),
            ));
        }
        let name_problem = section_name_problem(name);
        if let Some(message) = &name_problem {
            self.problems
                .push(Problem::error(line_number, message.clone()));
        }

        let is_first_section = self.first_line_of_section.is_empty();
        // A first section that is only a wrongly cased `GLOBAL` already has its error above;
        // reporting that it is not `GLOBAL` as well would say the same thing twice.
        let is_miscased_global =
            name_problem.is_some() && name.eq_ignore_ascii_case(GLOBAL_SECTION_NAME);
        if is_first_section && name != GLOBAL_SECTION_NAME && !is_miscased_global {
            self.problems.push(Problem::error(
                line_number,
                format!(
                    "the first section must be [{GLOBAL_SECTION_NAME}], found [{}]",
                    shown(name)
                ),
            ));
        }

        match self.first_line_of_section.get(name) {
            Some(&first_line) => self.problems.push(Problem::error(
                line_number,
                format!(
                    "duplicate section [{}]; it was first opened on line {first_line}",
                    shown(name)
                ),
            )),
            None => {
                self.first_line_of_section.insert(name, line_number);
            }
        }

        self.close_section();
        self.open_section = Some(OpenSection {
            name,
            is_global: name == GLOBAL_SECTION_NAME,
            first_line_of_key: HashMap::new(),
            high_threshold: None,
            low_threshold: None,
        });
    }

    /// Reads a `key = value` line in the open section.
    fn read_key_value(&mut self, line_number: usize, key: &'body str, value: &'body str) {
        if key.is_empty() {
            self.problems.push(Problem::error(
                line_number,
                format!("empty key name before `= {}`", shown(value)),
            ));
            return;
        }
        let key_name_problem = key_name_problem(key);
        if let Some(message) = &key_name_problem {
            self.problems
                .push(Problem::error(line_number, message.clone()));
        }

        let Some(section) = self.open_section.as_mut() else {
            self.problems.push(Problem::error(
                line_number,
                format!(
                    "key `{}` is outside any section; the body must start with \
                     [{GLOBAL_SECTION_NAME}]",
                    shown(key)
                ),
            ));
            return;
        };

        match section.first_line_of_key.get(key) {
            Some(&first_line) => self.problems.push(Problem::error(
                line_number,
                format!(
                    "duplicate key `{}` in section [{}]; it was first set on line {first_line}",
                    shown(key),
                    shown(section.name)
                ),
            )),
            None => {
                section.first_line_of_key.insert(key, line_number);
            }
        }

        if !section.is_global || key_name_problem.is_some() {
            return;
        }
        match global::value_kind_of(key) {
            Some(kind) => {
                if let Err(message) = global::check_value(key, value, kind) {
                    self.problems.push(Problem::error(line_number, message));
                } else if kind == ValueKind::WholeNumber {
                    // The thresholds are compared when the section ends, because either may come
                    // first; the last value of a duplicated key is the one compared, as an INI
                    // reader that keeps the last value would use it.
                    let reading = global::parse_whole_number(value)
                        .ok()
                        .map(|number| (number, line_number));
                    if key == SYNCTIME_HIGH_THRESHOLD_KEY {
                        section.high_threshold = reading;
                    } else if key == SYNCTIME_LOW_THRESHOLD_KEY {
                        section.low_threshold = reading;
                    }
                }
            }
            None => {
                if let Some(known_key) = spelling::closest_known_key(key, KNOWN_GLOBAL_KEYS) {
                    self.problems.push(Problem::warning(
                        line_number,
                        format!("unknown key `{key}`; did you mean `{known_key}`?"),
                    ));
                }
            }
        }
    }

    /// Runs the checks that need a whole section, then forgets the section.
    fn close_section(&mut self) {
        let Some(section) = self.open_section.take() else {
            return;
        };
        if let (Some((high, high_line)), Some((low, low_line))) =
            (section.high_threshold, section.low_threshold)
            && low > high
        {
            self.problems.push(Problem::error(
                low_line,
                format!(
                    "`{SYNCTIME_LOW_THRESHOLD_KEY}` ({low}) is above \
                     `{SYNCTIME_HIGH_THRESHOLD_KEY}` ({high}, line {high_line}); the low \
                     threshold must not be above the high one"
                ),
            ));
        }
    }

    /// Runs the end-of-body checks and returns the sorted report.
    fn finish(mut self) -> Report {
        self.close_section();
        if self.first_line_of_section.is_empty() {
            self.problems.push(Problem::error(
                WHOLE_BODY_LINE,
                format!("the body has no section; it must start with [{GLOBAL_SECTION_NAME}]"),
            ));
        }
        // The sort is stable, so problems of one line and severity keep their reading order.
        self.problems.sort_by_key(|problem| {
            let severity_rank = match problem.severity {
                Severity::Error => 0,
                Severity::Warning => 1,
            };
            (problem.line, severity_rank)
        });
        Report {
            problems: self.problems,
        }
    }
}

/// Says what is wrong with a section name, or `None` when it is valid.
fn section_name_problem(name: &str) -> Option<String> {
    let is_section_name_character = |character: char| {
        character.is_ascii_uppercase() || character.is_ascii_digit() || character == '_'
    };
    if name.is_empty() {
        return Some("empty section name `[]`".to_owned());
    }
    if name.chars().all(is_section_name_character) {
        return None;
    }
    let upper_case_name = name.to_ascii_uppercase();
    if upper_case_name.chars().all(is_section_name_character) {
        Some(format!(
            "section name `[{name}]` must be upper case: `[{upper_case_name}]`"
        ))
    } else {
        Some(format!(
            "invalid section name `[{}]`; section names use only A-Z, 0-9 and _",
            shown(name)
        ))
    }
}

/// Says what is wrong with a non-empty key name, or `None` when it is valid.
fn key_name_problem(key: &str) -> Option<String> {
    let is_key_name_character = |character: char| {
        character.is_ascii_lowercase()
            || character.is_ascii_digit()
            || matches!(character, '_' | '.' | '-')
    };
    if key.chars().all(is_key_name_character) {
        return None;
    }
    let lower_case_key = key.to_ascii_lowercase();
    if lower_case_key.chars().all(is_key_name_character) {
        Some(format!(
            "key name `{key}` must be lower case: `{lower_case_key}`"
        ))
    } else {
        Some(format!(
            "invalid key name `{}`; key names use only a-z, 0-9, _, . and -",
            shown(key)
        ))
    }
}

/// The most characters of body text quoted in one message.
const MAXIMUM_SHOWN_CHARACTERS: usize = 60;

/// Prepares body text for quoting in a message.
///
/// Long text is cut, so that one huge line does not make a huge message, and control characters
/// are escaped, so that a message stays on one line and shows what is really there.
pub(crate) fn shown(text: &str) -> String {
    let mut quoted = String::new();
    for (character_index, character) in text.chars().enumerate() {
        if character_index == MAXIMUM_SHOWN_CHARACTERS {
            quoted.push('…');
            break;
        }
        if character.is_control() {
            quoted.extend(character.escape_default());
        } else {
            quoted.push(character);
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use global::KNOWN_GLOBAL_KEY_KINDS;

    #[test]
    fn known_global_keys_match_the_typed_table() {
        let typed_keys: Vec<&str> = KNOWN_GLOBAL_KEY_KINDS.iter().map(|&(key, _)| key).collect();
        assert_eq!(KNOWN_GLOBAL_KEYS, typed_keys.as_slice());
    }

    #[test]
    fn shown_text_is_cut_and_control_characters_are_escaped() {
        assert_eq!(shown("a\tb\u{0}"), "a\\tb\\u{0}");
        let long_text = "x".repeat(100);
        assert_eq!(shown(&long_text), format!("{}…", "x".repeat(60)));
        assert_eq!(shown("ü/ß"), "ü/ß");
    }
}
