//! `imsreg report merge` as one call: read the shard reports, combine them
//! ([`crate::report::merge`]), write the combined report in every format asked for, and judge
//! it as a run of the whole manifest would be judged ([`super::outcome::verdict`]), so the
//! exit code means the same as `imsreg run`'s.

use std::path::{Path, PathBuf};

use crate::report::{self, Report, ReportError};

use super::outcome::{self, Ending, Verdict};
use super::prepare::{JobError, report_paths};

/// The merged report, where it was written, and its verdict.
#[derive(Debug)]
pub struct Merged {
    pub report: Report,
    /// The shard reports read.
    pub inputs: usize,
    pub written: Vec<PathBuf>,
    /// Why the merged report could not be written (the verdict then is not a success).
    pub report_error: Option<String>,
    pub verdict: Verdict,
}

/// Reads `inputs`, merges them and writes the result to `outputs` (each in the format its
/// extension names). Errors are the cases in which nothing was written: an input that cannot
/// be read or is no report, reports that do not belong together, or an output path that is
/// unusable or one of the inputs.
pub fn merge_reports(inputs: &[PathBuf], outputs: &[PathBuf]) -> Result<Merged, JobError> {
    if outputs.is_empty() {
        return Err(JobError::Reports(
            "give the merged report's path (--report OUT.json; repeatable, any report format)"
                .into(),
        ));
    }
    let outputs = report_paths(outputs)?;
    for output in &outputs {
        if let Some(input) = inputs.iter().find(|input| same_file(input, output)) {
            return Err(JobError::Reports(format!(
                "{} is one of the reports to merge; refusing to overwrite it (give another path)",
                input.display()
            )));
        }
    }
    let shards = inputs
        .iter()
        .map(|path| report::merge::read(path))
        .collect::<Result<Vec<_>, ReportError>>()
        .map_err(JobError::Merge)?;
    let count = shards.len();
    let merged = report::merge::merge(shards).map_err(JobError::Merge)?;
    let mut verdict = outcome::verdict(&merged.images, Ending::default());
    let (written, report_error) = match report::write_reports(&merged, &outputs) {
        Ok(()) => (outputs, None),
        Err(err) => {
            if verdict == Verdict::AllRegistered {
                verdict = Verdict::NotAllRegistered;
            }
            (Vec::new(), Some(err.to_string()))
        }
    };
    Ok(Merged {
        report: merged,
        inputs: count,
        written,
        report_error,
        verdict,
    })
}

/// Whether two paths name one existing file (through any link).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
