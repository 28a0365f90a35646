//! The retry policy, as pure functions: what to do after a failed call and how long to wait.
//!
//! Nothing here sleeps, reads a clock or draws random numbers: callers pass a jitter draw in
//! `[0, 1)`, so every decision is unit-tested exactly. The policy (README, "Retries"):
//! - gateway throttling (429 / APIG.0308 / APIGW.0308): the throttled call waits `Retry-After`
//!   when the server sent one, else a jittered 2-5 s, at most [`MAX_THROTTLED_ATTEMPTS`] tries;
//!   the register lane's rate adapts meanwhile (see [`super::pacer`]);
//! - other retryable failures (5xx, IMG.0061, requests that never left): exponential backoff
//!   with full jitter, `random(0, min(30 s, 0.5 s x 2^(n-1)))`, at most [`MAX_ATTEMPTS`] tries;
//! - IMS flow control (IMG.0060 / IMG.0194): wait for one of our running jobs to finish (or
//!   a backoff), then try again; never a failure of the image;
//! - a register call that may have taken effect (no answer), or a 400 IMG.0046 "image not
//!   queued": look at the image before anything else; never re-send blindly;
//! - 401: stop the whole run;
//! - anything else: give up on this image with the IMS code and message.

use std::time::Duration;

use crate::ims::ErrorClass;

/// First backoff step for retryable failures (full jitter: the wait is random below it).
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Largest backoff step.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Tries of one call for non-throttling retryable failures (5xx, network, IMG.0061).
pub const MAX_ATTEMPTS: u32 = 8;
/// Throttled tries of one call before giving up (about 1.5-4 minutes of pauses).
pub const MAX_THROTTLED_ATTEMPTS: u32 = 40;
/// Pause after throttling when the server sent no `Retry-After`: 2 s plus up to 3 s of jitter.
pub const THROTTLE_PAUSE_MIN: Duration = Duration::from_secs(2);
pub const THROTTLE_PAUSE_SPREAD: Duration = Duration::from_secs(3);
/// IMS answer to a register call on an image that is not `queued` (what the simulator sends).
pub const NOT_QUEUED_CODE: &str = "IMG.0046";

/// The failures of one call so far, throttled ones counted apart from the others (each kind
/// has its own attempt limit).
#[derive(Debug, Default, Clone, Copy)]
pub struct Failures {
    errors: u32,
    throttles: u32,
}

impl Failures {
    /// Counts one failure of this class; answers how many of its kind there were, this one
    /// included (the `attempt` of [`decide_query`] and [`decide_register`]).
    pub fn count(&mut self, class: &ErrorClass) -> u32 {
        let counter = match class {
            ErrorClass::Retryable {
                throttled: true, ..
            } => &mut self.throttles,
            _ => &mut self.errors,
        };
        *counter += 1;
        *counter
    }
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Send the same call again after this pause.
    RetryAfter(Duration),
    /// The call may have taken effect: look at the image before any re-send.
    CheckImageFirst,
    /// The cloud is busy: wait for a running job to finish (or a backoff), then try again.
    WaitForCapacity,
    /// Final: report the error on this image.
    GiveUp,
    /// Credentials rejected: stop every request of the run at once.
    StopRun,
}

/// Decision after a failed `register_image`. `attempt` counts the failures of the same kind so
/// far, this one included (throttled failures and other retryable ones are counted apart).
pub fn decide_register(
    class: &ErrorClass,
    code: Option<&str>,
    attempt: u32,
    jitter: f64,
) -> RetryDecision {
    if code == Some(NOT_QUEUED_CODE) {
        return RetryDecision::CheckImageFirst;
    }
    match class {
        ErrorClass::AuthFailed => RetryDecision::StopRun,
        ErrorClass::Ambiguous => RetryDecision::CheckImageFirst,
        ErrorClass::FlowControl => RetryDecision::WaitForCapacity,
        ErrorClass::Retryable {
            retry_after,
            throttled,
        } => retry_after_failure(*retry_after, *throttled, attempt, jitter),
        ErrorClass::Final => RetryDecision::GiveUp,
    }
}

/// Decision after a failed status query (`show_job`, `list_images`, `get_image`): these are
/// idempotent reads, so "no answer" and "cloud busy" are simply retried.
pub fn decide_query(class: &ErrorClass, attempt: u32, jitter: f64) -> RetryDecision {
    match class {
        ErrorClass::AuthFailed => RetryDecision::StopRun,
        ErrorClass::Ambiguous | ErrorClass::FlowControl => {
            retry_after_failure(None, false, attempt, jitter)
        }
        ErrorClass::Retryable {
            retry_after,
            throttled,
        } => retry_after_failure(*retry_after, *throttled, attempt, jitter),
        ErrorClass::Final => RetryDecision::GiveUp,
    }
}

fn retry_after_failure(
    retry_after: Option<Duration>,
    throttled: bool,
    attempt: u32,
    jitter: f64,
) -> RetryDecision {
    let limit = if throttled {
        MAX_THROTTLED_ATTEMPTS
    } else {
        MAX_ATTEMPTS
    };
    if attempt >= limit {
        return RetryDecision::GiveUp;
    }
    RetryDecision::RetryAfter(match retry_after {
        Some(delay) => delay,
        None if throttled => throttle_pause(jitter),
        None => full_jitter_backoff(attempt, jitter),
    })
}

/// `jitter x min(cap, base x 2^(attempt-1))` ("full jitter").
pub fn full_jitter_backoff(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let step = BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_CAP);
    step.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The 2-5 s pause Huawei recommends after throttling.
pub fn throttle_pause(jitter: f64) -> Duration {
    THROTTLE_PAUSE_MIN + THROTTLE_PAUSE_SPREAD.mul_f64(jitter.clamp(0.0, 1.0))
}

/// First pause when IMS answers "too many tasks" and none of our own jobs ends sooner.
pub const FLOW_CONTROL_PAUSE: Duration = Duration::from_secs(2);
/// Longest such pause.
pub const FLOW_CONTROL_CAP: Duration = Duration::from_secs(30);

/// Pause before the `attempt`-th retry after IMS flow control (unless one of our jobs ends
/// first): 2 s doubling up to 30 s, randomised between half and all of it.
pub fn flow_control_pause(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let step = FLOW_CONTROL_PAUSE
        .saturating_mul(1u32 << exponent)
        .min(FLOW_CONTROL_CAP);
    step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A uniform draw in `[0, 1)` for the functions above.
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_failures_are_counted_apart() {
        let throttled = ErrorClass::Retryable {
            retry_after: None,
            throttled: true,
        };
        let mut failures = Failures::default();
        assert_eq!(failures.count(&ErrorClass::Ambiguous), 1);
        assert_eq!(failures.count(&throttled), 1);
        assert_eq!(failures.count(&throttled), 2);
        assert_eq!(failures.count(&ErrorClass::Final), 2);
    }

    const RETRYABLE: ErrorClass = ErrorClass::Retryable {
        retry_after: None,
        throttled: false,
    };
    const THROTTLED: ErrorClass = ErrorClass::Retryable {
        retry_after: None,
        throttled: true,
    };

    #[test]
    fn throttling_waits_two_to_five_seconds_without_retry_after() {
        assert_eq!(
            decide_register(&THROTTLED, Some("APIG.0308"), 1, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            decide_register(&THROTTLED, Some("APIG.0308"), 3, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            decide_query(&THROTTLED, 1, 0.5),
            RetryDecision::RetryAfter(Duration::from_millis(3500))
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let class = ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(7)),
            throttled: true,
        };
        assert_eq!(
            decide_register(&class, Some("APIG.0308"), 1, 0.9),
            RetryDecision::RetryAfter(Duration::from_secs(7))
        );
        let class = ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(1)),
            throttled: false,
        };
        assert_eq!(
            decide_query(&class, 2, 0.9),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
    }

    #[test]
    fn backoff_is_exponential_with_full_jitter_and_capped() {
        assert_eq!(full_jitter_backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(full_jitter_backoff(2, 1.0), Duration::from_secs(1));
        assert_eq!(full_jitter_backoff(4, 1.0), Duration::from_secs(4));
        assert_eq!(full_jitter_backoff(4, 0.5), Duration::from_secs(2));
        assert_eq!(full_jitter_backoff(4, 0.0), Duration::ZERO);
        assert_eq!(full_jitter_backoff(7, 1.0), BACKOFF_CAP);
        assert_eq!(full_jitter_backoff(60, 1.0), BACKOFF_CAP);
        assert_eq!(
            decide_register(&RETRYABLE, Some("IMG.0061"), 3, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(2))
        );
    }

    #[test]
    fn attempts_are_limited() {
        assert!(matches!(
            decide_register(&RETRYABLE, None, MAX_ATTEMPTS - 1, 0.3),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            decide_register(&RETRYABLE, None, MAX_ATTEMPTS, 0.3),
            RetryDecision::GiveUp
        );
        // Throttling has its own, larger budget.
        assert!(matches!(
            decide_register(&THROTTLED, None, MAX_ATTEMPTS, 0.3),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            decide_register(&THROTTLED, None, MAX_THROTTLED_ATTEMPTS, 0.3),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn ambiguous_register_is_checked_never_resent() {
        assert_eq!(
            decide_register(&ErrorClass::Ambiguous, None, 1, 0.5),
            RetryDecision::CheckImageFirst
        );
        // A 400 "image not queued" (classified Final) is resolved the same way.
        assert_eq!(
            decide_register(&ErrorClass::Final, Some(NOT_QUEUED_CODE), 1, 0.5),
            RetryDecision::CheckImageFirst
        );
        // Reads are simply repeated.
        assert!(matches!(
            decide_query(&ErrorClass::Ambiguous, 1, 0.5),
            RetryDecision::RetryAfter(_)
        ));
    }

    #[test]
    fn flow_control_waits_for_capacity_and_auth_stops_the_run() {
        assert_eq!(
            decide_register(&ErrorClass::FlowControl, Some("IMG.0060"), 50, 0.5),
            RetryDecision::WaitForCapacity
        );
        assert_eq!(
            decide_register(&ErrorClass::AuthFailed, Some("APIG.0301"), 1, 0.5),
            RetryDecision::StopRun
        );
        assert_eq!(
            decide_query(&ErrorClass::AuthFailed, 1, 0.5),
            RetryDecision::StopRun
        );
    }

    #[test]
    fn flow_control_pause_grows_and_is_capped() {
        assert_eq!(flow_control_pause(1, 1.0), Duration::from_secs(2));
        assert_eq!(flow_control_pause(1, 0.0), Duration::from_secs(1));
        assert_eq!(flow_control_pause(3, 1.0), Duration::from_secs(8));
        assert_eq!(flow_control_pause(30, 1.0), FLOW_CONTROL_CAP);
    }

    #[test]
    fn final_errors_give_up() {
        assert_eq!(
            decide_register(&ErrorClass::Final, Some("IMG.0057"), 1, 0.5),
            RetryDecision::GiveUp
        );
        assert_eq!(
            decide_query(&ErrorClass::Final, 1, 0.5),
            RetryDecision::GiveUp
        );
    }
}
