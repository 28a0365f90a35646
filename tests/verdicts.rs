//! Issue 13's rule, end to end with the real binary: only IMS's own verdict is final. Not
//! reaching IMS leaves images unsettled (reported `unreachable`, nothing final journaled) and
//! the next run registers them; a typo never overwrites the manifest; a journal reached by
//! another name is still locked; a journaled job IMS does not know is submitted again.

mod common;

use std::path::Path;

use common::e2e::{World, code, quick_jobs, refs, statuses, stderr};
use imsreg::state::{self, JournalStatus};

/// Settings that keep these runs short.
const FAST: &str = "  query_rate: 1000\n  submit_rate: 1000\n  poll_interval: 200ms";

/// A loopback port where nothing listens.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_outage_is_reported_unreachable_and_the_next_run_registers_everything() {
    for n in [2, 30] {
        let world = World::start(quick_jobs());
        let objects = common::e2e::objects(n);
        let name = format!("m{n}.yaml");
        let (manifest, _) = world.manifest(&name, &refs(&objects), FAST);
        let report = format!("down-{n}.json");
        // OBS (the simulator) answers the preflight; IMS is down.
        let sim = world.sim.url();
        let output = world
            .command_without_endpoint(
                &manifest,
                &[
                    "--endpoint",
                    &dead_endpoint(),
                    "--obs-endpoint",
                    &sim,
                    "--report",
                    &report,
                ],
            )
            .envs(world.credentials_env())
            .output()
            .await
            .unwrap();
        assert_eq!(code(&output), 1, "{}", stderr(&output));
        let log = stderr(&output);
        assert_eq!(
            log.matches("could not reach IMS (or understand its answers)")
                .count(),
            1,
            "said once, not once per image: {log}"
        );
        let down = world.report(&report);
        assert!(
            statuses(&down).values().all(|s| s == "unreachable"),
            "{down}"
        );
        assert_eq!(down["summary"]["unreachable"], n);
        let journal = state::replay(&state::default_path(&manifest)).unwrap();
        assert!(
            journal.images.values().all(|image| image.outcome.is_none()),
            "nothing final was journaled: {journal:?}"
        );

        let healthy = format!("up-{n}.json");
        let output = world
            .command(&manifest, &["--report", &healthy])
            .envs(world.credentials_env())
            .output()
            .await
            .unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let up = world.report(&healthy);
        assert!(statuses(&up).values().all(|s| s == "registered"), "{up}");
    }
}

#[tokio::test]
async fn a_dry_run_against_an_outage_exits_one_without_a_plan() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("m.yaml", &["a.qcow2"], FAST);
    let sim = world.sim.url();
    let output = world
        .command_without_endpoint(
            &manifest,
            &[
                "--endpoint",
                &dead_endpoint(),
                "--obs-endpoint",
                &sim,
                "--dry-run",
            ],
        )
        .envs(world.credentials_env())
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("could not be reached"));
}

async fn refused(world: &World, manifest: &Path, args: &[&str]) -> String {
    let before = std::fs::read(manifest).unwrap();
    let output = world
        .command(manifest, args)
        .envs(world.credentials_env())
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert_eq!(
        std::fs::read(manifest).unwrap(),
        before,
        "the manifest is untouched"
    );
    assert_eq!(
        world.stats().register_requests_ms.len(),
        0,
        "nothing was attempted"
    );
    stderr(&output)
}

#[tokio::test]
async fn a_report_or_state_path_that_is_the_manifest_is_refused() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("wave.yaml", &["a.qcow2"], FAST);
    let path = manifest.to_str().unwrap();
    let log = refused(&world, &manifest, &["--report", path]).await;
    assert!(log.contains("is the manifest itself"), "{log}");
    refused(&world, &manifest, &["--state", path]).await;

    // Through links as well.
    let link = world.path("link.yaml");
    std::os::unix::fs::symlink(&manifest, &link).unwrap();
    let hard = world.path("hard.yaml");
    std::fs::hard_link(&manifest, &hard).unwrap();
    for other in [&link, &hard] {
        let other = other.to_str().unwrap();
        refused(&world, &manifest, &["--report", other]).await;
        refused(&world, &manifest, &["--state", other]).await;
    }
}

#[tokio::test]
async fn a_state_file_with_no_journal_line_is_refused_and_left_alone() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("wave.yaml", &["a.qcow2"], FAST);
    let notes = world.path("notes.txt");
    std::fs::write(&notes, "my notes\nabout the migration\n").unwrap();
    let output = world
        .command(&manifest, &["--state", notes.to_str().unwrap()])
        .envs(world.credentials_env())
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("is not an imsreg state journal"));
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "my notes\nabout the migration\n"
    );
    assert_eq!(world.stats().register_requests_ms.len(), 0);
}

#[tokio::test]
async fn a_journal_reached_through_a_symlink_or_hard_link_is_locked_and_stays_a_link() {
    let world = World::start(quick_jobs());
    let (manifest, _) = world.manifest("wave.yaml", &["a.qcow2"], FAST);
    let journal = world.path("real.jsonl");
    std::fs::write(&journal, "").unwrap();
    let symlink = world.path("sym.jsonl");
    std::os::unix::fs::symlink(&journal, &symlink).unwrap();
    let hard = world.path("hard.jsonl");
    std::fs::hard_link(&journal, &hard).unwrap();

    let held = state::RunLock::acquire(&journal).unwrap();
    for other in [&symlink, &hard] {
        let output = world
            .command(&manifest, &["--state", other.to_str().unwrap()])
            .envs(world.credentials_env())
            .output()
            .await
            .unwrap();
        assert_eq!(code(&output), 75, "{}", stderr(&output));
    }
    drop(held);

    let output = world
        .command(&manifest, &["--state", symlink.to_str().unwrap()])
        .envs(world.credentials_env())
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        std::fs::symlink_metadata(&symlink)
            .unwrap()
            .file_type()
            .is_symlink(),
        "compaction kept the symlink"
    );
    let replayed = state::replay(&journal).unwrap();
    assert_eq!(replayed.images.len(), 1, "written through the link");
    assert_eq!(
        replayed.images.values().next().unwrap().outcome,
        Some(JournalStatus::Registered)
    );
}

#[tokio::test]
async fn a_journaled_job_ims_does_not_know_is_submitted_in_the_same_run() {
    for n in [2, 12] {
        let world = World::start(quick_jobs());
        let objects = common::e2e::objects(n);
        let name = format!("carried-{n}.yaml");
        let (manifest, ids) = world.manifest(&name, &refs(&objects), FAST);
        // A journal carried over from another account: jobs this IMS never issued.
        let lines: String = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                format!(
                    "{{\"v\":1,\"at\":\"2026-11-28T10:00:00Z\",\"image_id\":\"{id}\",\"event\":\"submitted\",\"image_url\":\"bucket-e2e:{}\",\"job_id\":\"{:032x}\"}}\n",
                    objects[i],
                    0xfeed_0000u64 + i as u64
                )
            })
            .collect();
        std::fs::write(state::default_path(&manifest), lines).unwrap();
        let report = format!("carried-{n}.json");
        let output = world
            .command(&manifest, &["--report", &report, "--job-timeout", "1m"])
            .envs(world.credentials_env())
            .output()
            .await
            .unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let report = world.report(&report);
        assert!(
            statuses(&report).values().all(|s| s == "registered"),
            "{report}"
        );
    }
}
