//! Text from a plugin, made safe to store and print: control characters escaped (an ESC sequence would clear an
//! operator's terminal, a newline would forge a row of `ballast status`), and the length capped.

/// `text` with every control character written as an escape (`\n`, `\t`, `\u{1b}`), cut to at most `max_bytes`
/// bytes at a character boundary (a cut ends in `…`).
pub(crate) fn escaped(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        let start = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_bidi_override(c) => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        if out.len() > max_bytes {
            out.truncate(start);
            let ellipsis = '…';
            while out.len() + ellipsis.len_utf8() > max_bytes && !out.is_empty() {
                out.pop();
            }
            if out.len() + ellipsis.len_utf8() <= max_bytes {
                out.push(ellipsis);
            }
            break;
        }
    }
    out
}

/// Whether [`escaped`] would change `text` (other than cutting it): the common case, plain text, costs one scan.
pub(crate) fn needs_escaping(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == 0x7f)
        || (!text.is_ascii() && text.chars().any(|c| c.is_control() || is_bidi_override(c)))
}

/// Characters that reorder how a line is displayed (the "Trojan Source" ones): as misleading as a control character.
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_length_is_capped() {
        assert_eq!(escaped("\u{1b}[2Jhi\nthere\t!", 100), "\\u{1b}[2Jhi\\nthere\\t!");
        assert_eq!(escaped("plain text", 100), "plain text");
        assert_eq!(escaped("\u{202e}evil", 100), "\\u{202e}evil");
        let cut = escaped(&"é".repeat(100), 11);
        assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
        let cut = escaped("\u{1b}\u{1b}", 7);
        assert!(cut.len() <= 7 && !cut.contains('\u{1b}'), "{cut}");
        assert_eq!(escaped("a\u{7}b\u{85}", 100), "a\\u{7}b\\u{85}");
    }
}
