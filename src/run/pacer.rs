//! Rate control of the calls.
//!
//! Each lane (register calls at `submit_rate`, status queries at `query_rate`) has a governor
//! GCRA limiter with burst 1: calls follow each other one period apart, never in a burst. The
//! register lane's limiter runs [`RATE_MARGIN`] below `submit_rate`. Callers take turns through
//! a FIFO lock, so only one task at a time waits for the limiter (no herd of tasks waking on
//! every cell), and waits run on tokio's timer.
//!
//! Timer lateness: tokio's timer has millisecond granularity, and a plain GCRA charges every
//! late wake-up to all later calls (at 200 calls/s, a 1 ms late turn costs 20 % of the rate).
//! So the limiter reads a schedule clock ([`ScheduleClock`]): a turn taken at most [`SLACK`]
//! after the instant the limiter granted is checked as of that instant, and the schedule keeps
//! its pace; a turn taken later (a stalled thread) is checked as of its real time, so a stall
//! never turns into a burst. Any `R + 1` register calls in a row are therefore spread over at
//! least `(R / (R x RATE_MARGIN)) s - SLACK`, more than one second: no one-second window ever
//! holds more than `submit_rate` calls.
//!
//! Throttling: when the gateway throttles one register call, every submitting task backs off,
//! not just the one that was told. [`Pacer::throttled`] sets a "not before" instant for the
//! whole lane and doubles a slowdown factor (up to x8): while slowed, register calls are
//! spaced by `factor x period` on a fixed schedule (same slack rule). The factor halves again
//! after each 10 s without throttling.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// Rates at or above this are treated as unlimited (benchmarks).
pub const UNLIMITED_RATE: f64 = 1.0e6;
/// The register lane's limiter runs this much below `submit_rate` (R calls span at least
/// 1,005 ms as sent). 0.99 was tried: it cost 0.5 % of throughput and did not stop a loaded
/// machine's receive-side jitter from bunching calls; the server's bucket burst absorbs that.
pub const RATE_MARGIN: f64 = 0.995;
/// A turn taken later than this after the instant it was granted restarts the schedule.
pub const SLACK: Duration = Duration::from_millis(4);
/// Largest slowdown factor after repeated throttling.
pub const MAX_SLOWDOWN: u32 = 8;
/// Time without throttling after which the slowdown factor halves.
pub const RECOVERY: Duration = Duration::from_secs(10);
/// Slot interval used while slowed down when the rate itself is unlimited.
const SLOWED_UNLIMITED_INTERVAL: Duration = Duration::from_millis(10);

/// The limiter's clock: time since the limiter was made, on tokio's clock, as set by the turn
/// holder (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct ScheduleClock {
    nanos: Arc<AtomicU64>,
}

impl ScheduleClock {
    fn set(&self, at: Duration) {
        self.nanos.store(
            at.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }
}

impl Clock for ScheduleClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, ScheduleClock, NoOpMiddleware<Duration>>;

/// A GCRA limiter with burst 1, or nothing for an unlimited rate.
pub struct Limiter {
    inner: Option<Gcra>,
    clock: ScheduleClock,
    origin: Instant,
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
        let clock = ScheduleClock::default();
        let inner = if rate >= UNLIMITED_RATE {
            None
        } else {
            Quota::with_period(Duration::from_secs_f64(1.0 / (rate * margin))).map(|quota| {
                RateLimiter::direct_with_clock(quota.allow_burst(NonZeroU32::MIN), clock.clone())
            })
        };
        Limiter {
            inner,
            clock,
            origin: Instant::now(),
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
        let mut granted: Option<Duration> = None;
        loop {
            let now = Instant::now().saturating_duration_since(self.origin);
            // A turn up to SLACK late is checked as of the instant it was granted.
            let at = match granted {
                Some(granted) if now.saturating_sub(granted) <= SLACK => {
                    granted.max(self.clock.now())
                }
                _ => now,
            };
            self.clock.set(at);
            match limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let earliest = not_until.earliest_possible();
                    granted = Some(earliest);
                    tokio::time::sleep_until(self.origin + earliest).await;
                }
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
        assert_eq!(Instant::now() - stalled, Duration::from_millis(100) - SLACK);
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

    /// Turns taken through a limiter on the paused clock, each `late` after it was granted.
    async fn turns(limiter: &Limiter, count: usize, late: Duration) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..count {
            limiter.until_ready(None).await;
            at.push(Instant::now());
            tokio::time::sleep(late).await;
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_keeps_its_pace_despite_late_turns_and_never_bursts() {
        let limiter = Limiter::with_margin(100.0, RATE_MARGIN);
        let period = Duration::from_secs_f64(1.0 / (100.0 * RATE_MARGIN));
        // Every turn taken 1 ms late (timer granularity): the pace does not drift.
        let at = turns(&limiter, 201, Duration::from_millis(1)).await;
        let total = at[200] - at[0];
        assert!(
            total >= period * 200 && total <= period * 200 + SLACK,
            "{total:?}"
        );
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= period - SLACK);
        }
        // No one-second window holds more than 100 turns.
        for (i, start) in at.iter().enumerate() {
            let inside = at[i..]
                .iter()
                .take_while(|t| **t - *start < Duration::from_secs(1));
            assert!(inside.count() <= 100);
        }
        // A stall: the next turns come about one period apart, not at once to catch up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = turns(&limiter, 3, Duration::ZERO).await;
        assert!(after[1] - after[0] >= period);
        assert!(after[2] - after[1] >= period - SLACK);
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
