//! An in-memory IMS for the engine's unit tests: images with lazily advancing jobs (on tokio's
//! clock, so paused-clock tests run instantly), scripted faults, and counters that prove the
//! engine's promises (one accepted registration per image, the active-jobs bound, few queries).
//!
//! It also creates images (`POST /v2/images`) with names, tags and creation times, finds them
//! by tag, answers the OS version list and the image quota, and deletes them, with scripted
//! create faults (an answer lost after the image was created, a create that lands later) and
//! one-shot errors for the other calls, so that the create stage can be tested against it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::ids::{ImageId, JobId};
use crate::ims::{
    ApiError, CreateImageMetadataRequest, ImageInfo, ImageQuota, ImageStatus, ImageStatusEntry,
    ImageStatusPage, ImsApi, ImsError, Job, JobEntities, JobStatus, ListImagesQuery,
    ListImagesResponse, OsVersion, types::PageInfo,
};
use crate::manifest::{ImageEntry, ImageFormat, ImageUrl};

use super::plan::PlannedImage;

pub fn planned(image_id: &str, known_job_id: Option<&str>) -> PlannedImage {
    PlannedImage {
        entry: ImageEntry {
            image_id: id_of(image_id),
            image_url: ImageUrl {
                bucket: "bucket".into(),
                object: format!("{image_id}.qcow2"),
            },
            name: Some(format!("name-{image_id}")),
            format: ImageFormat::Qcow2,
            line: 1,
        },
        known_job_id: known_job_id.map(job_id),
        size_bytes: None,
    }
}

/// The text of the `n`th test image's ID (the fake keeps images by their text, as IMS does).
pub fn image_id(n: usize) -> String {
    format!("00000000-0000-0000-0000-{n:012}")
}

/// The `n`th test image's ID.
pub fn id(n: usize) -> ImageId {
    id_of(&image_id(n))
}

pub fn id_of(text: &str) -> ImageId {
    ImageId::parse(text).unwrap()
}

pub fn job_id(text: &str) -> JobId {
    JobId::parse(text).unwrap()
}

/// What the client makes of a register answer: a job ID of the wrong shape is no answer.
fn checked_job_id(answer: &str) -> Result<JobId, ImsError> {
    JobId::parse(answer).map_err(|invalid| ImsError::Ambiguous {
        operation: "RegisterImage".to_string(),
        detail: format!(
            "IMS answered with success, but the answer cannot be used ({invalid}); the \
             registration was probably accepted"
        ),
    })
}

/// A scripted failure of the next register call.
#[derive(Debug, Clone)]
pub enum Fault {
    Throttle(Option<Duration>),
    ServerError,
    /// The job is created but the answer is lost.
    AcceptedThenDropped,
    /// The connection drops before IMS acts.
    DroppedNotAccepted,
    Unauthorized,
    Final(&'static str),
    /// Answer this call normally (lets a test place later faults on exact calls).
    Pass,
    /// The job is created, but the answer carries this instead of its job ID.
    AcceptedWithJobId(String),
    /// The call is never answered (a server that hangs after reading the request).
    Hang,
}

/// A scripted outcome of the next `create_image_metadata` call.
#[derive(Debug, Clone)]
pub enum CreateFault {
    /// The image is created, but the answer is lost (`ImsError::Ambiguous`).
    CreatedThenDropped,
    /// The image is created, and the answer is this error instead (e.g. a 500 from a gateway
    /// that timed out while IMS went on).
    CreatedThenError(ImsError),
    /// The connection drops before IMS acts (`ImsError::Ambiguous`, nothing created).
    DroppedNotCreated,
    /// Answered with this error, nothing created.
    Error(ImsError),
    /// The answer is lost at once and the image appears only this long after the call (on
    /// tokio's clock): a create still on its way when its sender gave up or died.
    CreatedLater(Duration),
    /// Answer this call normally (places later faults on exact calls).
    Pass,
}

/// The calls [`FakeIms::fail_next`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeCall {
    FindByTag,
    ListTagged,
    OsVersions,
    Quota,
    Delete,
}

/// An image created through `create_image_metadata`, as the fake keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedImage {
    pub id: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub status: ImageStatus,
    pub created_at: String,
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub register_calls: u32,
    pub accepted: HashMap<String, u32>,
    pub show_job: u32,
    pub show_job_progress: u32,
    pub list_images: u32,
    pub get_image: u32,
    pub max_running: usize,
    pub flow_control_answers: u32,
    /// Calls of any kind received after the first 401.
    pub calls_after_auth_failure: u32,
    /// Arrival of each register call and each job query on tokio's clock.
    pub register_at: Vec<Instant>,
    pub job_query_at: Vec<Instant>,
    /// `create_image_metadata` calls received, and images they created (answered or not).
    pub create_calls: u32,
    pub images_created: u32,
    pub find_by_tag: u32,
    pub list_tagged: u32,
    pub os_versions: u32,
    pub quota: u32,
    pub delete_calls: u32,
    /// IDs of the images deleted, in order.
    pub deleted: Vec<String>,
}

struct FakeImage {
    status: ImageStatus,
    job: Option<String>,
    updated: Instant,
    /// Set for images made by `create_image_metadata` (and `add_created`).
    meta: Option<Meta>,
}

/// What a created image carries besides its status.
#[derive(Clone)]
struct Meta {
    name: Option<String>,
    tags: Vec<String>,
    os_version: Option<String>,
    disk_format: Option<String>,
    min_disk: Option<i64>,
    min_ram: Option<i64>,
    created: Instant,
}

/// A create that lands later ([`CreateFault::CreatedLater`]).
struct PendingCreate {
    at: Instant,
    id: String,
    meta: Meta,
}

struct FakeJob {
    image_id: String,
    started: Instant,
    fails: bool,
}

struct State {
    images: BTreeMap<String, FakeImage>,
    jobs: HashMap<String, FakeJob>,
    register_faults: VecDeque<Fault>,
    failing_images: Vec<String>,
    counters: Counters,
    auth_failed: bool,
    next_job: u64,
    /// Jobs IMS no longer answers for (dropped after a day); their images still advance.
    hidden_jobs: Vec<String>,
    create_faults: VecDeque<CreateFault>,
    call_faults: HashMap<FakeCall, VecDeque<ImsError>>,
    pending_creates: Vec<PendingCreate>,
    next_created: u64,
    os_versions: Vec<OsVersion>,
    image_quota: u64,
}

pub struct FakeIms {
    state: Mutex<State>,
    job_duration: Duration,
    /// IMS's task limit: more running jobs answer IMG.0060.
    task_limit: usize,
    epoch: (Instant, DateTime<Utc>),
    /// Whether `show_job_progress` is answered (else 404).
    pub progress_supported: bool,
}

impl FakeIms {
    pub fn new(queued: usize, job_duration: Duration) -> Self {
        let now = Instant::now();
        let images = (0..queued)
            .map(|n| {
                (
                    image_id(n),
                    FakeImage {
                        status: ImageStatus::Queued,
                        job: None,
                        updated: now,
                        meta: None,
                    },
                )
            })
            .collect();
        FakeIms {
            state: Mutex::new(State {
                images,
                jobs: HashMap::new(),
                register_faults: VecDeque::new(),
                failing_images: Vec::new(),
                counters: Counters::default(),
                auth_failed: false,
                next_job: 0,
                hidden_jobs: Vec::new(),
                create_faults: VecDeque::new(),
                call_faults: HashMap::new(),
                pending_creates: Vec::new(),
                next_created: 0,
                os_versions: default_os_versions(),
                image_quota: 1000,
            }),
            job_duration,
            task_limit: usize::MAX,
            epoch: (now, Utc::now()),
            progress_supported: true,
        }
    }

    /// Adds private images that are not in any manifest (already active).
    pub fn with_other_images(self, count: usize) -> Self {
        {
            let mut state = self.lock();
            let now = Instant::now();
            for n in 0..count {
                state.images.insert(
                    format!("0000other-0000-0000-0000-{n:012}"),
                    FakeImage {
                        status: ImageStatus::Active,
                        job: None,
                        updated: now,
                        meta: None,
                    },
                );
            }
        }
        self
    }

    pub fn with_task_limit(mut self, limit: usize) -> Self {
        self.task_limit = limit;
        self
    }

    pub fn fault(&self, fault: Fault) {
        self.lock().register_faults.push_back(fault);
    }

    pub fn fail_job_of(&self, image_id: &str) {
        self.lock().failing_images.push(image_id.to_string());
    }

    pub fn set_status(&self, image_id: &str, status: ImageStatus) {
        let mut state = self.lock();
        let now = Instant::now();
        state.images.insert(
            image_id.to_string(),
            FakeImage {
                status,
                job: None,
                updated: now,
                meta: None,
            },
        );
    }

    /// The image quota (`GET /v1/cloudimages/quota`'s `quota`; default 1000). Creating an image
    /// when the account holds that many answers 400 IMG.0015.
    pub fn with_image_quota(self, quota: u64) -> Self {
        self.lock().image_quota = quota;
        self
    }

    /// The OS versions the region accepts (default: [`default_os_versions`]).
    pub fn with_os_versions(self, versions: Vec<OsVersion>) -> Self {
        self.lock().os_versions = versions;
        self
    }

    /// Scripts the next `create_image_metadata` call (faults are used in order).
    pub fn create_fault(&self, fault: CreateFault) {
        self.lock().create_faults.push_back(fault);
    }

    /// Makes the next call of this kind answer `error` (one-shot; several queue up).
    pub fn fail_next(&self, call: FakeCall, error: ImsError) {
        self.lock()
            .call_faults
            .entry(call)
            .or_default()
            .push_back(error);
    }

    /// Adds an image as an earlier run would have created it: name, `key=value` tags, status
    /// (a `saving` one gets a running job); answers its ID.
    pub fn add_created(&self, name: &str, tags: &[&str], status: ImageStatus) -> String {
        let now = Instant::now();
        let mut state = self.lock();
        let id = state.new_created_id();
        let meta = Meta {
            name: Some(name.to_string()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            os_version: None,
            disk_format: None,
            min_disk: None,
            min_ram: None,
            created: now,
        };
        let saving = status == ImageStatus::Saving;
        state.images.insert(
            id.clone(),
            FakeImage {
                status: if saving { ImageStatus::Queued } else { status },
                job: None,
                updated: now,
                meta: Some(meta),
            },
        );
        if saving {
            state.new_job(&id, now, false);
        }
        id
    }

    /// Every image made by `create_image_metadata` or [`FakeIms::add_created`] (deleted ones
    /// excluded), in creation order, with its status now.
    pub fn created(&self) -> Vec<CreatedImage> {
        let mut state = self.lock();
        let now = Instant::now();
        state.advance(now, self.job_duration);
        let mut created: Vec<(Instant, CreatedImage)> = state
            .images
            .iter()
            .filter_map(|(id, image)| {
                let meta = image.meta.as_ref()?;
                Some((
                    meta.created,
                    CreatedImage {
                        id: id.clone(),
                        name: meta.name.clone(),
                        tags: meta.tags.clone(),
                        status: image.status.clone(),
                        created_at: self.wall(meta.created),
                    },
                ))
            })
            .collect();
        created.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        created.into_iter().map(|(_, image)| image).collect()
    }

    /// The IDs and statuses of the images with this name (the "exactly one per entry" check).
    pub fn images_named(&self, name: &str) -> Vec<(String, ImageStatus)> {
        self.created()
            .into_iter()
            .filter(|image| image.name.as_deref() == Some(name))
            .map(|image| (image.id, image.status))
            .collect()
    }

    /// The IDs of the images that carry the tag `key=value`.
    pub fn images_tagged(&self, key: &str, value: &str) -> Vec<String> {
        let tag = format!("{key}={value}");
        self.created()
            .into_iter()
            .filter(|image| image.tags.contains(&tag))
            .map(|image| image.id)
            .collect()
    }

    /// Starts a job as an earlier run would have; returns its ID.
    pub fn start_job(&self, image_id: &str) -> JobId {
        let mut state = self.lock();
        job_id(&state.new_job(image_id, Instant::now(), false))
    }

    pub fn hide_job(&self, job_id: &str) {
        self.lock().hidden_jobs.push(job_id.to_string());
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    pub fn status_of(&self, image_id: &str) -> Option<ImageStatus> {
        let mut state = self.lock();
        state.advance(Instant::now(), self.job_duration);
        state.images.get(image_id).map(|i| i.status.clone())
    }

    /// Whether the next register call hangs ([`Fault::Hang`]); counts it if so.
    fn takes_hang_fault(&self) -> bool {
        let mut state = self.lock();
        if !matches!(state.register_faults.front(), Some(Fault::Hang)) {
            return false;
        }
        state.register_faults.pop_front();
        state.counters.register_calls += 1;
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Locks, advances the jobs to now, and counts the call.
    fn enter(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.lock();
        if state.auth_failed {
            state.counters.calls_after_auth_failure += 1;
        }
        state.advance(Instant::now(), self.job_duration);
        state
    }

    /// A tokio instant as the API's UTC text (whole seconds, as IMS writes image times).
    fn wall(&self, at: Instant) -> String {
        let time = self.epoch.1
            + chrono::Duration::from_std(at.saturating_duration_since(self.epoch.0))
                .unwrap_or_default();
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn info(&self, id: &str, image: &FakeImage) -> ImageInfo {
        let meta = image.meta.as_ref();
        ImageInfo {
            id: id.to_string(),
            name: meta.and_then(|m| m.name.clone()),
            status: image.status.clone(),
            disk_format: meta.and_then(|m| m.disk_format.clone()),
            owner: None,
            visibility: None,
            imagetype: Some("private".into()),
            image_size: None,
            min_disk: meta.and_then(|m| m.min_disk),
            min_ram: meta.and_then(|m| m.min_ram),
            os_version: meta.map(|m| {
                m.os_version
                    .clone()
                    .unwrap_or_else(|| "Other Linux(64 bit)".to_string())
            }),
            tags: meta.map(|m| m.tags.clone()).unwrap_or_default(),
            created_at: meta.map(|m| self.wall(m.created)),
            updated_at: Some(self.wall(image.updated)),
            active_at: None,
        }
    }

    /// A one-shot error scripted for this call, if any.
    fn scripted(state: &mut State, call: FakeCall) -> Option<ImsError> {
        state.call_faults.get_mut(&call)?.pop_front()
    }

    /// The private images whose tags pass `keep`, in ID order.
    fn tagged(&self, state: &State, keep: impl Fn(&ImageInfo) -> bool) -> Vec<ImageInfo> {
        state
            .images
            .iter()
            .map(|(id, image)| self.info(id, image))
            .filter(|info| keep(info))
            .collect()
    }
}

/// A realistic OS version list (what a region's `GET /v1/cloudimages/os_version` holds).
pub fn default_os_versions() -> Vec<OsVersion> {
    let version = |platform: &str, os_version: &str, os_type: &str| OsVersion {
        platform: platform.to_string(),
        os_version: os_version.to_string(),
        os_version_key: Some(os_version.to_string()),
        os_bit: Some(64),
        os_type: Some(os_type.to_string()),
    };
    vec![
        version("CentOS", "CentOS 7.9 64bit", "Linux"),
        version("Ubuntu", "Ubuntu 22.04 server 64bit", "Linux"),
        version("Ubuntu", "Ubuntu 20.04 server 64bit", "Linux"),
        version("Debian", "Debian GNU/Linux 11.0.0 64bit", "Linux"),
        version("EulerOS", "EulerOS 2.5 64bit", "Linux"),
        version(
            "Huawei Cloud EulerOS",
            "Huawei Cloud EulerOS 2.0 64bit",
            "Linux",
        ),
        version("Windows", "Windows Server 2019 Standard 64bit", "Windows"),
        version("Other", "Other Linux(64 bit)", "Linux"),
    ]
}

impl State {
    fn new_created_id(&mut self) -> String {
        self.next_created += 1;
        format!("c0000000-0000-0000-0000-{:012}", self.next_created)
    }

    /// Images not deleted (what the quota's `used` counts).
    fn used(&self) -> u64 {
        self.images
            .values()
            .filter(|image| image.status != ImageStatus::Deleted)
            .count() as u64
    }

    fn new_job(&mut self, image_id: &str, now: Instant, fails: bool) -> String {
        self.next_job += 1;
        let job_id = format!("job{:028}", self.next_job);
        self.jobs.insert(
            job_id.clone(),
            FakeJob {
                image_id: image_id.to_string(),
                started: now,
                fails,
            },
        );
        if let Some(image) = self.images.get_mut(image_id) {
            image.status = ImageStatus::Saving;
            image.job = Some(job_id.clone());
            image.updated = now;
        }
        job_id
    }

    fn advance(&mut self, now: Instant, duration: Duration) {
        let (landed, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_creates)
            .into_iter()
            .partition(|create| create.at <= now);
        self.pending_creates = pending;
        for create in landed {
            self.images.insert(
                create.id,
                FakeImage {
                    status: ImageStatus::Queued,
                    job: None,
                    updated: create.at,
                    meta: Some(create.meta),
                },
            );
        }
        for image in self.images.values_mut() {
            if image.status != ImageStatus::Saving {
                continue;
            }
            let Some(job) = image.job.as_ref().and_then(|j| self.jobs.get(j)) else {
                continue;
            };
            let end = job.started + duration;
            if now >= end {
                image.status = if job.fails {
                    ImageStatus::Killed
                } else {
                    ImageStatus::Active
                };
                image.updated = end;
            }
        }
    }

    fn running(&self, now: Instant, duration: Duration) -> usize {
        self.jobs
            .values()
            .filter(|job| now < job.started + duration)
            .count()
    }
}

fn api(status: u16, code: &str, message: &str) -> ImsError {
    ImsError::Api(ApiError {
        status,
        code: code.into(),
        message: message.into(),
        request_id: None,
        retry_after: None,
    })
}

fn dropped(operation: &str) -> ImsError {
    ImsError::Ambiguous {
        operation: operation.into(),
        detail: "connection reset".into(),
    }
}

impl ImsApi for FakeIms {
    async fn register_image(
        &self,
        image_id: &ImageId,
        _image_url: &str,
    ) -> Result<JobId, ImsError> {
        let image_id: &str = &image_id.to_string();
        if self.takes_hang_fault() {
            return std::future::pending().await;
        }
        let now = Instant::now();
        let mut state = self.enter();
        state.counters.register_calls += 1;
        state.counters.register_at.push(now);
        let fault = state.register_faults.pop_front();
        match fault {
            Some(Fault::Throttle(retry_after)) => {
                return Err(ImsError::Api(ApiError {
                    status: 429,
                    code: "APIG.0308".into(),
                    message: "The throttling threshold has been reached".into(),
                    request_id: None,
                    retry_after,
                }));
            }
            Some(Fault::ServerError) => return Err(api(503, "503", "Service Unavailable")),
            Some(Fault::DroppedNotAccepted) => return Err(dropped("register")),
            Some(Fault::Unauthorized) => {
                state.auth_failed = true;
                return Err(api(401, "APIG.0301", "verify aksk signature fail"));
            }
            Some(Fault::Final(code)) => return Err(api(400, code, "refused")),
            Some(
                Fault::AcceptedThenDropped
                | Fault::AcceptedWithJobId(_)
                | Fault::Pass
                | Fault::Hang,
            )
            | None => {}
        }
        match state.images.get(image_id).map(|i| i.status.clone()) {
            None => return Err(api(404, "IMG.0027", "image does not exist")),
            Some(ImageStatus::Queued) => {}
            Some(_) => return Err(api(400, "IMG.0046", "image is not queued")),
        }
        if state.running(now, self.job_duration) >= self.task_limit {
            state.counters.flow_control_answers += 1;
            return Err(api(400, "IMG.0060", "too many tasks"));
        }
        let fails = state.failing_images.iter().any(|i| i == image_id);
        let job_id = state.new_job(image_id, now, fails);
        *state
            .counters
            .accepted
            .entry(image_id.to_string())
            .or_default() += 1;
        let running = state.running(now, self.job_duration);
        state.counters.max_running = state.counters.max_running.max(running);
        if matches!(fault, Some(Fault::AcceptedThenDropped)) {
            return Err(dropped("register"));
        }
        if let Some(Fault::AcceptedWithJobId(answer)) = fault {
            return checked_job_id(&answer);
        }
        checked_job_id(&job_id)
    }

    async fn show_job(&self, job_id: &JobId) -> Result<Job, ImsError> {
        let job_id = job_id.as_str();
        let now = Instant::now();
        let mut state = self.enter();
        state.counters.show_job += 1;
        state.counters.job_query_at.push(now);
        if state.hidden_jobs.iter().any(|j| j == job_id) {
            return Err(api(404, "IMG.0086", "job not found"));
        }
        let Some(job) = state.jobs.get(job_id) else {
            return Err(api(404, "IMG.0086", "job not found"));
        };
        let elapsed = now.saturating_duration_since(job.started);
        let over = elapsed >= self.job_duration;
        let status = match (over, job.fails) {
            (false, _) => JobStatus::Running,
            (true, false) => JobStatus::Success,
            (true, true) => JobStatus::Fail,
        };
        let failed = status == JobStatus::Fail;
        Ok(Job {
            status: Some(status),
            job_id: Some(job_id.to_string()),
            job_type: Some("imsNativeImportImageJob".into()),
            error_code: failed.then(|| "IMG.1075".to_string()),
            fail_reason: failed.then(|| "the image file is corrupt".to_string()),
            entities: Some(JobEntities {
                image_id: Some(job.image_id.clone()),
                process_percent: Some(
                    (elapsed.as_secs_f64() / self.job_duration.as_secs_f64() * 100.0).min(100.0),
                ),
                ..JobEntities::default()
            }),
            ..Job::default()
        })
    }

    async fn show_job_progress(&self, job_id: &JobId) -> Result<Job, ImsError> {
        if !self.progress_supported {
            let mut state = self.enter();
            state.counters.show_job_progress += 1;
            return Err(api(404, "404", "not found"));
        }
        self.lock().counters.show_job_progress += 1;
        let job = self.show_job(job_id).await;
        let mut state = self.lock();
        state.counters.show_job -= 1;
        job
    }

    async fn list_images(&self, query: &ListImagesQuery) -> Result<ListImagesResponse, ImsError> {
        let mut state = self.enter();
        state.counters.list_images += 1;
        let since = query
            .updated_at
            .as_deref()
            .and_then(|f| f.strip_prefix("gte:"))
            .and_then(crate::ims::types::parse_api_time);
        let limit = query.limit.unwrap_or(500) as usize;
        let start = query.marker.clone();
        let images: Vec<ImageInfo> = state
            .images
            .iter()
            .filter(|(id, _)| start.as_ref().is_none_or(|m| id.as_str() > m.as_str()))
            .map(|(id, image)| self.info(id, image))
            .filter(|info| {
                since.is_none_or(|since| {
                    info.updated_at
                        .as_deref()
                        .and_then(crate::ims::types::parse_api_time)
                        .is_some_and(|t| t >= since)
                })
            })
            .filter(|info| query.status.as_ref().is_none_or(|s| *s == info.status))
            .filter(|info| query.tag.as_ref().is_none_or(|tag| info.tags.contains(tag)))
            .take(limit)
            .collect();
        let next_marker = (images.len() == limit).then(|| images[limit - 1].id.clone());
        Ok(ListImagesResponse {
            images,
            page_info: Some(PageInfo { next_marker }),
        })
    }

    /// The same listing (and counter) as `list_images`, in the lean shape.
    async fn list_image_statuses(
        &self,
        query: &ListImagesQuery,
    ) -> Result<ImageStatusPage, ImsError> {
        let page = self.list_images(query).await?;
        Ok(ImageStatusPage {
            images: page
                .images
                .into_iter()
                .map(|image| ImageStatusEntry {
                    updated_at: image
                        .updated_at
                        .as_deref()
                        .and_then(crate::ims::types::parse_api_time),
                    id: image.id,
                    status: image.status,
                })
                .collect(),
            page_info: page.page_info,
        })
    }

    async fn get_image(&self, image_id: &ImageId) -> Result<Option<ImageInfo>, ImsError> {
        let image_id: &str = &image_id.to_string();
        let mut state = self.enter();
        state.counters.get_image += 1;
        Ok(state
            .images
            .get(image_id)
            .map(|image| self.info(image_id, image)))
    }

    async fn create_image_metadata(
        &self,
        request: &CreateImageMetadataRequest,
    ) -> Result<ImageInfo, ImsError> {
        let now = Instant::now();
        let mut state = self.enter();
        state.counters.create_calls += 1;
        let fault = state.create_faults.pop_front();
        match &fault {
            Some(CreateFault::DroppedNotCreated) => return Err(dropped("create")),
            Some(CreateFault::Error(error)) => return Err(error.clone()),
            _ => {}
        }
        let pending = state.pending_creates.len() as u64;
        if state.used() + pending >= state.image_quota {
            return Err(api(
                400,
                "IMG.0015",
                "The number of private images has reached the maximum allowed",
            ));
        }
        let id = state.new_created_id();
        let mut meta = Meta {
            name: request.name.clone(),
            tags: request.tags.clone().unwrap_or_default(),
            os_version: request.os_version.clone(),
            disk_format: request.disk_format.clone(),
            min_disk: request.min_disk,
            min_ram: request.min_ram,
            created: now,
        };
        state.counters.images_created += 1;
        if let Some(CreateFault::CreatedLater(delay)) = fault {
            meta.created = now + delay;
            state.pending_creates.push(PendingCreate {
                at: now + delay,
                id,
                meta,
            });
            return Err(dropped("create"));
        }
        let image = FakeImage {
            status: ImageStatus::Queued,
            job: None,
            updated: now,
            meta: Some(meta),
        };
        let info = self.info(&id, &image);
        state.images.insert(id, image);
        match fault {
            Some(CreateFault::CreatedThenDropped) => Err(dropped("create")),
            Some(CreateFault::CreatedThenError(error)) => Err(error),
            _ => Ok(info),
        }
    }

    async fn find_images_by_tag(&self, key: &str, value: &str) -> Result<Vec<ImageInfo>, ImsError> {
        let mut state = self.enter();
        state.counters.find_by_tag += 1;
        if let Some(error) = Self::scripted(&mut state, FakeCall::FindByTag) {
            return Err(error);
        }
        Ok(self.tagged(&state, |info| info.tag(key) == Some(value)))
    }

    async fn list_images_tagged(&self, key: &str) -> Result<Vec<ImageInfo>, ImsError> {
        let mut state = self.enter();
        state.counters.list_tagged += 1;
        if let Some(error) = Self::scripted(&mut state, FakeCall::ListTagged) {
            return Err(error);
        }
        Ok(self.tagged(&state, |info| info.tag(key).is_some()))
    }

    async fn list_os_versions(&self) -> Result<Vec<OsVersion>, ImsError> {
        let mut state = self.enter();
        state.counters.os_versions += 1;
        if let Some(error) = Self::scripted(&mut state, FakeCall::OsVersions) {
            return Err(error);
        }
        Ok(state.os_versions.clone())
    }

    async fn image_quota(&self) -> Result<ImageQuota, ImsError> {
        let mut state = self.enter();
        state.counters.quota += 1;
        if let Some(error) = Self::scripted(&mut state, FakeCall::Quota) {
            return Err(error);
        }
        Ok(ImageQuota {
            used: state.used(),
            quota: state.image_quota,
        })
    }

    /// Refuses a `saving` image (a job is writing it) with 409; an unknown one is gone
    /// already (the client maps 404 to success).
    async fn delete_image(&self, image_id: &ImageId) -> Result<(), ImsError> {
        let image_id = image_id.to_string();
        let mut state = self.enter();
        state.counters.delete_calls += 1;
        if let Some(error) = Self::scripted(&mut state, FakeCall::Delete) {
            return Err(error);
        }
        match state
            .images
            .get(&image_id)
            .map(|image| image.status.clone())
        {
            None => Ok(()),
            Some(ImageStatus::Saving) => Err(api(
                409,
                "IMG.0085",
                "The image is being created and cannot be deleted",
            )),
            Some(_) => {
                state.images.remove(&image_id);
                state.counters.deleted.push(image_id);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, key: &str) -> CreateImageMetadataRequest {
        CreateImageMetadataRequest {
            name: Some(name.to_string()),
            tags: Some(vec![format!("imsreg-key={key}"), "team=web".to_string()]),
            os_version: Some("CentOS 7.9 64bit".to_string()),
            ..CreateImageMetadataRequest::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn created_images_are_found_by_tag_and_counted_per_name() {
        let fake = FakeIms::new(2, Duration::from_secs(1));
        let created = fake
            .create_image_metadata(&request("web-01", "aaa"))
            .await
            .unwrap();
        assert_eq!(created.status, ImageStatus::Queued);
        assert_eq!(created.tag("imsreg-key"), Some("aaa"));
        assert_eq!(created.os_version.as_deref(), Some("CentOS 7.9 64bit"));
        assert!(created.created_at.is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        fake.create_image_metadata(&request("web-02", "bbb"))
            .await
            .unwrap();

        let found = fake.find_images_by_tag("imsreg-key", "aaa").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, created.id);
        let tagged = fake.list_images_tagged("imsreg-key").await.unwrap();
        assert_eq!(tagged.len(), 2, "the two queued seed images carry no tags");
        assert_eq!(
            fake.images_named("web-01"),
            [(created.id.clone(), ImageStatus::Queued)]
        );
        assert_eq!(fake.images_tagged("imsreg-key", "bbb").len(), 1);
        let order: Vec<_> = fake
            .created()
            .into_iter()
            .map(|i| i.name.unwrap())
            .collect();
        assert_eq!(order, ["web-01", "web-02"]);
        let page = fake
            .list_images(&ListImagesQuery {
                tag: Some("imsreg-key=bbb".into()),
                ..ListImagesQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.images.len(), 1);
        let counters = fake.counters();
        assert_eq!((counters.create_calls, counters.images_created), (2, 2));
        assert_eq!((counters.find_by_tag, counters.list_tagged), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn lost_answers_still_create_and_late_creates_land_later() {
        let fake = FakeIms::new(0, Duration::from_secs(1));
        fake.create_fault(CreateFault::CreatedThenDropped);
        fake.create_fault(CreateFault::DroppedNotCreated);
        fake.create_fault(CreateFault::CreatedLater(Duration::from_secs(30)));
        fake.create_fault(CreateFault::CreatedThenError(api(
            500, "IMG.0061", "unknown",
        )));
        let lost = fake.create_image_metadata(&request("a", "k1")).await;
        assert!(matches!(lost, Err(ImsError::Ambiguous { .. })));
        assert_eq!(fake.images_named("a").len(), 1);
        let not_sent = fake.create_image_metadata(&request("b", "k2")).await;
        assert!(matches!(not_sent, Err(ImsError::Ambiguous { .. })));
        assert!(fake.images_named("b").is_empty());
        let late = fake.create_image_metadata(&request("c", "k3")).await;
        assert!(matches!(late, Err(ImsError::Ambiguous { .. })));
        assert!(
            fake.find_images_by_tag("imsreg-key", "k3")
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            fake.find_images_by_tag("imsreg-key", "k3")
                .await
                .unwrap()
                .len(),
            1
        );
        let error = fake.create_image_metadata(&request("d", "k4")).await;
        assert_eq!(error.unwrap_err().code(), Some("IMG.0061"));
        assert_eq!(fake.images_named("d").len(), 1);
        fake.create_fault(CreateFault::Pass);
        fake.create_fault(CreateFault::Error(api(400, "IMG.0115", "bad tag")));
        fake.create_image_metadata(&request("e", "k5"))
            .await
            .unwrap();
        let refused = fake.create_image_metadata(&request("f", "k6")).await;
        assert_eq!(refused.unwrap_err().code(), Some("IMG.0115"));
        assert!(fake.images_named("f").is_empty());
        assert_eq!(fake.counters().images_created, 4);
        assert_eq!(fake.counters().create_calls, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn quota_os_versions_and_deletes() {
        let fake = FakeIms::new(1, Duration::from_secs(10))
            .with_image_quota(2)
            .with_os_versions(default_os_versions()[..3].to_vec());
        assert_eq!(
            fake.image_quota().await.unwrap(),
            ImageQuota { used: 1, quota: 2 }
        );
        let created = fake
            .create_image_metadata(&request("a", "k1"))
            .await
            .unwrap();
        let full = fake.create_image_metadata(&request("b", "k2")).await;
        assert_eq!(full.unwrap_err().code(), Some("IMG.0015"));
        let versions = fake.list_os_versions().await.unwrap();
        assert_eq!(versions.len(), 3);
        assert!(
            versions
                .iter()
                .any(|v| v.os_version == "Ubuntu 22.04 server 64bit")
        );

        let saving = fake.add_created("s", &["imsreg-key=k9"], ImageStatus::Saving);
        let refused = fake.delete_image(&id_of(&saving)).await.unwrap_err();
        assert_eq!(refused.http_status(), Some(409));
        fake.delete_image(&id_of(&created.id)).await.unwrap();
        fake.delete_image(&id_of(&created.id)).await.unwrap();
        assert!(fake.images_named("a").is_empty());
        assert_eq!(fake.counters().deleted, vec![created.id]);

        fake.fail_next(FakeCall::Quota, api(503, "503", "Service Unavailable"));
        assert!(fake.image_quota().await.is_err());
        assert!(fake.image_quota().await.is_ok());
    }
}
