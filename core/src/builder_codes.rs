//! The `X-BUILDER-CODE` request header: the builder codes a submission is attributed to.
//!
//! Codes follow Base's builder-code format (`[a-z0-9_]`, 1–32 characters, e.g. `bc_b8nos5a8`), which is also what
//! the code registry mints, so a code we accept is one that can exist there. Case is not folded: `BC_X` is not a
//! Base code, and quietly lower-casing it would attribute revenue to a code the sender did not write. Every
//! accepted list also fits an ERC-8021 schema 0 suffix (5 × 32 bytes plus commas is well under 255).

use crate::workspace::shown;

/// The request header that carries builder codes.
pub const HEADER: &str = "X-BUILDER-CODE";

/// The most distinct codes one request may carry.
pub const MAX_CODES: usize = 5;

/// The longest code, in characters (all ASCII, so also bytes).
pub const MAX_CODE_LEN: usize = 32;

/// Why an `X-BUILDER-CODE` header is refused. `position` is the code's 1-based place in the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuilderCodeError {
    #[error("builder code #{position} is empty (codes are separated by single commas)")]
    Empty { position: usize },
    #[error(
        "builder code {} is {len} characters long; codes are 1–{MAX_CODE_LEN} characters",
        shown(.code)
    )]
    TooLong { position: usize, code: String, len: usize },
    #[error("builder code {} contains {found:?}; codes use only a-z, 0-9 and _", shown(.code))]
    BadCharacter { position: usize, code: String, found: char },
    #[error("{count} distinct builder codes given; at most {MAX_CODES} are allowed")]
    TooMany { count: usize },
}

/// Whether `code` is a well-formed builder code.
pub fn is_valid_code(code: &str) -> bool {
    check_code(1, code).is_ok()
}

fn check_code(position: usize, code: &str) -> Result<(), BuilderCodeError> {
    if code.is_empty() {
        return Err(BuilderCodeError::Empty { position });
    }
    // Characters before length: a too-long code of garbage is better reported as garbage.
    if let Some(found) = code.chars().find(|&c| !matches!(c, 'a'..='z' | '0'..='9' | '_')) {
        return Err(BuilderCodeError::BadCharacter { position, code: code.to_owned(), found });
    }
    let len = code.len();
    if len > MAX_CODE_LEN {
        return Err(BuilderCodeError::TooLong { position, code: code.to_owned(), len });
    }
    Ok(())
}

/// Parses an `X-BUILDER-CODE` value: comma-separated codes, whitespace around each trimmed, duplicates dropped
/// (first occurrence kept, so the order is the sender's), at most [`MAX_CODES`] distinct codes.
///
/// A value that is blank altogether carries no codes (`Ok(vec![])`), the same as an absent header, since some
/// clients send the header empty rather than leave it out; an empty item between commas is refused.
pub fn parse_header(value: &str) -> Result<Vec<String>, BuilderCodeError> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut codes: Vec<String> = Vec::new();
    for (index, item) in value.split(',').enumerate() {
        let code = item.trim();
        check_code(index + 1, code)?;
        if !codes.iter().any(|known| known == code) {
            codes.push(code.to_owned());
        }
    }
    if codes.len() > MAX_CODES {
        return Err(BuilderCodeError::TooMany { count: codes.len() });
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: &str) -> Vec<String> {
        parse_header(value).expect("valid header")
    }

    #[test]
    fn single_and_multiple_codes() {
        assert_eq!(ok("bc_b8nos5a8"), ["bc_b8nos5a8"]);
        assert_eq!(ok("baseapp,morpho"), ["baseapp", "morpho"]);
        assert_eq!(ok("a"), ["a"]);
        assert_eq!(ok("0_9"), ["0_9"]);
    }

    #[test]
    fn whitespace_around_items_is_trimmed() {
        assert_eq!(ok("  baseapp ,\tmorpho  "), ["baseapp", "morpho"]);
        assert_eq!(ok(" x , y ,z"), ["x", "y", "z"]);
    }

    #[test]
    fn blank_header_is_no_codes() {
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("   "), Vec::<String>::new());
    }

    #[test]
    fn duplicates_removed_keeping_order() {
        assert_eq!(ok("b,a,b,c,a"), ["b", "a", "c"]);
        // The limit counts distinct codes: six items, five codes.
        assert_eq!(ok("a,b,c,d,e,a"), ["a", "b", "c", "d", "e"]);
        assert_eq!(ok("a, a ,a"), ["a"]);
    }

    #[test]
    fn at_most_five_codes() {
        assert_eq!(ok("a,b,c,d,e").len(), 5);
        assert_eq!(parse_header("a,b,c,d,e,f"), Err(BuilderCodeError::TooMany { count: 6 }));
    }

    #[test]
    fn empty_items_refused() {
        assert_eq!(parse_header("a,,b"), Err(BuilderCodeError::Empty { position: 2 }));
        assert_eq!(parse_header("a,"), Err(BuilderCodeError::Empty { position: 2 }));
        assert_eq!(parse_header(",a"), Err(BuilderCodeError::Empty { position: 1 }));
        assert_eq!(parse_header("a, ,b"), Err(BuilderCodeError::Empty { position: 2 }));
        assert_eq!(parse_header(","), Err(BuilderCodeError::Empty { position: 1 }));
    }

    #[test]
    fn length_limit() {
        let max = "a".repeat(32);
        assert_eq!(ok(&max), std::slice::from_ref(&max));
        let over = "a".repeat(33);
        assert_eq!(
            parse_header(&format!("ok,{over}")),
            Err(BuilderCodeError::TooLong { position: 2, code: over, len: 33 })
        );
    }

    #[test]
    fn characters_outside_the_alphabet_refused() {
        for (code, found) in
            [("BaseApp", 'B'), ("app-name", '-'), ("a.b", '.'), ("a b", ' '), ("é", 'é'), ("a;b", ';'), ("a\0", '\0')]
        {
            assert_eq!(
                parse_header(code),
                Err(BuilderCodeError::BadCharacter { position: 1, code: code.into(), found }),
                "{code:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_code_and_the_rule() {
        let message = parse_header("good,Bad").map_err(|e| e.to_string());
        assert_eq!(message, Err("builder code \"Bad\" contains 'B'; codes use only a-z, 0-9 and _".into()));
        let message = parse_header(&"x".repeat(40)).map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err(format!("builder code \"{}\" is 40 characters long; codes are 1–32 characters", "x".repeat(40)))
        );
        let message = parse_header("a,,b").map_err(|e| e.to_string());
        assert_eq!(message, Err("builder code #2 is empty (codes are separated by single commas)".into()));
        let message = parse_header("a,b,c,d,e,f").map_err(|e| e.to_string());
        assert_eq!(message, Err("6 distinct builder codes given; at most 5 are allowed".into()));
        // A huge bad code is shown cut short, not echoed whole.
        let message = parse_header(&"X".repeat(10_000)).map_err(|e| e.to_string()).unwrap_err();
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn is_valid_code_matches_the_rules() {
        assert!(is_valid_code("bc_b8nos5a8"));
        assert!(!is_valid_code(""));
        assert!(!is_valid_code("A"));
        assert!(!is_valid_code(&"a".repeat(33)));
    }

    #[test]
    fn accepted_codes_always_fit_an_erc8021_suffix() {
        let codes = ok(&(0..5).map(|i| format!("{i}").repeat(32)).collect::<Vec<_>>().join(","));
        let attribution = crate::erc8021::Attribution::Schema0 { codes: codes.clone() };
        let suffix = crate::erc8021::encode(&attribution).expect("fits");
        assert_eq!(crate::erc8021::decode(&suffix), Some(attribution));
    }
}
