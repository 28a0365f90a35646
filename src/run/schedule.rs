//! When to look at a running job again: first after `poll_interval`, then each wait 1.5 times
//! the previous one, up to [`POLL_CAP`], each with +-10 % jitter so that jobs submitted
//! together do not poll together. A 30-minute job polled from a 10 s interval costs about a
//! dozen queries (10, 15, 22.5, ... s, then every 5 minutes).

use std::time::Duration;

/// Growth of the wait between two polls of the same job.
pub const POLL_GROWTH: f64 = 1.5;
/// Longest wait between two polls of the same job (or `poll_interval`, if larger).
pub const POLL_CAP: Duration = Duration::from_secs(300);
/// Relative jitter applied to each wait (+-10 %).
pub const POLL_JITTER: f64 = 0.10;

/// The growing wait between polls of one job.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    step: Duration,
    cap: Duration,
}

impl PollSchedule {
    pub fn new(poll_interval: Duration) -> Self {
        PollSchedule {
            step: poll_interval,
            cap: POLL_CAP.max(poll_interval),
        }
    }

    /// The wait before the next poll; `jitter` is a uniform draw in `[0, 1)`.
    pub fn next_wait(&mut self, jitter: f64) -> Duration {
        let factor = 1.0 + POLL_JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
        let wait = self.step.mul_f64(factor);
        self.step = self.step.mul_f64(POLL_GROWTH).min(self.cap);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_half_up_to_the_cap() {
        let mut schedule = PollSchedule::new(Duration::from_secs(10));
        let waits: Vec<f64> = (0..12)
            .map(|_| schedule.next_wait(0.5).as_secs_f64())
            .collect();
        assert_eq!(&waits[..4], &[10.0, 15.0, 22.5, 33.75]);
        assert!(waits.iter().all(|w| *w <= 300.0));
        assert_eq!(waits[11], 300.0);
    }

    #[test]
    fn a_thirty_minute_job_costs_about_a_dozen_polls() {
        let mut schedule = PollSchedule::new(Duration::from_secs(10));
        let mut elapsed = Duration::ZERO;
        let mut polls = 0;
        while elapsed < Duration::from_secs(1800) {
            elapsed += schedule.next_wait(0.5);
            polls += 1;
        }
        assert!((10..=15).contains(&polls), "{polls} polls");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut low = PollSchedule::new(Duration::from_secs(10));
        let mut high = PollSchedule::new(Duration::from_secs(10));
        assert_eq!(low.next_wait(0.0), Duration::from_secs(9));
        assert_eq!(high.next_wait(1.0), Duration::from_secs(11));
    }

    #[test]
    fn cap_never_below_the_poll_interval() {
        let mut schedule = PollSchedule::new(Duration::from_secs(600));
        schedule.next_wait(0.5);
        assert_eq!(schedule.next_wait(0.5), Duration::from_secs(600));
    }
}
