//! What admin commands accept: names, configuration bodies, validity periods, counts.

use std::time::Duration;

use crate::error::EngineError;

/// Longest configuration body the engine stores and delivers.
pub const MAX_CONFIGURATION_BODY_BYTES: usize = 256 * 1024;
/// Longest configuration name.
pub const MAX_CONFIGURATION_NAME_BYTES: usize = 200;
/// Longest organization name.
pub const MAX_ORGANIZATION_NAME_BYTES: usize = 200;
/// Longest organization key name and code label.
pub const MAX_LABEL_BYTES: usize = 100;

/// Limits on codes.
pub const REUSABLE_VALIDITY_DEFAULT: Duration = Duration::from_secs(30 * 24 * 3600);
pub const REUSABLE_VALIDITY_MIN: Duration = Duration::from_secs(3600);
pub const REUSABLE_VALIDITY_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
pub const SINGLE_USE_VALIDITY_DEFAULT: Duration = Duration::from_secs(60);
pub const SINGLE_USE_VALIDITY_MIN: Duration = Duration::from_secs(10);
pub const SINGLE_USE_VALIDITY_MAX: Duration = Duration::from_secs(600);
/// Most licenses added by one command.
pub const MAX_LICENSES_PER_COMMAND: u32 = 100_000;
/// Most devices assigned by one command.
pub const MAX_DEVICES_PER_ASSIGNMENT: usize = 20_000;

/// A name or label: trimmed, not empty, within `max_bytes`, without control or hidden
/// characters ([`crate::session::is_hidden_or_control`]).
pub(crate) fn name(
    field: &'static str,
    name: &str,
    max_bytes: usize,
) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > max_bytes
        || name.chars().any(crate::session::is_hidden_or_control)
    {
        return Err(EngineError::invalid(
            field,
            format!(
                "1 to {max_bytes} bytes of text without control characters, bidirectional \
                 controls or zero-width spaces"
            ),
        ));
    }
    Ok(name.to_string())
}

/// Free text (notes): within `max_bytes`, without NUL (no text column holds one); kept as
/// written, line breaks included.
pub(crate) fn notes(text: &str, max_bytes: usize) -> Result<String, EngineError> {
    if text.len() > max_bytes || text.contains('\0') {
        return Err(EngineError::invalid(
            "notes",
            format!("at most {max_bytes} bytes of text without NUL characters"),
        ));
    }
    Ok(text.to_string())
}

/// Checks a configuration body before it is saved: its size, and that the app can read it
/// (the INI rules of `configformat`). Refused with every problem by line; warnings alone (a
/// misspelled key, say) do not refuse it.
pub(crate) fn body(body: &str) -> Result<(), EngineError> {
    let report = check_configuration_body(body)?;
    if report.is_valid() {
        Ok(())
    } else {
        Err(EngineError::InvalidConfiguration {
            problems: report.problems,
        })
    }
}

/// What the admin API's check reports for a body, without saving anything: `Err` when it is
/// too large or holds a NUL (it could never be saved), otherwise every problem by line.
pub fn check_configuration_body(body: &str) -> Result<configformat::Report, EngineError> {
    if body.len() > MAX_CONFIGURATION_BODY_BYTES {
        return Err(EngineError::invalid(
            "body",
            format!(
                "at most {MAX_CONFIGURATION_BODY_BYTES} bytes, got {}",
                body.len()
            ),
        ));
    }
    // Stored and delivered byte for byte, but no text database column holds a NUL (PostgreSQL
    // refuses it), and no INI file the app reads has one.
    if body.contains('\0') {
        return Err(EngineError::invalid(
            "body",
            "must not contain NUL (U+0000) characters",
        ));
    }
    Ok(configformat::validate(body))
}

/// A future end date: `valid_until` must be after `now` when given.
pub(crate) fn future_end(
    valid_until: Option<crate::ids::Timestamp>,
    now: crate::ids::Timestamp,
) -> Result<(), EngineError> {
    if valid_until.is_some_and(|until| until <= now) {
        return Err(EngineError::invalid("valid_until", "must be in the future"));
    }
    Ok(())
}

/// A future time: `field` must be after `now` when given.
pub(crate) fn future_time(
    field: &'static str,
    at: Option<crate::ids::Timestamp>,
    now: crate::ids::Timestamp,
) -> Result<(), EngineError> {
    if at.is_some_and(|at| at <= now) {
        return Err(EngineError::invalid(field, "must be in the future"));
    }
    Ok(())
}

/// Durations in commands are kept as whole milliseconds, named `..._ms`: the form their
/// fingerprints have always hashed.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_refuses_what_hides_or_reorders_text_and_keeps_what_scripts_and_emoji_need() {
        for refused in [
            "Van\u{202E}21",
            "Van\u{200B}21",
            "\u{FEFF}Van",
            "Van \u{2066}21\u{2069}",
            "Van\u{200F}",
            "Van\u{0007}",
            "Van\n21",
        ] {
            assert!(name("name", refused, 100).is_err(), "{refused:?}");
        }
        for kept in [
            "Van 21",
            "Lieferwagen Müller",
            "می\u{200C}خواهم",
            "Family \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "שלום 21",
        ] {
            assert_eq!(name("name", kept, 100).as_deref(), Ok(kept), "{kept:?}");
        }
    }
}
