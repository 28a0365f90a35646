//! Submitting one image: `register_image` in the register lane (in-flight bound, shared
//! adaptive rate, GCRA limiter), with the retry policy of [`super::retry`]. A throttled call
//! waits its own `Retry-After` (or 2-5 s) and tells the lane's [`super::pacer::Pacer`], which
//! slows every submitting task down for a moment.
//!
//! A register call is not idempotent, so an answer lost on the way back (or a 400 IMG.0046
//! "image not queued" on a re-send) is resolved by looking at the image: `saving`/`active`
//! means IMS accepted it (followed by image status, its job ID is unknown); still `queued` after
//! [`AMBIGUITY_GRACE`] means it was not, and only then is the call sent again. A call already on
//! the wire when the run stops is let finish, so an accepted job is never lost.

use std::time::Duration;

use tokio::time::Instant;

use crate::ims::{ErrorClass, ImageStatus, ImsApi};
use crate::manifest::ImageEntry;

use super::RunEvent;
use super::context::{Ctx, QueryError};
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
    Accepted {
        job_id: Option<String>,
        active: bool,
    },
    Failed {
        code: Option<String>,
        message: String,
    },
    /// The run stopped before any call was accepted.
    NotSent,
    /// The run stopped while it was unknown whether the last call was accepted.
    Unknown,
}

pub async fn submit<C: ImsApi>(ctx: &Ctx<C>, entry: &ImageEntry, attempts: &mut u32) -> SubmitEnd {
    let image_id = entry.image_id.as_str();
    let image_url = entry.image_url.to_string();
    let (mut errors, mut throttles, mut flow_waits, mut checks) = (0, 0, 0, 0);
    let mut uncertain = false;
    let stopped = |uncertain: bool| {
        if uncertain {
            SubmitEnd::Unknown
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
            image_id: image_id.to_string(),
            attempt: *attempts,
        });
        // Boxed while on the wire only (see `Ctx::query_once`).
        let answer = Box::pin(ctx.client.register_image(image_id, &image_url)).await;
        drop(permit);
        let error = match answer {
            Ok(job_id) => {
                ctx.emit(RunEvent::Submitted {
                    image_id: image_id.to_string(),
                    image_url: image_url.clone(),
                    job_id: job_id.clone(),
                });
                // The job ID is on disk (state journal) before the image counts as submitted.
                ctx.events_durable().await;
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
                    ctx.emit(RunEvent::Throttled { delay });
                }
                ctx.emit(RunEvent::Retrying {
                    image_id: Some(image_id.to_string()),
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
                    Check::StillQueued => {
                        return SubmitEnd::Failed {
                            code: error.code().map(str::to_string),
                            message: format!(
                                "{}; the image stays `queued` although IMS refuses it",
                                error.message_without_code()
                            ),
                        };
                    }
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
                    image_id: Some(image_id.to_string()),
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
    Accepted { active: bool },
    StillQueued,
    Gone(String),
    Stopped,
}

/// Whether IMS took the registration, from the image status: at once, then once more after
/// the grace if it still looks `queued`.
async fn accepted_by_image_status<C: ImsApi>(ctx: &Ctx<C>, image_id: &str) -> Check {
    for round in 0..2 {
        if round == 1 && !ctx.sleep(AMBIGUITY_GRACE).await {
            return Check::Stopped;
        }
        let image = match ctx
            .query(
                Some(image_id),
                "checking whether IMS took the registration",
                || ctx.client.get_image(image_id),
            )
            .await
        {
            Ok(image) => image,
            Err(QueryError::Stopped) => return Check::Stopped,
            Err(QueryError::Failed(error)) => {
                return Check::Gone(format!(
                    "could not tell whether IMS took the registration: {error}"
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
