//! The validated manifest: what the rest of the pipeline consumes.
//!
//! Everything here has already been checked: image IDs are lower-case UUIDs, URLs are split
//! into bucket and object, the format is known. Entries with an `image_id` register an image
//! that exists ([`ImageEntry`]); entries without one name an image imsreg creates
//! ([`CreateEntry`], with `defaults:` already applied). Entries that failed validation are kept
//! separately (with their problems) so `--skip-invalid` can report them.

use std::collections::BTreeMap;
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
    /// `regions:`: each region's own project, endpoints and quota, by region name (manifest
    /// only; empty when not given).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, RegionSettings>,
}

/// One region's own settings (`settings.regions.<region>`): IMS quotas are per region and
/// project, so each region has its own project, endpoints, rates and active-job bound. A value
/// left out comes from the flags, then `settings:`, then the default
/// ([`crate::run::RunConfig::for_region`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RegionSettings {
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    pub obs_endpoint: Option<String>,
    pub concurrency: Option<u32>,
    pub max_active_jobs: Option<u32>,
    pub submit_rate: Option<f64>,
    pub query_rate: Option<f64>,
}

/// Where a valid entry asked to be registered: its own `region:` and `project_id:` (each
/// `None` when the entry leaves it to `settings:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub region: Option<String>,
    pub project_id: Option<String>,
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

/// Where a value was written in the manifest file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One valid `images:` entry without `image_id`: imsreg creates the image's metadata (named
/// `name`, tagged with [`crate::ids::IDENTITY_TAG_KEY`]), then registers the file into it.
/// The optional values hold the entry's own value or else the one of `defaults:`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateEntry {
    /// The image's name: its identity (unique among the created entries of the manifest).
    pub name: String,
    pub image_url: ImageUrl,
    pub format: ImageFormat,
    /// Sent as `__os_version`; checked against IMS's list at run start.
    pub os_version: Option<String>,
    /// GB, 1-1024.
    pub min_disk: Option<u32>,
    /// MB.
    pub min_ram: Option<u64>,
    /// The user's tags, `defaults:` merged in (the entry wins per key); without imsreg's own
    /// identity tag, so at most 9.
    pub tags: BTreeMap<String, String>,
    /// 1-based line where the entry starts in the manifest.
    pub line: usize,
    /// Where `os_version` was written (in the entry or in `defaults:`), for the run-start
    /// check's diagnostic.
    pub os_version_at: Option<Position>,
}

/// The top-level `defaults:` block: values for every created entry that does not give its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    pub os_version: Option<String>,
    pub min_disk: Option<u32>,
    pub min_ram: Option<u64>,
    /// Merged into each created entry's tags (empty when `defaults:` has none).
    pub tags: BTreeMap<String, String>,
}

/// An `images:` entry that failed validation, kept for `--skip-invalid` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidEntry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The values as written (when they were strings), for the report. `image_id` is None
    /// for an entry that was to be created (its `name` then says which).
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
    /// The valid entries with an `image_id`, in manifest order.
    pub images: Vec<ImageEntry>,
    /// The valid entries without one (images to create), in manifest order.
    pub creates: Vec<CreateEntry>,
    /// The `defaults:` block as written (already applied to `creates`).
    pub defaults: Defaults,
    pub invalid: Vec<InvalidEntry>,
    /// The valid entries (of both kinds) that name their own `region:` or `project_id:`, by the
    /// line where the entry starts; the others take `settings:`'s.
    pub placements: std::collections::HashMap<usize, Placement>,
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
    /// Valid entries of both kinds.
    pub fn valid_count(&self) -> usize {
        self.images.len() + self.creates.len()
    }

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
