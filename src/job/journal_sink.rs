//! The journal as an observer of the engine: every accepted job ID and every final outcome is
//! appended as the engine reports it. Job IDs are fsynced in groups (see [`super::commit`]):
//! the engine awaits [`EventSink::durable`] before it counts an image as submitted.

use std::sync::Mutex;

use crate::report::ImageOutcome;
use crate::run::{Durable, EventSink, RunEvent};
use crate::state::commit::GroupCommit;
use crate::state::{EntryKind, Journal, JournalStatus, StateError};

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

    fn append(&self, image_id: &str, kind: EntryKind) {
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
                    job_id: job_id.clone(),
                },
            ),
            RunEvent::Finished(record) => {
                let Some(status) = journaled(record.status) else {
                    return;
                };
                if let Some(image_id) = &record.image_id {
                    self.append(
                        image_id,
                        EntryKind::Finished {
                            status,
                            image_url: record.image_url.clone(),
                            job_id: record.job_id.clone(),
                            error_code: record.error_code.clone(),
                            error_message: record.error_message.clone(),
                        },
                    );
                }
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
    use crate::report::ImageRecord;
    use crate::run::Tee;
    use std::sync::Arc;

    #[test]
    fn journals_submissions_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let (journal, _) = Journal::open(&path).unwrap();
        let sink = JournalSink::new(journal);
        sink.event(&RunEvent::Submitted {
            image_id: "img".into(),
            job_id: "job-1".into(),
            image_url: "bkt:a.raw".into(),
        });
        let after_submit = crate::state::replay(&path).unwrap();
        assert_eq!(after_submit.images["img"].job_id.as_deref(), Some("job-1"));
        assert_eq!(
            after_submit.images["img"].submitted_url.as_deref(),
            Some("bkt:a.raw")
        );
        sink.event(&RunEvent::Finished(ImageRecord {
            image_id: Some("img".into()),
            image_url: Some("bkt:a.raw".into()),
            name: None,
            format: Some("raw".into()),
            status: ImageOutcome::Registered,
            job_id: Some("job-1".into()),
            error_code: None,
            error_message: None,
            attempts: 1,
            submitted_at: None,
            finished_at: None,
            duration_s: None,
            size_bytes: None,
        }));
        let replayed = crate::state::replay(&path).unwrap();
        assert_eq!(
            replayed.images["img"].outcome,
            Some(JournalStatus::Registered)
        );
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
                image_id: format!("img-{i}"),
                image_url: format!("bkt:img-{i}.qcow2"),
                job_id: format!("job-{i}"),
            });
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), sink.durable())
            .await
            .expect("the job IDs never became durable");
        let replayed = crate::state::replay(&path).unwrap();
        assert_eq!(replayed.images.len(), 50);
        assert_eq!(replayed.images["img-49"].job_id.as_deref(), Some("job-49"));
    }
}
