//! The manifest text before any YAML parsing: UTF-8 decoding, tab-indentation checks and a
//! table of line starts that turns parser positions (line, character column) into byte offsets.
//!
//! These checks run first because YAML readers give vague messages for these mistakes, or read
//! the file in different ways (the Unicode line breaks).

/// A problem found in the raw text, at a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Decodes the manifest bytes, dropping a UTF-8 byte-order mark. A non-UTF-8 file is located at
/// its first invalid byte.
pub fn decode(bytes: &[u8]) -> Result<&str, TextProblem> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            // The prefix is valid UTF-8 by construction, so this cannot fail.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let (line, column) = position_after(prefix);
            let bad = bytes[err.valid_up_to()];
            Err(TextProblem {
                line,
                column,
                message: format!(
                    "the file is not valid UTF-8: byte 0x{bad:02X} here (save the manifest as UTF-8)"
                ),
            })
        }
    }
}

/// The 1-based line and column just after `prefix`.
fn position_after(prefix: &str) -> (usize, usize) {
    advance((1, 1), prefix)
}

/// The position after `text`, which starts at (`line`, `column`).
fn advance((mut line, mut column): (usize, usize), text: &str) -> (usize, usize) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                column = 1;
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
    }
    (line, column)
}

/// Every line whose indentation contains a tab (YAML indents with spaces only). Lines that are
/// blank or only a comment are ignored: YAML allows tabs there.
pub fn tab_indentation(text: &str) -> Vec<TextProblem> {
    let mut problems = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let indent_len = line.len() - line.trim_start_matches([' ', '\t']).len();
        let (indent, rest) = line.split_at(indent_len);
        let rest = rest.trim_end_matches('\r');
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if let Some(tab) = indent.find('\t') {
            problems.push(TextProblem {
                line: index + 1,
                column: tab + 1,
                message: "tab character in the indentation (YAML indents with spaces only; \
                          replace the tab with spaces)"
                    .to_string(),
            });
        }
    }
    problems
}

/// Characters that YAML 1.1 counts as line breaks and YAML 1.2 does not, with what to call them.
const UNICODE_LINE_BREAKS: [(char, &str); 3] = [
    ('\u{85}', "next-line character (NEL, U+0085)"),
    ('\u{2028}', "Unicode line separator (U+2028)"),
    ('\u{2029}', "Unicode paragraph separator (U+2029)"),
];

/// Every NEL, line separator or paragraph separator in the text. They are invisible in most
/// editors, and YAML readers disagree on whether each ends a line, so a file holding one means
/// different things to different readers. Positions count lines as editors do (`\n`, `\r`).
pub fn unicode_line_breaks(text: &str) -> Vec<TextProblem> {
    if text.is_ascii() {
        return Vec::new();
    }
    let breaks = UNICODE_LINE_BREAKS.map(|(c, _)| c);
    let mut problems = Vec::new();
    let (mut position, mut scanned) = ((1, 1), 0);
    for (offset, found) in text.match_indices(breaks) {
        position = advance(position, &text[scanned..offset]);
        scanned = offset;
        let name = UNICODE_LINE_BREAKS
            .iter()
            .find(|(c, _)| found.starts_with(*c))
            .map_or("Unicode line break", |(_, name)| name);
        problems.push(TextProblem {
            line: position.0,
            column: position.1,
            message: format!(
                "an invisible {name} is here (often pasted from a word processor or a web \
                 page); YAML readers disagree on whether it ends the line, so the file could be \
                 read in two ways (delete it, or replace it with an ordinary line break)"
            ),
        });
    }
    problems
}

/// Byte offsets of line starts, counting line breaks the way YAML does (`\n`, `\r\n`, `\r`).
pub struct Lines<'a> {
    text: &'a str,
    /// `starts[i]` is the byte offset of 1-based line `i + 1`.
    starts: Vec<u32>,
    ascii: bool,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0u32];
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => starts.push((i + 1) as u32),
                b'\r' => {
                    if bytes.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                    starts.push((i + 1) as u32);
                }
                _ => {}
            }
            i += 1;
        }
        Lines {
            text,
            starts,
            ascii: text.is_ascii(),
        }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Byte offset of the start of a 1-based line; the end of the text past the last line.
    pub fn line_start(&self, line: usize) -> usize {
        match line.checked_sub(1).and_then(|i| self.starts.get(i)) {
            Some(&start) => start as usize,
            None => self.text.len(),
        }
    }

    /// Byte offset of a 1-based line and 0-based character column.
    pub fn offset(&self, line: usize, char_col: usize) -> usize {
        let start = self.line_start(line);
        if self.ascii {
            return (start + char_col).min(self.text.len());
        }
        let rest = &self.text[start..];
        match rest.char_indices().nth(char_col) {
            Some((i, _)) => start + i,
            None => self.text.len(),
        }
    }

    /// The 1-based line holding a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&(offset as u32)) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_locates_the_first_invalid_byte() {
        let err = decode(b"images:\n  - x\xFFy\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        assert!(err.message.contains("0xFF"), "{}", err.message);
    }

    #[test]
    fn decode_drops_a_bom() {
        assert_eq!(decode(b"\xEF\xBB\xBFa: 1").unwrap(), "a: 1");
    }

    #[test]
    fn tabs_in_indentation_are_found_but_not_in_comments_or_values() {
        let text = "a:\n\t- b\n  - c\td\n\t# note\n \t\n";
        let problems = tab_indentation(text);
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].column), (2, 1));
    }

    #[test]
    fn unicode_line_breaks_are_located_as_editors_count_lines() {
        assert!(unicode_line_breaks("a: 1\nb: é\n").is_empty());
        let text = "a: x\u{2028}y\r\nb: é\u{85}\n# c\u{2029}\n";
        let problems = unicode_line_breaks(text);
        let found: Vec<(usize, usize, bool)> = problems
            .iter()
            .map(|p| (p.line, p.column, p.message.contains("delete it")))
            .collect();
        assert_eq!(found, [(1, 5, true), (2, 5, true), (3, 4, true)]);
        assert!(problems[0].message.contains("U+2028"));
        assert!(problems[1].message.contains("U+0085"));
        assert!(problems[2].message.contains("U+2029"));
    }

    #[test]
    fn lines_map_positions_to_offsets() {
        let lines = Lines::new("ab\r\ncé\rx\n");
        assert_eq!(lines.line_start(2), 4);
        assert_eq!(lines.line_start(3), 8);
        assert_eq!(lines.offset(2, 2), 7);
        assert_eq!(lines.line_start(9), 10);
        assert_eq!(lines.line_of(5), 2);
        assert_eq!(lines.line_of(8), 3);
    }
}
