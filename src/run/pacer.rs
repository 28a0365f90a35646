//! Rate control of the calls.
//!
//! Each lane (register calls at `submit_rate`, status queries at `query_rate`) has a governor
//! GCRA limiter with burst 1: never a call sooner than one period after the previous one, so
//! never a burst above the rate. The register lane's limiter runs [`RATE_MARGIN`] below
//! `submit_rate`, so that the jitter between sending a call and its arrival cannot make a
//! server enforcing the same rate see two calls too close. Callers take turns through a FIFO
//! lock, so only one task at a time waits for the limiter (no herd of tasks waking on every
//! cell). A GCRA limiter with burst 1 turns every late wake-up into a lasting loss of rate, and
//! tokio's timer has millisecond granularity (up to 20 % at 200 calls/s), so the last
//! [`FINE_WAIT`] of a wait is slept precisely on the thread itself.
//!
//! Throttling: when the gateway throttles one register call, every submitting task backs off,
//! not just the one that was told. [`Pacer::throttled`] sets a "not before" instant for the
//! whole lane and doubles a slowdown factor (up to x8): while slowed, register calls are
//! spaced by `factor x period` (on a fixed schedule: a turn taken up to [`SLACK`] late does not
//! push the later ones back). The factor halves again after each 10 s without throttling.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Rates at or above this are treated as unlimited (benchmarks).
pub const UNLIMITED_RATE: f64 = 1.0e6;
/// The register lane's limiter runs this much below `submit_rate`.
pub const RATE_MARGIN: f64 = 0.998;
/// While slowed down, a turn taken later than this after its slot restarts the schedule.
pub const SLACK: Duration = Duration::from_millis(2);
/// The end of a limiter wait is slept precisely, blocking the thread, for at most this long.
const FINE_WAIT: Duration = Duration::from_micros(1500);
/// Largest slowdown factor after repeated throttling.
pub const MAX_SLOWDOWN: u32 = 8;
/// Time without throttling after which the slowdown factor halves.
pub const RECOVERY: Duration = Duration::from_secs(10);
/// Slot interval used while slowed down when the rate itself is unlimited.
const SLOWED_UNLIMITED_INTERVAL: Duration = Duration::from_millis(10);

/// A GCRA limiter with burst 1 at exactly `rate`, or nothing for an unlimited rate.
pub struct Limiter {
    inner: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    /// One waiter at a time, first come first served.
    turn: tokio::sync::Mutex<()>,
    rate: f64,
}

/// Clamps a configured rate: non-finite or non-positive values become 0.001/s (the CLI
/// validates rates; this only keeps the engine safe).
fn sane_rate(rate: f64) -> f64 {
    if rate.is_infinite() && rate > 0.0 {
        UNLIMITED_RATE
    } else if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        0.001
    }
}

impl Limiter {
    /// `rate` in calls per second, exactly.
    pub fn new(rate: f64) -> Self {
        Self::with_margin(rate, 1.0)
    }

    /// `rate x margin` calls per second.
    pub fn with_margin(rate: f64, margin: f64) -> Self {
        let rate = sane_rate(rate);
        let inner = if rate >= UNLIMITED_RATE {
            None
        } else {
            Quota::with_period(Duration::from_secs_f64(1.0 / (rate * margin)))
                .map(|quota| RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)))
        };
        Limiter {
            inner,
            clock: DefaultClock::default(),
            turn: tokio::sync::Mutex::new(()),
            rate,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.inner.is_none()
    }

    /// The configured rate (after clamping).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Waits for this caller's turn, then (if given) for the pacer, then for the limiter's
    /// cell, and takes them.
    pub async fn until_ready(&self, pacer: Option<&Pacer>) {
        if self.inner.is_none() && pacer.is_none_or(|p| p.is_open(Instant::now())) {
            return;
        }
        let _turn = self.turn.lock().await;
        if let Some(pacer) = pacer {
            pacer.wait_turn().await;
        }
        let Some(limiter) = &self.inner else {
            return;
        };
        while let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            if wait > FINE_WAIT {
                // Coarse part on tokio's timer (millisecond granularity)...
                tokio::time::sleep(wait - FINE_WAIT).await;
            } else {
                // ...the last stretch precisely, holding this worker thread for at most
                // FINE_WAIT: a late turn would slow the whole lane down for good (GCRA).
                std::thread::sleep(wait);
            }
        }
    }
}

/// The register lane's slot schedule and throttling state, shared by every submitting task.
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
    /// The throttle state of a lane of `rate` calls per second.
    pub fn for_rate(rate: f64) -> Self {
        let rate = sane_rate(rate);
        let interval = if rate >= UNLIMITED_RATE {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / rate)
        };
        Self::new(interval)
    }

    /// `base_interval` is the rate's period: the spacing unit while slowed down.
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

    /// The rate's period.
    pub fn interval(&self) -> Duration {
        self.base_interval
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

    /// Whether a turn may be taken at `now` without waiting.
    fn is_open(&self, now: Instant) -> bool {
        let state = self.lock();
        state.slowdown == 1 && state.not_before <= now
    }

    /// Takes the turn at `now` if the lane is open (`None`), else tells when to come back.
    fn try_take(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        if state.slowdown > 1 && now.saturating_duration_since(state.last_change) >= RECOVERY {
            state.slowdown /= 2;
            state.last_change = now;
        }
        let open_at = state.not_before.max(state.next_slot);
        if open_at > now {
            return Some(open_at);
        }
        if state.slowdown == 1 {
            // Full speed: the limiter alone spaces the calls.
            state.next_slot = now;
            return None;
        }
        let interval = self.base_interval.max(SLOWED_UNLIMITED_INTERVAL) * state.slowdown;
        let restart = (now + interval).checked_sub(SLACK).unwrap_or(now);
        state.next_slot = (state.next_slot + interval).max(restart);
        None
    }

    /// The gateway throttled a call: pause the whole lane for `pause`, then run slower.
    pub fn throttled(&self, pause: Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        state.not_before = state.not_before.max(now + pause);
        state.slowdown = (state.slowdown * 2).min(MAX_SLOWDOWN);
        state.last_change = now;
    }

    /// The current slowdown factor (1 = full rate).
    pub fn slowdown(&self) -> u32 {
        self.lock().slowdown
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slowed_turns_keep_their_schedule_and_a_stall_is_no_burst() {
        let pacer = Pacer::new(Duration::from_millis(50));
        let start = Instant::now();
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        assert_eq!(
            Instant::now(),
            start,
            "full speed: the limiter spaces the calls"
        );
        pacer.throttled(Duration::ZERO);
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        // Slowed x2: 100 ms apart.
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        // A turn taken 1 ms late keeps the schedule: the next slot is still 100 ms on.
        tokio::time::sleep(Duration::from_millis(101)).await;
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
        // A stall of a second: the next turn comes a full interval (less the slack) later,
        // not at once to catch up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        pacer.wait_turn().await;
        let stalled = Instant::now();
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - stalled, Duration::from_millis(98));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_pauses_the_lane_then_slows_it_then_recovers() {
        let pacer = Pacer::new(Duration::from_millis(100));
        let start = Instant::now();
        pacer.wait_turn().await;
        pacer.throttled(Duration::from_secs(3));
        assert_eq!(pacer.slowdown(), 2);
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // Slowed: the next turn comes two intervals (less the slack, as after any late turn)
        // later.
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(3200) - SLACK);

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

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_lane_only_pauses_when_throttled() {
        let pacer = Pacer::for_rate(f64::INFINITY);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.wait_turn().await;
        }
        assert_eq!(Instant::now(), start);
        pacer.throttled(Duration::from_secs(2));
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(2) + SLOWED_UNLIMITED_INTERVAL * 2 - SLACK
        );
    }

    #[test]
    fn rates_are_clamped() {
        assert!(Limiter::new(f64::INFINITY).is_unlimited());
        assert!(Limiter::new(1.0e9).is_unlimited());
        assert_eq!(Limiter::new(0.0).rate(), 0.001);
        assert_eq!(Limiter::new(-3.0).rate(), 0.001);
        assert_eq!(Limiter::new(2.0).rate(), 2.0);
        assert_eq!(Pacer::for_rate(2.0).interval(), Duration::from_millis(500));
        assert_eq!(Pacer::for_rate(f64::INFINITY).interval(), Duration::ZERO);
    }
}
