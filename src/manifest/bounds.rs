//! The accepted range of every numeric setting (rates, durations, counts), defined once: the
//! manifest checker (`imsreg validate`, and `imsreg run` before it sends anything) and the
//! command-line flags both read it, so a value is accepted or refused the same way wherever it
//! is written. A value outside its range is an error that names the range; it is never clamped,
//! because a typo such as `1e-300` or `500000000000y` must not quietly become "one call every
//! three years" or "wait forever".

use std::ops::RangeInclusive;
use std::time::Duration;

const DAY: u64 = 24 * 3600;

/// `submit_rate`, `query_rate`: calls per second. At the top, 1,000,000 per second, the engine
/// stops pacing altogether (see [`crate::run::pacer::UNLIMITED_RATE`]); the bottom is one call
/// every 100 s.
pub const RATE: RangeInclusive<f64> = 0.01..=1_000_000.0;
/// `concurrency`: API calls in flight at once, per lane.
pub const CONCURRENCY: RangeInclusive<u32> = 1..=1024;
/// `max_active_jobs`: registrations running in the cloud at once (IMS allows 40 per account;
/// the simulator and benchmarks go far higher).
pub const MAX_ACTIVE_JOBS: RangeInclusive<u32> = 1..=1_000_000;
/// `poll_interval`: the first poll of a job comes this long after its submission.
pub const POLL_INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(7 * DAY);
/// `job_timeout`: how long one registration may run before it is reported `pending`.
pub const JOB_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(30 * DAY);

/// A rate in calls per second, inside [`RATE`].
pub fn check_rate(value: f64) -> Result<f64, String> {
    let (min, max) = (*RATE.start(), *RATE.end());
    let range = format!("give {min} to {max} calls per second, e.g. 2 or 0.5");
    if !value.is_finite() || value <= 0.0 {
        Err(format!(
            "must be more than 0 calls per second, found {} ({range})",
            number(value)
        ))
    } else if value < min {
        Err(format!(
            "{} calls per second is below the lowest rate, {min} (one call every {} s; \
             {range})",
            number(value),
            1.0 / min
        ))
    } else if value > max {
        Err(format!(
            "{} calls per second is above the highest rate, {max} (which already means \
             unlimited; {range})",
            number(value)
        ))
    } else {
        Ok(value)
    }
}

/// A number as people write it: `1e-300`, not three hundred zeros.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e9).contains(&magnitude) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// A whole number inside `range` (`concurrency`, `max_active_jobs`).
pub fn check_count(value: i128, range: &RangeInclusive<u32>) -> Result<u32, String> {
    let (min, max) = (*range.start(), *range.end());
    let fix = format!("use a whole number from {min} to {max}, such as 8");
    if value < i128::from(min) {
        Err(format!("must be at least {min}, found {value} ({fix})"))
    } else if value > i128::from(max) {
        Err(format!("{value} is too large ({fix})"))
    } else {
        // In range, so it fits.
        Ok(u32::try_from(value).unwrap_or(max))
    }
}

/// A duration inside `range` (`poll_interval`, `job_timeout`).
pub fn check_duration(
    value: Duration,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let (min, max) = (*range.start(), *range.end());
    let fix = format!("give {} to {}", show(min), show(max));
    if value.is_zero() {
        Err(format!("must be longer than 0 ({fix}, e.g. 10s, 5m or 2h)"))
    } else if value < min {
        Err(format!(
            "{} is shorter than {} ({fix})",
            show(value),
            show(min)
        ))
    } else if value > max {
        Err(format!(
            "{} is longer than {} ({fix})",
            show(value),
            show(max)
        ))
    } else {
        Ok(value)
    }
}

/// A humantime duration (`500ms`, `10s`, `1m 30s`, `2h`) inside `range`.
pub fn parse_duration(text: &str, range: &RangeInclusive<Duration>) -> Result<Duration, String> {
    let text = text.trim();
    match humantime::parse_duration(text) {
        Ok(value) => check_duration(value, range),
        Err(err) => Err(format!(
            "`{}` is not a duration: {err} (e.g. 10s, 1m 30s or 2h)",
            super::text::shorten(text)
        )),
    }
}

fn show(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// `--submit-rate`, `--query-rate`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) => check_rate(value),
        Err(_) => Err(format!(
            "`{}` is not a number of calls per second (e.g. 2 or 0.5)",
            super::text::shorten(text)
        )),
    }
}

fn parse_count(text: &str, range: &RangeInclusive<u32>) -> Result<u32, String> {
    match text.trim().parse::<i128>() {
        Ok(value) => check_count(value, range),
        Err(_) => Err(format!(
            "`{}` is not a whole number (use one from {} to {}, such as 8)",
            super::text::shorten(text),
            range.start(),
            range.end()
        )),
    }
}

/// `--concurrency`.
pub fn parse_concurrency(text: &str) -> Result<u32, String> {
    parse_count(text, &CONCURRENCY)
}

/// `--max-active-jobs`.
pub fn parse_max_active_jobs(text: &str) -> Result<u32, String> {
    parse_count(text, &MAX_ACTIVE_JOBS)
}

/// `--poll-interval`.
pub fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    parse_duration(text, &POLL_INTERVAL)
}

/// `--job-timeout`.
pub fn parse_job_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text, &JOB_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_rates_are_refused_with_the_range() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert_eq!(parse_rate("0.01"), Ok(0.01));
        assert_eq!(parse_rate("1000000"), Ok(1_000_000.0));
        for absurd in ["1e-300", "0.0000000001", "0.009", "1e7", "1e300"] {
            let err = parse_rate(absurd).unwrap_err();
            assert!(err.contains("0.01 to 1000000"), "{absurd}: {err}");
        }
        for bad in ["0", "-1", "inf", "NaN", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("0").unwrap_err().contains("more than 0"));
    }

    #[test]
    fn absurd_durations_are_refused_with_the_range() {
        assert_eq!(parse_poll_interval("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_job_timeout("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_job_timeout("30d"), Ok(Duration::from_secs(30 * DAY)));
        let err = parse_job_timeout("500000000000y").unwrap_err();
        assert!(err.contains("1ms to 30days"), "{err}");
        let err = parse_poll_interval("8d").unwrap_err();
        assert!(err.contains("longer than 7days"), "{err}");
        let err = parse_poll_interval("100us").unwrap_err();
        assert!(err.contains("shorter than 1ms"), "{err}");
        assert!(
            parse_poll_interval("0s")
                .unwrap_err()
                .contains("longer than 0")
        );
        assert!(
            parse_job_timeout("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn absurd_counts_are_refused_with_the_range() {
        assert_eq!(parse_concurrency("8"), Ok(8));
        assert_eq!(parse_max_active_jobs("1000000"), Ok(1_000_000));
        assert!(parse_concurrency("0").unwrap_err().contains("at least 1"));
        let err = parse_concurrency("4294967295").unwrap_err();
        assert!(err.contains("from 1 to 1024"), "{err}");
        let err = parse_max_active_jobs("99999999999999999999").unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(parse_concurrency("eight").is_err());
    }
}
