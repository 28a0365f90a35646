//! The journal as an observer of the engine: every accepted job ID and every final outcome is
//! appended (and fsynced) as the engine reports it, before the engine moves on.

use std::sync::{Arc, Mutex};

use crate::report::ImageOutcome;
use crate::run::{EventSink, RunEvent};

use super::{EntryKind, Journal, StateError};

/// Writes engine events into the state journal.
pub struct JournalSink {
    journal: Mutex<Journal>,
    first_error: Mutex<Option<String>>,
}

impl JournalSink {
    pub fn new(journal: Journal) -> Self {
        JournalSink {
            journal: Mutex::new(journal),
            first_error: Mutex::new(None),
        }
    }

    /// The first write failure, if any (the report still carries every job ID).
    pub fn error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    fn append(&self, image_id: &str, kind: EntryKind) {
        let result = match self.journal.lock() {
            Ok(mut journal) => journal.append(image_id, kind),
            Err(_) => Err(StateError::Encode("journal lock poisoned".into())),
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
                // Cancelled images were never submitted: nothing to remember.
                if record.status == ImageOutcome::Cancelled {
                    return;
                }
                if let Some(image_id) = &record.image_id {
                    self.append(
                        image_id,
                        EntryKind::Finished {
                            status: record.status,
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
}

/// Forwards every event to several sinks, in order (journal first, then the display).
pub struct Tee(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Tee {
    fn event(&self, event: &RunEvent) {
        for sink in &self.0 {
            sink.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ImageRecord;

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
        let after_submit = super::super::replay(&path).unwrap();
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
        }));
        let replayed = super::super::replay(&path).unwrap();
        assert_eq!(
            replayed.images["img"].outcome,
            Some(ImageOutcome::Registered)
        );
        assert!(sink.error().is_none());
    }
}
