//! The effective settings of a run (flags > manifest `settings:` > defaults), and of each
//! region of it (`settings.regions.<region>` > flags > `settings:` > defaults).

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
    /// The settings of the entries of `region` (`None`: entries without one, and no default
    /// region): a value under `settings.regions.<region>` wins (each region's own quota), else
    /// the flag (which so sets it for every region that does not set its own), else
    /// `settings:`, else the default. Pure: a later split of the quota (shards) applies to its
    /// answer.
    pub fn for_region(flags: &Settings, manifest: &Settings, region: Option<&str>) -> Self {
        let mut config = Self::resolve(flags, manifest);
        let Some(own) = region.and_then(|region| manifest.regions.get(region)) else {
            return config;
        };
        if let Some(concurrency) = own.concurrency {
            config.concurrency = concurrency;
        }
        if let Some(max_active_jobs) = own.max_active_jobs {
            config.max_active_jobs = max_active_jobs;
        }
        if let Some(submit_rate) = own.submit_rate {
            config.submit_rate = submit_rate;
        }
        if let Some(query_rate) = own.query_rate {
            config.query_rate = query_rate;
        }
        config
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RegionSettings;

    fn manifest() -> Settings {
        let mut manifest = Settings {
            submit_rate: Some(3.0),
            max_active_jobs: Some(30),
            ..Settings::default()
        };
        manifest.regions.insert(
            "eu-west-101".into(),
            RegionSettings {
                submit_rate: Some(0.5),
                concurrency: Some(2),
                ..RegionSettings::default()
            },
        );
        manifest
    }

    #[test]
    fn a_regions_own_value_wins_then_the_flag_then_settings_then_the_default() {
        let flags = Settings {
            submit_rate: Some(7.0),
            query_rate: Some(9.0),
            ..Settings::default()
        };
        let eu = RunConfig::for_region(&flags, &manifest(), Some("eu-west-101"));
        assert_eq!(eu.submit_rate, 0.5, "the region's own value over the flag");
        assert_eq!(eu.concurrency, 2, "the region's own value over the default");
        assert_eq!(eu.query_rate, 9.0, "the flag, the region sets none");
        assert_eq!(eu.max_active_jobs, 30, "settings:, neither sets it");
        assert_eq!(eu.poll_interval, defaults::POLL_INTERVAL);

        let ap = RunConfig::for_region(&flags, &manifest(), Some("ap-southeast-1"));
        assert_eq!(
            ap.submit_rate, 7.0,
            "the flag, for a region without its own"
        );
        assert_eq!(ap.concurrency, defaults::CONCURRENCY);
        assert_eq!(ap.max_active_jobs, 30);
    }

    #[test]
    fn without_regions_it_is_the_plain_resolution() {
        let flags = Settings {
            max_active_jobs: Some(5),
            ..Settings::default()
        };
        for region in [None, Some("ap-southeast-1")] {
            assert_eq!(
                RunConfig::for_region(&flags, &manifest(), region),
                RunConfig::resolve(&flags, &manifest())
            );
        }
        let none = RunConfig::for_region(&Settings::default(), &Settings::default(), None);
        assert_eq!(none.submit_rate, defaults::SUBMIT_RATE);
        assert_eq!(none.max_active_jobs, defaults::MAX_ACTIVE_JOBS);
    }
}
