//! Results reports: JSON (the reference shape, see `report.schema.json`), YAML, CSV, JUnit XML
//! and Markdown, each written atomically (temp file, fsync, rename).

pub mod model;

pub use model::{ImageOutcome, ImageRecord, Report, ReportSettings, Summary};
