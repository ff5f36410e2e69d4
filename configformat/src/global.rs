//! The known keys of the `GLOBAL` section and the checks on their values.

use crate::shown;

/// The name of the section that must come first and whose keys are known.
pub(crate) const GLOBAL_SECTION_NAME: &str = "GLOBAL";

/// The key holding the clock difference, in seconds, above which time synchronization fails.
pub(crate) const SYNCTIME_HIGH_THRESHOLD_KEY: &str = "synctime_high_threshold";

/// The key holding the clock difference, in seconds, below which the clocks count as synchronized.
pub(crate) const SYNCTIME_LOW_THRESHOLD_KEY: &str = "synctime_low_threshold";

/// What a known `GLOBAL` key's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    /// Any text, including none.
    AnyText,
    /// A whole number, 0 or greater.
    WholeNumber,
    /// One of `1`, `Y`, `TRUE`, `YES`, `0`, `N`, `FALSE`, `NO`, in any letter case.
    Boolean,
    /// A comma-separated list of non-empty items.
    List,
    /// A comma-separated list of whole numbers.
    WholeNumberList,
}

/// Every known `GLOBAL` key with the kind of value it takes, in the order of the sample.
pub(crate) const KNOWN_GLOBAL_KEY_KINDS: &[(&str, ValueKind)] = &[
    ("data_folder", ValueKind::AnyText),
    ("export_folder", ValueKind::AnyText),
    (SYNCTIME_HIGH_THRESHOLD_KEY, ValueKind::WholeNumber),
    (SYNCTIME_LOW_THRESHOLD_KEY, ValueKind::WholeNumber),
    ("force_set_time_default", ValueKind::Boolean),
    ("default_registers", ValueKind::List),
    ("default_load_profiles", ValueKind::WholeNumberList),
    ("license_key", ValueKind::AnyText),
    ("rest_url", ValueKind::AnyText),
    ("rest_timeout", ValueKind::WholeNumber),
];

/// Returns the kind of value a known `GLOBAL` key takes, or `None` for an unknown key.
pub(crate) fn value_kind_of(key: &str) -> Option<ValueKind> {
    KNOWN_GLOBAL_KEY_KINDS
        .iter()
        .find(|(known_key, _)| *known_key == key)
        .map(|&(_, kind)| kind)
}

/// The spellings of a true boolean, compared without regard to letter case.
const TRUE_SPELLINGS: &[&str] = &["1", "Y", "TRUE", "YES"];

/// The spellings of a false boolean, compared without regard to letter case.
const FALSE_SPELLINGS: &[&str] = &["0", "N", "FALSE", "NO"];

/// Checks `value` of `key` against `kind`, returning the error message when it does not fit.
pub(crate) fn check_value(key: &str, value: &str, kind: ValueKind) -> Result<(), String> {
    if kind != ValueKind::AnyText && value.is_empty() {
        return Err(format!(
            "`{key}` is empty; it must be {}",
            expected_value_description(kind)
        ));
    }
    match kind {
        ValueKind::AnyText => Ok(()),
        ValueKind::WholeNumber => parse_whole_number(value)
            .map(|_| ())
            .map_err(|reason| format!("`{key}` must be a whole number 0 or greater; {reason}")),
        ValueKind::Boolean => {
            let is_boolean = TRUE_SPELLINGS
                .iter()
                .chain(FALSE_SPELLINGS)
                .any(|spelling| spelling.eq_ignore_ascii_case(value));
            if is_boolean {
                Ok(())
            } else {
                Err(format!(
                    "`{key}` must be {}, found `{}`",
                    expected_value_description(kind),
                    shown(value)
                ))
            }
        }
        ValueKind::List => check_list_items(key, value, |item| {
            if item.is_empty() {
                Err("an empty item".to_owned())
            } else {
                Ok(())
            }
        }),
        ValueKind::WholeNumberList => check_list_items(key, value, |item| {
            parse_whole_number(item).map(|_| ()).map_err(|reason| {
                if item.is_empty() {
                    "an empty item".to_owned()
                } else {
                    format!(
                        "item `{}` that is not a whole number ({reason})",
                        shown(item)
                    )
                }
            })
        }),
    }
}

/// Describes what a value of `kind` must be, for messages.
fn expected_value_description(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::AnyText => "any text",
        ValueKind::WholeNumber => "a whole number 0 or greater",
        ValueKind::Boolean => "a boolean (1, Y, TRUE or YES; 0, N, FALSE or NO)",
        ValueKind::List => "a comma-separated list of non-empty items",
        ValueKind::WholeNumberList => "a comma-separated list of whole numbers",
    }
}

/// Checks every comma-separated item of `value` with `check_item` and reports the first bad one.
///
/// Items are trimmed of blanks first, so `1, 2` reads like `1,2`. Only the first bad item is
/// named, with a count of the others, so that one long broken line gives one readable message.
fn check_list_items(
    key: &str,
    value: &str,
    check_item: impl Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut first_bad_item: Option<(usize, String)> = None;
    let mut bad_item_count = 0_usize;
    for (item_index, item) in value.split(',').enumerate() {
        if let Err(description) = check_item(crate::line::trim_blanks(item)) {
            bad_item_count += 1;
            if first_bad_item.is_none() {
                first_bad_item = Some((item_index + 1, description));
            }
        }
    }
    match first_bad_item {
        None => Ok(()),
        Some((item_position, description)) => {
            let others = match bad_item_count - 1 {
                0 => String::new(),
                1 => " and 1 more bad item".to_owned(),
                more => format!(" and {more} more bad items"),
            };
            Err(format!(
                "`{key}` has {description} at position {item_position}{others}; \
                 items are separated by commas"
            ))
        }
    }
}

/// Reads a whole number 0 or greater, or says why `text` is not one.
///
/// Only ASCII digits are accepted: a sign, spaces inside the number, a decimal point or trailing
/// text (such as a comment after the value, which this format does not have) are all refused.
pub(crate) fn parse_whole_number(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("found nothing".to_owned());
    }
    let is_negative_number = text
        .strip_prefix('-')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if is_negative_number {
        return Err(format!("found the negative number `{text}`"));
    }
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("found `{}`", shown(text)));
    }
    text.parse::<u64>()
        .map_err(|_| format!("`{}` is too large", shown(text)))
}
