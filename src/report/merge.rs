//! `imsreg report merge`: the reports of the shards of one manifest (`imsreg run --shard K/N`)
//! combined into the report a run of the whole manifest would have written.
//!
//! Nothing is combined unless it belongs together: every report names the same manifest by
//! its digest (`manifest_sha256`) and the same split (scheme and N), every shard 1..N is there
//! exactly once, and no manifest line is in two reports. A report without a shard is the whole
//! manifest, shard 1/1. The records are put back in manifest order by their line and the
//! summary is counted again; the settings are the first report's, with the rates,
//! `max_active_jobs` and `concurrency` summed over the shards (what the whole run used).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::error::ReportError;
use super::format::ReportFormat;
use super::model::{Report, ReportShard, Summary};

/// A report read for merging, with the file it came from (for the messages).
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub path: PathBuf,
    pub report: Report,
}

/// Reads a report written by `imsreg run` (JSON, or YAML by its extension).
pub fn read(path: &Path) -> Result<ShardReport, ReportError> {
    let not_a_report = |detail: String| ReportError::NotAReport {
        path: path.to_path_buf(),
        detail,
    };
    let format = ReportFormat::from_path(path)?;
    if !matches!(format, ReportFormat::Json | ReportFormat::Yaml) {
        return Err(not_a_report(
            "only the JSON (or YAML) reports can be merged; write one with --report PATH.json"
                .into(),
        ));
    }
    let bytes = crate::input::read("report", path, crate::input::MAX_INPUT_BYTES)
        .map_err(|err| ReportError::Unreadable(err.to_string()))?;
    let report = match format {
        ReportFormat::Yaml => {
            serde_yaml::from_slice(&bytes).map_err(|err| not_a_report(err.to_string()))?
        }
        _ => serde_json::from_slice(&bytes).map_err(|err| not_a_report(err.to_string()))?,
    };
    Ok(ShardReport {
        path: path.to_path_buf(),
        report,
    })
}

/// The whole-manifest shard of a report without one.
fn shard_of(report: &Report) -> ReportShard {
    report.shard.clone().unwrap_or(ReportShard {
        index: 1,
        total: 1,
        scheme: crate::shard::SCHEME.to_string(),
    })
}

fn refused(message: String) -> ReportError {
    ReportError::Merge(message)
}

/// Checks that the reports are the shards of one manifest, each once, and combines them.
pub fn merge(reports: Vec<ShardReport>) -> Result<Report, ReportError> {
    let Some(first) = reports.first() else {
        return Err(refused("no reports to merge".into()));
    };
    let shown = |path: &Path| path.display().to_string();

    // One manifest: the same digest in every report.
    let digest_of = |shard: &ShardReport| {
        shard.report.manifest_sha256.clone().ok_or_else(|| {
            refused(format!(
                "{} has no manifest_sha256 (written by an older imsreg?): run that shard again \
                 with this version",
                shown(&shard.path)
            ))
        })
    };
    let digest = digest_of(first)?;
    for other in &reports[1..] {
        let theirs = digest_of(other)?;
        if theirs != digest {
            return Err(refused(format!(
                "{} and {} come from different manifests (manifest_sha256 {} and {}): \
                 every shard must run the same manifest file",
                shown(&first.path),
                shown(&other.path),
                &digest[..digest.len().min(12)],
                &theirs[..theirs.len().min(12)],
            )));
        }
    }

    // One split: the same scheme and N, every shard 1..N exactly once.
    let split = shard_of(&first.report);
    let mut holders: BTreeMap<u32, Vec<&Path>> = BTreeMap::new();
    for shard in &reports {
        let theirs = shard_of(&shard.report);
        if theirs.scheme != split.scheme {
            return Err(refused(format!(
                "{} splits by {} but {} by {}: the shards of one run share one scheme",
                shown(&first.path),
                split.scheme,
                shown(&shard.path),
                theirs.scheme
            )));
        }
        if theirs.total != split.total {
            return Err(refused(format!(
                "{} is shard {}/{} but {} is shard {}/{}: the shards of one run share one N",
                shown(&first.path),
                split.index,
                split.total,
                shown(&shard.path),
                theirs.index,
                theirs.total
            )));
        }
        if theirs.index == 0 || theirs.index > theirs.total {
            return Err(refused(format!(
                "{} claims shard {}/{}, which does not exist",
                shown(&shard.path),
                theirs.index,
                theirs.total
            )));
        }
        holders.entry(theirs.index).or_default().push(&shard.path);
    }
    let total = split.total;
    let missing: Vec<String> = (1..=total)
        .filter(|index| !holders.contains_key(index))
        .map(|index| format!("{index}/{total}"))
        .collect();
    let duplicated: Vec<String> = holders
        .iter()
        .filter(|(_, paths)| paths.len() > 1)
        .map(|(index, paths)| {
            let files: Vec<String> = paths.iter().map(|p| shown(p)).collect();
            format!(
                "shard {index}/{total} is there {} times ({})",
                paths.len(),
                files.join(", ")
            )
        })
        .collect();
    if !missing.is_empty() || !duplicated.is_empty() {
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "missing shard report(s): {} (every shard 1/{total} to {total}/{total} is needed once)",
                missing.join(", ")
            ));
        }
        problems.extend(duplicated);
        return Err(refused(problems.join("; ")));
    }

    // The records, back in manifest order; no line may be in two reports.
    let mut seen: HashMap<usize, &Path> = HashMap::new();
    for shard in &reports {
        for line in shard.report.images.iter().filter_map(|record| record.line) {
            if let Some(earlier) = seen.insert(line, &shard.path)
                && earlier != shard.path.as_path()
            {
                return Err(refused(format!(
                    "the entry at manifest line {line} is in both {} and {}: these reports \
                     were not split from one manifest the same way",
                    shown(earlier),
                    shown(&shard.path)
                )));
            }
        }
    }
    let manifest = first.report.manifest.clone();
    let mut settings = first.report.settings.clone();
    let started_at = reports.iter().map(|s| s.report.started_at).min();
    let finished_at = reports.iter().map(|s| s.report.finished_at).max();
    let (mut concurrency, mut max_active_jobs, mut submit_rate, mut query_rate) = (0, 0, 0.0, 0.0);
    for shard in &reports {
        let theirs = &shard.report.settings;
        concurrency += theirs.concurrency;
        max_active_jobs += theirs.max_active_jobs;
        submit_rate += theirs.submit_rate;
        query_rate += theirs.query_rate;
    }
    settings.concurrency = concurrency;
    settings.max_active_jobs = max_active_jobs;
    settings.submit_rate = submit_rate;
    settings.query_rate = query_rate;
    let mut images: Vec<_> = reports
        .into_iter()
        .flat_map(|shard| shard.report.images)
        .collect();
    // Stable: records without a line (none are written so) keep their report's order, last.
    images.sort_by_key(|record| record.line.unwrap_or(usize::MAX));
    Ok(Report {
        imsreg_version: crate::VERSION.to_string(),
        manifest,
        manifest_sha256: Some(digest),
        shard: None,
        started_at: started_at.unwrap_or_default(),
        finished_at: finished_at.unwrap_or_default(),
        settings,
        summary: Summary::from_records(&images),
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ImageOutcome, ImageRecord, ReportSettings};
    use chrono::{TimeZone, Utc};

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn record(line: usize, status: ImageOutcome) -> ImageRecord {
        ImageRecord {
            image_id: Some(format!("id-{line}")),
            image_url: None,
            name: None,
            format: None,
            status,
            job_id: None,
            error_code: None,
            error_message: None,
            attempts: 0,
            submitted_at: None,
            finished_at: None,
            duration_s: None,
            size_bytes: Some(10),
            line: Some(line),
            created: false,
            region: None,
            project_id: None,
        }
    }

    fn shard(name: &str, index: u32, total: u32, lines: &[usize]) -> ShardReport {
        let images: Vec<_> = lines
            .iter()
            .map(|&line| record(line, ImageOutcome::Registered))
            .collect();
        ShardReport {
            path: PathBuf::from(name),
            report: Report {
                imsreg_version: "0".into(),
                manifest: "m.yaml".into(),
                manifest_sha256: Some(DIGEST.into()),
                shard: Some(ReportShard {
                    index,
                    total,
                    scheme: "hash-v1".into(),
                }),
                started_at: Utc.with_ymd_and_hms(2026, 1, 1, 10, index, 0).unwrap(),
                finished_at: Utc.with_ymd_and_hms(2026, 1, 1, 11, index, 0).unwrap(),
                settings: ReportSettings {
                    endpoint: "http://127.0.0.1:1".into(),
                    region: None,
                    project_id: None,
                    concurrency: 2,
                    max_active_jobs: 5,
                    submit_rate: 0.5,
                    query_rate: 2.5,
                    poll_interval_s: 10.0,
                    job_timeout_s: 7200.0,
                    dry_run: false,
                    regions: Vec::new(),
                },
                summary: Summary::from_records(&images),
                images,
            },
        }
    }

    fn message(result: Result<Report, ReportError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn shards_merge_in_manifest_order_with_summed_quota() {
        let merged = merge(vec![
            shard("b.json", 2, 3, &[4, 9]),
            shard("a.json", 1, 3, &[3, 7]),
            shard("c.json", 3, 3, &[5]),
        ])
        .unwrap();
        let lines: Vec<_> = merged.images.iter().map(|r| r.line.unwrap()).collect();
        assert_eq!(lines, [3, 4, 5, 7, 9]);
        assert_eq!(merged.summary.total, 5);
        assert_eq!(merged.summary.registered, 5);
        assert_eq!(merged.summary.total_bytes, 50);
        assert_eq!(
            merged.shard, None,
            "the merged report is the whole manifest"
        );
        assert_eq!(merged.manifest_sha256.as_deref(), Some(DIGEST));
        assert_eq!(merged.settings.max_active_jobs, 15);
        assert_eq!(merged.settings.concurrency, 6);
        assert_eq!(merged.settings.submit_rate, 1.5);
        assert_eq!(
            merged.started_at,
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 1, 0).unwrap()
        );
        assert_eq!(
            merged.finished_at,
            Utc.with_ymd_and_hms(2026, 1, 1, 11, 3, 0).unwrap()
        );
    }

    #[test]
    fn an_unsharded_report_merges_alone() {
        let mut whole = shard("whole.json", 1, 1, &[3, 4]);
        whole.report.shard = None;
        let merged = merge(vec![whole.clone()]).unwrap();
        assert_eq!(merged.images, whole.report.images);
        let err = message(merge(vec![whole, shard("a.json", 1, 2, &[5])]));
        assert!(err.contains("1/1") && err.contains("1/2"), "{err}");
    }

    #[test]
    fn different_manifests_are_refused_naming_both_files() {
        let mut other = shard("b.json", 2, 2, &[4]);
        other.report.manifest_sha256 = Some("0".repeat(64));
        let err = message(merge(vec![shard("a.json", 1, 2, &[3]), other]));
        assert!(
            err.contains("a.json") && err.contains("b.json") && err.contains("different manifests"),
            "{err}"
        );
        let mut old = shard("old.json", 2, 2, &[4]);
        old.report.manifest_sha256 = None;
        let err = message(merge(vec![shard("a.json", 1, 2, &[3]), old]));
        assert!(
            err.contains("old.json") && err.contains("manifest_sha256"),
            "{err}"
        );
    }

    #[test]
    fn missing_and_duplicate_shards_are_named() {
        let err = message(merge(vec![
            shard("a.json", 1, 4, &[3]),
            shard("c.json", 3, 4, &[5]),
        ]));
        assert!(err.contains("missing") && err.contains("2/4, 4/4"), "{err}");
        let err = message(merge(vec![
            shard("a.json", 1, 2, &[3]),
            shard("b.json", 2, 2, &[4]),
            shard("b-again.json", 2, 2, &[4]),
        ]));
        assert!(
            err.contains("shard 2/2 is there 2 times (b.json, b-again.json)"),
            "{err}"
        );
    }

    #[test]
    fn an_entry_in_two_reports_is_refused() {
        let err = message(merge(vec![
            shard("a.json", 1, 2, &[3, 4]),
            shard("b.json", 2, 2, &[4]),
        ]));
        assert!(
            err.contains("line 4") && err.contains("a.json") && err.contains("b.json"),
            "{err}"
        );
    }

    #[test]
    fn another_scheme_is_refused() {
        let mut other = shard("b.json", 2, 2, &[4]);
        other.report.shard.as_mut().unwrap().scheme = "hash-v2".into();
        let err = message(merge(vec![shard("a.json", 1, 2, &[3]), other]));
        assert!(err.contains("hash-v2") && err.contains("b.json"), "{err}");
    }
}
