//! The create stage: manifest entries without an `image_id` get their image metadata created
//! (`POST /v2/images`), exactly once per entry whatever happens, before the engine registers
//! the files into them.
//!
//! No IMS create call is idempotent, so every image imsreg creates carries an identity tag
//! (`imsreg-key`, derived from the entry's name), and the cloud is asked before any create and
//! before any retry of a create whose answer was lost ([`super::lookup`] decides from what it
//! finds). The state journal records the intent before each create is sent and the image ID as
//! soon as it is known; an intent without an answer means "a create may still land" until the
//! request timeout has passed, and the lookup decides after that. Before anything is created,
//! the entries' `os_version`s are checked against the region's list and the image quota
//! against the number of images to create; either problem stops the job with nothing created.
//!
//! What comes out: every entry backed by an image (found or created) as an [`ImageEntry`] for
//! the engine, or a report record when it was settled here (refused, conflicting images,
//! IMS not reached).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::ids::{IDENTITY_TAG_KEY, ImageId, identity_tag_value};
use crate::ims::types::parse_api_time;
use crate::ims::{
    CreateImageMetadataRequest, ErrorClass, ImageInfo, ImageStatus, ImsApi, ImsError,
};
use crate::manifest::{CreateEntry, ImageEntry};
use crate::report::{ImageOutcome, ImageRecord};
use crate::run::pacer::Limiter;
use crate::run::retry::{RetryDecision, decide_query, jitter};
use crate::state::{CreateKind, CreateState};

use super::disk_format::disk_format_for;
use super::journal_sink::JournalSink;
use super::lookup::{Decision, Found, decide};

/// Up to this many entries, each is looked up by its tag; above it, the account's private
/// images are listed once and matched by tag (pages instead of one call per entry).
pub const LOOKUP_PER_ENTRY_MAX: usize = 20;

/// Create calls sent for one entry before it is reported failed.
pub const MAX_CREATE_ATTEMPTS: u32 = 5;

/// How long after the last create the created images are looked up again. IMS stamps
/// `created_at` in whole seconds, and "the oldest" decides between images two workers created
/// for one entry: once the second of a create is over (with a second's margin for the
/// server's clock), every image created in it or before is visible to every worker, so they
/// all pick the same one.
pub const VERIFY_DELAY: Duration = Duration::from_secs(2);

/// Why the create stage stops the job before anything is created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// `problems` are `FILE:LINE:COL: error: ...` lines, one per value and place.
    #[error(
        "{} os_version value(s) are not OS versions IMS knows in this region ({}); nothing was created",
        problems.len(),
        problems.iter().map(|p| p.split(": error: ").next().unwrap_or(p)).collect::<Vec<_>>().join(", ")
    )]
    UnknownOsVersion { problems: Vec<String> },
    #[error(
        "the image quota is too small: {to_create} image(s) to create, but the account has {used} of {quota} private images ({left} left); nothing was created. Raise the quota (IMS quota `image`), delete unused images, or split the manifest"
    )]
    Quota {
        to_create: usize,
        used: u64,
        quota: u64,
        left: u64,
    },
    #[error(
        "IMS rejected the credentials while preparing the images to create ({0}); nothing was created"
    )]
    AuthFailed(String),
}

/// How the stage runs.
#[derive(Debug, Clone)]
pub struct CreateSettings {
    /// `--retry-failed`: a created image that ended `killed` is deleted and created afresh.
    pub retry_failed: bool,
    /// Look and decide, change nothing.
    pub dry_run: bool,
    /// How long a create that was sent may take to land (the client's request timeout).
    pub landing_window: Duration,
    /// Create and delete calls per second (the write lane's rate).
    pub write_rate: f64,
    /// Lookups per second.
    pub query_rate: f64,
    /// Calls on the wire at once.
    pub concurrency: usize,
    /// The manifest's path as given, for messages (`FILE:LINE:COL`).
    pub manifest: String,
}

/// What the stage did with one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Created in this run.
    Created,
    /// Found by its tag: an earlier run (or another worker) created it.
    Found(ImageStatus),
}

/// The stage's result.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Entries backed by an image, for the engine (manifest order), with how.
    pub entries: Vec<(ImageEntry, Resolution)>,
    /// Entries settled here, as report records (with their manifest lines).
    pub settled: Vec<(usize, ImageRecord)>,
    /// Dry run: the entries a run would create, in manifest order.
    pub to_create: Vec<CreateEntry>,
    /// Images deleted (metadata-only duplicates, or killed images replaced).
    pub deleted: Vec<ImageId>,
}

impl Resolved {
    pub fn created(&self) -> usize {
        self.entries
            .iter()
            .filter(|(_, how)| *how == Resolution::Created)
            .count()
    }

    pub fn found(&self) -> usize {
        self.entries.len() - self.created()
    }
}

/// The stage's view of one entry.
struct Pending {
    entry: CreateEntry,
    key: String,
}

/// What was learned for one entry on the way.
enum Step {
    Use(ImageEntry, Resolution),
    Settle(Box<ImageRecord>),
    /// Created (or found after a lost answer): to be looked up again, with every other entry's,
    /// once the creation second is over (see [`VERIFY_DELAY`]), and settled on the image every
    /// worker picks.
    Verify {
        item: Box<Pending>,
        mine: Option<Found>,
    },
}

impl Step {
    fn settle(record: ImageRecord) -> Step {
        Step::Settle(Box::new(record))
    }
}

struct Stage<'a, C> {
    api: &'a C,
    settings: &'a CreateSettings,
    journal: Option<&'a JournalSink>,
    writes: Limiter,
    reads: Limiter,
    cancel: CancellationToken,
}

/// Runs the stage for `entries` (valid manifest entries without an `image_id`). `prior` is
/// what the state journal knows of them, by identity tag value.
pub async fn resolve<C: ImsApi>(
    api: &C,
    entries: Vec<CreateEntry>,
    settings: &CreateSettings,
    journal: Option<Arc<JournalSink>>,
    prior: &HashMap<String, CreateState>,
    cancel: CancellationToken,
) -> Result<Resolved, CreateError> {
    let mut resolved = Resolved::default();
    if entries.is_empty() {
        return Ok(resolved);
    }
    let stage = Stage {
        api,
        settings,
        journal: journal.as_deref(),
        writes: Limiter::new(settings.write_rate),
        reads: Limiter::new(settings.query_rate),
        cancel,
    };
    let pending: Vec<Pending> = entries
        .into_iter()
        .map(|entry| Pending {
            key: identity_tag_value(&entry.name),
            entry,
        })
        .collect();

    // 1. Every os_version against the region's list (one call), before anything is created.
    if let Err(unsettled) = stage.check_os_versions(&pending).await? {
        settle_all(
            &mut resolved,
            pending,
            ImageOutcome::Unreachable,
            &unsettled,
        );
        return Ok(resolved);
    }

    // 2. An earlier run's create without an answer may still land: wait until it cannot.
    stage.wait_for_earlier_creates(&pending, prior).await;

    // 3. What the cloud has for each entry.
    let keys: Vec<&str> = pending.iter().map(|item| item.key.as_str()).collect();
    let found = match stage.lookup_keys(&keys).await {
        Ok(found) => found,
        Err(LookupFailed::Stopped) => {
            settle_all(
                &mut resolved,
                pending,
                ImageOutcome::Cancelled,
                "the run stopped before the image was looked up",
            );
            return Ok(resolved);
        }
        Err(LookupFailed::Auth(message)) => return Err(CreateError::AuthFailed(message)),
        Err(LookupFailed::Error(message)) => {
            let message = format!(
                "could not look the entry's image up in IMS, so nothing was created; the next run tries again: {message}"
            );
            settle_all(&mut resolved, pending, ImageOutcome::Unreachable, &message);
            return Ok(resolved);
        }
    };
    let mut decided: Vec<(Pending, Decision)> = Vec::with_capacity(pending.len());
    for item in pending {
        let mut images = found.get(&item.key).cloned().unwrap_or_default();
        // The journal is a shortcut: an image it knows but the listing does not show yet is
        // asked for directly before anything is created.
        if images.is_empty()
            && let Some(id) = prior
                .get(&item.key)
                .and_then(|state| state.image_id.as_deref())
                .and_then(|id| ImageId::parse(id).ok())
            && let Ok(Some(info)) = stage.api.get_image(&id).await
        {
            images.extend(found_image(&info));
        }
        let decision = decide(images, settings.retry_failed);
        decided.push((item, decision));
    }

    // 4. The quota, before creating anything.
    let to_create = decided
        .iter()
        .filter(|(_, d)| matches!(d, Decision::Create | Decision::Replace { .. }))
        .count();
    let replaced = decided
        .iter()
        .filter(|(_, d)| matches!(d, Decision::Replace { .. }))
        .count();
    if to_create > 0 {
        match stage.api.image_quota().await {
            Ok(quota) => {
                let left = quota.quota.saturating_sub(quota.used);
                let needed = (to_create - replaced) as u64;
                if needed > left {
                    return Err(CreateError::Quota {
                        to_create,
                        used: quota.used,
                        quota: quota.quota,
                        left,
                    });
                }
            }
            Err(error) if error.class() == ErrorClass::AuthFailed => {
                return Err(CreateError::AuthFailed(error.to_string()));
            }
            // Not knowing the quota is no reason to stop: IMS refuses a create over it
            // (IMG.0015), and that entry is reported.
            Err(error) => tracing::warn!("could not read the image quota: {error}"),
        }
    }

    if settings.dry_run {
        for (item, decision) in decided {
            match decision {
                Decision::Create | Decision::Replace { .. } => resolved.to_create.push(item.entry),
                Decision::Use { image, .. } => {
                    let status = image.status.clone();
                    resolved.entries.push((
                        image_entry(&item.entry, image.id),
                        Resolution::Found(status),
                    ));
                }
                Decision::Conflict { ids } => {
                    let line = item.entry.line;
                    resolved
                        .settled
                        .push((line, conflict_record(&item.entry, &ids)));
                }
            }
        }
        return Ok(resolved);
    }

    // 5. Create, use, replace or report each entry.
    let concurrency = settings.concurrency.max(1);
    let stage = &stage;
    let steps: Vec<(usize, usize, Step, Vec<ImageId>)> =
        futures::stream::iter(decided.into_iter().enumerate().map(
            |(index, (item, decision))| async move {
                let mut deleted = Vec::new();
                let line = item.entry.line;
                let step = stage.carry_out(item, decision, &mut deleted).await;
                (index, line, step, deleted)
            },
        ))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // 6. The created images, looked up again together once their creation second is over.
    let (verify, mut steps): (Vec<_>, Vec<_>) = steps
        .into_iter()
        .partition(|(_, _, step, _)| matches!(step, Step::Verify { .. }));
    if !verify.is_empty() {
        let _ = stage.sleep(VERIFY_DELAY).await;
        let keys: Vec<String> = verify
            .iter()
            .filter_map(|(_, _, step, _)| match step {
                Step::Verify { item, .. } => Some(item.key.clone()),
                _ => None,
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        // A failed lookup leaves each entry to what its create answered (see `verified`).
        let looked = stage.lookup_keys(&keys).await.unwrap_or_default();
        let looked = &looked;
        let verified: Vec<(usize, usize, Step, Vec<ImageId>)> =
            futures::stream::iter(verify.into_iter().map(
                |(index, line, step, mut deleted)| async move {
                    let step = match step {
                        Step::Verify { item, mine } => {
                            stage.verified(*item, mine, looked, &mut deleted).await
                        }
                        other => other,
                    };
                    (index, line, step, deleted)
                },
            ))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        steps.extend(verified);
    }

    steps.sort_by_key(|(index, _, _, _)| *index);
    for (_, line, step, deleted) in steps {
        resolved.deleted.extend(deleted);
        match step {
            Step::Use(entry, how) => resolved.entries.push((entry, how)),
            Step::Settle(record) => resolved.settled.push((line, *record)),
            Step::Verify { item, .. } => resolved.settled.push((
                line,
                unsettled_record(
                    &item.entry,
                    None,
                    "internal error: a create left unverified",
                ),
            )),
        }
    }
    Ok(resolved)
}

/// After the run: looks again at the images of the entries imsreg created and deletes the
/// metadata-only duplicates that appeared meanwhile (a create of a killed run, or of another
/// worker, that landed late), by the same rule as before any registration; answers the IDs
/// deleted. `chosen` are (identity tag value, the entry's image). Best effort: a lookup that
/// fails leaves things for the next run.
pub async fn tidy<C: ImsApi>(
    api: &C,
    chosen: &[(String, ImageId)],
    settings: &CreateSettings,
    cancel: CancellationToken,
) -> Vec<ImageId> {
    let stage = Stage {
        api,
        settings,
        journal: None,
        writes: Limiter::new(settings.write_rate),
        reads: Limiter::new(settings.query_rate),
        cancel,
    };
    let mut deleted = Vec::new();
    if chosen.is_empty() || settings.dry_run {
        return deleted;
    }
    let keys: Vec<&str> = chosen.iter().map(|(key, _)| key.as_str()).collect();
    let Ok(found) = stage.lookup_keys(&keys).await else {
        return deleted;
    };
    for (key, mine) in chosen {
        let images = found.get(key).cloned().unwrap_or_default();
        if images.len() < 2 {
            continue;
        }
        match decide(images, false) {
            Decision::Use { image, extras } if image.id == *mine => {
                let _ = stage.delete_all(&extras, &mut deleted).await;
            }
            other => tracing::warn!(
                image_id = %mine,
                "other images carry the identity tag of this entry's image and imsreg cannot tell which to keep ({other:?}); left alone"
            ),
        }
    }
    deleted
}

enum LookupFailed {
    Stopped,
    Auth(String),
    Error(String),
}

impl<C: ImsApi> Stage<'_, C> {
    /// `Ok(Ok(()))` when every os_version is known (or none is given), `Ok(Err(why))` when the
    /// list could not be read (the entries are left unsettled), `Err` for unknown values.
    async fn check_os_versions(
        &self,
        pending: &[Pending],
    ) -> Result<Result<(), String>, CreateError> {
        let wanted: BTreeSet<&str> = pending
            .iter()
            .filter_map(|item| item.entry.os_version.as_deref())
            .collect();
        let without = pending
            .iter()
            .filter(|i| i.entry.os_version.is_none())
            .count();
        if without > 0 {
            tracing::warn!(
                entries = without,
                "entries to create without os_version: IMS records them as \"Other Linux(64 bit)\", and ECS creation from such an image may fail; set os_version (or defaults.os_version)"
            );
        }
        if wanted.is_empty() {
            return Ok(Ok(()));
        }
        let known = match self.read(|| self.api.list_os_versions()).await {
            Ok(list) => list,
            Err(LookupFailed::Auth(message)) => return Err(CreateError::AuthFailed(message)),
            Err(LookupFailed::Stopped) => return Ok(Err("the run stopped".into())),
            Err(LookupFailed::Error(message)) => {
                return Ok(Err(format!(
                    "could not read IMS's OS versions (GET /v1/cloudimages/os_version), so nothing was created; the next run tries again: {message}"
                )));
            }
        };
        let names: Vec<&str> = known.iter().map(|v| v.os_version.as_str()).collect();
        let keys: HashSet<&str> = known
            .iter()
            .flat_map(|v| [Some(v.os_version.as_str()), v.os_version_key.as_deref()])
            .flatten()
            .collect();
        // One problem per value and place (a `defaults:` value is written once).
        let mut unknown: BTreeMap<(String, &str), Vec<&str>> = BTreeMap::new();
        for item in pending {
            let Some(value) = item.entry.os_version.as_deref() else {
                continue;
            };
            if !keys.contains(value) {
                let place = os_version_where(&self.settings.manifest, &item.entry);
                unknown
                    .entry((place, value))
                    .or_default()
                    .push(&item.entry.name);
            }
        }
        let mut problems = Vec::new();
        for ((place, value), entries) in unknown {
            let hint = match did_you_mean(value, &names) {
                Some(close) => format!("did you mean `{close}`?"),
                None => "see `GET /v1/cloudimages/os_version` for the region's values".into(),
            };
            let used_by = match entries.as_slice() {
                [one] => format!("entry `{one}`"),
                many => format!("{} entries", many.len()),
            };
            problems.push(format!(
                "{place}: error: os_version: `{value}` ({used_by}) is not an OS version IMS knows in this region; {hint}"
            ));
        }
        if problems.is_empty() {
            Ok(Ok(()))
        } else {
            Err(CreateError::UnknownOsVersion { problems })
        }
    }

    async fn wait_for_earlier_creates(
        &self,
        pending: &[Pending],
        prior: &HashMap<String, CreateState>,
    ) {
        let now = Utc::now();
        let window = chrono::Duration::from_std(self.settings.landing_window)
            .unwrap_or(chrono::Duration::MAX);
        let latest = pending
            .iter()
            .filter_map(|item| prior.get(&item.key).and_then(|s| s.intent_at))
            .map(|at| at + window)
            .max();
        let Some(until) = latest.filter(|until| *until > now) else {
            return;
        };
        let wait = (until - now).to_std().unwrap_or_default();
        tracing::info!(
            wait = %humantime::format_duration(Duration::from_secs(wait.as_secs() + 1)),
            "an earlier run sent a create without recording its answer; waiting until it can no longer land before looking the images up"
        );
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// The images carrying each of these identity tag values, by value: one listing of the
    /// private images above [`LOOKUP_PER_ENTRY_MAX`] keys, else a lookup each.
    async fn lookup_keys(
        &self,
        keys: &[&str],
    ) -> Result<HashMap<String, Vec<Found>>, LookupFailed> {
        let mut found: HashMap<String, Vec<Found>> = keys
            .iter()
            .map(|key| (key.to_string(), Vec::new()))
            .collect();
        if keys.len() > LOOKUP_PER_ENTRY_MAX {
            let images = self
                .read(|| self.api.list_images_tagged(IDENTITY_TAG_KEY))
                .await?;
            for info in images {
                if let Some(value) = info.tag(IDENTITY_TAG_KEY)
                    && let Some(images) = found.get_mut(value)
                {
                    images.extend(found_image(&info));
                }
            }
            return Ok(found);
        }
        for key in keys {
            let images = self.lookup(key).await?;
            found.insert(key.to_string(), images);
        }
        Ok(found)
    }

    /// Settles a created (or lost-answer) entry on what the second lookup found.
    async fn verified(
        &self,
        item: Pending,
        mine: Option<Found>,
        looked: &HashMap<String, Vec<Found>>,
        deleted: &mut Vec<ImageId>,
    ) -> Step {
        let mut images = match looked.get(&item.key) {
            Some(images) => images.clone(),
            // The create worked; if the check cannot be made, the image is still the entry's.
            None if mine.is_some() => Vec::new(),
            None => {
                return Step::settle(unsettled_record(
                    &item.entry,
                    None,
                    "a create's answer was lost and the image could not be looked up; the next run looks again before creating anything",
                ));
            }
        };
        if let Some(mine) = &mine
            && !images.iter().any(|image| image.id == mine.id)
        {
            images.push(mine.clone());
        }
        self.adopt_into(&item, images, mine.map(|m| m.id), deleted)
            .await
    }

    async fn lookup(&self, key: &str) -> Result<Vec<Found>, LookupFailed> {
        let images = self
            .read(|| self.api.find_images_by_tag(IDENTITY_TAG_KEY, key))
            .await?;
        Ok(images
            .iter()
            // The filter is the server's; the tag is checked again here.
            .filter(|info| info.tag(IDENTITY_TAG_KEY) == Some(key))
            .filter_map(found_image)
            .collect())
    }

    /// A read (or an idempotent delete) under the query retry policy.
    async fn read<T, Fut>(&self, call: impl Fn() -> Fut) -> Result<T, LookupFailed>
    where
        Fut: std::future::Future<Output = Result<T, ImsError>>,
    {
        let mut failures = crate::run::retry::Failures::default();
        loop {
            if self.cancel.is_cancelled() {
                return Err(LookupFailed::Stopped);
            }
            self.reads.until_ready(None).await;
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let class = error.class();
            let attempt = failures.count(&class);
            match decide_query(&class, attempt, jitter()) {
                RetryDecision::RetryAfter(delay) => {
                    tracing::debug!(error = %error, delay = ?delay, "retrying an IMS call of the create stage");
                    if !self.sleep(delay).await {
                        return Err(LookupFailed::Stopped);
                    }
                }
                RetryDecision::StopRun => {
                    self.cancel.cancel();
                    return Err(LookupFailed::Auth(error.to_string()));
                }
                _ => return Err(LookupFailed::Error(error.to_string())),
            }
        }
    }

    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Deletes metadata-only duplicates (or a killed image being replaced). `false` if one
    /// could not be deleted (nothing is registered into the entry then).
    async fn delete_all(&self, ids: &[ImageId], deleted: &mut Vec<ImageId>) -> Result<(), String> {
        for id in ids {
            self.writes.until_ready(None).await;
            match self.read(|| self.api.delete_image(id)).await {
                Ok(()) => {
                    tracing::info!(image_id = %id, "deleted a duplicate or replaced image");
                    deleted.push(*id);
                }
                Err(LookupFailed::Stopped) => return Err("the run stopped".into()),
                Err(LookupFailed::Auth(message) | LookupFailed::Error(message)) => {
                    return Err(format!("could not delete image {id}: {message}"));
                }
            }
        }
        Ok(())
    }

    async fn carry_out(
        &self,
        item: Pending,
        decision: Decision,
        deleted: &mut Vec<ImageId>,
    ) -> Step {
        match decision {
            Decision::Conflict { ids } => Step::settle(conflict_record(&item.entry, &ids)),
            Decision::Use { image, extras } => {
                if let Err(message) = self.delete_all(&extras, deleted).await {
                    return Step::settle(unsettled_record(&item.entry, Some(image.id), &message));
                }
                self.use_found(item, image)
            }
            Decision::Replace { killed, extras } => {
                let mut doomed = extras;
                doomed.push(killed);
                if let Err(message) = self.delete_all(&doomed, deleted).await {
                    return Step::settle(unsettled_record(&item.entry, Some(killed), &message));
                }
                self.create(item).await
            }
            Decision::Create => self.create(item).await,
        }
    }

    fn use_found(&self, item: Pending, image: Found) -> Step {
        if let Some(journal) = self.journal {
            let _ = journal.record_create(
                &item.key,
                &item.entry.name,
                CreateKind::Created {
                    image_id: image.id.to_string(),
                },
            );
        }
        if image.status == ImageStatus::Killed {
            let mut record =
                ImageRecord::for_entry(&image_entry(&item.entry, image.id), ImageOutcome::Failed);
            record.created = true;
            record.error_message = Some(
                "the image imsreg created for this entry is `killed` (its registration failed); --retry-failed deletes it and creates a fresh one".into(),
            );
            return Step::settle(record);
        }
        let status = image.status.clone();
        Step::Use(
            image_entry(&item.entry, image.id),
            Resolution::Found(status),
        )
    }

    /// Creates the entry's image: intent journaled, create sent, and on any doubt the cloud
    /// asked before the next try.
    async fn create(&self, item: Pending) -> Step {
        let request = create_request(&item.entry, &item.key);
        let mut failures = 0u32;
        loop {
            if self.cancel.is_cancelled() {
                return Step::settle(cancelled_record(&item.entry));
            }
            if let Some(journal) = self.journal
                && let Err(error) =
                    journal.record_create(&item.key, &item.entry.name, CreateKind::CreateIntent)
            {
                return Step::settle(unsettled_record(
                    &item.entry,
                    None,
                    &format!(
                        "the state journal could not record the intent to create, so nothing was created: {error}"
                    ),
                ));
            }
            self.writes.until_ready(None).await;
            let sent_at = tokio::time::Instant::now();
            let error = match self.api.create_image_metadata(&request).await {
                Ok(info) => return self.created(item, &info).await,
                Err(error) => error,
            };
            failures += 1;
            let class = error.class();
            match class {
                ErrorClass::AuthFailed => {
                    self.cancel.cancel();
                    self.refused(&item);
                    return Step::settle(cancelled_record(&item.entry));
                }
                // An unreadable 2xx answer means it was probably created: that one is looked up.
                ErrorClass::Final if !matches!(error, ImsError::Decode { .. }) => {
                    self.refused(&item);
                    return Step::settle(refused_record(&item.entry, &error));
                }
                // The gateway refused it (throttled) or it never left: nothing was created.
                ErrorClass::Retryable {
                    throttled: true,
                    retry_after,
                } => {
                    if failures >= MAX_CREATE_ATTEMPTS * 2 {
                        return Step::settle(unsettled_record(
                            &item.entry,
                            None,
                            &error.to_string(),
                        ));
                    }
                    let delay =
                        retry_after.unwrap_or_else(|| crate::run::retry::throttle_pause(jitter()));
                    if !self.sleep(delay).await {
                        return Step::settle(cancelled_record(&item.entry));
                    }
                    continue;
                }
                _ if matches!(error, ImsError::NotSent { .. }) => {
                    if failures >= MAX_CREATE_ATTEMPTS {
                        return Step::settle(unsettled_record(
                            &item.entry,
                            None,
                            &error.to_string(),
                        ));
                    }
                    let delay = crate::run::retry::full_jitter_backoff(failures, jitter());
                    if !self.sleep(delay).await {
                        return Step::settle(cancelled_record(&item.entry));
                    }
                    continue;
                }
                _ => {}
            }
            // The answer was lost or was an error that may hide a create: the cloud decides.
            tracing::info!(name = %item.entry.name, error = %error, "a create's answer was lost or unclear; looking the image up before any retry");
            match self.settle_after_doubt(&item, &error, sent_at).await {
                Ok(Some(step)) => return step,
                Ok(None) => {}
                Err(record) => return Step::Settle(record),
            }
            if failures >= MAX_CREATE_ATTEMPTS {
                return Step::settle(unsettled_record(
                    &item.entry,
                    None,
                    &format!(
                        "{MAX_CREATE_ATTEMPTS} create calls got no usable answer and no image appeared; the next run looks again: {error}"
                    ),
                ));
            }
            let delay = crate::run::retry::full_jitter_backoff(failures, jitter());
            if !self.sleep(delay).await {
                return Step::settle(cancelled_record(&item.entry));
            }
        }
    }

    /// After a create whose outcome is unknown: `Ok(Some)` when the cloud shows the image (or
    /// duplicates to settle), `Ok(None)` when no image appeared even after the create could
    /// have landed (a retry is safe), `Err` when the lookup itself failed.
    async fn settle_after_doubt(
        &self,
        item: &Pending,
        error: &ImsError,
        sent_at: tokio::time::Instant,
    ) -> Result<Option<Step>, Box<ImageRecord>> {
        let looked = self.lookup(&item.key).await;
        let images = self.lookup_result(item, looked)?;
        if !images.is_empty() {
            return Ok(Some(verify_later(item)));
        }
        if may_still_land(error) {
            let until = sent_at + self.settings.landing_window;
            let now = tokio::time::Instant::now();
            if until > now && !self.sleep(until - now).await {
                return Err(Box::new(cancelled_record(&item.entry)));
            }
            let looked = self.lookup(&item.key).await;
            let images = self.lookup_result(item, looked)?;
            if !images.is_empty() {
                return Ok(Some(verify_later(item)));
            }
        }
        Ok(None)
    }

    fn lookup_result(
        &self,
        item: &Pending,
        looked: Result<Vec<Found>, LookupFailed>,
    ) -> Result<Vec<Found>, Box<ImageRecord>> {
        looked.map_err(|failed| {
            Box::new(match failed {
                LookupFailed::Stopped => cancelled_record(&item.entry),
                LookupFailed::Auth(message) | LookupFailed::Error(message) => unsettled_record(
                    &item.entry,
                    None,
                    &format!("a create's answer was lost and the image could not be looked up; the next run looks again before creating anything: {message}"),
                ),
            })
        })
    }

    /// A create answered this image: journal it, then look again by tag (another worker may
    /// have created one too) and settle on the image every worker picks.
    async fn created(&self, item: Pending, info: &ImageInfo) -> Step {
        let mine = found_image(info);
        if let (Some(journal), Some(mine)) = (self.journal, &mine) {
            let _ = journal.record_create(
                &item.key,
                &item.entry.name,
                CreateKind::Created {
                    image_id: mine.id.to_string(),
                },
            );
        }
        if let Some(mine) = &mine {
            tracing::debug!(name = %item.entry.name, image_id = %mine.id, "created the image metadata");
        }
        // A 201 without a usable ID: the second lookup finds what was made.
        Step::Verify {
            item: Box::new(item),
            mine,
        }
    }

    /// Settles on one image among those found (deleting metadata-only duplicates, noted in
    /// `deleted`).
    async fn adopt_into(
        &self,
        item: &Pending,
        images: Vec<Found>,
        mine: Option<ImageId>,
        deleted: &mut Vec<ImageId>,
    ) -> Step {
        match decide(images, false) {
            Decision::Create => Step::settle(unsettled_record(
                &item.entry,
                None,
                "the created image is not visible; the next run looks again",
            )),
            Decision::Conflict { ids } => Step::settle(conflict_record(&item.entry, &ids)),
            Decision::Replace { .. } => unreachable_step(&item.entry),
            Decision::Use { image, extras } => {
                if let Err(message) = self.delete_all(&extras, deleted).await {
                    return Step::settle(unsettled_record(&item.entry, Some(image.id), &message));
                }
                if let Some(journal) = self.journal
                    && mine != Some(image.id)
                {
                    let _ = journal.record_create(
                        &item.key,
                        &item.entry.name,
                        CreateKind::Created {
                            image_id: image.id.to_string(),
                        },
                    );
                }
                let how = if mine == Some(image.id) {
                    Resolution::Created
                } else if mine.is_none() && image.status == ImageStatus::Queued {
                    // Our own create whose answer was lost (or another worker's): made in
                    // this run as far as anyone can tell.
                    Resolution::Created
                } else {
                    Resolution::Found(image.status.clone())
                };
                let entry = image_entry(&item.entry, image.id);
                Step::Use(entry, how)
            }
        }
    }

    fn refused(&self, item: &Pending) {
        if let Some(journal) = self.journal {
            let _ = journal.record_create(&item.key, &item.entry.name, CreateKind::CreateRefused);
        }
    }
}

/// An entry whose create's answer was lost but whose image the lookup shows: settled with the
/// others after [`VERIFY_DELAY`].
fn verify_later(item: &Pending) -> Step {
    Step::Verify {
        item: Box::new(Pending {
            entry: item.entry.clone(),
            key: item.key.clone(),
        }),
        mine: None,
    }
}

/// Whether a create that failed this way may still create the image later (no answer came
/// from IMS itself): then the lookup waits out the request timeout before a retry.
fn may_still_land(error: &ImsError) -> bool {
    match error {
        ImsError::Ambiguous { .. } | ImsError::Decode { .. } => true,
        // The gateway answered for a backend that may still be working on it.
        ImsError::Api(api) => matches!(api.status, 502 | 504),
        ImsError::NotSent { .. } | ImsError::Config(_) => false,
    }
}

/// `FILE:LINE:COL` of an entry's `os_version` (in the entry, or in `defaults:`).
fn os_version_where(manifest: &str, entry: &CreateEntry) -> String {
    match entry.os_version_at {
        Some(at) => format!("{manifest}:{}:{}", at.line, at.column),
        None => format!("{manifest}:{}", entry.line),
    }
}

fn did_you_mean<'a>(value: &str, names: &[&'a str]) -> Option<&'a str> {
    let lower = value.to_lowercase();
    names
        .iter()
        .map(|name| (strsim::jaro_winkler(&lower, &name.to_lowercase()), *name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// The body of `POST /v2/images` for an entry: its metadata plus the identity tag.
pub fn create_request(entry: &CreateEntry, key: &str) -> CreateImageMetadataRequest {
    let mut tags: Vec<String> = entry.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    tags.push(format!("{IDENTITY_TAG_KEY}={key}"));
    CreateImageMetadataRequest {
        name: Some(entry.name.clone()),
        os_version: entry.os_version.clone(),
        disk_format: Some(disk_format_for(entry.format).to_string()),
        container_format: Some("bare".into()),
        min_disk: entry.min_disk.map(i64::from),
        min_ram: entry.min_ram.map(|ram| ram as i64),
        tags: Some(tags),
        visibility: Some("private".into()),
        protected: None,
    }
}

fn found_image(info: &ImageInfo) -> Option<Found> {
    Some(Found {
        id: ImageId::parse(&info.id).ok()?,
        status: info.status.clone(),
        created_at: info.created_at.as_deref().and_then(parse_api_time),
    })
}

fn base_record(
    entry: &CreateEntry,
    image_id: Option<ImageId>,
    status: ImageOutcome,
) -> ImageRecord {
    let mut record = match image_id {
        Some(id) => ImageRecord::for_entry(&image_entry(entry, id), status),
        None => {
            let mut record =
                ImageRecord::for_entry(&image_entry(entry, placeholder_id(entry)), status);
            record.image_id = None;
            record
        }
    };
    record.created = image_id.is_some();
    record
}

fn conflict_record(entry: &CreateEntry, ids: &[ImageId]) -> ImageRecord {
    let mut record = base_record(entry, None, ImageOutcome::Failed);
    record.error_code = Some("IMSREG.DUPLICATE_IMAGES".into());
    let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
    record.error_message = Some(format!(
        "{} images carry this entry's identity tag and more than one went past `queued`: {}; imsreg touched none of them. Keep one (delete the others, or remove their imsreg-key tag) and run again",
        ids.len(),
        list.join(", ")
    ));
    record
}

fn refused_record(entry: &CreateEntry, error: &ImsError) -> ImageRecord {
    let mut record = base_record(entry, None, ImageOutcome::Failed);
    record.error_code = error.code().map(str::to_string);
    record.error_message = Some(format!(
        "IMS refused to create the image metadata: {}",
        error.message_without_code()
    ));
    record
}

fn unsettled_record(entry: &CreateEntry, image_id: Option<ImageId>, message: &str) -> ImageRecord {
    let mut record = base_record(entry, image_id, ImageOutcome::Unreachable);
    record.error_message = Some(message.to_string());
    record
}

fn cancelled_record(entry: &CreateEntry) -> ImageRecord {
    base_record(entry, None, ImageOutcome::Cancelled)
}

fn unreachable_step(entry: &CreateEntry) -> Step {
    Step::settle(unsettled_record(
        entry,
        None,
        "internal error: a replace decision after a create",
    ))
}

fn settle_all(resolved: &mut Resolved, pending: Vec<Pending>, status: ImageOutcome, message: &str) {
    for item in pending {
        let mut record = base_record(&item.entry, None, status);
        record.error_message = Some(message.to_string());
        resolved.settled.push((item.entry.line, record));
    }
}

/// The entries to create as [`ImageEntry`]s with placeholder IDs (derived from the name), for
/// what only needs their objects: the simulator's OBS side and the preflight.
pub fn placeholder_entries(entries: &[CreateEntry]) -> Vec<ImageEntry> {
    entries
        .iter()
        .map(|entry| image_entry(entry, placeholder_id(entry)))
        .collect()
}

/// A stand-in ID for an entry that has no image yet (never sent to IMS).
pub fn placeholder_id(entry: &CreateEntry) -> ImageId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("imsreg-create:{}", entry.name).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ImageId::from_uuid(uuid::Uuid::from_bytes(bytes))
}

/// The entry as the engine takes it, backed by the image found or created for it.
pub fn image_entry(entry: &CreateEntry, image_id: ImageId) -> ImageEntry {
    ImageEntry {
        image_id,
        image_url: entry.image_url.clone(),
        name: Some(entry.name.clone()),
        format: entry.format,
        line: entry.line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::{ApiError, ImageStatus};
    use crate::manifest::{ImageFormat, ImageUrl};
    use crate::run::testing::{CreateFault, FakeCall, FakeIms};
    use crate::state::Journal;

    const WINDOW: Duration = Duration::from_secs(60);

    fn entry(name: &str, line: usize) -> CreateEntry {
        CreateEntry {
            name: name.to_string(),
            image_url: ImageUrl {
                bucket: "bkt".into(),
                object: format!("{name}.qcow2"),
            },
            format: ImageFormat::Qcow2,
            os_version: Some("CentOS 7.9 64bit".into()),
            min_disk: Some(40),
            min_ram: None,
            tags: BTreeMap::from([("team".to_string(), "infra".to_string())]),
            line,
            os_version_at: None,
        }
    }

    fn settings() -> CreateSettings {
        CreateSettings {
            retry_failed: false,
            dry_run: false,
            landing_window: WINDOW,
            write_rate: 0.0,
            query_rate: 0.0,
            concurrency: 4,
            manifest: "m.yaml".into(),
        }
    }

    fn fake() -> FakeIms {
        FakeIms::new(0, Duration::from_secs(5))
    }

    async fn run(ims: &FakeIms, entries: Vec<CreateEntry>, settings: &CreateSettings) -> Resolved {
        resolve(
            ims,
            entries,
            settings,
            None,
            &HashMap::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    fn tag(name: &str) -> String {
        format!("{IDENTITY_TAG_KEY}={}", identity_tag_value(name))
    }

    fn api_error(status: u16, code: &str) -> ImsError {
        ImsError::Api(ApiError {
            status,
            code: code.into(),
            message: "refused".into(),
            request_id: None,
            retry_after: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn creates_each_entry_once_with_its_identity_tag_and_metadata() {
        let ims = fake();
        let entries = vec![entry("web", 3), entry("db", 7), entry("cache", 9)];
        let resolved = run(&ims, entries, &settings()).await;
        assert_eq!(resolved.created(), 3);
        assert!(resolved.settled.is_empty());
        let names: Vec<_> = resolved
            .entries
            .iter()
            .map(|(e, _)| (e.name.clone().unwrap(), e.line))
            .collect();
        assert_eq!(
            names,
            [("web".into(), 3), ("db".into(), 7), ("cache".into(), 9)]
        );
        for name in ["web", "db", "cache"] {
            let images = ims.images_named(name);
            assert_eq!(images.len(), 1, "{name}: {images:?}");
            assert_eq!(
                ims.images_tagged(IDENTITY_TAG_KEY, &identity_tag_value(name))
                    .len(),
                1
            );
        }
        let web = ims
            .created()
            .into_iter()
            .find(|i| i.name.as_deref() == Some("web"))
            .unwrap();
        assert!(
            web.tags.contains(&"team=infra".to_string()),
            "{:?}",
            web.tags
        );
        assert!(web.tags.contains(&tag("web")));
        let (entry, how) = &resolved.entries[0];
        assert_eq!(*how, Resolution::Created);
        assert_eq!(entry.image_id.to_string(), web.id);
        assert_eq!(ims.counters().create_calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rerun_finds_the_images_and_creates_nothing() {
        let ims = fake();
        let queued = ims.add_created("web", &[&tag("web")], ImageStatus::Queued);
        let active = ims.add_created("db", &[&tag("db")], ImageStatus::Active);
        let resolved = run(&ims, vec![entry("web", 1), entry("db", 2)], &settings()).await;
        assert_eq!(ims.counters().create_calls, 0);
        assert_eq!(resolved.found(), 2);
        let ids: Vec<String> = resolved
            .entries
            .iter()
            .map(|(e, _)| e.image_id.to_string())
            .collect();
        assert_eq!(ids, [queued, active]);
        assert_eq!(
            resolved.entries[1].1,
            Resolution::Found(ImageStatus::Active)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_is_looked_up_not_created_again() {
        for fault in [
            CreateFault::CreatedThenDropped,
            CreateFault::CreatedThenError(api_error(500, "IMG.0061")),
            CreateFault::CreatedThenError(api_error(504, "APIG.0201")),
        ] {
            let ims = fake();
            ims.create_fault(fault.clone());
            let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
            assert_eq!(ims.images_named("web").len(), 1, "{fault:?}");
            assert_eq!(ims.counters().create_calls, 1, "{fault:?}");
            assert_eq!(resolved.entries.len(), 1);
            assert_eq!(resolved.entries[0].1, Resolution::Created);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_landing_late_is_waited_for() {
        let ims = fake();
        ims.create_fault(CreateFault::CreatedLater(Duration::from_secs(20)));
        let start = tokio::time::Instant::now();
        let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
        assert_eq!(ims.images_named("web").len(), 1);
        assert_eq!(ims.counters().create_calls, 1, "never sent twice");
        assert_eq!(resolved.entries.len(), 1);
        assert!(start.elapsed() >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_that_never_landed_is_sent_again_after_the_window() {
        let ims = fake();
        ims.create_fault(CreateFault::DroppedNotCreated);
        let start = tokio::time::Instant::now();
        let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
        assert_eq!(ims.images_named("web").len(), 1);
        assert_eq!(ims.counters().create_calls, 2);
        assert!(
            start.elapsed() >= WINDOW,
            "waited out the window before re-sending"
        );
        assert_eq!(resolved.created(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_create_is_reported_and_not_retried() {
        let ims = fake();
        ims.create_fault(CreateFault::Error(api_error(400, "IMG.0002")));
        let resolved = run(&ims, vec![entry("web", 4)], &settings()).await;
        assert!(ims.images_named("web").is_empty());
        assert_eq!(ims.counters().create_calls, 1);
        let (line, record) = &resolved.settled[0];
        assert_eq!(*line, 4);
        assert_eq!(record.status, ImageOutcome::Failed);
        assert_eq!(record.error_code.as_deref(), Some("IMG.0002"));
        assert_eq!(record.image_id, None);
        assert_eq!(record.name.as_deref(), Some("web"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_quota_is_checked_before_anything_is_created() {
        let ims = fake().with_image_quota(2);
        ims.add_created("other", &["x=y"], ImageStatus::Active);
        let err = resolve(
            &ims,
            vec![entry("a", 1), entry("b", 2)],
            &settings(),
            None,
            &HashMap::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                CreateError::Quota {
                    to_create: 2,
                    used: 1,
                    quota: 2,
                    left: 1
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("2 image(s) to create") && text.contains("1 of 2"),
            "{text}"
        );
        assert_eq!(ims.counters().create_calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_os_version_stops_with_a_suggestion() {
        let ims = fake();
        let mut typo = entry("web", 5);
        typo.os_version = Some("CentOS 7.9 64 bit".into());
        typo.os_version_at = Some(crate::manifest::Position {
            line: 6,
            column: 17,
        });
        let err = resolve(
            &ims,
            vec![entry("ok", 1), typo],
            &settings(),
            None,
            &HashMap::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("m.yaml:6:17"), "{text}");
        let CreateError::UnknownOsVersion { problems } = err else {
            panic!("{text}");
        };
        assert_eq!(
            problems,
            [
                "m.yaml:6:17: error: os_version: `CentOS 7.9 64 bit` (entry `web`) is not an OS version IMS knows in this region; did you mean `CentOS 7.9 64bit`?"
            ]
        );
        assert_eq!(ims.counters().create_calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_duplicates_are_deleted_and_every_worker_keeps_the_oldest() {
        let ims = fake();
        let oldest = ims.add_created("web", &[&tag("web")], ImageStatus::Queued);
        tokio::time::advance(Duration::from_secs(2)).await;
        let younger = ims.add_created("web", &[&tag("web")], ImageStatus::Queued);
        let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
        assert_eq!(resolved.entries[0].0.image_id.to_string(), oldest);
        assert_eq!(ims.counters().deleted, vec![younger.clone()]);
        assert_eq!(ims.images_named("web").len(), 1);
        assert_eq!(ims.counters().create_calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn two_images_past_queued_are_a_conflict_left_alone() {
        let ims = fake();
        ims.add_created("web", &[&tag("web")], ImageStatus::Active);
        ims.add_created("web", &[&tag("web")], ImageStatus::Saving);
        let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
        assert!(resolved.entries.is_empty());
        let record = &resolved.settled[0].1;
        assert_eq!(record.status, ImageOutcome::Failed);
        assert_eq!(
            record.error_code.as_deref(),
            Some("IMSREG.DUPLICATE_IMAGES")
        );
        assert!(ims.counters().deleted.is_empty());
        assert_eq!(ims.images_named("web").len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_killed_image_is_replaced_only_with_retry_failed() {
        let ims = fake();
        let killed = ims.add_created("web", &[&tag("web")], ImageStatus::Killed);
        let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
        let record = &resolved.settled[0].1;
        assert_eq!(record.status, ImageOutcome::Failed);
        assert_eq!(record.image_id.as_deref(), Some(killed.as_str()));
        assert!(record.created);
        assert!(
            record
                .error_message
                .as_deref()
                .unwrap()
                .contains("--retry-failed")
        );
        assert_eq!(ims.counters().create_calls, 0);

        let retry = CreateSettings {
            retry_failed: true,
            ..settings()
        };
        let resolved = run(&ims, vec![entry("web", 1)], &retry).await;
        assert_eq!(ims.counters().deleted, vec![killed.clone()]);
        let images = ims.images_named("web");
        assert_eq!(images.len(), 1);
        assert_ne!(images[0].0, killed);
        assert_eq!(resolved.created(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn large_manifests_are_looked_up_by_list_pages() {
        let ims = fake();
        let entries: Vec<_> = (0..LOOKUP_PER_ENTRY_MAX + 5)
            .map(|i| entry(&format!("img-{i}"), i + 1))
            .collect();
        let existing = ims.add_created("img-3", &[&tag("img-3")], ImageStatus::Active);
        let resolved = run(&ims, entries, &settings()).await;
        let counters = ims.counters();
        assert_eq!(
            counters.list_tagged, 2,
            "one listing before the creates, one after"
        );
        assert_eq!(counters.find_by_tag, 0);
        assert_eq!(counters.create_calls as usize, LOOKUP_PER_ENTRY_MAX + 4);
        assert_eq!(resolved.found(), 1);
        assert_eq!(resolved.entries[3].0.image_id.to_string(), existing);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_runs_unanswered_intent_is_waited_out_before_the_lookup() {
        let ims = fake();
        // The earlier run died with its create on the wire: it lands 30 s later.
        ims.create_fault(CreateFault::CreatedLater(Duration::from_secs(30)));
        let _ = ims
            .create_image_metadata(&create_request(
                &entry("web", 1),
                &identity_tag_value("web"),
            ))
            .await;
        let prior = HashMap::from([(
            identity_tag_value("web"),
            CreateState {
                name: "web".into(),
                intent_at: Some(Utc::now()),
                ..CreateState::default()
            },
        )]);
        let resolved = resolve(
            &ims,
            vec![entry("web", 1)],
            &settings(),
            None,
            &prior,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(ims.images_named("web").len(), 1, "nothing created twice");
        assert_eq!(ims.counters().create_calls, 1, "only the earlier run's");
        assert_eq!(resolved.found(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_journal_records_intent_then_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let (journal, _) = Journal::open(&path).unwrap();
        let sink = Arc::new(JournalSink::new(journal));
        let ims = fake();
        ims.create_fault(CreateFault::Error(api_error(400, "IMG.0002")));
        let resolved = resolve(
            &ims,
            vec![entry("bad", 1), entry("web", 2)],
            &CreateSettings {
                concurrency: 1,
                ..settings()
            },
            Some(sink),
            &HashMap::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let replayed = crate::state::replay(&path).unwrap();
        let web = &replayed.creates[&identity_tag_value("web")];
        assert_eq!(
            web.image_id.as_deref(),
            Some(resolved.entries[0].0.image_id.to_string().as_str())
        );
        assert_eq!(web.intent_at, None);
        let bad = &replayed.creates[&identity_tag_value("bad")];
        assert_eq!(
            (bad.intent_at, bad.image_id.as_deref()),
            (None, None),
            "refused: nothing on its way"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let intent = text
            .find(r#""name":"web","event":"create_intent""#)
            .unwrap();
        let created = text.find(r#""name":"web","event":"created""#).unwrap();
        assert!(intent < created, "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_leaves_the_entries_unsettled_and_creates_nothing() {
        let ims = fake();
        for _ in 0..10 {
            ims.fail_next(FakeCall::FindByTag, api_error(500, "IMG.0061"));
        }
        let resolved = run(&ims, vec![entry("web", 1)], &settings()).await;
        assert_eq!(ims.counters().create_calls, 0);
        assert_eq!(resolved.settled[0].1.status, ImageOutcome::Unreachable);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_changes_nothing() {
        let ims = fake();
        let found = ims.add_created("web", &[&tag("web")], ImageStatus::Queued);
        let resolved = run(
            &ims,
            vec![entry("web", 1), entry("db", 2)],
            &CreateSettings {
                dry_run: true,
                ..settings()
            },
        )
        .await;
        assert_eq!(ims.counters().create_calls, 0);
        assert_eq!(resolved.to_create.len(), 1);
        assert_eq!(resolved.to_create[0].name, "db");
        assert_eq!(resolved.entries[0].0.image_id.to_string(), found);
    }

    #[test]
    fn the_create_body_carries_the_metadata_and_the_identity_tag() {
        let body = create_request(&entry("web", 1), "k");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["name"], "web");
        assert_eq!(json["__os_version"], "CentOS 7.9 64bit");
        assert_eq!(json["disk_format"], "qcow2");
        assert_eq!(json["min_disk"], 40);
        assert_eq!(
            json["tags"],
            serde_json::json!(["team=infra", "imsreg-key=k"])
        );
        assert!(json.get("min_ram").is_none());
    }
}
