//! The concise final summary printed on stdout when a run ends (coloured on a terminal):
//! counts per outcome (and per region, when the manifest spans more than one), the failures
//! with their IMS code and reason, and where the reports are.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use imsreg::preflight::render::human_bytes;
use imsreg::report::escape::printable;
use imsreg::report::{ImageOutcome, Report};

/// At most this many failures are listed; the report has them all.
const MAX_LISTED: usize = 20;

const GREEN: Style = AnsiColor::Green.on_default().bold();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const DIM: Style = Style::new().dimmed();

/// Renders the summary (with ANSI styles; anstream strips them off a terminal).
pub fn render(
    report: &Report,
    elapsed: Duration,
    reports: &[PathBuf],
    interrupted: bool,
) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let headline = if interrupted {
        format!("{YELLOW}Interrupted{YELLOW:#}")
    } else if s.all_succeeded() && (s.total > 0 || report.shard.is_some()) {
        // A shard the hash gave no entry had nothing to do (and exits 0).
        format!("{GREEN}Done{GREEN:#}")
    } else {
        format!("{RED}Finished with problems{RED:#}")
    };
    let bytes = |status: &[ImageOutcome]| -> String {
        if s.total_bytes == 0 {
            return String::new();
        }
        let sum: u64 = report
            .images
            .iter()
            .filter(|r| status.contains(&r.status))
            .filter_map(|r| r.size_bytes)
            .sum();
        format!(" ({})", human_bytes(sum))
    };
    let all_bytes = if s.total_bytes > 0 {
        format!(" ({})", human_bytes(s.total_bytes))
    } else {
        String::new()
    };
    let of_shard = report
        .shard
        .as_ref()
        .map(|shard| format!(" of shard {}/{}", shard.index, shard.total))
        .unwrap_or_default();
    out.push_str(&format!(
        "{headline}: {} images{all_bytes}{of_shard} in {}\n",
        s.total,
        humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
    ));
    use ImageOutcome as O;
    let rows = [
        ("registered", O::Registered, s.registered, GREEN),
        (
            "already registered",
            O::AlreadyRegistered,
            s.already_registered,
            GREEN,
        ),
        ("failed", O::Failed, s.failed, RED),
        (
            "preflight failed: not submitted; fix them in OBS and run again",
            O::PreflightFailed,
            s.preflight_failed,
            RED,
        ),
        ("invalid", O::Invalid, s.invalid, RED),
        ("pending", O::Pending, s.pending, YELLOW),
        ("cancelled", O::Cancelled, s.cancelled, YELLOW),
        (
            "unreachable (not settled: run again)",
            O::Unreachable,
            s.unreachable,
            YELLOW,
        ),
    ];
    for (label, status, count, style) in rows.into_iter().filter(|row| row.2 > 0) {
        let bytes = bytes(&[status]);
        out.push_str(&format!("  {style}{count:>7}{style:#} {label}{bytes}\n"));
    }
    if s.created > 0 {
        out.push_str(&format!(
            "  {:>7} of them with images imsreg created (no image_id in the manifest; see `created` in the report)\n",
            s.created
        ));
    }

    if s.regions.len() > 1 {
        out.push_str("By region:\n");
        for (region, counts) in &s.regions {
            let done = counts.registered + counts.already_registered;
            let mut parts = vec![format!("{done}/{} registered", counts.total)];
            for (count, label) in [
                (counts.failed, "failed"),
                (counts.preflight_failed, "preflight failed"),
                (counts.pending, "pending"),
                (counts.cancelled, "cancelled"),
                (counts.unreachable, "unreachable"),
                (counts.invalid, "invalid"),
            ] {
                if count > 0 {
                    parts.push(format!("{count} {label}"));
                }
            }
            let line = format!("  {region}: {}", parts.join(", "));
            out.push_str(&format!("{}\n", printable(&line)));
        }
    }

    let problems: Vec<_> = report
        .images
        .iter()
        .filter(|r| !r.status.is_success() && r.status != ImageOutcome::Cancelled)
        .collect();
    if !problems.is_empty() {
        out.push_str("Problems:\n");
        for record in problems.iter().take(MAX_LISTED) {
            let id = record.image_id.as_deref().unwrap_or("(no image_id)");
            let label = record
                .name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let detail = match record.status {
                ImageOutcome::Pending => match (&record.job_id, &record.error_message) {
                    (Some(job), _) => format!("still running in IMS, job {job}"),
                    // Unsettled: IMS may have taken it; the message says why it is not known.
                    (None, Some(message)) => message.clone(),
                    (None, None) => "still running in IMS, job unknown".to_string(),
                },
                _ => {
                    let code = record.error_code.as_deref().unwrap_or("");
                    let message = record.error_message.as_deref().unwrap_or("no reason given");
                    // Some messages (a failed status check) already name their code.
                    if code.is_empty() || message.contains(code) {
                        message.to_string()
                    } else {
                        format!("{code}: {message}")
                    }
                }
            };
            // One line per image, whatever the name or the server's message contains.
            let line = format!("{} {id}{label}: {detail}", record.status);
            out.push_str(&format!("  {}\n", printable(&line)));
        }
        if problems.len() > MAX_LISTED {
            out.push_str(&format!(
                "  ... and {} more (see the report)\n",
                problems.len() - MAX_LISTED
            ));
        }
    }
    if !reports.is_empty() {
        let list: Vec<String> = reports
            .iter()
            .map(|p| printable(&p.display().to_string()).into_owned())
            .collect();
        out.push_str(&format!("{DIM}Report: {}{DIM:#}\n", list.join(", ")));
    }
    out
}

/// Prints the summary on stdout.
pub fn print(report: &Report, elapsed: Duration, reports: &[PathBuf], interrupted: bool) {
    let text = render(report, elapsed, reports, interrupted);
    let mut stdout = anstream::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use imsreg::report::{ImageRecord, ReportSettings, Summary};

    fn record(i: usize, status: ImageOutcome) -> ImageRecord {
        ImageRecord {
            image_id: Some(format!("id-{i}")),
            image_url: None,
            name: (i == 0).then(|| "web-01".to_string()),
            format: None,
            status,
            job_id: Some(format!("job-{i}")),
            error_code: (status == ImageOutcome::Failed).then(|| "IMG.0057".to_string()),
            error_message: (status == ImageOutcome::Failed).then(|| "bad header".to_string()),
            attempts: 1,
            submitted_at: None,
            finished_at: None,
            duration_s: None,
            size_bytes: None,
            created: false,
            line: Some(i + 1),
            region: None,
            project_id: None,
        }
    }

    fn report(images: Vec<ImageRecord>) -> Report {
        Report {
            imsreg_version: "0".into(),
            manifest: "m.yaml".into(),
            manifest_sha256: None,
            shard: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            settings: ReportSettings {
                endpoint: "http://127.0.0.1:1".into(),
                region: None,
                project_id: None,
                concurrency: 1,
                max_active_jobs: 1,
                submit_rate: 1.0,
                query_rate: 1.0,
                poll_interval_s: 1.0,
                job_timeout_s: 1.0,
                dry_run: false,
                regions: Vec::new(),
            },
            summary: Summary::from_records(&images),
            images,
        }
    }

    /// The text without ANSI styles.
    fn plain(text: &str) -> String {
        let mut out = Vec::new();
        let mut stream = anstream::StripStream::new(&mut out);
        stream.write_all(text.as_bytes()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn success_lists_counts_and_reports() {
        let text = plain(&render(
            &report(vec![
                record(0, ImageOutcome::Registered),
                record(1, ImageOutcome::AlreadyRegistered),
            ]),
            Duration::from_millis(1500),
            &[PathBuf::from("r.json"), PathBuf::from("r.md")],
            false,
        ));
        assert!(text.starts_with("Done: 2 images in 1s 500ms\n"), "{text}");
        assert!(text.contains("      1 registered\n"), "{text}");
        assert!(text.contains("      1 already registered\n"), "{text}");
        assert!(
            !text.contains("failed") && !text.contains("Problems"),
            "{text}"
        );
        assert!(text.contains("Report: r.json, r.md"), "{text}");
    }

    #[test]
    fn a_shard_says_so_and_an_empty_one_is_done() {
        let mut of_shard = report(vec![record(0, ImageOutcome::Registered)]);
        of_shard.shard = Some(imsreg::report::ReportShard {
            index: 2,
            total: 3,
            scheme: "hash-v1".into(),
        });
        let text = plain(&render(&of_shard, Duration::from_secs(2), &[], false));
        assert!(
            text.starts_with("Done: 1 images of shard 2/3 in 2s\n"),
            "{text}"
        );
        of_shard.images.clear();
        of_shard.summary = Summary::from_records(&of_shard.images);
        let text = plain(&render(&of_shard, Duration::from_secs(2), &[], false));
        assert!(text.starts_with("Done: 0 images of shard 2/3"), "{text}");
    }

    #[test]
    fn newlines_in_names_and_messages_cannot_forge_summary_lines() {
        let mut forged = record(0, ImageOutcome::Failed);
        forged.name = Some("web\n      9 registered".into());
        forged.error_message = Some("refused\nDone: 9 images\u{1b}[2J".into());
        let text = plain(&render(
            &report(vec![forged]),
            Duration::ZERO,
            &[PathBuf::from("r\n.json")],
            false,
        ));
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(!text.contains("\n      9 registered"), "{text}");
        assert!(
            text.contains("failed id-0 (web\\n      9 registered): IMG.0057: refused\\nDone: 9 images\\u{1b}[2J"),
            "{text}"
        );
        assert!(text.contains("Report: r\\n.json"), "{text}");
    }

    #[test]
    fn counts_per_region_when_there_is_more_than_one() {
        let placed = |i: usize, status: ImageOutcome, region: &str| ImageRecord {
            region: Some(region.to_string()),
            ..record(i, status)
        };
        let text = plain(&render(
            &report(vec![
                placed(0, ImageOutcome::Registered, "ap-southeast-1"),
                placed(1, ImageOutcome::Failed, "eu-west-101"),
                placed(2, ImageOutcome::AlreadyRegistered, "eu-west-101"),
            ]),
            Duration::ZERO,
            &[],
            false,
        ));
        assert!(
            text.contains("By region:\n  ap-southeast-1: 1/1 registered\n  eu-west-101: 1/2 registered, 1 failed\n"),
            "{text}"
        );
        let one = plain(&render(
            &report(vec![placed(0, ImageOutcome::Registered, "ap-southeast-1")]),
            Duration::ZERO,
            &[],
            false,
        ));
        assert!(!one.contains("By region"), "{one}");
    }

    #[test]
    fn bytes_are_counted_when_sizes_are_known() {
        let mut big = record(0, ImageOutcome::Registered);
        big.size_bytes = Some(3 << 30);
        let mut small = record(1, ImageOutcome::PreflightFailed);
        small.size_bytes = Some(1 << 30);
        let text = plain(&render(
            &report(vec![big, small]),
            Duration::from_secs(2),
            &[],
            false,
        ));
        assert!(
            text.starts_with("Finished with problems: 2 images (4.0 GiB) in 2s\n"),
            "{text}"
        );
        assert!(text.contains("      1 registered (3.0 GiB)\n"), "{text}");
        assert!(text.contains("      1 preflight failed"), "{text}");
        assert!(text.contains("run again (1.0 GiB)\n"), "{text}");
    }

    #[test]
    fn problems_are_listed_with_code_and_reason_up_to_a_limit() {
        let mut images = vec![
            record(0, ImageOutcome::Failed),
            record(1, ImageOutcome::Pending),
        ];
        images.extend((2..30).map(|i| record(i, ImageOutcome::Failed)));
        let text = plain(&render(&report(images), Duration::ZERO, &[], false));
        assert!(
            text.starts_with("Finished with problems: 30 images"),
            "{text}"
        );
        assert!(
            text.contains("failed id-0 (web-01): IMG.0057: bad header"),
            "{text}"
        );
        assert!(
            text.contains("pending id-1: still running in IMS, job job-1"),
            "{text}"
        );
        assert!(text.contains("... and 10 more (see the report)"), "{text}");
        let interrupted = plain(&render(&report(vec![]), Duration::ZERO, &[], true));
        assert!(
            interrupted.starts_with("Interrupted: 0 images"),
            "{interrupted}"
        );
    }
}
