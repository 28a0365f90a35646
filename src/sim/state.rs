//! The simulated IMS account: images, register jobs and their lifecycle.
//!
//! Nothing here runs on a timer. A job records when it was accepted, how long it takes and how
//! it will end; its status (and its image's status) is computed from the clock whenever it is
//! read. That keeps 100,000 images as cheap as ten. Time is passed in as the offset since the
//! simulator started, so every rule is unit-tested without sleeping.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::config::SimConfig;
use super::hash::unit_hash;
use super::obs_store::ObjectFacts;
use crate::ims::{ImageStatus, JobStatus};

/// The register job type IMS reports.
pub const REGISTER_JOB_TYPE: &str = "imsNativeImportImageJob";

/// File extensions IMS registers (ims-api.md section 1, with ISO).
pub const SUPPORTED_EXTENSIONS: [&str; 11] = [
    "zvhd", "zvhd2", "qcow2", "qcow", "vhd", "vhdx", "raw", "qed", "vdi", "iso", "vmdk",
];

/// Extensions of files that are clearly not a registrable disk image (archives, OVF packages,
/// documents). Other names, including `.img` or none at all, are accepted: how IMS detects the
/// format is unconfirmed, and manifests may name it with `format:` instead.
pub const UNSUPPORTED_EXTENSIONS: [&str; 17] = [
    "ova", "ovf", "mf", "tar", "tgz", "gz", "zip", "7z", "rar", "bz2", "xz", "txt", "json", "xml",
    "yaml", "exe", "msi",
];

/// An IMS error answer (`{"error": {"code", "message"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsFault {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ImsFault {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// How a job will end; decided when it is accepted.
#[derive(Debug, Clone)]
enum Outcome {
    Success,
    Fail {
        error_code: &'static str,
        fail_reason: String,
    },
}

#[derive(Debug, Clone)]
struct JobRecord {
    image_id: String,
    accepted: Duration,
    duration: Duration,
    outcome: Outcome,
}

impl JobRecord {
    fn end(&self) -> Duration {
        self.accepted + self.duration
    }

    fn status(&self, now: Duration) -> JobStatus {
        let elapsed = now.saturating_sub(self.accepted);
        if elapsed >= self.duration {
            match self.outcome {
                Outcome::Success => JobStatus::Success,
                Outcome::Fail { .. } => JobStatus::Fail,
            }
        } else if elapsed < self.duration / 10 {
            JobStatus::Init
        } else {
            JobStatus::Running
        }
    }

    fn percent(&self, now: Duration) -> f64 {
        let elapsed = now.saturating_sub(self.accepted);
        if elapsed >= self.duration || self.duration.is_zero() {
            return 100.0;
        }
        if elapsed < self.duration / 10 {
            return 0.0;
        }
        let percent = elapsed.as_secs_f64() / self.duration.as_secs_f64() * 100.0;
        (percent * 10.0).floor() / 10.0
    }
}

#[derive(Debug, Clone)]
struct Image {
    name: Option<String>,
    disk_format: String,
    min_disk: i64,
    min_ram: i64,
    /// `key=value` (or bare `key`) strings, as `POST /v2/images` took them.
    tags: Vec<String>,
    os_version: String,
    protected: bool,
    created: Duration,
    /// Status set by creation or `set_image_status`; overridden by `job` while one exists.
    status: ImageStatus,
    status_set: Duration,
    job: Option<String>,
}

/// The OS version IMS records when `__os_version` is not given.
pub const DEFAULT_OS_VERSION: &str = "Other Linux(64 bit)";

/// A checked `POST /v2/images` body (see `sim::create`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewImage {
    pub name: Option<String>,
    pub disk_format: Option<String>,
    pub min_disk: Option<i64>,
    pub min_ram: Option<i64>,
    pub tags: Vec<String>,
    pub os_version: Option<String>,
    pub protected: bool,
}

/// Filter and paging of `GET /v2/cloudimages`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub id: Option<String>,
    /// `tag=key=value` (a bare `key` matches a tag with that key and no value).
    pub tag: Option<String>,
    pub status: Option<String>,
    pub imagetype: Option<String>,
    pub name: Option<String>,
    /// `(op, time)` from `updated_at=gt:2018-10-28T10:00:00Z`.
    pub updated_at: Option<(String, DateTime<Utc>)>,
    pub created_at: Option<(String, DateTime<Utc>)>,
    pub marker: Option<String>,
    pub limit: usize,
}

/// Counters kept alongside the state (the HTTP-level ones live in `stats`).
#[derive(Debug, Default, Clone)]
pub struct JobCounters {
    pub submissions: BTreeMap<String, u64>,
    pub accepted_at: Vec<Duration>,
    pub max_running: usize,
    /// Images removed by `DELETE /v2/images/{id}`.
    pub deleted: u64,
}

/// The account: images sorted by ID, jobs by ID, and the end times of running jobs.
#[derive(Debug)]
pub struct Store {
    start_wall: DateTime<Utc>,
    project_id: String,
    seed: u64,
    config: SimConfig,
    rng: StdRng,
    images: BTreeMap<String, Image>,
    jobs: HashMap<String, JobRecord>,
    running_ends: BinaryHeap<Reverse<Duration>>,
    pub counters: JobCounters,
}

impl Store {
    pub fn new(config: &SimConfig, start_wall: DateTime<Utc>) -> Self {
        let mut store = Self {
            start_wall,
            project_id: config.credentials.project_id.clone(),
            seed: config.seed,
            config: config.clone(),
            // A separate stream from the fault RNG, so faults don't shift job IDs.
            rng: StdRng::seed_from_u64(config.seed ^ 0x05ee_d1d5),
            images: BTreeMap::new(),
            jobs: HashMap::new(),
            running_ends: BinaryHeap::new(),
            counters: JobCounters::default(),
        };
        store.add_queued(config.images.iter().cloned(), Duration::ZERO);
        store
    }

    /// Makes images known as `queued` (IDs are lower-cased; known ones are left alone).
    pub fn add_queued(&mut self, ids: impl IntoIterator<Item = String>, now: Duration) {
        for id in ids {
            self.images
                .entry(id.trim().to_ascii_lowercase())
                .or_insert_with(|| Image {
                    name: None,
                    disk_format: "zvhd2".into(),
                    min_disk: 40,
                    min_ram: 0,
                    tags: Vec::new(),
                    os_version: DEFAULT_OS_VERSION.into(),
                    protected: false,
                    created: now,
                    status: ImageStatus::Queued,
                    status_set: now,
                    job: None,
                });
        }
    }

    /// Forces an image's status (creating the image if unknown); detaches any job from it.
    pub fn set_status(&mut self, id: &str, status: ImageStatus, now: Duration) {
        self.add_queued([id.to_string()], now);
        if let Some(image) = self.images.get_mut(&id.trim().to_ascii_lowercase()) {
            image.status = status;
            image.status_set = now;
            image.job = None;
        }
    }

    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// The image's status as IMS would report it now.
    pub fn image_status(&self, id: &str, now: Duration) -> Option<ImageStatus> {
        self.images
            .get(&id.trim().to_ascii_lowercase())
            .map(|image| self.effective_status(image, now))
    }

    fn effective_status(&self, image: &Image, now: Duration) -> ImageStatus {
        match image.job.as_ref().and_then(|j| self.jobs.get(j)) {
            Some(job) => match job.status(now) {
                JobStatus::Success => ImageStatus::Active,
                JobStatus::Fail => ImageStatus::Killed,
                _ => ImageStatus::Saving,
            },
            None => image.status.clone(),
        }
    }

    fn updated(&self, image: &Image, now: Duration) -> Duration {
        match image.job.as_ref().and_then(|j| self.jobs.get(j)) {
            Some(job) if job.status(now).is_terminal() => job.end(),
            Some(job) => job.accepted,
            None => image.status_set,
        }
    }

    /// Running (not yet terminal) register jobs at `now`.
    pub fn running_jobs(&mut self, now: Duration) -> usize {
        while self
            .running_ends
            .peek()
            .is_some_and(|Reverse(end)| *end <= now)
        {
            self.running_ends.pop();
        }
        self.running_ends.len()
    }

    /// `PUT /v1/cloudimages/{image_id}/upload`: validates, then creates the job.
    pub fn register(
        &mut self,
        image_id: &str,
        image_url: &str,
        now: Duration,
    ) -> Result<String, ImsFault> {
        self.register_with(image_id, image_url, now, ObjectFacts::default())
    }

    /// [`Store::register`] knowing what the OBS side says about the file: its size lengthens
    /// the job (`job_duration_per_gib`), and a file IMS cannot register fails the job.
    pub fn register_with(
        &mut self,
        image_id: &str,
        image_url: &str,
        now: Duration,
        facts: ObjectFacts,
    ) -> Result<String, ImsFault> {
        let Some(image) = self.images.get(image_id) else {
            return Err(ImsFault::new(
                404,
                "IMG.0027",
                format!("The image ID in the request does not exist: {image_id}."),
            ));
        };
        let object = check_image_url(image_url)?;
        let status = self.effective_status(image, now);
        if status != ImageStatus::Queued {
            return Err(ImsFault::new(
                400,
                "IMG.0046",
                format!(
                    "The image is unavailable. Check the image status (it is {}, registration needs queued).",
                    status.as_str()
                ),
            ));
        }
        if self.running_jobs(now) >= self.config.task_limit {
            return Err(ImsFault::new(
                400,
                "IMG.0060",
                "The number of tasks exceeds the flow control limit. Try again later.",
            ));
        }

        let job_id = format!("{:032x}", self.rng.random::<u128>());
        let gib = facts.size_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64;
        let duration = self.config.job_duration.pick(self.rng.random::<f64>())
            + self.config.job_duration_per_gib.mul_f64(gib);
        let outcome = match facts.failure {
            Some((error_code, fail_reason)) => Outcome::Fail {
                error_code,
                fail_reason,
            },
            None => self.outcome(image_id, image_url, object),
        };
        self.jobs.insert(
            job_id.clone(),
            JobRecord {
                image_id: image_id.to_string(),
                accepted: now,
                duration,
                outcome,
            },
        );
        self.running_ends.push(Reverse(now + duration));
        if let Some(image) = self.images.get_mut(image_id) {
            image.job = Some(job_id.clone());
        }
        let running = self.running_jobs(now);
        self.counters.max_running = self.counters.max_running.max(running);
        *self
            .counters
            .submissions
            .entry(image_id.to_string())
            .or_default() += 1;
        self.counters.accepted_at.push(now);
        Ok(job_id)
    }

    /// Failures are explainable: `corrupt` in the object key always fails; otherwise a seeded
    /// hash of the image ID decides, so the same images fail for the same seed and fraction.
    fn outcome(&self, image_id: &str, image_url: &str, object: &str) -> Outcome {
        if object.to_ascii_lowercase().contains("corrupt") {
            return Outcome::Fail {
                error_code: "IMG.0057",
                fail_reason: format!(
                    "The image file is empty, does not exist, is in an incorrect format, or cannot be accessed: {image_url} could not be converted (image header is corrupt)."
                ),
            };
        }
        if unit_hash(self.seed, image_id) < self.config.failure_fraction {
            return Outcome::Fail {
                error_code: "IMG.1075",
                fail_reason: format!(
                    "Failed to register the image file {image_url} (simulated failure, failure_fraction {}).",
                    self.config.failure_fraction
                ),
            };
        }
        Outcome::Success
    }

    /// The job as `GET /v1/{project_id}/jobs/{job_id}` (or, with `progress`,
    /// `GET /v1/cloudimages/job/{job_id}`) answers it; `None` if unknown.
    pub fn job_json(&self, job_id: &str, now: Duration, progress: bool) -> Option<Value> {
        let job = self.jobs.get(job_id)?;
        let status = job.status(now);
        let terminal = status.is_terminal();
        let (error_code, fail_reason) = match (&job.outcome, &status) {
            (
                Outcome::Fail {
                    error_code,
                    fail_reason,
                },
                JobStatus::Fail,
            ) => (Some(*error_code), Some(fail_reason.as_str())),
            _ => (None, None),
        };
        let mut entities = json!({ "image_id": job.image_id });
        if let Some(name) = self.images.get(&job.image_id).and_then(|i| i.name.clone()) {
            entities["image_name"] = json!(name);
        }
        if progress {
            entities["process_percent"] = json!(job.percent(now));
            entities["subJobId"] = json!("");
        }
        Some(json!({
            "status": status.as_str(),
            "job_id": job_id,
            "job_type": REGISTER_JOB_TYPE,
            "begin_time": self.job_time(job.accepted),
            "end_time": terminal.then(|| self.job_time(job.end())),
            "error_code": error_code,
            "fail_reason": fail_reason,
            "entities": entities,
        }))
    }

    /// `POST /v2/images`: a new `queued` image with a seeded random UUID, unless the account
    /// already holds `image_quota` images (400 IMG.0015).
    pub fn create_image(&mut self, new: NewImage, now: Duration) -> Result<Value, ImsFault> {
        if self.images_used() >= self.config.image_quota {
            return Err(ImsFault::new(
                400,
                "IMG.0015",
                format!(
                    "The number of private images has reached the maximum allowed ({}).",
                    self.config.image_quota
                ),
            ));
        }
        let id = uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string();
        self.images.insert(
            id.clone(),
            Image {
                name: new.name,
                disk_format: new.disk_format.unwrap_or_else(|| "zvhd2".into()),
                min_disk: new.min_disk.unwrap_or(40),
                min_ram: new.min_ram.unwrap_or(0),
                tags: new.tags,
                os_version: new.os_version.unwrap_or_else(|| DEFAULT_OS_VERSION.into()),
                protected: new.protected,
                created: now,
                status: ImageStatus::Queued,
                status_set: now,
                job: None,
            },
        );
        Ok(self.image_json(&id, now).unwrap_or(Value::Null))
    }

    /// `DELETE /v2/images/{id}`: removes the image unless a job is writing it (`saving`, 409)
    /// or it is protected (403); an unknown ID is 404 IMG.0144.
    pub fn delete_image(&mut self, id: &str, now: Duration) -> Result<(), ImsFault> {
        let key = id.trim().to_ascii_lowercase();
        let Some(image) = self.images.get(&key) else {
            return Err(ImsFault::new(
                404,
                "IMG.0144",
                format!("The image {id} does not exist."),
            ));
        };
        if self.effective_status(image, now) == ImageStatus::Saving {
            return Err(ImsFault::new(
                409,
                // The real code for deleting an image being written is unconfirmed.
                "SIM.0409",
                format!("The image {id} is being created (saving) and cannot be deleted."),
            ));
        }
        if image.protected {
            return Err(ImsFault::new(
                403,
                "SIM.0403",
                format!("The image {id} is protected and cannot be deleted."),
            ));
        }
        self.images.remove(&key);
        self.counters.deleted += 1;
        Ok(())
    }

    /// Images that count against the quota: every one in the store but those forced to
    /// `deleted` (`DELETE` removes images from the store).
    pub fn images_used(&self) -> u64 {
        self.images
            .values()
            .filter(|image| image.status != ImageStatus::Deleted)
            .count() as u64
    }

    /// The account's `image` quota as `GET /v1/cloudimages/quota` answers it.
    pub fn quota_json(&self) -> Value {
        json!({ "quotas": { "resources": [
            { "type": "image", "used": self.images_used(), "quota": self.config.image_quota,
              "min": 1, "max": 1000 },
        ] } })
    }

    /// `(id, status)` of the images named `name`, in ID order.
    pub fn images_named(&self, name: &str, now: Duration) -> Vec<(String, ImageStatus)> {
        self.images
            .iter()
            .filter(|(_, image)| image.name.as_deref() == Some(name))
            .map(|(id, image)| (id.clone(), self.effective_status(image, now)))
            .collect()
    }

    /// `(id, status)` of the images carrying the tag `key=value`, in ID order.
    pub fn images_tagged(
        &self,
        key: &str,
        value: &str,
        now: Duration,
    ) -> Vec<(String, ImageStatus)> {
        self.images
            .iter()
            .filter(|(_, image)| has_tag(&image.tags, key, value))
            .map(|(id, image)| (id.clone(), self.effective_status(image, now)))
            .collect()
    }

    /// How many images carry each name (unnamed ones are not counted).
    pub fn images_per_name(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for name in self.images.values().filter_map(|image| image.name.as_ref()) {
            *counts.entry(name.clone()).or_default() += 1;
        }
        counts
    }

    /// The platform, OS type and bit count of an `__os_version`, from `os_versions` (else
    /// guessed from its text).
    fn os_facts(&self, os_version: &str) -> (String, &'static str, &'static str) {
        let platform = self
            .config
            .os_versions
            .iter()
            .find(|(_, versions)| versions.iter().any(|v| v == os_version))
            .map_or_else(|| "Other".to_string(), |(platform, _)| platform.clone());
        (platform, os_type_of(os_version), os_bit_of(os_version))
    }

    /// One image as `ImageInfo` JSON.
    pub fn image_json(&self, id: &str, now: Duration) -> Option<Value> {
        let image = self.images.get(id)?;
        Some(self.render_image(id, image, now))
    }

    fn render_image(&self, id: &str, image: &Image, now: Duration) -> Value {
        let status = self.effective_status(image, now);
        let updated = self.updated(image, now);
        let active = status == ImageStatus::Active;
        let (platform, os_type, os_bit) = self.os_facts(&image.os_version);
        json!({
            "id": id,
            "name": image.name.clone().unwrap_or_else(|| format!("sim-{}", &id[..id.len().min(8)])),
            "status": status.as_str(),
            "disk_format": image.disk_format,
            "container_format": "bare",
            "min_disk": image.min_disk,
            "min_ram": image.min_ram,
            "owner": self.project_id,
            "visibility": "private",
            "protected": image.protected,
            "tags": image.tags,
            "__imagetype": "private",
            "__os_version": image.os_version,
            "__os_type": os_type,
            "__platform": platform,
            "__os_bit": os_bit,
            "__image_size": if active { "10737418240" } else { "0" },
            "__isregistered": "true",
            "__root_origin": "file",
            "__image_source_type": "uds",
            "virtual_env_type": "FusionCompute",
            "hw_firmware_type": "bios",
            "created_at": self.image_time(image.created),
            "updated_at": self.image_time(updated),
            "active_at": active.then(|| self.image_time(updated)),
            "file": format!("/v2/images/{id}/file"),
            "self": format!("/v2/images/{id}"),
            "schema": "/v2/schemas/image",
        })
    }

    /// `GET /v2/cloudimages`: filtered images in ID order from after `marker`, at most
    /// `limit`, and the marker of the next page when there is one.
    pub fn list(&self, filter: &ListFilter, now: Duration) -> (Vec<Value>, Option<String>) {
        use std::ops::Bound;
        if filter.imagetype.as_deref().is_some_and(|t| t != "private") {
            return (Vec::new(), None);
        }
        let start = match &filter.marker {
            Some(marker) => Bound::Excluded(marker.clone()),
            None => Bound::Unbounded,
        };
        let range: Box<dyn Iterator<Item = (&String, &Image)>> = match &filter.id {
            Some(id) => Box::new(self.images.get_key_value(id.as_str()).into_iter().filter(
                |(k, _)| {
                    filter
                        .marker
                        .as_ref()
                        .is_none_or(|m| k.as_str() > m.as_str())
                },
            )),
            None => Box::new(self.images.range((start, Bound::Unbounded))),
        };
        let mut page = Vec::new();
        let mut next_marker = None;
        for (id, image) in range {
            if !self.matches(filter, image, now) {
                continue;
            }
            if page.len() == filter.limit {
                next_marker = page
                    .last()
                    .and_then(|v: &Value| v["id"].as_str().map(String::from));
                break;
            }
            page.push(self.render_image(id, image, now));
        }
        (page, next_marker)
    }

    fn matches(&self, filter: &ListFilter, image: &Image, now: Duration) -> bool {
        let seconds = |offset: Duration| self.wall(offset).timestamp();
        let status_ok = filter.status.as_ref().is_none_or(|status| {
            self.effective_status(image, now)
                .as_str()
                .eq_ignore_ascii_case(status)
        });
        let name_ok = filter
            .name
            .as_ref()
            .is_none_or(|name| image.name.as_deref() == Some(name.as_str()));
        let tag_ok = filter.tag.as_ref().is_none_or(|tag| {
            let (key, value) = tag.split_once('=').unwrap_or((tag.as_str(), ""));
            has_tag(&image.tags, key, value)
        });
        let updated_ok = filter
            .updated_at
            .as_ref()
            .is_none_or(|(op, t)| compare(op, seconds(self.updated(image, now)), t.timestamp()));
        let created_ok = filter
            .created_at
            .as_ref()
            .is_none_or(|(op, t)| compare(op, seconds(image.created), t.timestamp()));
        status_ok && name_ok && tag_ok && updated_ok && created_ok
    }

    fn wall(&self, offset: Duration) -> DateTime<Utc> {
        self.start_wall + chrono::Duration::from_std(offset).unwrap_or_default()
    }

    /// Job times: ISO-8601 with milliseconds and `Z`, as in the API examples.
    fn job_time(&self, offset: Duration) -> String {
        self.wall(offset)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Image times: whole seconds with `Z`, as in the API examples.
    fn image_time(&self, offset: Duration) -> String {
        self.wall(offset).to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// Whether `tags` holds `key=value` (a bare `key` tag has the value `""`).
fn has_tag(tags: &[String], key: &str, value: &str) -> bool {
    tags.iter().any(|tag| {
        let (k, v) = tag.split_once('=').unwrap_or((tag.as_str(), ""));
        k == key && v == value
    })
}

/// `Windows` or `Linux` as IMS reports `__os_type`.
fn os_type_of(os_version: &str) -> &'static str {
    if os_version.to_ascii_lowercase().contains("windows") {
        "Windows"
    } else {
        "Linux"
    }
}

/// `"32"` or `"64"` (a string, as IMS sends `__os_bit`).
fn os_bit_of(os_version: &str) -> &'static str {
    let text = os_version.to_ascii_lowercase().replace(' ', "");
    if text.contains("32bit") || text.contains("(32bit)") {
        "32"
    } else {
        "64"
    }
}

/// `GET /v1/cloudimages/os_version`: the bare array of platforms with their version lists.
pub fn os_versions_json(os_versions: &BTreeMap<String, Vec<String>>) -> Value {
    Value::Array(
        os_versions
            .iter()
            .map(|(platform, versions)| {
                let list: Vec<Value> = versions
                    .iter()
                    .map(|version| {
                        json!({
                            "platform": platform,
                            "os_version_key": version,
                            "os_version": version,
                            "os_bit": if os_bit_of(version) == "32" { 32 } else { 64 },
                            "os_type": os_type_of(version),
                        })
                    })
                    .collect();
                json!({ "platform": platform, "version_list": list })
            })
            .collect(),
    )
}

/// `gt gte lt lte eq neq` on whole seconds (unknown ops match nothing).
fn compare(op: &str, value: i64, against: i64) -> bool {
    match op {
        "gt" => value > against,
        "gte" => value >= against,
        "lt" => value < against,
        "lte" => value <= against,
        "eq" => value == against,
        "neq" => value != against,
        _ => false,
    }
}

/// Parses `gt:2018-10-28T10:00:00Z` (or `yyyy-MM-dd hh:mm:ss`) into `(op, time)`.
pub fn parse_time_filter(raw: &str) -> Option<(String, DateTime<Utc>)> {
    let (op, time) = raw.split_once(':')?;
    let op = op.trim().to_ascii_lowercase();
    if !["gt", "gte", "lt", "lte", "eq", "neq"].contains(&op.as_str()) {
        return None;
    }
    Some((op, crate::ims::types::parse_api_time(time)?))
}

/// Checks `bucket:object` like IMS; answers the object key.
pub fn check_image_url(image_url: &str) -> Result<&str, ImsFault> {
    let bad_url = || {
        ImsFault::new(
            400,
            "IMG.0017",
            format!("The URL format is incorrect: {image_url:?} (expected bucket:object)."),
        )
    };
    let (bucket, object) = image_url.split_once(':').ok_or_else(bad_url)?;
    if !valid_bucket(bucket)
        || object.is_empty()
        || object.len() > 1024
        || object.starts_with('/')
        || object.ends_with('/')
    {
        return Err(bad_url());
    }
    if object.chars().any(char::is_whitespace) {
        return Err(ImsFault::new(
            400,
            "IMG.0175",
            "The folder name or file name contains spaces.",
        ));
    }
    let file = object.rsplit('/').next().unwrap_or(object);
    let extension = file
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    if let Some(ext) = extension.filter(|ext| UNSUPPORTED_EXTENSIONS.contains(&ext.as_str())) {
        return Err(ImsFault::new(
            400,
            "IMG.0057",
            format!(
                "The image file is in an incorrect format: {file:?} (.{ext} cannot be registered). Supported formats: {}.",
                SUPPORTED_EXTENSIONS.join(", ")
            ),
        ));
    }
    Ok(object)
}

/// OBS bucket naming rules (ims-api.md section 9).
fn valid_bucket(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..")
        && !bucket.contains(".-")
        && !bucket.contains("-.")
        && bucket.parse::<std::net::Ipv4Addr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::DurationDist;

    const ID: &str = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";
    const URL: &str = "bucket1:folder/disk.qcow2";

    fn store(config: SimConfig) -> Store {
        let mut store = Store::new(&config, Utc::now());
        store.add_queued([ID.to_string()], Duration::ZERO);
        store
    }

    fn fixed(secs: u64) -> SimConfig {
        SimConfig {
            job_duration: DurationDist::Fixed(Duration::from_secs(secs)),
            ..SimConfig::default()
        }
    }

    fn at(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn job_and_image_follow_the_clock() {
        let mut s = store(fixed(10));
        let job = s.register(ID, URL, at(1.0)).unwrap();
        assert_eq!(job.len(), 32);
        let status = |s: &Store, t: f64| s.job_json(&job, at(t), true).unwrap();
        assert_eq!(status(&s, 1.5)["status"], "INIT");
        assert_eq!(status(&s, 1.5)["entities"]["process_percent"], 0.0);
        assert_eq!(status(&s, 6.0)["status"], "RUNNING");
        assert_eq!(status(&s, 6.0)["entities"]["process_percent"], 50.0);
        assert!(status(&s, 6.0)["end_time"].is_null());
        assert_eq!(s.image_status(ID, at(6.0)), Some(ImageStatus::Saving));
        assert_eq!(status(&s, 11.0)["status"], "SUCCESS");
        assert!(status(&s, 11.0)["end_time"].is_string());
        assert!(status(&s, 11.0)["error_code"].is_null());
        assert_eq!(s.image_status(ID, at(11.0)), Some(ImageStatus::Active));
        assert_eq!(s.counters.submissions[ID], 1);
    }

    #[test]
    fn object_size_lengthens_the_job_and_obs_facts_can_fail_it() {
        let mut s = store(SimConfig {
            job_duration_per_gib: Duration::from_millis(100),
            ..fixed(1)
        });
        let facts = |size: u64, failure: Option<(&'static str, String)>| ObjectFacts {
            size_bytes: Some(size),
            failure,
        };
        // 1 s + 20 GiB x 100 ms = 3 s.
        let job = s
            .register_with(ID, URL, at(0.0), facts(20 << 30, None))
            .unwrap();
        assert_eq!(
            s.job_json(&job, at(2.9), false).unwrap()["status"],
            "RUNNING"
        );
        assert_eq!(
            s.job_json(&job, at(3.0), false).unwrap()["status"],
            "SUCCESS"
        );

        let other = "5ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";
        s.add_queued([other.to_string()], Duration::ZERO);
        let failing = facts(1 << 30, Some(("IMG.0058", "another region".to_string())));
        let job = s.register_with(other, URL, at(0.0), failing).unwrap();
        let answer = s.job_json(&job, at(2.0), false).unwrap();
        assert_eq!(answer["status"], "FAIL");
        assert_eq!(answer["error_code"], "IMG.0058");
    }

    #[test]
    fn corrupt_object_fails_with_reason_and_kills_image() {
        let mut s = store(fixed(2));
        let job = s.register(ID, "bucket1:corrupt-disk.vhd", at(0.0)).unwrap();
        let answer = s.job_json(&job, at(3.0), false).unwrap();
        assert_eq!(answer["status"], "FAIL");
        assert_eq!(answer["error_code"], "IMG.0057");
        assert!(answer["fail_reason"].as_str().unwrap().contains("corrupt"));
        assert_eq!(s.image_status(ID, at(3.0)), Some(ImageStatus::Killed));
    }

    #[test]
    fn registering_twice_or_unknown_is_refused() {
        let mut s = store(fixed(2));
        s.register(ID, URL, at(0.0)).unwrap();
        assert_eq!(s.register(ID, URL, at(0.5)).unwrap_err().code, "IMG.0046");
        assert_eq!(s.register(ID, URL, at(5.0)).unwrap_err().code, "IMG.0046");
        let unknown = s.register("00000000-0000-0000-0000-000000000000", URL, at(0.0));
        let unknown = unknown.unwrap_err();
        assert_eq!((unknown.status, unknown.code), (404, "IMG.0027"));
        assert_eq!(s.counters.submissions[ID], 1);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert_eq!(check_image_url("nocolon").unwrap_err().code, "IMG.0017");
        assert_eq!(
            check_image_url("Bad_Bucket:a.vhd").unwrap_err().code,
            "IMG.0017"
        );
        assert_eq!(
            check_image_url("obs://b/a.vhd").unwrap_err().code,
            "IMG.0017"
        );
        assert_eq!(check_image_url("bucket1:").unwrap_err().code, "IMG.0017");
        assert_eq!(
            check_image_url("bucket1:my disk.vhd").unwrap_err().code,
            "IMG.0175"
        );
        assert_eq!(
            check_image_url("bucket1:disk.txt").unwrap_err().code,
            "IMG.0057"
        );
        assert_eq!(
            check_image_url("bucket1:vm/export.OVA").unwrap_err().code,
            "IMG.0057"
        );
        // No extension, or one that names no format: the content decides (format: in the
        // manifest), so the register is accepted.
        assert_eq!(check_image_url("bucket1:disk").unwrap(), "disk");
        assert_eq!(
            check_image_url("bucket1:raw/ledger-db.img").unwrap(),
            "raw/ledger-db.img"
        );
        assert_eq!(
            check_image_url("bucket1:a.b/disk.VMDK").unwrap(),
            "a.b/disk.VMDK"
        );
    }

    #[test]
    fn task_limit_answers_img_0060_until_jobs_end() {
        let mut s = store(SimConfig {
            task_limit: 2,
            ..fixed(10)
        });
        let ids: Vec<String> = (0..3).map(|i| format!("id-{i}")).collect();
        s.add_queued(ids.clone(), Duration::ZERO);
        s.register(&ids[0], URL, at(0.0)).unwrap();
        s.register(&ids[1], URL, at(1.0)).unwrap();
        assert_eq!(
            s.register(&ids[2], URL, at(2.0)).unwrap_err().code,
            "IMG.0060"
        );
        assert_eq!(s.running_jobs(at(9.0)), 2);
        s.register(&ids[2], URL, at(10.0)).unwrap();
        assert_eq!(s.running_jobs(at(10.0)), 2);
        assert_eq!(s.counters.max_running, 2);
    }

    #[test]
    fn failure_fraction_is_seeded_and_roughly_right() {
        let config = SimConfig {
            failure_fraction: 0.3,
            task_limit: 10_000,
            ..fixed(1)
        };
        let run = || {
            let mut s = store(config.clone());
            let ids: Vec<String> = (0..2000).map(|i| format!("img-{i}")).collect();
            s.add_queued(ids.clone(), Duration::ZERO);
            ids.iter()
                .filter(|id| {
                    let job = s.register(id, URL, at(0.0)).unwrap();
                    s.job_json(&job, at(5.0), false).unwrap()["status"] == "FAIL"
                })
                .cloned()
                .collect::<Vec<_>>()
        };
        let (first, second) = (run(), run());
        assert_eq!(first, second);
        assert!((500..700).contains(&first.len()), "{}", first.len());
    }

    #[test]
    fn listing_filters_and_pages() {
        let mut s = store(fixed(1));
        let ids: Vec<String> = (0..25).map(|i| format!("id-{i:02}")).collect();
        s.add_queued(ids.clone(), Duration::ZERO);
        s.register("id-03", URL, at(0.0)).unwrap();
        s.set_status("id-04", ImageStatus::Killed, at(0.0));

        let mut filter = ListFilter {
            limit: 10,
            ..ListFilter::default()
        };
        let mut seen = Vec::new();
        loop {
            let (page, next) = s.list(&filter, at(2.0));
            seen.extend(page.iter().map(|v| v["id"].as_str().unwrap().to_string()));
            match next {
                Some(marker) => filter.marker = Some(marker),
                None => break,
            }
        }
        assert_eq!(seen.len(), 26);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));

        let only = |filter: ListFilter| {
            s.list(&filter, at(2.0))
                .0
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let base = ListFilter {
            limit: 500,
            ..ListFilter::default()
        };
        assert_eq!(
            only(ListFilter {
                status: Some("active".into()),
                ..base.clone()
            }),
            ["id-03"]
        );
        assert_eq!(
            only(ListFilter {
                id: Some("id-04".into()),
                imagetype: Some("private".into()),
                ..base.clone()
            }),
            ["id-04"]
        );
        assert!(
            only(ListFilter {
                id: Some("id-04".into()),
                imagetype: Some("gold".into()),
                ..base.clone()
            })
            .is_empty()
        );
        assert!(
            only(ListFilter {
                id: Some("missing".into()),
                ..base.clone()
            })
            .is_empty()
        );
        let image = s.image_json("id-03", at(2.0)).unwrap();
        assert_eq!(image["status"], "active");
        assert!(image["active_at"].is_string());
    }

    fn new_image(name: &str, tags: &[&str]) -> NewImage {
        NewImage {
            name: Some(name.to_string()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            os_version: Some("Windows Server 2019 Standard 64bit".into()),
            min_ram: Some(2048),
            ..NewImage::default()
        }
    }

    #[test]
    fn created_images_carry_their_metadata_and_are_filtered_by_tag() {
        let mut s = store(fixed(1));
        let image = s
            .create_image(
                new_image("web-01", &["imsreg-key=aaa", "team=web"]),
                at(1.0),
            )
            .unwrap();
        let id = image["id"].as_str().unwrap().to_string();
        assert_eq!(image["status"], "queued");
        assert_eq!(image["tags"], json!(["imsreg-key=aaa", "team=web"]));
        assert_eq!(image["__os_version"], "Windows Server 2019 Standard 64bit");
        assert_eq!(image["__os_type"], "Windows");
        assert_eq!(image["__platform"], "Windows");
        assert_eq!(image["min_ram"], 2048);
        let plain = s.create_image(NewImage::default(), at(1.0)).unwrap();
        assert_eq!(plain["__os_version"], DEFAULT_OS_VERSION);
        assert_eq!(plain["__platform"], "Other");

        let tagged = |tag: &str| {
            let filter = ListFilter {
                tag: Some(tag.to_string()),
                limit: 500,
                ..ListFilter::default()
            };
            s.list(&filter, at(2.0))
                .0
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(tagged("imsreg-key=aaa"), vec![id.clone()]);
        assert!(tagged("imsreg-key=aa").is_empty());
        assert!(tagged("imsreg-key").is_empty());
        assert_eq!(
            s.images_named("web-01", at(2.0)),
            [(id.clone(), ImageStatus::Queued)]
        );
        assert_eq!(s.images_tagged("team", "web", at(2.0)).len(), 1);
        assert_eq!(s.images_per_name()["web-01"], 1);
    }

    #[test]
    fn the_quota_counts_images_and_refuses_one_more() {
        let mut s = store(SimConfig {
            image_quota: 3,
            ..fixed(1)
        });
        s.create_image(new_image("a", &[]), at(0.0)).unwrap();
        s.set_status("gone", ImageStatus::Deleted, at(0.0));
        s.create_image(new_image("b", &[]), at(0.0)).unwrap();
        assert_eq!(s.quota_json()["quotas"]["resources"][0]["used"], 3);
        let full = s.create_image(new_image("c", &[]), at(0.0)).unwrap_err();
        assert_eq!((full.status, full.code), (400, "IMG.0015"));
        assert_eq!(s.quota_json()["quotas"]["resources"][0]["quota"], 3);
        // A deleted image frees its place.
        s.delete_image(ID, at(0.0)).unwrap();
        s.create_image(new_image("c", &[]), at(0.0)).unwrap();
    }

    #[test]
    fn deleting_refuses_saving_and_unknown_images() {
        let mut s = store(fixed(10));
        s.register(ID, URL, at(0.0)).unwrap();
        let saving = s.delete_image(ID, at(1.0)).unwrap_err();
        assert_eq!(saving.status, 409);
        // Once the job ended (active), it can go.
        s.delete_image(ID, at(11.0)).unwrap();
        assert!(s.image_status(ID, at(11.0)).is_none());
        let unknown = s.delete_image(ID, at(12.0)).unwrap_err();
        assert_eq!((unknown.status, unknown.code), (404, "IMG.0144"));
        let protected = s
            .create_image(
                NewImage {
                    protected: true,
                    ..NewImage::default()
                },
                at(0.0),
            )
            .unwrap();
        let refused = s
            .delete_image(protected["id"].as_str().unwrap(), at(0.0))
            .unwrap_err();
        assert_eq!(refused.status, 403);
        assert_eq!(s.counters.deleted, 1);
    }

    #[test]
    fn os_versions_render_as_the_platform_array() {
        let rendered = os_versions_json(&crate::sim::config::default_os_versions());
        let platforms = rendered.as_array().unwrap();
        let ubuntu = platforms
            .iter()
            .find(|p| p["platform"] == "Ubuntu")
            .unwrap();
        assert_eq!(
            ubuntu["version_list"][0]["os_version"],
            "Ubuntu 22.04 server 64bit"
        );
        assert_eq!(ubuntu["version_list"][0]["os_bit"], 64);
        assert_eq!(ubuntu["version_list"][0]["os_type"], "Linux");
        let windows = platforms
            .iter()
            .find(|p| p["platform"] == "Windows")
            .unwrap();
        assert_eq!(windows["version_list"][0]["os_type"], "Windows");
    }

    #[test]
    fn time_filters_parse() {
        let (op, t) = parse_time_filter("gt:2018-10-28T10:00:00Z").unwrap();
        assert_eq!(op, "gt");
        assert_eq!(t.timestamp(), 1540720800);
        assert!(parse_time_filter("after:2018-10-28T10:00:00Z").is_none());
        assert!(compare("gte", 5, 5) && !compare("gt", 5, 5));
    }

    #[test]
    fn unit_hash_is_stable() {
        assert_eq!(unit_hash(1, "a"), unit_hash(1, "a"));
        assert_ne!(unit_hash(1, "a"), unit_hash(2, "a"));
        assert!((0.0..1.0).contains(&unit_hash(3, "xyz")));
    }
}
