//! Reading a manifest start to finish: decode the bytes, refuse tab indentation and Unicode line
//! breaks, index the positions (big `images:` lists are read and checked in slices meanwhile,
//! see [`stream`]), then check what is left against serde_yaml's reading of it (see [`check`]).

use super::check::{Checker, Doc};
use super::index::Index;
use super::model::Manifest;
use super::raw;
use super::source::{self, Lines};
use super::stream;

/// Parses and validates manifest bytes (`file` labels the diagnostics).
pub fn check_bytes(bytes: &[u8], file: &str) -> Manifest {
    match source::decode(bytes) {
        Ok(text) => check_text(text, file),
        Err(problem) => {
            let mut checker = Checker::new(file);
            checker.fatal_at(problem.line, problem.column, "file", problem.message);
            checker.finish()
        }
    }
}

/// Parses and validates manifest text (`file` labels the diagnostics).
pub fn check_text(text: &str, file: &str) -> Manifest {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut checker = Checker::new(file);
    let mut problems = source::tab_indentation(text);
    problems.extend(source::unicode_line_breaks(text));
    if !problems.is_empty() {
        for problem in problems {
            checker.fatal_at(problem.line, problem.column, "yaml", problem.message);
        }
        return checker.finish();
    }
    let lines = Lines::new(text);
    let (built, streamed) = stream::index_and_read(text, &lines, file);
    let mut index = match built {
        Ok(index) => index,
        Err(err) => {
            checker.fatal_at(err.line, err.column, "yaml", err.message);
            return checker.finish();
        }
    };
    if let Some(streamed) = streamed {
        // The entries are checked; the rest is the document with the list cut out.
        if let (Some(root), Ok(top)) = (index.root(), raw::read(&streamed.top_text)) {
            let mut checker = streamed.checker;
            checker.top(&Doc { index: &index }, root, &top, true);
            return checker.finish();
        }
        // The entries were indexed apart; reading the whole document needs them back.
        index = match Index::build(text) {
            Ok(index) => index,
            Err(err) => {
                checker.fatal_at(err.line, err.column, "yaml", err.message);
                return checker.finish();
            }
        };
    }
    let Some(root) = index.root() else {
        checker.fatal_at(
            1,
            1,
            "manifest",
            "the manifest is empty (list the images to register under `images:`; see \
             examples/demo.yaml)"
                .to_string(),
        );
        return checker.finish();
    };
    match raw::read(text) {
        Ok(top) => checker.top(&Doc { index: &index }, root, &top, false),
        Err(err) => checker.fatal_at(err.line, err.column, "yaml", err.message),
    }
    checker.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "images:\n  - image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000001\n    \
                         image_url: bucket-a:disk.qcow2\n";

    /// Every diagnostic as `line:column message`.
    fn diagnostics(text: &str) -> Vec<String> {
        check_text(text, "m.yaml")
            .diagnostics
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    }

    #[test]
    fn unicode_line_breaks_are_refused_where_yaml_readers_would_disagree() {
        // Each of these was read one way by serde_yaml and another by the position index (or
        // got a syntax error on a line past the end of the file, as serde_yaml counts lines).
        let cases = [
            (format!("{ENTRY}settings:\u{2028}  region: x\n"), (4, 10)),
            (
                format!("{ENTRY}settings: {{region: x,\u{85}concurrency: 2}}\n"),
                (4, 22),
            ),
            (format!("{ENTRY}    name: a\u{2029}b\n"), (4, 12)),
            (format!("{ENTRY}# a comment\u{2028}images: []\n"), (4, 12)),
        ];
        for (text, (line, column)) in cases {
            let manifest = check_text(&text, "m.yaml");
            assert!(manifest.fatal, "{text:?}");
            let found = diagnostics(&text);
            assert_eq!(found.len(), 1, "{found:?}");
            let expected = format!("{line}:{column} an invisible ");
            assert!(found[0].starts_with(&expected), "{found:?}");
            assert!(found[0].contains("delete it"), "{found:?}");
            assert!(!found[0].contains("parser"), "{found:?}");
        }
    }

    #[test]
    fn escaped_line_separators_in_quotes_are_fine() {
        let text = format!("{ENTRY}    name: \"a\\Lb\\Nc\\Pd\"\n");
        let manifest = check_text(&text, "m.yaml");
        assert_eq!(diagnostics(&text), Vec::<String>::new());
        assert_eq!(
            manifest.images[0].name.as_deref(),
            Some("a\u{2028}b\u{85}c\u{2029}d")
        );
    }
}
