//! How diagnostics look: `FILE:LINE:COL: error: <field>: <message>`, plain or with terminal
//! colours, and the JSON array CI annotations read. File, field and message may quote the
//! manifest (a key, a value, the file name): control characters in them are escaped, so one
//! diagnostic is always one line.

use std::fmt;

use anstyle::{AnsiColor, Style};

use super::model::{Diagnostic, Severity};
use crate::report::escape::printable;

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

impl fmt::Display for Diagnostic {
    /// The plain form: `FILE:LINE:COL: error: <field>: <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}: {}",
            printable(&self.file),
            self.line,
            self.column,
            self.severity,
            printable(&self.field),
            printable(&self.message)
        )
    }
}

/// The diagnostic with ANSI colours. Write it through `anstream`, which strips the colours
/// when the output is not a terminal.
pub struct Styled<'a>(pub &'a Diagnostic);

impl fmt::Display for Styled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let location = Style::new().bold();
        let severity = match d.severity {
            Severity::Error => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            Severity::Warning => Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
        };
        let field = Style::new().fg_color(Some(AnsiColor::Cyan.into()));
        write!(
            f,
            "{location}{}:{}:{}:{location:#} {severity}{}:{severity:#} {field}{}{field:#}: {}",
            printable(&d.file),
            d.line,
            d.column,
            d.severity,
            printable(&d.field),
            printable(&d.message)
        )
    }
}

/// The diagnostics as a JSON array of `{file, line, column, severity, field, message}`.
pub fn to_json(diagnostics: &[Diagnostic]) -> String {
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_string_pretty(diagnostics).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostic {
        Diagnostic {
            file: "m.yaml".into(),
            line: 4,
            column: 16,
            severity: Severity::Error,
            field: "images[0].image_url".into(),
            message: "bad (fix it)".into(),
        }
    }

    #[test]
    fn plain_and_styled_forms() {
        let plain = sample().to_string();
        assert_eq!(
            plain,
            "m.yaml:4:16: error: images[0].image_url: bad (fix it)"
        );
        let styled = Styled(&sample()).to_string();
        assert!(styled.contains("\u{1b}["));
        let stripped: String = anstream::adapter::strip_str(&styled).to_string();
        assert_eq!(stripped, plain);
    }

    #[test]
    fn a_diagnostic_is_one_line_whatever_it_quotes() {
        let mut forged = sample();
        forged.file = "m\n.yaml".into();
        forged.field = "images[0].a\u{1b}[31m".into();
        forged.message = "`x\nm.yaml:1:1: error: forged` is not a UUID".into();
        for text in [forged.to_string(), Styled(&forged).to_string()] {
            assert!(!text.contains('\n'), "{text}");
            let plain = anstream::adapter::strip_str(&text).to_string();
            assert!(plain.contains("m\\n.yaml:4:16"), "{plain}");
            assert!(plain.contains("\\u{1b}[31m"), "{plain}");
        }
    }

    #[test]
    fn json_has_the_ci_fields() {
        let json: serde_json::Value = serde_json::from_str(&to_json(&[sample()])).unwrap();
        assert_eq!(json[0]["line"], 4);
        assert_eq!(json[0]["severity"], "error");
        assert_eq!(json[0]["field"], "images[0].image_url");
    }
}
