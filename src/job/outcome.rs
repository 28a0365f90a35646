//! The end of a run: the report assembled from the engine's records and the manifest's invalid
//! entries (in manifest order), and the [`Verdict`] that sums it up (the binary maps it to an
//! exit code).

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::manifest::InvalidEntry;
use crate::report::{ImageOutcome, ImageRecord, Report, ReportSettings, ReportShard, Summary};
use crate::shard::Shard;

/// How the engine's run ended, beyond the per-image records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ending {
    /// SIGINT/SIGTERM stopped it.
    pub interrupted: bool,
    /// A 401 stopped it.
    pub auth_failed: bool,
    /// IMS could not be reached before anything was submitted.
    pub unreachable: bool,
}

/// What a job that got past preparation amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every image is registered or was already registered (or, for a dry run: the plan was
    /// made).
    AllRegistered,
    /// The run finished, but some image failed, is invalid, pending, cancelled or unsettled,
    /// or a report could not be written.
    NotAllRegistered,
    /// IMS could not be reached (or understood) before anything was submitted: nothing
    /// changed, nothing was recorded as final; the next run tries again.
    Unreachable,
    /// A 401 stopped the job before IMS accepted any registration: nothing changed in the
    /// cloud, and the fix is the credentials (a configuration error).
    CredentialsRejected,
    /// SIGINT/SIGTERM stopped it (the report is written first).
    Interrupted,
}

/// The verdict of a run that got as far as the engine: interrupted wins; a 401 before any
/// accepted registration is a credentials problem; success only when every image is
/// (already) registered.
pub fn verdict(records: &[ImageRecord], ending: Ending) -> Verdict {
    if ending.interrupted {
        return Verdict::Interrupted;
    }
    if ending.auth_failed && !records.iter().any(registration_accepted) {
        return Verdict::CredentialsRejected;
    }
    if ending.unreachable {
        return Verdict::Unreachable;
    }
    let summary = Summary::from_records(records);
    if summary.total > 0 && summary.all_succeeded() && !ending.auth_failed {
        Verdict::AllRegistered
    } else {
        Verdict::NotAllRegistered
    }
}

/// True when IMS accepted a registration for this image in this run (a job exists).
fn registration_accepted(record: &ImageRecord) -> bool {
    record.job_id.is_some() || record.status == ImageOutcome::Registered
}

/// The report line of a manifest entry that failed validation (`--skip-invalid`).
pub fn invalid_record(entry: &InvalidEntry) -> ImageRecord {
    ImageRecord {
        image_id: entry.image_id.clone(),
        image_url: entry.image_url.clone(),
        name: entry.name.clone(),
        format: None,
        status: ImageOutcome::Invalid,
        job_id: None,
        error_code: Some(INVALID_ENTRY_CODE.to_string()),
        error_message: Some(format!(
            "manifest line {}: {}",
            entry.line,
            entry.problems.join("; ")
        )),
        attempts: 0,
        submitted_at: None,
        finished_at: None,
        duration_s: None,
        size_bytes: None,
        created: false,
        line: Some(entry.line),
        region: None,
        project_id: None,
    }
}

/// `error_code` of invalid manifest entries, so report readers can filter them.
pub const INVALID_ENTRY_CODE: &str = "MANIFEST.INVALID";

/// Merges the records of the valid entries (one per entry, in manifest order; `valid_lines`
/// are their lines) with the invalid entries, ordered by their line in the manifest. The
/// records move: a large run holds no second list.
pub fn records_in_manifest_order(
    valid_lines: &[usize],
    valid_records: Vec<ImageRecord>,
    invalid: &[InvalidEntry],
) -> Vec<ImageRecord> {
    debug_assert_eq!(
        valid_lines.len(),
        valid_records.len(),
        "one record per valid entry"
    );
    let mut valid_records = valid_records;
    for (record, line) in valid_records.iter_mut().zip(valid_lines) {
        record.line = Some(*line);
    }
    if invalid.is_empty() && valid_lines.is_sorted() {
        return valid_records;
    }
    let in_line_order = valid_lines.is_sorted() && invalid.is_sorted_by_key(|entry| entry.line);
    if !in_line_order {
        let mut lines: Vec<(usize, ImageRecord)> = valid_lines
            .iter()
            .copied()
            .zip(valid_records)
            .chain(
                invalid
                    .iter()
                    .map(|entry| (entry.line, invalid_record(entry))),
            )
            .collect();
        lines.sort_by_key(|(line, _)| *line);
        return lines.into_iter().map(|(_, record)| record).collect();
    }
    let mut valid = valid_lines.iter().copied().zip(valid_records).peekable();
    let mut invalid = invalid.iter().peekable();
    let mut merged = Vec::with_capacity(valid.len() + invalid.len());
    loop {
        // Both lists are in line order; on a tie the valid entry comes first (a stable sort).
        let take_invalid = match (valid.peek(), invalid.peek()) {
            (Some((line, _)), Some(entry)) => entry.line < *line,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if take_invalid {
            if let Some(entry) = invalid.next() {
                merged.push(invalid_record(entry));
            }
        } else if let Some((_, record)) = valid.next() {
            merged.push(record);
        } else {
            break;
        }
    }
    merged
}

/// Which manifest, and which part of it, a report covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// SHA-256 of the manifest file's bytes.
    pub manifest_sha256: Option<String>,
    /// `--shard K/N`; `None` for the whole manifest.
    pub shard: Option<Shard>,
}

/// Assembles the report.
pub fn build_report(
    manifest: &Path,
    coverage: Coverage,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    settings: ReportSettings,
    images: Vec<ImageRecord>,
) -> Report {
    Report {
        imsreg_version: crate::VERSION.to_string(),
        manifest: manifest.display().to_string(),
        manifest_sha256: coverage.manifest_sha256,
        shard: coverage.shard.map(ReportShard::from),
        started_at,
        finished_at,
        settings,
        summary: Summary::from_records(&images),
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ImageEntry, ImageFormat, ImageUrl};

    fn record(id: &str, status: ImageOutcome, job: Option<&str>) -> ImageRecord {
        ImageRecord {
            image_id: Some(id.into()),
            image_url: None,
            name: None,
            format: None,
            status,
            job_id: job.map(String::from),
            error_code: None,
            error_message: None,
            attempts: u32::from(job.is_some()),
            submitted_at: None,
            finished_at: None,
            duration_s: None,
            size_bytes: None,
            created: false,
            line: None,
            region: None,
            project_id: None,
        }
    }

    fn entry(id: &str, line: usize) -> ImageEntry {
        ImageEntry {
            image_id: crate::ids::ImageId::named(id),
            image_url: ImageUrl {
                bucket: "b".into(),
                object: "o.qcow2".into(),
            },
            name: None,
            format: ImageFormat::Qcow2,
            line,
        }
    }

    #[test]
    fn all_registered_or_already_registered_is_success() {
        let records = [
            record("a", ImageOutcome::Registered, Some("j")),
            record("b", ImageOutcome::AlreadyRegistered, None),
        ];
        assert_eq!(verdict(&records, Ending::default()), Verdict::AllRegistered);
    }

    #[test]
    fn any_failed_pending_invalid_or_cancelled_is_one() {
        for bad in [
            ImageOutcome::Failed,
            ImageOutcome::Pending,
            ImageOutcome::Invalid,
            ImageOutcome::Cancelled,
            ImageOutcome::Unreachable,
        ] {
            let records = [
                record("a", ImageOutcome::Registered, Some("j")),
                record("b", bad, None),
            ];
            assert_eq!(
                verdict(&records, Ending::default()),
                Verdict::NotAllRegistered,
                "{bad}"
            );
        }
    }

    #[test]
    fn interruption_wins_over_everything() {
        let records = [record("a", ImageOutcome::Registered, Some("j"))];
        let ending = Ending {
            interrupted: true,
            auth_failed: true,
            unreachable: true,
        };
        assert_eq!(verdict(&records, ending), Verdict::Interrupted);
    }

    #[test]
    fn auth_failure_before_any_accepted_registration_is_a_configuration_error() {
        let ending = Ending {
            auth_failed: true,
            ..Ending::default()
        };
        let nothing_accepted = [
            record("a", ImageOutcome::Cancelled, None),
            record("b", ImageOutcome::AlreadyRegistered, None),
        ];
        assert_eq!(
            verdict(&nothing_accepted, ending),
            Verdict::CredentialsRejected
        );
        let one_accepted = [
            record("a", ImageOutcome::Pending, Some("j")),
            record("b", ImageOutcome::Cancelled, None),
        ];
        assert_eq!(verdict(&one_accepted, ending), Verdict::NotAllRegistered);
    }

    #[test]
    fn invalid_entries_take_their_manifest_position() {
        let valid = [entry("a", 3), entry("c", 9)];
        let invalid = [InvalidEntry {
            line: 6,
            image_id: Some("not-a-uuid".into()),
            image_url: Some("bad url".into()),
            name: None,
            problems: vec!["image_id: not a UUID".into(), "image_url: space".into()],
        }];
        let lines: Vec<usize> = valid.iter().map(|entry| entry.line).collect();
        let records = records_in_manifest_order(
            &lines,
            vec![
                record("a", ImageOutcome::Registered, Some("j1")),
                record("c", ImageOutcome::Failed, Some("j2")),
            ],
            &invalid,
        );
        let ids: Vec<_> = records.iter().map(|r| r.image_id.as_deref()).collect();
        assert_eq!(ids, [Some("a"), Some("not-a-uuid"), Some("c")]);
        let bad = &records[1];
        assert_eq!(bad.status, ImageOutcome::Invalid);
        assert_eq!(bad.error_code.as_deref(), Some(INVALID_ENTRY_CODE));
        let message = bad.error_message.as_deref().unwrap();
        assert!(message.contains("line 6") && message.contains("not a UUID; image_url: space"));
        let summary = Summary::from_records(&records);
        assert_eq!((summary.total, summary.invalid), (3, 1));
    }
}
