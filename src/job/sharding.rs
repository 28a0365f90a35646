//! `--shard K/N` in the job: which of the manifest's checked entries shard K runs, and its
//! share of the quota.
//!
//! Validation stays global (a duplicate across shards is an error in every shard); the filter
//! is applied to its result, to the valid entries and to the invalid ones `--skip-invalid`
//! reports, by identity ([`crate::shard`]). IMS throttles per account and allows 40
//! registrations at once per account, so N shards that share credentials also share one quota:
//! each takes 1/N of every rate, of `max_active_jobs` and of `concurrency`, unless a flag gives
//! the shard its own value.

use crate::ids::ImageId;
use crate::manifest::{CreateEntry, ImageEntry, InvalidEntry, Manifest, Settings};
use crate::run::RunConfig;
use crate::shard::{self, Shard};

use super::options::PreflightSettings;

/// The shard identity of a valid entry: its image ID.
pub fn entry_identity(entry: &ImageEntry) -> String {
    shard::identity_of_image_id(&entry.image_id)
}

/// The shard identity of an entry imsreg creates: its name (the identity of its image).
pub fn create_identity(entry: &CreateEntry) -> String {
    shard::identity_of_name(&entry.name)
}

/// The shard identity of an invalid entry, if it has a usable one: its image ID when that
/// is a UUID, else its name when it has no image ID at all (the identity of an entry to
/// create). Entries with neither go to shard 1.
pub fn invalid_identity(entry: &InvalidEntry) -> Option<String> {
    match (&entry.image_id, &entry.name) {
        (Some(id), _) => ImageId::parse(id.trim())
            .ok()
            .map(|id| shard::identity_of_image_id(&id)),
        (None, Some(name)) => Some(shard::identity_of_name(name)),
        (None, None) => None,
    }
}

/// Keeps only the entries of `shard` (valid and invalid ones), in manifest order.
pub fn keep_shard(manifest: &mut Manifest, shard: Shard) {
    if shard.is_whole() {
        return;
    }
    manifest
        .images
        .retain(|entry| shard.contains(&entry_identity(entry)));
    manifest
        .creates
        .retain(|entry| shard.contains(&create_identity(entry)));
    manifest
        .invalid
        .retain(|entry| shard.contains_maybe(invalid_identity(entry).as_deref()));
}

/// A shard's share of the quota: with N shards, each rate (`submit_rate`, `query_rate`,
/// `obs_rate`) divided by N, and `max_active_jobs` and `concurrency` divided by N (rounded
/// down, at least 1), except the values a flag set: a flag's value is the shard's own. The
/// whole manifest (no shard, or 1/1) keeps everything.
pub fn share_of_quota(
    config: RunConfig,
    preflight: PreflightSettings,
    shard: Option<Shard>,
    flags: &Settings,
) -> (RunConfig, PreflightSettings) {
    let Some(shard) = shard.filter(|shard| !shard.is_whole()) else {
        return (config, preflight);
    };
    let n = shard.total();
    let rate = |value: f64, flag: Option<f64>| match flag {
        Some(own) => own,
        None => value / f64::from(n),
    };
    let count = |value: u32, flag: Option<u32>| match flag {
        Some(own) => own,
        None => (value / n).max(1),
    };
    let config = RunConfig {
        concurrency: count(config.concurrency, flags.concurrency),
        max_active_jobs: count(config.max_active_jobs, flags.max_active_jobs),
        submit_rate: rate(config.submit_rate, flags.submit_rate),
        query_rate: rate(config.query_rate, flags.query_rate),
        ..config
    };
    let preflight = PreflightSettings {
        obs_rate: rate(preflight.obs_rate, flags.obs_rate),
        ..preflight
    };
    (config, preflight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::defaults;

    fn resolved(flags: &Settings, manifest: &Settings) -> (RunConfig, PreflightSettings) {
        (
            RunConfig::resolve(flags, manifest),
            PreflightSettings::resolve(flags, manifest),
        )
    }

    #[test]
    fn each_of_n_shards_takes_one_nth_of_the_manifest_and_default_quota() {
        let manifest = Settings {
            submit_rate: Some(3.0),
            max_active_jobs: Some(40),
            ..Settings::default()
        };
        let flags = Settings::default();
        let (config, preflight) = resolved(&flags, &manifest);
        let shard = "2/4".parse().ok();
        let (config, preflight) = share_of_quota(config, preflight, shard, &flags);
        assert_eq!(config.submit_rate, 0.75);
        assert_eq!(config.query_rate, defaults::QUERY_RATE / 4.0);
        assert_eq!(config.max_active_jobs, 10);
        assert_eq!(config.concurrency, defaults::CONCURRENCY / 4);
        assert_eq!(preflight.obs_rate, crate::preflight::DEFAULT_OBS_RATE / 4.0);
        assert_eq!(config.poll_interval, defaults::POLL_INTERVAL, "not a quota");
        assert_eq!(config.job_timeout, defaults::JOB_TIMEOUT, "not a quota");
    }

    #[test]
    fn counts_round_down_but_never_below_one() {
        let flags = Settings::default();
        let manifest = Settings {
            max_active_jobs: Some(40),
            concurrency: Some(8),
            ..Settings::default()
        };
        let (config, preflight) = resolved(&flags, &manifest);
        let (config, _) = share_of_quota(config, preflight, "3/12".parse().ok(), &flags);
        assert_eq!(config.max_active_jobs, 3, "40 / 12 rounded down");
        assert_eq!(config.concurrency, 1, "8 / 12 is at least 1");
    }

    #[test]
    fn a_flag_is_the_shards_own_value() {
        let flags = Settings {
            submit_rate: Some(1.5),
            query_rate: Some(4.0),
            obs_rate: Some(6.0),
            max_active_jobs: Some(9),
            concurrency: Some(5),
            ..Settings::default()
        };
        let manifest = Settings {
            submit_rate: Some(100.0),
            max_active_jobs: Some(40),
            ..Settings::default()
        };
        let (config, preflight) = resolved(&flags, &manifest);
        let (config, preflight) = share_of_quota(config, preflight, "1/4".parse().ok(), &flags);
        assert_eq!(config.submit_rate, 1.5);
        assert_eq!(config.query_rate, 4.0);
        assert_eq!(preflight.obs_rate, 6.0);
        assert_eq!(config.max_active_jobs, 9);
        assert_eq!(config.concurrency, 5);
    }

    #[test]
    fn the_whole_manifest_keeps_the_whole_quota() {
        let flags = Settings::default();
        let (config, preflight) = resolved(&flags, &Settings::default());
        for shard in [None, "1/1".parse().ok()] {
            let (split, split_preflight) =
                share_of_quota(config.clone(), preflight.clone(), shard, &flags);
            assert_eq!(split, config);
            assert_eq!(split_preflight, preflight);
        }
    }

    #[test]
    fn entries_to_create_are_sharded_by_name_each_in_exactly_one_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        let mut text = String::from("version: 1\nimages:\n");
        for i in 0..60 {
            text.push_str(&format!(
                "  - name: img-{i}\n    image_url: bkt:img-{i}.qcow2\n"
            ));
        }
        std::fs::write(&path, text).unwrap();
        let whole = crate::manifest::load(&path).unwrap();
        assert_eq!(whole.creates.len(), 60);
        let mut seen = Vec::new();
        for k in 1..=3 {
            let mut manifest = whole.clone();
            keep_shard(&mut manifest, format!("{k}/3").parse().unwrap());
            assert!(!manifest.creates.is_empty() && manifest.creates.len() < 60);
            for entry in &manifest.creates {
                assert_eq!(create_identity(entry), format!("name:{}", entry.name));
            }
            seen.extend(manifest.creates.into_iter().map(|e| e.name));
        }
        seen.sort();
        let mut all: Vec<String> = whole.creates.into_iter().map(|e| e.name).collect();
        all.sort();
        assert_eq!(seen, all, "every entry in exactly one shard");
    }

    #[test]
    fn invalid_entries_go_by_id_else_name_else_to_shard_one() {
        let invalid = |id: Option<&str>, name: Option<&str>| InvalidEntry {
            line: 3,
            image_id: id.map(String::from),
            image_url: None,
            name: name.map(String::from),
            problems: vec!["image_url: missing".into()],
        };
        let uuid = "4CA46BF1-5C61-48FF-B4F3-0AD4E5E3BA86";
        assert_eq!(
            invalid_identity(&invalid(Some(uuid), Some("web"))).as_deref(),
            Some("id:4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86"),
            "the ID a valid entry would have, whatever its case"
        );
        assert_eq!(
            invalid_identity(&invalid(Some("not-a-uuid"), Some("web"))),
            None
        );
        assert_eq!(
            invalid_identity(&invalid(None, Some("web"))).as_deref(),
            Some("name:web")
        );
        assert_eq!(invalid_identity(&invalid(None, None)), None);
    }
}
