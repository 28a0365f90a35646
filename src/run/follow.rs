//! Following one registration to its end: poll the job (or, without a job ID, the image) on
//! a growing schedule ([`super::schedule`]), or take the status from a bulk sweep
//! ([`super::sweep`]) while many jobs run; confirm `active`; give up waiting at `job_timeout`.
//!
//! A poll uses `show_job_progress` (which also carries `process_percent`, reported as
//! [`RunEvent::Progress`]); if that call is not answered (400/403/404) while `show_job` is,
//! the run polls with `show_job` from then on. Poll errors are never fatal: the next poll comes
//! at its usual time. A job that no longer exists (404; IMS drops finished jobs after about a
//! day) falls back to the image's status.

use tokio::time::Instant;

use crate::ids::{ImageId, JobId};
use crate::ims::{ErrorClass, ImageStatus, ImsApi, ImsError, Job, JobStatus};

use super::context::{Ctx, QueryError};
use super::events::{Api, RunEvent};
use super::retry::jitter;
use super::schedule::PollSchedule;

/// How a followed registration ended for this run.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEnd {
    /// Job SUCCESS (or image listed) and the image is `active`.
    Registered,
    Failed {
        code: Option<String>,
        message: String,
    },
    /// Still running at `job_timeout`.
    TimedOut,
    /// The run stopped first.
    Stopped,
}

/// Follows an image's registration; `started` is when it was submitted (or adopted).
pub async fn follow<C: ImsApi>(
    ctx: &Ctx<C>,
    image_id: ImageId,
    job_id: Option<&JobId>,
    started: Instant,
) -> FollowEnd {
    let deadline = started + ctx.config.job_timeout;
    let mut schedule = PollSchedule::new(ctx.config.poll_interval);
    let mut next = started + schedule.next_wait(jitter());
    let mut tracking = Tracking {
        image_id,
        job_id,
        job_over: false,
    };
    let mut watch = ctx.sweeper.watch(image_id, started);
    loop {
        // While sweeps cover this image, it waits for them (or the end of bulk mode) without
        // waking on its own poll schedule.
        let bulk_ended = ctx.sweeper.bulk_ended();
        tokio::pin!(bulk_ended);
        bulk_ended.as_mut().enable();
        let swept_for_us = watch.receiver.is_some() && ctx.sweeper.is_bulk();
        let swept = async {
            match watch.receiver.as_mut() {
                Some(receiver) => receiver.await.ok(),
                None => std::future::pending().await,
            }
        };
        let wake_at = if swept_for_us {
            deadline
        } else {
            next.min(deadline)
        };
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return FollowEnd::Stopped,
            status = swept => match status {
                Some(status) => {
                    // Boxed while it runs (queries): a waiting task stays small.
                    if let Some(end) = Box::pin(tracking.conclude_from_image(ctx, &status)).await {
                        return end;
                    }
                }
                None => watch.receiver = None,
            },
            // Polls resume on the schedule (at once if a poll is overdue).
            _ = bulk_ended, if swept_for_us => {}
            _ = tokio::time::sleep_until(wake_at) => {
                if Instant::now() >= deadline {
                    return FollowEnd::TimedOut;
                }
                if !(watch.receiver.is_some() && ctx.sweeper.is_bulk())
                    && let Some(end) = Box::pin(tracking.poll(ctx)).await
                {
                    return end;
                }
                next = Instant::now() + schedule.next_wait(jitter());
            }
        }
    }
}

struct Tracking<'a> {
    image_id: ImageId,
    job_id: Option<&'a JobId>,
    /// The job reached SUCCESS or no longer exists: only the image status matters now.
    job_over: bool,
}

impl Tracking<'_> {
    /// One poll; `Some` when the registration ended.
    async fn poll<C: ImsApi>(&mut self, ctx: &Ctx<C>) -> Option<FollowEnd> {
        if let (Some(job_id), false) = (self.job_id, self.job_over) {
            match fetch_job(ctx, job_id).await {
                Fetched::Job(job) => match job.status.clone().unwrap_or(JobStatus::Init) {
                    JobStatus::Success => self.job_over = true,
                    JobStatus::Fail => return Some(job_failure(&job)),
                    _ => {
                        if let Some(percent) = job.entities.as_ref().and_then(|e| e.process_percent)
                        {
                            ctx.emit(RunEvent::Progress {
                                image_id: self.image_id,
                                percent,
                            });
                        }
                        return None;
                    }
                },
                Fetched::Gone => self.job_over = true,
                Fetched::NoAnswer => return None,
                Fetched::Stopped => return Some(FollowEnd::Stopped),
            }
        }
        let answer = ctx
            .query_once(|| ctx.client.get_image(&self.image_id))
            .await?;
        match answer {
            Ok(Some(image)) => self.conclude_from_image(ctx, &image.status).await,
            Ok(None) => Some(FollowEnd::Failed {
                code: None,
                message: "the image disappeared during registration".into(),
            }),
            Err(error) if error.class() == ErrorClass::AuthFailed => {
                ctx.stop_for_auth(&error);
                Some(FollowEnd::Stopped)
            }
            Err(error) => {
                ctx.note_throttled_poll(Api::GetImage, &error);
                None
            }
        }
    }

    /// The registration's end from the image's status, if it tells one.
    async fn conclude_from_image<C: ImsApi>(
        &mut self,
        ctx: &Ctx<C>,
        status: &ImageStatus,
    ) -> Option<FollowEnd> {
        match status {
            ImageStatus::Active => Some(FollowEnd::Registered),
            ImageStatus::Killed => Some(self.failure_of_killed_image(ctx).await),
            ImageStatus::Deleted => Some(FollowEnd::Failed {
                code: None,
                message: "the image was deleted during registration".into(),
            }),
            ImageStatus::Queued if self.job_over && self.job_id.is_some() => {
                Some(FollowEnd::Failed {
                    code: None,
                    message: "the registration job no longer exists and the image is still \
                              `queued`: it was not registered; run again to submit it"
                        .into(),
                })
            }
            _ => None,
        }
    }

    /// A killed image: the job's failure reason when the job is known and still answers.
    async fn failure_of_killed_image<C: ImsApi>(&self, ctx: &Ctx<C>) -> FollowEnd {
        let killed = FollowEnd::Failed {
            code: None,
            message: "the image is `killed`: the registration failed".into(),
        };
        let Some(job_id) = self.job_id else {
            return killed;
        };
        match ctx
            .query(
                Api::ShowJob,
                Some(self.image_id),
                "fetching the job's failure",
                || ctx.client.show_job(job_id),
            )
            .await
        {
            Ok(job) if job.status == Some(JobStatus::Fail) => job_failure(&job),
            Err(QueryError::Stopped) => FollowEnd::Stopped,
            _ => killed,
        }
    }
}

enum Fetched {
    Job(Box<Job>),
    /// The job no longer exists (404).
    Gone,
    /// No usable answer this time; poll again later.
    NoAnswer,
    Stopped,
}

/// One job query: `show_job_progress`, or `show_job` where progress is not answered.
async fn fetch_job<C: ImsApi>(ctx: &Ctx<C>, job_id: &JobId) -> Fetched {
    if !ctx.progress_unsupported() {
        match ctx
            .query_once(|| ctx.client.show_job_progress(job_id))
            .await
        {
            None => return Fetched::Stopped,
            Some(Ok(job)) => return Fetched::Job(Box::new(job)),
            Some(Err(error)) if !is_refusal(&error) => {
                return no_answer(ctx, Api::ShowJobProgress, &error);
            }
            Some(Err(_)) => {}
        }
    }
    match ctx.query_once(|| ctx.client.show_job(job_id)).await {
        None => Fetched::Stopped,
        Some(Ok(job)) => {
            ctx.set_progress_unsupported();
            Fetched::Job(Box::new(job))
        }
        Some(Err(error)) if error.http_status() == Some(404) => Fetched::Gone,
        Some(Err(error)) => no_answer(ctx, Api::ShowJob, &error),
    }
}

fn no_answer<C: ImsApi>(ctx: &Ctx<C>, api: Api, error: &ImsError) -> Fetched {
    if error.class() == ErrorClass::AuthFailed {
        ctx.stop_for_auth(error);
        return Fetched::Stopped;
    }
    ctx.note_throttled_poll(api, error);
    Fetched::NoAnswer
}

/// A final 400/403/404: the progress call is not available (or the job is gone).
fn is_refusal(error: &ImsError) -> bool {
    matches!(error.http_status(), Some(400 | 403 | 404)) && error.class() == ErrorClass::Final
}

fn job_failure(job: &Job) -> FollowEnd {
    let entities = job.entities.as_ref();
    let code = job
        .error_code
        .clone()
        .or_else(|| entities.and_then(|e| e.error_code.clone()));
    let message = job
        .fail_reason
        .clone()
        .or_else(|| entities.and_then(|e| e.error.clone()))
        .unwrap_or_else(|| "the registration job failed (IMS gave no reason)".into());
    FollowEnd::Failed { code, message }
}
