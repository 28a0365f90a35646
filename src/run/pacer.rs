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
//! Throttling: when the gateway throttles one register call, every submitting task slows down,
//! not just the one that was told (that one waits `Retry-After`, see [`super::retry`]). The
//! [`Pacer`] holds the lane's [`AdaptiveRate`]: cut at each throttle, back at `submit_rate`
//! within [`RECOVERY`] unless throttling persists, converging on the server's real limit when
//! that is lower. While the rate is below `submit_rate`, register calls are spaced by its
//! period on a schedule with the same slack rule; the lane never pauses as a whole, and the
//! limiter keeps `submit_rate` the ceiling.

mod adaptive;

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

pub use adaptive::{AdaptiveRate, BETA, RECOVERY};

/// Rates at or above this are treated as unlimited (benchmarks).
pub const UNLIMITED_RATE: f64 = 1.0e6;
/// The register lane's limiter runs this much below `submit_rate` (R calls span at least
/// 1,005 ms as sent). 0.99 was tried: it cost 0.5 % of throughput and did not stop a loaded
/// machine's receive-side jitter from bunching calls; the server's bucket burst absorbs that.
pub const RATE_MARGIN: f64 = 0.995;
/// A turn taken later than this after the instant it was granted restarts the schedule.
pub const SLACK: Duration = Duration::from_millis(4);

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
        if self.inner.is_none() && pacer.is_none_or(|p| p.take_if_open(Instant::now())) {
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

/// The register lane's adaptive rate and slot schedule, shared by every submitting task.
pub struct Pacer {
    origin: Instant,
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    rate: AdaptiveRate,
    /// The instant the previous turn was granted.
    last_slot: Instant,
    /// While the rate is below the ceiling: when the next turn is due (`None` until the
    /// first turn after a cut).
    next_slot: Option<Instant>,
}

impl Pacer {
    /// The pacer of a lane of `rate` calls per second, sending at most `rate x` [`RATE_MARGIN`]
    /// as its limiter does.
    pub fn for_rate(rate: f64) -> Self {
        let rate = sane_rate(rate);
        if rate >= UNLIMITED_RATE {
            Self::new(f64::INFINITY)
        } else {
            Self::new(rate * RATE_MARGIN)
        }
    }

    /// A pacer of at most `ceiling` calls per second (infinite: unlimited).
    pub fn new(ceiling: f64) -> Self {
        let now = Instant::now();
        Pacer {
            origin: now,
            state: Mutex::new(PacerState {
                rate: AdaptiveRate::new(ceiling),
                last_slot: now,
                next_slot: None,
            }),
        }
    }

    /// The rate the lane may send at now, calls per second.
    pub fn rate(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    fn rate_at(&self, at: Instant) -> f64 {
        let since = self.since_origin(at);
        self.lock().rate.rate(since)
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

    /// Takes the turn at `now` if the lane runs at its ceiling (then the limiter alone spaces
    /// the calls); `false` if it is recovering from a throttle.
    pub fn take_if_open(&self, now: Instant) -> bool {
        let since = self.since_origin(now);
        let mut state = self.lock();
        if !state.rate.at_ceiling(since) {
            return false;
        }
        state.last_slot = now;
        state.next_slot = None;
        state.rate.sent(since);
        true
    }

    /// Takes the turn at `now` if the lane is open (`None`), else tells when to come back.
    fn try_take(&self, now: Instant) -> Option<Instant> {
        if self.take_if_open(now) {
            return None;
        }
        let since = self.since_origin(now);
        let mut state = self.lock();
        let interval = Duration::from_secs_f64(1.0 / state.rate.rate(since));
        let last_slot = state.last_slot;
        let due = *state.next_slot.get_or_insert(last_slot + interval);
        if due > now {
            return Some(due);
        }
        // A turn up to SLACK late keeps the schedule; a later one restarts it (no burst).
        let slot = if now - due <= SLACK { due } else { now };
        state.last_slot = slot;
        state.next_slot = Some(slot + interval);
        state.rate.sent(since);
        None
    }

    /// The gateway throttled a register call that left at `sent_at`: slow the lane down.
    pub fn throttled(&self, sent_at: Instant) {
        let now = self.since_origin(Instant::now());
        let sent_at = self.since_origin(sent_at);
        let mut state = self.lock();
        if state.rate.throttled(sent_at, now) {
            // The next turn is due one period of the new rate after the previous one.
            state.next_slot = None;
        }
    }

    fn since_origin(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `count` turns, each `late` after it was granted; returns when each was taken.
    async fn pacer_turns(pacer: &Pacer, count: usize, late: Duration) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..count {
            pacer.wait_turn().await;
            at.push(Instant::now());
            tokio::time::sleep(late).await;
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_slows_the_lane_for_a_moment_without_pausing_it() {
        let pacer = Pacer::new(20.0);
        let start = Instant::now();
        // At the ceiling the pacer never waits: the limiter spaces the calls.
        pacer_turns(&pacer, 20, Duration::ZERO).await;
        assert_eq!(Instant::now(), start);
        tokio::time::sleep(Duration::from_millis(950)).await;
        pacer.wait_turn().await;
        // 21 calls in the last second: the lane is measured at its ceiling, and cut.
        pacer.throttled(Instant::now());
        assert!(
            (pacer.rate() - 20.0 * BETA).abs() < 1e-9,
            "{}",
            pacer.rate()
        );
        let cut = Instant::now();
        let at = pacer_turns(&pacer, 30, Duration::ZERO).await;
        // No pause: the first turn comes one cut period after the previous one, on tokio's
        // millisecond timer.
        let first = at[0] - cut;
        let cut_period = Duration::from_secs_f64(1.0 / (20.0 * BETA));
        assert!(
            first.abs_diff(cut_period) <= Duration::from_millis(1),
            "{first:?}"
        );
        // Then closer and closer, never (less a timer tick) closer than the ceiling's period.
        let gaps: Vec<Duration> = at.windows(2).map(|p| p[1] - p[0]).collect();
        assert!(gaps[28] + Duration::from_millis(10) < gaps[0], "{gaps:?}");
        assert!(
            gaps.iter().all(|g| *g >= Duration::from_millis(49)),
            "{gaps:?}"
        );
        // Within RECOVERY it is back at the ceiling: turns are free again.
        tokio::time::sleep_until(cut + RECOVERY).await;
        assert_eq!(pacer.rate(), 20.0);
        let free = Instant::now();
        pacer_turns(&pacer, 5, Duration::ZERO).await;
        assert_eq!(Instant::now(), free);
    }

    #[tokio::test(start_paused = true)]
    async fn slowed_turns_keep_their_schedule_and_a_stall_is_no_burst() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        assert_eq!(pacer.try_take(start), None);
        pacer.throttled(start);
        let period = |at: Instant| Duration::from_secs_f64(1.0 / pacer.rate_at(at));
        let first = pacer.try_take(start).unwrap();
        assert_eq!(first, start + period(start));
        // Taken 1 ms late (timer granularity): the next turn is due one period after the
        // instant this one was granted, not after it was taken.
        let late = first + Duration::from_millis(1);
        assert_eq!(pacer.try_take(late), None);
        let second = pacer.try_take(late).unwrap();
        assert_eq!(second, first + period(late));
        // A stall of a second: the turn is taken at once, and the next one comes a full period
        // later, not at once to catch up.
        let stalled = second + Duration::from_secs(1);
        assert_eq!(pacer.try_take(stalled), None);
        assert_eq!(pacer.try_take(stalled), Some(stalled + period(stalled)));
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_of_calls_sent_before_the_cut_do_not_cut_again() {
        let pacer = Pacer::new(50.0);
        pacer_turns(&pacer, 60, Duration::from_millis(20)).await;
        let in_flight = Instant::now();
        pacer.throttled(in_flight);
        let cut = pacer.rate();
        // Calls that left with the first one come back throttled too: one overload, one cut.
        pacer.throttled(in_flight);
        pacer.throttled(in_flight);
        assert_eq!(pacer.rate(), cut);
        // A call sent after the cut and still throttled cuts again.
        tokio::time::advance(Duration::from_millis(30)).await;
        pacer.wait_turn().await;
        let after = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        pacer.throttled(after);
        assert!(pacer.rate() < cut, "{} vs {cut}", pacer.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_lane_is_slowed_to_below_what_it_sent_then_freed() {
        let pacer = Pacer::for_rate(f64::INFINITY);
        for _ in 0..100 {
            pacer.wait_turn().await;
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        assert!(pacer.take_if_open(Instant::now()));
        // About 200 calls per second were sent: the lane is cut to BETA x that.
        pacer.throttled(Instant::now());
        let rate = pacer.rate();
        assert!((rate / BETA - 200.0).abs() < 5.0, "{rate}");
        assert!(!pacer.take_if_open(Instant::now()));
        let cut = Instant::now();
        pacer_turns(&pacer, 2, Duration::ZERO).await;
        assert!(Instant::now() - cut >= Duration::from_secs_f64(1.0 / rate));
        // Free again once the curve passes twice the rate it was cut from.
        tokio::time::sleep_until(cut + adaptive::tests::twice_the_cut_rate()).await;
        assert!(pacer.take_if_open(Instant::now()));
        assert!(pacer.rate().is_infinite());
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
        assert_eq!(Pacer::for_rate(2.0).rate(), 2.0 * RATE_MARGIN);
        assert!(Pacer::for_rate(f64::INFINITY).rate().is_infinite());
        assert_eq!(Pacer::for_rate(0.0).rate(), 0.001 * RATE_MARGIN);
    }
}
