//! What a job is asked to do ([`JobOptions`]) and who hears how it goes ([`JobObserver`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::manifest::{Manifest, Settings};
use crate::preflight::DEFAULT_OBS_RATE;
use crate::run::{EventSink, PlannedImage, RunConfig};
use crate::shard::Shard;

use super::journal::JournalChoice;
use super::target::Environment;

/// What `imsreg run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub manifest: PathBuf,
    /// Settings given as flags; they win over the manifest's `settings:`.
    pub flags: Settings,
    /// Report paths (the extension picks the format); empty means [`DEFAULT_REPORT`](super::DEFAULT_REPORT).
    pub reports: Vec<PathBuf>,
    /// Run the valid entries of a manifest with invalid ones.
    pub skip_invalid: bool,
    /// Read the cloud status and plan; register nothing, write no report.
    pub dry_run: bool,
    /// Run against the built-in simulator, started in this process.
    pub simulate: bool,
    pub journal: JournalChoice,
    /// Try again images an earlier run reported failed.
    pub retry_failed: bool,
    /// Where credentials are looked up (the process environment for `imsreg run`).
    pub environment: Environment,
    /// `--request-timeout`: how long one IMS call may take (default 60 s). A create whose
    /// answer was lost may still land until then, so a re-run waits that long before it
    /// decides that it did not.
    pub request_timeout: Option<std::time::Duration>,
    /// Prometheus metrics of the run (not of a dry run).
    pub metrics: MetricsOptions,
    /// `--shard K/N`: run only the entries of shard K, with 1/N of the quota and the shard's
    /// own journal. `None`: the whole manifest.
    pub shard: Option<Shard>,
}

/// Where the run's Prometheus metrics go (`--metrics-file`, `--metrics-listen`); neither by
/// default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsOptions {
    /// Rewritten atomically every 10 s and at the end, for node_exporter's textfile collector
    /// (which reads `*.prom`).
    pub file: Option<PathBuf>,
    /// `GET /metrics` served here while the run lasts (port 0: any free port, told through
    /// [`JobObserver::metrics_listening`]).
    pub listen: Option<SocketAddr>,
}

/// Hears how the job goes: the engine's [`crate::run::RunEvent`]s (as an [`EventSink`]) and
/// the job's own milestones. Implementations are the terminal's (progress bars, log lines) or
/// a test's.
pub trait JobObserver: EventSink {
    /// The manifest was read and checked; its diagnostics are to be shown. Called once, also
    /// when the manifest is unusable (then [`run`] answers [`JobError::Manifest`]).
    fn manifest_checked(&self, _manifest: &Manifest) {}

    /// The preflight is about to check this many entries' objects at this OBS endpoint.
    fn preflight_starting(&self, _entries: usize, _endpoint: &str) {}

    /// The preflight of a run has judged the entries (`manifest` is the path as given); its
    /// problems are to be shown. Not called by `imsreg preflight`, which prints them itself.
    fn preflight_finished(&self, _manifest: &str, _report: &crate::preflight::PreflightReport) {}

    /// The create stage is about to look up (and create) the images of this many entries.
    fn creating_images(&self, _entries: usize) {}

    /// The create stage is done: images created in this run, found by their tag, and entries
    /// it settled itself (refused, conflicting, not reached).
    fn images_created(&self, _created: usize, _found: usize, _settled: usize) {}

    /// The engine is about to run these images (after the state journal) with this config.
    fn engine_starting(&self, _images: &[PlannedImage], _config: &RunConfig) {}

    /// `GET /metrics` is served at this address while the run lasts (`--metrics-listen`).
    fn metrics_listening(&self, _address: SocketAddr) {}
}

/// An observer that ignores everything (tests, benchmarks).
pub struct Unobserved;

impl EventSink for Unobserved {
    fn event(&self, _event: &crate::run::RunEvent) {}
}

impl JobObserver for Unobserved {}

/// The preflight's settings after flags > manifest `settings:` > defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightSettings {
    /// `--no-preflight` / `preflight: false` turn it off in a run.
    pub enabled: bool,
    pub obs_endpoint: Option<String>,
    pub obs_rate: f64,
}

impl PreflightSettings {
    pub fn resolve(flags: &Settings, manifest: &Settings) -> Self {
        PreflightSettings {
            enabled: flags.preflight.or(manifest.preflight).unwrap_or(true),
            obs_endpoint: flags
                .obs_endpoint
                .clone()
                .or_else(|| manifest.obs_endpoint.clone()),
            obs_rate: flags
                .obs_rate
                .or(manifest.obs_rate)
                .unwrap_or(DEFAULT_OBS_RATE),
        }
    }
}
