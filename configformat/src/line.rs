//! Classifying one line of a body, without judging names or values.
//!
//! The classification is kept apart from the checks so that every line is read by exactly one set
//! of rules, and so that the checks in `lib.rs` see borrowed slices of the body rather than copies.

/// The characters ignored at either end of a line and around names and values.
///
/// The spec names spaces and a trailing `\r`; tabs are accepted as well because they look like
/// spaces in every editor, and a user cannot see why a line with a stray tab would be refused.
/// Other Unicode white space is deliberately not trimmed: the app's reader is not known to ignore
/// it, so it stays visible to the name and value checks.
fn is_ignored_blank(character: char) -> bool {
    matches!(character, ' ' | '\t' | '\r')
}

/// Removes ignored blanks from both ends of `text`.
pub(crate) fn trim_blanks(text: &str) -> &str {
    text.trim_matches(is_ignored_blank)
}

/// What one line of a body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineKind<'body> {
    /// Nothing but ignored blanks.
    Blank,
    /// A comment: the first non-blank character is `#`.
    Comment,
    /// A line whose first non-blank character is `;`, which many INI dialects treat as a comment
    /// but this format does not.
    SemicolonComment,
    /// A section header: the first non-blank character is `[`.
    Section(SectionHeader<'body>),
    /// A line with an `=`, split at the first `=`, both sides trimmed.
    KeyValue {
        /// The text before the first `=`, which may be empty or not a valid key name.
        key: &'body str,
        /// The text after the first `=`, which may be empty.
        value: &'body str,
    },
    /// Anything else: text without `=` that is neither a comment nor a section header.
    Malformed {
        /// The line without its surrounding blanks, for the message.
        text: &'body str,
    },
}

/// A section header as written, including the ways it can be broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SectionHeader<'body> {
    /// The text between `[` and `]`, or between `[` and the end of the line when there is no `]`.
    /// It is not trimmed, so that `[ GLOBAL ]` is reported rather than silently accepted.
    pub(crate) name: &'body str,
    /// Whether the header has its closing `]`.
    pub(crate) is_closed: bool,
    /// Text after the closing `]`, if any; empty when there is none.
    pub(crate) text_after_bracket: &'body str,
}

/// Classifies one line; `line` must not contain `\n`.
pub(crate) fn classify(line: &str) -> LineKind<'_> {
    let content = trim_blanks(line);
    if content.is_empty() {
        return LineKind::Blank;
    }
    if content.starts_with('#') {
        return LineKind::Comment;
    }
    if content.starts_with(';') {
        return LineKind::SemicolonComment;
    }
    if let Some(after_open_bracket) = content.strip_prefix('[') {
        // The header is cut at the first `]` so that text after it is reported on its own,
        // rather than becoming part of an unreadable section name.
        let header = match after_open_bracket.split_once(']') {
            Some((name, text_after_bracket)) => SectionHeader {
                name,
                is_closed: true,
                text_after_bracket: trim_blanks(text_after_bracket),
            },
            None => SectionHeader {
                name: after_open_bracket,
                is_closed: false,
                text_after_bracket: "",
            },
        };
        return LineKind::Section(header);
    }
    match content.split_once('=') {
        Some((key, value)) => LineKind::KeyValue {
            key: trim_blanks(key),
            value: trim_blanks(value),
        },
        None => LineKind::Malformed { text: content },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_and_comments_are_recognised_after_leading_blanks() {
        assert_eq!(classify(""), LineKind::Blank);
        assert_eq!(classify(" \t\r"), LineKind::Blank);
        assert_eq!(classify("  # note"), LineKind::Comment);
        assert_eq!(classify("\t; note"), LineKind::SemicolonComment);
    }

    #[test]
    fn a_key_line_is_split_at_the_first_equals_sign() {
        assert_eq!(
            classify("  rest_url =  https://x/?a=b  \r"),
            LineKind::KeyValue {
                key: "rest_url",
                value: "https://x/?a=b"
            }
        );
        assert_eq!(
            classify("= 5"),
            LineKind::KeyValue {
                key: "",
                value: "5"
            }
        );
    }

    #[test]
    fn section_headers_keep_their_inner_spaces_and_report_what_follows() {
        assert_eq!(
            classify("[ GLOBAL ] x "),
            LineKind::Section(SectionHeader {
                name: " GLOBAL ",
                is_closed: true,
                text_after_bracket: "x",
            })
        );
        assert_eq!(
            classify("[GLOBAL"),
            LineKind::Section(SectionHeader {
                name: "GLOBAL",
                is_closed: false,
                text_after_bracket: "",
            })
        );
    }

    #[test]
    fn text_without_equals_sign_is_malformed() {
        assert_eq!(
            classify(" rest_url https://x "),
            LineKind::Malformed {
                text: "rest_url https://x"
            }
        );
    }
}
