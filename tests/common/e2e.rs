//! The world of the end-to-end tests: a simulator with short jobs, a temporary folder, and the
//! real `imsreg` binary run as a child process against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use imsreg::ims::auth::{Credentials as ClientCredentials, Secret};
use imsreg::ims::client::{Client, ClientConfig};
use imsreg::sim::{DurationDist, SimConfig, SimHandle, SimStats, Simulator};
use serde_json::Value;
use tempfile::TempDir;

use super::read_report;

pub const BIN: &str = env!("CARGO_BIN_EXE_imsreg");

/// A simulator with short jobs, and a folder for manifests and reports.
pub struct World {
    pub sim: SimHandle,
    pub dir: TempDir,
}

pub fn quick_jobs() -> SimConfig {
    SimConfig {
        job_duration: DurationDist::Uniform {
            min: Duration::from_millis(200),
            max: Duration::from_millis(400),
        },
        ..SimConfig::default()
    }
}

impl World {
    pub fn start(config: SimConfig) -> World {
        let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        World {
            sim,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a manifest of `objects` (one image each, IDs made up from the index) with the
    /// given settings block, makes the IDs known to the simulator, and returns the IDs.
    pub fn manifest(&self, name: &str, objects: &[&str], settings: &str) -> (PathBuf, Vec<String>) {
        let ids: Vec<String> = (0..objects.len()).map(image_id).collect();
        let mut text = format!("version: 1\nsettings:\n{settings}\nimages:\n");
        for (id, object) in ids.iter().zip(objects) {
            text.push_str(&format!(
                "  - image_id: {id}\n    image_url: bucket-e2e:{object}\n"
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        self.sim.add_images(ids.clone());
        self.add_objects(&path);
        (path, ids)
    }

    /// Gives the simulator's OBS an object for every valid entry of a manifest, so that the
    /// preflight passes them (made up as under `--simulate`).
    pub fn add_objects(&self, manifest: &Path) {
        let manifest = imsreg::manifest::load(manifest).unwrap();
        self.sim.add_objects_for(&manifest.images);
        self.sim
            .add_objects_for(&imsreg::job::create::placeholder_entries(&manifest.creates));
    }

    /// Runs `imsreg run MANIFEST --endpoint SIM ARGS...` with the simulator's credentials.
    pub async fn run(&self, manifest: &Path, args: &[&str]) -> Output {
        let creds = self.sim.config().credentials.clone();
        self.run_with_env(
            manifest,
            args,
            &[
                ("HUAWEICLOUD_SDK_AK", creds.ak.as_str()),
                ("HUAWEICLOUD_SDK_SK", creds.sk.as_str()),
                ("HUAWEICLOUD_SDK_PROJECT_ID", creds.project_id.as_str()),
            ],
        )
        .await
    }

    pub async fn run_with_env(
        &self,
        manifest: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut command = self.command(manifest, args);
        command.envs(env.iter().copied());
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("imsreg run did not finish within 60 s")
            .unwrap();
        eprintln!(
            "--- imsreg run {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The child command with a clean environment: no credentials unless given, no
    /// credentials file (HOME is the temporary folder), no colours.
    pub fn command(&self, manifest: &Path, args: &[&str]) -> tokio::process::Command {
        let mut command = self.command_without_endpoint(manifest, &[]);
        command.arg("--endpoint").arg(self.sim.url()).args(args);
        command
    }

    pub fn command_without_endpoint(
        &self,
        manifest: &Path,
        args: &[&str],
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(BIN);
        command
            .env_clear()
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path())
            .arg("run")
            .arg(manifest)
            .args(args)
            .kill_on_drop(true);
        command
    }

    pub fn credentials_env(&self) -> Vec<(&'static str, String)> {
        let creds = self.sim.config().credentials.clone();
        vec![
            ("HUAWEICLOUD_SDK_AK", creds.ak),
            ("HUAWEICLOUD_SDK_SK", creds.sk),
            ("HUAWEICLOUD_SDK_PROJECT_ID", creds.project_id),
        ]
    }

    /// A JSON report, checked against `report.schema.json`.
    pub fn report(&self, name: &str) -> Value {
        read_report(&self.path(name))
    }

    pub fn stats(&self) -> SimStats {
        self.sim.stats()
    }

    pub fn client(&self) -> Client {
        let creds = self.sim.config().credentials.clone();
        let mut config = ClientConfig::new(
            self.sim.url().parse().unwrap(),
            ClientCredentials::AkSk {
                ak: creds.ak,
                sk: Secret::new(creds.sk),
                security_token: None,
            },
        );
        config.project_id = Some(creds.project_id);
        Client::new(config).unwrap()
    }
}

pub fn image_id(index: usize) -> String {
    format!("0f3c1a2e-2222-4a2b-9c3d-{index:012}")
}

pub fn objects(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("exports/disk-{i}.qcow2")).collect()
}

pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Settings that make runs quick: fast polls, generous rates.
pub const FAST: &str =
    "  poll_interval: 100ms\n  submit_rate: 50\n  query_rate: 200\n  concurrency: 8";

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited by a signal")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Status of every image in a JSON report, by image ID.
pub fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["image_id"].as_str().unwrap_or("").to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn assert_all(report: &Value, status: &str) {
    for (id, got) in statuses(report) {
        assert_eq!(got, status, "image {id}");
    }
}

pub fn assert_no_double_submission(stats: &SimStats) {
    assert!(
        stats.resubmitted().is_empty(),
        "submitted twice: {:?}",
        stats.resubmitted()
    );
}

pub fn total_requests(stats: &SimStats) -> u64 {
    stats.requests.values().sum()
}
