//! End to end, `imsreg run` creating the images of entries without `image_id` against the
//! simulator over HTTP: exactly one image per name whatever happens (lost create answers,
//! SIGKILL at random moments followed at once by a re-run, with and without the state journal),
//! the quota and os_version checks before anything is created, a refused registration that
//! leaves its image `queued` to be reused once the URL is fixed, and `--retry-failed` replacing
//! a killed image.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::e2e::{World, code, quick_jobs, stderr, stdout};
use imsreg::ids::{IDENTITY_TAG_KEY, identity_tag_value};
use imsreg::ims::ImageStatus;
use imsreg::sim::{DurationDist, SimConfig};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const FAST: &str = "  poll_interval: 100ms\n  submit_rate: 50\n  query_rate: 200\n  concurrency: 8";

/// Writes a manifest of `n` entries to create (`img-0` ...), makes their objects known to the
/// simulator's OBS, and returns its path and the names.
fn manifest(world: &World, file: &str, n: usize) -> (PathBuf, Vec<String>) {
    let names: Vec<String> = (0..n).map(|i| format!("img-{i}")).collect();
    let mut text = format!(
        "version: 1\nsettings:\n{FAST}\ndefaults:\n  os_version: CentOS 7.9 64bit\n  min_disk: 40\n  tags: {{wave: w1}}\nimages:\n"
    );
    for name in &names {
        text.push_str(&format!(
            "  - name: {name}\n    image_url: bucket-e2e:exports/{name}.qcow2\n"
        ));
    }
    let path = world.path(file);
    std::fs::write(&path, text).unwrap();
    world.add_objects(&path);
    (path, names)
}

/// Every name has exactly one image in the simulator, and every image carrying an identity
/// tag is one of them (no orphan).
fn assert_one_image_per_name(world: &World, names: &[String]) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for name in names {
        let images = world.sim.images_named(name);
        assert_eq!(images.len(), 1, "{name}: {images:?}");
        let tagged = world
            .sim
            .images_tagged(IDENTITY_TAG_KEY, &identity_tag_value(name));
        assert_eq!(tagged, images, "{name}: found by its tag");
        ids.insert(name.clone(), images[0].0.clone());
    }
    let stats = world.stats();
    assert!(
        stats.images_per_name.values().all(|&n| n == 1),
        "{:?}",
        stats.images_per_name
    );
    assert_eq!(
        stats.images_per_name.len(),
        names.len(),
        "no image beyond one per entry: {:?}",
        stats.images_per_name
    );
    ids
}

fn records(report: &Value) -> &Vec<Value> {
    report["images"].as_array().unwrap()
}

fn assert_report(report: &Value, ids: &BTreeMap<String, String>, status: &str) {
    let records = records(report);
    assert_eq!(records.len(), ids.len());
    for record in records {
        let name = record["name"].as_str().unwrap();
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["image_id"], ids[name].as_str(), "{record}");
        assert_eq!(record["created"], true, "{record}");
    }
    assert_eq!(report["summary"]["created"], ids.len());
}

async fn run(world: &World, manifest: &Path, report: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--report", report, "--request-timeout", "1s"];
    all.extend_from_slice(args);
    world.run(manifest, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_never_make_a_second_image() {
    let world = World::start(SimConfig {
        faults: imsreg::sim::Faults {
            drop_create_response: 0.4,
            error_503: 0.05,
            ..Default::default()
        },
        ..quick_jobs()
    });
    let (path, names) = manifest(&world, "m.yaml", 24);
    let output = run(&world, &path, "r1.json", &[]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let stats = world.stats();
    assert!(stats.dropped_create_responses > 0, "the fault was met");
    let ids = assert_one_image_per_name(&world, &names);
    assert_report(&world.report("r1.json"), &ids, "registered");
    assert!(stdout(&output).contains("24 of them with images imsreg created"));

    // Run again: everything is found by its tag (or settled by the journal); nothing created.
    let creates_before = world.stats().requests["create_image"];
    let output = run(&world, &path, "r2.json", &[]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(world.stats().requests["create_image"], creates_before);
    assert_report(&world.report("r2.json"), &ids, "already_registered");
    // And without the journal: the cloud lookup alone finds them.
    let output = run(&world, &path, "r3.json", &["--no-state"]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(world.stats().requests["create_image"], creates_before);
    assert_report(&world.report("r3.json"), &ids, "already_registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_is_checked_before_anything_is_created() {
    let world = World::start(SimConfig {
        image_quota: 5,
        ..quick_jobs()
    });
    world
        .sim
        .add_images(["4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86".to_string()]);
    let (path, _) = manifest(&world, "m.yaml", 5);
    let output = run(&world, &path, "r.json", &[]).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("5 image(s) to create") && err.contains("1 of 5 private images (4 left)"),
        "{err}"
    );
    assert_eq!(world.stats().requests.get("create_image"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_os_version_is_refused_with_a_suggestion_before_anything_is_created() {
    let world = World::start(quick_jobs());
    let (path, _) = manifest(&world, "m.yaml", 3);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "os_version: CentOS 7.9 64bit",
        "os_version: Centos 7.9 64 bit",
    );
    std::fs::write(&path, text).unwrap();
    let output = run(&world, &path, "r.json", &[]).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    // Written once, in defaults:, used by the three entries: one line.
    assert!(
        err.contains("m.yaml:8:15: error: os_version: `Centos 7.9 64 bit` (3 entries)"),
        "{err}"
    );
    assert_eq!(err.matches("error: os_version").count(), 1, "{err}");
    assert!(err.contains("did you mean `CentOS 7.9 64bit`?"), "{err}");
    assert_eq!(world.stats().requests.get("create_image"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_keeps_its_queued_image_for_the_fixed_url() {
    let world = World::start(quick_jobs());
    let (path, names) = manifest(&world, "m.yaml", 2);
    // IMS refuses to register a .tar file (IMG.0057): the image stays `queued`.
    let text = std::fs::read_to_string(&path).unwrap();
    let typo = text.replace(
        "image_url: bucket-e2e:exports/img-1.qcow2",
        "image_url: bucket-e2e:exports/img-1.tar\n    format: qcow2",
    );
    std::fs::write(&path, &typo).unwrap();
    let output = run(&world, &path, "r1.json", &["--no-preflight"]).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let report = world.report("r1.json");
    let refused = records(&report)
        .iter()
        .find(|r| r["name"] == "img-1")
        .unwrap();
    assert_eq!(refused["status"], "failed");
    assert_eq!(refused["error_code"], "IMG.0057");
    assert_eq!(refused["created"], true);
    let kept = refused["image_id"].as_str().unwrap().to_string();
    assert_eq!(world.sim.image_status(&kept), Some(ImageStatus::Queued));

    // The URL fixed: the same image is registered, no second one is created.
    std::fs::write(&path, &text).unwrap();
    let output = run(&world, &path, "r2.json", &[]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let ids = assert_one_image_per_name(&world, &names);
    assert_eq!(ids["img-1"], kept);
    let report = world.report("r2.json");
    let fixed = records(&report)
        .iter()
        .find(|r| r["name"] == "img-1")
        .unwrap();
    assert_eq!(fixed["status"], "registered", "{fixed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_replaces_a_killed_image_with_a_fresh_one() {
    let world = World::start(quick_jobs());
    let (path, names) = manifest(&world, "m.yaml", 2);
    let output = run(&world, &path, "r1.json", &[]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let first = assert_one_image_per_name(&world, &names);
    world
        .sim
        .set_image_status(&first["img-0"], ImageStatus::Killed);

    // Without --retry-failed the killed image is reported, not touched.
    let output = run(&world, &path, "r2.json", &["--no-state"]).await;
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let report = world.report("r2.json");
    let killed = records(&report)
        .iter()
        .find(|r| r["name"] == "img-0")
        .unwrap();
    assert_eq!(killed["status"], "failed");
    assert!(
        killed["error_message"]
            .as_str()
            .unwrap()
            .contains("--retry-failed")
    );
    assert_eq!(world.sim.images_named("img-0").len(), 1);

    let output = run(&world, &path, "r3.json", &["--no-state", "--retry-failed"]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let second = assert_one_image_per_name(&world, &names);
    assert_ne!(second["img-0"], first["img-0"], "a fresh image");
    assert_eq!(second["img-1"], first["img-1"]);
    assert_eq!(world.stats().deleted_images, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_status_show_the_entries_to_create() {
    let world = World::start(quick_jobs());
    let (path, names) = manifest(&world, "m.yaml", 3);
    let output = run(&world, &path, "r.json", &["--dry-run"]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("would create    3"), "{out}");
    assert!(out.contains("create  -"), "{out}");
    assert_eq!(world.stats().requests.get("create_image"), None);

    let output = run(&world, &path, "r.json", &[]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_one_image_per_name(&world, &names);
    let output = run(&world, &path, "r.json", &["--dry-run", "--no-state"]).await;
    let out = stdout(&output);
    assert!(out.contains("would create    0"), "{out}");
    assert!(out.contains("found           3"), "{out}");
    assert!(out.contains("img-0, created by imsreg"), "{out}");

    let status = tokio::process::Command::new(common::e2e::BIN)
        .arg("status")
        .arg(&path)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("created or found     3"), "{text}");
    assert!(text.contains("to create            0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_the_same_entries_at_once_end_with_one_registered_image_each() {
    // Kubernetes can start a pod twice: two runs of one manifest, each without a journal
    // (separate machines), against one cloud, at the same moment.
    let world = World::start(SimConfig {
        latency: DurationDist::Uniform {
            min: Duration::from_millis(1),
            max: Duration::from_millis(30),
        },
        faults: imsreg::sim::Faults {
            drop_create_response: 0.1,
            ..Default::default()
        },
        ..quick_jobs()
    });
    let (path, names) = manifest(&world, "m.yaml", 16);
    let worker = |report: &str| {
        let mut command = world.command(
            &path,
            &["--report", report, "--request-timeout", "1s", "--no-state"],
        );
        command.envs(world.credentials_env());
        command.output()
    };
    let (a, b) = tokio::join!(worker("a.json"), worker("b.json"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let ids = assert_one_image_per_name(&world, &names);
    let stats = world.stats();
    for id in ids.values() {
        assert_eq!(stats.submissions.get(id), Some(&1), "registered once: {id}");
    }
    // Both reports name the same image for every entry.
    for report in ["a.json", "b.json"] {
        let report = world.report(report);
        for record in records(&report) {
            assert_eq!(
                record["image_id"],
                ids[record["name"].as_str().unwrap()].as_str()
            );
        }
    }
    eprintln!(
        "two workers: {} create calls for {} entries, {} duplicates deleted",
        stats.requests["create_image"],
        names.len(),
        stats.deleted_images
    );
}

/// Kills a run (SIGKILL) at a random moment, then re-runs at once to the end, `trials` times
/// on fresh simulators; answers the creates sent and duplicates deleted over all trials, and
/// how many trials were killed while creating (some creates sent, not every image made). `journal`: the re-run keeps
/// the state journal (else `--no-state` for both).
async fn kill_trials(journal: bool, trials: usize, seed: u64) -> (u64, u64, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut creates, mut deleted, mut mid_create) = (0, 0, 0);
    for trial in 0..trials {
        let world = World::start(SimConfig {
            faults: imsreg::sim::Faults {
                drop_create_response: 0.2,
                ..Default::default()
            },
            latency: DurationDist::Uniform {
                min: Duration::from_millis(1),
                max: Duration::from_millis(40),
            },
            seed: seed + trial as u64,
            ..quick_jobs()
        });
        let (path, names) = manifest(&world, "m.yaml", 12);
        // Without the preflight the creates start at once: the kill moments cover them, the
        // wait before their second lookup, and the registrations after.
        // 5 creates a second: the twelve take about 2.4 s, which the kill moments cover.
        let state: &[&str] = if journal {
            &["--no-preflight", "--submit-rate", "5"]
        } else {
            &["--no-preflight", "--submit-rate", "5", "--no-state"]
        };
        let mut first = world.command(
            &path,
            &[
                &["--report", "killed.json", "--request-timeout", "1s"],
                state,
            ]
            .concat(),
        );
        first
            .envs(world.credentials_env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = first.spawn().unwrap();
        let moment = Duration::from_millis(rng.random_range(20..3000));
        tokio::time::sleep(moment).await;
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let at_kill = world.stats();
        let sent = at_kill.requests.get("create_image").copied().unwrap_or(0);
        let made = at_kill.images_per_name.len();
        if sent > 0 && made < names.len() {
            mid_create += 1;
        }
        let output = run(&world, &path, "r.json", state).await;
        assert_eq!(
            code(&output),
            0,
            "trial {trial} (killed after {moment:?}): {}",
            stderr(&output)
        );
        let ids = assert_one_image_per_name(&world, &names);
        let report = world.report("r.json");
        for record in records(&report) {
            let status = record["status"].as_str().unwrap();
            assert!(
                status == "registered" || status == "already_registered",
                "{record}"
            );
            assert_eq!(
                record["image_id"],
                ids[record["name"].as_str().unwrap()].as_str()
            );
        }
        let stats = world.stats();
        creates += stats.requests.get("create_image").copied().unwrap_or(0);
        deleted += stats.deleted_images;
        assert!(
            stats.submissions.values().all(|&n| n == 1),
            "trial {trial}: each image registered once: {:?}",
            stats.submissions
        );
    }
    (creates, deleted, mid_create)
}

/// How many kill trials each test makes (`IMSREG_KILL_TRIALS`, default 4).
fn trials() -> usize {
    std::env::var("IMSREG_KILL_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_an_immediate_rerun_with_the_journal_creates_nothing_twice() {
    let n = trials();
    let (creates, deleted, mid) = kill_trials(true, n, 1400).await;
    eprintln!(
        "kill trials with the journal: {n} trials ({mid} killed while creating), 12 entries each, {creates} create calls, {deleted} duplicates deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_an_immediate_rerun_without_the_journal_creates_nothing_twice() {
    let n = trials();
    let (creates, deleted, mid) = kill_trials(false, n, 2400).await;
    eprintln!(
        "kill trials without the journal: {n} trials ({mid} killed while creating), 12 entries each, {creates} create calls, {deleted} duplicates deleted"
    );
}
