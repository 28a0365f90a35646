//! Text from outside (a manifest `name`, an object key, a server's error message, a journal
//! line) made safe to print. Printed as it came, a newline in it forges a line of the summary
//! or of a log ("registered" where nothing was), an escape sequence repaints the terminal, a
//! bidirectional override reorders what a reviewer reads, and a cell starting with `=` runs as
//! a formula when a CSV report is opened in a spreadsheet.
//!
//! [`printable`] writes such characters as visible escapes (`\n`, `\u{1b}`) for every place
//! text is printed for people (summary, diagnostics, logs, Markdown, the dry-run plan);
//! [`csv_cell`] neutralises formula cells as OWASP advises. JSON, YAML and XML reports carry
//! the text as data, escaped by their own encoders.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal or a log as it is: control characters (C0, DEL, C1,
/// including newline and tab), the Unicode line and paragraph separators, and the
/// bidirectional formatting characters.
fn unsafe_to_print(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'
                ..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every character unsafe to print written as an escape: `\n`, `\r`, `\t`,
/// otherwise `\u{…}`. Borrowed when nothing needed escaping (the common case). Backslashes are
/// kept: a literal `\n` in the text cannot break a line either.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_to_print) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_to_print(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell that no spreadsheet runs as a formula: a cell starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'`, as OWASP advises (the CSV writer then quotes
/// what needs quoting).
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(printable("web-01 (ok)"), Cow::Borrowed(_)));
        assert!(matches!(printable("образ.vmdk"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nregistered b\r\tc"), "a\\nregistered b\\r\\tc");
        assert_eq!(
            printable("\u{1b}[2Jx\u{7f}\u{85}"),
            "\\u{1b}[2Jx\\u{7f}\\u{85}"
        );
        assert_eq!(printable("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(printable("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
        assert_eq!(printable("C:\\n"), "C:\\n", "backslashes are kept");
        assert!(!printable("x\ny").contains('\n'));
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for formula in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            let cell = csv_cell(formula);
            assert!(
                cell.starts_with('\'') && cell.ends_with(&formula[1..]),
                "{cell}"
            );
        }
        assert!(matches!(csv_cell("web-01"), Cow::Borrowed("web-01")));
        assert_eq!(csv_cell("a=b"), "a=b");
        assert_eq!(csv_cell(""), "");
    }
}
