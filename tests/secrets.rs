//! Secrets never leave imsreg: the real binary, logging at `RUST_LOG=trace`, runs whole jobs
//! against the simulator with faults on (5xx, dropped connections, lost register answers,
//! 429s), once signing with AK/SK and a security token and once with an IAM token, in both log
//! formats, plus a dry run, `imsreg status` and runs the simulator refuses (401). Every byte it
//! writes (stdout, stderr, every report format, the state journal, anything else in the run's
//! folder) is searched for the secret key, the security token and the IAM token.
//!
//! The secrets are distinctive strings, searched whole and by every 12-character piece, so a
//! leaked prefix is caught too; and each run must show trace lines, requests that reached the
//! simulator and the files it writes, so the search cannot pass on empty output.

mod common;

use common::e2e::*;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use imsreg::sim::{Credentials, Faults, RateLimit, SimConfig};
use serde_json::Value;

/// The access key is an identifier sent in clear; it must show up (in the credentials log line),
/// which proves the logs are searched where credentials would appear.
const AK: &str = "AKE2EQWERTYSECRETS01";
const SK: &str = "sk-e2e-Vq7Lx2Mz9Wp4Rt6YnUb3Kc8Hd";
const IAM_TOKEN: &str = "iam-e2e-Pw6Zq2Xr9Lm4Bd7CyJf5Tg1Ns";
/// Secrets the simulator does not accept, for the refused runs.
const WRONG_SK: &str = "sk-e2e-WRONG-Ua5Ei8Oo3Ii6Aa2Ee9Rr";
const WRONG_TOKEN: &str = "iam-e2e-WRONG-Gh4Jk7Lz1Xc5Vb8Nm";

/// Temporary credentials come with a long security token (real ones are kilobytes).
fn security_token() -> String {
    let mut token = String::from("st-e2e-");
    for i in 0..40 {
        token.push_str(&format!("Qk{i:02}Wx7Zr-"));
    }
    token
}

fn secrets() -> Vec<String> {
    vec![
        SK.to_string(),
        IAM_TOKEN.to_string(),
        security_token(),
        WRONG_SK.to_string(),
        WRONG_TOKEN.to_string(),
    ]
}

/// A simulator that accepts [`AK`]/[`SK`] and [`IAM_TOKEN`], with every kind of fault.
fn faulty_world() -> World {
    let mut config = SimConfig {
        seed: 23,
        credentials: Credentials {
            ak: AK.to_string(),
            sk: SK.to_string(),
            token: IAM_TOKEN.to_string(),
            ..Credentials::default()
        },
        faults: Faults {
            error_500: 0.06,
            error_502: 0.03,
            error_503: 0.06,
            drop_connection: 0.06,
            drop_register_response: 0.3,
            garble_register_response: 0.05,
            ..Faults::default()
        },
        ..quick_jobs()
    };
    config.rate_limits.insert(
        "register".into(),
        RateLimit {
            rate: 20.0,
            burst: 2,
            retry_after: None,
        },
    );
    World::start(config)
}

const REPORTS: [&str; 5] = ["r.json", "r.csv", "r.md", "r.xml", "r.yaml"];

fn report_args() -> Vec<String> {
    REPORTS
        .iter()
        .flat_map(|name| ["--report".to_string(), format!("out/{name}")])
        .collect()
}

fn project_env(world: &World) -> (&'static str, String) {
    (
        "HUAWEICLOUD_SDK_PROJECT_ID",
        world.sim.config().credentials.project_id.clone(),
    )
}

fn aksk_env(world: &World, sk: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HUAWEICLOUD_SDK_AK", AK.to_string()),
        ("HUAWEICLOUD_SDK_SK", sk.to_string()),
        ("HUAWEICLOUD_SDK_SECURITY_TOKEN", security_token()),
        project_env(world),
    ]
}

fn token_env(world: &World, token: &str) -> Vec<(&'static str, String)> {
    vec![("OS_AUTH_TOKEN", token.to_string()), project_env(world)]
}

/// Runs `imsreg ARGS...` in the world's folder at `RUST_LOG=trace`, with only `env` set.
async fn imsreg(world: &World, args: &[String], env: &[(&'static str, String)]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .env("HOME", world.dir.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "trace")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(world.dir.path())
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("imsreg did not finish within 120 s")
        .unwrap();
    // Only the head: trace output runs to megabytes.
    let err = stderr(&output);
    eprintln!(
        "--- imsreg {args:?}: {}\n--- stdout\n{}--- stderr (first 4000 bytes of {})\n{}",
        output.status,
        stdout(&output),
        err.len(),
        err.chars().take(4000).collect::<String>()
    );
    output
}

fn run_args(world: &World, manifest: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        manifest.display().to_string(),
        "--endpoint".to_string(),
        world.sim.url(),
        "--no-progress".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Fails if `text` holds any secret, or any 12-character piece of one.
fn assert_no_secret_in(what: &str, text: &str) {
    for secret in secrets() {
        let chars: Vec<char> = secret.chars().collect();
        for piece in chars.windows(12) {
            let piece: String = piece.iter().collect();
            assert!(
                !text.contains(&piece),
                "{what} holds {piece:?}, part of the secret {secret:?}"
            );
        }
    }
    // The header that carries a signature.
    assert!(!text.contains("Signature="), "{what} holds a signature");
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Searches the outputs of every command and every file the runs left in the world's folder.
fn assert_nothing_leaked(world: &World, outputs: &[&Output]) {
    for (n, output) in outputs.iter().enumerate() {
        assert_no_secret_in(&format!("stdout of command {n}"), &stdout(output));
        assert_no_secret_in(&format!("stderr of command {n}"), &stderr(output));
    }
    for path in files_below(world.dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        assert_no_secret_in(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}

/// The logs are not empty: at least `min_trace` trace lines from the HTTP stack, the client's
/// debug line for each answer, and the credentials line that names the AK (or the token kind).
fn assert_trace_text(output: &Output, min_trace: usize, credentials: &str) {
    let err = stderr(output);
    let trace = err.lines().filter(|l| l.contains(" TRACE ")).count();
    let answered = err.lines().filter(|l| l.contains("IMS answered")).count();
    assert!(trace >= min_trace, "only {trace} trace lines");
    assert!(answered >= 1, "no `IMS answered` lines");
    assert!(err.contains(credentials), "no {credentials:?} in the log");
}

fn assert_trace_json(output: &Output, min_trace: usize, credentials: &str) {
    let err = stderr(output);
    let mut trace = 0;
    let mut answered = 0;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        trace += usize::from(value["level"] == "TRACE");
        answered += usize::from(value["message"] == "IMS answered");
    }
    assert!(trace >= min_trace, "only {trace} trace lines");
    assert!(answered >= 1, "no `IMS answered` lines");
    assert!(err.contains(credentials), "no {credentials:?} in the log");
}

/// Every report format and the journal were written, so searching them means something.
fn assert_reports_and_journal(world: &World, images: usize) {
    let json = world.report("out/r.json");
    assert_eq!(json["images"].as_array().unwrap().len(), images);
    for name in REPORTS {
        let text = std::fs::read_to_string(world.path(&format!("out/{name}"))).unwrap();
        assert!(text.len() > 100, "{name} is nearly empty: {text}");
    }
    let journal = std::fs::read_to_string(world.path("m.imsreg-state.jsonl")).unwrap();
    assert!(
        journal.lines().count() > images,
        "journal too short: {journal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aksk_with_a_security_token_leaks_nothing_at_trace_level() {
    let world = faulty_world();
    let objects = objects(12);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let env = aksk_env(&world, SK);

    let dry = imsreg(
        &world,
        &run_args(&world, &manifest, &["--dry-run", "--log-format", "json"]),
        &env,
    )
    .await;
    assert_eq!(code(&dry), 0, "dry run");
    assert!(stdout(&dry).contains("submit"), "{}", stdout(&dry));
    assert_trace_json(&dry, 5, AK);

    let mut args = report_args();
    args.extend(["--submit-rate".to_string(), "50".to_string()]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = imsreg(&world, &run_args(&world, &manifest, &arg_refs), &env).await;
    assert!(
        [0, 1].contains(&code(&run)),
        "the run finished: {}",
        code(&run)
    );
    assert_trace_text(&run, 100, AK);
    assert_reports_and_journal(&world, objects.len());

    let status = imsreg(
        &world,
        &["status".to_string(), manifest.display().to_string()],
        &[],
    )
    .await;
    let status_json = imsreg(
        &world,
        &[
            "status".to_string(),
            manifest.display().to_string(),
            "--json".to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(code(&status), 0);
    assert!(
        stdout(&status).contains("registered"),
        "{}",
        stdout(&status)
    );
    let parsed: Value = serde_json::from_str(&stdout(&status_json)).unwrap();
    assert!(parsed.is_object(), "{parsed}");

    let stats = world.stats();
    assert!(stats.auth_failures == 0, "{stats:?}");
    assert!(
        stats.server_errors > 0 && stats.dropped_connections > 0,
        "faults happened: {stats:?}"
    );
    assert!(stats.dropped_register_responses > 0, "{stats:?}");
    assert!(stats.throttled > 0, "{stats:?}");
    assert_no_double_submission(&stats);

    assert_nothing_leaked(&world, &[&dry, &run, &status, &status_json]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iam_token_leaks_nothing_at_trace_level() {
    let world = faulty_world();
    let objects = objects(12);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let env = token_env(&world, IAM_TOKEN);

    let dry = imsreg(&world, &run_args(&world, &manifest, &["--dry-run"]), &env).await;
    assert_eq!(code(&dry), 0, "dry run");
    assert_trace_text(&dry, 5, "IAM token");

    let mut args = report_args();
    args.extend(["--log-format", "json", "--submit-rate", "50"].map(String::from));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = imsreg(&world, &run_args(&world, &manifest, &arg_refs), &env).await;
    assert!(
        [0, 1].contains(&code(&run)),
        "the run finished: {}",
        code(&run)
    );
    assert_trace_json(&run, 100, "IAM token");
    assert_reports_and_journal(&world, objects.len());

    let status = imsreg(
        &world,
        &["status".to_string(), manifest.display().to_string()],
        &[],
    )
    .await;
    assert_eq!(code(&status), 0);

    let stats = world.stats();
    assert!(stats.auth_failures == 0, "{stats:?}");
    assert!(
        stats.server_errors + stats.dropped_connections + stats.throttled > 0,
        "faults happened: {stats:?}"
    );
    assert_nothing_leaked(&world, &[&dry, &run, &status]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_leak_nothing_at_trace_level() {
    let world = faulty_world();
    let objects = objects(4);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);

    // A wrong secret key: the simulator answers 401, the run stops.
    let wrong_sk = imsreg(
        &world,
        // IMS's own 401 (the preflight would have OBS refuse the signature first).
        &run_args(
            &world,
            &manifest,
            &["--report", "out/sk.json", "--no-preflight"],
        ),
        &aksk_env(&world, WRONG_SK),
    )
    .await;
    assert_ne!(code(&wrong_sk), 0);
    assert_trace_text(&wrong_sk, 5, AK);
    let refused_after_sk = world.stats().auth_failures;
    assert!(refused_after_sk > 0, "the simulator refused the signature");

    // A wrong IAM token, logged as JSON.
    let wrong_token = imsreg(
        &world,
        &run_args(
            &world,
            &manifest,
            &[
                "--report",
                "out/token.json",
                "--log-format",
                "json",
                "--no-preflight",
            ],
        ),
        &token_env(&world, WRONG_TOKEN),
    )
    .await;
    assert_ne!(code(&wrong_token), 0);
    assert_trace_json(&wrong_token, 5, "IAM token");
    assert!(world.stats().auth_failures > refused_after_sk);

    // A token HTTP cannot carry is refused before anything is sent; the message names the
    // header, not the value.
    let unsendable = format!("{WRONG_TOKEN}\u{7f}{IAM_TOKEN}");
    let sent_before = total_requests(&world.stats());
    let bad_header = imsreg(
        &world,
        &run_args(&world, &manifest, &["--dry-run"]),
        &token_env(&world, &unsendable),
    )
    .await;
    assert_eq!(code(&bad_header), 2);
    assert!(
        stderr(&bad_header).contains("OS_AUTH_TOKEN"),
        "the variable is named: {}",
        stderr(&bad_header)
    );
    assert_eq!(total_requests(&world.stats()), sent_before);

    for (output, report) in [(&wrong_sk, "out/sk.json"), (&wrong_token, "out/token.json")] {
        assert!(
            stderr(output).contains("rejected the credentials"),
            "the refusal is explained"
        );
        // The run still wrote its report, which is searched with the rest.
        let report = world.report(report);
        assert_eq!(report["summary"]["cancelled"], 4, "{report}");
    }
    assert_nothing_leaked(&world, &[&wrong_sk, &wrong_token, &bad_header]);
}
