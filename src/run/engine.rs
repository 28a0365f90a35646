//! The engine: check every image's cloud status, then submit the queued ones in plan order
//! (each waits for a place below `max_active_jobs`) and follow every running registration to
//! its end, with one task per image in flight; the records come back in plan order.
//!
//! Stopping: on cancellation or a 401 no new request starts; register calls already on the
//! wire finish (their `Submitted` is emitted), for at most [`super::submit::DRAIN_LIMIT`];
//! images never submitted end `cancelled`, those with a running job `pending` (with the job ID
//! when known).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::JobId;
use crate::ims::ImsApi;
use crate::report::{ImageOutcome, ImageRecord};

use super::active::Slot;
use super::check::check_statuses;
use super::config::RunConfig;
use super::context::Ctx;
use super::events::{EventSink, ImageResult, RunEvent, RunResult};
use super::follow::{FollowEnd, follow};
use super::plan::{self, Action, CloudStatus, PlannedImage, StatusMap, action_for};
use super::submit::{SubmitEnd, submit};
use super::sweep::run_sweeps;

/// Where the image tasks leave their results: one slot per planned image, filled in place so
/// that `execute` sleeps until the last task is gone instead of waking for every image. A
/// result is kept without the manifest's fields (the plan has them) until the records are built.
struct Results {
    settled: std::sync::Mutex<Vec<Option<ImageResult>>>,
    /// Live [`Done`] handles; the last one dropped wakes `execute`.
    handles: AtomicUsize,
    all_dropped: Notify,
}

/// A task's handle on [`Results`]. Like a channel's sender: `execute` goes on once every
/// handle is gone, so a task that ends without a result cannot hang the run.
struct Done(Arc<Results>);

impl Done {
    fn new(images: usize) -> Self {
        Done(Arc::new(Results {
            settled: std::sync::Mutex::new(std::iter::repeat_with(|| None).take(images).collect()),
            handles: AtomicUsize::new(1),
            all_dropped: Notify::new(),
        }))
    }

    fn send(&self, index: usize, image: ImageResult) {
        let mut settled = self.0.settled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = settled.get_mut(index) {
            *slot = Some(image);
        }
    }

    /// Waits until this and every other handle is dropped, then answers the results.
    async fn collect(self) -> Vec<Option<ImageResult>> {
        let results = self.0.clone();
        let all_dropped = results.all_dropped.notified();
        drop(self);
        all_dropped.await;
        let mut settled = results.settled.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *settled)
    }
}

impl Clone for Done {
    fn clone(&self) -> Self {
        self.0.handles.fetch_add(1, Ordering::Relaxed);
        Done(self.0.clone())
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Stores a permit if `collect` is not waiting yet.
            self.0.all_dropped.notify_one();
        }
    }
}

/// Runs the whole pipeline over `images`; see the module documentation.
pub async fn execute<C: ImsApi>(
    client: Arc<C>,
    images: Vec<PlannedImage>,
    config: &RunConfig,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> RunResult {
    let ctx = Arc::new(Ctx::new(client, config, sink, cancel.child_token()));
    let images = Arc::new(images);

    ctx.emit(RunEvent::CheckingStatus {
        images: images.len(),
    });
    let statuses = check_statuses(&ctx, &images).await;
    let unreachable = plan::unreachable(&statuses, images.len());
    if unreachable {
        // Said once for the whole run: every image would say the same.
        let message = statuses
            .values()
            .find_map(|status| match status {
                CloudStatus::Unknown { message, .. } => Some(message.clone()),
                _ => None,
            })
            .unwrap_or_default();
        ctx.emit(RunEvent::Unreachable {
            message: message.clone(),
        });
        let done = Done::new(images.len());
        for (index, image) in images.iter().enumerate() {
            let mut result = new_result(image, ImageOutcome::Unreachable);
            result.job_id = image.known_job_id.clone();
            result.set_error(
                None,
                format!(
                    "IMS could not be reached before anything was submitted; the next run tries again: {message}"
                ),
            );
            finish(&ctx, index, image, result, &done);
        }
        let settled = done.collect().await;
        return RunResult {
            records: into_records(take_back(images).await, settled),
            auth_failed: ctx.auth_failed(),
            interrupted: cancel.is_cancelled(),
            unreachable: true,
        };
    }

    let sweeps_done = CancellationToken::new();
    let sweeper = tokio::spawn(run_sweeps(ctx.clone(), sweeps_done.clone()));
    let done = Done::new(images.len());
    let to_submit = start_followers(&ctx, &images, &statuses, &done);
    ctx.unsubmitted.store(to_submit.len(), Ordering::Relaxed);
    drop(statuses);
    tokio::spawn(submit_in_order(
        ctx.clone(),
        images.clone(),
        to_submit,
        done.clone(),
    ));

    let settled = done.collect().await;
    sweeps_done.cancel();
    let _ = sweeper.await;

    let records = into_records(take_back(images).await, settled);
    RunResult {
        records,
        auth_failed: ctx.auth_failed(),
        interrupted: cancel.is_cancelled(),
        unreachable: false,
    }
}

/// One record per planned image, in plan order: each entry's strings move into its record.
/// The plan and the results are consumed from the end and shrunk as they go, so that they are
/// not all held beside the full records at the run's end (the peak memory of a 100,000-image
/// run).
fn into_records(
    mut images: Vec<PlannedImage>,
    mut settled: Vec<Option<ImageResult>>,
) -> Vec<ImageRecord> {
    let shrink_every = (images.len() / 8).max(4096);
    let mut records = Vec::with_capacity(images.len());
    while let Some(image) = images.pop() {
        let result = settled.pop().flatten().unwrap_or_else(|| {
            let mut result = new_result(&image, ImageOutcome::Failed);
            result.set_error(None, "internal error: the image's task ended early".into());
            result
        });
        let record = result.into_record(image.entry);
        records.push(record);
        if images.len().is_multiple_of(shrink_every) {
            images.shrink_to_fit();
            settled.shrink_to_fit();
        }
    }
    records.reverse();
    records
}

/// The plan back from the tasks, to move its strings into the records. Every task has sent its
/// result, but the last ones may still be dropping their handle: wait a little for them, else
/// copy.
async fn take_back(mut images: Arc<Vec<PlannedImage>>) -> Vec<PlannedImage> {
    for _ in 0..100 {
        match Arc::try_unwrap(images) {
            Ok(images) => return images,
            Err(shared) => images = shared,
        }
        tokio::task::yield_now().await;
    }
    Arc::unwrap_or_clone(images)
}

/// Settles the images the status check decided, starts following the running ones, and
/// returns the indexes to submit, in plan order.
fn start_followers<C: ImsApi>(
    ctx: &Arc<Ctx<C>>,
    images: &Arc<Vec<PlannedImage>>,
    statuses: &StatusMap,
    done: &Done,
) -> Vec<usize> {
    let mut to_submit = Vec::new();
    for (index, image) in images.iter().enumerate() {
        let Some(status) = statuses.get(&image.entry.image_id) else {
            // The check stopped before this image (cancel or 401).
            let mut result = new_result(image, ImageOutcome::Cancelled);
            result.job_id = image.known_job_id.clone();
            if result.job_id.is_some() {
                result.outcome = ImageOutcome::Pending;
            }
            finish(ctx, index, image, result, done);
            continue;
        };
        let start = match action_for(image, Some(status)) {
            Action::Submit => {
                to_submit.push(index);
                continue;
            }
            Action::AlreadyRegistered => {
                let mut result = new_result(image, ImageOutcome::AlreadyRegistered);
                result.job_id = image.known_job_id.clone();
                finish(ctx, index, image, result, done);
                continue;
            }
            Action::Fail { code, message } => {
                let mut result = new_result(image, ImageOutcome::Failed);
                result.set_error(code, message);
                finish(ctx, index, image, result, done);
                continue;
            }
            Action::Unsettled { code, message } => {
                let mut result = new_result(image, ImageOutcome::Unreachable);
                result.set_error(code, message);
                finish(ctx, index, image, result, done);
                continue;
            }
            Action::FollowJob(job_id) => Start::Follow(Some(job_id)),
            Action::FollowImage => Start::Follow(None),
        };
        let slot = ctx.active.adopt();
        tokio::spawn(run_image(
            ctx.clone(),
            images.clone(),
            index,
            start,
            slot,
            done.clone(),
        ));
    }
    to_submit
}

/// The submitter: in plan order, waits for a place below `max_active_jobs`, then starts the
/// image's task. On stop, every image not started is `cancelled`.
async fn submit_in_order<C: ImsApi>(
    ctx: Arc<Ctx<C>>,
    images: Arc<Vec<PlannedImage>>,
    to_submit: Vec<usize>,
    done: Done,
) {
    let mut queue = to_submit.into_iter();
    while let Some(index) = queue.next() {
        let slot = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                for index in std::iter::once(index).chain(queue) {
                    let image = &images[index];
                    let result = new_result(image, ImageOutcome::Cancelled);
                    finish(&ctx, index, image, result, &done);
                }
                return;
            }
            slot = ctx.active.acquire() => slot,
        };
        tokio::spawn(run_image(
            ctx.clone(),
            images.clone(),
            index,
            Start::Submit,
            slot,
            done.clone(),
        ));
    }
}

enum Start {
    Submit,
    /// Follow a registration already running, by job ID when known.
    Follow(Option<JobId>),
}

/// One image from submission (or adoption) to its result. `slot` is its place among the
/// active jobs, held until the end.
async fn run_image<C: ImsApi>(
    ctx: Arc<Ctx<C>>,
    images: Arc<Vec<PlannedImage>>,
    index: usize,
    start: Start,
    slot: Slot,
    done: Done,
) {
    let image = &images[index];
    let mut result = new_result(image, ImageOutcome::Cancelled);
    let mut started = Instant::now();
    match start {
        Start::Follow(job_id) => result.job_id = job_id,
        Start::Submit => {
            // Boxed while it lasts: the task then waits for its job's end at half the size.
            let end = Box::pin(submit(&ctx, &image.entry, &mut result.attempts)).await;
            ctx.unsubmitted.fetch_sub(1, Ordering::Relaxed);
            started = Instant::now();
            match end {
                SubmitEnd::Accepted { job_id, active } => {
                    result.job_id = job_id;
                    result.submitted_at = Some(Utc::now());
                    if active {
                        drop(slot);
                        settle(&mut result, started, FollowEnd::Registered);
                        return finish(&ctx, index, image, result, &done);
                    }
                }
                SubmitEnd::Failed { code, message } => {
                    result.outcome = ImageOutcome::Failed;
                    result.set_error(code, message);
                    drop(slot);
                    return finish(&ctx, index, image, result, &done);
                }
                SubmitEnd::NotSent => {
                    drop(slot);
                    return finish(&ctx, index, image, result, &done);
                }
                SubmitEnd::Unsettled(message) => {
                    result.outcome = ImageOutcome::Pending;
                    result.set_error(None, message);
                    drop(slot);
                    return finish(&ctx, index, image, result, &done);
                }
            }
        }
    }
    let end = follow(&ctx, image.entry.image_id, result.job_id.as_ref(), started).await;
    drop(slot);
    settle(&mut result, started, end);
    finish(&ctx, index, image, result, &done);
}

/// Fills a followed image's result from how its registration ended.
fn settle(result: &mut ImageResult, started: Instant, end: FollowEnd) {
    match end {
        FollowEnd::Registered => {
            result.outcome = ImageOutcome::Registered;
            result.finished_at = Some(Utc::now());
            if result.submitted_at.is_some() {
                result.duration_s = Some(started.elapsed().as_secs_f64());
            }
        }
        FollowEnd::Failed { code, message } => {
            result.outcome = ImageOutcome::Failed;
            result.set_error(code, message);
            result.finished_at = Some(Utc::now());
            if result.submitted_at.is_some() {
                result.duration_s = Some(started.elapsed().as_secs_f64());
            }
        }
        FollowEnd::TimedOut => {
            result.outcome = ImageOutcome::Pending;
            result.set_error(
                None,
                "still registering in the cloud at the job timeout; the next run follows it".into(),
            );
        }
        FollowEnd::Stopped => result.outcome = ImageOutcome::Pending,
    }
}

fn new_result(image: &PlannedImage, outcome: ImageOutcome) -> ImageResult {
    ImageResult::new(image.entry.image_id, outcome)
}

/// Reports an image's result (exactly once per image), then hands it to `execute`.
fn finish<C: ImsApi>(
    ctx: &Ctx<C>,
    index: usize,
    image: &PlannedImage,
    result: ImageResult,
    done: &Done,
) {
    let image_url = image.entry.image_url.to_string();
    let event = RunEvent::Finished { result, image_url };
    ctx.emit_ref(&event);
    if let RunEvent::Finished { result, .. } = event {
        done.send(index, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled() -> ImageResult {
        ImageResult::new(crate::run::testing::id(0), ImageOutcome::Registered)
    }

    #[tokio::test]
    async fn results_are_collected_once_every_handle_is_gone() {
        let done = Done::new(3);
        let (first, second) = (done.clone(), done.clone());
        let collecting = tokio::spawn(done.collect());
        first.send(0, settled());
        drop(first);
        tokio::task::yield_now().await;
        assert!(!collecting.is_finished(), "a handle is still alive");
        // A task that ends without a result (e.g. a panic) still lets the run go on.
        drop(second);
        let results = collecting.await.unwrap();
        assert_eq!(
            results.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false, false]
        );
    }
}
