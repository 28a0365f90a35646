//! Crash-safe, idempotent re-runs (issue 6), end to end: the real `imsreg` binary as a child
//! process against one in-process simulator that plays the cloud across every run of a test.
//! Runs are killed (SIGKILL) or interrupted (SIGINT) at chosen points — the moments are found by
//! polling the simulator's counters or the journal, never by fixed sleeps — then re-run; the
//! simulator's per-image submission counters prove that no image was ever registered twice.
//! Also: the run lock, a torn journal line, `imsreg status`, a manifest edited between runs
//! and `--retry-failed`.

mod common;

use common::read_report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use imsreg::ims::types::ImageStatus;
use imsreg::sim::{DurationDist, Faults, SimConfig, SimHandle, SimStats, Simulator};
use imsreg::state::{self, Replayed};
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_imsreg");

/// Quick polls, 20 submissions per second, room for every job to run at once.
/// The region is the simulator's: the preflight checks the buckets are in it.
const SETTINGS: &str = "  region: ap-southeast-1\n  poll_interval: 100ms\n  submit_rate: 20\n  query_rate: 200\n  concurrency: 8\n  max_active_jobs: 40";

/// How long any awaited condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// One simulated cloud and a folder for manifests, journals, reports and logs.
struct World {
    sim: SimHandle,
    dir: TempDir,
}

impl World {
    fn start(job_duration: DurationDist) -> World {
        World::start_with(SimConfig {
            job_duration,
            ..SimConfig::default()
        })
    }

    fn start_with(config: SimConfig) -> World {
        World {
            sim: Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes (or rewrites) a manifest of `(index, object)` entries and makes the images known
    /// to the simulator as `queued` (known ones are left alone). Returns the manifest's path.
    fn manifest(&self, name: &str, entries: &[(usize, String)]) -> PathBuf {
        let mut text = format!("version: 1\nsettings:\n{SETTINGS}\nimages:\n");
        for (index, object) in entries {
            text.push_str(&format!(
                "  - image_id: {}\n    image_url: bucket-rerun:{object}\n",
                image_id(*index)
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        self.sim
            .add_images(entries.iter().map(|(index, _)| image_id(*index)));
        // Objects in the simulator's OBS, so that the preflight passes every entry.
        let manifest = imsreg::manifest::load(&path).unwrap();
        self.sim.add_objects_for(&manifest.images);
        path
    }

    /// `imsreg ARGS...` with a clean environment holding the simulator's credentials; stderr
    /// goes to `log` in the folder, so a killed child leaves its log behind and never blocks
    /// on a full pipe.
    fn imsreg(&self, args: &[&str], log: &str) -> Command {
        let creds = self.sim.config().credentials.clone();
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("HUAWEICLOUD_SDK_AK", creds.ak)
            .env("HUAWEICLOUD_SDK_SK", creds.sk)
            .env("HUAWEICLOUD_SDK_PROJECT_ID", creds.project_id)
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path(log)).unwrap())
            .kill_on_drop(true);
        command
    }

    /// `imsreg run MANIFEST --endpoint SIM --no-progress ARGS...`.
    fn run_command(&self, manifest: &Path, args: &[&str], log: &str) -> Command {
        let mut command = self.imsreg(&["run"], log);
        command
            .arg(manifest)
            .args(["--endpoint", &self.sim.url(), "--no-progress"])
            .args(args);
        command
    }

    fn spawn(&self, manifest: &Path, args: &[&str], log: &str) -> Child {
        self.run_command(manifest, args, log).spawn().unwrap()
    }

    /// A run to its end; returns the exit code and the log.
    async fn run(&self, manifest: &Path, args: &[&str], log: &str) -> (i32, String) {
        let mut child = self.spawn(manifest, args, log);
        let status = wait_exit(&mut child).await;
        let text = self.log(log);
        eprintln!("--- imsreg run {args:?}: {status}\n{text}");
        (status.code().expect("exited by a signal"), text)
    }

    /// `imsreg status ARGS...`: exit code and stdout.
    async fn status(&self, args: &[&str]) -> (i32, String) {
        let mut command = self.imsreg(&["status"], "status.log");
        command.args(args).stdout(Stdio::piped());
        let output: Output = tokio::time::timeout(PATIENCE, command.output())
            .await
            .expect("imsreg status hangs")
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("--- imsreg status {args:?}\n{text}");
        (output.status.code().unwrap(), text)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn stats(&self) -> SimStats {
        self.sim.stats()
    }

    /// Polls the simulator's counters until `done` holds.
    async fn wait_for(&self, what: &str, done: impl Fn(&SimStats) -> bool) -> SimStats {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "waited too long for {what}: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn image_id(index: usize) -> String {
    format!("7a1e0c55-6b6b-4c4c-8d8d-{index:012}")
}

/// Entries `0..n`, each with its own qcow2 object.
fn entries(n: usize) -> Vec<(usize, String)> {
    (0..n)
        .map(|i| (i, format!("exports/vm-{i}.qcow2")))
        .collect()
}

fn ids(n: usize) -> BTreeSet<String> {
    (0..n).map(image_id).collect()
}

async fn wait_exit(child: &mut Child) -> ExitStatus {
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("imsreg did not end in time")
        .unwrap()
}

/// SIGKILL: the process gets no chance to clean up (OOM killer, pre-empted runner).
async fn kill_hard(child: &mut Child) {
    child.start_kill().unwrap();
    let status = wait_exit(child).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
}

/// SIGINT, as Ctrl-C would send; returns the exit code of the graceful stop.
async fn interrupt(child: &mut Child) -> i32 {
    let pid = child.id().expect("still running") as libc::pid_t;
    // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    wait_exit(child).await.code().expect("exited by a signal")
}

fn records(report: &Value) -> &Vec<Value> {
    report["images"].as_array().unwrap()
}

/// Status of every image in a report, by image ID.
fn statuses(report: &Value) -> BTreeMap<String, String> {
    records(report)
        .iter()
        .map(|r| {
            (
                r["image_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The final report covers exactly `expected`, every image registered now or earlier.
fn assert_all_registered(report: &Value, expected: &BTreeSet<String>) {
    let statuses = statuses(report);
    let reported: BTreeSet<String> = statuses.keys().cloned().collect();
    assert_eq!(&reported, expected, "the report covers the manifest");
    for (id, status) in &statuses {
        assert!(
            status == "registered" || status == "already_registered",
            "image {id} is {status}"
        );
    }
}

/// Every image of `expected` was accepted by the cloud exactly once, and no other image was.
fn assert_submitted_exactly_once(stats: &SimStats, expected: &BTreeSet<String>) {
    assert!(
        stats.resubmitted().is_empty(),
        "submitted twice: {:?}",
        stats.resubmitted()
    );
    let submitted: BTreeSet<String> = stats.submissions.keys().cloned().collect();
    assert_eq!(&submitted, expected, "every image submitted");
    assert!(stats.submissions.values().all(|n| *n == 1), "{stats:?}");
}

/// Runs the manifest's `n` images to the end (report `final.json`): exit 0, every image
/// registered, each submitted exactly once over all runs. Returns the run's log.
async fn rerun_to_the_end(world: &World, manifest: &Path, n: usize, log: &str) -> String {
    let (code, log) = world.run(manifest, &["--report", "final.json"], log).await;
    assert_eq!(code, 0, "{log}");
    assert_all_registered(&read_report(&world.path("final.json")), &ids(n));
    assert_submitted_exactly_once(&world.stats(), &ids(n));
    log
}

fn total_requests(stats: &SimStats) -> u64 {
    stats.requests.values().sum()
}

/// Image IDs with a job in the journal.
fn journalled_jobs(replayed: &Replayed) -> BTreeMap<String, String> {
    replayed
        .images
        .iter()
        .filter_map(|(id, s)| s.job_id.clone().map(|job| (id.clone(), job)))
        .collect()
}

/// Polls the journal until `done` holds (the run writes it while we read).
async fn wait_for_journal(path: &Path, what: &str, done: impl Fn(&Replayed) -> bool) -> Replayed {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let replayed = state::replay(path).unwrap();
        if done(&replayed) {
            return replayed;
        }
        assert!(Instant::now() < deadline, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills a run during submission and another during polling, optionally deleting the journal
/// after each, then runs to the end; every image must be submitted exactly once.
///
/// Some register answers are lost on the way back: IMS accepted those jobs but the run cannot
/// journal them until it has looked at the image (after [`imsreg::run::AMBIGUITY_GRACE`]), so
/// the first kill always leaves accepted jobs the journal does not know, which only the
/// cloud-status check can save from a second submission.
async fn killed_twice_then_completed(delete_journal: bool) {
    const N: usize = 40;
    let world = World::start_with(SimConfig {
        seed: 3,
        job_duration: DurationDist::Uniform {
            min: Duration::from_millis(1500),
            max: Duration::from_millis(2500),
        },
        faults: Faults {
            drop_register_response: 0.2,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let manifest = world.manifest("m.yaml", &entries(N));
    let journal = world.path("m.imsreg-state.jsonl");

    // 1. Killed during submission: some, not all, registrations accepted.
    let mut child = world.spawn(&manifest, &[], "run1.log");
    world
        .wait_for("the first registrations and a lost answer", |s| {
            s.accepted_registers() >= 8 && s.dropped_register_responses >= 1
        })
        .await;
    kill_hard(&mut child).await;
    let accepted = world.stats().accepted_registers();
    assert!(
        accepted < N as u64,
        "killed before every image was submitted"
    );
    let jobs = journalled_jobs(&state::replay(&journal).unwrap());
    eprintln!("first kill: {accepted} accepted, {} journalled", jobs.len());
    assert!(
        !jobs.is_empty() && (jobs.len() as u64) < accepted,
        "accepted jobs the journal does not know: {} journalled, {accepted} accepted",
        jobs.len()
    );
    if delete_journal {
        std::fs::remove_file(&journal).unwrap();
    }

    // 2. Killed while polling: everything submitted, jobs still running in the cloud.
    let mut child = world.spawn(&manifest, &[], "run2.log");
    let stats = world
        .wait_for("every image submitted", |s| {
            s.accepted_registers() >= N as u64
        })
        .await;
    assert!(stats.running_jobs > 0, "still polling: {stats:?}");
    kill_hard(&mut child).await;
    assert_submitted_exactly_once(&world.stats(), &ids(N));
    assert!(world.stats().running_jobs > 0, "killed during polling");
    if delete_journal {
        std::fs::remove_file(&journal).unwrap();
    }

    // 3. To the end.
    rerun_to_the_end(&world, &manifest, N, "run3.log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_submission_and_polling_then_rerun_submits_each_image_once() {
    killed_twice_then_completed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_journal_the_cloud_status_still_prevents_double_submissions() {
    killed_twice_then_completed(true).await;
}

/// After a graceful stop: every job the cloud accepted is in the report (pending, with its job
/// ID, unless already registered) and in the journal; the rest is cancelled and unjournalled.
fn assert_consistent_after_interrupt(world: &World, report: &Value, journal: &Path) {
    let replayed = state::replay(journal).unwrap();
    assert!(!replayed.torn_tail && replayed.unreadable_lines.is_empty());
    let jobs = journalled_jobs(&replayed);
    let stats = world.stats();
    let accepted: BTreeSet<String> = stats.submissions.keys().cloned().collect();
    let journalled: BTreeSet<String> = jobs.keys().cloned().collect();
    assert_eq!(
        journalled, accepted,
        "every accepted job ID is journalled, and nothing else"
    );
    for record in records(report) {
        let id = record["image_id"].as_str().unwrap();
        match record["status"].as_str().unwrap() {
            "pending" | "registered" | "already_registered" => assert_eq!(
                record["job_id"].as_str(),
                jobs.get(id).map(String::as_str),
                "{record}"
            ),
            "cancelled" => {
                assert!(record["job_id"].is_null(), "{record}");
                assert!(!jobs.contains_key(id), "{record}");
            }
            other => panic!("unexpected status {other}: {record}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_submission_and_polling_exits_130_with_a_report_then_rerun_finishes() {
    const N: usize = 40;
    let world = World::start(DurationDist::Uniform {
        min: Duration::from_millis(1500),
        max: Duration::from_millis(2500),
    });
    let manifest = world.manifest("m.yaml", &entries(N));
    let journal = world.path("m.imsreg-state.jsonl");

    // 1. Interrupted during submission.
    let mut child = world.spawn(&manifest, &["--report", "r1.json"], "run1.log");
    world
        .wait_for("the first registrations", |s| s.accepted_registers() >= 8)
        .await;
    let code = interrupt(&mut child).await;
    let log = world.log("run1.log");
    assert_eq!(code, 130, "{log}");
    assert!(log.contains("SIGINT received"), "{log}");
    let report = read_report(&world.path("r1.json"));
    let summary = &report["summary"];
    let count = |key: &str| summary[key].as_u64().unwrap();
    assert_eq!(count("total"), N as u64);
    assert!(
        count("pending") >= 8,
        "accepted jobs are pending: {summary}"
    );
    assert!(
        count("cancelled") >= 1,
        "unsent images are cancelled: {summary}"
    );
    assert_eq!(
        count("pending") + count("cancelled") + count("registered"),
        N as u64,
        "{summary}"
    );
    assert_consistent_after_interrupt(&world, &report, &journal);
    assert!(world.stats().accepted_registers() < N as u64);

    // 2. Interrupted while polling.
    let mut child = world.spawn(&manifest, &["--report", "r2.json"], "run2.log");
    world
        .wait_for("every image submitted", |s| {
            s.accepted_registers() >= N as u64 && s.running_jobs > 0
        })
        .await;
    let code = interrupt(&mut child).await;
    assert_eq!(code, 130, "{}", world.log("run2.log"));
    let report = read_report(&world.path("r2.json"));
    let summary = &report["summary"];
    assert_eq!(summary["cancelled"], 0, "{summary}");
    assert!(summary["pending"].as_u64().unwrap() >= 1, "{summary}");
    assert_consistent_after_interrupt(&world, &report, &journal);
    assert_submitted_exactly_once(&world.stats(), &ids(N));

    // 3. The re-run follows the pending jobs to the end.
    rerun_to_the_end(&world, &manifest, N, "run3.log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_state_exits_75_at_once_and_submits_nothing() {
    let world = World::start(DurationDist::Fixed(Duration::from_secs(2)));
    let first = world.manifest("m.yaml", &entries(4));
    // The second run's manifest has one more image: had it run, that image would be submitted.
    let mut more = entries(4);
    more.push((4, "exports/vm-4.qcow2".into()));
    let second = world.manifest("m2.yaml", &more);
    let state = world.path("shared-state.jsonl");
    let state_arg = state.to_str().unwrap();

    let mut holder = world.spawn(&first, &["--state", state_arg], "holder.log");
    let holder_pid = holder.id().unwrap();
    world
        .wait_for("the first run's registrations", |s| {
            s.accepted_registers() >= 1
        })
        .await;

    // `imsreg status` sees the run in progress and its in-flight jobs.
    let (code, text) = world.status(&["--state", state_arg, "--json"]).await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["run_in_progress"], true, "{status}");
    assert_eq!(status["holder"]["pid"], holder_pid, "{status}");
    let (_, text) = world.status(&["--state", state_arg]).await;
    assert!(
        text.contains(&format!("in progress (PID {holder_pid}, started")),
        "{text}"
    );

    let (code, log) = world
        .run(
            &second,
            &["--state", state_arg, "--report", "second.json"],
            "second.log",
        )
        .await;
    assert_eq!(code, 75, "{log}");
    // Order, not speed: the second run ended while the first still held the lock, so it did
    // not wait for it.
    assert!(
        holder.try_wait().unwrap().is_none(),
        "exits at once, without waiting for the lock"
    );
    assert!(
        log.contains(&format!("PID {holder_pid}")) && log.contains("started"),
        "names the holder's PID and start time: {log}"
    );
    assert!(
        !world.path("second.json").exists(),
        "no report: it did nothing"
    );

    let holder_code = wait_exit(&mut holder).await.code();
    assert_eq!(holder_code, Some(0), "{}", world.log("holder.log"));
    let stats = world.stats();
    assert_eq!(
        stats.submissions.get(&image_id(4)),
        None,
        "the second run submitted nothing"
    );
    assert_submitted_exactly_once(&stats, &ids(4));
    assert_eq!(stats.requests["register"], 4, "only the first run's calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_journal_line_is_ignored_and_status_reads_the_journal() {
    const N: usize = 8;
    let world = World::start(DurationDist::Fixed(Duration::from_secs(2)));
    let manifest = world.manifest("m.yaml", &entries(N));
    let journal = world.path("m.imsreg-state.jsonl");

    // Killed with every job accepted and journalled, none finished.
    let mut child = world.spawn(&manifest, &["--submit-rate", "50"], "run1.log");
    let replayed = wait_for_journal(&journal, "every job journalled", |r| {
        journalled_jobs(r).len() == N
    })
    .await;
    kill_hard(&mut child).await;
    let jobs = journalled_jobs(&replayed);
    // A crash in the middle of an append leaves half a line.
    let mut text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.ends_with('\n'));
    text.push_str(&format!(
        r#"{{"v":1,"at":"2026-11-28T10:00:00Z","image_id":"{}","event":"fini"#,
        image_id(0)
    ));
    std::fs::write(&journal, text).unwrap();

    // `imsreg status MANIFEST` finds the journal next to the manifest.
    let (code, text) = world.status(&[manifest.to_str().unwrap()]).await;
    assert_eq!(code, 0);
    assert!(text.contains("not running"), "{text}");
    assert!(text.contains(&format!("images         {N}")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["in_flight", "8"]),
        "{text}"
    );
    assert!(text.contains("in-flight jobs:"), "{text}");
    for (id, job) in &jobs {
        assert!(
            text.lines()
                .any(|l| l.contains(id.as_str()) && l.contains(job.as_str())),
            "{id} {job} in {text}"
        );
    }
    assert!(text.contains("cut short"), "{text}");

    let (code, text) = world
        .status(&["--state", journal.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["run_in_progress"], false);
    assert!(status["holder"].is_null());
    assert_eq!(status["images"], N);
    assert_eq!(status["counts"], serde_json::json!({ "in_flight": N }));
    assert_eq!(status["torn_tail"], true);
    let in_flight: BTreeMap<String, String> = status["in_flight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            assert!(j["submitted_at"].is_string(), "{j}");
            (
                j["image_id"].as_str().unwrap().to_string(),
                j["job_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(in_flight, jobs);
    assert!(status["last_update"].is_string());

    // The next run ignores the torn line, follows the journalled jobs, submits nothing.
    let log = rerun_to_the_end(&world, &manifest, N, "run2.log").await;
    assert!(
        log.contains("cut short"),
        "the torn line is mentioned: {log}"
    );

    let (_, text) = world
        .status(&["--state", journal.to_str().unwrap(), "--json"])
        .await;
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["torn_tail"], false, "compacted away");
    assert_eq!(status["in_flight"], serde_json::json!([]));
    let counts = status["counts"].as_object().unwrap();
    let settled: u64 = ["registered", "already_registered"]
        .iter()
        .filter_map(|k| counts.get(*k).and_then(Value::as_u64))
        .sum();
    assert_eq!(settled, N as u64, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_edited_between_runs_adds_ignores_and_warns() {
    let world = World::start(DurationDist::Fixed(Duration::from_millis(1500)));
    let manifest = world.manifest("m.yaml", &entries(5));
    let journal = world.path("m.imsreg-state.jsonl");

    // Killed with five jobs journalled and running.
    let mut child = world.spawn(&manifest, &["--submit-rate", "50"], "run1.log");
    wait_for_journal(&journal, "every job journalled", |r| {
        journalled_jobs(r).len() == 5
    })
    .await;
    kill_hard(&mut child).await;

    // Edited: entry 4 removed (its job still running), entry 1 points at another file,
    // entry 5 is new.
    let mut edited = entries(4);
    edited[1].1 = "exports/vm-1-fixed.qcow2".into();
    edited.push((5, "exports/vm-5.qcow2".into()));
    world.manifest("m.yaml", &edited);

    let (code, log) = world
        .run(&manifest, &["--report", "r.json"], "run2.log")
        .await;
    assert_eq!(code, 0, "{log}");
    let expected: BTreeSet<String> = [0, 1, 2, 3, 5].into_iter().map(image_id).collect();
    let report = read_report(&world.path("r.json"));
    assert_all_registered(&report, &expected);
    assert!(
        !statuses(&report).contains_key(&image_id(4)),
        "a removed entry is not reported"
    );
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&image_id(1)))
        .unwrap_or_else(|| panic!("no warning for the changed URL: {log}"));
    assert!(
        warning.contains("bucket-rerun:exports/vm-1.qcow2")
            && warning.contains("bucket-rerun:exports/vm-1-fixed.qcow2"),
        "the warning names both URLs: {warning}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && !l.contains(&image_id(1))),
        "no other warning: {log}"
    );
    assert_eq!(
        image_url_of(&report, &image_id(1)),
        "bucket-rerun:exports/vm-1.qcow2",
        "the report names the file IMS registered, not the edited one"
    );
    // Every image, the removed and the re-pointed ones included, was submitted once.
    let all: BTreeSet<String> = (0..=5).map(image_id).collect();
    assert_submitted_exactly_once(&world.stats(), &all);

    // A further run settles everything from the journal and still warns.
    let requests = total_requests(&world.stats());
    let (code, log) = world
        .run(&manifest, &["--report", "r3.json"], "run3.log")
        .await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("vm-1-fixed.qcow2"), "{log}");
    let report = read_report(&world.path("r3.json"));
    assert!(
        statuses(&report)
            .values()
            .all(|s| s == "already_registered")
    );
    assert_eq!(
        image_url_of(&report, &image_id(1)),
        "bucket-rerun:exports/vm-1.qcow2"
    );
    assert_eq!(total_requests(&world.stats()), requests, "nothing asked");
}

/// The `image_url` of one image in a JSON report.
fn image_url_of(report: &Value, id: &str) -> String {
    report["images"]
        .as_array()
        .and_then(|images| images.iter().find(|i| i["image_id"] == id))
        .and_then(|image| image["image_url"].as_str())
        .unwrap_or_else(|| panic!("no image {id} in {report}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_images_are_retried_only_with_retry_failed_and_only_when_queued() {
    let world = World::start(DurationDist::Uniform {
        min: Duration::from_millis(200),
        max: Duration::from_millis(400),
    });
    let manifest = world.manifest(
        "m.yaml",
        &[
            (0, "exports/vm-0.qcow2".into()),
            (1, "exports/corrupt-vm-1.qcow2".into()),
            (2, "exports/vm-2.qcow2".into()),
        ],
    );
    let corrupt = image_id(1);
    let failed_record = |name: &str| -> Value {
        let report = read_report(&world.path(name));
        let record = records(&report)
            .iter()
            .find(|r| r["image_id"] == corrupt.as_str())
            .unwrap()
            .clone();
        assert_eq!(record["status"], "failed", "{record}");
        record
    };

    let (code, log) = world
        .run(&manifest, &["--report", "r1.json"], "run1.log")
        .await;
    assert_eq!(code, 1, "{log}");
    assert_eq!(failed_record("r1.json")["error_code"], "IMG.0057");
    assert_eq!(world.stats().submissions[&corrupt], 1);

    // Without the flag: failed again from the journal, without any request.
    let requests = total_requests(&world.stats());
    let (code, log) = world
        .run(&manifest, &["--report", "r2.json"], "run2.log")
        .await;
    assert_eq!(code, 1, "{log}");
    let record = failed_record("r2.json");
    assert_eq!(record["error_code"], "IMG.0057", "the reason is kept");
    assert!(
        record["error_message"]
            .as_str()
            .unwrap()
            .contains("corrupt")
    );
    assert_eq!(
        total_requests(&world.stats()),
        requests,
        "no request at all"
    );

    // The operator fixes the image in the cloud; still not retried without the flag.
    world.sim.set_image_status(&corrupt, ImageStatus::Queued);
    let (code, log) = world
        .run(&manifest, &["--report", "r3.json"], "run3.log")
        .await;
    assert_eq!(code, 1, "{log}");
    failed_record("r3.json");
    assert_eq!(
        total_requests(&world.stats()),
        requests,
        "no request at all"
    );
    assert_eq!(world.stats().submissions[&corrupt], 1);

    // With --retry-failed it is submitted again (and fails again: the file is still corrupt).
    let (code, log) = world
        .run(
            &manifest,
            &["--retry-failed", "--report", "r4.json"],
            "run4.log",
        )
        .await;
    assert_eq!(code, 1, "{log}");
    failed_record("r4.json");
    let stats = world.stats();
    assert_eq!(stats.submissions[&corrupt], 2, "retried once");
    assert_eq!(
        stats.submissions[&image_id(0)],
        1,
        "the others are left alone"
    );
    assert_eq!(stats.submissions[&image_id(2)], 1);

    // Now the image is `killed` again: --retry-failed does not submit a non-queued image.
    let (code, log) = world
        .run(
            &manifest,
            &["--retry-failed", "--report", "r5.json"],
            "run5.log",
        )
        .await;
    assert_eq!(code, 1, "{log}");
    let record = failed_record("r5.json");
    assert!(
        record["error_message"].as_str().unwrap().contains("killed"),
        "{record}"
    );
    assert_eq!(world.stats().submissions[&corrupt], 2, "not submitted");

    // A good file and a queued image again: the retry registers it, and says what it submits.
    world.manifest(
        "m.yaml",
        &[
            (0, "exports/vm-0.qcow2".into()),
            (1, "exports/vm-1-fixed.qcow2".into()),
            (2, "exports/vm-2.qcow2".into()),
        ],
    );
    world.sim.set_image_status(&corrupt, ImageStatus::Queued);
    let (code, log) = world
        .run(
            &manifest,
            &["--retry-failed", "--report", "r6.json"],
            "run6.log",
        )
        .await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("--retry-failed submits bucket-rerun:exports/vm-1-fixed.qcow2"),
        "{log}"
    );
    let report = read_report(&world.path("r6.json"));
    assert_eq!(statuses(&report)[&corrupt], "registered");
    let stats = world.stats();
    assert_eq!(stats.submissions[&corrupt], 3);
    assert_eq!(stats.submissions[&image_id(0)], 1);
    assert_eq!(stats.submissions[&image_id(2)], 1);
}
