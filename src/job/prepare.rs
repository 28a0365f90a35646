//! Everything checked and resolved before the first request: the manifest (nothing is sent
//! unless it is valid, or `--skip-invalid`), the report paths, the entries grouped by region
//! and project ([`super::regions`]), each group's settings (`settings.regions.<region>` >
//! flags > manifest `settings:` > defaults) and target (credentials and endpoint, or its own
//! simulator), and the state journal (one for all groups). Every failure here is a
//! [`JobError`]: nothing has been sent yet.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::manifest::{self, CreateEntry, InvalidEntry};
use crate::report::{RegionReportSettings, ReportSettings};
use crate::run::RunConfig;
use crate::shard::Shard;
use crate::state::StateError;

use super::journal::{self, Prepared};
use super::options::{JobObserver, JobOptions, PreflightSettings};
use super::outcome::Coverage;
use super::regions::{self, GroupKey, Layers, group, take_group};
use super::sharding;
use super::target::{self, Target, TargetError};

/// The report written when no `--report` is given.
pub const DEFAULT_REPORT: &str = "imsreg-report.json";

/// First poll delay under `--simulate` unless `--poll-interval` says otherwise: simulated jobs
/// take 1-3 s, so the manifest's (real-cloud) interval would only make the demo wait.
pub const SIMULATE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Why the job did not start. Nothing was sent to the cloud in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    ManifestUnreadable(#[from] manifest::ManifestError),
    /// The manifest has errors; its diagnostics went to [`JobObserver::manifest_checked`].
    #[error("{path} has {errors} error(s); nothing was submitted{hint}", hint = if *.fatal { "" } else { " (--skip-invalid runs the valid entries and reports the others)" })]
    Manifest {
        path: String,
        errors: usize,
        /// Problems outside the entries: `--skip-invalid` cannot help.
        fatal: bool,
    },
    #[error("--report: {0}")]
    Reports(String),
    /// `imsreg report merge`: a report unreadable, or the reports do not belong together.
    #[error("{0}")]
    Merge(crate::report::ReportError),
    /// A report or the state journal would overwrite the manifest itself.
    #[error(
        "{flag} {} is the manifest itself; refusing to overwrite it (nothing was attempted). Give {flag} another path",
        path.display()
    )]
    WouldOverwriteManifest { flag: &'static str, path: PathBuf },
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{0}")]
    State(#[from] StateError),
    /// The entries to create cannot be created (unknown os_version, image quota, credentials):
    /// nothing was created.
    #[error("{0}")]
    Create(#[from] super::create::CreateError),
    /// The preflight cannot ask OBS (no or a bad OBS endpoint, only an IAM token).
    #[error("preflight: {0}")]
    Obs(crate::obs::ObsError),
    /// OBS could not be reached, or refused the credentials: no verdict, nothing submitted.
    #[error("preflight: {0}")]
    Preflight(#[from] crate::preflight::PreflightError),
    /// `--metrics-file` cannot be written or `--metrics-listen` cannot be bound.
    #[error("{flag} {target}: {message}; nothing was attempted")]
    Metrics {
        flag: &'static str,
        target: String,
        message: String,
    },
}

impl JobError {
    /// Another run holds the state journal's lock: try again later (exit 75), not a mistake.
    pub fn is_busy(&self) -> bool {
        matches!(self, JobError::State(StateError::Locked { .. }))
    }

    /// SIGINT/SIGTERM stopped the preflight (exit 130, not a mistake).
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            JobError::Preflight(crate::preflight::PreflightError::Interrupted)
        )
    }
}

/// A job ready to run: the entries of one region and project (a manifest without regions is
/// one such job).
pub struct Job {
    /// The manifest line of each valid entry (the entries themselves move to the engine).
    pub valid_lines: Vec<usize>,
    /// Reported as `invalid` (only with `--skip-invalid`).
    pub invalid: Vec<InvalidEntry>,
    pub reports: Vec<PathBuf>,
    pub config: RunConfig,
    /// Whether and how the objects are checked in OBS before the run.
    pub preflight: PreflightSettings,
    pub target: Target,
    /// The valid entries after the state journal.
    pub journal: Prepared,
    /// The valid entries without an `image_id`: the create stage makes their images.
    pub creates: Vec<CreateEntry>,
    /// How long one IMS call may take (a create sent may land until then).
    pub request_timeout: Duration,
    /// The objects' sizes of entries to create, by manifest line (from the preflight).
    pub create_sizes: std::collections::HashMap<usize, u64>,
    /// `--shard K/N`, if given (the entries above are that shard's).
    pub shard: Option<Shard>,
    /// SHA-256 of the manifest file, for the report.
    pub manifest_sha256: Option<String>,
    /// The region and project of this job's entries.
    pub key: GroupKey,
}

impl Job {
    /// The effective settings, for the report (never credentials).
    pub fn report_settings(&self, dry_run: bool) -> ReportSettings {
        let config = &self.config;
        ReportSettings {
            endpoint: self.target.endpoint.clone(),
            region: self.target.region.clone(),
            project_id: self.target.project_id.clone(),
            concurrency: config.concurrency,
            max_active_jobs: config.max_active_jobs,
            submit_rate: config.submit_rate,
            query_rate: config.query_rate,
            poll_interval_s: config.poll_interval.as_secs_f64(),
            job_timeout_s: config.job_timeout.as_secs_f64(),
            dry_run,
            regions: Vec::new(),
        }
    }

    /// The settings this job's region and project ran with, for the report.
    pub fn region_settings(&self) -> RegionReportSettings {
        RegionReportSettings {
            region: self.key.region.clone(),
            project_id: self.target.project_id.clone(),
            endpoint: self.target.endpoint.clone(),
            concurrency: self.config.concurrency,
            max_active_jobs: self.config.max_active_jobs,
            submit_rate: self.config.submit_rate,
            query_rate: self.config.query_rate,
        }
    }

    /// Which manifest and which shard of it the report covers.
    pub fn coverage(&self) -> Coverage {
        Coverage {
            manifest_sha256: self.manifest_sha256.clone(),
            shard: self.shard,
        }
    }

    /// Stops the in-process simulator, if any.
    pub async fn shutdown(&mut self) {
        if let Some(simulator) = self.target.simulator.take() {
            simulator.shutdown().await;
        }
    }
}

/// Steps 1-3 of the job: one [`Job`] per region and project of the manifest, in the order of
/// their first entry (the first holds the invalid entries).
pub fn prepare(options: &JobOptions, observer: &dyn JobObserver) -> Result<Vec<Job>, JobError> {
    // 1. The manifest: nothing is sent unless it is valid (or --skip-invalid).
    let mut manifest = manifest::load(&options.manifest)?;
    observer.manifest_checked(&manifest);
    let errors = manifest.error_count();
    let skipping = options.skip_invalid && !manifest.fatal;
    if errors > 0 && !skipping {
        return Err(JobError::Manifest {
            path: manifest.path.display().to_string(),
            errors,
            fatal: manifest.fatal,
        });
    }
    // Validation is global (a duplicate across shards is an error in every shard); the
    // shard's entries are picked from its result.
    let entries_in_manifest = manifest.valid_count() + manifest.invalid.len();
    if let Some(shard) = options.shard {
        sharding::keep_shard(&mut manifest, shard);
        tracing::info!(
            shard = %shard,
            scheme = crate::shard::SCHEME,
            entries = manifest.valid_count() + manifest.invalid.len(),
            of = entries_in_manifest,
            "running one shard of the manifest"
        );
    }
    if errors > 0 {
        tracing::warn!(
            invalid = manifest.invalid.len(),
            valid = manifest.images.len(),
            "--skip-invalid: the invalid entries will be reported as `invalid`; running the others"
        );
    }
    let reports = report_paths(&options.reports)?;
    for report in &reports {
        refuse_the_manifest(&options.manifest, report, "--report")?;
    }

    // 2. The entries by region and project; each group's settings, then where it sends its
    // requests and as whom.
    let flags = &options.flags;
    let layers = Layers {
        flags,
        manifest: &manifest.settings,
    };
    let placements = std::mem::take(&mut manifest.placements);
    let key_of = |line: usize| layers.key_for(placements.get(&line));
    let mut images = group(std::mem::take(&mut manifest.images), |entry| {
        key_of(entry.line)
    });
    let mut creates = group(std::mem::take(&mut manifest.creates), |entry| {
        key_of(entry.line)
    });
    let mut keys = regions::keys(&images, &creates);
    if keys.is_empty() {
        // No valid entry (--skip-invalid): one job, for the report of the invalid ones.
        keys.push(layers.key_for(None));
    }
    let preflight = PreflightSettings::resolve(flags, &manifest.settings);
    let mut planned = Vec::with_capacity(keys.len());
    for key in keys {
        let (images, creates) = (
            take_group(&mut images, &key),
            take_group(&mut creates, &key),
        );
        // Each region's own quota; a shard takes 1/N of it (a flag's value is its own).
        let (mut config, shard_preflight) =
            sharding::share_of_quota(layers.config(&key), preflight.clone(), options.shard, flags);
        let target = if options.simulate {
            if flags.poll_interval.is_none() {
                config.poll_interval = SIMULATE_POLL_INTERVAL;
            }
            let to_create = super::create::placeholder_entries(&creates);
            target::simulated(
                &images,
                &to_create,
                key.region.clone(),
                options.request_timeout,
            )
        } else if key.project_id.is_none() && !layers.takes_the_environment_project(&key) {
            Err(TargetError::NoRegionProject {
                region: key.region.clone().unwrap_or_default(),
            })
        } else {
            target::real(
                layers.location(&key),
                &options.environment,
                options.request_timeout,
            )
        };
        // On an error the simulators started so far stop as they are dropped (and a
        // simulated run has no journal to fail below).
        let target = target?;
        let preflight = PreflightSettings {
            obs_endpoint: layers.obs_endpoint(&key, preflight.obs_endpoint.as_deref()),
            ..shard_preflight
        };
        planned.push((key, images, creates, config, target, preflight));
    }
    if planned.len() > 1 {
        tracing::info!(
            groups = planned.len(),
            "the manifest spans several regions or projects: each runs with its own client, limits and active-job bound"
        );
    }

    // 3. What earlier runs settled (state journal: one for the whole manifest, or the shard's);
    // the rest goes to the engines.
    let mode = options.journal.mode(
        &options.manifest,
        options.shard,
        options.simulate,
        options.dry_run,
    );
    let opened = journal::open(&mode)?;
    let mut invalid = if options.skip_invalid {
        std::mem::take(&mut manifest.invalid)
    } else {
        Vec::new()
    };
    let request_timeout = options
        .request_timeout
        .unwrap_or(crate::ims::client::DEFAULT_REQUEST_TIMEOUT);
    let jobs = planned
        .into_iter()
        .map(|(key, images, creates, config, target, preflight)| {
            let valid_lines = images.iter().map(|entry| entry.line).collect();
            Job {
                valid_lines,
                invalid: std::mem::take(&mut invalid),
                reports: reports.clone(),
                preflight,
                config,
                target,
                journal: journal::apply(&opened, images, options.retry_failed),
                creates,
                request_timeout,
                create_sizes: std::collections::HashMap::new(),
                key,
                shard: options.shard,
                manifest_sha256: manifest.sha256.clone(),
            }
        })
        .collect();
    Ok(jobs)
}

/// A path that names the manifest's own file (the same file, through any link) is refused: a
/// typo must never destroy the user's manifest.
fn refuse_the_manifest(manifest: &Path, path: &Path, flag: &'static str) -> Result<(), JobError> {
    use std::os::unix::fs::MetadataExt;
    let same = match (std::fs::metadata(manifest), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same {
        return Err(JobError::WouldOverwriteManifest {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The report paths, each with a known extension (checked before anything is sent; the
/// writer creates missing folders).
pub fn report_paths(given: &[PathBuf]) -> Result<Vec<PathBuf>, JobError> {
    let paths = if given.is_empty() {
        vec![PathBuf::from(DEFAULT_REPORT)]
    } else {
        given.to_vec()
    };
    crate::report::check_paths(&paths).map_err(|err| JobError::Reports(err.to_string()))?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_paths_default_and_check_the_extension() {
        assert_eq!(report_paths(&[]).unwrap(), [PathBuf::from(DEFAULT_REPORT)]);
        let good: Vec<PathBuf> = ["r.json", "r.YAML", "r.yml", "r.csv", "r.xml", "r.md"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(report_paths(&good).unwrap(), good);
        let err = report_paths(&[PathBuf::from("r.txt")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.txt") && err.contains(".md"), "{err}");
    }
}
