//! Metrics of a run end to end (issue 15): [`imsreg::job::run`] in-process against the
//! simulator over loopback, with server errors, 429s and failing jobs, and `--metrics-file` /
//! `--metrics-listen` on. The file's final counts equal the report's (images by status,
//! submissions, job durations, bytes), its retries and 429s equal the events the run told;
//! the file is never seen half-written; `/metrics` answers during the run; the last success
//! survives a failed run; a metrics file that cannot be written (or an address that cannot be
//! bound) stops the job before any request. (`tests/metrics_check.sh` parses a file with the
//! official Python parser.)

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::e2e::{FAST, World, objects, quick_jobs, refs};
use common::job::Recorder;
use common::read_report;
use imsreg::job::{self, Finished, JobError, JobObserver, JobOptions, Outcome, Verdict};
use imsreg::manifest::Manifest;
use imsreg::run::{EventSink, PlannedImage, RunConfig, RunEvent};
use imsreg::sim::{DurationDist, RateLimit, SimConfig};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Every sample of a metrics text by its series (`name{labels}` as written), checking that
/// each line is a comment or a complete sample.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "a partial text: {text:?}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a value: {line:?}"));
            (series.to_string(), value)
        })
        .collect()
}

fn ran(outcome: Outcome) -> Box<Finished> {
    match outcome {
        Outcome::Ran(finished) => finished,
        Outcome::Planned(plan) => panic!("expected a run, got a plan: {plan:?}"),
    }
}

/// The recorder of tests/common, plus the address `/metrics` is served at.
#[derive(Default)]
struct Observer {
    recorder: Recorder,
    listening: Mutex<Option<watch::Sender<Option<SocketAddr>>>>,
}

impl EventSink for Observer {
    fn event(&self, event: &RunEvent) {
        self.recorder.event(event);
    }
}

impl JobObserver for Observer {
    fn manifest_checked(&self, manifest: &Manifest) {
        self.recorder.manifest_checked(manifest);
    }

    fn engine_starting(&self, images: &[PlannedImage], config: &RunConfig) {
        self.recorder.engine_starting(images, config);
    }

    fn metrics_listening(&self, address: SocketAddr) {
        if let Some(sender) = self.listening.lock().unwrap().as_ref() {
            let _ = sender.send(Some(address));
        }
    }
}

/// A simulator that errs, throttles register calls and fails some jobs.
fn faulty() -> SimConfig {
    let mut config = quick_jobs();
    config.seed = 7;
    config.failure_fraction = 0.3;
    config.faults.error_500 = 0.1;
    config.rate_limits.insert(
        "register".into(),
        RateLimit {
            rate: 4.0,
            burst: 2,
            retry_after: Some(1),
        },
    );
    config
}

/// The job's options with the preflight on (sizes known) and the metrics file in the folder.
fn options(world: &World, manifest: &Path) -> JobOptions {
    let mut options = world.job_options(manifest, "report.json");
    options.flags.preflight = None;
    options.flags.obs_endpoint = Some(world.sim.url());
    options.metrics.file = Some(world.path("imsreg.prom"));
    options
}

fn count(report: &Value, wanted: impl Fn(&Value) -> bool) -> f64 {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| wanted(record))
        .count() as f64
}

fn sum_of(metrics: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| series.starts_with(prefix))
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_holds_the_reports_counts_and_the_runs_retries_and_429s() {
    let world = World::start(faulty());
    let (manifest, _ids) = world.manifest("wave.yaml", &refs(&objects(12)), FAST);
    let observer = Arc::new(Observer::default());
    let path = world.path("imsreg.prom");

    // While the run lasts, every read of the file is a whole text, and nothing the collector
    // reads (`*.prom`) is anything but the file itself.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, path, dir) = (done.clone(), path.clone(), world.dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let metrics = samples(&text);
                    assert!(metrics.contains_key("imsreg_run_start_timestamp_seconds"));
                    assert!(text.contains("imsreg_build_info{"), "{text}");
                    reads += 1;
                }
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let name = entry.unwrap().file_name().into_string().unwrap();
                    assert!(
                        name == "imsreg.prom" || !name.ends_with(".prom"),
                        "{name} would be read by the collector"
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            reads
        })
    };

    let outcome = job::run(
        options(&world, &manifest),
        observer.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    done.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert!(reads > 0, "the file exists from the run's start");

    let finished = ran(outcome);
    assert_eq!(finished.metrics_error, None);
    assert_eq!(finished.verdict, Verdict::NotAllRegistered);
    let report = read_report(&world.path("report.json"));
    let metrics = samples(&std::fs::read_to_string(&path).unwrap());

    // Images by status: the report's counts, in the run's region; none in progress.
    let region = report["settings"]["region"].as_str().unwrap_or("");
    let summary = &report["summary"];
    for status in [
        "registered",
        "already_registered",
        "failed",
        "invalid",
        "pending",
        "cancelled",
        "unreachable",
        "preflight_failed",
    ] {
        let series = format!("imsreg_images{{status=\"{status}\",region=\"{region}\"}}");
        assert_eq!(
            metrics[&series],
            summary[status].as_f64().unwrap(),
            "{series}"
        );
    }
    let in_progress = format!("imsreg_images{{status=\"in_progress\",region=\"{region}\"}}");
    assert_eq!(metrics[&in_progress], 0.0);
    assert_eq!(
        sum_of(&metrics, "imsreg_images{"),
        summary["total"].as_f64().unwrap()
    );
    assert!(summary["registered"].as_u64().unwrap() > 0);
    assert!(summary["failed"].as_u64().unwrap() > 0, "failing jobs");

    // Submissions: every image whose register call was answered with a job ID in this run
    // (as the simulator counts them).
    let submitted = count(&report, |r| {
        r["attempts"].as_u64().unwrap() > 0 && !r["job_id"].is_null()
    });
    assert_eq!(metrics["imsreg_registrations_submitted_total"], submitted);
    assert_eq!(submitted, world.stats().accepted_registers() as f64);

    // Job durations: one observation per image with a duration, summing to the report's.
    let durations: Vec<f64> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["duration_s"].as_f64())
        .collect();
    assert_eq!(
        metrics["imsreg_job_duration_seconds_count"],
        durations.len() as f64
    );
    let total: f64 = durations.iter().sum();
    assert!((metrics["imsreg_job_duration_seconds_sum"] - total).abs() < 1e-6);
    assert_eq!(
        metrics["imsreg_job_duration_seconds_bucket{le=\"+Inf\"}"],
        durations.len() as f64
    );

    // Bytes: the sizes the preflight learned, of the images this run registered.
    let registered_bytes: u64 = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "registered")
        .map(|r| r["size_bytes"].as_u64().unwrap())
        .sum();
    assert!(registered_bytes > 0);
    assert_eq!(
        metrics["imsreg_registered_bytes_total"],
        registered_bytes as f64
    );

    // Retries and 429s: what the run told, by API; the faults made both happen.
    let events = observer.recorder.events();
    let retries = events
        .iter()
        .filter(|e| matches!(e, RunEvent::Retrying { .. }))
        .count() as f64;
    let throttled = events
        .iter()
        .filter(|e| matches!(e, RunEvent::Throttled { .. }))
        .count() as f64;
    assert!(retries > 0.0 && throttled > 0.0);
    assert_eq!(sum_of(&metrics, "imsreg_retries_total{"), retries);
    assert_eq!(sum_of(&metrics, "imsreg_throttled_total{"), throttled);
    assert!(metrics["imsreg_throttled_total{api=\"register\"}"] > 0.0);

    assert_eq!(metrics["imsreg_jobs_in_flight"], 0.0);
    let started: chrono::DateTime<chrono::Utc> =
        report["started_at"].as_str().unwrap().parse().unwrap();
    let start = started.timestamp_micros() as f64 / 1e6;
    assert!((metrics["imsreg_run_start_timestamp_seconds"] - start).abs() < 1e-3);
    assert!(metrics["imsreg_last_progress_timestamp_seconds"] > start);
    let version = report["imsreg_version"].as_str().unwrap();
    assert_eq!(
        metrics[&format!("imsreg_build_info{{version=\"{version}\"}}")],
        1.0
    );
    // Not every image registered: no last success.
    assert!(!metrics.keys().any(|s| s.starts_with("imsreg_last_success")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_is_recorded_and_kept_by_a_later_failed_run_of_the_manifest() {
    let world = World::start(quick_jobs());
    let (manifest, _ids) = world.manifest("wave.yaml", &refs(&objects(3)), FAST);
    let path = world.path("imsreg.prom");
    let last_success = "imsreg_last_success_timestamp_seconds{manifest=\"wave.yaml\"}";

    let first = ran(job::run(
        options(&world, &manifest),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap());
    assert_eq!(first.verdict, Verdict::AllRegistered);
    let metrics = samples(&std::fs::read_to_string(&path).unwrap());
    let finished_at = first.report.finished_at.timestamp_micros() as f64 / 1e6;
    assert!((metrics[last_success] - finished_at).abs() < 1e-3);

    // The same manifest again, now with an image IMS does not have: the run fails, the file
    // keeps the success of the first.
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "  - image_id: 0f3c1a2e-2222-4a2b-9c3d-999999999999\n    image_url: bucket-e2e:exports/gone.qcow2\n",
    );
    std::fs::write(&manifest, text).unwrap();
    world.add_objects(&manifest);
    let second = ran(job::run(
        options(&world, &manifest),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap());
    assert_ne!(second.verdict, Verdict::AllRegistered);
    let metrics = samples(&std::fs::read_to_string(&path).unwrap());
    assert!((metrics[last_success] - finished_at).abs() < 1e-3);
    assert_eq!(
        metrics["imsreg_images{status=\"already_registered\",region=\"\"}"],
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_while_the_run_lasts() {
    let mut config = quick_jobs();
    config.job_duration = DurationDist::Fixed(Duration::from_secs(2));
    let world = World::start(config);
    let (manifest, _ids) = world.manifest("wave.yaml", &refs(&objects(4)), FAST);
    let (sender, mut address) = watch::channel(None);
    let observer = Arc::new(Observer {
        listening: Mutex::new(Some(sender)),
        ..Observer::default()
    });
    let mut options = world.job_options(&manifest, "report.json");
    options.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let run = tokio::spawn(job::run(
        options,
        observer.clone(),
        CancellationToken::new(),
    ));

    let address = *address
        .wait_for(Option::is_some)
        .await
        .expect("the job tells where it serves");
    let address = address.unwrap();
    // Wait until the engine has the images (the jobs then run for 2 s).
    observer.recorder.engine_started.notified().await;
    let answer = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let metrics = samples(&answer.text().await.unwrap());
    assert_eq!(sum_of(&metrics, "imsreg_images{"), 4.0);
    assert!(metrics.contains_key("imsreg_jobs_in_flight"));
    let elsewhere = reqwest::get(format!("http://{address}/other"))
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);

    let finished = ran(run.await.unwrap().unwrap());
    assert_eq!(finished.verdict, Verdict::AllRegistered);
    // The endpoint ends with the run.
    assert!(
        reqwest::get(format!("http://{address}/metrics"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_file_that_cannot_be_written_stops_the_job_before_any_request() {
    let world = World::start(quick_jobs());
    let (manifest, _ids) = world.manifest("wave.yaml", &refs(&objects(2)), FAST);
    let mut options = options(&world, &manifest);
    options.metrics.file = Some(world.path("no-such-dir/imsreg.prom"));
    let err = job::run(
        options,
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Metrics {
                flag: "--metrics-file",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert_eq!(world.stats().accepted_registers(), 0);
    assert!(!world.path("report.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_that_cannot_be_bound_stops_the_job_before_any_request() {
    let world = World::start(quick_jobs());
    let (manifest, _ids) = world.manifest("wave.yaml", &refs(&objects(2)), FAST);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut options = world.job_options(&manifest, "report.json");
    options.metrics.listen = Some(taken.local_addr().unwrap());
    let err = job::run(
        options,
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Metrics {
                flag: "--metrics-listen",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(world.stats().accepted_registers(), 0);
    assert!(!world.path("report.json").exists());
}
