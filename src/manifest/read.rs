//! Reading a manifest start to finish: decode the bytes, refuse tab indentation, index the
//! positions (big `images:` lists are read and checked in slices meanwhile, see [`stream`]),
//! then check what is left against serde_yaml's reading of it (see [`check`]).

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
    let tabs = source::tab_indentation(text);
    if !tabs.is_empty() {
        for tab in tabs {
            checker.fatal_at(tab.line, tab.column, "yaml", tab.message);
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
