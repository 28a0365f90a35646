//! One manifest split across workers (issue 15, `--shard K/N`): which entries a shard runs
//! (stable under edits, roughly even, validation still global), three shards run at once
//! against one simulator (every image registered exactly once, the merged report equal to a
//! single run's), a shard started twice at once (one journal: the second exits 75; separate
//! journals: nothing submitted twice), an empty shard, the dry run, `preflight` and `status`
//! of a shard, and `imsreg report merge` refusing reports that do not belong together.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::e2e::{BIN, FAST, World, code, image_id, quick_jobs, stderr, stdout};
use common::job::Recorder;
use common::read_report;
use imsreg::ims::types::ImageStatus;
use imsreg::job::{self, Finished, JobOptions, JournalChoice, Outcome, PreflightOptions, Verdict};
use imsreg::report::{ImageOutcome, Summary};
use imsreg::shard::{self, Shard};
use imsreg::sim::{DurationDist, SimConfig};
use imsreg::state;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails (not a speed check).
const PATIENCE: Duration = Duration::from_secs(60);

fn shard(text: &str) -> Shard {
    text.parse().unwrap()
}

fn ran(outcome: Outcome) -> Box<Finished> {
    match outcome {
        Outcome::Ran(finished) => finished,
        Outcome::Planned(plan) => panic!("expected a run, got a plan: {plan:?}"),
    }
}

/// The image IDs of the manifest entries that shard `k` of `n` holds, by hash-v1.
fn members(ids: &[String], of: Shard) -> Vec<String> {
    ids.iter()
        .filter(|id| {
            let id = imsreg::ids::ImageId::parse(id).unwrap();
            of.contains(&shard::identity_of_image_id(&id))
        })
        .cloned()
        .collect()
}

/// `(image_id, status)` of every line of a JSON report, in the report's order.
fn report_lines(report: &Value) -> Vec<(String, String)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["image_id"].as_str().unwrap_or("-").to_string(),
                line["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A manifest of `count` entries in the world: every fifth object is corrupt (its job fails),
/// every seventh image is active already; plus two invalid entries at the end, one with a
/// usable ID (a bad URL) and one without (a bad ID). Returns the path and the valid IDs.
fn mixed_manifest(world: &World, count: usize) -> (PathBuf, Vec<String>) {
    let objects: Vec<String> = (0..count)
        .map(|i| {
            if i % 5 == 4 {
                format!("exports/corrupt-{i}.qcow2")
            } else {
                format!("exports/disk-{i}.qcow2")
            }
        })
        .collect();
    let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
    let (path, ids) = world.manifest("wave.yaml", &refs, FAST);
    for (i, id) in ids.iter().enumerate() {
        if i % 7 == 6 {
            world.sim.set_image_status(id, ImageStatus::Active);
        }
    }
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "  - image_id: {}\n    image_url: Bad_Bucket:x.qcow2\n  - image_id: not-a-uuid\n    image_url: bucket-e2e:y.qcow2\n",
        image_id(9000)
    ));
    std::fs::write(&path, text).unwrap();
    (path, ids)
}

fn shard_options(world: &World, manifest: &Path, report: &str, of: Option<Shard>) -> JobOptions {
    JobOptions {
        skip_invalid: true,
        shard: of,
        ..world.job_options(manifest, report)
    }
}

#[test]
fn membership_is_stable_under_edits_and_roughly_even() {
    let ids: Vec<String> = (0..3000).map(image_id).collect();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, ids: &[String]| {
        let path = dir.path().join(name);
        common::job::write_manifest(&path, ids, "  submit_rate: 1");
        path
    };
    let kept = |path: &Path, of: Shard| -> BTreeSet<String> {
        let mut manifest = imsreg::manifest::load(path).unwrap();
        job::sharding::keep_shard(&mut manifest, of);
        manifest
            .images
            .iter()
            .map(|e| e.image_id.to_string())
            .collect()
    };
    let original = write("original.yaml", &ids);
    // Reversed, every third entry removed, 500 new ones added in the middle.
    let mut edited: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| id.clone())
        .rev()
        .collect();
    let added: Vec<String> = (5000..5500).map(image_id).collect();
    edited.splice(1000..1000, added.iter().cloned());
    let edited = write("edited.yaml", &edited);

    for total in [3, 10] {
        let mut seen = BTreeSet::new();
        for k in 1..=total {
            let of = Shard::new(k, total).unwrap();
            let before = kept(&original, of);
            let after = kept(&edited, of);
            // Every entry still in the manifest stays in its shard; only removed ones leave,
            // and the added ones join without pushing any other out.
            let removed: BTreeSet<&String> = ids.iter().step_by(3).collect();
            let stayed: BTreeSet<&String> =
                before.iter().filter(|id| !removed.contains(id)).collect();
            let now_here: BTreeSet<&String> =
                after.iter().filter(|id| !added.contains(id)).collect();
            assert_eq!(stayed, now_here, "entries moved in {of}");
            // Roughly even: within 15 % of the fair share (the hash is fixed, so this never
            // flakes).
            let fair = 3000.0 / f64::from(total);
            let size = before.len() as f64;
            assert!((size - fair).abs() < 0.15 * fair, "{of}: {size} of 3000");
            assert!(before.is_disjoint(&seen), "{of} overlaps another shard");
            seen.extend(before);
        }
        assert_eq!(seen.len(), 3000, "every entry is in some shard");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_stays_global_a_duplicate_across_shards_fails_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.yaml");
    let mut ids: Vec<String> = (0..40).map(image_id).collect();
    ids.push(image_id(0));
    common::job::write_manifest(&path, &ids, "  submit_rate: 1");
    for k in 1..=4 {
        let options = JobOptions {
            manifest: path.clone(),
            shard: Some(Shard::new(k, 4).unwrap()),
            dry_run: true,
            ..JobOptions::default()
        };
        let err = job::run(
            options,
            Arc::new(Recorder::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, job::JobError::Manifest { errors: 1, .. }),
            "shard {k}/4: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_at_once_register_every_image_once_and_merge_to_a_single_runs_counts() {
    const COUNT: usize = 36;
    let world = World::start(quick_jobs());
    let (manifest, ids) = mixed_manifest(&world, COUNT);
    let shards = [shard("1/3"), shard("2/3"), shard("3/3")];

    // The dry run of a shard plans that shard's entries only.
    let plan = match job::run(
        JobOptions {
            dry_run: true,
            ..shard_options(&world, &manifest, "unused.json", Some(shards[1]))
        },
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap()
    {
        Outcome::Planned(plan) => plan,
        Outcome::Ran(_) => panic!("a dry run ran"),
    };
    let planned: Vec<String> = plan
        .images
        .iter()
        .map(|i| i.entry.image_id.to_string())
        .collect();
    assert_eq!(planned, members(&ids, shards[1]));
    assert!(plan.render().contains("shard           2/3 (hash-v1"));
    assert_eq!(world.stats().accepted_registers(), 0);

    // Three shards at once, each with its own journal, against one simulator.
    let runs = shards.map(|of| {
        job::run(
            shard_options(
                &world,
                &manifest,
                &format!("shard-{}.json", of.index()),
                Some(of),
            ),
            Arc::new(Recorder::default()),
            CancellationToken::new(),
        )
    });
    let [a, b, c] = runs;
    let (a, b, c) = tokio::time::timeout(PATIENCE, async { tokio::join!(a, b, c) })
        .await
        .expect("the three shards finished");
    let finished = [a, b, c].map(|outcome| ran(outcome.unwrap()));
    for (of, finished) in shards.iter().zip(&finished) {
        assert_eq!(
            finished.verdict,
            Verdict::NotAllRegistered,
            "{of}: corrupt images fail"
        );
        let journal = state::shard_path(&manifest, of.index(), of.total());
        assert!(journal.exists(), "{of} keeps its own journal");
        let journaled: BTreeSet<String> = state::replay(&journal)
            .unwrap()
            .images
            .into_keys()
            .collect();
        let expected: BTreeSet<String> = members(&ids, *of).into_iter().collect();
        assert_eq!(
            journaled, expected,
            "{of}'s journal holds its own images only"
        );
    }
    assert!(!state::default_path(&manifest).exists());

    // Every image that was queued is registered exactly once, by one of the shards.
    let stats = world.stats();
    let queued: BTreeSet<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 6)
        .map(|(_, id)| id)
        .collect();
    let submitted: BTreeSet<&String> = stats.submissions.keys().collect();
    assert_eq!(submitted, queued);
    assert!(
        stats.submissions.values().all(|&n| n == 1),
        "{:?}",
        stats.submissions
    );

    // Each shard's report: its entries only, its share of the quota, the manifest's digest.
    let digest = hex::encode(Sha256::digest(std::fs::read(&manifest).unwrap()));
    let mut union = Vec::new();
    for of in &shards {
        let report = read_report(&world.path(&format!("shard-{}.json", of.index())));
        assert_eq!(report["manifest_sha256"], digest.as_str());
        assert_eq!(
            report["shard"],
            serde_json::json!({"index": of.index(), "total": 3, "scheme": "hash-v1"})
        );
        assert_eq!(report["settings"]["submit_rate"], 50.0 / 3.0);
        assert_eq!(report["settings"]["query_rate"], 200.0 / 3.0);
        assert_eq!(report["settings"]["concurrency"], 2, "8 / 3 rounded down");
        assert_eq!(
            report["settings"]["max_active_jobs"], 6,
            "20 / 3 rounded down"
        );
        let valid: Vec<String> = report_lines(&report)
            .into_iter()
            .filter(|(_, status)| status != "invalid")
            .map(|(id, _)| id)
            .collect();
        assert_eq!(valid, members(&ids, *of), "{of}");
        union.extend(report_lines(&report));
    }
    assert_eq!(
        union.len(),
        COUNT + 2,
        "each entry in exactly one shard report"
    );

    // The merge: every shard once, records back in manifest order.
    let inputs: Vec<PathBuf> = shards
        .iter()
        .rev()
        .map(|of| world.path(&format!("shard-{}.json", of.index())))
        .collect();
    let merged = job::merge_reports(
        &inputs,
        &[world.path("merged.json"), world.path("merged.md")],
    )
    .unwrap();
    assert_eq!(merged.verdict, Verdict::NotAllRegistered);
    assert_eq!(merged.written.len(), 2);
    let merged_json = read_report(&world.path("merged.json"));
    assert_eq!(merged_json["shard"], Value::Null);
    assert_eq!(merged_json["settings"]["max_active_jobs"], 18);

    // A single run of the same manifest against a fresh simulator in the same state.
    let single_world = World::start(quick_jobs());
    let (single_manifest, single_ids) = mixed_manifest(&single_world, COUNT);
    assert_eq!(single_ids, ids);
    let single = ran(job::run(
        shard_options(&single_world, &single_manifest, "single.json", None),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap());
    let single_json = read_report(&single_world.path("single.json"));
    assert_eq!(
        single_json["manifest_sha256"],
        digest.as_str(),
        "same bytes"
    );
    assert_eq!(single_json["shard"], Value::Null);

    assert_eq!(merged.report.summary, single.report.summary);
    assert_eq!(merged.verdict, single.verdict);
    assert_eq!(report_lines(&merged_json), report_lines(&single_json));
    let expected = Summary {
        total: COUNT + 2,
        registered: ids.len() - 5 - 7 + 1,
        already_registered: 5,
        failed: 7 - 1,
        invalid: 2,
        ..Summary::default()
    };
    // 36 entries: corrupt at 4, 9, 14, 19, 24, 29, 34 (7); active at 6, 13, 20, 27, 34 (5),
    // of which 34 is both (active wins: it is never submitted).
    assert_eq!(merged.report.summary, expected);

    // `imsreg status --shard` reads that shard's journal.
    let status = std::process::Command::new(BIN)
        .args(["status", "--json", "--shard", "2/3"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["state"]
            .as_str()
            .unwrap()
            .ends_with("wave.shard-2-of-3.imsreg-state.jsonl")
    );
    assert_eq!(status["shard"]["index"], 2);
    assert_eq!(
        status["images"].as_u64().unwrap() as usize,
        state::replay(&state::shard_path(&manifest, 2, 3))
            .unwrap()
            .images
            .len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_no_entries_succeeds_with_an_empty_report() {
    let world = World::start(quick_jobs());
    let objects = ["exports/a.qcow2", "exports/b.qcow2"];
    let (manifest, ids) = world.manifest("small.yaml", &objects, FAST);
    let empty = (1..=6)
        .map(|k| Shard::new(k, 6).unwrap())
        .find(|of| members(&ids, *of).is_empty())
        .expect("two entries leave some of six shards empty");
    let finished = ran(job::run(
        shard_options(&world, &manifest, "empty.json", Some(empty)),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap());
    assert_eq!(
        finished.verdict,
        Verdict::AllRegistered,
        "nothing to do is no failure"
    );
    let report = read_report(&world.path("empty.json"));
    assert_eq!(report["summary"]["total"], 0);
    assert_eq!(world.stats().accepted_registers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_of_a_shard_checks_only_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("check.yaml");
    let ids: Vec<String> = (0..30).map(image_id).collect();
    common::job::write_manifest(&path, &ids, "  submit_rate: 1");
    let of = shard("3/4");
    let outcome = job::preflight::preflight(
        &PreflightOptions {
            manifest: path,
            simulate: true,
            shard: Some(of),
            ..PreflightOptions::default()
        },
        &job::Unobserved,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let checked: Vec<String> = outcome
        .report
        .verdicts
        .iter()
        .map(|v| v.image_id.to_string())
        .collect();
    assert_eq!(checked, members(&ids, of));
}

/// Jobs that outlast the test: the first run holds its shard's journal until it is stopped.
fn slow_jobs() -> SimConfig {
    SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_secs(600)),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_started_twice_on_one_journal_the_second_exits_75() {
    let world = World::start(slow_jobs());
    let objects: Vec<String> = (0..12).map(|i| format!("exports/disk-{i}.qcow2")).collect();
    let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
    let (manifest, ids) = world.manifest("twice.yaml", &refs, FAST);
    let args = ["--shard", "2/3", "--no-preflight", "--no-progress"];
    let env = world.credentials_env();
    let mut first = world.command(
        &manifest,
        &[&args[..], &["--report", "first.json"]].concat(),
    );
    first.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut first = first.spawn().unwrap();

    let journal = state::shard_path(&manifest, 2, 3);
    tokio::time::timeout(PATIENCE, async {
        while world.stats().accepted_registers() < members(&ids, shard("2/3")).len() as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first run submitted its shard");
    assert!(matches!(
        state::lock::probe(&journal).unwrap(),
        state::LockState::Held(_)
    ));

    let second = world
        .run(
            &manifest,
            &[&args[..], &["--report", "second.json"]].concat(),
        )
        .await;
    assert_eq!(code(&second), 75, "busy, try later");
    assert!(
        stderr(&second).contains("twice.shard-2-of-3.imsreg-state.jsonl"),
        "{}",
        stderr(&second)
    );
    assert!(!world.path("second.json").exists());

    // Another shard of the same manifest is not held up by it.
    let other = world
        .run(
            &manifest,
            &[
                "--shard",
                "1/3",
                "--no-preflight",
                "--dry-run",
                "--no-progress",
            ],
        )
        .await;
    assert_eq!(code(&other), 0, "{}", stderr(&other));
    assert!(stdout(&other).contains("shard           1/3"));

    first.start_kill().unwrap();
    let _ = first.wait().await;
    assert_eq!(
        world.stats().accepted_registers(),
        members(&ids, shard("2/3")).len() as u64,
        "the second run sent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_started_twice_with_separate_journals_submits_nothing_twice() {
    let world = World::start(quick_jobs());
    let objects: Vec<String> = (0..30).map(|i| format!("exports/disk-{i}.qcow2")).collect();
    let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
    let (manifest, ids) = world.manifest("machines.yaml", &refs, FAST);
    let of = shard("1/2");
    // Two machines without a shared journal: each its own --state.
    let on_machine = |name: &str| JobOptions {
        journal: JournalChoice::At(world.path(&format!("{name}.jsonl"))),
        ..shard_options(&world, &manifest, &format!("{name}.json"), Some(of))
    };
    let (a, b) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(
            job::run(
                on_machine("machine-a"),
                Arc::new(Recorder::default()),
                CancellationToken::new()
            ),
            job::run(
                on_machine("machine-b"),
                Arc::new(Recorder::default()),
                CancellationToken::new()
            ),
        )
    })
    .await
    .expect("both runs finished");
    // The one that lost the race for an image found it no longer queued and followed it.
    assert_eq!(ran(a.unwrap()).verdict, Verdict::AllRegistered);
    assert_eq!(ran(b.unwrap()).verdict, Verdict::AllRegistered);

    let stats = world.stats();
    let submitted: BTreeMap<&str, u64> = stats
        .submissions
        .iter()
        .map(|(id, n)| (id.as_str(), *n))
        .collect();
    let expected: BTreeMap<&str, u64> = members(&ids, of)
        .iter()
        .map(|id| (ids.iter().find(|x| *x == id).unwrap().as_str(), 1))
        .collect();
    assert_eq!(
        submitted, expected,
        "each image of the shard registered exactly once"
    );

    // A third look, on yet another machine: everything is there.
    let third = ran(job::run(
        on_machine("machine-c"),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap());
    assert_eq!(third.verdict, Verdict::AllRegistered);
    assert!(
        third
            .report
            .images
            .iter()
            .all(|r| r.status == ImageOutcome::AlreadyRegistered)
    );
    assert_eq!(
        world.stats().accepted_registers(),
        members(&ids, of).len() as u64
    );
}

/// Writes a shard report of `lines` (every image registered) to `dir/name` and returns it.
fn write_shard_report(
    dir: &Path,
    name: &str,
    digest: &str,
    of: Option<(u32, u32)>,
    lines: &[usize],
    status: &str,
) -> PathBuf {
    let images: Vec<Value> = lines
        .iter()
        .map(|&line| {
            serde_json::json!({
                "image_id": image_id(line), "image_url": "bucket-e2e:x.qcow2", "name": null,
                "format": "qcow2", "status": status, "job_id": null, "error_code": null,
                "error_message": null, "attempts": 0, "submitted_at": null, "finished_at": null,
                "duration_s": null, "size_bytes": null, "line": line, "created": false,
            })
        })
        .collect();
    let registered = if status == "registered" {
        lines.len()
    } else {
        0
    };
    let report = serde_json::json!({
        "imsreg_version": imsreg::VERSION,
        "manifest": "m.yaml",
        "manifest_sha256": digest,
        "shard": of.map(|(index, total)| serde_json::json!({"index": index, "total": total, "scheme": "hash-v1"})),
        "started_at": "2026-12-01T10:00:00Z",
        "finished_at": "2026-12-01T10:05:00Z",
        "settings": {
            "endpoint": "http://127.0.0.1:1", "region": null, "project_id": null,
            "concurrency": 2, "max_active_jobs": 5, "submit_rate": 1.0, "query_rate": 5.0,
            "poll_interval_s": 10.0, "job_timeout_s": 7200.0, "dry_run": false,
        },
        "summary": {
            "total": lines.len(), "registered": registered, "already_registered": 0,
            "failed": lines.len() - registered, "invalid": 0, "pending": 0, "cancelled": 0,
            "unreachable": 0, "preflight_failed": 0, "total_bytes": 0, "registered_bytes": 0,
            "created": 0,
        },
        "images": images,
    });
    common::assert_matches_schema(&report);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    path
}

fn merge_command(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(["report", "merge"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn report_merge_exits_as_the_whole_run_would_and_refuses_what_does_not_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let digest = "a".repeat(64);
    let other_digest = "b".repeat(64);
    write_shard_report(d, "s1.json", &digest, Some((1, 3)), &[3, 9], "registered");
    write_shard_report(d, "s2.json", &digest, Some((2, 3)), &[5], "registered");
    write_shard_report(d, "s3.json", &digest, Some((3, 3)), &[4, 7], "registered");
    write_shard_report(
        d,
        "s3-failed.json",
        &digest,
        Some((3, 3)),
        &[4, 7],
        "failed",
    );
    write_shard_report(
        d,
        "s3-other.json",
        &other_digest,
        Some((3, 3)),
        &[4, 7],
        "registered",
    );
    write_shard_report(d, "whole.json", &digest, None, &[3, 4, 5], "registered");

    let all_good = merge_command(
        d,
        &[
            "s2.json", "s3.json", "s1.json", "--report", "all.json", "--report", "all.csv",
        ],
    );
    assert_eq!(code(&all_good), 0, "{}", stderr(&all_good));
    let all = read_report(&d.join("all.json"));
    let lines: Vec<u64> = all["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 7, 9], "manifest order");
    assert_eq!(all["summary"]["registered"], 5);
    assert!(d.join("all.csv").exists());

    let some_failed = merge_command(
        d,
        &["s1.json", "s2.json", "s3-failed.json", "--report", "f.json"],
    );
    assert_eq!(code(&some_failed), 1, "as a run with failed images exits");
    assert_eq!(read_report(&d.join("f.json"))["summary"]["failed"], 2);

    // YAML reports merge too (read by their extension).
    let s2: Value = serde_json::from_slice(&std::fs::read(d.join("s2.json")).unwrap()).unwrap();
    std::fs::write(d.join("s2.yaml"), serde_yaml::to_string(&s2).unwrap()).unwrap();
    let from_yaml = merge_command(d, &["s1.json", "s2.yaml", "s3.json", "--report", "y.json"]);
    assert_eq!(code(&from_yaml), 0, "{}", stderr(&from_yaml));
    assert_eq!(read_report(&d.join("y.json"))["images"], all["images"]);

    let alone = merge_command(d, &["whole.json", "--report", "w.md"]);
    assert_eq!(code(&alone), 0, "{}", stderr(&alone));

    let refused = [
        (
            vec!["s1.json", "s2.json", "s3-other.json"],
            vec!["s1.json", "s3-other.json", "different manifests"],
        ),
        (vec!["s1.json", "s3.json"], vec!["missing", "2/3"]),
        (
            vec!["s1.json", "s2.json", "s3.json", "s3-failed.json"],
            vec!["3/3", "2 times", "s3.json", "s3-failed.json"],
        ),
        (vec!["s1.json", "whole.json"], vec!["1/3", "1/1"]),
        (
            vec!["s1.json", "s2.json", "nowhere.json"],
            vec!["nowhere.json"],
        ),
        (
            vec!["s1.json", "s2.json", "s3.json", "--report", "s2.json"],
            vec!["s2.json", "overwrite"],
        ),
    ];
    for (args, words) in refused {
        let mut args = args.clone();
        if !args.contains(&"--report") {
            args.extend(["--report", "out.json"]);
        }
        let output = merge_command(d, &args);
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
        for word in words {
            assert!(
                stderr(&output).contains(word),
                "{args:?}: {word}: {}",
                stderr(&output)
            );
        }
        assert!(!d.join("out.json").exists(), "{args:?} wrote a report");
    }
    let not_json = std::fs::write(d.join("junk.json"), "{\"imsreg_version\": 1}");
    not_json.unwrap();
    let junk = merge_command(d, &["junk.json", "--report", "out.json"]);
    assert_eq!(code(&junk), 2);
    assert!(stderr(&junk).contains("junk.json"), "{}", stderr(&junk));
}

#[test]
fn the_shard_flag_refuses_what_is_not_k_of_n() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    common::job::write_manifest(&path, &[image_id(1)], "  submit_rate: 1");
    for (value, words) in [
        ("0/3", "counts from 1"),
        ("4/3", "1 to 3"),
        ("3", "K/N"),
        ("1/0", "at least 1"),
    ] {
        for command in ["run", "preflight", "status"] {
            let output = std::process::Command::new(BIN)
                .current_dir(dir.path())
                .env_clear()
                .args([command, "--shard", value])
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{command} --shard {value}");
            let err = String::from_utf8_lossy(&output.stderr);
            assert!(err.contains(words), "{command} --shard {value}: {err}");
        }
    }
}
