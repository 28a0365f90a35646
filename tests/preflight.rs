//! The preflight end to end, with the real binary against the simulator's OBS over HTTP on
//! loopback: every check of `imsreg preflight` (bucket, region, bucket class, object, class,
//! size, encryption, 403, format), its output and exit codes, its OBS rate, retries and
//! errors (unreachable, refused credentials, IAM token only), and in `imsreg run`: entries that
//! fail are `preflight_failed`, never submitted, never journaled; the rest goes largest first.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::e2e::{BIN, World, code, image_id, statuses, stderr, stdout};
use imsreg::sim::{SimConfig, SimStats};
use serde_json::Value;

/// Buckets and objects for every check; the IMS region is ap-southeast-1.
const OBS: &str = r#"
job_duration: 200ms
obs:
  region: ap-southeast-1
  buckets:
    images:
      objects:
        good/web.qcow2: {size: 10GiB}
        good/fixed.vhd: {size: 2GiB, content: vhd-fixed}
        good/disk.img: {size: 4GiB, content: raw}
        good/kms.qcow2: {size: 1GiB, encryption: kms}
        good/iso.iso: {size: 700MiB}
        warn/sseobs.qcow2: {size: 1GiB, encryption: sse-obs}
        warn/large.raw: {size: 130000000000}
        bad/cold.qcow2: {size: 1GiB, storage_class: COLD}
        bad/warm.qcow2: {size: 1GiB, storage_class: WARM}
        bad/empty.qcow2: {size: 0}
        bad/huge.raw: {size: 130GiB}
        bad/ssec.qcow2: {size: 1GiB, encryption: sse-c}
        bad/denied.qcow2: {size: 1GiB, denied: true}
        bad/vmdk.qcow2: {size: 1GiB, content: vmdk-stream}
        bad/garbage.qcow2: {size: 1GiB, content: garbage}
        bad/descriptor.vmdk: {size: 355, content: vmdk-descriptor}
    eu-images:
      region: eu-west-101
      objects: {a.qcow2: {size: 1GiB}}
    cold-bucket:
      storage_class: COLD
      objects: {a.qcow2: {size: 1GiB}}
    locked-bucket:
      denied: true
"#;

/// An entry's `image_url` and `format:`, and what the preflight must say about it:
/// `(check, severity)` per finding.
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<(&'static str, &'static str)>,
);

fn cases() -> Vec<Case> {
    vec![
        ("images:good/web.qcow2", None, vec![]),
        ("images:good/fixed.vhd", None, vec![]),
        ("images:good/disk.img", Some("raw"), vec![]),
        ("images:good/kms.qcow2", None, vec![]),
        ("images:good/iso.iso", None, vec![]),
        (
            "images:warn/sseobs.qcow2",
            None,
            vec![("encryption", "warning")],
        ),
        ("images:warn/large.raw", None, vec![("size", "warning")]),
        (
            "images:bad/cold.qcow2",
            None,
            vec![("storage_class", "error")],
        ),
        (
            "images:bad/warm.qcow2",
            None,
            vec![("storage_class", "error")],
        ),
        ("images:bad/empty.qcow2", None, vec![("size", "error")]),
        ("images:bad/huge.raw", None, vec![("size", "error")]),
        ("images:bad/ssec.qcow2", None, vec![("encryption", "error")]),
        ("images:bad/denied.qcow2", None, vec![("object", "error")]),
        ("images:bad/vmdk.qcow2", None, vec![("format", "error")]),
        ("images:bad/garbage.qcow2", None, vec![("format", "error")]),
        (
            "images:bad/descriptor.vmdk",
            None,
            vec![("format", "error")],
        ),
        ("images:bad/missing.qcow2", None, vec![("object", "error")]),
        ("no-such-bucket:a.qcow2", None, vec![("bucket", "error")]),
        ("eu-images:a.qcow2", None, vec![("region", "error")]),
        (
            "cold-bucket:a.qcow2",
            None,
            vec![("bucket_storage_class", "error")],
        ),
        ("locked-bucket:a.qcow2", None, vec![("object", "error")]),
    ]
}

fn world(extra: &str) -> World {
    World::start(SimConfig::from_yaml(&format!("{OBS}{extra}")).unwrap())
}

/// A manifest of `(image_url, format)` entries, IDs 0..n, known to the simulated IMS.
fn manifest(
    world: &World,
    name: &str,
    settings: &str,
    entries: &[(&str, Option<&str>)],
) -> PathBuf {
    let mut text = format!(
        "version: 1\nsettings:\n  poll_interval: 100ms\n  submit_rate: 50\n  query_rate: 200\n{settings}\nimages:\n"
    );
    for (i, (url, format)) in entries.iter().enumerate() {
        text.push_str(&format!(
            "  - image_id: {}\n    image_url: {url}\n",
            image_id(i)
        ));
        if let Some(format) = format {
            text.push_str(&format!("    format: {format}\n"));
        }
    }
    let path = world.path(name);
    std::fs::write(&path, text).unwrap();
    world.sim.add_images((0..entries.len()).map(image_id));
    path
}

/// `imsreg preflight MANIFEST --endpoint SIM ARGS...` with the simulator's credentials.
async fn preflight(world: &World, manifest: &Path, args: &[&str]) -> Output {
    preflight_with_env(world, manifest, args, &world.credentials_env()).await
}

async fn preflight_with_env(
    world: &World,
    manifest: &Path,
    args: &[&str],
    env: &[(&'static str, String)],
) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .env("HOME", world.dir.path())
        .env("NO_COLOR", "1")
        .current_dir(world.dir.path())
        .arg("preflight")
        .arg(manifest)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("imsreg preflight did not finish within 120 s")
        .unwrap();
    eprintln!(
        "--- imsreg preflight {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

fn with_endpoint<'a>(world: &'a World, args: &[&'a str]) -> Vec<String> {
    let mut all = vec!["--endpoint".to_string(), world.sim.url()];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `(check, severity)` of every problem, by manifest line.
fn findings_by_line(json: &Value) -> BTreeMap<u64, Vec<(String, String)>> {
    let mut by_line: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for problem in json["problems"].as_array().unwrap() {
        by_line
            .entry(problem["line"].as_u64().unwrap())
            .or_default()
            .push((
                problem["check"].as_str().unwrap().to_string(),
                problem["severity"].as_str().unwrap().to_string(),
            ));
    }
    by_line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_end_to_end_with_lines_codes_and_exit_one() {
    let world = world("");
    let cases = cases();
    let entries: Vec<(&str, Option<&str>)> = cases.iter().map(|(u, f, _)| (*u, *f)).collect();
    let path = manifest(&world, "m.yaml", "  region: ap-southeast-1", &entries);
    let args = with_endpoint(&world, &["--format", "json"]);
    let output = preflight(&world, &path, &strs(&args)).await;
    assert_eq!(code(&output), 1, "some entries fail");
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let entries_json = json["entries"].as_array().unwrap();
    assert_eq!(entries_json.len(), cases.len());
    let by_line = findings_by_line(&json);
    for ((url, _, expected), entry) in cases.iter().zip(entries_json) {
        let line = entry["line"].as_u64().unwrap();
        let found = by_line.get(&line).cloned().unwrap_or_default();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect();
        assert_eq!(found, expected, "{url} (line {line})");
        let passes = expected.iter().all(|(_, s)| s == "warning");
        assert_eq!(entry["passed"], passes, "{url}");
    }
    let summary = &json["summary"];
    assert_eq!(summary["entries"], cases.len());
    assert_eq!(summary["passed"], 7);
    assert_eq!(summary["failed"], cases.len() - 7);
    assert_eq!(summary["warnings"], 2);
    assert!(
        json["warnings"].as_array().unwrap().is_empty(),
        "the region is known"
    );

    // Sizes and formats as OBS and the bytes say.
    let entry = |url: &str| {
        let i = cases.iter().position(|(u, _, _)| *u == url).unwrap();
        entries_json[i].clone()
    };
    assert_eq!(entry("images:good/web.qcow2")["size_bytes"], 10u64 << 30);
    assert_eq!(
        entry("images:good/web.qcow2")["detected"],
        "qcow2 (version 3)"
    );
    assert_eq!(entry("images:good/fixed.vhd")["detected"], "vhd (fixed)");
    assert_eq!(entry("images:good/iso.iso")["detected"], "iso");
    assert_eq!(entry("images:bad/missing.qcow2")["size_bytes"], Value::Null);

    // The messages name both formats and the codes IMS would answer.
    let problem = |url: &str| {
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["image_url"] == url)
            .unwrap()
            .clone()
    };
    let vmdk = problem("images:bad/vmdk.qcow2");
    let message = vmdk["message"].as_str().unwrap();
    assert!(
        message.contains("is vmdk, the manifest says qcow2"),
        "{message}"
    );
    assert_eq!(vmdk["ims_code"], "IMG.0057");
    assert_eq!(problem("eu-images:a.qcow2")["ims_code"], "IMG.0058");
    assert_eq!(problem("images:bad/huge.raw")["ims_code"], "IMG.0059");
    let missing = problem("images:bad/missing.qcow2")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(missing.contains("NoSuchKey"), "{missing}");
    let no_bucket = problem("no-such-bucket:a.qcow2")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(no_bucket.contains("bucket no-such-bucket") && no_bucket.contains("does not exist"));

    // Never more than 64 KiB of any object, never a whole object, no writes; one HEAD per
    // bucket, shared by its entries.
    let obs = world.stats().obs;
    assert!(obs.max_range_bytes <= imsreg::obs::MAX_RANGE_BYTES);
    assert_eq!(obs.whole_reads, 0);
    assert_eq!(obs.requests["obs_head_bucket"], 5, "{obs:?}");
    assert_eq!(
        world.stats().requests.values().sum::<u64>(),
        0,
        "IMS was not asked"
    );

    // The text form: one FILE:LINE line per problem, then the summary.
    let output = preflight(&world, &path, &strs(&with_endpoint(&world, &[]))).await;
    assert_eq!(code(&output), 1);
    let text = stdout(&output);
    let label = path.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), json["problems"].as_array().unwrap().len() + 1);
    let cold_line = entry("images:bad/cold.qcow2")["line"].as_u64().unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{label}:{cold_line}: error: {}: images:bad/cold.qcow2 has the storage class COLD",
            image_id(7)
        ))),
        "{text}"
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with(&format!(
            "{label}: preflight: 21 entries, 7 passed, 14 failed, 2 warnings"
        )),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_manifests_exit_zero_and_an_unknown_region_is_one_warning() {
    let world = world("");
    let entries = [("images:good/web.qcow2", None), ("eu-images:a.qcow2", None)];
    let path = manifest(&world, "m.yaml", "", &entries);
    let output = preflight(
        &world,
        &path,
        &strs(&with_endpoint(&world, &["--format", "json"])),
    )
    .await;
    assert_eq!(code(&output), 0, "the region check is skipped");
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "said once: {warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("--region"));
    assert_eq!(
        stderr(&output)
            .matches("region IMS registers in is not known")
            .count(),
        1
    );
    // The region from the flag turns the check on.
    let args = with_endpoint(&world, &["--region", "ap-southeast-1"]);
    assert_eq!(code(&preflight(&world, &path, &strs(&args)).await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_requests_keep_to_obs_rate_and_faults_are_retried() {
    // 30 entries in one bucket: 1 bucket HEAD + 30 object HEADs + 30 reads.
    let world =
        world("  faults: {slow_down: 0.05, error_500: 0.1, drop_connection: 0.05}\nseed: 11\n");
    let objects: Vec<String> = (0..30)
        .map(|_| "images:good/web.qcow2".to_string())
        .collect();
    let entries: Vec<(&str, Option<&str>)> = objects.iter().map(|u| (u.as_str(), None)).collect();
    let path = manifest(&world, "m.yaml", "  region: ap-southeast-1", &entries);
    let args = with_endpoint(&world, &["--obs-rate", "10", "--concurrency", "8"]);
    let output = preflight(&world, &path, &strs(&args)).await;
    assert_eq!(code(&output), 0, "every fault was retried");
    let obs = world.stats().obs;
    assert!(
        obs.server_errors + obs.dropped_connections > 0,
        "faults happened: {obs:?}"
    );
    assert!(obs.total_requests() > 61, "and were retried: {obs:?}");
    // 10/s as sent (GCRA, burst 1): no sliding second sees more than 10, plus one for the
    // receive-side jitter of a loaded machine.
    let most = SimStats::max_in_window(&obs.arrivals_ms, 1000.0);
    assert!(most <= 11, "{most} OBS requests in one second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_verdict_is_exit_two_unreachable_refused_or_token_only() {
    let world = world("");
    let path = manifest(
        &world,
        "m.yaml",
        "  region: ap-southeast-1",
        &[("images:good/web.qcow2", None)],
    );

    // OBS refuses the signature: stopped at the first request.
    let mut wrong = world.credentials_env();
    wrong[1].1 = "not-the-secret".into();
    let output =
        preflight_with_env(&world, &path, &strs(&with_endpoint(&world, &[])), &wrong).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("OBS refused the credentials"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("not-the-secret"));
    assert_eq!(world.stats().obs.auth_failures, 1);

    // Only an IAM token: OBS cannot take it.
    let token = vec![
        (
            "OS_AUTH_TOKEN",
            world.sim.config().credentials.token.clone(),
        ),
        (
            "HUAWEICLOUD_SDK_PROJECT_ID",
            world.sim.config().credentials.project_id.clone(),
        ),
    ];
    let output =
        preflight_with_env(&world, &path, &strs(&with_endpoint(&world, &[])), &token).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("needs AK/SK"),
        "{}",
        stderr(&output)
    );
    // A run with only a token goes on without the preflight, and says so.
    let output = world
        .run_with_env(
            &path,
            &["--no-progress", "--no-state"],
            &token
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("preflight skipped"),
        "{}",
        stderr(&output)
    );

    // No OBS endpoint can be derived: no region, and the IMS endpoint is not loopback.
    let no_region = manifest(&world, "nr.yaml", "", &[("images:good/web.qcow2", None)]);
    let output = preflight(
        &world,
        &no_region,
        &["--endpoint", "https://ims.example.com"],
    )
    .await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("no OBS region or endpoint"),
        "{}",
        stderr(&output)
    );
    let output = preflight(&world, &path, &["--obs-endpoint", "http://obs.example.com"]).await;
    assert_eq!(code(&output), 2, "plain http only on loopback");

    // Nothing answers: an error, never a pass.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let output = preflight(&world, &path, &["--obs-endpoint", &dead]).await;
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("could not reach OBS"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_never_submits_what_fails_and_journals_nothing_final_for_it() {
    let world = world("");
    let entries = [
        ("images:good/web.qcow2", None),
        ("images:bad/cold.qcow2", None),
        ("images:good/fixed.vhd", None),
        ("images:bad/vmdk.qcow2", None),
    ];
    let path = manifest(&world, "m.yaml", "  region: ap-southeast-1", &entries);
    let output = world
        .run(
            &path,
            &[
                "--no-progress",
                "--report",
                "r.json",
                "--report",
                "r.csv",
                "--report",
                "r.xml",
            ],
        )
        .await;
    assert_eq!(
        code(&output),
        1,
        "preflight failures make the run incomplete"
    );
    let report = world.report("r.json");
    let status = statuses(&report);
    assert_eq!(status[&image_id(0)], "registered");
    assert_eq!(status[&image_id(1)], "preflight_failed");
    assert_eq!(status[&image_id(2)], "registered");
    assert_eq!(status[&image_id(3)], "preflight_failed");
    let images = report["images"].as_array().unwrap();
    assert_eq!(images[1]["error_code"], "PREFLIGHT.STORAGE_CLASS");
    assert!(
        images[3]["error_message"]
            .as_str()
            .unwrap()
            .contains("is vmdk, the manifest says qcow2")
    );
    assert_eq!(images[0]["size_bytes"], 10u64 << 30);
    assert_eq!(images[1]["size_bytes"], 1u64 << 30);
    assert_eq!(report["summary"]["preflight_failed"], 2);
    assert_eq!(
        report["summary"]["total_bytes"],
        (10u64 << 30) + (2 << 30) + (2 << 30)
    );
    assert_eq!(
        report["summary"]["registered_bytes"],
        (10u64 << 30) + (2 << 30)
    );
    let submitted: Vec<String> = world.stats().submissions.into_keys().collect();
    assert_eq!(submitted, [image_id(0), image_id(2)], "never submitted");
    let csv = std::fs::read_to_string(world.path("r.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",size_bytes,line,created,region,project_id")
    );
    assert!(csv.contains(",preflight_failed,"));
    let junit = std::fs::read_to_string(world.path("r.xml")).unwrap();
    assert!(junit.contains("preflight_failed"));
    assert!(
        stdout(&output).contains("2 preflight failed"),
        "{}",
        stdout(&output)
    );

    // Not final in the journal: the next run checks them again (and still refuses them).
    let journal = imsreg::state::replay(&imsreg::state::default_path(&path)).unwrap();
    assert!(
        journal
            .images
            .get(&image_id(1))
            .is_none_or(|i| i.outcome.is_none())
    );
    let before = world.stats().obs.requests["obs_head_object"];
    let again = world
        .run(&path, &["--no-progress", "--report", "r2.json"])
        .await;
    assert_eq!(code(&again), 1);
    let report = world.report("r2.json");
    assert_eq!(statuses(&report)[&image_id(0)], "already_registered");
    assert_eq!(statuses(&report)[&image_id(1)], "preflight_failed");
    assert_eq!(
        world.stats().obs.requests["obs_head_object"] - before,
        2,
        "only the unsettled entries are checked again"
    );
}

/// Settings under which images are submitted strictly one after the other.
const ONE_AT_A_TIME: &str = "  region: ap-southeast-1\n  max_active_jobs: 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sizes_the_largest_go_first_and_without_the_preflight_manifest_order() {
    let config = r#"
job_duration: 100ms
obs:
  buckets:
    sizes:
      objects:
        a.qcow2: {size: 3GiB}
        b.qcow2: {size: 50GiB}
        c.qcow2: {size: 1GiB}
        d.qcow2: {size: 20GiB}
        e.qcow2: {size: 8GiB}
"#;
    let world = World::start(SimConfig::from_yaml(config).unwrap());
    let urls: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| format!("sizes:{n}.qcow2"))
        .collect();
    let entries: Vec<(&str, Option<&str>)> = urls.iter().map(|u| (u.as_str(), None)).collect();
    let submission_order = |report: &Value| {
        let mut images: Vec<(String, String)> = report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["submitted_at"].as_str().unwrap().to_string(),
                    r["image_url"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        images.sort();
        images.into_iter().map(|(_, url)| url).collect::<Vec<_>>()
    };
    // One job at a time: each image takes its place among the active jobs in plan order, so
    // the submission times follow the plan.
    let path = manifest(&world, "m.yaml", ONE_AT_A_TIME, &entries);
    let output = world
        .run(
            &path,
            &["--no-progress", "--no-state", "--report", "r.json"],
        )
        .await;
    assert_eq!(code(&output), 0);
    let report = world.report("r.json");
    assert_eq!(
        submission_order(&report),
        [
            "sizes:b.qcow2",
            "sizes:d.qcow2",
            "sizes:e.qcow2",
            "sizes:a.qcow2",
            "sizes:c.qcow2"
        ]
    );
    let urls: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["image_url"].as_str().unwrap())
        .collect();
    assert_eq!(urls[0], "sizes:a.qcow2", "the report keeps manifest order");

    let world = World::start(SimConfig::from_yaml(config).unwrap());
    let path = manifest(&world, "m.yaml", ONE_AT_A_TIME, &entries);
    let output = world
        .run(
            &path,
            &[
                "--no-progress",
                "--no-state",
                "--no-preflight",
                "--report",
                "r.json",
            ],
        )
        .await;
    assert_eq!(code(&output), 0);
    let report = world.report("r.json");
    assert_eq!(
        submission_order(&report),
        [
            "sizes:a.qcow2",
            "sizes:b.qcow2",
            "sizes:c.qcow2",
            "sizes:d.qcow2",
            "sizes:e.qcow2"
        ]
    );
    assert_eq!(world.stats().obs.total_requests(), 0, "no OBS request");
    assert!(report["images"][0]["size_bytes"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_includes_the_preflight_and_the_manifest_can_turn_it_off() {
    let world = world("");
    let entries = [
        ("images:good/web.qcow2", None),
        ("images:bad/cold.qcow2", None),
    ];
    let path = manifest(&world, "m.yaml", "  region: ap-southeast-1", &entries);
    let output = world.run(&path, &["--dry-run"]).await;
    assert_eq!(code(&output), 0);
    let plan = stdout(&output);
    assert!(plan.contains("preflight       1 failed"), "{plan}");
    assert!(
        plan.contains(&format!("refuse  {}  images:bad/cold.qcow2", image_id(1))),
        "{plan}"
    );
    assert!(plan.contains("would submit    1"), "{plan}");
    assert!(world.stats().submissions.is_empty());

    let off = manifest(
        &world,
        "off.yaml",
        "  region: ap-southeast-1\n  preflight: false",
        &entries,
    );
    let requests = world.stats().obs.total_requests();
    let output = world.run(&off, &["--dry-run"]).await;
    assert_eq!(code(&output), 0);
    assert!(stdout(&output).contains("would submit    2"));
    assert_eq!(
        world.stats().obs.total_requests(),
        requests,
        "no OBS request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_demo_shows_what_it_catches() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/preflight-demo.yaml");
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(BIN)
        .env_clear()
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .args([
            "run",
            demo.to_str().unwrap(),
            "--simulate",
            "--no-progress",
            "--report",
            "r.json",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let report = common::read_report(&dir.path().join("r.json"));
    let summary = &report["summary"];
    assert_eq!(
        (
            summary["registered"].as_u64(),
            summary["preflight_failed"].as_u64()
        ),
        (Some(4), Some(6))
    );
    let codes: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["error_code"].as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "PREFLIGHT.STORAGE_CLASS",
            "PREFLIGHT.FORMAT",
            "PREFLIGHT.OBJECT",
            "PREFLIGHT.REGION",
            "PREFLIGHT.ENCRYPTION",
            "PREFLIGHT.SIZE"
        ]
    );
    assert!(stderr(&output).contains("warning: 5b1d7c3e-0a4f-4e21-9d6b-2c8e1f3a5b10"));
}
