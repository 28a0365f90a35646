//! Rate control of the calls.
//!
//! Each lane (register calls at `submit_rate`, status queries at `query_rate`) has a governor
//! GCRA limiter at exactly its rate with burst 1: the hard cap, never a call faster than the
//! rate after the previous one. Callers take turns through a FIFO lock, so only one task at a
//! time waits for the limiter (no herd of tasks waking on every cell), and waits run on tokio's
//! timer.
//!
//! The register lane adds a [`Pacer`] in front of the limiter: a slot schedule
//! [`RATE_MARGIN`] below the rate. Slots follow each other at a fixed interval, so a turn taken
//! a little late (timer granularity) does not delay all later ones; a turn taken more than
//! [`SLACK`] late (a stalled thread) restarts the schedule from now, so a stall never turns into
//! a burst. Any `N+1` register calls in a row are then spread over more than one second.
//!
//! Throttling: when the gateway throttles one register call, every submitting task backs off,
//! not just the one that was told: [`Pacer::throttled`] sets a "not before" instant for the
//! whole lane and doubles a slowdown factor (up to x8) that stretches the slot interval; the
//! factor halves again after each 10 s without throttling.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Rates at or above this are treated as unlimited (benchmarks).
pub const UNLIMITED_RATE: f64 = 1.0e6;
/// The register slots run this much below `submit_rate`, so that the jitter between sending a
/// call and its arrival cannot push a one-second window over the rate.
pub const RATE_MARGIN: f64 = 0.995;
/// A register turn taken later than this after its slot restarts the slot schedule.
pub const SLACK: Duration = Duration::from_millis(2);
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
    /// `rate` in calls per second.
    pub fn new(rate: f64) -> Self {
        let rate = sane_rate(rate);
        let inner = if rate >= UNLIMITED_RATE {
            None
        } else {
            Quota::with_period(Duration::from_secs_f64(1.0 / rate))
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

    /// Waits for this caller's turn, then (if given) for the pacer's slot, then for the
    /// limiter's cell, and takes them.
    pub async fn until_ready(&self, pacer: Option<&Pacer>) {
        if self.inner.is_none() && pacer.is_none_or(|p| p.is_open(Instant::now())) {
            if let Some(pacer) = pacer {
                pacer.wait_turn().await;
            }
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
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
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
    /// Slots for `rate` calls per second, [`RATE_MARGIN`] below it.
    pub fn for_rate(rate: f64) -> Self {
        let rate = sane_rate(rate);
        let interval = if rate >= UNLIMITED_RATE {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / (rate * RATE_MARGIN))
        };
        Self::new(interval)
    }

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

    /// The interval between two slots at full speed.
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

    fn is_open(&self, now: Instant) -> bool {
        let state = self.lock();
        state.slowdown == 1 && self.base_interval.is_zero() && state.not_before <= now
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
        let interval = if state.slowdown > 1 {
            self.base_interval.max(SLOWED_UNLIMITED_INTERVAL) * state.slowdown
        } else {
            self.base_interval
        };
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
    async fn slots_keep_their_schedule_and_a_stall_is_no_burst() {
        let pacer = Pacer::new(Duration::from_millis(100));
        let start = Instant::now();
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        // A turn taken 1 ms late keeps the schedule: the next slot is still at 200 ms.
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
        let two = Pacer::for_rate(2.0).interval();
        assert!(two > Duration::from_millis(502) && two < Duration::from_millis(503));
        assert_eq!(Pacer::for_rate(f64::INFINITY).interval(), Duration::ZERO);
    }
}
