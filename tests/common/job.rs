//! The whole job run in-process ([`imsreg::job::run`]) against the test world's simulator: the
//! options of an `imsreg run --endpoint SIM`, credentials given as variables (never the
//! process environment), and an observer that keeps everything it hears for assertions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use imsreg::job::{Environment, JobObserver, JobOptions, JournalChoice};
use imsreg::manifest::{Manifest, Settings};
use imsreg::run::{EventSink, PlannedImage, RunConfig, RunEvent};
use imsreg::sim::SimHandle;
use tokio::sync::Notify;

use super::e2e::World;

/// The simulator's credentials as the variables `imsreg run` reads.
pub fn sim_environment(sim: &SimHandle) -> Environment {
    let creds = &sim.config().credentials;
    credentials_environment(&creds.ak, &creds.sk, &creds.project_id)
}

pub fn credentials_environment(ak: &str, sk: &str, project_id: &str) -> Environment {
    Environment::Vars(HashMap::from([
        ("HUAWEICLOUD_SDK_AK".to_string(), ak.to_string()),
        ("HUAWEICLOUD_SDK_SK".to_string(), sk.to_string()),
        (
            "HUAWEICLOUD_SDK_PROJECT_ID".to_string(),
            project_id.to_string(),
        ),
    ]))
}

/// `imsreg run MANIFEST --endpoint ENDPOINT --report DIR/REPORT` with the journal next to the
/// manifest.
pub fn options_for(
    endpoint: &str,
    environment: Environment,
    manifest: &Path,
    report: &Path,
) -> JobOptions {
    JobOptions {
        manifest: manifest.to_path_buf(),
        // These tests are about the IMS side of the job; the preflight has tests/preflight.rs.
        flags: Settings {
            endpoint: Some(endpoint.to_string()),
            preflight: Some(false),
            ..Settings::default()
        },
        reports: vec![report.to_path_buf()],
        journal: JournalChoice::NextToManifest,
        environment,
        ..JobOptions::default()
    }
}

/// Writes a manifest of `ids` (one made-up object each) for a job that no simulator answers.
pub fn write_manifest(path: &Path, ids: &[String], settings: &str) {
    let mut text = format!("version: 1\nsettings:\n{settings}\nimages:\n");
    for (index, id) in ids.iter().enumerate() {
        text.push_str(&format!(
            "  - image_id: {id}\n    image_url: bucket-e2e:exports/disk-{index}.qcow2\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

impl World {
    /// [`options_for`] the world's simulator with its credentials, the report in the folder.
    pub fn job_options(&self, manifest: &Path, report: &str) -> JobOptions {
        options_for(
            &self.sim.url(),
            sim_environment(&self.sim),
            manifest,
            &self.path(report),
        )
    }
}

/// What the manifest held when the job checked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub valid: usize,
    pub invalid: usize,
    pub errors: usize,
}

/// An observer that keeps every call and event, in order.
#[derive(Default)]
pub struct Recorder {
    pub checked: Mutex<Vec<Checked>>,
    /// The image IDs of each `engine_starting` call, and the config's concurrency.
    pub engine_starts: Mutex<Vec<(Vec<String>, u32)>>,
    pub events: Mutex<Vec<RunEvent>>,
    /// Notified on `engine_starting` (a permit is kept if nobody waits yet).
    pub engine_started: Notify,
}

impl Recorder {
    pub fn checked(&self) -> Vec<Checked> {
        self.checked.lock().unwrap().clone()
    }

    pub fn engine_starts(&self) -> Vec<(Vec<String>, u32)> {
        self.engine_starts.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<RunEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Image IDs of the `Submitting` events, in order.
    pub fn submitting(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                RunEvent::Submitting { image_id, .. } => Some(image_id.to_string()),
                _ => None,
            })
            .collect()
    }

    /// How many events `wanted` picks.
    pub fn count(&self, wanted: impl Fn(&RunEvent) -> bool) -> usize {
        self.events().iter().filter(|event| wanted(event)).count()
    }
}

impl EventSink for Recorder {
    fn event(&self, event: &RunEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
}

impl JobObserver for Recorder {
    fn manifest_checked(&self, manifest: &Manifest) {
        self.checked.lock().unwrap().push(Checked {
            valid: manifest.images.len(),
            invalid: manifest.invalid.len(),
            errors: manifest.error_count(),
        });
    }

    fn engine_starting(&self, images: &[PlannedImage], config: &RunConfig) {
        let ids = images
            .iter()
            .map(|image| image.entry.image_id.to_string())
            .collect();
        self.engine_starts
            .lock()
            .unwrap()
            .push((ids, config.concurrency));
        self.engine_started.notify_one();
    }
}
