//! The journal as an observer of the engine: every accepted job ID and every final outcome is
//! appended as the engine reports it. Job IDs are fsynced in groups (see [`super::commit`]):
//! the engine awaits [`EventSink::durable`] before it counts an image as submitted.

use std::sync::Mutex;

use crate::ids::ImageId;
use crate::report::ImageOutcome;
use crate::run::{Durable, EventSink, RunEvent};
use crate::state::commit::GroupCommit;
use crate::state::{CreateKind, EntryKind, Journal, JournalStatus, StateError};

/// What the journal remembers of a report status: only the cloud's verdicts and running jobs.
/// Images that are not settled (never submitted, or whose status could not be learned) leave
/// nothing, so the next run looks at them afresh.
fn journaled(status: ImageOutcome) -> Option<JournalStatus> {
    match status {
        ImageOutcome::Registered => Some(JournalStatus::Registered),
        ImageOutcome::AlreadyRegistered => Some(JournalStatus::AlreadyRegistered),
        ImageOutcome::Failed => Some(JournalStatus::Failed),
        ImageOutcome::Pending => Some(JournalStatus::Pending),
        // A preflight failure is fixed in OBS, not in IMS: the next run checks it afresh.
        ImageOutcome::Invalid
        | ImageOutcome::Cancelled
        | ImageOutcome::Unreachable
        | ImageOutcome::PreflightFailed => None,
    }
}

/// Writes engine events into the state journal.
pub struct JournalSink {
    journal: Mutex<Journal>,
    /// Fsyncs the `submitted` lines; `None` if the file could not be shared with the syncer
    /// thread, and then each such line is fsynced as it is written.
    commit: Option<GroupCommit>,
    first_error: Mutex<Option<String>>,
}

impl JournalSink {
    pub fn new(journal: Journal) -> Self {
        JournalSink {
            commit: journal.sync_handle().ok().map(GroupCommit::start),
            journal: Mutex::new(journal),
            first_error: Mutex::new(None),
        }
    }

    /// The first write failure, if any (the report still carries every job ID).
    pub fn error(&self) -> Option<String> {
        let written = self.first_error.lock().ok().and_then(|e| e.clone());
        written.or_else(|| self.commit.as_ref().and_then(GroupCommit::failure))
    }

    /// Writes and fsyncs a create line (an intent before its create is sent, the created
    /// image's ID as soon as it is known). An error means the line may not be on disk: the
    /// caller sends no create then.
    pub fn record_create(&self, key: &str, name: &str, kind: CreateKind) -> Result<(), String> {
        let result = match self.journal.lock() {
            Ok(mut journal) => journal.append_create(key, name, kind),
            Err(_) => Err(StateError::Encode("journal lock poisoned".into())),
        };
        result.map_err(|e| {
            let text = e.to_string();
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| text.clone());
            }
            text
        })
    }

    fn append(&self, image_id: &ImageId, kind: EntryKind) {
        let image_id = &image_id.to_string();
        let needs_disk = matches!(kind, EntryKind::Submitted { .. });
        let result = match (self.journal.lock(), &self.commit) {
            (Ok(mut journal), Some(commit)) => journal.write(image_id, kind).map(|()| {
                if needs_disk {
                    commit.written();
                }
            }),
            (Ok(mut journal), None) => journal.append(image_id, kind),
            (Err(_), _) => Err(StateError::Encode("journal lock poisoned".into())),
        };
        if let Err(e) = result {
            tracing::error!(image_id, error = %e, "could not write the state journal");
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl EventSink for JournalSink {
    fn event(&self, event: &RunEvent) {
        match event {
            RunEvent::Submitted {
                image_id,
                image_url,
                job_id,
            } => self.append(
                image_id,
                EntryKind::Submitted {
                    image_url: image_url.clone(),
                    job_id: job_id.to_string(),
                },
            ),
            RunEvent::Finished { result, image_url } => {
                let Some(status) = journaled(result.outcome) else {
                    return;
                };
                self.append(
                    &result.image_id,
                    EntryKind::Finished {
                        status,
                        image_url: Some(image_url.clone()),
                        job_id: result.job_id.as_ref().map(ToString::to_string),
                        error_code: result.error_code().map(str::to_string),
                        error_message: result.error_message().map(str::to_string),
                    },
                );
            }
            _ => {}
        }
    }

    fn durable(&self) -> Durable<'_> {
        match &self.commit {
            Some(commit) => Box::pin(commit.durable(commit.last_written())),
            None => Box::pin(std::future::ready(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::run::{ImageResult, Tee};
    use std::sync::Arc;

    fn image(n: usize) -> ImageId {
        ImageId::parse(&format!("00000000-0000-0000-0000-{n:012}")).unwrap()
    }

    fn job(text: &str) -> JobId {
        JobId::parse(text).unwrap()
    }

    #[test]
    fn journals_submissions_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let (journal, _) = Journal::open(&path).unwrap();
        let sink = JournalSink::new(journal);
        let (first, second) = (image(1), image(2));
        let key = |id: ImageId| id.to_string();
        sink.event(&RunEvent::Submitted {
            image_id: first,
            job_id: job("job-1"),
            image_url: "bkt:a.raw".into(),
        });
        let after_submit = crate::state::replay(&path).unwrap();
        let state = &after_submit.images[&key(first)];
        assert_eq!(state.job_id.as_deref(), Some("job-1"));
        assert_eq!(state.submitted_url.as_deref(), Some("bkt:a.raw"));
        let mut registered = ImageResult::new(first, ImageOutcome::Registered);
        registered.job_id = Some(job("job-1"));
        sink.event(&RunEvent::Finished {
            result: registered,
            image_url: "bkt:a.raw".into(),
        });
        // Never submitted, refused by IMS: the Finished line carries the URL and the reason.
        let mut failed = ImageResult::new(second, ImageOutcome::Failed);
        failed.set_error(Some("IMG.0001".into()), "the image is `killed`".into());
        sink.event(&RunEvent::Finished {
            result: failed,
            image_url: "bkt:b.raw".into(),
        });
        // Not settled: nothing is journaled.
        sink.event(&RunEvent::Finished {
            result: ImageResult::new(image(3), ImageOutcome::Cancelled),
            image_url: "bkt:c.raw".into(),
        });
        let replayed = crate::state::replay(&path).unwrap();
        assert_eq!(
            replayed.images[&key(first)].outcome,
            Some(JournalStatus::Registered)
        );
        let refused = &replayed.images[&key(second)];
        assert_eq!(refused.outcome, Some(JournalStatus::Failed));
        assert_eq!(refused.submitted_url.as_deref(), Some("bkt:b.raw"));
        assert_eq!(refused.error_code.as_deref(), Some("IMG.0001"));
        assert_eq!(
            refused.error_message.as_deref(),
            Some("the image is `killed`")
        );
        assert_eq!(replayed.images.len(), 2);
        assert!(sink.error().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_resolves_once_the_job_ids_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let (journal, _) = Journal::open(&path).unwrap();
        let sink = Arc::new(Tee(vec![Arc::new(JournalSink::new(journal))]));
        for i in 0..50 {
            sink.event(&RunEvent::Submitted {
                image_id: image(i),
                image_url: format!("bkt:img-{i}.qcow2"),
                job_id: job(&format!("job-{i}")),
            });
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), sink.durable())
            .await
            .expect("the job IDs never became durable");
        let replayed = crate::state::replay(&path).unwrap();
        assert_eq!(replayed.images.len(), 50);
        assert_eq!(
            replayed.images[&image(49).to_string()].job_id.as_deref(),
            Some("job-49")
        );
    }
}
