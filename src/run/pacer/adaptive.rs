//! The register lane's adaptive rate after gateway throttling, as a pure state machine (every
//! call is given the time), in the manner of the AWS SDKs' adaptive retry mode (botocore's
//! `retries/adaptive.py` and `cubic.py`): a CUBIC curve between throttles.
//!
//! Until the first throttle the lane runs at its ceiling (`submit_rate`, less the limiter's
//! margin). A throttle notes `w_max`, the rate the lane was sending at (the lower of the rate it
//! was allowed and the rate it was measured at), and cuts the rate to `BETA x w_max`. From there
//! the rate follows `w_max x (1 - (1 - BETA) x ((K - t) / K)^3)`, `t` the time since the cut:
//! steep at first, flat as it reaches `w_max` after `K` = [`RECOVERY`], then growing past it
//! (probing for more), never above the ceiling. So a single throttle at the ceiling (arrival
//! jitter, not a wrong rate) costs about `(1 - BETA) x K / 4` = 0.1 s of sending, and after
//! `K` the lane is back at full rate. When the server's real limit is lower, every throttle
//! sets `w_max` nearer to it and the lane spends most of its time on the flat part of the curve,
//! just below that limit.
//!
//! Unlike botocore, `K` is fixed rather than growing with the rate (its scale constant is
//! tuned for single-digit rates: at 50/s it would take 3.4 s to recover, at 500/s 7 s), and the
//! cut is shallower (see [`BETA`]). A throttle of a call sent before the latest cut answers the
//! same overload and does not cut again (as TCP halves once per window, not once per lost
//! packet). A cut ends once its curve
//! reaches the ceiling or twice its `w_max`: a lane sending far below its ceiling (an unlimited
//! one, or one held back by its in-flight bound) is then no longer limited by it, which is
//! botocore's "at most twice the measured rate".

use std::time::Duration;

use super::UNLIMITED_RATE;

/// What a throttle leaves of the rate the lane was sending at (CUBIC's multiplicative decrease).
/// TCP CUBIC and the AWS SDKs use 0.7; against a server limit 20 % below `submit_rate`
/// (bench/run.py scenario d, three alternating rounds each) 0.7 used 93-95 % of the server's
/// rate and 0.8 used 95-97 %, with as many 429s, and a single throttle costs less.
pub const BETA: f64 = 0.8;
/// How long after a cut the rate is back where it was cut from.
pub const RECOVERY: Duration = Duration::from_secs(2);
/// The rate is never cut below this (calls per second), nor below the ceiling if that is lower.
pub const MIN_RATE: f64 = 0.5;
/// The measured sending rate counts the calls of the last second, in buckets of this length.
const BUCKET: Duration = Duration::from_millis(100);
const BUCKETS: usize = 10;

/// The adaptive rate of one lane.
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    /// Calls per second; infinite for an unlimited lane.
    ceiling: f64,
    cut: Option<Cut>,
    sent: SendRate,
}

/// The latest throttle: when, and the rate the lane was sending at.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: Duration,
    w_max: f64,
}

impl Cut {
    fn curve(&self, now: Duration) -> f64 {
        let k = RECOVERY.as_secs_f64();
        let x = (k - now.saturating_sub(self.at).as_secs_f64()) / k;
        self.w_max * (1.0 - (1.0 - BETA) * x.powi(3))
    }
}

impl AdaptiveRate {
    /// A lane allowed at most `ceiling` calls per second (infinite: unlimited).
    pub fn new(ceiling: f64) -> Self {
        AdaptiveRate {
            ceiling,
            cut: None,
            sent: SendRate::default(),
        }
    }

    /// The rate allowed at `now`, calls per second (infinite for an unlimited lane that is
    /// not recovering from a throttle).
    pub fn rate(&mut self, now: Duration) -> f64 {
        let Some(cut) = self.cut else {
            return self.ceiling;
        };
        let curve = cut.curve(now);
        if curve >= self.ceiling.min(UNLIMITED_RATE).min(2.0 * cut.w_max) {
            self.cut = None;
            return self.ceiling;
        }
        curve.max(self.floor())
    }

    /// Whether the lane runs at its ceiling at `now` (no throttle being recovered from).
    pub fn at_ceiling(&mut self, now: Duration) -> bool {
        self.rate(now);
        self.cut.is_none()
    }

    /// A call left at `now`.
    pub fn sent(&mut self, now: Duration) {
        self.sent.record(now);
    }

    /// The calls sent in the last second, per second (`None` if none left in it).
    pub fn measured(&self, now: Duration) -> Option<f64> {
        self.sent.rate(now)
    }

    /// The gateway throttled a call sent at `sent_at`; `now` is when the answer came. Cuts
    /// the rate unless the call left before the latest cut. Returns whether it cut.
    pub fn throttled(&mut self, sent_at: Duration, now: Duration) -> bool {
        if self.cut.is_some_and(|cut| sent_at <= cut.at) {
            return false;
        }
        let allowed = self.rate(now);
        let sending = self.measured(now).map_or(allowed, |m| m.min(allowed));
        self.cut = Some(Cut {
            at: now,
            w_max: sending.max(self.floor()),
        });
        true
    }

    fn floor(&self) -> f64 {
        MIN_RATE.min(self.ceiling)
    }
}

/// Calls sent in the last second, counted in [`BUCKETS`] buckets of [`BUCKET`].
#[derive(Debug, Clone, Default)]
struct SendRate {
    counts: [u32; BUCKETS],
    /// Index (time / BUCKET) of the newest bucket counted, `None` before the first call.
    newest: Option<u64>,
}

fn bucket_of(at: Duration) -> u64 {
    (at.as_nanos() / BUCKET.as_nanos()) as u64
}

impl SendRate {
    fn record(&mut self, now: Duration) {
        let index = bucket_of(now);
        let newest = match self.newest {
            None => {
                self.counts = [0; BUCKETS];
                index
            }
            // A later bucket: those in between saw no call (all of them after a second).
            Some(newest) if index > newest => {
                for skipped in (newest + 1)..=index.min(newest + BUCKETS as u64) {
                    self.counts[skipped as usize % BUCKETS] = 0;
                }
                index
            }
            Some(newest) => newest,
        };
        self.newest = Some(newest);
        let count = &mut self.counts[newest as usize % BUCKETS];
        *count = count.saturating_add(1);
    }

    /// Calls per second over the last second, or since the oldest call in it when the lane
    /// started (or resumed) sending less than a second ago: a lane that just resumed at full
    /// rate is measured at that rate, not at its average over the idle part of the second.
    /// `None` when no call left in the last second.
    fn rate(&self, now: Duration) -> Option<f64> {
        let newest = self.newest?;
        let current = bucket_of(now).max(newest);
        let window = current.saturating_sub(BUCKETS as u64 - 1)..=newest;
        let mut calls = 0u64;
        let mut oldest = None;
        for index in window {
            let count = self.counts[index as usize % BUCKETS];
            if count > 0 {
                calls += u64::from(count);
                oldest.get_or_insert(index);
            }
        }
        let since = Duration::from_nanos(oldest? * BUCKET.as_nanos() as u64);
        let span = now.saturating_sub(since).max(BUCKET);
        Some(calls as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A lane that sent at `rate` calls per second for a second, until `until`.
    fn lane_sending(ceiling: f64, rate: f64, until: Duration) -> AdaptiveRate {
        let mut lane = AdaptiveRate::new(ceiling);
        let period = Duration::from_secs_f64(1.0 / rate);
        let mut at = until.saturating_sub(Duration::from_secs(1));
        while at <= until {
            lane.sent(at);
            at += period;
        }
        lane
    }

    #[test]
    fn a_single_throttle_recovers_to_the_ceiling_within_the_recovery_time() {
        let t0 = Duration::from_secs(10);
        let mut lane = lane_sending(50.0, 50.0, t0);
        assert_eq!(lane.rate(t0), 50.0);
        assert!(lane.throttled(t0, t0));
        assert!(
            (lane.rate(t0) - 50.0 * BETA).abs() < 0.5,
            "{}",
            lane.rate(t0)
        );
        assert!(!lane.at_ceiling(t0 + RECOVERY - ms(100)));
        // Steep at first, flat near the top: 90 % of the way back after half the time.
        let mut previous = 0.0;
        for step in 0..=20 {
            let rate = lane.rate(t0 + RECOVERY * step / 20);
            assert!(rate > previous, "{rate} after {previous}");
            previous = rate;
        }
        assert!(lane.at_ceiling(t0 + RECOVERY + ms(50)));
        assert_eq!(lane.rate(t0 + RECOVERY + ms(50)), 50.0);
        // What the throttle cost: calls not sent against the ceiling, `(1 - BETA) x K / 4`
        // seconds' worth.
        let mut lane = lane_sending(50.0, 50.0, t0);
        lane.throttled(t0, t0);
        let step = ms(1);
        let lost: f64 = (0..3000)
            .map(|i| 50.0 - lane.rate(t0 + step * i))
            .sum::<f64>()
            * step.as_secs_f64();
        let expected = 50.0 * (1.0 - BETA) * RECOVERY.as_secs_f64() / 4.0;
        assert!((lost - expected).abs() < 0.5, "{lost} calls");
    }

    #[test]
    fn throttles_of_calls_sent_before_the_cut_cut_once() {
        let t0 = Duration::from_secs(5);
        let mut lane = lane_sending(50.0, 50.0, t0);
        assert!(lane.throttled(t0 - ms(30), t0));
        let cut = lane.rate(t0);
        // Calls on the wire with the first one, answered later: the same overload.
        assert!(!lane.throttled(t0 - ms(10), t0 + ms(20)));
        assert!(!lane.throttled(t0 - ms(1), t0 + ms(40)));
        assert_eq!(lane.rate(t0), cut);
        // A call sent after the cut and throttled: the limit is lower still.
        lane.sent(t0 + ms(100));
        assert!(lane.throttled(t0 + ms(100), t0 + ms(110)));
        assert!(lane.rate(t0 + ms(110)) < cut);
    }

    /// The lane, always with calls waiting, against a server that accepts `server_rate` calls
    /// per second (a token bucket of 2, as the benchmark's simulator): `accepted` calls.
    /// Returns how long that took and how many calls were throttled, and checks that the lane
    /// never sent faster than its ceiling.
    fn against_server(ceiling: f64, server_rate: f64, accepted: u32) -> (Duration, u32) {
        let mut lane = AdaptiveRate::new(ceiling);
        let latency = ms(2);
        let (mut now, mut tokens, mut refilled) = (Duration::ZERO, 2.0_f64, Duration::ZERO);
        let (mut done, mut throttled) = (0, 0);
        while done < accepted {
            let rate = lane.rate(now);
            assert!(rate <= ceiling && rate >= MIN_RATE, "{rate}");
            now += Duration::from_secs_f64(1.0 / rate);
            lane.sent(now);
            tokens = (tokens + (now - refilled).as_secs_f64() * server_rate).min(2.0);
            refilled = now;
            if tokens >= 1.0 {
                tokens -= 1.0;
                done += 1;
            } else {
                throttled += 1;
                lane.throttled(now, now + latency);
            }
        }
        (now, throttled)
    }

    #[test]
    fn persistent_throttling_below_the_ceiling_converges_on_the_servers_rate() {
        // The server's real limit 20 % below the configured rate (benchmark scenario d): more
        // than 90 % of it is used, and the probing past it costs one throttled call every two
        // seconds or so (a call that waits its `Retry-After`, then goes again).
        let (took, throttled) = against_server(50.0, 40.0, 4000);
        let rate = 4000.0 / took.as_secs_f64();
        assert!((36.0..=40.1).contains(&rate), "{rate}/s");
        assert!(
            f64::from(throttled) < took.as_secs_f64() / 1.5,
            "{throttled} in {took:?}"
        );
        // Ten times below: a few throttles bring the rate down, then it holds at the limit.
        let (took, throttled) = against_server(50.0, 5.0, 500);
        let rate = 500.0 / took.as_secs_f64();
        // (A little above 5/s: the server's burst of 2 comes on top.)
        assert!((4.5..=5.1).contains(&rate), "{rate}/s");
        assert!(
            f64::from(throttled) < took.as_secs_f64(),
            "{throttled} in {took:?}"
        );
        // At the limit, sending exactly as fast as the server allows: never throttled.
        assert_eq!(against_server(40.0, 40.0, 2000).1, 0);
    }

    /// When the curve after a cut reaches twice the rate it was cut from.
    pub fn twice_the_cut_rate() -> Duration {
        RECOVERY.mul_f64(1.0 + (1.0 / (1.0 - BETA)).cbrt())
    }

    #[test]
    fn the_cut_is_from_the_rate_the_lane_was_measured_at() {
        let t0 = Duration::from_secs(3);
        // Allowed 50/s, but sending 10/s (held back by its in-flight bound).
        let mut lane = lane_sending(50.0, 10.0, t0);
        let measured = lane.measured(t0).unwrap();
        assert!((9.5..=11.5).contains(&measured), "{measured}");
        lane.throttled(t0, t0);
        assert!((lane.rate(t0) - measured * BETA).abs() < 1e-9);
        // Not stuck below a ceiling it does not use: free once twice that rate is reached.
        let free = t0 + twice_the_cut_rate();
        assert!(!lane.at_ceiling(free - ms(50)));
        assert!(lane.at_ceiling(free + ms(50)));
        // An unlimited lane is cut the same way.
        let mut lane = lane_sending(f64::INFINITY, 400.0, t0);
        assert!(lane.rate(t0).is_infinite());
        lane.throttled(t0, t0);
        let rate = lane.rate(t0);
        let measured = 401.0;
        assert!((rate - measured * BETA).abs() < 1.0, "{rate}");
        let free = t0 + twice_the_cut_rate();
        assert!(lane.rate(free - ms(50)).is_finite());
        assert!(lane.rate(free + ms(50)).is_infinite());
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let mut lane = AdaptiveRate::new(50.0);
        let mut now = Duration::ZERO;
        for _ in 0..100 {
            lane.sent(now);
            lane.throttled(now, now + ms(1));
            now += ms(10);
        }
        assert_eq!(lane.rate(now), MIN_RATE);
        // A ceiling below the floor stays the ceiling.
        let mut slow = AdaptiveRate::new(0.1);
        slow.sent(now);
        slow.throttled(now, now);
        assert_eq!(slow.rate(now), 0.1);
    }

    #[test]
    fn the_send_rate_counts_the_last_second() {
        let mut lane = AdaptiveRate::new(f64::INFINITY);
        assert_eq!(lane.measured(ms(0)), None);
        for i in 0..200 {
            lane.sent(ms(5 * i));
        }
        let steady = lane.measured(ms(1000)).unwrap();
        assert!((195.0..=205.0).contains(&steady), "{steady}");
        // Idle for a while, then sending again at 50/s: measured at 50/s, not at what the
        // whole second averaged.
        for i in 0..5 {
            lane.sent(ms(9000 + 20 * i));
        }
        let resumed = lane.measured(ms(9100)).unwrap();
        assert!((40.0..=55.0).contains(&resumed), "{resumed}");
        assert_eq!(lane.measured(ms(12_000)), None);
    }
}
