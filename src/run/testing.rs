//! An in-memory IMS for the engine's unit tests: images with lazily advancing jobs (on tokio's
//! clock, so paused-clock tests run instantly), scripted faults, and counters that prove the
//! engine's promises (one accepted registration per image, the active-jobs bound, few queries).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::ids::{ImageId, JobId};
use crate::ims::{
    ApiError, ImageInfo, ImageStatus, ImageStatusEntry, ImageStatusPage, ImsApi, ImsError, Job,
    JobEntities, JobStatus, ListImagesQuery, ListImagesResponse, types::PageInfo,
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
}

struct FakeImage {
    status: ImageStatus,
    job: Option<String>,
    updated: Instant,
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
            },
        );
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

    fn info(&self, id: &str, image: &FakeImage) -> ImageInfo {
        let updated = self.epoch.1
            + chrono::Duration::from_std(image.updated - self.epoch.0).unwrap_or_default();
        ImageInfo {
            id: id.to_string(),
            name: None,
            status: image.status.clone(),
            disk_format: None,
            owner: None,
            visibility: None,
            imagetype: Some("private".into()),
            image_size: None,
            min_disk: None,
            created_at: None,
            updated_at: Some(updated.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            active_at: None,
        }
    }
}

impl State {
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
}
