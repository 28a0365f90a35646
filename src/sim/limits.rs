//! Server-side rate limits: one token bucket per API, refilled continuously.
//!
//! Time is passed in (offset since the simulator started) so the bucket is unit-tested
//! without sleeping.

use std::time::Duration;

use super::config::RateLimit;

/// A token bucket holding at most `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl Bucket {
    /// A full bucket.
    pub fn new(limit: &RateLimit) -> Self {
        Self {
            rate: limit.rate,
            burst: f64::from(limit.burst),
            tokens: f64::from(limit.burst),
            last: Duration::ZERO,
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn try_take(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: f64, burst: u32) -> RateLimit {
        RateLimit {
            rate,
            burst,
            retry_after: None,
        }
    }

    #[test]
    fn burst_then_rate() {
        let mut bucket = Bucket::new(&limit(10.0, 3));
        let t0 = Duration::from_secs(1);
        assert!((0..3).all(|_| bucket.try_take(t0)));
        assert!(!bucket.try_take(t0));
        // 100 ms later exactly one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(bucket.try_take(t1));
        assert!(!bucket.try_take(t1));
        // Over one second at most rate + burst requests pass.
        let mut passed = 0;
        for ms in 0..1000 {
            if bucket.try_take(t1 + Duration::from_millis(ms)) {
                passed += 1;
            }
        }
        assert!((9..=11).contains(&passed), "{passed}");
    }

    #[test]
    fn never_exceeds_burst_after_idle() {
        let mut bucket = Bucket::new(&limit(5.0, 2));
        let later = Duration::from_secs(100);
        assert!(bucket.try_take(later));
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }
}
