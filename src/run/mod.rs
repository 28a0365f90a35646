//! The run pipeline: plan -> check the cloud -> submit (rate-limited) -> poll -> confirm.
//!
//! This file fixes the contract between the engine (`execute`) and its callers (the `run`
//! subcommand, tests, benchmarks): the effective configuration, the events the engine emits
//! for progress displays and logs, and the result it returns. The engine knows nothing of
//! terminals: the binary implements [`EventSink`] with indicatif or tracing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ims::ImsApi;
use crate::manifest::{ImageEntry, Settings};
use crate::report::ImageRecord;

mod active;
mod check;
mod context;
mod engine;
mod follow;
pub mod pacer;
pub mod plan;
pub mod retry;
pub mod schedule;
mod submit;
pub mod sweep;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod watch;

pub use check::PER_ID_THRESHOLD;
pub use engine::execute;
pub use plan::{Action, CloudStatus, StatusMap, action_for};
pub use submit::AMBIGUITY_GRACE;

/// The read-only status check alone, for `--dry-run`: learns every image's cloud status with
/// the engine's own requests and policy (list pages or per-ID lookups, query lane, rate limit,
/// retries) and sends nothing else. Images missing from the map were not checked because
/// `cancel` fired or the credentials were rejected (then [`CheckResult::auth_failed`] is set
/// and a [`RunEvent::AuthFailed`] was emitted).
pub async fn check_only<C: ImsApi>(
    client: Arc<C>,
    images: &[PlannedImage],
    config: &RunConfig,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> CheckResult {
    let ctx = context::Ctx::new(client, config, sink, cancel.child_token());
    ctx.emit(RunEvent::CheckingStatus {
        images: images.len(),
    });
    let statuses = check::check_statuses(&ctx, images).await;
    CheckResult {
        unreachable: plan::unreachable(&statuses, images.len()),
        statuses,
        auth_failed: ctx.auth_failed(),
    }
}

/// What [`check_only`] learned.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub statuses: StatusMap,
    /// A 401 stopped the check.
    pub auth_failed: bool,
    /// No image's status could be learned: IMS was not reached, or none of its answers could
    /// be understood.
    pub unreachable: bool,
}

/// Defaults for every setting the manifest or the flags may leave out (documented in README).
pub mod defaults {
    use std::time::Duration;

    pub const CONCURRENCY: u32 = 8;
    pub const MAX_ACTIVE_JOBS: u32 = 20;
    pub const SUBMIT_RATE: f64 = 2.0;
    pub const QUERY_RATE: f64 = 10.0;
    pub const POLL_INTERVAL: Duration = Duration::from_secs(10);
    pub const JOB_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
}

/// The effective settings of a run, after flags > manifest `settings:` > defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// API calls in flight at once.
    pub concurrency: u32,
    /// Registrations running in the cloud at once.
    pub max_active_jobs: u32,
    /// Register calls per second (GCRA, no bursts above it).
    pub submit_rate: f64,
    /// Status queries per second.
    pub query_rate: f64,
    /// Delay before the first poll of a job; later polls grow from it.
    pub poll_interval: Duration,
    /// Per image, after submission; past it the image is reported `pending`.
    pub job_timeout: Duration,
}

impl RunConfig {
    /// Merges CLI flags over manifest settings over [`defaults`].
    pub fn resolve(flags: &Settings, manifest: &Settings) -> Self {
        RunConfig {
            concurrency: flags
                .concurrency
                .or(manifest.concurrency)
                .unwrap_or(defaults::CONCURRENCY),
            max_active_jobs: flags
                .max_active_jobs
                .or(manifest.max_active_jobs)
                .unwrap_or(defaults::MAX_ACTIVE_JOBS),
            submit_rate: flags
                .submit_rate
                .or(manifest.submit_rate)
                .unwrap_or(defaults::SUBMIT_RATE),
            query_rate: flags
                .query_rate
                .or(manifest.query_rate)
                .unwrap_or(defaults::QUERY_RATE),
            poll_interval: flags
                .poll_interval
                .or(manifest.poll_interval)
                .unwrap_or(defaults::POLL_INTERVAL),
            job_timeout: flags
                .job_timeout
                .or(manifest.job_timeout)
                .unwrap_or(defaults::JOB_TIMEOUT),
        }
    }
}

/// One image handed to the engine: a valid manifest entry, plus what an earlier run learned
/// about it (the state journal of a later issue fills `known_job_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedImage {
    pub entry: ImageEntry,
    /// A job already accepted for this image: poll it, never re-submit.
    pub known_job_id: Option<String>,
    /// The object's size in OBS, when the preflight learned it (sets the submission order).
    pub size_bytes: Option<u64>,
}

/// What the engine tells its observers. Delivered synchronously, in order, from the engine's
/// tasks; implementations must be cheap (no network) and must not block for long.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The cloud-status check is starting for this many images.
    CheckingStatus { images: usize },
    /// The cloud told us an image's status before any submission.
    StatusKnown { image_id: String, status: String },
    /// A register call is about to be sent (attempt starts at 1).
    Submitting { image_id: String, attempt: u32 },
    /// IMS accepted the registration of `image_url` (normalized `bucket:object`). Observers
    /// that persist job IDs do so here, before the engine counts the image as submitted.
    Submitted {
        image_id: String,
        image_url: String,
        job_id: String,
    },
    /// A call failed and will be retried after `delay`.
    Retrying {
        image_id: Option<String>,
        reason: String,
        delay: Duration,
    },
    /// The gateway throttled us; the whole submitter slows down.
    Throttled { delay: Duration },
    /// A running job's progress, when the progress call answers.
    Progress { image_id: String, percent: f64 },
    /// An image reached its final state for this run.
    Finished(ImageRecord),
    /// Credentials were rejected (401); the run stops.
    AuthFailed { message: String },
    /// The status check learned nothing from IMS (not reached, or no answer understood): the
    /// run stops before submitting anything, every image unsettled. Emitted once.
    Unreachable { message: String },
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
