//! Re-run semantics: what a replayed journal means for the entries of the current manifest.
//!
//! Registered images are skipped, images with a known job are followed (never re-submitted),
//! failed images stay failed unless the user asks for a retry, new entries are submitted, and
//! entries no longer in the manifest are ignored. Pure: no I/O, unit-tested.

use crate::ids::JobId;
use crate::manifest::{ImageEntry, ImageUrl};
use crate::report::{ImageOutcome, ImageRecord};
use crate::run::PlannedImage;
use crate::state::{JournalStatus, Replayed};

/// What to do with one manifest entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Hand it to the engine.
    Run(PlannedImage),
    /// Settled from the journal, without any request.
    Settled(Box<ImageRecord>),
}

/// The manifest's valid entries split by what the journal knows.
#[derive(Debug, Default)]
pub struct Resumed {
    /// In manifest order, one slot per entry.
    pub slots: Vec<Slot>,
    /// Things the user should know (changed URLs), one sentence each.
    pub warnings: Vec<String>,
}

impl Resumed {
    pub fn to_engine(&self) -> Vec<PlannedImage> {
        runnable(&self.slots)
    }
}

/// The images to hand to the engine, in manifest order.
pub fn runnable(slots: &[Slot]) -> Vec<PlannedImage> {
    slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Run(planned) => Some(planned.clone()),
            Slot::Settled(_) => None,
        })
        .collect()
}

/// Applies the journal to the manifest's valid entries. The entries move into the slots (a
/// 100,000-image manifest is not worth a second copy).
pub fn resume(entries: Vec<ImageEntry>, journal: &Replayed, retry_failed: bool) -> Resumed {
    let mut resumed = Resumed {
        slots: Vec::with_capacity(entries.len()),
        warnings: Vec::new(),
    };
    for mut entry in entries {
        let Some(state) = journal.images.get(&entry.image_id.to_string()) else {
            resumed.slots.push(Slot::Run(PlannedImage {
                entry,
                known_job_id: None,
                size_bytes: None,
            }));
            continue;
        };
        let url = entry.image_url.to_string();
        let retrying = retry_failed && state.outcome == Some(JournalStatus::Failed);
        if let (Some(old), Some(job)) = (&state.submitted_url, &state.job_id)
            && *old != url
        {
            let what_now = if retrying {
                // A failed job registered nothing: the retry is the first registration.
                format!(
                    "the earlier job failed, so --retry-failed submits {url} if IMS shows the image queued again"
                )
            } else {
                "imsreg does not register an image twice: to register the new file, create a new image and give its ID".to_string()
            };
            resumed.warnings.push(format!(
                "image {} (line {}) was submitted as {old} by an earlier run (job {job}); the manifest now says {url}. {what_now}",
                entry.image_id, entry.line
            ));
            // Not submitted again: the report names the file IMS registered (or failed on).
            if !retrying && let Some((bucket, object)) = old.split_once(':') {
                entry.image_url = ImageUrl {
                    bucket: bucket.to_string(),
                    object: object.to_string(),
                };
            }
        }
        let settled = |status: ImageOutcome| {
            let mut record = ImageRecord::for_entry(&entry, status);
            record.job_id = state.job_id.clone();
            record.error_code = state.error_code.clone();
            record.error_message = state.error_message.clone();
            record.submitted_at = state.submitted_at;
            record.finished_at = state.updated_at;
            Slot::Settled(Box::new(record))
        };
        // IMS refused to register one file (no job was started); the manifest now names
        // another: that one has not failed, so the cloud check decides again.
        let refused_file_replaced =
            state.job_id.is_none() && state.submitted_url.as_deref().is_some_and(|old| old != url);
        let known_job_id = match state.outcome {
            Some(JournalStatus::Registered | JournalStatus::AlreadyRegistered) => {
                resumed.slots.push(settled(ImageOutcome::AlreadyRegistered));
                continue;
            }
            Some(JournalStatus::Failed) if !retry_failed && !refused_file_replaced => {
                resumed.slots.push(settled(ImageOutcome::Failed));
                continue;
            }
            // A retry goes through the cloud check: submitted only if the image is queued again.
            Some(JournalStatus::Failed) => None,
            // Submitted and not finished (or left pending): follow that job. A job ID of the
            // wrong shape (an older imsreg journaled whatever a 2xx carried) is no job ID: the
            // cloud-status check decides.
            None | Some(JournalStatus::Pending) => state
                .job_id
                .as_deref()
                .and_then(|job| JobId::parse(job).ok()),
            _ => None,
        };
        let slot = Slot::Run(PlannedImage {
            entry,
            known_job_id,
            size_bytes: None,
        });
        resumed.slots.push(slot);
    }
    resumed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ImageId;
    use crate::manifest::ImageFormat;
    use crate::state::ImageState;

    /// The journal's key of the test image `name`.
    fn key(name: &str) -> String {
        ImageId::named(name).to_string()
    }

    fn entry(name: &str, object: &str) -> ImageEntry {
        ImageEntry {
            image_id: ImageId::named(name),
            image_url: ImageUrl {
                bucket: "bucket".into(),
                object: object.into(),
            },
            name: None,
            format: ImageFormat::Qcow2,
            line: 3,
        }
    }

    fn known(job: Option<&str>, outcome: Option<JournalStatus>, url: &str) -> ImageState {
        ImageState {
            job_id: job.map(String::from),
            submitted_url: job.map(|_| url.to_string()),
            outcome,
            ..ImageState::default()
        }
    }

    #[test]
    fn a_refused_file_replaced_in_the_manifest_is_checked_again() {
        let mut journal = Replayed::default();
        let refused = |url: &str| ImageState {
            submitted_url: Some(url.to_string()),
            outcome: Some(JournalStatus::Failed),
            error_code: Some("IMG.0057".into()),
            ..ImageState::default()
        };
        journal
            .images
            .insert(key("fixed"), refused("bucket:typo.qcow2"));
        journal
            .images
            .insert(key("same"), refused("bucket:same.qcow2"));
        // A job that ran and failed stays failed, whatever the manifest says now.
        journal.images.insert(
            key("ran"),
            known(
                Some("job-1"),
                Some(JournalStatus::Failed),
                "bucket:old.qcow2",
            ),
        );
        let resumed = resume(
            vec![
                entry("fixed", "good.qcow2"),
                entry("same", "same.qcow2"),
                entry("ran", "new.qcow2"),
            ],
            &journal,
            false,
        );
        let planned = resumed.to_engine();
        assert_eq!(planned.len(), 1, "{planned:?}");
        assert_eq!(planned[0].entry.image_id, ImageId::named("fixed"));
        assert_eq!(planned[0].entry.image_url.object, "good.qcow2");
        assert_eq!(planned[0].known_job_id, None);
    }

    #[test]
    fn a_journaled_job_id_of_the_wrong_shape_is_not_followed() {
        let mut journal = Replayed::default();
        let huge = "a".repeat(1 << 20);
        journal
            .images
            .insert(key("big"), known(Some(&huge), None, "bucket:a.qcow2"));
        journal.images.insert(
            key("good"),
            known(
                Some("b912fb4a4c464b568ecfca1071b21b10"),
                Some(JournalStatus::Pending),
                "bucket:b.qcow2",
            ),
        );
        let resumed = resume(
            vec![entry("big", "a.qcow2"), entry("good", "b.qcow2")],
            &journal,
            false,
        );
        let planned = resumed.to_engine();
        assert_eq!(
            planned[0].known_job_id, None,
            "checked in the cloud instead"
        );
        assert_eq!(
            planned[1].known_job_id.as_deref(),
            Some("b912fb4a4c464b568ecfca1071b21b10")
        );
    }

    #[test]
    fn applies_rerun_semantics() {
        let entries = vec![
            entry("new", "a.qcow2"),
            entry("done", "b.qcow2"),
            entry("inflight", "c.qcow2"),
            entry("failed", "d.qcow2"),
            entry("cancelled", "e.qcow2"),
            entry("pending", "f.qcow2"),
        ];
        let mut journal = Replayed::default();
        let images = &mut journal.images;
        images.insert(
            key("done"),
            known(
                Some("j1"),
                Some(JournalStatus::Registered),
                "bucket:b.qcow2",
            ),
        );
        images.insert(key("inflight"), known(Some("j2"), None, "bucket:c.qcow2"));
        images.insert(
            key("failed"),
            known(Some("j3"), Some(JournalStatus::Failed), "bucket:d.qcow2"),
        );
        images.insert(
            key("cancelled"),
            known(None, Some(JournalStatus::Cancelled), ""),
        );
        images.insert(
            key("pending"),
            known(Some("j5"), Some(JournalStatus::Pending), "bucket:f.qcow2"),
        );
        images.insert(key("removed"), known(Some("j9"), None, "bucket:gone.qcow2"));

        let resumed = resume(entries.clone(), &journal, false);
        assert_eq!(resumed.slots.len(), 6, "removed entries are ignored");
        let engine = resumed.to_engine();
        let ids: Vec<(ImageId, Option<&str>)> = engine
            .iter()
            .map(|p| (p.entry.image_id, p.known_job_id.as_deref()))
            .collect();
        let named = ImageId::named;
        assert_eq!(
            ids,
            vec![
                (named("new"), None),
                (named("inflight"), Some("j2")),
                (named("cancelled"), None),
                (named("pending"), Some("j5"))
            ]
        );
        let settled = |slot: &Slot| match slot {
            Slot::Settled(record) => (**record).clone(),
            Slot::Run(p) => panic!("expected settled, got {p:?}"),
        };
        let done = settled(&resumed.slots[1]);
        assert_eq!(done.status, ImageOutcome::AlreadyRegistered);
        assert_eq!(done.job_id.as_deref(), Some("j1"));
        assert_eq!(done.attempts, 0);
        let failed = settled(&resumed.slots[3]);
        assert_eq!(failed.status, ImageOutcome::Failed);
        assert!(resumed.warnings.is_empty());

        let retried = resume(entries.clone(), &journal, true);
        assert!(
            matches!(&retried.slots[3], Slot::Run(p) if p.known_job_id.is_none()),
            "retry re-checks the cloud, no old job"
        );
    }

    #[test]
    fn a_changed_url_is_followed_with_a_warning() {
        let entries = vec![entry("x", "new-name.qcow2")];
        let mut journal = Replayed::default();
        journal
            .images
            .insert(key("x"), known(Some("j1"), None, "bucket:old-name.qcow2"));
        let resumed = resume(entries.clone(), &journal, false);
        assert!(
            matches!(&resumed.slots[0], Slot::Run(p) if p.known_job_id.as_deref() == Some("j1")
                && p.entry.image_url.to_string() == "bucket:old-name.qcow2"),
            "the report names the file the running job registers"
        );
        assert_eq!(resumed.warnings.len(), 1);
        let warning = &resumed.warnings[0];
        assert!(
            warning.contains("bucket:old-name.qcow2") && warning.contains("bucket:new-name.qcow2")
        );
        assert!(warning.contains("line 3"));
        assert!(warning.contains("does not register an image twice"));
    }

    #[test]
    fn a_changed_url_of_a_failed_image_is_what_a_retry_submits() {
        let entries = vec![entry("x", "fixed.qcow2")];
        let mut journal = Replayed::default();
        journal.images.insert(
            key("x"),
            known(
                Some("j1"),
                Some(JournalStatus::Failed),
                "bucket:broken.qcow2",
            ),
        );
        let kept = resume(entries.clone(), &journal, false);
        assert!(
            matches!(&kept.slots[0], Slot::Settled(r) if r.status == ImageOutcome::Failed
            && r.image_url.as_deref() == Some("bucket:broken.qcow2"))
        );
        assert!(kept.warnings[0].contains("does not register an image twice"));

        let retried = resume(entries.clone(), &journal, true);
        assert!(
            matches!(&retried.slots[0], Slot::Run(p) if p.known_job_id.is_none()
            && p.entry.image_url.to_string() == "bucket:fixed.qcow2")
        );
        let warning = &retried.warnings[0];
        assert!(
            warning.contains("--retry-failed submits bucket:fixed.qcow2"),
            "{warning}"
        );
        assert!(!warning.contains("twice"), "{warning}");
    }
}
