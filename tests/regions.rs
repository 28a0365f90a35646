//! One manifest across regions (issue 15), the whole job in-process ([`imsreg::job::run`]):
//! two regions against two simulators (endpoints under `settings.regions.<r>.endpoint`, one
//! AK/SK, a project per region), one of them throttling registrations hard while the other
//! runs at its own rate; the report's region of each image and its counts per region; a region
//! without a project ID; the dry run per region; and `--simulate` with entries in two regions,
//! some to create.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::e2e::{assert_no_double_submission, image_id, quick_jobs};
use common::job::{Recorder, credentials_environment};
use common::read_report;
use imsreg::job::{self, JobError, JobOptions, JournalChoice, MetricsOptions, Outcome, Verdict};
use imsreg::sim::{RateLimit, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const FAST_REGION: &str = "ap-southeast-1";
const SLOW_REGION: &str = "eu-west-101";
const FAST_PROJECT: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const SLOW_PROJECT: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

/// A simulator of one region: quick jobs, the shared AK/SK, its own project.
fn region_sim(project_id: &str, throttled: bool) -> SimHandle {
    let mut config: SimConfig = quick_jobs();
    config.credentials.project_id = project_id.to_string();
    if throttled {
        config.rate_limits.insert(
            "register".into(),
            RateLimit {
                rate: 2.0,
                burst: 1,
                retry_after: None,
            },
        );
    }
    Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A manifest of `count` images alternating between the fast and the slow region (even
/// indexes fast), the regions' endpoints and projects under `settings.regions`.
fn two_region_manifest(path: &Path, fast: &SimHandle, slow: &SimHandle, count: usize) {
    let mut text = format!(
        "version: 1\nsettings:\n  poll_interval: 100ms\n  submit_rate: 50\n  query_rate: 200\n  \
         preflight: false\n  regions:\n    {FAST_REGION}:\n      endpoint: {}\n      project_id: \
         {FAST_PROJECT}\n    {SLOW_REGION}:\n      endpoint: {}\n      project_id: {SLOW_PROJECT}\n\
         images:\n",
        fast.url(),
        slow.url()
    );
    for index in 0..count {
        let region = if index % 2 == 0 {
            FAST_REGION
        } else {
            SLOW_REGION
        };
        text.push_str(&format!(
            "  - image_id: {}\n    image_url: bucket-e2e:exports/disk-{index}.qcow2\n    region: \
             {region}\n",
            image_id(index)
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn options(manifest: &Path, report: &Path) -> JobOptions {
    let creds = imsreg::sim::SimConfig::default().credentials;
    JobOptions {
        manifest: manifest.to_path_buf(),
        reports: vec![report.to_path_buf()],
        journal: JournalChoice::NextToManifest,
        // One AK/SK for every region; the variable's project is the default region's only.
        environment: credentials_environment(&creds.ak, &creds.sk, FAST_PROJECT),
        ..JobOptions::default()
    }
}

fn finished_at(record: &Value) -> DateTime<Utc> {
    record["finished_at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_region_does_not_hold_back_the_other() {
    let fast = region_sim(FAST_PROJECT, false);
    let slow = region_sim(SLOW_PROJECT, true);
    let count = 12;
    let ids: Vec<String> = (0..count).map(image_id).collect();
    fast.add_images(ids.iter().step_by(2).cloned());
    slow.add_images(ids.iter().skip(1).step_by(2).cloned());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("two-regions.yaml");
    two_region_manifest(&manifest, &fast, &slow, count);
    let report_path = dir.path().join("report.json");

    let recorder = Arc::new(Recorder::default());
    let outcome = job::run(
        options(&manifest, &report_path),
        recorder.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.verdict(), Verdict::AllRegistered);
    assert_eq!(
        recorder.engine_starts().len(),
        1,
        "the display hears of every region's images at once"
    );

    // Each simulator registered its own region's images, each exactly once.
    let (fast_stats, slow_stats) = (fast.stats(), slow.stats());
    assert_no_double_submission(&fast_stats);
    assert_no_double_submission(&slow_stats);
    let submitted = |stats: &imsreg::sim::SimStats| -> BTreeSet<String> {
        stats.submissions.keys().cloned().collect()
    };
    let fast_ids: BTreeSet<String> = ids.iter().step_by(2).cloned().collect();
    let slow_ids: BTreeSet<String> = ids.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(submitted(&fast_stats), fast_ids);
    assert_eq!(submitted(&slow_stats), slow_ids);
    assert!(fast_stats.submissions.values().all(|&n| n == 1));
    assert!(slow_stats.submissions.values().all(|&n| n == 1));
    // The slow region was throttled hard; the fast one's register calls never.
    assert!(
        slow_stats
            .throttled_per_api
            .get("register")
            .copied()
            .unwrap_or(0)
            > 0,
        "{slow_stats:?}"
    );
    assert_eq!(
        fast_stats
            .throttled_per_api
            .get("register")
            .copied()
            .unwrap_or(0),
        0,
        "{fast_stats:?}"
    );

    // The report: manifest order, each image's region and project, counts per region.
    let report = read_report(&report_path);
    let images = report["images"].as_array().unwrap();
    let order: Vec<&str> = images
        .iter()
        .map(|r| r["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for (index, record) in images.iter().enumerate() {
        let (region, project) = if index % 2 == 0 {
            (FAST_REGION, FAST_PROJECT)
        } else {
            (SLOW_REGION, SLOW_PROJECT)
        };
        assert_eq!(record["region"], region, "{record}");
        assert_eq!(record["project_id"], project, "{record}");
        assert_eq!(record["status"], "registered", "{record}");
    }
    for region in [FAST_REGION, SLOW_REGION] {
        let counts = &report["summary"]["regions"][region];
        assert_eq!(counts["total"], 6, "{region}: {counts}");
        assert_eq!(counts["registered"], 6, "{region}: {counts}");
        assert_eq!(counts["failed"], 0, "{region}: {counts}");
    }
    let used: BTreeMap<String, Value> = report["settings"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["region"].as_str().unwrap().to_string(), s.clone()))
        .collect();
    assert_eq!(used.len(), 2);
    assert_eq!(used[SLOW_REGION]["project_id"], SLOW_PROJECT);
    assert!(
        used[SLOW_REGION]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&slow.url())
    );

    // The fast region was done before the throttled one's last image.
    let last = |region: &str| {
        images
            .iter()
            .filter(|r| r["region"] == region)
            .map(finished_at)
            .max()
            .unwrap()
    };
    assert!(
        last(FAST_REGION) < last(SLOW_REGION),
        "fast region last at {}, slow region last at {}",
        last(FAST_REGION),
        last(SLOW_REGION)
    );

    // One journal for the whole manifest: a second run settles everything from it.
    let again = job::run(
        options(&manifest, &report_path),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(again.verdict(), Verdict::AllRegistered);
    assert_eq!(
        fast.stats().accepted_registers() + slow.stats().accepted_registers(),
        count as u64,
        "nothing submitted again"
    );
    fast.shutdown().await;
    slow.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_plans_each_region_against_its_own_endpoint() {
    let fast = region_sim(FAST_PROJECT, false);
    let slow = region_sim(SLOW_PROJECT, false);
    let ids: Vec<String> = (0..4).map(image_id).collect();
    fast.add_images(ids.iter().step_by(2).cloned());
    slow.add_images(ids.iter().skip(1).step_by(2).cloned());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("two-regions.yaml");
    two_region_manifest(&manifest, &fast, &slow, 4);
    let options = JobOptions {
        dry_run: true,
        ..options(&manifest, &dir.path().join("report.json"))
    };
    let outcome = job::run(
        options,
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let Outcome::Planned(plan) = outcome else {
        panic!("a dry run plans");
    };
    assert_eq!(plan.verdict, Verdict::AllRegistered);
    assert_eq!(plan.images.len(), 4);
    assert_eq!(
        plan.statuses.len(),
        4,
        "every image's status, each from its region"
    );
    let text = plan.render();
    assert!(
        text.contains(&format!("region          {FAST_REGION} at")),
        "{text}"
    );
    assert!(
        text.contains(&format!("region          {SLOW_REGION} at")),
        "{text}"
    );
    assert_eq!(fast.stats().accepted_registers(), 0);
    assert_eq!(slow.stats().accepted_registers(), 0);
}

#[tokio::test]
async fn a_region_without_a_project_id_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(
        &manifest,
        format!(
            "version: 1\nsettings:\n  region: {FAST_REGION}\n  project_id: {FAST_PROJECT}\n\
             images:\n  - image_id: {}\n    image_url: b01:a.qcow2\n  - image_id: {}\n    \
             image_url: b01:b.qcow2\n    region: la-south-2\n",
            image_id(0),
            image_id(1)
        ),
    )
    .unwrap();
    let err = job::run(
        options(&manifest, &dir.path().join("r.json")),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, JobError::Target(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("region la-south-2"), "{message}");
    assert!(message.contains("settings.regions.la-south-2"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_every_region_with_entries_to_create() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("sim.yaml");
    let mut text = format!(
        "version: 1\nsettings:\n  region: {FAST_REGION}\n  poll_interval: 100ms\n  submit_rate: \
         50\n  query_rate: 200\n  regions:\n    {SLOW_REGION}:\n      submit_rate: 20\n\
         defaults:\n  os_version: Ubuntu 22.04 server 64bit\nimages:\n"
    );
    for index in 0..4 {
        let region = if index % 2 == 0 {
            FAST_REGION
        } else {
            SLOW_REGION
        };
        text.push_str(&format!(
            "  - image_id: {}\n    image_url: bkt-{region}:disk-{index}.qcow2\n    region: \
             {region}\n  - name: new-{index}\n    image_url: bkt-{region}:new-{index}.qcow2\n    \
             region: {region}\n",
            image_id(index)
        ));
    }
    std::fs::write(&manifest, text).unwrap();
    let report_path = dir.path().join("report.json");
    let metrics_path = dir.path().join("imsreg.prom");
    let options = JobOptions {
        simulate: true,
        metrics: MetricsOptions {
            file: Some(metrics_path.clone()),
            listen: None,
        },
        ..options(&manifest, &report_path)
    };
    let outcome = job::run(
        options,
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.verdict(), Verdict::AllRegistered);
    let report = read_report(&report_path);
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 8);
    for (index, record) in images.iter().enumerate() {
        let region = if (index / 2) % 2 == 0 {
            FAST_REGION
        } else {
            SLOW_REGION
        };
        assert_eq!(record["region"], region, "{record}");
        assert_eq!(record["status"], "registered", "{record}");
        assert_eq!(record["created"], index % 2 == 1, "{record}");
    }
    for region in [FAST_REGION, SLOW_REGION] {
        let counts = &report["summary"]["regions"][region];
        assert_eq!(counts["total"], 4, "{region}: {counts}");
        assert_eq!(counts["registered"], 4, "{region}: {counts}");
        assert_eq!(counts["created"], 2, "{region}: {counts}");
    }
    let used = report["settings"]["regions"].as_array().unwrap();
    assert_eq!(used.len(), 2);
    let endpoints: BTreeSet<&str> = used
        .iter()
        .map(|s| s["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints.len(),
        2,
        "one simulator per region: {endpoints:?}"
    );
    let slow = used.iter().find(|s| s["region"] == SLOW_REGION).unwrap();
    assert_eq!(slow["submit_rate"], 20.0);

    // The metrics' `region` label follows each image's region.
    let metrics = std::fs::read_to_string(&metrics_path).unwrap();
    for region in [FAST_REGION, SLOW_REGION] {
        let line = format!("imsreg_images{{status=\"registered\",region=\"{region}\"}} 4\n");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        let line = format!("imsreg_images{{status=\"in_progress\",region=\"{region}\"}} 0\n");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_checks_each_region_in_its_own_obs() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("sim.yaml");
    let mut text = format!("version: 1\nsettings:\n  region: {FAST_REGION}\nimages:\n");
    for index in 0..4 {
        let region = if index % 2 == 0 {
            FAST_REGION
        } else {
            SLOW_REGION
        };
        text.push_str(&format!(
            "  - image_id: {}\n    image_url: bkt-{region}:disk-{index}.qcow2\n    region: \
             {region}\n",
            image_id(index)
        ));
    }
    std::fs::write(&manifest, text).unwrap();
    let options = job::PreflightOptions {
        manifest: manifest.clone(),
        simulate: true,
        ..job::PreflightOptions::default()
    };
    let outcome = job::preflight::preflight(&options, &job::Unobserved, CancellationToken::new())
        .await
        .unwrap();
    let lines: Vec<usize> = outcome.report.verdicts.iter().map(|v| v.line).collect();
    assert!(lines.is_sorted(), "manifest order: {lines:?}");
    assert_eq!(outcome.report.verdicts.len(), 4);
    // Each bucket is in its entry's region: no bucket-region failure.
    assert_eq!(outcome.report.failed(), 0, "{:?}", outcome.report.verdicts);
    assert_eq!(
        outcome.endpoint.split(", ").count(),
        2,
        "{}",
        outcome.endpoint
    );
}

#[test]
fn the_terminal_summary_counts_per_region() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("sim.yaml");
    let mut text = format!("version: 1\nsettings:\n  region: {FAST_REGION}\nimages:\n");
    for index in 0..4 {
        let region = if index < 3 { FAST_REGION } else { SLOW_REGION };
        text.push_str(&format!(
            "  - image_id: {}\n    image_url: bkt:disk-{index}.qcow2\n    region: {region}\n",
            image_id(index)
        ));
    }
    std::fs::write(&manifest, text).unwrap();
    let report = dir.path().join("r.csv");
    let output = std::process::Command::new(common::e2e::BIN)
        .arg("run")
        .arg(&manifest)
        .args([
            "--simulate",
            "--no-progress",
            "--poll-interval",
            "50ms",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "By region:\n  {FAST_REGION}: 3/3 registered\n  {SLOW_REGION}: 1/1 registered\n"
        )),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(&report).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",region,project_id"),
        "{csv}"
    );
    assert_eq!(csv.matches(&format!(",{SLOW_REGION},")).count(), 1, "{csv}");
}
