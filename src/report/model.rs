//! The report's data: one record per manifest entry plus run metadata. The JSON rendering is
//! the reference shape (`report.schema.json`); every other format mirrors it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Final status of one image in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageOutcome {
    /// This run registered it: job SUCCESS and image `active`.
    Registered,
    /// It was `active` before this run (or an earlier run registered it); nothing submitted.
    AlreadyRegistered,
    /// The job failed, IMS refused the registration, or the image is killed/deleted/unknown.
    Failed,
    /// The manifest entry is invalid (only with `--skip-invalid`).
    Invalid,
    /// Submitted (its job ID is known) but not finished when the run ended.
    Pending,
    /// Never submitted: the run stopped first (interrupt, auth failure).
    Cancelled,
    /// Not settled: IMS could not be reached, or its answer not understood, so imsreg does not
    /// know where the image stands. Nothing is recorded as final; the next run tries again.
    Unreachable,
    /// Never submitted: the preflight found in OBS that IMS would fail it (the reason is in
    /// `error_message`). Not recorded as final: the next run checks it again, once fixed.
    PreflightFailed,
}

impl ImageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageOutcome::Registered => "registered",
            ImageOutcome::AlreadyRegistered => "already_registered",
            ImageOutcome::Failed => "failed",
            ImageOutcome::Invalid => "invalid",
            ImageOutcome::Pending => "pending",
            ImageOutcome::Cancelled => "cancelled",
            ImageOutcome::Unreachable => "unreachable",
            ImageOutcome::PreflightFailed => "preflight_failed",
        }
    }

    /// Whether this outcome counts as success for the exit code.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            ImageOutcome::Registered | ImageOutcome::AlreadyRegistered
        )
    }
}

impl std::fmt::Display for ImageOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image_id: Option<String>,
    /// Normalized `bucket:object` (as written, for invalid entries).
    pub image_url: Option<String>,
    pub name: Option<String>,
    pub format: Option<String>,
    pub status: ImageOutcome,
    pub job_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Register calls sent for this image in this run.
    pub attempts: u32,
    pub submitted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From submission to the end of the job, in seconds.
    pub duration_s: Option<f64>,
    /// The object's size in OBS, when the preflight learned it.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// imsreg created this image (the manifest entry had no `image_id`; `image_id` is the
    /// image imsreg made for it, in this run or an earlier one, found again by its tag).
    #[serde(default)]
    pub created: bool,
    /// The 1-based manifest line where the entry starts (`imsreg report merge` puts the
    /// shards' records back in manifest order by it).
    #[serde(default)]
    pub line: Option<usize>,
    /// The region the image is registered in (when the manifest or `--region` names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The IMS project it is registered in (with `region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

impl ImageRecord {
    /// A record for a manifest entry with `status` and nothing else known yet.
    pub fn for_entry(entry: &crate::manifest::ImageEntry, status: ImageOutcome) -> Self {
        ImageRecord {
            image_id: Some(entry.image_id.to_string()),
            image_url: Some(entry.image_url.to_string()),
            name: entry.name.clone(),
            format: Some(entry.format.as_str().to_string()),
            status,
            job_id: None,
            error_code: None,
            error_message: None,
            attempts: 0,
            submitted_at: None,
            finished_at: None,
            duration_s: None,
            size_bytes: None,
            created: false,
            line: Some(entry.line),
            region: None,
            project_id: None,
        }
    }
}

/// Counts per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub registered: usize,
    pub already_registered: usize,
    pub failed: usize,
    pub invalid: usize,
    pub pending: usize,
    pub cancelled: usize,
    #[serde(default)]
    pub unreachable: usize,
    #[serde(default)]
    pub preflight_failed: usize,
    /// Bytes of the images whose size is known (from the preflight), and of those registered
    /// or already registered.
    #[serde(default)]
    pub total_bytes: u64,
    #[serde(default)]
    pub registered_bytes: u64,
    /// Entries whose image imsreg created (`created: true`).
    #[serde(default)]
    pub created: usize,
    /// The counts of each region's images, by region name (empty, and left out, when no
    /// record names a region).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, RegionSummary>,
}

/// Counts per outcome of one region's images (and, added up, of the whole report's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSummary {
    pub total: usize,
    pub registered: usize,
    pub already_registered: usize,
    pub failed: usize,
    pub invalid: usize,
    pub pending: usize,
    pub cancelled: usize,
    pub unreachable: usize,
    pub preflight_failed: usize,
    pub created: usize,
}

impl RegionSummary {
    fn count(&mut self, record: &ImageRecord) {
        self.total += 1;
        self.created += usize::from(record.created);
        *match record.status {
            ImageOutcome::Registered => &mut self.registered,
            ImageOutcome::AlreadyRegistered => &mut self.already_registered,
            ImageOutcome::Failed => &mut self.failed,
            ImageOutcome::Invalid => &mut self.invalid,
            ImageOutcome::Pending => &mut self.pending,
            ImageOutcome::Cancelled => &mut self.cancelled,
            ImageOutcome::Unreachable => &mut self.unreachable,
            ImageOutcome::PreflightFailed => &mut self.preflight_failed,
        } += 1;
    }
}

impl Summary {
    pub fn from_records(records: &[ImageRecord]) -> Self {
        let mut counts = RegionSummary::default();
        let mut regions: BTreeMap<String, RegionSummary> = BTreeMap::new();
        let (mut total_bytes, mut registered_bytes) = (0, 0);
        for record in records {
            counts.count(record);
            if let Some(region) = &record.region {
                regions.entry(region.clone()).or_default().count(record);
            }
            let size = record.size_bytes.unwrap_or(0);
            total_bytes += size;
            if record.status.is_success() {
                registered_bytes += size;
            }
        }
        // Destructured whole, so that a count added to one struct cannot be missed here.
        let RegionSummary {
            total,
            registered,
            already_registered,
            failed,
            invalid,
            pending,
            cancelled,
            unreachable,
            preflight_failed,
            created,
        } = counts;
        Summary {
            total,
            registered,
            already_registered,
            failed,
            invalid,
            pending,
            cancelled,
            unreachable,
            preflight_failed,
            total_bytes,
            registered_bytes,
            created,
            regions,
        }
    }

    /// True when every image is registered or already registered.
    pub fn all_succeeded(&self) -> bool {
        self.registered + self.already_registered == self.total
    }
}

/// The effective settings of the run, as written into the report (no credentials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSettings {
    pub endpoint: String,
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub concurrency: u32,
    pub max_active_jobs: u32,
    pub submit_rate: f64,
    pub query_rate: f64,
    pub poll_interval_s: f64,
    pub job_timeout_s: f64,
    pub dry_run: bool,
    /// The settings each region (and project) ran with, when the manifest spans more than
    /// one (the fields above are then the first one's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionReportSettings>,
}

/// The settings one region (and project) of the run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionReportSettings {
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub endpoint: String,
    pub concurrency: u32,
    pub max_active_jobs: u32,
    pub submit_rate: f64,
    pub query_rate: f64,
}

/// Which shard of the manifest a report covers (`--shard K/N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportShard {
    /// 1-based.
    pub index: u32,
    pub total: u32,
    /// How entries were assigned to shards: `hash-v1` (see [`crate::shard`]).
    pub scheme: String,
}

impl From<crate::shard::Shard> for ReportShard {
    fn from(shard: crate::shard::Shard) -> Self {
        ReportShard {
            index: shard.index(),
            total: shard.total(),
            scheme: crate::shard::SCHEME.to_string(),
        }
    }
}

/// A whole run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub imsreg_version: String,
    /// The manifest path as given.
    pub manifest: String,
    /// SHA-256 of the manifest file's bytes (lower-case hex): the shards of one manifest
    /// share it. Absent in the reports of older imsreg versions.
    #[serde(default)]
    pub manifest_sha256: Option<String>,
    /// The shard this report covers; `None` for the whole manifest.
    #[serde(default)]
    pub shard: Option<ReportShard>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub settings: ReportSettings,
    pub summary: Summary,
    pub images: Vec<ImageRecord>,
}
