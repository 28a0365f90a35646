//! Submitting one image: `register_image` in the register lane (in-flight bound, shared
//! adaptive rate, GCRA limiter), with the retry policy of [`super::retry`]. A throttled call
//! waits its own `Retry-After` (or 2-5 s) and tells the lane's [`super::pacer::Pacer`], which
//! slows every submitting task down for a moment.
//!
//! A register call is not idempotent, so an answer lost on the way back, a 2xx answer that
//! cannot be used (not JSON, no job ID, a job ID of the wrong shape), or a 400 IMG.0046 "image
//! not queued" on a re-send, is resolved by looking at the image: `saving`/`active` means IMS
//! accepted it (followed by image status, its job ID is unknown); still `queued` after
//! [`AMBIGUITY_GRACE`] means it was not, and only then is the call sent again. When neither
//! the answers nor the image can tell, the image is left unsettled (`pending`), never `failed`.
//! A call already on the wire when the run stops is let finish, so an accepted job is never
//! lost.

use std::time::Duration;

use tokio::time::Instant;

use crate::ids::{ImageId, JobId};
use crate::ims::{ErrorClass, ImageStatus, ImsApi};
use crate::manifest::ImageEntry;

use super::context::{Ctx, QueryError};
use super::events::{Api, RunEvent};
use super::retry::{RetryDecision, decide_register, flow_control_pause, jitter};

/// How long an image may stay `queued` after an unanswered register call before the call is
/// considered not accepted.
pub const AMBIGUITY_GRACE: Duration = Duration::from_secs(3);
/// Times an image may look `queued` again after IMS answered "not queued" before giving up.
pub const MAX_STATUS_CHECKS: u32 = 3;

/// How the submission of one image ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitEnd {
    /// IMS accepted it. `job_id` is `None` when the acceptance was learned from the image
    /// status; `active` when the image is already registered.
    Accepted { job_id: Option<JobId>, active: bool },
    Failed {
        code: Option<String>,
        message: String,
    },
    /// The run stopped before any call was accepted.
    NotSent,
    /// IMS may have accepted it and the run could not find out (it stopped first, or the
    /// answers and the image status could not tell): reported `pending` without a job ID, and
    /// the next run checks the image status before it submits anything.
    Unsettled(String),
}

/// How long register calls already on the wire may still run once the run is told to stop (and
/// how long an accepted job ID may take to reach the disk). Well below the 60 s a Kubernetes pod
/// gets between SIGTERM and SIGKILL (examples/k8s-cronjob.yaml), and below the HTTP client's own
/// 60 s request timeout. A call still unanswered then is given up: its image is reported
/// `pending` without a job ID, and the next run checks the image status before submitting.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Why an image is [`SubmitEnd::Unsettled`] when its register call outlived [`DRAIN_LIMIT`].
const DRAIN_EXPIRED: &str = "the run stopped and IMS had not answered the register call 20 s \
                             later; the next run checks the image status before submitting again";

/// Resolves [`DRAIN_LIMIT`] after the run is told to stop (never, while it runs).
async fn drain_expired<C: ImsApi>(ctx: &Ctx<C>) {
    ctx.stop.cancelled().await;
    tokio::time::sleep(DRAIN_LIMIT).await;
}

/// Why an image is [`SubmitEnd::Unsettled`] when the run stops while a call's fate is unknown.
const STOPPED_UNANSWERED: &str = "the run stopped before IMS answered the register call; the \
                                  next run checks the image status before submitting again";

pub async fn submit<C: ImsApi>(ctx: &Ctx<C>, entry: &ImageEntry, attempts: &mut u32) -> SubmitEnd {
    let image_id = entry.image_id;
    let image_url = entry.image_url.to_string();
    let (mut errors, mut throttles, mut flow_waits, mut checks) = (0, 0, 0, 0);
    let mut uncertain = false;
    let stopped = |uncertain: bool| {
        if uncertain {
            SubmitEnd::Unsettled(STOPPED_UNANSWERED.to_string())
        } else {
            SubmitEnd::NotSent
        }
    };
    loop {
        let Some(permit) = ctx.submit_turn().await else {
            return stopped(uncertain);
        };
        *attempts += 1;
        let sent_at = Instant::now();
        ctx.emit(RunEvent::Submitting {
            image_id,
            attempt: *attempts,
        });
        // Boxed while on the wire only (see `Ctx::query_once`). A call on the wire is let
        // finish when the run stops, up to the drain limit.
        let call = Box::pin(ctx.client.register_image(&image_id, &image_url));
        let answer = tokio::select! {
            biased;
            answer = call => answer,
            () = drain_expired(ctx) => return SubmitEnd::Unsettled(DRAIN_EXPIRED.to_string()),
        };
        drop(permit);
        let error = match answer {
            Ok(job_id) => {
                ctx.emit(RunEvent::Submitted {
                    image_id,
                    image_url: image_url.clone(),
                    job_id: job_id.clone(),
                });
                // The job ID is on disk (state journal) before the image counts as submitted;
                // a stopping run waits for the disk only up to the drain limit (the job ID is
                // written, and in the report).
                tokio::select! {
                    biased;
                    () = ctx.events_durable() => {}
                    () = drain_expired(ctx) => {}
                }
                return SubmitEnd::Accepted {
                    job_id: Some(job_id),
                    active: false,
                };
            }
            Err(error) => error,
        };
        let class = error.class();
        let throttled = matches!(
            class,
            ErrorClass::Retryable {
                throttled: true,
                ..
            }
        );
        let attempt = if throttled {
            ctx.pacer.throttled(sent_at);
            throttles += 1;
            throttles
        } else {
            errors += 1;
            errors
        };
        match decide_register(&class, error.code(), attempt, jitter()) {
            RetryDecision::RetryAfter(delay) => {
                if throttled {
                    ctx.emit(RunEvent::Throttled {
                        api: Api::Register,
                        delay,
                    });
                }
                ctx.emit(RunEvent::Retrying {
                    api: Api::Register,
                    image_id: Some(image_id),
                    reason: error.to_string(),
                    delay,
                });
                if !ctx.sleep(delay).await {
                    return stopped(uncertain);
                }
            }
            RetryDecision::CheckImageFirst => {
                checks += 1;
                uncertain = class == ErrorClass::Ambiguous;
                match accepted_by_image_status(ctx, image_id).await {
                    Check::Accepted { active } => {
                        return SubmitEnd::Accepted {
                            job_id: None,
                            active,
                        };
                    }
                    Check::StillQueued if checks < MAX_STATUS_CHECKS => uncertain = false,
                    // Only IMS's own refusal is a verdict; answers that cannot be understood
                    // leave the image for the next run to check.
                    Check::StillQueued if class == ErrorClass::Ambiguous => {
                        return SubmitEnd::Unsettled(format!(
                            "{}; the image is still `queued` after {checks} register calls whose \
                             fate is unknown: the next run checks its status again before \
                             submitting",
                            error.message_without_code()
                        ));
                    }
                    Check::StillQueued => {
                        return SubmitEnd::Failed {
                            code: error.code().map(str::to_string),
                            message: format!(
                                "{}; the image stays `queued` although IMS refuses it",
                                error.message_without_code()
                            ),
                        };
                    }
                    Check::Unknown(message) => return SubmitEnd::Unsettled(message),
                    Check::Gone(message) => {
                        return SubmitEnd::Failed {
                            code: error.code().map(str::to_string),
                            message,
                        };
                    }
                    Check::Stopped => return stopped(uncertain),
                }
            }
            RetryDecision::WaitForCapacity => {
                flow_waits += 1;
                let delay = flow_control_pause(flow_waits, jitter());
                ctx.emit(RunEvent::Retrying {
                    api: Api::Register,
                    image_id: Some(image_id),
                    reason: format!("{error} (waiting for a running job to finish)"),
                    delay,
                });
                tokio::select! {
                    biased;
                    _ = ctx.stop.cancelled() => return SubmitEnd::NotSent,
                    _ = ctx.active.one_ended() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            RetryDecision::GiveUp => {
                return SubmitEnd::Failed {
                    code: error.code().map(str::to_string),
                    message: error.message_without_code(),
                };
            }
            RetryDecision::StopRun => {
                ctx.stop_for_auth(&error);
                return stopped(uncertain);
            }
        }
    }
}

enum Check {
    Accepted {
        active: bool,
    },
    StillQueued,
    /// IMS's own answer: the image is gone or broken.
    Gone(String),
    /// The status could not be read: nobody knows.
    Unknown(String),
    Stopped,
}

/// Whether IMS took the registration, from the image status: at once, then once more after
/// the grace if it still looks `queued`.
async fn accepted_by_image_status<C: ImsApi>(ctx: &Ctx<C>, image_id: ImageId) -> Check {
    for round in 0..2 {
        if round == 1 && !ctx.sleep(AMBIGUITY_GRACE).await {
            return Check::Stopped;
        }
        let image = match ctx
            .query(
                Api::GetImage,
                Some(image_id),
                "checking whether IMS took the registration",
                || ctx.client.get_image(&image_id),
            )
            .await
        {
            Ok(image) => image,
            Err(QueryError::Stopped) => return Check::Stopped,
            Err(QueryError::Failed(error)) => {
                return Check::Unknown(format!(
                    "could not tell whether IMS took the registration: {error}; the next run \
                     checks the image status before submitting again"
                ));
            }
        };
        let Some(image) = image else {
            return Check::Gone("the image no longer exists".into());
        };
        match image.status {
            ImageStatus::Saving => return Check::Accepted { active: false },
            ImageStatus::Active => return Check::Accepted { active: true },
            ImageStatus::Queued => continue,
            other => {
                return Check::Gone(format!(
                    "the image is `{}` after the register call",
                    other.as_str()
                ));
            }
        }
    }
    Check::StillQueued
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio_util::sync::CancellationToken;

    use super::super::testing::{FakeIms, Fault, image_id, planned};
    use super::super::{EventSink, RunConfig, RunEvent, RunResult, execute};
    use super::*;
    use crate::report::ImageOutcome;

    #[derive(Default)]
    struct Submitted(Mutex<Vec<JobId>>);

    impl EventSink for Submitted {
        fn event(&self, event: &RunEvent) {
            if let RunEvent::Submitted { job_id, .. } = event {
                self.0.lock().unwrap().push(job_id.clone());
            }
        }
    }

    fn config() -> RunConfig {
        RunConfig {
            concurrency: 4,
            max_active_jobs: 20,
            submit_rate: f64::INFINITY,
            query_rate: f64::INFINITY,
            poll_interval: Duration::from_secs(1),
            job_timeout: Duration::from_secs(3600),
        }
    }

    async fn run_one(fake: &Arc<FakeIms>) -> (RunResult, Vec<JobId>) {
        let sink = Arc::new(Submitted::default());
        let result = execute(
            fake.clone(),
            vec![planned(&image_id(0), None)],
            &config(),
            sink.clone(),
            CancellationToken::new(),
        )
        .await;
        let submitted = sink.0.lock().unwrap().clone();
        (result, submitted)
    }

    #[tokio::test(start_paused = true)]
    async fn huge_job_id_is_never_journaled_and_the_image_is_followed() {
        for junk in ["a".repeat(1 << 20), String::new(), "<html>".into()] {
            let fake = Arc::new(FakeIms::new(1, Duration::from_secs(5)));
            fake.fault(Fault::AcceptedWithJobId(junk.clone()));
            let (result, submitted) = run_one(&fake).await;
            let record = &result.records[0];
            assert_eq!(record.status, ImageOutcome::Registered, "{junk:.20}");
            assert_eq!(record.job_id, None, "the unusable answer is not a job ID");
            assert!(submitted.is_empty(), "journaled: {submitted:?}");
            let counters = fake.counters();
            assert_eq!(counters.register_calls, 1, "never re-sent blindly");
            assert_eq!(counters.accepted.values().sum::<u32>(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drain_after_cancellation_is_bounded_and_loses_nothing() {
        let fake = Arc::new(FakeIms::new(3, Duration::from_secs(600)));
        fake.fault(Fault::Pass);
        fake.fault(Fault::Hang);
        let images: Vec<_> = (0..3).map(|n| planned(&image_id(n), None)).collect();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let cancelled_at = Arc::new(Mutex::new(None));
        let mark = cancelled_at.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            *mark.lock().unwrap() = Some(tokio::time::Instant::now());
            trigger.cancel();
        });
        let mut config = config();
        config.max_active_jobs = 2;
        let sink = Arc::new(Submitted::default());
        // Without the bound, the hanging call holds the run forever; on the paused clock the
        // timeout below would then fire.
        let result = tokio::time::timeout(
            DRAIN_LIMIT * 3,
            execute(fake.clone(), images, &config, sink.clone(), cancel),
        )
        .await
        .expect("the drain after cancellation is bounded");
        let drained = cancelled_at.lock().unwrap().unwrap().elapsed();
        assert!(drained >= DRAIN_LIMIT, "{drained:?}");
        assert!(
            drained < DRAIN_LIMIT + Duration::from_secs(1),
            "{drained:?}"
        );
        assert!(result.interrupted);
        let statuses: Vec<_> = result.records.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                ImageOutcome::Pending,
                ImageOutcome::Pending,
                ImageOutcome::Cancelled
            ]
        );
        // The accepted job keeps its ID; the unanswered call is unsettled, not lost.
        assert!(result.records[0].job_id.is_some());
        assert_eq!(result.records[1].job_id, None);
        let message = result.records[1]
            .error_message
            .as_deref()
            .unwrap_or_default();
        assert!(message.contains("next run checks"), "{message}");
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn register_answers_that_never_tell_leave_the_image_pending_not_failed() {
        let fake = Arc::new(FakeIms::new(1, Duration::from_secs(5)));
        for _ in 0..MAX_STATUS_CHECKS {
            fake.fault(Fault::DroppedNotAccepted);
        }
        let (result, submitted) = run_one(&fake).await;
        let record = &result.records[0];
        assert_eq!(record.status, ImageOutcome::Pending);
        assert_eq!(record.job_id, None);
        let message = record.error_message.as_deref().unwrap_or_default();
        assert!(message.contains("next run checks"), "{message}");
        assert!(submitted.is_empty());
        assert_eq!(fake.counters().register_calls, MAX_STATUS_CHECKS);
    }
}
