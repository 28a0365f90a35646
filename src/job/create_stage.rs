//! The create stage inside a job: runs [`super::create::resolve`] on the entries without an
//! `image_id` (after the preflight, before the engine), then hands the entries now backed by an
//! image to the engine like any other (resumed from the journal), and keeps the records of
//! those it settled itself. The set of images imsreg created marks their report records.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use crate::ids::ImageId;
use crate::manifest::CreateEntry;
use crate::report::ImageRecord;

use super::create::{self, CreateSettings, Resolution};
use super::options::{JobObserver, JobOptions};
use super::prepare::{Job, JobError};

/// What the stage leaves for the rest of the job.
#[derive(Debug, Default)]
pub struct CreateStage {
    /// The images that back entries imsreg creates (their records say `created: true`).
    pub images: HashSet<ImageId>,
    /// Images created in this run.
    pub created_now: usize,
    /// Images found by their tag (created by an earlier run or another worker).
    pub found: usize,
    /// Dry run: the entries a run would create.
    pub to_create: Vec<CreateEntry>,
    /// (identity tag value, image) of every entry backed by an image, for [`tidy`].
    chosen: Vec<(String, ImageId)>,
    settings: Option<CreateSettings>,
}

impl CreateStage {
    /// Marks the records of images imsreg created.
    pub fn mark(&self, records: &mut [ImageRecord]) {
        if self.images.is_empty() {
            return;
        }
        for record in records {
            if let Some(id) = record
                .image_id
                .as_deref()
                .and_then(|id| ImageId::parse(id).ok())
                && self.images.contains(&id)
            {
                record.created = true;
            }
        }
    }
}

/// Runs the create stage of `job`. `Err` stops the job with nothing created.
pub async fn run(
    job: &mut Job,
    options: &JobOptions,
    observer: &dyn JobObserver,
    cancel: CancellationToken,
) -> Result<CreateStage, JobError> {
    let entries = std::mem::take(&mut job.creates);
    if entries.is_empty() {
        return Ok(CreateStage::default());
    }
    let settings = CreateSettings {
        retry_failed: options.retry_failed,
        dry_run: options.dry_run,
        landing_window: job.request_timeout,
        write_rate: job.config.submit_rate,
        query_rate: job.config.query_rate,
        concurrency: job.config.concurrency as usize,
        manifest: options.manifest.display().to_string(),
    };
    observer.creating_images(entries.len());
    let journal = job
        .journal
        .journal
        .as_ref()
        .map(|(sink, _lock)| sink.clone());
    let resolved = create::resolve(
        &job.target.client,
        entries,
        &settings,
        journal,
        &job.journal.creates,
        cancel,
    )
    .await?;
    let mut stage = CreateStage {
        created_now: resolved.created(),
        found: resolved.found(),
        settings: Some(settings.clone()),
        ..CreateStage::default()
    };
    tracing::debug!(
        created = stage.created_now,
        found = stage.found,
        settled = resolved.settled.len(),
        deleted_duplicates = resolved.deleted.len(),
        to_create = resolved.to_create.len(),
        "images to create: done"
    );
    observer.images_created(stage.created_now, stage.found, resolved.settled.len());
    let mut entries = Vec::with_capacity(resolved.entries.len());
    for (entry, how) in resolved.entries {
        stage.images.insert(entry.image_id);
        if let Some(name) = &entry.name {
            stage
                .chosen
                .push((crate::ids::identity_tag_value(name), entry.image_id));
        }
        if let Resolution::Found(status) = &how {
            tracing::debug!(name = ?entry.name, image_id = %entry.image_id, status = status.as_str(), "found the entry's image by its tag");
        }
        job.valid_lines.push(entry.line);
        entries.push(entry);
    }
    let first = job.journal.images.len();
    job.journal.add_created(entries, options.retry_failed);
    for image in &mut job.journal.images[first..] {
        image.size_bytes = job.create_sizes.get(&image.entry.line).copied();
    }
    for (line, record) in resolved.settled {
        job.valid_lines.push(line);
        job.journal.add_settled(record);
    }
    stage.to_create = resolved.to_create;
    Ok(stage)
}

/// After the engine: deletes metadata-only duplicates of the created entries' images that
/// appeared during the run (see [`create::tidy`]).
pub async fn tidy(job: &Job, stage: &CreateStage, cancel: CancellationToken) {
    let Some(settings) = &stage.settings else {
        return;
    };
    let deleted = create::tidy(&job.target.client, &stage.chosen, settings, cancel).await;
    if !deleted.is_empty() {
        tracing::warn!(
            deleted = deleted.len(),
            "deleted metadata-only duplicates of created images that appeared during the run (a late create of an earlier run or another worker)"
        );
    }
}
