//! End-to-end tests of `imsreg run`: the real binary, as a child process, against the built-in
//! simulator over real HTTP on 127.0.0.1, with the simulator's credentials in the child's
//! environment. Each test starts its own simulator (own port, own counters) and works in its
//! own temporary folder. Jobs take a few hundred milliseconds and polls start after 100 ms so
//! the whole file runs in seconds.

mod common;

use common::e2e::*;
use common::read_report;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use imsreg::ims::types::ImageStatus;
use imsreg::sim::{DurationDist, Faults, RateLimit, SimConfig};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_registers_everything_and_writes_every_report_format() {
    let world = World::start(quick_jobs());
    let objects = objects(6);
    let (manifest, ids) = world.manifest("m.yaml", &refs(&objects), FAST);
    let output = world
        .run(
            &manifest,
            &[
                "--no-progress",
                "--report",
                "out/r.json",
                "--report",
                "out/r.yaml",
                "--report",
                "out/r.csv",
                "--report",
                "out/r.xml",
                "--report",
                "out/r.md",
            ],
        )
        .await;
    assert_eq!(code(&output), 0);

    // JSON: the reference shape.
    let json = world.report("out/r.json");
    assert_eq!(json["summary"]["total"], 6);
    assert_eq!(json["summary"]["registered"], 6);
    assert_eq!(json["manifest"], manifest.display().to_string());
    assert_eq!(json["settings"]["poll_interval_s"], 0.1);
    assert_eq!(
        json["settings"]["endpoint"]
            .as_str()
            .unwrap()
            .trim_end_matches('/'),
        world.sim.url()
    );
    let images = json["images"].as_array().unwrap();
    let report_ids: Vec<&str> = images
        .iter()
        .map(|r| r["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(report_ids, refs(&ids), "manifest order");
    for record in images {
        assert_eq!(record["status"], "registered");
        assert!(record["job_id"].as_str().is_some_and(|j| !j.is_empty()));
        assert_eq!(record["attempts"], 1);
        assert!(record["duration_s"].as_f64().unwrap() > 0.0);
        assert!(record["error_code"].is_null());
    }
    let stats = world.stats();
    assert_eq!(stats.accepted_registers(), 6);
    assert_no_double_submission(&stats);

    // YAML mirrors JSON.
    let yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(world.path("out/r.yaml")).unwrap()).unwrap();
    assert_eq!(yaml["summary"], json["summary"]);
    assert_eq!(yaml["images"].as_array().unwrap().len(), 6);

    // CSV: one row per image, same columns.
    let mut csv = csv::Reader::from_path(world.path("out/r.csv")).unwrap();
    let headers = csv.headers().unwrap().clone();
    for column in [
        "image_id",
        "status",
        "job_id",
        "error_code",
        "error_message",
    ] {
        assert!(headers.iter().any(|h| h == column), "CSV column {column}");
    }
    let status_col = headers.iter().position(|h| h == "status").unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| &r[status_col] == "registered"));

    // JUnit XML: one testcase per image, no failures.
    let xml = std::fs::read_to_string(world.path("out/r.xml")).unwrap();
    let junit = parse_junit(&xml);
    assert_eq!(junit.testcases, 6);
    assert_eq!(junit.failures, 0);

    // Markdown: a summary table.
    let md = std::fs::read_to_string(world.path("out/r.md")).unwrap();
    assert!(md.contains('|') && md.contains("registered"), "{md}");

    // What the person sees: one line per state change, a summary, no secret.
    let err = stderr(&output);
    assert_eq!(err.matches("registration accepted").count(), 6, "{err}");
    let out = stdout(&output);
    assert!(
        out.contains("6 images") && out.contains("registered"),
        "{out}"
    );
    assert_no_secret(&world, &output);
}

struct JunitCounts {
    testcases: usize,
    failures: usize,
}

/// Counts `<testcase>` and `<failure>` elements (a minimal JUnit read).
fn parse_junit(xml: &str) -> JunitCounts {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut counts = JunitCounts {
        testcases: 0,
        failures: 0,
    };
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testcase" => counts.testcases += 1,
                b"failure" => counts.failures += 1,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    counts
}

fn assert_no_secret(world: &World, output: &Output) {
    let sk = world.sim.config().credentials.sk.clone();
    assert!(!stderr(output).contains(&sk), "SK in stderr");
    assert!(!stdout(output).contains(&sk), "SK in stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storm_slows_down_and_still_registers_everything() {
    let mut config = quick_jobs();
    config.rate_limits.insert(
        "register".into(),
        RateLimit {
            rate: 4.0,
            burst: 1,
            retry_after: None,
        },
    );
    config.rate_limits.insert(
        "show_job".into(),
        RateLimit {
            rate: 10.0,
            burst: 2,
            retry_after: Some(1),
        },
    );
    let world = World::start(config);
    let objects = objects(8);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let output = world
        .run(&manifest, &["--submit-rate", "40", "--log-format", "json"])
        .await;
    assert_eq!(code(&output), 0);
    assert_all(&world.report("imsreg-report.json"), "registered");
    let stats = world.stats();
    assert!(stats.throttled > 0, "the storm happened: {stats:?}");
    assert_no_double_submission(&stats);
    assert_eq!(stats.accepted_registers(), 8);
    // --log-format json: every stderr line is a JSON object; none carries the secret.
    let err = stderr(&output);
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert_no_secret(&world, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_retried() {
    let config = SimConfig {
        seed: 11,
        faults: Faults {
            error_500: 0.1,
            error_502: 0.05,
            error_503: 0.1,
            drop_connection: 0.1,
            drop_register_response: 0.0,
            ..Faults::default()
        },
        ..quick_jobs()
    };
    let world = World::start(config);
    let objects = objects(10);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let output = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&output), 0);
    assert_all(&world.report("imsreg-report.json"), "registered");
    let stats = world.stats();
    assert!(
        stats.server_errors > 0 && stats.dropped_connections > 0,
        "{stats:?}"
    );
    assert_no_double_submission(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_registrations_are_never_sent_twice() {
    let config = SimConfig {
        seed: 5,
        faults: Faults {
            drop_register_response: 0.5,
            ..Faults::default()
        },
        ..quick_jobs()
    };
    let world = World::start(config);
    let objects = objects(10);
    let (manifest, ids) = world.manifest("m.yaml", &refs(&objects), FAST);
    let output = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&output), 0);
    assert_all(&world.report("imsreg-report.json"), "registered");
    let stats = world.stats();
    assert!(stats.dropped_register_responses > 0, "{stats:?}");
    assert_no_double_submission(&stats);
    for id in &ids {
        assert_eq!(stats.submissions.get(id), Some(&1), "image {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_carry_code_and_reason() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = world.manifest(
        "m.yaml",
        &["ok-1.qcow2", "corrupt-disk.vhd", "ok-2.qcow2"],
        FAST,
    );
    let output = world
        .run(
            &manifest,
            &["--no-progress", "--report", "r.json", "--report", "r.xml"],
        )
        .await;
    assert_eq!(code(&output), 1);
    let report = world.report("r.json");
    assert_eq!(report["summary"]["failed"], 1);
    assert_eq!(report["summary"]["registered"], 2);
    let failed = &report["images"][1];
    assert_eq!(failed["image_id"], ids[1]);
    assert_eq!(failed["status"], "failed");
    assert!(failed["job_id"].is_string());
    assert!(
        failed["error_code"].as_str().is_some_and(|c| !c.is_empty()),
        "{failed}"
    );
    assert!(
        failed["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("corrupt")),
        "{failed}"
    );
    let junit = parse_junit(&std::fs::read_to_string(world.path("r.xml")).unwrap());
    assert_eq!((junit.testcases, junit.failures), (3, 1));
    assert!(
        stdout(&output).contains(ids[1].as_str()),
        "the summary lists the failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_timeout_leaves_the_image_pending_with_its_job_id() {
    let config = SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_secs(30)),
        ..SimConfig::default()
    };
    let world = World::start(config);
    let (manifest, _) = world.manifest("m.yaml", &["slow.qcow2"], FAST);
    let output = world
        .run(&manifest, &["--no-progress", "--job-timeout", "700ms"])
        .await;
    assert_eq!(code(&output), 1);
    let report = world.report("imsreg-report.json");
    assert_eq!(report["summary"]["pending"], 1);
    let record = &report["images"][0];
    assert_eq!(record["status"], "pending");
    assert!(record["job_id"].as_str().is_some_and(|j| !j.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_jobs_never_exceed_the_bound() {
    let world = World::start(quick_jobs());
    let objects = objects(12);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let output = world
        .run(
            &manifest,
            &[
                "--no-progress",
                "--max-active-jobs",
                "3",
                "--submit-rate",
                "100",
            ],
        )
        .await;
    assert_eq!(code(&output), 0);
    assert_all(&world.report("imsreg-report.json"), "registered");
    let stats = world.stats();
    assert!(stats.max_running_jobs <= 3, "{stats:?}");
    assert!(
        stats.max_running_jobs >= 2,
        "the bound was actually used: {stats:?}"
    );
    assert_no_double_submission(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_active_and_saving_images_are_not_submitted() {
    let config = SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_millis(800)),
        ..SimConfig::default()
    };
    let world = World::start(config);
    let objects = objects(3);
    let (manifest, ids) = world.manifest("m.yaml", &refs(&objects), FAST);
    world.sim.set_image_status(&ids[0], ImageStatus::Active);
    // A registration started elsewhere: the image is saving, with a job running in IMS.
    world
        .client()
        .register_image(&ids[1], "bucket-e2e:exports/disk-1.qcow2")
        .await
        .unwrap();
    assert_eq!(world.sim.image_status(&ids[1]), Some(ImageStatus::Saving));

    let output = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&output), 0);
    let report = world.report("imsreg-report.json");
    let by_id = statuses(&report);
    assert_eq!(by_id[&ids[0]], "already_registered");
    assert_eq!(by_id[&ids[1]], "registered");
    assert_eq!(by_id[&ids[2]], "registered");
    assert_eq!(report["images"][0]["attempts"], 0);
    assert_eq!(
        report["images"][1]["attempts"], 0,
        "the saving image was polled, not re-sent"
    );
    let stats = world.stats();
    assert_eq!(stats.submissions.get(&ids[0]), None);
    assert_eq!(
        stats.submissions.get(&ids[1]),
        Some(&1),
        "only the earlier registration"
    );
    assert_no_double_submission(&stats);
}

/// A manifest with one invalid entry (a space in the object name) between two valid ones.
fn manifest_with_invalid_entry(world: &World) -> (PathBuf, Vec<String>) {
    let ids = vec![image_id(0), image_id(1), image_id(2)];
    let text = format!(
        "settings:\n{FAST}\nimages:\n  - image_id: {}\n    image_url: bucket-e2e:a.qcow2\n  - image_id: {}\n    image_url: \"bucket-e2e:has space.qcow2\"\n  - image_id: {}\n    image_url: bucket-e2e:c.qcow2\n",
        ids[0], ids[1], ids[2]
    );
    let path = world.path("invalid.yaml");
    std::fs::write(&path, text).unwrap();
    world.sim.add_images(ids.clone());
    world.add_objects(&path);
    (path, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifest_submits_nothing_unless_skip_invalid() {
    let world = World::start(quick_jobs());
    let (manifest, ids) = manifest_with_invalid_entry(&world);

    let refused = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&refused), 2);
    let err = stderr(&refused);
    assert!(
        err.contains("invalid.yaml:") && err.contains("--skip-invalid"),
        "{err}"
    );
    assert_eq!(total_requests(&world.stats()), 0, "nothing sent");
    assert!(!world.path("imsreg-report.json").exists());

    // In JSON log mode the diagnostics are JSON lines too.
    let refused = world.run(&manifest, &["--log-format", "json"]).await;
    assert_eq!(code(&refused), 2);
    let lines: Vec<Value> = stderr(&refused)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["field"] == "images[1].image_url" && l["level"] == "ERROR"),
        "{lines:?}"
    );

    let output = world
        .run(&manifest, &["--no-progress", "--skip-invalid"])
        .await;
    assert_eq!(
        code(&output),
        1,
        "an invalid entry makes the run incomplete"
    );
    let report = world.report("imsreg-report.json");
    assert_eq!(report["summary"]["invalid"], 1);
    assert_eq!(report["summary"]["registered"], 2);
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!(
        images[1]["status"], "invalid",
        "kept at its manifest position"
    );
    assert_eq!(images[1]["image_id"], ids[1]);
    assert!(
        images[1]["error_message"]
            .as_str()
            .unwrap()
            .contains("line")
    );
    assert_eq!(world.stats().submissions.get(&ids[1]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_submits_nothing() {
    let world = World::start(quick_jobs());
    let objects = objects(8);
    let (manifest, ids) = world.manifest("m.yaml", &refs(&objects), FAST);
    world.sim.set_image_status(&ids[0], ImageStatus::Active);
    world.sim.set_image_status(&ids[1], ImageStatus::Killed);
    let output = world.run(&manifest, &["--dry-run"]).await;
    assert_eq!(code(&output), 0);
    let out = stdout(&output);
    assert!(out.contains("would submit    6"), "{out}");
    assert!(out.contains("would skip      1"), "{out}");
    assert!(out.contains("would fail      1"), "{out}");
    let stats = world.stats();
    assert_eq!(stats.requests.get("register").copied().unwrap_or(0), 0);
    assert!(stats.submissions.is_empty());
    assert!(
        !world.path("imsreg-report.json").exists(),
        "a dry run writes no report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_exit_2_naming_the_variables() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], FAST);
    let output = world.run_with_env(&manifest, &["--no-progress"], &[]).await;
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    for variable in ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "OS_AUTH_TOKEN"] {
        assert!(err.contains(variable), "{variable} in {err}");
    }
    assert_eq!(
        total_requests(&world.stats()),
        0,
        "no request without credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_configuration_errors_exit_2() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], FAST);
    // A plain-http endpoint off loopback is refused before any request.
    let mut command =
        world.command_without_endpoint(&manifest, &["--endpoint", "http://example.com"]);
    command.envs(world.credentials_env());
    let output = command.output().await.unwrap();
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("http://example.com"),
        "{}",
        stderr(&output)
    );
    let output = world.run(&manifest, &["--report", "r.txt"]).await;
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("r.txt"));
    let output = world.run(&manifest, &["--concurrency", "0"]).await;
    assert_eq!(code(&output), 2);
    let output = world.run(&world.path("missing.yaml"), &[]).await;
    assert_eq!(code(&output), 2);
    assert_eq!(total_requests(&world.stats()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_key_stops_the_run() {
    let world = World::start(quick_jobs());
    let objects = objects(4);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let creds = world.sim.config().credentials.clone();
    let wrong = [
        ("HUAWEICLOUD_SDK_AK", creds.ak.as_str()),
        ("HUAWEICLOUD_SDK_SK", "not-the-right-secret"),
        ("HUAWEICLOUD_SDK_PROJECT_ID", creds.project_id.as_str()),
    ];
    // The preflight's first OBS request is refused: the run stops there, before IMS.
    let output = world
        .run_with_env(&manifest, &["--no-progress"], &wrong)
        .await;
    assert_eq!(code(&output), 2, "a credentials error");
    let stats = world.stats();
    assert_eq!(
        stats.obs.auth_failures, 1,
        "one refused signature, then nothing"
    );
    assert_eq!(total_requests(&stats), 0, "IMS was never asked");
    assert!(stderr(&output).contains("OBS refused the credentials"));
    assert!(!stderr(&output).contains("not-the-right-secret"));

    // Without the preflight IMS refuses them, and the run stops just the same.
    let output = world
        .run_with_env(&manifest, &["--no-progress", "--no-preflight"], &wrong)
        .await;
    assert_eq!(
        code(&output),
        2,
        "nothing was accepted: a credentials error"
    );
    let stats = world.stats();
    assert!(stats.auth_failures >= 1);
    // Huawei's gateway locks an AK after 5 failed signatures: stay below that.
    assert!(
        stats.auth_failures < 5,
        "the run stops instead of sending more signed requests: {stats:?}"
    );
    eprintln!("401 answers: {}", stats.auth_failures);
    assert!(stats.submissions.is_empty());
    let report = world.report("imsreg-report.json");
    assert_eq!(report["summary"]["registered"], 0);
    assert_eq!(report["summary"]["total"], 4);
    assert!(stderr(&output).contains("credentials"));
    assert!(!stderr(&output).contains("not-the-right-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sigint_finishes_gracefully_and_a_rerun_completes_without_resubmitting() {
    let config = SimConfig {
        job_duration: DurationDist::Fixed(Duration::from_secs(3)),
        ..SimConfig::default()
    };
    let world = World::start(config);
    let objects = objects(6);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let mut command = world.command(&manifest, &["--no-progress", "--submit-rate", "2"]);
    command.envs(world.credentials_env());
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some, not all, registrations are accepted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while world.stats().accepted_registers() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no submission");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the run ends soon after SIGINT")
        .unwrap();
    eprintln!("{}", stderr(&output));
    assert_eq!(code(&output), 130);
    let report = world.report("imsreg-report.json");
    let summary = &report["summary"];
    assert_eq!(summary["total"], 6);
    let pending = summary["pending"].as_u64().unwrap();
    let cancelled = summary["cancelled"].as_u64().unwrap();
    assert!(
        pending >= 2,
        "accepted jobs are pending with their job id: {summary}"
    );
    assert!(cancelled >= 1, "unsent images are cancelled: {summary}");
    assert_eq!(pending + cancelled, 6);
    assert_eq!(world.stats().accepted_registers(), pending);

    // The re-run follows the pending jobs from the state journal and submits the rest.
    let output = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&output), 0);
    assert_all(&world.report("imsreg-report.json"), "registered");
    let stats = world.stats();
    assert_eq!(stats.accepted_registers(), 6);
    assert_no_double_submission(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_skips_what_the_state_journal_settled() {
    let world = World::start(quick_jobs());
    let objects = objects(4);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let first = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&first), 0);
    assert!(
        world.path("m.imsreg-state.jsonl").exists(),
        "journal next to the manifest"
    );
    let requests = total_requests(&world.stats());

    let second = world.run(&manifest, &["--no-progress"]).await;
    assert_eq!(code(&second), 0);
    assert_all(&world.report("imsreg-report.json"), "already_registered");
    assert_eq!(
        total_requests(&world.stats()),
        requests,
        "nothing asked again"
    );

    // Without the journal the cloud-status check still prevents a second registration.
    let third = world.run(&manifest, &["--no-progress", "--no-state"]).await;
    assert_eq!(code(&third), 0);
    assert_all(&world.report("imsreg-report.json"), "already_registered");
    assert_eq!(world.stats().accepted_registers(), 4);
    assert_no_double_submission(&world.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_lock_exits_75_without_any_request() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], FAST);
    let state = world.path("custom-state.jsonl");
    let _lock = imsreg::state::RunLock::acquire(&state).unwrap();
    let output = world
        .run(
            &manifest,
            &["--no-progress", "--state", state.to_str().unwrap()],
        )
        .await;
    assert_eq!(code(&output), 75);
    assert!(
        stderr(&output).contains(&std::process::id().to_string()),
        "names the holder's PID"
    );
    assert_eq!(total_requests(&world.stats()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_the_whole_job_in_process_ignoring_environment_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("images:\n");
    for i in 0..3 {
        text.push_str(&format!(
            "  - image_id: {}\n    image_url: demo-bucket:images/vm-{i}.qcow2\n",
            image_id(i)
        ));
    }
    let manifest = dir.path().join("demo.yaml");
    std::fs::write(&manifest, text).unwrap();
    let output = tokio::process::Command::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .env("HUAWEICLOUD_SDK_AK", "SOME-REAL-LOOKING-AK")
        .env("HUAWEICLOUD_SDK_SK", "some-real-looking-sk")
        .current_dir(dir.path())
        .args(["run", "--simulate", "--no-progress", "--submit-rate", "20"])
        .arg(&manifest)
        .output()
        .await
        .unwrap();
    let err = stderr(&output);
    eprintln!("{err}");
    assert_eq!(code(&output), 0);
    assert!(
        err.contains("simulator"),
        "the log says where requests go: {err}"
    );
    let report = read_report(&dir.path().join("imsreg-report.json"));
    assert_eq!(report["summary"]["registered"], 3);
    assert!(
        report["settings"]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_stops_at_once() {
    // Every answer takes 3 s, so after the first signal the run is still waiting for the
    // register call on the wire when the second one arrives.
    let config = SimConfig {
        latency: DurationDist::Fixed(Duration::from_secs(3)),
        ..quick_jobs()
    };
    let world = World::start(config);
    let objects = objects(4);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let mut command = world.command(&manifest, &["--no-progress"]);
    command.envs(world.credentials_env());
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while world.stats().requests.get("register").copied().unwrap_or(0) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no register call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    for signal in ["-TERM", "-INT"] {
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = stderr(&output);
    eprintln!("{err}");
    assert_eq!(code(&output), 130, "{err}");
    // Order, not speed: the run ended before the simulator (3 s per answer) had taken the
    // register call on the wire.
    assert!(
        world.stats().submissions.is_empty(),
        "did not wait for the call on the wire"
    );
    assert!(
        err.contains("SIGTERM received") && err.contains("second signal"),
        "{err}"
    );
    assert!(
        !world.path("imsreg-report.json").exists(),
        "no report after a hard stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iam_token_works_instead_of_ak_sk() {
    let world = World::start(quick_jobs());
    let objects = objects(2);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let creds = world.sim.config().credentials.clone();
    let output = world
        .run_with_env(
            &manifest,
            &["--no-progress", "--project-id", creds.project_id.as_str()],
            &[("OS_AUTH_TOKEN", creds.token.as_str())],
        )
        .await;
    assert_eq!(code(&output), 0);
    assert_all(&world.report("imsreg-report.json"), "registered");
    assert!(stderr(&output).contains("IAM token"));
    assert!(
        !stderr(&output).contains(&creds.token),
        "the token is never logged"
    );
}
