//! Results reports: JSON (the reference shape, see `report.schema.json`), YAML, CSV, JUnit XML
//! and Markdown. Every report is written atomically (temp file in the same folder, fsync,
//! rename), so a reader never sees half a report, even if the run is killed while writing.
//! [`merge`] combines the reports of a manifest's shards into one.

pub mod csv;
pub mod error;
pub mod escape;
pub mod format;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod model;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use error::ReportError;
pub use format::ReportFormat;
pub use model::{
    ImageOutcome, ImageRecord, RegionReportSettings, RegionSummary, Report, ReportSettings,
    ReportShard, Summary,
};

/// Renders a report in the given format.
pub fn render(report: &Report, format: ReportFormat) -> Result<Vec<u8>, ReportError> {
    let mut out = Vec::new();
    render_to(report, format, &mut out)?;
    Ok(out)
}

/// Renders a report straight into `out` (a large report is never held in memory whole,
/// except for JUnit, whose crate builds the document first).
pub fn render_to(
    report: &Report,
    format: ReportFormat,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    match format {
        ReportFormat::Json => serde_json::to_writer_pretty(&mut *out, report)
            .map_err(render_error("JSON"))
            .and_then(|()| out.write_all(b"\n").map_err(render_error("JSON"))),
        ReportFormat::Yaml => serde_yaml::to_writer(out, report).map_err(render_error("YAML")),
        ReportFormat::Csv => csv::render_to(report, out).map_err(render_error("CSV")),
        ReportFormat::Junit => junit::render(report)
            .map_err(render_error("JUnit XML"))
            .and_then(|bytes| out.write_all(&bytes).map_err(render_error("JUnit XML"))),
        ReportFormat::Markdown => out
            .write_all(markdown::render(report).as_bytes())
            .map_err(render_error("Markdown")),
    }
}

fn render_error<E: std::fmt::Display>(format: &'static str) -> impl Fn(E) -> ReportError {
    move |e| ReportError::Render {
        format,
        detail: e.to_string(),
    }
}

/// Checks that every path names a known format, before a run starts.
pub fn check_paths(paths: &[PathBuf]) -> Result<(), ReportError> {
    paths
        .iter()
        .try_for_each(|p| ReportFormat::from_path(p).map(drop))
}

/// Writes the report to every path, each in the format its extension names. Tries every path
/// even when one fails, and returns the first error.
pub fn write_reports(report: &Report, paths: &[PathBuf]) -> Result<(), ReportError> {
    let mut first_error = None;
    for path in paths {
        let result = ReportFormat::from_path(path).and_then(|format| {
            write_atomically_with(path, |file| {
                let mut buffered = std::io::BufWriter::with_capacity(1 << 16, file);
                render_to(report, format, &mut buffered)?;
                buffered.flush().map_err(|source| ReportError::Write {
                    path: path.to_path_buf(),
                    source,
                })
            })
        });
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Temp file in the target's folder (created if missing), write, fsync, rename over the
/// target, fsync the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    write_atomically_with(path, |file| {
        file.write_all(bytes).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// [`write_atomically`] with the content written by `fill` into the temporary file.
pub fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let io_error = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".imsreg-tmp-")
        .tempfile_in(dir)
        .map_err(io_error)?;
    fill(temp.as_file_mut())?;
    temp.as_file().sync_all().map_err(io_error)?;
    temp.persist(path).map_err(|e| io_error(e.error))?;
    // The rename is durable only once the folder itself is synced; best effort.
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}
