//! Rate control of the calls: a governor GCRA limiter per lane (register calls at
//! `submit_rate`, status queries at `query_rate`; burst 1, so never faster than the rate), and
//! the submitter's shared throttling state.
//!
//! When the gateway throttles one register call, every submitting task must back off, not just
//! the one that was told: [`Pacer::throttled`] sets a "not before" instant for the whole lane
//! and doubles a slowdown factor (up to x8) that stretches the spacing between register calls
//! beyond the governor's; the factor halves again after each 10 s without throttling.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Rates at or above this are treated as unlimited (benchmarks).
pub const UNLIMITED_RATE: f64 = 1.0e6;
/// The limiter runs this much below the configured rate, so that send-time jitter can never
/// push a one-second window over it.
pub const RATE_MARGIN: f64 = 0.995;
/// Largest slowdown factor after repeated throttling.
pub const MAX_SLOWDOWN: u32 = 8;
/// Time without throttling after which the slowdown factor halves.
pub const RECOVERY: Duration = Duration::from_secs(10);

/// A GCRA limiter with burst 1, or nothing for an unlimited rate.
pub struct Limiter {
    inner: Option<DefaultDirectRateLimiter>,
    interval: Duration,
}

impl Limiter {
    /// `rate` in calls per second; non-positive or non-finite rates are clamped to 0.001/s.
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else if rate.is_infinite() && rate > 0.0 {
            UNLIMITED_RATE
        } else {
            0.001
        };
        if rate >= UNLIMITED_RATE {
            return Limiter {
                inner: None,
                interval: Duration::ZERO,
            };
        }
        let interval = Duration::from_secs_f64(1.0 / (rate * RATE_MARGIN));
        let inner = Quota::with_period(interval)
            .map(|quota| RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)));
        Limiter { inner, interval }
    }

    /// The spacing between two calls at this rate (zero when unlimited).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub async fn until_ready(&self) {
        if let Some(limiter) = &self.inner {
            limiter.until_ready().await;
        }
    }
}

/// The submit lane's throttling state, shared by every submitting task.
pub struct Pacer {
    base_interval: Duration,
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    not_before: Instant,
    next_slot: Instant,
    slowdown: u32,
    last_change: Instant,
}

impl Pacer {
    pub fn new(base_interval: Duration) -> Self {
        let now = Instant::now();
        Pacer {
            base_interval,
            state: Mutex::new(PacerState {
                not_before: now,
                next_slot: now,
                slowdown: 1,
                last_change: now,
            }),
        }
    }

    /// Waits until the lane may send again, and takes that turn.
    pub async fn wait_turn(&self) {
        loop {
            match self.try_take(Instant::now()) {
                None => return,
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// Takes the turn at `now` if the lane is open (`None`), else tells when to come back.
    fn try_take(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.slowdown > 1 && now.saturating_duration_since(state.last_change) >= RECOVERY {
            state.slowdown /= 2;
            state.last_change = now;
        }
        let open_at = state.not_before.max(state.next_slot);
        if open_at > now {
            return Some(open_at);
        }
        if state.slowdown > 1 {
            state.next_slot = now + self.base_interval * state.slowdown;
        }
        None
    }

    /// The gateway throttled a call: pause the whole lane for `pause`, then run slower.
    pub fn throttled(&self, pause: Duration) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.not_before = state.not_before.max(now + pause);
        state.slowdown = (state.slowdown * 2).min(MAX_SLOWDOWN);
        state.last_change = now;
    }

    /// The current slowdown factor (1 = full rate).
    pub fn slowdown(&self) -> u32 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slowdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn throttling_pauses_the_lane_then_slows_it_then_recovers() {
        let pacer = Pacer::new(Duration::from_millis(100));
        let start = Instant::now();
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        assert_eq!(Instant::now(), start, "open lane: no waiting");

        pacer.throttled(Duration::from_secs(3));
        assert_eq!(pacer.slowdown(), 2);
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // Slowed: the next turn comes two base intervals later.
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(3200));

        pacer.throttled(Duration::ZERO);
        pacer.throttled(Duration::ZERO);
        pacer.throttled(Duration::ZERO);
        assert_eq!(pacer.slowdown(), MAX_SLOWDOWN);

        tokio::time::sleep(RECOVERY).await;
        pacer.wait_turn().await;
        assert_eq!(pacer.slowdown(), MAX_SLOWDOWN / 2);
        tokio::time::sleep(RECOVERY * 2).await;
        pacer.wait_turn().await;
        assert_eq!(pacer.slowdown(), MAX_SLOWDOWN / 4);
    }

    #[test]
    fn unlimited_and_invalid_rates() {
        assert_eq!(Limiter::new(f64::INFINITY).interval(), Duration::ZERO);
        assert_eq!(Limiter::new(1.0e9).interval(), Duration::ZERO);
        assert!(Limiter::new(0.0).interval() > Duration::from_secs(900));
        let two = Limiter::new(2.0).interval();
        assert!(two > Duration::from_millis(500) && two < Duration::from_millis(505));
    }
}
