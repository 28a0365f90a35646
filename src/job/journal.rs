//! The state journal of a job (on by default, next to the manifest): what earlier runs of the
//! same manifest settled is not redone, jobs they started are followed instead of re-submitted,
//! and every job ID this run gets is on disk before the image counts as submitted. A run lock
//! keeps two runs off the same journal. `--dry-run` only reads the journal; `--simulate` and
//! `--no-state` run without one (a simulated cloud forgets everything when the process ends,
//! so its journal would lie to the next run).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::ImageEntry;
use crate::report::{ImageOutcome, ImageRecord};
use crate::run::{EventSink, PlannedImage};
use crate::shard::Shard;
use crate::state::{self, CreateState, ImageState, Journal, Replayed, RunLock, StateError};

use super::journal_sink::JournalSink;
use super::resume::{self, Slot};

/// Which journal the user asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum JournalChoice {
    /// `<manifest stem>.imsreg-state.jsonl` next to the manifest.
    #[default]
    NextToManifest,
    /// `--state PATH`.
    At(PathBuf),
    /// `--no-state`.
    Off,
}

/// Where the journal lives for this job, if anywhere.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Off,
    /// Read it, change nothing (dry run).
    ReadOnly(PathBuf),
    /// Lock, replay, compact, append.
    ReadWrite(PathBuf),
}

impl JournalChoice {
    /// Where the journal is: a shard of several has its own next to the manifest
    /// (`<stem>.shard-K-of-N.imsreg-state.jsonl`); shard 1/1 is the whole manifest and uses the
    /// manifest's journal; `--state PATH` is used as given.
    pub fn mode(
        &self,
        manifest: &Path,
        shard: Option<Shard>,
        simulate: bool,
        dry_run: bool,
    ) -> Mode {
        let path = match self {
            _ if simulate => return Mode::Off,
            JournalChoice::Off => return Mode::Off,
            JournalChoice::NextToManifest => match shard.filter(|shard| !shard.is_whole()) {
                Some(shard) => state::shard_path(manifest, shard.index(), shard.total()),
                None => state::default_path(manifest),
            },
            JournalChoice::At(path) => path.clone(),
        };
        if dry_run {
            Mode::ReadOnly(path)
        } else {
            Mode::ReadWrite(path)
        }
    }
}

/// The manifest's valid entries after the journal: what the engine gets, what is settled.
pub struct Prepared {
    /// One per valid entry, in manifest order: the journal's record of a settled entry, `None`
    /// for an entry the engine runs.
    pub settled: Vec<Option<Box<ImageRecord>>>,
    /// The entries the engine runs, in manifest order (moved out for the run: one copy only).
    pub images: Vec<PlannedImage>,
    /// The journal writer and the lock that guards it, while the run lasts (shared by the
    /// regions of the manifest: one journal for the whole run).
    pub journal: Option<(Arc<JournalSink>, Arc<RunLock>)>,
    /// What the journal knows of the entries imsreg creates, by identity tag value.
    pub creates: HashMap<String, CreateState>,
    /// The journal's records of the images those entries were created as, by image ID: the
    /// create stage's entries are resumed from them once their images are known.
    created_images: HashMap<String, ImageState>,
}

impl Prepared {
    /// The images for the engine (moved out: one copy only).
    pub fn take_images(&mut self) -> Vec<PlannedImage> {
        std::mem::take(&mut self.images)
    }

    /// The journal writer as an engine event sink, if a journal is kept.
    pub fn sink(&self) -> Option<Arc<dyn EventSink>> {
        self.journal
            .as_ref()
            .map(|(sink, _lock)| sink.clone() as Arc<dyn EventSink>)
    }

    /// The first journal write failure, if any.
    pub fn error(&self) -> Option<String> {
        self.journal.as_ref().and_then(|(sink, _)| sink.error())
    }

    /// Entries an earlier run settled (per the journal; preflight failures not counted).
    pub fn settled(&self) -> usize {
        self.settled
            .iter()
            .flatten()
            .filter(|record| record.status != ImageOutcome::PreflightFailed)
            .count()
    }

    /// The records of entries the preflight settled, in manifest order.
    pub fn preflight_failed(&self) -> impl Iterator<Item = &ImageRecord> {
        self.settled
            .iter()
            .flatten()
            .map(|record| record.as_ref())
            .filter(|record| record.status == ImageOutcome::PreflightFailed)
    }

    /// Settles the planned images `settle` answers a record for, in their manifest place;
    /// the others stay planned, in order (and `settle` may update them, e.g. their size).
    pub fn settle_planned(
        &mut self,
        mut settle: impl FnMut(&mut PlannedImage) -> Option<ImageRecord>,
    ) {
        let mut planned = std::mem::take(&mut self.images).into_iter();
        let mut kept = Vec::with_capacity(planned.len());
        for slot in self.settled.iter_mut().filter(|slot| slot.is_none()) {
            let Some(mut image) = planned.next() else {
                break;
            };
            match settle(&mut image) {
                Some(record) => *slot = Some(Box::new(record)),
                None => kept.push(image),
            }
        }
        kept.extend(planned);
        self.images = kept;
    }

    /// Adds the entries the create stage backed with an image (found or created) after the
    /// others, resumed from what the journal knows of their images.
    pub fn add_created(&mut self, entries: Vec<ImageEntry>, retry_failed: bool) {
        let replayed = Replayed {
            images: std::mem::take(&mut self.created_images),
            ..Replayed::default()
        };
        let resumed = resume::resume(entries, &replayed, retry_failed);
        for warning in &resumed.warnings {
            tracing::warn!("{warning}");
        }
        for slot in resumed.slots {
            match slot {
                Slot::Settled(record) => self.settled.push(Some(record)),
                Slot::Run(planned) => {
                    self.settled.push(None);
                    self.images.push(planned);
                }
            }
        }
    }

    /// Adds an entry the create stage settled itself (after every other).
    pub fn add_settled(&mut self, record: ImageRecord) {
        self.settled.push(Some(Box::new(record)));
    }

    /// Records for every valid entry in manifest order: settled ones from the journal, the
    /// others from the engine (one per planned image, in plan order).
    pub fn records(&mut self, engine_records: Vec<ImageRecord>) -> Vec<ImageRecord> {
        let settled = std::mem::take(&mut self.settled);
        if settled.iter().all(Option::is_none) {
            // Nothing settled: the engine's records are the list (no second copy).
            return engine_records;
        }
        let mut engine = engine_records.into_iter();
        settled
            .into_iter()
            .map(|slot| match slot {
                Some(record) => *record,
                None => engine.next().unwrap_or_else(missing),
            })
            .collect()
    }
}

/// Stand-in for a record the engine did not return (it always returns one per image).
fn missing() -> ImageRecord {
    ImageRecord {
        image_id: None,
        image_url: None,
        name: None,
        format: None,
        status: ImageOutcome::Cancelled,
        job_id: None,
        error_code: None,
        error_message: Some("internal error: the engine returned no record".into()),
        attempts: 0,
        submitted_at: None,
        finished_at: None,
        duration_s: None,
        size_bytes: None,
        created: false,
        line: None,
        region: None,
        project_id: None,
    }
}

/// The journal of a run, opened once (locked, replayed) for every region of the manifest.
pub struct Opened {
    pub replayed: Replayed,
    journal: Option<(Arc<JournalSink>, Arc<RunLock>)>,
}

/// Opens the journal (if any): locks and replays it.
pub fn open(mode: &Mode) -> Result<Opened, StateError> {
    let (replayed, journal) = match mode {
        Mode::Off => (Replayed::default(), None),
        Mode::ReadOnly(path) => (state::replay(path)?, None),
        Mode::ReadWrite(path) => {
            let lock = RunLock::acquire(path)?;
            let (journal, replayed) = Journal::open(path)?;
            (replayed, Some((journal, lock)))
        }
    };
    if let Mode::ReadOnly(path) | Mode::ReadWrite(path) = mode {
        report_replay(path, &replayed);
    }
    let journal =
        journal.map(|(journal, lock)| (Arc::new(JournalSink::new(journal)), Arc::new(lock)));
    Ok(Opened { replayed, journal })
}

/// Applies an opened journal to some of the manifest's valid entries (one region's).
pub fn apply(opened: &Opened, entries: Vec<ImageEntry>, retry_failed: bool) -> Prepared {
    let replayed = &opened.replayed;
    let creates = replayed.creates.clone();
    let created_images = creates
        .values()
        .filter_map(|state| state.image_id.as_ref())
        .filter_map(|id| Some((id.clone(), replayed.images.get(id)?.clone())))
        .collect();
    let resumed = resume::resume(entries, replayed, retry_failed);
    for warning in &resumed.warnings {
        tracing::warn!("{warning}");
    }
    let runs = resumed
        .slots
        .iter()
        .filter(|slot| matches!(slot, Slot::Run(_)))
        .count();
    let mut settled = Vec::with_capacity(resumed.slots.len());
    let mut images = Vec::with_capacity(runs);
    for slot in resumed.slots {
        match slot {
            Slot::Settled(record) => settled.push(Some(record)),
            Slot::Run(planned) => {
                settled.push(None);
                images.push(planned);
            }
        }
    }
    Prepared {
        settled,
        images,
        journal: opened.journal.clone(),
        creates,
        created_images,
    }
}

fn report_replay(path: &Path, replayed: &Replayed) {
    if replayed.torn_tail {
        tracing::warn!(state = %path.display(), "the last line of the state journal was cut short (a crash?); ignored");
    }
    if !replayed.unreadable_lines.is_empty() {
        tracing::warn!(state = %path.display(), lines = ?replayed.unreadable_lines, "unreadable state journal lines skipped");
    }
    if !replayed.images.is_empty() || !replayed.creates.is_empty() {
        tracing::info!(state = %path.display(), images = replayed.images.len(), "resuming from the state journal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_planned_images_keeps_manifest_places_and_order() {
        let planned = |id: &str| PlannedImage {
            entry: ImageEntry {
                image_id: crate::ids::ImageId::named(id),
                image_url: crate::manifest::ImageUrl {
                    bucket: "bkt".into(),
                    object: format!("{id}.qcow2"),
                },
                name: None,
                format: crate::manifest::ImageFormat::Qcow2,
                line: 1,
            },
            known_job_id: None,
            size_bytes: None,
        };
        let journaled = ImageRecord::for_entry(&planned("a").entry, ImageOutcome::Registered);
        let mut prepared = Prepared {
            settled: vec![Some(Box::new(journaled)), None, None, None],
            images: vec![planned("b"), planned("c"), planned("d")],
            journal: None,
            creates: HashMap::new(),
            created_images: HashMap::new(),
        };
        prepared.settle_planned(|image| {
            image.size_bytes = Some(7);
            (image.entry.image_id == crate::ids::ImageId::named("c"))
                .then(|| ImageRecord::for_entry(&image.entry, ImageOutcome::PreflightFailed))
        });
        let left: Vec<_> = prepared.images.iter().map(|i| i.entry.image_id).collect();
        assert_eq!(left, ["b", "d"].map(crate::ids::ImageId::named));
        assert!(prepared.images.iter().all(|i| i.size_bytes == Some(7)));
        assert_eq!(
            prepared.settled(),
            1,
            "preflight failures are not journal-settled"
        );
        assert_eq!(prepared.preflight_failed().count(), 1);
        let engine = vec![
            ImageRecord::for_entry(&planned("b").entry, ImageOutcome::Registered),
            ImageRecord::for_entry(&planned("d").entry, ImageOutcome::Registered),
        ];
        let records = prepared.records(engine);
        let name = |n: &str| crate::ids::ImageId::named(n).to_string();
        let order: Vec<_> = records
            .iter()
            .map(|r| (r.image_id.clone().unwrap(), r.status))
            .collect();
        assert_eq!(
            order,
            [
                (name("a"), ImageOutcome::Registered),
                (name("b"), ImageOutcome::Registered),
                (name("c"), ImageOutcome::PreflightFailed),
                (name("d"), ImageOutcome::Registered),
            ]
        );
    }

    #[test]
    fn simulate_and_no_state_turn_the_journal_off() {
        let manifest = Path::new("waves/w1.yaml");
        let default = PathBuf::from("waves/w1.imsreg-state.jsonl");
        let next_to = JournalChoice::NextToManifest;
        assert_eq!(
            next_to.mode(manifest, None, false, false),
            Mode::ReadWrite(default.clone())
        );
        assert_eq!(
            next_to.mode(manifest, None, false, true),
            Mode::ReadOnly(default)
        );
        assert_eq!(
            JournalChoice::At("s.jsonl".into()).mode(manifest, None, false, false),
            Mode::ReadWrite(PathBuf::from("s.jsonl"))
        );
        assert_eq!(
            JournalChoice::Off.mode(manifest, None, false, false),
            Mode::Off
        );
        assert_eq!(next_to.mode(manifest, None, true, false), Mode::Off);
    }

    #[test]
    fn a_shard_has_its_own_journal_unless_state_is_given() {
        let manifest = Path::new("waves/w1.yaml");
        let next_to = JournalChoice::NextToManifest;
        let shard = |text: &str| Some(text.parse::<Shard>().unwrap());
        assert_eq!(
            next_to.mode(manifest, shard("2/3"), false, false),
            Mode::ReadWrite(PathBuf::from("waves/w1.shard-2-of-3.imsreg-state.jsonl"))
        );
        assert_eq!(
            next_to.mode(manifest, shard("2/3"), false, true),
            Mode::ReadOnly(PathBuf::from("waves/w1.shard-2-of-3.imsreg-state.jsonl"))
        );
        assert_eq!(
            next_to.mode(manifest, shard("1/1"), false, false),
            Mode::ReadWrite(PathBuf::from("waves/w1.imsreg-state.jsonl")),
            "1/1 is the whole manifest"
        );
        assert_eq!(
            JournalChoice::At("s.jsonl".into()).mode(manifest, shard("2/3"), false, false),
            Mode::ReadWrite(PathBuf::from("s.jsonl")),
            "--state is used as given"
        );
    }
}
