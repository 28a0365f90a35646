//! Regression tests of issue 13, each named after the case it covers: odd answers from IMS,
//! absurd settings, endless files, malformed credentials, YAML tags, forged output lines and
//! signals. The real binary runs as a child process; where IMS is needed, against the built-in
//! simulator over HTTP on 127.0.0.1.

mod common;

use common::e2e::*;

use std::process::Output;

use imsreg::sim::GarbledBody;

/// `imsreg ARGS...` with a clean environment in the world's folder (no network needed).
async fn imsreg(world: &World, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(BIN)
        .env_clear()
        .env("HOME", world.dir.path())
        .env("NO_COLOR", "1")
        .current_dir(world.dir.path())
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("imsreg did not finish within 60 s")
        .unwrap();
    eprintln!(
        "--- imsreg {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

// --- Case 5: absurd rates and durations ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_query_rate_is_a_usage_error() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], FAST);
    for (flag, value, expect) in [
        ("--query-rate", "1e-300", "0.01 to 1000000"),
        ("--query-rate", "0.0000000001", "0.01 to 1000000"),
        ("--submit-rate", "1e300", "0.01 to 1000000"),
        ("--job-timeout", "500000000000y", "1ms to 30days"),
        ("--poll-interval", "30d", "1ms to 7days"),
        ("--concurrency", "4294967295", "1 to 1024"),
        ("--max-active-jobs", "4294967295", "1 to 1000000"),
    ] {
        let output = world.run(&manifest, &["--no-progress", flag, value]).await;
        assert_eq!(code(&output), 2, "{flag} {value}");
        assert!(stderr(&output).contains(expect), "{flag} {value}");
    }
    assert_eq!(total_requests(&world.stats()), 0, "nothing was sent");
    assert!(!world.path("imsreg-report.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_manifest_rates_and_durations_are_refused_by_validate_and_run() {
    let world = World::start(quick_jobs());
    for (setting, expect) in [
        ("submit_rate: 1e-300", "settings.submit_rate"),
        ("query_rate: 0.0000000001", "settings.query_rate"),
        ("job_timeout: 500000000000y", "settings.job_timeout"),
        ("poll_interval: 8d", "settings.poll_interval"),
        ("concurrency: 100000", "settings.concurrency"),
        ("max_active_jobs: 99999999999", "settings.max_active_jobs"),
    ] {
        let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], &format!("  {setting}"));
        let validated = imsreg(&world, &["validate", manifest.to_str().unwrap()]).await;
        assert_eq!(code(&validated), 2, "validate with {setting}");
        assert!(stdout(&validated).contains(expect), "{setting}");
        let output = world.run(&manifest, &["--no-progress"]).await;
        assert_eq!(code(&output), 2, "run with {setting}");
        assert!(stderr(&output).contains(expect), "{setting}");
    }
    assert_eq!(total_requests(&world.stats()), 0, "nothing was sent");
}

// --- Case 6: endless files ------------------------------------------------------------------

/// A FIFO nobody writes to: opening it the ordinary way blocks forever.
fn fifo(world: &World, name: &str) -> std::path::PathBuf {
    let path = world.path(name);
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    path
}

/// A sparse file one byte larger than the most imsreg reads.
fn oversized(world: &World, name: &str) -> std::path::PathBuf {
    let path = world.path(name);
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(imsreg::input::MAX_INPUT_BYTES + 1).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_dev_zero_is_refused() {
    let world = World::start(quick_jobs());
    let output = imsreg(&world, &["validate", "/dev/zero"]).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("/dev/zero is a device, not a regular file"),
        "{}",
        stderr(&output)
    );
    let pipe = fifo(&world, "m.yaml");
    let output = imsreg(
        &world,
        &["validate", pipe.to_str().unwrap(), "--format", "json"],
    )
    .await;
    assert_eq!(code(&output), 2);
    assert!(
        stdout(&output).contains("named pipe"),
        "{}",
        stdout(&output)
    );
    let folder = world.path("folder.yaml");
    std::fs::create_dir(&folder).unwrap();
    let output = imsreg(&world, &["validate", folder.to_str().unwrap()]).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("is a folder"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_manifest_is_refused_naming_file_and_limit() {
    let world = World::start(quick_jobs());
    let big = oversized(&world, "big.yaml");
    let output = imsreg(&world, &["validate", big.to_str().unwrap()]).await;
    assert_eq!(code(&output), 2);
    let text = stderr(&output);
    assert!(
        text.contains("big.yaml") && text.contains("larger than 256 MiB"),
        "{text}"
    );
    let output = world.run(&big, &["--no-progress"]).await;
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("larger than 256 MiB"));
    assert_eq!(total_requests(&world.stats()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_dev_zero_is_refused() {
    let world = World::start(quick_jobs());
    let output = imsreg(&world, &["status", "--state", "/dev/zero"]).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("state journal /dev/zero is a device"),
        "{}",
        stderr(&output)
    );
    let big = oversized(&world, "big.jsonl");
    let output = imsreg(&world, &["status", "--state", big.to_str().unwrap()]).await;
    assert_eq!(code(&output), 2);
    let text = stderr(&output);
    assert!(
        text.contains("big.jsonl") && text.contains("larger than 256 MiB"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_fifo_as_state_is_refused_without_blocking() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], FAST);
    let pipe = fifo(&world, "state.jsonl");
    let output = world
        .run(
            &manifest,
            &["--no-progress", "--state", pipe.to_str().unwrap()],
        )
        .await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("named pipe"),
        "{}",
        stderr(&output)
    );
    assert_eq!(total_requests(&world.stats()), 0);
}

// --- Case 8: credentials HTTP cannot carry --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ak_is_a_configuration_error_at_start() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects(3)), FAST);
    let creds = world.sim.config().credentials.clone();
    let (ak, sk, project) = (
        creds.ak.as_str(),
        creds.sk.as_str(),
        creds.project_id.as_str(),
    );
    let bad_ak = format!("{ak}\u{1}zqxj");
    let bad_sk = format!("zqxj\u{7f}{sk}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("HUAWEICLOUD_SDK_AK", &bad_ak),
                ("HUAWEICLOUD_SDK_SK", sk),
                ("HUAWEICLOUD_SDK_PROJECT_ID", project),
            ],
            "HUAWEICLOUD_SDK_AK contains a control character",
        ),
        (
            vec![
                ("HUAWEICLOUD_SDK_AK", ak),
                ("HUAWEICLOUD_SDK_SK", &bad_sk),
                ("HUAWEICLOUD_SDK_PROJECT_ID", project),
            ],
            "HUAWEICLOUD_SDK_SK contains a control character",
        ),
        (
            vec![
                ("HUAWEICLOUD_SDK_AK", ak),
                ("HUAWEICLOUD_SDK_SK", sk),
                ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "zqxj zqxj"),
                ("HUAWEICLOUD_SDK_PROJECT_ID", project),
            ],
            "HUAWEICLOUD_SDK_SECURITY_TOKEN contains a space",
        ),
        (
            vec![
                ("OS_AUTH_TOKEN", "zqxj\u{1b}[2J"),
                ("OS_PROJECT_ID", project),
            ],
            "OS_AUTH_TOKEN contains a control character",
        ),
        (
            vec![
                ("HUAWEICLOUD_SDK_AK", ak),
                ("HUAWEICLOUD_SDK_SK", sk),
                ("HUAWEICLOUD_SDK_PROJECT_ID", "0123456789abcdéf"),
            ],
            "HUAWEICLOUD_SDK_PROJECT_ID contains a character outside printable ASCII",
        ),
    ];
    for (env, expect) in cases {
        let output = world
            .run_with_env(&manifest, &["--no-progress"], &env)
            .await;
        assert_eq!(code(&output), 2, "{expect}");
        let text = stderr(&output);
        assert!(text.contains(expect), "{expect}: {text}");
        assert!(!text.contains("zqxj"), "a secret leaked: {text}");
    }
    // The project ID given as a flag or in the manifest is checked the same way.
    let output = world
        .run(&manifest, &["--no-progress", "--project-id", "p\u{1}1"])
        .await;
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("control character"));
    let (bad_settings, _) = world.manifest(
        "bad.yaml",
        &["a.qcow2"],
        &format!("{FAST}\n  project_id: \"p\\x01q\""),
    );
    let output = world.run(&bad_settings, &["--no-progress"]).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("settings.project_id: contains a control character"),
        "{}",
        stderr(&output)
    );

    assert_eq!(total_requests(&world.stats()), 0, "nothing was sent");
    let journal = world.path("m.imsreg-state.jsonl");
    let journaled = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(journaled.trim().is_empty(), "journaled: {journaled}");
    assert!(!world.path("imsreg-report.json").exists(), "no report");
}

// --- Cases 2 and 9: a 2xx register answer that cannot be used --------------------------------

/// Runs two images against a simulator that accepts every registration but answers it with
/// `body`; returns the run, its report and its journal.
async fn run_with_garbled_answers(body: GarbledBody) -> (Output, serde_json::Value, String) {
    let mut config = quick_jobs();
    config.faults.garble_register_response = 1.0;
    config.faults.garbled_body = body;
    let world = World::start(config);
    let (manifest, ids) = world.manifest("m.yaml", &refs(&objects(2)), FAST);
    let output = world.run(&manifest, &["--no-progress"]).await;
    let report = world.report("imsreg-report.json");
    let journal = std::fs::read_to_string(world.path("m.imsreg-state.jsonl")).unwrap();
    let stats = world.stats();
    assert_no_double_submission(&stats);
    let sent = stats.requests.get("register").copied().unwrap_or(0);
    assert_eq!(sent, ids.len() as u64, "{body:?}: never re-sent");
    (output, report, journal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_register_answer_is_not_a_refusal() {
    for body in [
        GarbledBody::Html,
        GarbledBody::Empty,
        GarbledBody::Null,
        GarbledBody::EmptyObject,
        GarbledBody::EmptyJobId,
        GarbledBody::Oversized,
    ] {
        let (output, report, journal) = run_with_garbled_answers(body).await;
        assert_eq!(code(&output), 0, "{body:?}");
        assert_all(&report, "registered");
        assert!(!journal.contains("\"failed\""), "{body:?}: {journal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_job_id_is_never_journaled() {
    for body in [GarbledBody::HugeJobId, GarbledBody::BadJobId] {
        let (output, report, journal) = run_with_garbled_answers(body).await;
        assert_eq!(code(&output), 0, "{body:?}");
        assert_all(&report, "registered");
        for image in report["images"].as_array().unwrap() {
            assert!(image["job_id"].is_null(), "{body:?}: {image}");
        }
        assert!(
            journal.len() < 4096,
            "{body:?}: a {} byte journal",
            journal.len()
        );
        assert!(!journal.contains("etc"), "{body:?}: {journal}");
    }
}

// --- YAML tags --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_tags_are_refused_with_line_and_column() {
    let world = World::start(quick_jobs());
    for (value, tag) in [
        ("!!binary YnVja2V0LWUyZTphLnFjb3cy", "!!binary"),
        ("!!str bucket-e2e:a.qcow2", "!!str"),
        ("!url bucket-e2e:a.qcow2", "!url"),
    ] {
        let path = world.path("tagged.yaml");
        std::fs::write(
            &path,
            format!(
                "images:\n  - image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000000\n    image_url: {value}\n"
            ),
        )
        .unwrap();
        let output = imsreg(&world, &["validate", path.to_str().unwrap()]).await;
        assert_eq!(code(&output), 2, "{tag}");
        let expect = format!("tagged.yaml:3:16: error: yaml: YAML tags such as `{tag}`");
        assert!(
            stdout(&output).contains(&expect),
            "{tag}: {}",
            stdout(&output)
        );
    }
}

// --- Output injection -----------------------------------------------------------------------

/// Lines of `text` that mention `marker`.
fn forged_lines<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.lines().filter(|line| line.contains(marker)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newlines_in_names_cannot_forge_summary_or_log_lines() {
    let world = World::start(quick_jobs());
    let ids: Vec<String> = (0..2).map(image_id).collect();
    world.sim.add_images(ids.clone());
    // A file name, a label and an invalid value, each trying to start a line of its own.
    let manifest = world.path("m\nFORGED-1 forged.yaml");
    let text = format!(
        "settings:\n{FAST}\nimages:\n\
         \x20 - image_id: {}\n    image_url: bucket-e2e:a.qcow2\n    name: \"=HYPERLINK(1)\\nFORGED-2 registered\"\n\
         \x20 - image_id: \"nope\\nFORGED-3 registered\"\n    image_url: bucket-e2e:b.qcow2\n    name: \"\\e[2Jweb\\nFORGED-4\"\n",
        ids[0]
    );
    std::fs::write(&manifest, text).unwrap();
    let output = world
        .run(
            &manifest,
            &[
                "--no-progress",
                "--no-preflight",
                "--skip-invalid",
                "--report",
                "r.json",
                "--report",
                "r.csv",
                "--report",
                "r.md",
            ],
        )
        .await;
    assert_eq!(code(&output), 1, "an invalid entry");
    let (out, err) = (stdout(&output), stderr(&output));
    for marker in ["FORGED-1", "FORGED-2", "FORGED-3", "FORGED-4"] {
        for line in forged_lines(&out, marker)
            .into_iter()
            .chain(forged_lines(&err, marker))
        {
            assert!(!line.starts_with(marker), "forged line: {line:?}");
        }
    }
    assert!(
        !out.contains('\u{1b}') && !err.contains('\u{1b}'),
        "{out}{err}"
    );
    assert!(
        out.contains("invalid nope\\nFORGED-3 registered (\\u{1b}[2Jweb\\nFORGED-4)"),
        "{out}"
    );
    // Log lines (text format) quote the file name escaped; so does the resumed journal's.
    let again = world
        .run(&manifest, &["--no-progress", "--no-preflight"])
        .await;
    assert_eq!(code(&again), 2);
    let err = stderr(&again);
    assert!(
        err.contains("m\\nFORGED-1 forged.yaml has 1 error(s)"),
        "{err}"
    );
    let resumed = world
        .run(
            &manifest,
            &["--no-progress", "--no-preflight", "--skip-invalid"],
        )
        .await;
    let err = stderr(&resumed);
    assert!(
        err.contains("state=/") && err.contains("m\\nFORGED-1 forged.imsreg-state.jsonl"),
        "{err}"
    );
    for output in [&again, &resumed] {
        let err = stderr(output);
        assert!(
            forged_lines(&err, "FORGED")
                .iter()
                .all(|line| !line.starts_with("FORGED")),
            "{err}"
        );
    }

    let csv = std::fs::read_to_string(world.path("r.csv")).unwrap();
    assert!(csv.contains("'=HYPERLINK(1)"), "{csv}");
    let md = std::fs::read_to_string(world.path("r.md")).unwrap();
    assert!(
        forged_lines(&md, "FORGED")
            .iter()
            .all(|line| !line.starts_with("FORGED")),
        "{md}"
    );
}

// --- Signals ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_a_graceful_stop_with_a_report() {
    let config = imsreg::sim::SimConfig {
        job_duration: imsreg::sim::DurationDist::Fixed(std::time::Duration::from_secs(30)),
        ..imsreg::sim::SimConfig::default()
    };
    let world = World::start(config);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects(4)), FAST);
    let mut command = world.command(&manifest, &["--no-progress", "--submit-rate", "2"]);
    command.envs(world.credentials_env());
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while world.stats().accepted_registers() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no submission");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the run ends soon after SIGHUP")
        .unwrap();
    eprintln!("{}", stderr(&output));
    assert_eq!(output.status.code(), Some(130), "not killed by the signal");
    assert!(stderr(&output).contains("SIGHUP received"));
    let report = world.report("imsreg-report.json");
    assert_eq!(report["summary"]["total"], 4);
    assert!(
        report["summary"]["pending"].as_u64().unwrap() >= 1,
        "{report}"
    );
}
