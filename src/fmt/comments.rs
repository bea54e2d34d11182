//! Comments: the grammar skips them, so the formatter finds them again with a
//! small lexical scan that steps over string literals, and attaches each one
//! to a printed line.
//!
//! Pure: no I/O. The scan never fails; on text that does not parse it still
//! returns every `//` outside a string.

use crate::source::Span;

/// One `//` comment of a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// Where the comment starts (at `//`) and ends (before trailing whitespace).
    pub span: Span,
    /// From `//` to the end of the line, trailing whitespace removed.
    pub text: String,
    /// Code precedes the comment on its line: it trails that code.
    pub trailing: bool,
    /// A blank line separates the comment from the next comment or code.
    pub blank_after: bool,
}

/// Every `//` comment of `text`, in source order. `//` inside a string literal
/// is not a comment.
pub fn scan_comments(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_has_code = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => {
                line_has_code = false;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'"' => {
                line_has_code = true;
                i = skip_string(bytes, i);
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let eol = line_end(bytes, i);
                let raw = text.get(i..eol).unwrap_or_default();
                let body = raw.trim_end();
                let after = skip_space(bytes, eol);
                let newlines = bytes
                    .get(eol..after)
                    .map_or(0, |gap| gap.iter().filter(|&&c| c == b'\n').count());
                out.push(Comment {
                    span: Span::new(i, i + body.len()),
                    text: body.to_string(),
                    trailing: line_has_code,
                    blank_after: newlines >= 2 && after < bytes.len(),
                });
                i = eol;
            }
            _ => {
                line_has_code = true;
                i += 1;
            }
        }
    }
    out
}

/// The offset of the first token at or after `pos`: whitespace and comments
/// skipped. `text.len()` when there is none.
pub(super) fn next_token(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = pos;
    loop {
        i = skip_space(bytes, i);
        if bytes.get(i) == Some(&b'/') && bytes.get(i + 1) == Some(&b'/') {
            i = line_end(bytes, i);
        } else {
            return i.min(bytes.len());
        }
    }
}

/// The end of the one-byte token `byte` when it is the first token at or
/// after `pos` in `text`; else `pos`. Without the text, `pos`.
pub(super) fn end_of_token(text: Option<&str>, pos: usize, byte: u8) -> usize {
    text.map_or(pos, |text| {
        let at = next_token(text, pos);
        if text.as_bytes().get(at) == Some(&byte) {
            at + 1
        } else {
            pos
        }
    })
}

/// Past the string literal that opens at `start` (mirrors the grammar: a
/// backslash escapes any one character; a raw newline ends an unterminated
/// string).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// The offset of the `\n` that ends the line holding `i` (or the end of text).
fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b'\n'))
        .map_or(bytes.len(), |n| i + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_hide_slashes() {
        let cs = scan_comments("a \"x // y \\\" // z\" // real\n// own\n\n b");
        let texts: Vec<_> = cs.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["// real", "// own"]);
        assert!(cs[0].trailing && !cs[0].blank_after);
        assert!(!cs[1].trailing && cs[1].blank_after);
    }

    #[test]
    fn next_token_skips_comments() {
        let t = "x  // a {\n  // b\n  { y";
        assert_eq!(t.as_bytes()[next_token(t, 1)], b'{');
        assert_eq!(next_token("  // only", 0), 9);
    }

    #[test]
    fn trailing_whitespace_and_crlf() {
        let cs = scan_comments("a // t  \r\n\r\n// e\r\n");
        assert_eq!(cs[0].text, "// t");
        assert!(cs[0].blank_after);
        assert_eq!(cs[1].text, "// e");
        assert!(!cs[1].blank_after);
    }
}
