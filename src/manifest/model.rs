//! The validated manifest: what the rest of the pipeline consumes.
//!
//! Everything here has already been checked: image IDs are lower-case UUIDs, URLs are split
//! into bucket and object, the format is known. Entries that failed validation are kept
//! separately (with their problems) so `--skip-invalid` can report them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::ids::ImageId;

/// The disk-image formats IMS registers (ims-api.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Zvhd,
    Zvhd2,
    Qcow2,
    Qcow,
    Vhd,
    Vhdx,
    Raw,
    Qed,
    Vdi,
    Iso,
    Vmdk,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 11] = [
        ImageFormat::Zvhd,
        ImageFormat::Qcow2,
        ImageFormat::Vhd,
        ImageFormat::Raw,
        ImageFormat::Vhdx,
        ImageFormat::Qed,
        ImageFormat::Vdi,
        ImageFormat::Qcow,
        ImageFormat::Zvhd2,
        ImageFormat::Iso,
        ImageFormat::Vmdk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Zvhd => "zvhd",
            ImageFormat::Zvhd2 => "zvhd2",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Qcow => "qcow",
            ImageFormat::Vhd => "vhd",
            ImageFormat::Vhdx => "vhdx",
            ImageFormat::Raw => "raw",
            ImageFormat::Qed => "qed",
            ImageFormat::Vdi => "vdi",
            ImageFormat::Iso => "iso",
            ImageFormat::Vmdk => "vmdk",
        }
    }

    /// Case-insensitive lookup by name (or extension).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OBS location, normalized from `bucket:object` or `obs://bucket/object`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageUrl {
    pub bucket: String,
    pub object: String,
}

impl fmt::Display for ImageUrl {
    /// The form IMS takes: `bucket:object`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bucket, self.object)
    }
}

/// The optional `settings:` block. Every key can be overridden by a CLI flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    /// Where the preflight asks OBS (default `https://obs.{region}.myhuaweicloud.com`).
    pub obs_endpoint: Option<String>,
    /// `false` skips the preflight before a run (`--no-preflight`).
    pub preflight: Option<bool>,
    /// OBS requests per second of the preflight (`--obs-rate` only).
    pub obs_rate: Option<f64>,
    pub concurrency: Option<u32>,
    pub max_active_jobs: Option<u32>,
    pub submit_rate: Option<f64>,
    pub query_rate: Option<f64>,
    #[serde(with = "opt_humantime")]
    pub poll_interval: Option<Duration>,
    #[serde(with = "opt_humantime")]
    pub job_timeout: Option<Duration>,
}

/// One valid `images:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    pub image_id: ImageId,
    pub image_url: ImageUrl,
    pub name: Option<String>,
    pub format: ImageFormat,
    /// 1-based line where the entry starts in the manifest.
    pub line: usize,
}

/// An `images:` entry that failed validation, kept for `--skip-invalid` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidEntry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The values as written (when they were strings), for the report.
    pub image_id: Option<String>,
    pub image_url: Option<String>,
    pub name: Option<String>,
    /// Human-readable problems, one per failed rule.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the manifest, located at the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    /// Dotted path of the field, e.g. `images[3].image_url` or `settings.concurrency`.
    pub field: String,
    pub message: String,
}

/// A parsed manifest: its settings, valid entries, invalid entries and all diagnostics.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub settings: Settings,
    pub images: Vec<ImageEntry>,
    pub invalid: Vec<InvalidEntry>,
    /// Every error and warning, sorted by line.
    pub diagnostics: Vec<Diagnostic>,
    /// True when an error outside any single entry (syntax, settings, version, structure) makes
    /// the manifest unusable even with `--skip-invalid`.
    pub fatal: bool,
    /// SHA-256 of the file's bytes, lower-case hex (set by [`super::load`]): the reports of
    /// the shards of one manifest carry it, so that merging can tell they belong together.
    pub sha256: Option<String>,
}

impl Manifest {
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

mod opt_humantime {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        value: &Option<Duration>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => ser.serialize_str(&humantime::format_duration(*d).to_string()),
            None => ser.serialize_none(),
        }
    }
}
