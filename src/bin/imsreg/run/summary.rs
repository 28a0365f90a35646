//! The concise final summary printed on stdout when a run ends (coloured on a terminal):
//! counts per outcome, the failures with their IMS code and reason, and where the reports are.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
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
    } else if s.all_succeeded() && s.total > 0 {
        format!("{GREEN}Done{GREEN:#}")
    } else {
        format!("{RED}Finished with problems{RED:#}")
    };
    out.push_str(&format!(
        "{headline}: {} images in {}\n",
        s.total,
        humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
    ));
    let rows = [
        ("registered", s.registered, GREEN),
        ("already registered", s.already_registered, GREEN),
        ("failed", s.failed, RED),
        ("invalid", s.invalid, RED),
        ("pending", s.pending, YELLOW),
        ("cancelled", s.cancelled, YELLOW),
    ];
    for (label, count, style) in rows.into_iter().filter(|(_, count, _)| *count > 0) {
        out.push_str(&format!("  {style}{count:>7}{style:#} {label}\n"));
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
                ImageOutcome::Pending => format!(
                    "still running in IMS, job {}",
                    record.job_id.as_deref().unwrap_or("unknown")
                ),
                _ => {
                    let code = record.error_code.as_deref().unwrap_or("");
                    let message = record.error_message.as_deref().unwrap_or("no reason given");
                    if code.is_empty() {
                        message.to_string()
                    } else {
                        format!("{code}: {message}")
                    }
                }
            };
            out.push_str(&format!("  {} {id}{label}: {detail}\n", record.status));
        }
        if problems.len() > MAX_LISTED {
            out.push_str(&format!(
                "  ... and {} more (see the report)\n",
                problems.len() - MAX_LISTED
            ));
        }
    }
    if !reports.is_empty() {
        let list: Vec<String> = reports.iter().map(|p| p.display().to_string()).collect();
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
