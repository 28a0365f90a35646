//! The contract between the engine and its observers: the events it emits while it runs
//! ([`RunEvent`], heard through an [`EventSink`]: the display, the state journal), the result
//! of one image, and what [`super::execute`] returns.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ids::{ImageId, JobId};
use crate::manifest::ImageEntry;
use crate::report::{ImageOutcome, ImageRecord};

use super::plan::CloudStatus;

/// What the engine tells its observers. Delivered synchronously, in order, from the engine's
/// tasks; implementations must be cheap (no network) and must not block for long.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The cloud-status check is starting for this many images.
    CheckingStatus { images: usize },
    /// The cloud told us an image's status before any submission.
    StatusKnown {
        image_id: ImageId,
        status: CloudStatus,
    },
    /// A register call is about to be sent (attempt starts at 1).
    Submitting { image_id: ImageId, attempt: u32 },
    /// IMS accepted the registration of `image_url` (normalized `bucket:object`). Observers
    /// that persist job IDs do so here, before the engine counts the image as submitted.
    Submitted {
        image_id: ImageId,
        image_url: String,
        job_id: JobId,
    },
    /// A call to `api` failed and will be retried after `delay`.
    Retrying {
        api: Api,
        image_id: Option<ImageId>,
        reason: String,
        delay: Duration,
    },
    /// The gateway throttled a call to `api` (a 429 answer). A throttled register call goes
    /// again after `delay` and slows the whole submitter; a throttled status query goes again
    /// after `delay`; a throttled job poll is not retried (`delay` is zero): the next poll
    /// comes at its usual time.
    Throttled { api: Api, delay: Duration },
    /// A running job's progress, when the progress call answers.
    Progress { image_id: ImageId, percent: f64 },
    /// An image reached its final state for this run. `image_url` is where it was (or would
    /// have been) registered from, as in [`RunEvent::Submitted`].
    Finished {
        result: ImageResult,
        image_url: String,
    },
    /// Credentials were rejected (401); the run stops.
    AuthFailed { message: String },
    /// The status check learned nothing from IMS (not reached, or no answer understood): the
    /// run stops before submitting anything, every image unsettled. Emitted once.
    Unreachable { message: String },
}

/// The IMS API a call went to, as [`RunEvent::Retrying`] and [`RunEvent::Throttled`] name it
/// (the metrics' `api` label). The names are those of the simulator's rate-limit keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// `PUT /v1/cloudimages/{image_id}/upload`
    Register,
    /// `GET /v1/{project_id}/jobs/{job_id}`
    ShowJob,
    /// `GET /v1/cloudimages/job/{job_id}`
    ShowJobProgress,
    /// `GET /v2/cloudimages`
    ListImages,
    /// `GET /v2/images/{image_id}`
    GetImage,
}

impl Api {
    pub const ALL: [Api; 5] = [
        Api::Register,
        Api::ShowJob,
        Api::ShowJobProgress,
        Api::ListImages,
        Api::GetImage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Register => "register",
            Api::ShowJob => "show_job",
            Api::ShowJobProgress => "show_job_progress",
            Api::ListImages => "list_images",
            Api::GetImage => "get_image",
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one image ended in this run: what [`RunEvent::Finished`] carries, and what the engine
/// keeps until its records are built (the manifest's fields join it only then, moved).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageResult {
    pub image_id: ImageId,
    pub outcome: ImageOutcome,
    /// The registration job, when one was accepted (or known from an earlier run).
    pub job_id: Option<JobId>,
    /// Why it failed or was left unsettled; boxed, as most images have none.
    pub error: Option<Box<ImageError>>,
    /// Register calls sent for it in this run.
    pub attempts: u32,
    pub submitted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From submission to the end, for images submitted in this run.
    pub duration_s: Option<f64>,
}

/// IMS's error code (when it gave one) and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageError {
    pub code: Option<String>,
    pub message: String,
}

impl ImageResult {
    /// An image's result before anything happened to it.
    pub fn new(image_id: ImageId, outcome: ImageOutcome) -> Self {
        ImageResult {
            image_id,
            outcome,
            job_id: None,
            error: None,
            attempts: 0,
            submitted_at: None,
            finished_at: None,
            duration_s: None,
        }
    }

    pub fn set_error(&mut self, code: Option<String>, message: String) {
        self.error = Some(Box::new(ImageError { code, message }));
    }

    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref().and_then(|e| e.code.as_deref())
    }

    pub fn error_message(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.message.as_str())
    }

    /// The report's line for this image, moving the manifest entry's strings into it.
    pub fn into_record(self, entry: ImageEntry) -> ImageRecord {
        let (error_code, error_message) = match self.error {
            Some(error) => (error.code, Some(error.message)),
            None => (None, None),
        };
        ImageRecord {
            image_url: Some(entry.image_url.to_string()),
            image_id: Some(entry.image_id.to_string()),
            name: entry.name,
            format: Some(entry.format.as_str().to_string()),
            status: self.outcome,
            job_id: self.job_id.map(JobId::into_string),
            error_code,
            error_message,
            attempts: self.attempts,
            submitted_at: self.submitted_at,
            finished_at: self.finished_at,
            duration_s: self.duration_s,
            size_bytes: None,
            created: false,
            line: Some(entry.line),
            region: None,
            project_id: None,
        }
    }
}

/// Receives [`RunEvent`]s (progress bars, log lines, the state journal).
pub trait EventSink: Send + Sync {
    fn event(&self, event: &RunEvent);

    /// Resolves once everything this sink keeps of the events emitted so far is on disk. The
    /// engine waits for it after [`RunEvent::Submitted`], so that a job ID is durable before
    /// the image counts as submitted; the state journal uses the wait to fsync many job IDs at
    /// once (group commit). Sinks that keep nothing are durable at once.
    fn durable(&self) -> Durable<'_> {
        Box::pin(std::future::ready(()))
    }
}

/// What [`EventSink::durable`] returns.
pub type Durable<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// A sink that drops everything (tests, benchmarks).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: &RunEvent) {}
}

/// What `execute` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// One record per planned image, in plan order.
    pub records: Vec<ImageRecord>,
    /// A 401 stopped the run.
    pub auth_failed: bool,
    /// Cancellation (SIGINT/SIGTERM) stopped the run early.
    pub interrupted: bool,
    /// IMS could not be reached (or not understood) for any image's status before anything was
    /// submitted: the run stopped there, every image unsettled.
    pub unreachable: bool,
}

/// Forwards every event to several sinks, in order (journal first, then the display).
pub struct Tee(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Tee {
    fn event(&self, event: &RunEvent) {
        for sink in &self.0 {
            sink.event(event);
        }
    }

    fn durable(&self) -> Durable<'_> {
        Box::pin(async move {
            for sink in &self.0 {
                sink.durable().await;
            }
        })
    }
}
