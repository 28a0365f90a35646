//! The whole job in-process (issue 12): [`imsreg::job::run`] called as a library, against the
//! simulator over real HTTP on loopback, with no binary spawned. Covers a full registration
//! (report, journal, manifest order), a re-run settled from the journal, `--skip-invalid`, the
//! dry run, the journal lock, an endpoint where nothing listens (run and dry run, on tokio's
//! paused clock so the status check's retries take no real time), cancellation before the
//! start and a rejected secret key. An observer records what the job told it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::e2e::{
    FAST, World, assert_no_double_submission, image_id, objects, quick_jobs, refs, total_requests,
};
use common::job::{Checked, Recorder, credentials_environment, options_for, write_manifest};
use common::read_report;
use imsreg::ims::types::ImageStatus;
use imsreg::job::{self, Finished, JobError, Outcome, Verdict};
use imsreg::report::ImageOutcome;
use imsreg::run::retry::MAX_ATTEMPTS;
use imsreg::run::{Action, CloudStatus, RunEvent, action_for};
use imsreg::sim::{DurationDist, SimConfig};
use imsreg::state::{self, JournalStatus};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails (not a speed check).
const PATIENCE: Duration = Duration::from_secs(30);

fn ran(outcome: Outcome) -> Box<Finished> {
    match outcome {
        Outcome::Ran(finished) => finished,
        Outcome::Planned(plan) => panic!("expected a run, got a plan: {plan:?}"),
    }
}

/// `(image_id, status)` of every line of a JSON report, in the report's order.
fn report_lines(report: &Value) -> Vec<(String, String)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["image_id"].as_str().unwrap().to_string(),
                line["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all(ids: &[String], status: &str) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (id.clone(), status.to_string()))
        .collect()
}

/// A loopback address where nothing listens: a port just bound and released.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The final outcome the journal at `path` holds for each of `ids` (None: nothing final).
fn journaled_outcomes(path: &Path, ids: &[String]) -> Vec<Option<JournalStatus>> {
    let replayed = state::replay(path).unwrap();
    ids.iter()
        .map(|id| replayed.images.get(id).and_then(|image| image.outcome))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_is_registered_with_report_and_journal_in_manifest_order() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(5)), FAST);
    let recorder = Arc::new(Recorder::default());

    let outcome = job::run(
        world.job_options(&manifest, "report.json"),
        recorder.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let finished = ran(outcome);
    assert_eq!(finished.verdict, Verdict::AllRegistered);
    assert_eq!(finished.written, [world.path("report.json")]);
    assert_eq!(finished.report_error, None);
    assert_eq!(finished.journal_error, None);
    assert_eq!(finished.report.summary.registered, 5);

    let report = read_report(&world.path("report.json"));
    assert_eq!(report_lines(&report), all(&ids, "registered"));
    assert_eq!(report["summary"]["total"], 5);
    let job_ids: Vec<String> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["job_id"].as_str().unwrap().to_string())
        .collect();

    // The journal holds every image as registered, with the job the report names.
    let journal = state::default_path(&manifest);
    let replayed = state::replay(&journal).unwrap();
    for (id, job_id) in ids.iter().zip(&job_ids) {
        let image = &replayed.images[id];
        assert_eq!(image.outcome, Some(JournalStatus::Registered), "{id}");
        assert_eq!(image.job_id.as_deref(), Some(job_id.as_str()), "{id}");
    }

    let stats = world.stats();
    assert_eq!(stats.accepted_registers(), 5);
    assert_no_double_submission(&stats);

    assert_eq!(
        recorder.checked(),
        [Checked {
            valid: 5,
            invalid: 0,
            errors: 0
        }]
    );
    assert_eq!(recorder.engine_starts(), [(ids.clone(), 8)]);
    let mut submitting = recorder.submitting();
    submitting.sort();
    assert_eq!(submitting, ids, "one register call per image");
    assert_eq!(
        recorder
            .count(|e| matches!(e, RunEvent::Finished { result, .. } if result.outcome == ImageOutcome::Registered)),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_settles_everything_from_the_journal_without_a_request() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(4)), FAST);
    let first = ran(job::run(
        world.job_options(&manifest, "first.json"),
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap());
    assert_eq!(first.verdict, Verdict::AllRegistered);
    let before = world.stats();

    let recorder = Arc::new(Recorder::default());
    let second = ran(job::run(
        world.job_options(&manifest, "second.json"),
        recorder.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap());

    assert_eq!(second.verdict, Verdict::AllRegistered);
    let after = world.stats();
    assert_eq!(
        after.requests.get("register"),
        before.requests.get("register")
    );
    assert_eq!(
        total_requests(&after),
        total_requests(&before),
        "settled from the journal: no request at all ({:?} -> {:?})",
        before.requests,
        after.requests
    );
    assert_eq!(recorder.engine_starts(), [(Vec::new(), 8)]);
    assert!(recorder.submitting().is_empty());

    let report = read_report(&world.path("second.json"));
    assert_eq!(report_lines(&report), all(&ids, "already_registered"));
    let job_ids = |report: &[imsreg::report::ImageRecord]| -> Vec<Option<String>> {
        report.iter().map(|r| r.job_id.clone()).collect()
    };
    assert_eq!(
        job_ids(&second.report.images),
        job_ids(&first.report.images),
        "the journal's job IDs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_invalid_runs_the_valid_entries_and_keeps_manifest_order() {
    let world = World::start(quick_jobs());
    let ids = vec![image_id(0), image_id(1), image_id(2)];
    let manifest = world.path("mixed.yaml");
    std::fs::write(
        &manifest,
        format!(
            "version: 1\nsettings:\n{FAST}\nimages:\n  - image_id: {}\n    image_url: bucket-e2e:a.qcow2\n  - image_id: {}\n    image_url: \"bucket-e2e:has space.qcow2\"\n  - image_id: {}\n    image_url: bucket-e2e:c.qcow2\n",
            ids[0], ids[1], ids[2]
        ),
    )
    .unwrap();
    world.sim.add_images(ids.clone());

    // Without --skip-invalid nothing is sent.
    let refused = Arc::new(Recorder::default());
    let err = job::run(
        world.job_options(&manifest, "refused.json"),
        refused.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Manifest {
                errors: 1,
                fatal: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--skip-invalid"), "{err}");
    assert_eq!(refused.checked().len(), 1);
    assert!(refused.engine_starts().is_empty());
    assert_eq!(total_requests(&world.stats()), 0);
    assert!(!world.path("refused.json").exists());

    let recorder = Arc::new(Recorder::default());
    let mut options = world.job_options(&manifest, "report.json");
    options.skip_invalid = true;
    let finished = ran(
        job::run(options, recorder.clone(), CancellationToken::new())
            .await
            .unwrap(),
    );

    assert_eq!(finished.verdict, Verdict::NotAllRegistered);
    let report = read_report(&world.path("report.json"));
    assert_eq!(
        report_lines(&report),
        [
            (ids[0].clone(), "registered".to_string()),
            (ids[1].clone(), "invalid".to_string()),
            (ids[2].clone(), "registered".to_string()),
        ]
    );
    assert_eq!(report["images"][1]["error_code"], "MANIFEST.INVALID");
    assert_eq!(
        recorder.checked(),
        [Checked {
            valid: 2,
            invalid: 1,
            errors: 1
        }]
    );
    assert_eq!(
        recorder.engine_starts(),
        [(vec![ids[0].clone(), ids[2].clone()], 8)]
    );
    let stats = world.stats();
    assert_eq!(stats.submissions.get(&ids[1]), None);
    assert_eq!(stats.accepted_registers(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_from_the_cloud_status_and_registers_nothing() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(4)), FAST);
    world.sim.set_image_status(&ids[1], ImageStatus::Active);
    world.sim.set_image_status(&ids[2], ImageStatus::Saving);
    world.sim.set_image_status(&ids[3], ImageStatus::Killed);
    let recorder = Arc::new(Recorder::default());
    let mut options = world.job_options(&manifest, "report.json");
    options.dry_run = true;

    let outcome = job::run(options, recorder.clone(), CancellationToken::new())
        .await
        .unwrap();

    let Outcome::Planned(plan) = outcome else {
        panic!("expected a plan: {outcome:?}");
    };
    assert_eq!(plan.verdict, Verdict::AllRegistered);
    let planned: Vec<String> = plan
        .images
        .iter()
        .map(|i| i.entry.image_id.to_string())
        .collect();
    assert_eq!(planned, ids);
    let actions: Vec<Action> = plan
        .images
        .iter()
        .map(|i| action_for(i, plan.statuses.get(&i.entry.image_id)))
        .collect();
    assert!(matches!(actions[0], Action::Submit), "{actions:?}");
    assert!(
        matches!(actions[1], Action::AlreadyRegistered),
        "{actions:?}"
    );
    assert!(matches!(actions[2], Action::FollowImage), "{actions:?}");
    assert!(matches!(actions[3], Action::Fail { .. }), "{actions:?}");
    assert_eq!(plan.settled, 0);
    let text = plan.render();
    for line in [
        "would submit    1",
        "would skip      1",
        "would poll      1",
        "would fail      1",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }

    let stats = world.stats();
    assert_eq!(stats.requests.get("register"), None, "{:?}", stats.requests);
    assert!(stats.submissions.is_empty());
    assert!(total_requests(&stats) > 0, "the plan read the cloud");
    assert!(
        !world.path("report.json").exists(),
        "a dry run writes no report"
    );
    assert!(
        !state::default_path(&manifest).exists(),
        "a dry run only reads the journal"
    );
    assert_eq!(recorder.checked().len(), 1);
    assert!(recorder.engine_starts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_on_a_held_journal_is_busy() {
    // Jobs that outlast the test: the first run holds the journal until it is cancelled.
    let world = World::start(SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_secs(600)),
        ..SimConfig::default()
    });
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(2)), FAST);
    let holder = Arc::new(Recorder::default());
    let stop_holder = CancellationToken::new();
    // Both futures in this task: the compiler cannot prove `job::run`'s future `Send` (a
    // closure over `&str` in the engine's status check), so `tokio::spawn` refuses it.
    let holding = job::run(
        world.job_options(&manifest, "holder.json"),
        holder.clone(),
        stop_holder.clone(),
    );
    let meanwhile = async {
        tokio::time::timeout(PATIENCE, holder.engine_started.notified())
            .await
            .expect("the first job reached the engine");
        tokio::time::timeout(PATIENCE, async {
            while world.stats().accepted_registers() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the first job submitted both images");

        let second = Arc::new(Recorder::default());
        let err = job::run(
            world.job_options(&manifest, "second.json"),
            second.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        stop_holder.cancel();
        (err, second)
    };
    let (held, (err, second)) =
        tokio::time::timeout(PATIENCE, async { tokio::join!(holding, meanwhile) })
            .await
            .expect("the cancelled job ended");

    assert!(err.is_busy(), "{err:?}");
    let journal = state::default_path(&manifest);
    assert!(
        err.to_string()
            .contains(&journal.file_name().unwrap().to_string_lossy().to_string()),
        "{err}"
    );
    assert_eq!(second.checked().len(), 1);
    assert!(second.engine_starts().is_empty());
    assert!(!world.path("second.json").exists());

    let held = ran(held.unwrap());
    assert_eq!(held.verdict, Verdict::Interrupted);
    assert_eq!(
        report_lines(&read_report(&world.path("holder.json"))),
        all(&ids, "pending")
    );
    assert_eq!(
        world.stats().accepted_registers(),
        2,
        "the second job sent nothing"
    );
}

/// The run against a dead endpoint is driven on a paused clock (its status check backs off
/// for about half a minute of virtual time); the later healthy run on a real one, where the
/// simulator lives throughout.
#[test]
fn an_endpoint_where_nothing_listens_is_unreachable_and_a_later_run_registers() {
    let healthy = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = {
        let _inside = healthy.enter();
        World::start(quick_jobs())
    };
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(3)), FAST);
    let journal = state::default_path(&manifest);

    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    let dead = options_for(
        &dead_endpoint(),
        common::job::sim_environment(&world.sim),
        &manifest,
        &world.path("dead.json"),
    );
    let finished = ran(paused
        .block_on(job::run(dead, recorder.clone(), CancellationToken::new()))
        .unwrap());

    assert_eq!(finished.verdict, Verdict::Unreachable);
    let report = read_report(&world.path("dead.json"));
    assert_eq!(report_lines(&report), all(&ids, "unreachable"));
    assert_eq!(
        recorder.count(|e| matches!(e, RunEvent::Unreachable { .. })),
        1
    );
    assert_eq!(
        recorder.count(|e| matches!(e, RunEvent::Retrying { .. })),
        ids.len() * (MAX_ATTEMPTS as usize - 1),
        "every lookup tried as often as the policy allows"
    );
    assert!(recorder.submitting().is_empty());
    assert_eq!(journaled_outcomes(&journal, &ids), [None, None, None]);
    assert_eq!(total_requests(&world.stats()), 0);

    let finished = ran(healthy
        .block_on(job::run(
            world.job_options(&manifest, "healthy.json"),
            Arc::new(Recorder::default()),
            CancellationToken::new(),
        ))
        .unwrap());
    assert_eq!(finished.verdict, Verdict::AllRegistered);
    let report = read_report(&world.path("healthy.json"));
    assert_eq!(report_lines(&report), all(&ids, "registered"));
    assert_eq!(
        journaled_outcomes(&journal, &ids),
        [Some(JournalStatus::Registered); 3]
    );
    let stats = world.stats();
    assert_eq!(stats.accepted_registers(), 3);
    assert_no_double_submission(&stats);
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_against_a_dead_endpoint_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wave.yaml");
    let ids = vec![image_id(0), image_id(1)];
    write_manifest(&manifest, &ids, FAST);
    let mut options = options_for(
        &dead_endpoint(),
        credentials_environment("AK", "SK", "project"),
        &manifest,
        &dir.path().join("report.json"),
    );
    options.dry_run = true;

    let outcome = job::run(
        options,
        Arc::new(Recorder::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let Outcome::Planned(plan) = outcome else {
        panic!("expected a plan: {outcome:?}");
    };
    assert_eq!(plan.verdict, Verdict::Unreachable);
    for id in &ids {
        let status = plan.statuses.get(&id.parse().unwrap());
        assert!(
            matches!(status, Some(CloudStatus::Unknown { .. })),
            "{id}: {status:?}"
        );
    }
    assert!(!dir.path().join("report.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_before_it_starts_is_interrupted_with_every_image_cancelled() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(3)), FAST);
    let cancel = CancellationToken::new();
    cancel.cancel();

    let finished = ran(job::run(
        world.job_options(&manifest, "report.json"),
        Arc::new(Recorder::default()),
        cancel,
    )
    .await
    .unwrap());

    assert_eq!(finished.verdict, Verdict::Interrupted);
    let report = read_report(&world.path("report.json"));
    assert_eq!(report_lines(&report), all(&ids, "cancelled"));
    let stats = world.stats();
    assert_eq!(stats.requests.get("register"), None, "{:?}", stats.requests);
    assert_eq!(
        journaled_outcomes(&state::default_path(&manifest), &ids),
        [None, None, None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_secret_key_is_credentials_rejected() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects(3)), FAST);
    let creds = world.sim.config().credentials.clone();
    let recorder = Arc::new(Recorder::default());
    let options = options_for(
        &world.sim.url(),
        credentials_environment(&creds.ak, "not-the-secret-key", &creds.project_id),
        &manifest,
        &world.path("report.json"),
    );

    let finished = ran(
        job::run(options, recorder.clone(), CancellationToken::new())
            .await
            .unwrap(),
    );

    assert_eq!(finished.verdict, Verdict::CredentialsRejected);
    let stats = world.stats();
    assert!(stats.auth_failures > 0, "{stats:?}");
    assert!(stats.submissions.is_empty());
    assert_eq!(
        recorder.count(|e| matches!(e, RunEvent::AuthFailed { .. })),
        1
    );
    let report = read_report(&world.path("report.json"));
    assert_eq!(report_lines(&report), all(&ids, "cancelled"));
}

/// Embedders spawn the job on a runtime of theirs: its future must be `Send` (a compile-time
/// check; it fails to build, not to run, when a borrowed closure makes the future `!Send`).
#[test]
fn the_job_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let job = imsreg::job::run(
        imsreg::job::JobOptions::default(),
        std::sync::Arc::new(imsreg::job::Unobserved),
        tokio_util::sync::CancellationToken::new(),
    );
    assert_send(&job);
}
