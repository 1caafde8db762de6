//! Text that comes from a guest (its name, its errors, its metadata), made
//! safe to print, log or send: cut to a sane length, and every control
//! character escaped, so a guest can neither flood a terminal or a log
//! with a 100 MB message nor forge lines ("proof PASSED") or retitle a
//! window with escape sequences.

/// Most characters of guest text kept.
pub const MAX_CHARS: usize = 300;

/// `s` cut to `MAX_CHARS` characters (saying how much was cut) with control
/// characters (newlines, escapes, bidi overrides...) written as `\u{..}`.
pub fn guest_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_CHARS * 2));
    let mut kept = 0usize;
    for c in s.chars() {
        if kept == MAX_CHARS {
            let rest = s.chars().count() - kept;
            out.push_str(&format!("… ({rest} more characters cut)"));
            return out;
        }
        if c.is_control() || is_format_trick(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        kept += 1;
    }
    out
}

/// Characters that reorder or hide text on a terminal without being
/// control characters (bidirectional overrides and isolates, zero-width).
fn is_format_trick(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cuts() {
        assert_eq!(guest_text("plain words"), "plain words");
        assert_eq!(guest_text("a\nproof PASSED\x1b]0;owned\x07"), "a\\u{a}proof PASSED\\u{1b}]0;owned\\u{7}");
        assert_eq!(guest_text("x\u{202e}y"), "x\\u{202e}y");
        let long = "z".repeat(100_000);
        let cut = guest_text(&long);
        assert!(cut.len() < 400, "{}", cut.len());
        assert!(cut.ends_with("(99700 more characters cut)"), "{cut}");
    }
}
