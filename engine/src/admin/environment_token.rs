//! How strong a token given in `PAIRD_OPERATOR_TOKEN` must be. A generated token is 256 random
//! bits; one chosen by a person is checked before it guards the server: long enough, made of
//! enough different characters, not a repeated pattern, and with an estimated entropy (from the
//! frequencies of its characters) that no guessing can cover.

use crate::error::EngineError;

/// The shortest token accepted.
pub const MIN_ENVIRONMENT_TOKEN_CHARS: usize = 32;
/// The fewest distinct characters accepted (a hex token of 32 random characters has 14 or so).
pub const MIN_DISTINCT_CHARS: usize = 10;
/// The least estimated entropy accepted, in bits.
pub const MIN_ESTIMATED_BITS: f64 = 100.0;

const HOW_TO_MAKE_ONE: &str = "make one with: openssl rand -hex 32";

/// Refuses a weak token, saying why and how to make a good one.
pub fn check_environment_token(token: &str) -> Result<(), EngineError> {
    let refuse = |why: String| {
        Err(EngineError::invalid(
            "PAIRD_OPERATOR_TOKEN",
            format!("{why}; {HOW_TO_MAKE_ONE}"),
        ))
    };
    let chars: Vec<char> = token.chars().collect();
    if chars.len() < MIN_ENVIRONMENT_TOKEN_CHARS {
        return refuse(format!(
            "too short: {} characters, at least {MIN_ENVIRONMENT_TOKEN_CHARS} are needed",
            chars.len()
        ));
    }
    if let Some(bad) = chars.iter().find(|c| c.is_whitespace() || c.is_control()) {
        return refuse(format!(
            "contains a space or control character ({:?})",
            bad.escape_debug().to_string()
        ));
    }
    let mut counts = std::collections::HashMap::<char, usize>::new();
    for &c in &chars {
        *counts.entry(c).or_default() += 1;
    }
    if counts.len() < MIN_DISTINCT_CHARS {
        return refuse(format!(
            "too predictable: only {} different characters, at least {MIN_DISTINCT_CHARS} are needed",
            counts.len()
        ));
    }
    if let Some(period) = (1..=chars.len() / 2).find(|&p| {
        chars.len().is_multiple_of(p) && chars.chunks(p).all(|chunk| chunk == &chars[..p])
    }) {
        return refuse(format!(
            "too predictable: a sequence of {period} characters repeated"
        ));
    }
    let total = chars.len() as f64;
    let bits: f64 = counts
        .values()
        .map(|&count| {
            let p = count as f64 / total;
            -(count as f64) * p.log2()
        })
        .sum();
    if bits < MIN_ESTIMATED_BITS {
        return refuse(format!(
            "too predictable: about {bits:.0} bits of entropy, at least {MIN_ESTIMATED_BITS:.0} are needed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(token: &str) -> String {
        match check_environment_token(token) {
            Err(EngineError::Invalid { field, message }) => {
                assert_eq!(field, "PAIRD_OPERATOR_TOKEN");
                assert!(message.contains("openssl rand -hex 32"), "{message}");
                message
            }
            other => panic!("{token:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn weak_tokens_are_refused_with_the_reason() {
        assert!(refused(&"a".repeat(16)).contains("too short"));
        assert!(refused(&"a".repeat(64)).contains("different characters"));
        assert!(refused("abcdefghij".repeat(4).as_str()).contains("repeated"));
        assert!(refused("0123456789abcdef 0123456789abcdef0").contains("space"));
        // Ten characters, but nearly all one of them.
        let lopsided = format!("{}{}", "x".repeat(60), "abcdefghi");
        assert!(refused(&lopsided).contains("entropy"));
    }

    #[test]
    fn random_tokens_are_accepted() {
        // `openssl rand -hex 32` and `openssl rand -base64 32` outputs.
        for token in [
            "9f2c4e81b07a3d5f6e1c28a94b7d0e35f1a6c9d2e8b4706153af92c7d1e08b6a",
            "q3Vn8ZkT1xR0yLm5Pw2bJc7Hs4Ud9Ae6Gf+Ki/No0Ql=",
            "pd_op_3Jx9Kq2Lw8Mv4Nr7Ts1Yb6Zc0Hd5Fg",
        ] {
            assert_eq!(check_environment_token(token), Ok(()), "{token}");
        }
    }
}
