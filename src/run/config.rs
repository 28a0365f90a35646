//! The effective settings of a run (flags > manifest `settings:` > defaults).

use std::time::Duration;

use crate::manifest::Settings;

/// Defaults for every setting the manifest or the flags may leave out (documented in README).
pub mod defaults {
    use std::time::Duration;

    pub const CONCURRENCY: u32 = 8;
    pub const MAX_ACTIVE_JOBS: u32 = 20;
    pub const SUBMIT_RATE: f64 = 2.0;
    pub const QUERY_RATE: f64 = 10.0;
    pub const POLL_INTERVAL: Duration = Duration::from_secs(10);
    pub const JOB_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
}

/// The effective settings of a run, after flags > manifest `settings:` > defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// API calls in flight at once.
    pub concurrency: u32,
    /// Registrations running in the cloud at once.
    pub max_active_jobs: u32,
    /// Register calls per second (GCRA, no bursts above it).
    pub submit_rate: f64,
    /// Status queries per second.
    pub query_rate: f64,
    /// Delay before the first poll of a job; later polls grow from it.
    pub poll_interval: Duration,
    /// Per image, after submission; past it the image is reported `pending`.
    pub job_timeout: Duration,
}

impl RunConfig {
    /// Merges CLI flags over manifest settings over [`defaults`].
    pub fn resolve(flags: &Settings, manifest: &Settings) -> Self {
        RunConfig {
            concurrency: flags
                .concurrency
                .or(manifest.concurrency)
                .unwrap_or(defaults::CONCURRENCY),
            max_active_jobs: flags
                .max_active_jobs
                .or(manifest.max_active_jobs)
                .unwrap_or(defaults::MAX_ACTIVE_JOBS),
            submit_rate: flags
                .submit_rate
                .or(manifest.submit_rate)
                .unwrap_or(defaults::SUBMIT_RATE),
            query_rate: flags
                .query_rate
                .or(manifest.query_rate)
                .unwrap_or(defaults::QUERY_RATE),
            poll_interval: flags
                .poll_interval
                .or(manifest.poll_interval)
                .unwrap_or(defaults::POLL_INTERVAL),
            job_timeout: flags
                .job_timeout
                .or(manifest.job_timeout)
                .unwrap_or(defaults::JOB_TIMEOUT),
        }
    }
}
