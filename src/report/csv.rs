//! CSV report: one row per image, the JSON image fields as columns (header row first), with
//! the [`REGION_COLUMNS`] after them when records name a region. Cells a spreadsheet would run
//! as formulas are neutralised ([`super::escape::csv_cell`]).

use super::escape::csv_cell;
use super::model::{ImageRecord, Report};

/// Column order; the same names as the JSON `images[]` fields.
pub const COLUMNS: [&str; 15] = [
    "image_id",
    "image_url",
    "name",
    "format",
    "status",
    "job_id",
    "error_code",
    "error_message",
    "attempts",
    "submitted_at",
    "finished_at",
    "duration_s",
    "size_bytes",
    "line",
    "created",
];

/// Added after [`COLUMNS`] when any record names its region (a manifest across regions, or
/// `--region`).
pub const REGION_COLUMNS: [&str; 2] = ["region", "project_id"];

fn row(record: &ImageRecord) -> [String; 15] {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    [
        text(&record.image_id),
        text(&record.image_url),
        text(&record.name),
        text(&record.format),
        record.status.as_str().to_string(),
        text(&record.job_id),
        text(&record.error_code),
        text(&record.error_message),
        record.attempts.to_string(),
        time(&record.submitted_at),
        time(&record.finished_at),
        record
            .duration_s
            .map(|d| format!("{d:.3}"))
            .unwrap_or_default(),
        record.size_bytes.map(|b| b.to_string()).unwrap_or_default(),
        record.line.map(|l| l.to_string()).unwrap_or_default(),
        record.created.to_string(),
    ]
}

/// Writes the CSV report into `out`, row by row.
pub fn render_to(report: &Report, out: &mut dyn std::io::Write) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    let regions = report.images.iter().any(|record| record.region.is_some());
    let extra: &[&str] = if regions { &REGION_COLUMNS } else { &[] };
    writer.write_record(COLUMNS.iter().chain(extra))?;
    for record in &report.images {
        let placed = [&record.region, &record.project_id]
            .into_iter()
            .take(extra.len())
            .map(|value| value.clone().unwrap_or_default());
        let cells = row(record).into_iter().chain(placed);
        writer.write_record(cells.map(|cell| csv_cell(&cell).into_owned()))?;
    }
    writer.flush()?;
    Ok(())
}
