//! The state journal: an append-only JSON-lines file that remembers, across runs and crashes,
//! every job IMS accepted and every final outcome.
//!
//! A job ID is appended and fsynced before the engine counts the image as submitted, so a crash
//! can lose at most a registration whose answer never arrived (which the cloud-status check
//! then resolves). On open the journal is replayed (a torn last line from a crash is ignored),
//! then compacted atomically to one line per image.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::input::{self, MAX_INPUT_BYTES};

use super::error::StateError;
use super::path::resolve;

/// Journal format version, written on every line. Lines of a version this build does not know
/// are skipped as unreadable (a newer release's journal is never misread).
pub const FORMAT_VERSION: u32 = 1;

/// An image's final status as the journal stores it. The journal's own type, so that renaming
/// a report status never changes what is on disk; the names are those of every release since
/// the journal's first version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalStatus {
    /// The registration succeeded (in the run that wrote the line).
    Registered,
    /// The image was active already.
    AlreadyRegistered,
    /// IMS's own verdict: refused, job failed, image killed or deleted.
    Failed,
    /// Written by releases that journaled invalid entries; replayed as unsettled.
    Invalid,
    /// The job was still running when the run ended; the next run follows it.
    Pending,
    /// Written by releases that journaled cancelled images; replayed as unsettled.
    Cancelled,
}

impl JournalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalStatus::Registered => "registered",
            JournalStatus::AlreadyRegistered => "already_registered",
            JournalStatus::Failed => "failed",
            JournalStatus::Invalid => "invalid",
            JournalStatus::Pending => "pending",
            JournalStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the image needs nothing more (a re-run skips it, unless it retries failures).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JournalStatus::Registered | JournalStatus::AlreadyRegistered | JournalStatus::Failed
        )
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Format version.
    pub v: u32,
    /// When the line was written.
    pub at: DateTime<Utc>,
    pub image_id: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EntryKind {
    /// IMS accepted a registration and answered this job.
    Submitted { image_url: String, job_id: String },
    /// The image reached a final state in a run.
    Finished {
        status: JournalStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_message: Option<String>,
    },
}

/// A line about an image imsreg creates itself (a manifest entry without `image_id`), keyed by
/// the entry's identity: the value of its `imsreg-key` tag. These lines let a re-run know that
/// a create may still be on its way (an intent without an answer) or which image an earlier
/// run created; the cloud lookup by tag stays the truth, the journal is a shortcut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateLine {
    /// Format version.
    pub v: u32,
    /// When the line was written.
    pub at: DateTime<Utc>,
    /// The identity tag's value.
    pub key: String,
    /// The entry's name (for people reading the journal and for `imsreg status`).
    pub name: String,
    #[serde(flatten)]
    pub kind: CreateKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CreateKind {
    /// A create call is about to be sent (written and fsynced before it is).
    CreateIntent,
    /// The create call answered this image, or a lookup found the image an earlier create made.
    Created { image_id: String },
    /// IMS refused the create for good: no create is on its way any more.
    CreateRefused,
}

/// What the journal knows about one entry imsreg creates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateState {
    pub name: String,
    /// The image the last create answered (or a lookup found).
    pub image_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// A create sent at this time has no answer on record: it may still land.
    pub intent_at: Option<DateTime<Utc>>,
}

/// One journal line of either kind (an image's registration, or a create).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum Line {
    Image(Entry),
    Create(CreateLine),
}

/// What the journal knows about one image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageState {
    /// The last job IMS accepted for the image, and the URL it was submitted with.
    pub job_id: Option<String>,
    pub submitted_url: Option<String>,
    pub submitted_at: Option<DateTime<Utc>>,
    /// The last final outcome recorded (pending is not final: the job is still followed).
    pub outcome: Option<JournalStatus>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The replayed journal: per-image state plus what replay had to skip.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    pub images: HashMap<String, ImageState>,
    /// The entries imsreg creates, by identity tag value.
    pub creates: HashMap<String, CreateState>,
    /// A last line cut short by a crash, ignored.
    pub torn_tail: bool,
    /// Lines before the last that could not be read (1-based line numbers), skipped.
    pub unreadable_lines: Vec<usize>,
    /// Time of the newest line.
    pub last_update: Option<DateTime<Utc>>,
    /// Lines read as journal lines.
    pub lines: usize,
}

impl Replayed {
    fn apply(&mut self, entry: Entry) {
        let state = self.images.entry(entry.image_id).or_default();
        state.updated_at = Some(entry.at);
        self.last_update = Some(self.last_update.map_or(entry.at, |t| t.max(entry.at)));
        match entry.kind {
            EntryKind::Submitted { image_url, job_id } => {
                state.job_id = Some(job_id);
                state.submitted_url = Some(image_url);
                state.submitted_at = Some(entry.at);
                // A new job supersedes an earlier outcome (e.g. --retry-failed).
                state.outcome = None;
                state.error_code = None;
                state.error_message = None;
            }
            EntryKind::Finished {
                status,
                image_url,
                job_id,
                error_code,
                error_message,
            } => {
                if job_id.is_some() {
                    state.job_id = job_id;
                }
                if image_url.is_some() && state.submitted_url.is_none() {
                    state.submitted_url = image_url;
                }
                state.outcome = Some(status);
                state.error_code = error_code;
                state.error_message = error_message;
            }
        }
    }

    fn apply_create(&mut self, line: CreateLine) {
        self.last_update = Some(self.last_update.map_or(line.at, |t| t.max(line.at)));
        let state = self.creates.entry(line.key).or_default();
        state.name = line.name;
        match line.kind {
            CreateKind::CreateIntent => state.intent_at = Some(line.at),
            CreateKind::Created { image_id } => {
                state.image_id = Some(image_id);
                state.created_at = Some(line.at);
                state.intent_at = None;
            }
            CreateKind::CreateRefused => state.intent_at = None,
        }
    }

    /// The create lines compaction keeps: per entry, the image created last, then an intent
    /// still without an answer.
    fn compacted_creates(&self) -> Vec<CreateLine> {
        let mut keys: Vec<&String> = self.creates.keys().collect();
        keys.sort();
        let mut lines = Vec::new();
        for key in keys {
            let state = &self.creates[key];
            let line = |at: DateTime<Utc>, kind: CreateKind| CreateLine {
                v: FORMAT_VERSION,
                at,
                key: key.clone(),
                name: state.name.clone(),
                kind,
            };
            if let Some(image_id) = &state.image_id {
                let at = state.created_at.unwrap_or_else(Utc::now);
                lines.push(line(
                    at,
                    CreateKind::Created {
                        image_id: image_id.clone(),
                    },
                ));
            }
            if let Some(at) = state.intent_at {
                lines.push(line(at, CreateKind::CreateIntent));
            }
        }
        lines
    }

    /// One line per image that carries everything replay would rebuild (compaction).
    fn compacted_entries(&self) -> Vec<Entry> {
        let mut ids: Vec<&String> = self.images.keys().collect();
        ids.sort();
        let mut entries = Vec::with_capacity(ids.len());
        for id in ids {
            let state = &self.images[id];
            let at = state.updated_at.unwrap_or_else(Utc::now);
            if let (Some(job_id), Some(url)) = (&state.job_id, &state.submitted_url) {
                entries.push(Entry {
                    v: FORMAT_VERSION,
                    at: state.submitted_at.unwrap_or(at),
                    image_id: id.clone(),
                    kind: EntryKind::Submitted {
                        image_url: url.clone(),
                        job_id: job_id.clone(),
                    },
                });
            }
            if let Some(status) = state.outcome {
                entries.push(Entry {
                    v: FORMAT_VERSION,
                    at,
                    image_id: id.clone(),
                    kind: EntryKind::Finished {
                        status,
                        image_url: state.submitted_url.clone(),
                        job_id: state.job_id.clone(),
                        error_code: state.error_code.clone(),
                        error_message: state.error_message.clone(),
                    },
                });
            }
        }
        entries
    }
}

/// Reads a journal without changing it (for `imsreg status`). A missing file is empty; one
/// that is not a regular file, or larger than [`MAX_INPUT_BYTES`], is refused.
pub fn replay(path: &Path) -> Result<Replayed, StateError> {
    let mut reader = match input::open("state journal", path, MAX_INPUT_BYTES) {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => return Ok(Replayed::default()),
        Err(e) => return Err(StateError::Input(e)),
    };
    let mut replayed = Replayed::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    let mut pending_bad: Option<usize> = None;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| StateError::Input(reader.error(source)))?;
        if read == 0 {
            break;
        }
        number += 1;
        // A bad line is only "torn" if it turns out to be the last one.
        if let Some(bad) = pending_bad.take() {
            replayed.unreadable_lines.push(bad);
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(text) {
            Ok(Line::Image(entry)) if entry.v == FORMAT_VERSION => {
                replayed.lines += 1;
                replayed.apply(entry);
            }
            Ok(Line::Create(line)) if line.v == FORMAT_VERSION => {
                replayed.lines += 1;
                replayed.apply_create(line);
            }
            Ok(_) | Err(_) => {
                if replayed.lines == 0 && !looks_like_a_journal_line(text) {
                    // Another kind of file (a manifest given as --state, say): refuse it
                    // before anything rewrites it.
                    return Err(StateError::NotAJournal {
                        path: path.to_path_buf(),
                    });
                }
                pending_bad = Some(number);
            }
        }
    }
    if pending_bad.is_some() {
        replayed.torn_tail = true;
    }
    if replayed.lines == 0 && !replayed.unreadable_lines.is_empty() {
        return Err(StateError::NotAJournal {
            path: path.to_path_buf(),
        });
    }
    Ok(replayed)
}

/// Whether a line that is not a readable journal line could be one cut short (a first line torn
/// by a crash): every journal line starts with its version.
fn looks_like_a_journal_line(text: &[u8]) -> bool {
    let start = br#"{"v":"#;
    let n = text.len().min(start.len());
    text[..n] == start[..n]
}

/// An open journal, ready for appends. Dropping it closes the file (every append is already
/// durable).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Lines written since the last fsync.
    unsynced: bool,
}

impl Journal {
    /// Replays the journal at `path`, rewrites it compacted (temp file, fsync, rename), and
    /// opens it for appending. The caller holds the run lock. A symlinked journal is
    /// compacted where it points (the link stays a link); a journal with several hard links is
    /// not compacted (a rename would part it from its other names).
    pub fn open(path: &Path) -> Result<(Journal, Replayed), StateError> {
        let real = resolve(path);
        let path = real.as_path();
        let replayed = replay(path)?;
        let hard_linked = std::fs::metadata(path)
            .map(|meta| std::os::unix::fs::MetadataExt::nlink(&meta) > 1)
            .unwrap_or(false);
        if !hard_linked {
            let mut bytes = Vec::new();
            for entry in replayed.compacted_entries() {
                serde_json::to_writer(&mut bytes, &entry)
                    .map_err(|e| StateError::Encode(e.to_string()))?;
                bytes.push(b'\n');
            }
            for line in replayed.compacted_creates() {
                serde_json::to_writer(&mut bytes, &line)
                    .map_err(|e| StateError::Encode(e.to_string()))?;
                bytes.push(b'\n');
            }
            crate::report::write_atomically(path, &bytes)
                .map_err(|e| StateError::Compact(e.to_string()))?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| StateError::io(path, source))?;
        if hard_linked && replayed.torn_tail {
            // Not compacted away: end the torn line so the next one starts clean.
            file.write_all(b"\n")
                .map_err(|source| StateError::io(path, source))?;
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                unsynced: false,
            },
            replayed,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. A `submitted` line is fsynced before this returns (with every line
    /// written before it): an accepted job ID survives even a power cut. A `finished` line
    /// reaches the kernel at once (it survives the process being killed) and the disk with the
    /// next fsync or when the journal is closed; a power cut may lose it, and the next run then
    /// learns the outcome from the cloud again. That halves the fsyncs of a run.
    /// (The run's journal sink writes with [`Journal::write`] and fsyncs job IDs in groups.)
    pub fn append(&mut self, image_id: &str, kind: EntryKind) -> Result<(), StateError> {
        let durable_now = matches!(kind, EntryKind::Submitted { .. });
        self.write(image_id, kind)?;
        if durable_now {
            self.file
                .sync_data()
                .map_err(|source| StateError::io(&self.path, source))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Appends one line to the kernel's cache (it survives the process being killed, not a
    /// power cut); it reaches the disk with the next fsync, on any handle, or on close.
    pub fn write(&mut self, image_id: &str, kind: EntryKind) -> Result<(), StateError> {
        let entry = Entry {
            v: FORMAT_VERSION,
            at: Utc::now(),
            image_id: image_id.to_string(),
            kind,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| StateError::Encode(e.to_string()))?;
        line.push(b'\n');
        // One write call per line keeps concurrent readers from seeing interleaved halves.
        self.file
            .write_all(&line)
            .map_err(|source| StateError::io(&self.path, source))?;
        self.unsynced = true;
        Ok(())
    }

    /// Appends a create line and fsyncs it (with every line before it) before returning: an
    /// intent must be on disk before its create is sent, and a created image's ID as soon as
    /// it is known.
    pub fn append_create(
        &mut self,
        key: &str,
        name: &str,
        kind: CreateKind,
    ) -> Result<(), StateError> {
        let line = CreateLine {
            v: FORMAT_VERSION,
            at: Utc::now(),
            key: key.to_string(),
            name: name.to_string(),
            kind,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| StateError::Encode(e.to_string()))?;
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .map_err(|source| StateError::io(&self.path, source))?;
        self.file
            .sync_data()
            .map_err(|source| StateError::io(&self.path, source))?;
        self.unsynced = false;
        Ok(())
    }

    /// A second handle on the open file, to fsync it from another thread while appends go on
    /// (an fsync covers every line written before it, through any handle).
    pub fn sync_handle(&self) -> Result<File, StateError> {
        self.file
            .try_clone()
            .map_err(|source| StateError::io(&self.path, source))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.unsynced {
            let _ = self.file.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(job: &str) -> EntryKind {
        EntryKind::Submitted {
            image_url: "bucket:a.qcow2".into(),
            job_id: job.into(),
        }
    }

    fn finished(status: JournalStatus) -> EntryKind {
        EntryKind::Finished {
            status,
            image_url: None,
            job_id: None,
            error_code: None,
            error_message: None,
        }
    }

    #[test]
    fn replays_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        let (mut journal, replayed) = Journal::open(&path).unwrap();
        assert!(replayed.images.is_empty());
        journal.append("img-1", submitted("job-1")).unwrap();
        journal.append("img-2", submitted("job-2")).unwrap();
        journal
            .append("img-1", finished(JournalStatus::Registered))
            .unwrap();
        drop(journal);

        let replayed = replay(&path).unwrap();
        let one = &replayed.images["img-1"];
        assert_eq!(one.job_id.as_deref(), Some("job-1"));
        assert_eq!(one.outcome, Some(JournalStatus::Registered));
        let two = &replayed.images["img-2"];
        assert_eq!(two.job_id.as_deref(), Some("job-2"));
        assert_eq!(two.outcome, None, "still in flight");
        assert!(!replayed.torn_tail);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append("img-1", submitted("job-1")).unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"v":1,"at":"2026-11-28T10:00:00Z","image_id":"img-2","ev"#)
            .unwrap();
        drop(file);

        let (mut journal, replayed) = Journal::open(&path).unwrap();
        assert!(replayed.torn_tail);
        assert!(replayed.unreadable_lines.is_empty());
        assert_eq!(replayed.images.len(), 1);
        // Compaction removed the torn tail, so appends start on a clean line.
        journal.append("img-3", submitted("job-3")).unwrap();
        drop(journal);
        let again = replay(&path).unwrap();
        assert!(!again.torn_tail);
        assert_eq!(again.images.len(), 2);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_skipped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"v":1,"at":"2026-11-28T10:00:00Z","image_id":"a","event":"submitted","image_url":"b:a.raw","job_id":"j1"}"#,
                "\nnot json\n",
                r#"{"v":1,"at":"2026-11-28T10:00:01Z","image_id":"a","event":"finished","status":"failed","error_code":"IMG.0057"}"#,
                "\n"
            ),
        )
        .unwrap();
        let replayed = replay(&path).unwrap();
        assert_eq!(replayed.unreadable_lines, vec![2]);
        assert!(!replayed.torn_tail);
        let a = &replayed.images["a"];
        assert_eq!(a.outcome, Some(JournalStatus::Failed));
        assert_eq!(a.error_code.as_deref(), Some("IMG.0057"));
        assert_eq!(a.job_id.as_deref(), Some("j1"));
    }

    #[test]
    fn compaction_keeps_one_line_per_fact_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        for round in 0..5 {
            journal
                .append("img-1", submitted(&format!("job-{round}")))
                .unwrap();
            journal
                .append("img-1", finished(JournalStatus::Failed))
                .unwrap();
        }
        journal.append("img-2", submitted("job-x")).unwrap();
        drop(journal);
        let before = replay(&path).unwrap();

        let (_journal, replayed) = Journal::open(&path).unwrap();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 3, "img-1 submitted + finished, img-2 submitted");
        assert_eq!(replayed.images, before.images);
        let after = replay(&path).unwrap();
        assert_eq!(after.images["img-1"].job_id.as_deref(), Some("job-4"));
        assert_eq!(after.images["img-1"].outcome, Some(JournalStatus::Failed));
        assert_eq!(after.images["img-2"].job_id.as_deref(), Some("job-x"));
    }

    #[test]
    fn create_lines_replay_and_survive_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal
            .append_create("k1", "web", CreateKind::CreateIntent)
            .unwrap();
        journal
            .append_create(
                "k1",
                "web",
                CreateKind::Created {
                    image_id: "img-1".into(),
                },
            )
            .unwrap();
        journal
            .append_create("k2", "db", CreateKind::CreateIntent)
            .unwrap();
        journal
            .append_create("k3", "bad", CreateKind::CreateIntent)
            .unwrap();
        journal
            .append_create("k3", "bad", CreateKind::CreateRefused)
            .unwrap();
        journal.append("img-1", submitted("job-1")).unwrap();
        drop(journal);

        let check = |replayed: &Replayed| {
            let web = &replayed.creates["k1"];
            assert_eq!(web.name, "web");
            assert_eq!(web.image_id.as_deref(), Some("img-1"));
            assert_eq!(web.intent_at, None, "answered");
            let db = &replayed.creates["k2"];
            assert!(db.intent_at.is_some(), "a create may still be on its way");
            assert_eq!(db.image_id, None);
            // Refused: nothing on its way (compaction then drops the entry).
            assert!(
                replayed
                    .creates
                    .get("k3")
                    .is_none_or(|s| s.intent_at.is_none())
            );
            assert_eq!(replayed.images["img-1"].job_id.as_deref(), Some("job-1"));
            assert!(replayed.unreadable_lines.is_empty());
        };
        let before = replay(&path).unwrap();
        check(&before);
        let (_journal, replayed) = Journal::open(&path).unwrap();
        check(&replayed);
        let after = replay(&path).unwrap();
        check(&after);
        assert_eq!(
            after.creates["k2"].intent_at,
            before.creates["k2"].intent_at
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains(r#""event":"create_intent""#), "{text}");
    }

    #[test]
    fn a_new_submission_clears_an_old_outcome() {
        let mut replayed = Replayed::default();
        let at = Utc::now();
        replayed.apply(Entry {
            v: 1,
            at,
            image_id: "a".into(),
            kind: finished(JournalStatus::Failed),
        });
        replayed.apply(Entry {
            v: 1,
            at,
            image_id: "a".into(),
            kind: submitted("job-2"),
        });
        assert_eq!(replayed.images["a"].outcome, None);
        assert_eq!(replayed.images["a"].job_id.as_deref(), Some("job-2"));
    }
}
