//! Markdown report: a summary table and the images that need attention, for pasting into a
//! ticket or a CI job summary (e.g. `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use super::escape::printable;
use super::model::{ImageOutcome, Report};

/// Escapes what would break a table cell (and what would forge a line or repaint a terminal).
fn cell(text: &str) -> String {
    let text = text
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ");
    printable(&text).into_owned()
}

/// Text inside a code span: printable, and without backticks that would end the span.
fn code(text: &str) -> String {
    printable(text).replace('`', "'")
}

pub fn render(report: &Report) -> String {
    let s = &report.summary;
    let mut out = String::with_capacity(1024 + 160 * report.images.len());
    let _ = writeln!(out, "# imsreg report\n");
    let _ = writeln!(
        out,
        "Manifest `{}`, endpoint `{}`, {} to {} ({:.0} s), imsreg {}.\n",
        code(&report.manifest),
        code(&report.settings.endpoint),
        report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.finished_at.format("%H:%M:%S UTC"),
        (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0,
        report.imsreg_version
    );
    if let Some(shard) = &report.shard {
        let _ = writeln!(
            out,
            "Shard {}/{} (`{}`) of the manifest.\n",
            shard.index,
            shard.total,
            code(&shard.scheme)
        );
    }
    if let Some(digest) = &report.manifest_sha256 {
        let _ = writeln!(out, "Manifest SHA-256 `{}`.\n", code(digest));
    }
    let _ = writeln!(out, "| status | images |\n|---|---:|");
    for (label, count) in [
        ("registered", s.registered),
        ("already registered", s.already_registered),
        ("failed", s.failed),
        ("preflight failed", s.preflight_failed),
        ("invalid", s.invalid),
        ("pending", s.pending),
        ("cancelled", s.cancelled),
        ("unreachable", s.unreachable),
    ] {
        let _ = writeln!(out, "| {label} | {count} |");
    }
    let _ = writeln!(out, "| **total** | **{}** |", s.total);
    if s.regions.len() > 1 {
        let _ = writeln!(
            out,
            "\n| region | total | registered | already registered | failed | other |\n|---|---:|---:|---:|---:|---:|"
        );
        for (region, counts) in &s.regions {
            let done = counts.registered + counts.already_registered + counts.failed;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(region),
                counts.total,
                counts.registered,
                counts.already_registered,
                counts.failed,
                counts.total - done
            );
        }
    }
    if s.created > 0 {
        let _ = writeln!(
            out,
            "\n{} of these images were created by imsreg.",
            s.created
        );
    }

    let attention: Vec<_> = report
        .images
        .iter()
        .filter(|r| !r.status.is_success())
        .collect();
    if attention.is_empty() {
        let _ = writeln!(out, "\nEvery image is registered.");
        return out;
    }
    let regions = report.images.iter().any(|r| r.region.is_some());
    let (region_head, region_rule) = if regions {
        (" region |", "---|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "\n## Needs attention ({})\n\n| image | name | image_url |{region_head} status | job_id | error |\n|---|---|---|{region_rule}---|---|---|",
        attention.len()
    );
    for r in attention {
        let error = match (&r.error_code, &r.error_message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        };
        let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
        let region = if regions {
            format!(" {} |", opt(&r.region))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {}{} | {} | {} |{region} {} | {} | {} |",
            opt(&r.image_id),
            if r.created { " (created)" } else { "" },
            opt(&r.name),
            opt(&r.image_url),
            r.status,
            opt(&r.job_id),
            cell(&error)
        );
    }
    if report
        .images
        .iter()
        .any(|r| r.status == ImageOutcome::Pending)
    {
        let _ = writeln!(
            out,
            "\nPending images are still registering in the cloud: re-run the same manifest to follow them up."
        );
    }
    out
}
