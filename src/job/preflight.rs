//! The preflight as part of the job: `imsreg preflight` ([`preflight`]) and the check `imsreg
//! run` makes before it submits anything ([`screen`]).
//!
//! Both resolve the same things: the OBS endpoint (`--obs-endpoint` / `obs_endpoint`, else a
//! loopback IMS endpoint itself (the simulator serves both), else
//! `https://obs.{region}.myhuaweicloud.com`), the region IMS registers in (`--region` /
//! `region`, else an `ims.{region}.myhuaweicloud.com` endpoint's host, else the bucket-region
//! check is skipped with one warning) and the credentials (IMS's; OBS needs AK/SK). Under
//! `--simulate` OBS is the simulator's. In a run, entries that fail are settled as
//! `preflight_failed` (never submitted); the others carry their object's size on.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::ims::auth::Credentials;
use crate::manifest::{self, Settings};
use crate::obs::{ObsClient, ObsClientConfig, ObsError};
use crate::preflight::{self, PreflightConfig, PreflightReport};
use crate::report::{ImageOutcome, ImageRecord};

use crate::shard::Shard;

use super::options::{JobObserver, PreflightSettings};
use super::prepare::{Job, JobError};
use super::regions::{self, Layers, group, take_group};
use super::sharding;
use super::target::{self, Environment};

/// Where and as whom the preflight asks OBS.
pub struct ObsTarget {
    pub client: ObsClient,
    /// The region IMS registers in (`None`: the region check is skipped).
    pub ims_region: Option<String>,
    /// Checks that cannot be made, said once.
    pub warnings: Vec<String>,
}

/// The region IMS registers in: the given one, else the one in an
/// `ims.{region}.myhuaweicloud.com` endpoint's host.
pub fn ims_region(region: Option<&str>, ims_endpoint: Option<&str>) -> Option<String> {
    if let Some(region) = region.map(str::trim).filter(|r| !r.is_empty()) {
        return Some(region.to_string());
    }
    let url = url::Url::parse(ims_endpoint?).ok()?;
    let region = url
        .host_str()?
        .strip_prefix("ims.")?
        .strip_suffix(".myhuaweicloud.com")?;
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| region.to_string())
}

/// The OBS client and region of a preflight. [`ObsError::NeedsAkSk`] when only an IAM token is
/// configured; [`ObsError::Config`] for an endpoint that cannot be used (or none at all).
pub fn obs_target(
    region: Option<&str>,
    ims_endpoint: Option<&str>,
    obs_endpoint: Option<&str>,
    credentials: &Credentials,
) -> Result<ObsTarget, ObsError> {
    if matches!(credentials, Credentials::Token(_)) {
        return Err(ObsError::NeedsAkSk);
    }
    let ims_region = ims_region(region, ims_endpoint);
    // A loopback IMS is the simulator, which serves OBS on the same port.
    let local_ims = ims_endpoint
        .filter(|e| url::Url::parse(e).is_ok_and(|url| crate::endpoint::is_loopback(&url)));
    let endpoint = crate::obs::resolve_endpoint(ims_region.as_deref(), obs_endpoint.or(local_ims))?;
    let mut warnings = Vec::new();
    if ims_region.is_none() {
        warnings.push(format!(
            "the region IMS registers in is not known (no --region or `region:`, and the IMS \
             endpoint {} is not ims.REGION.myhuaweicloud.com), so the preflight does not check \
             that the buckets are in it; set --region to check it",
            ims_endpoint.unwrap_or("(none)")
        ));
    }
    let client = ObsClient::new(ObsClientConfig::new(endpoint, credentials.clone()))?;
    Ok(ObsTarget {
        client,
        ims_region,
        warnings,
    })
}

/// What `imsreg preflight` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct PreflightOptions {
    pub manifest: PathBuf,
    /// Settings given as flags; they win over the manifest's `settings:`.
    pub flags: Settings,
    /// Check against the built-in simulator's OBS (objects made up for the entries).
    pub simulate: bool,
    pub environment: Environment,
    /// `--shard K/N`: check only shard K's entries, with 1/N of the OBS rate and concurrency.
    pub shard: Option<Shard>,
}

/// What `imsreg preflight` found.
#[derive(Debug)]
pub struct PreflightOutcome {
    /// The manifest path as given.
    pub manifest: String,
    pub report: PreflightReport,
    /// Run-level warnings (a check skipped, and why).
    pub warnings: Vec<String>,
    pub endpoint: String,
}

/// `imsreg preflight`: reads and checks the manifest, then every valid entry's bucket and
/// object in OBS. Read-only. Errors are the cases in which no verdict could be made.
pub async fn preflight(
    options: &PreflightOptions,
    observer: &dyn JobObserver,
    cancel: CancellationToken,
) -> Result<PreflightOutcome, JobError> {
    let mut manifest = manifest::load(&options.manifest)?;
    observer.manifest_checked(&manifest);
    if manifest.error_count() > 0 {
        return Err(JobError::Manifest {
            path: manifest.path.display().to_string(),
            errors: manifest.error_count(),
            fatal: true,
        });
    }
    if let Some(shard) = options.shard {
        sharding::keep_shard(&mut manifest, shard);
    }
    let flags = &options.flags;
    let settings = PreflightSettings::resolve(flags, &manifest.settings);
    let layers = Layers {
        flags,
        manifest: &manifest.settings,
    };
    // The entries of each region are checked against that region's OBS (and bucket region).
    let key_of = |line: usize| layers.key_for(manifest.placements.get(&line));
    let mut images = group(manifest.images.iter(), |entry| key_of(entry.line));
    let mut creates = group(manifest.creates.iter(), |entry| key_of(entry.line));
    let keys = regions::keys(&images, &creates);
    let several = keys.len() > 1;
    let mut reports = Vec::with_capacity(keys.len());
    let mut warnings = Vec::new();
    let mut endpoints = Vec::new();
    for key in keys {
        let group_images: Vec<manifest::ImageEntry> =
            take_group(&mut images, &key).into_iter().cloned().collect();
        let group_creates: Vec<manifest::CreateEntry> = take_group(&mut creates, &key)
            .into_iter()
            .cloned()
            .collect();
        let region = key.region.clone();
        let mut simulator = None;
        let obs = if options.simulate {
            let to_create = super::create::placeholder_entries(&group_creates);
            let sim = target::simulated(&group_images, &to_create, region, None)?;
            let obs = obs_target(
                sim.region.as_deref(),
                None,
                Some(&sim.endpoint),
                &sim.credentials,
            )
            .map_err(JobError::Obs)?;
            simulator = sim.simulator;
            obs
        } else {
            let found = options
                .environment
                .discover()
                .map_err(target::TargetError::Credentials)?;
            let ims_endpoint = layers.location(&key).endpoint;
            let obs_endpoint = layers.obs_endpoint(&key, settings.obs_endpoint.as_deref());
            obs_target(
                region.as_deref(),
                ims_endpoint.as_deref(),
                obs_endpoint.as_deref(),
                &found.credentials,
            )
            .map_err(JobError::Obs)?
        };
        for warning in &obs.warnings {
            tracing::warn!("preflight: {warning}");
        }
        // The region's quota; a shard's share of it.
        let (run_config, shard_settings) =
            sharding::share_of_quota(layers.config(&key), settings.clone(), options.shard, flags);
        let config = PreflightConfig {
            concurrency: run_config.concurrency,
            obs_rate: shard_settings.obs_rate,
            ims_region: obs.ims_region.clone(),
        };
        let to_create = super::create::placeholder_entries(&group_creates);
        let entries: Vec<&manifest::ImageEntry> = group_images.iter().chain(&to_create).collect();
        observer.preflight_starting(entries.len(), obs.client.endpoint().as_str());
        let checked = preflight::check(&obs.client, &entries, &config, cancel.clone()).await;
        if let Some(simulator) = simulator {
            simulator.shutdown().await;
        }
        let mut report = checked?;
        label_entries_to_create(&mut report, group_images.len(), &group_creates);
        reports.push(report);
        warnings.extend(obs.warnings);
        endpoints.push(obs.client.endpoint().to_string());
    }
    let mut reports = reports.into_iter();
    let mut report = reports.next().unwrap_or(PreflightReport {
        verdicts: Vec::new(),
        requests: 0,
        retries: 0,
        elapsed: std::time::Duration::ZERO,
    });
    for other in reports {
        report.verdicts.extend(other.verdicts);
        report.requests += other.requests;
        report.retries += other.retries;
        report.elapsed = report.elapsed.max(other.elapsed);
    }
    if several {
        // Across regions the verdicts come in manifest order.
        report.verdicts.sort_by_key(|verdict| verdict.line);
    }
    Ok(PreflightOutcome {
        manifest: options.manifest.display().to_string(),
        endpoint: endpoints.join(", "),
        report,
        warnings,
    })
}

/// The verdicts of entries imsreg creates (after the first `registered` ones) name the entry,
/// not the placeholder ID they were checked under.
fn label_entries_to_create(
    report: &mut PreflightReport,
    registered: usize,
    creates: &[manifest::CreateEntry],
) {
    for (verdict, entry) in report.verdicts.iter_mut().skip(registered).zip(creates) {
        verdict.image_id = format!("new image `{}`", entry.name);
    }
}

/// `imsreg run`'s preflight: checks the images the engine would submit (not those it follows
/// from an earlier run), settles those that fail as `preflight_failed` and gives the others
/// their size. Does nothing when turned off; skips itself with a warning when only an IAM
/// token is configured.
pub async fn screen(
    job: &mut Job,
    manifest: &str,
    observer: &dyn JobObserver,
    cancel: CancellationToken,
) -> Result<Option<PreflightReport>, JobError> {
    if !job.preflight.enabled {
        tracing::info!("preflight skipped (--no-preflight or `preflight: false`)");
        return Ok(None);
    }
    let obs_endpoint = match &job.target.simulator {
        Some(_) => Some(job.target.endpoint.clone()),
        None => job.preflight.obs_endpoint.clone(),
    };
    let obs = match obs_target(
        job.target.region.as_deref(),
        Some(&job.target.endpoint),
        obs_endpoint.as_deref(),
        &job.target.credentials,
    ) {
        Ok(obs) => obs,
        Err(ObsError::NeedsAkSk) => {
            tracing::warn!(
                "preflight skipped: {}; the run goes on without it",
                ObsError::NeedsAkSk
            );
            return Ok(None);
        }
        Err(err) => return Err(JobError::Obs(err)),
    };
    for warning in &obs.warnings {
        tracing::warn!("preflight: {warning}");
    }
    let config = PreflightConfig {
        concurrency: job.config.concurrency,
        obs_rate: job.preflight.obs_rate,
        ims_region: obs.ims_region.clone(),
    };
    let images = &job.journal.images;
    // The entries imsreg creates are checked too, before any image is created for them.
    let to_create = super::create::placeholder_entries(&job.creates);
    let entries: Vec<&manifest::ImageEntry> = images
        .iter()
        .filter(|image| image.known_job_id.is_none())
        .map(|image| &image.entry)
        .chain(&to_create)
        .collect();
    observer.preflight_starting(entries.len(), obs.client.endpoint().as_str());
    let mut report = preflight::check(&obs.client, &entries, &config, cancel).await?;
    let registered = entries.len() - to_create.len();
    label_entries_to_create(&mut report, registered, &job.creates);
    observer.preflight_finished(manifest, &report);

    let mut create_verdicts = report.verdicts.iter().skip(registered);
    let mut kept = Vec::with_capacity(job.creates.len());
    for entry in std::mem::take(&mut job.creates) {
        let Some(verdict) = create_verdicts.next() else {
            kept.push(entry);
            continue;
        };
        if let Some((code, message)) = verdict.failure() {
            let placeholder = super::create::placeholder_entries(std::slice::from_ref(&entry));
            let mut record = ImageRecord::for_entry(&placeholder[0], ImageOutcome::PreflightFailed);
            record.image_id = None;
            record.error_code = Some(code);
            record.error_message = Some(message);
            record.size_bytes = verdict.size_bytes;
            job.valid_lines.push(entry.line);
            job.journal.add_settled(record);
        } else {
            if let Some(size) = verdict.size_bytes {
                job.create_sizes.insert(entry.line, size);
            }
            kept.push(entry);
        }
    }
    job.creates = kept;

    let mut verdicts = report.verdicts.iter().take(registered);
    job.journal.settle_planned(|image| {
        if image.known_job_id.is_some() {
            return None;
        }
        let verdict = verdicts.next()?;
        image.size_bytes = verdict.size_bytes;
        let (code, message) = verdict.failure()?;
        let mut record = ImageRecord::for_entry(&image.entry, ImageOutcome::PreflightFailed);
        record.error_code = Some(code);
        record.error_message = Some(message);
        record.size_bytes = verdict.size_bytes;
        Some(record)
    });
    tracing::info!(
        checked = report.verdicts.len(),
        passed = report.passed(),
        failed = report.failed(),
        warnings = report.warnings(),
        obs_requests = report.requests,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "preflight finished"
    );
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::auth::Secret;

    #[test]
    fn the_ims_region_comes_from_the_setting_else_the_endpoint_host() {
        assert_eq!(
            ims_region(
                Some("cn-north-4"),
                Some("https://ims.ap-southeast-1.myhuaweicloud.com")
            ),
            Some("cn-north-4".into())
        );
        assert_eq!(
            ims_region(None, Some("https://ims.ap-southeast-1.myhuaweicloud.com")),
            Some("ap-southeast-1".into())
        );
        assert_eq!(ims_region(None, Some("https://ims.example.com")), None);
        assert_eq!(ims_region(None, Some("http://127.0.0.1:8080")), None);
        assert_eq!(ims_region(None, None), None);
    }

    #[test]
    fn obs_target_needs_ak_sk_an_endpoint_and_warns_without_a_region() {
        let aksk = Credentials::AkSk {
            ak: "AK".into(),
            sk: Secret::new("sk"),
            security_token: None,
        };
        let token = Credentials::Token(Secret::new("t"));
        assert!(matches!(
            obs_target(Some("ap-southeast-1"), None, None, &token),
            Err(ObsError::NeedsAkSk)
        ));
        let derived = obs_target(Some("ap-southeast-1"), None, None, &aksk).unwrap();
        assert_eq!(
            derived.client.endpoint().as_str(),
            "https://obs.ap-southeast-1.myhuaweicloud.com/"
        );
        assert!(derived.warnings.is_empty());
        let local = obs_target(None, None, Some("http://127.0.0.1:9"), &aksk).unwrap();
        assert_eq!(local.ims_region, None);
        assert_eq!(local.warnings.len(), 1);
        let simulator = obs_target(None, Some("http://127.0.0.1:7"), None, &aksk).unwrap();
        assert_eq!(simulator.client.endpoint().as_str(), "http://127.0.0.1:7/");
        let remote = obs_target(None, Some("https://ims.example.com"), None, &aksk);
        assert!(
            matches!(remote, Err(ObsError::Config(_))),
            "no region, no OBS endpoint"
        );
        assert!(matches!(
            obs_target(None, None, None, &aksk),
            Err(ObsError::Config(_))
        ));
    }

    #[test]
    fn settings_resolve_flags_over_manifest_over_defaults() {
        let defaults = PreflightSettings::resolve(&Settings::default(), &Settings::default());
        assert!(defaults.enabled);
        assert_eq!(defaults.obs_rate, crate::preflight::DEFAULT_OBS_RATE);
        let manifest = Settings {
            preflight: Some(false),
            obs_endpoint: Some("https://obs.x.myhuaweicloud.com".into()),
            ..Settings::default()
        };
        let flags = Settings {
            obs_rate: Some(5.0),
            ..Settings::default()
        };
        let resolved = PreflightSettings::resolve(&flags, &manifest);
        assert!(!resolved.enabled);
        assert_eq!(resolved.obs_rate, 5.0);
        assert_eq!(
            resolved.obs_endpoint.as_deref(),
            Some("https://obs.x.myhuaweicloud.com")
        );
    }
}
