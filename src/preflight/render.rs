//! How preflight problems look: one line per problem,
//! `FILE:LINE: error: IMAGE_ID: <what is wrong with bucket:object, and how to fix it> [IMG.xxxx]`,
//! plain or with terminal colours, then a summary line; or, for CI, one JSON document.

use std::fmt;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use super::run::PreflightReport;
use super::verdict::{EntryVerdict, Finding};
use crate::manifest::Severity;
use crate::report::escape::printable;

/// One problem of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub severity: Severity,
    pub image_id: String,
    pub image_url: String,
    /// `bucket`, `region`, `storage_class`, `size`, `encryption`, `format`, ...
    pub check: &'static str,
    /// The IMS error code the problem pre-empts, when there is one.
    pub ims_code: Option<&'static str>,
    pub message: String,
}

impl Problem {
    fn new(file: &str, verdict: &EntryVerdict, finding: &Finding) -> Self {
        Problem {
            file: file.to_string(),
            line: verdict.line,
            severity: finding.severity,
            image_id: verdict.image_id.clone(),
            image_url: verdict.image_url.to_string(),
            check: finding.check.name(),
            ims_code: finding.ims_code,
            message: finding.message.clone(),
        }
    }

    fn code_suffix(&self) -> String {
        self.ims_code
            .map_or(String::new(), |code| format!(" [{code}]"))
    }
}

/// Every problem of every entry, in manifest order.
pub fn problems(file: &str, verdicts: &[EntryVerdict]) -> Vec<Problem> {
    verdicts
        .iter()
        .flat_map(|verdict| {
            verdict
                .findings
                .iter()
                .map(move |finding| Problem::new(file, verdict, finding))
        })
        .collect()
}

impl fmt::Display for Problem {
    /// `FILE:LINE: error: IMAGE_ID: message [IMG.xxxx]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}: {}{}",
            printable(&self.file),
            self.line,
            self.severity,
            self.image_id,
            printable(&self.message),
            self.code_suffix()
        )
    }
}

/// The problem with ANSI colours (write it through `anstream`).
pub struct Styled<'a>(pub &'a Problem);

impl fmt::Display for Styled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let location = Style::new().bold();
        let severity = match p.severity {
            Severity::Error => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            Severity::Warning => Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
        };
        let id = Style::new().fg_color(Some(AnsiColor::Cyan.into()));
        write!(
            f,
            "{location}{}:{}:{location:#} {severity}{}:{severity:#} {id}{}{id:#}: {}{}",
            printable(&p.file),
            p.line,
            p.severity,
            p.image_id,
            printable(&p.message),
            p.code_suffix()
        )
    }
}

/// `FILE: preflight: 12 entries, 9 passed, 3 failed, 1 warning (31 OBS requests, 0.4 s)`.
pub fn summary(file: &str, report: &PreflightReport) -> String {
    let entries = report.verdicts.len();
    let warnings = report.warnings();
    let bytes: u64 = report.verdicts.iter().filter_map(|v| v.size_bytes).sum();
    let file = printable(file);
    format!(
        "{file}: preflight: {entries} entr{}, {} passed, {} failed, {warnings} warning{} \
         ({} in OBS; {} request{}, {:.1} s)",
        if entries == 1 { "y" } else { "ies" },
        report.passed(),
        report.failed(),
        if warnings == 1 { "" } else { "s" },
        human_bytes(bytes),
        report.requests,
        if report.requests == 1 { "" } else { "s" },
        report.elapsed.as_secs_f64()
    )
}

/// `245.3 GiB`, `512 MiB`, `0 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The JSON document of `imsreg preflight --format json`.
#[derive(Debug, Serialize)]
struct Document<'a> {
    file: &'a str,
    /// Run-level warnings (a check that was skipped, and why).
    warnings: &'a [String],
    summary: JsonSummary,
    problems: Vec<Problem>,
    entries: Vec<JsonEntry<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonSummary {
    entries: usize,
    passed: usize,
    failed: usize,
    warnings: usize,
    size_bytes: u64,
    obs_requests: u64,
    elapsed_s: f64,
}

#[derive(Debug, Serialize)]
struct JsonEntry<'a> {
    line: usize,
    image_id: &'a str,
    image_url: String,
    passed: bool,
    size_bytes: Option<u64>,
    /// What the bytes are, e.g. `qcow2 (version 3)`, when they were read.
    detected: Option<String>,
}

/// `{file, warnings, summary, problems: [...], entries: [...]}`.
pub fn to_json(file: &str, report: &PreflightReport, warnings: &[String]) -> String {
    let document = Document {
        file,
        warnings,
        summary: JsonSummary {
            entries: report.verdicts.len(),
            passed: report.passed(),
            failed: report.failed(),
            warnings: report.warnings(),
            size_bytes: report.verdicts.iter().filter_map(|v| v.size_bytes).sum(),
            obs_requests: report.requests,
            elapsed_s: report.elapsed.as_secs_f64(),
        },
        problems: problems(file, &report.verdicts),
        entries: report
            .verdicts
            .iter()
            .map(|v| JsonEntry {
                line: v.line,
                image_id: &v.image_id,
                image_url: v.image_url.to_string(),
                passed: v.passed(),
                size_bytes: v.size_bytes,
                detected: v.detected.as_ref().map(ToString::to_string),
            })
            .collect(),
    };
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ImageUrl;
    use crate::preflight::Check;
    use std::time::Duration;

    fn verdict() -> EntryVerdict {
        EntryVerdict {
            line: 12,
            image_id: "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86".into(),
            image_url: ImageUrl {
                bucket: "images".into(),
                object: "a.qcow2".into(),
            },
            size_bytes: Some(3 << 30),
            detected: None,
            findings: vec![Finding {
                severity: Severity::Error,
                check: Check::Region,
                ims_code: Some("IMG.0058"),
                message: "images:a.qcow2 is in eu-west-101: copy it".into(),
            }],
        }
    }

    #[test]
    fn lines_name_file_line_entry_problem_and_code() {
        let problems = problems("m.yaml", &[verdict()]);
        let plain = problems[0].to_string();
        assert_eq!(
            plain,
            "m.yaml:12: error: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86: images:a.qcow2 is in \
             eu-west-101: copy it [IMG.0058]"
        );
        let styled = Styled(&problems[0]).to_string();
        assert_eq!(anstream::adapter::strip_str(&styled).to_string(), plain);
    }

    #[test]
    fn summary_and_json_count_entries_and_bytes() {
        let report = PreflightReport {
            verdicts: vec![verdict()],
            requests: 3,
            retries: 0,
            elapsed: Duration::from_millis(300),
        };
        assert_eq!(
            summary("m.yaml", &report),
            "m.yaml: preflight: 1 entry, 0 passed, 1 failed, 0 warnings (3.0 GiB in OBS; 3 \
             requests, 0.3 s)"
        );
        let json: serde_json::Value =
            serde_json::from_str(&to_json("m.yaml", &report, &["w".to_string()])).unwrap();
        assert_eq!(json["summary"]["failed"], 1);
        assert_eq!(json["problems"][0]["check"], "region");
        assert_eq!(json["problems"][0]["ims_code"], "IMG.0058");
        assert_eq!(json["entries"][0]["size_bytes"], 3u64 << 30);
        assert_eq!(json["warnings"][0], "w");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
