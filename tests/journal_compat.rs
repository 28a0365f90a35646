//! A state journal written by the release before the journal got its own types (commit
//! 54ecef3, `tests/data/journal-release-54ecef3.jsonl`: the lines that release wrote for a
//! registered, an already registered, a failed and a pending image) still replays, and a
//! re-run of its manifest settles from it exactly as that release would have.

mod common;

use common::e2e::{World, code, quick_jobs, refs, statuses, stderr};
use imsreg::state::{self, JournalStatus};

fn old_journal(ids: &[String]) -> String {
    let text = include_str!("data/journal-release-54ecef3.jsonl");
    ids.iter()
        .enumerate()
        .fold(text.to_string(), |text, (i, id)| {
            text.replace(&format!("{{ID{i}}}"), id)
        })
}

#[tokio::test]
async fn a_journal_of_the_previous_release_replays_and_settles_a_rerun() {
    let world = World::start(quick_jobs());
    let objects = common::e2e::objects(4);
    let settings = "  query_rate: 1000\n  submit_rate: 1000\n  poll_interval: 200ms";
    let (manifest, ids) = world.manifest("wave.yaml", &refs(&objects), settings);
    let journal = state::default_path(&manifest);
    std::fs::write(&journal, old_journal(&ids)).unwrap();

    let replayed = state::replay(&journal).unwrap();
    assert!(replayed.unreadable_lines.is_empty() && !replayed.torn_tail);
    let outcome = |i: usize| replayed.images[&ids[i]].outcome;
    assert_eq!(outcome(0), Some(JournalStatus::Registered));
    assert_eq!(outcome(1), Some(JournalStatus::AlreadyRegistered));
    assert_eq!(outcome(2), Some(JournalStatus::Failed));
    assert_eq!(outcome(3), Some(JournalStatus::Pending));
    assert_eq!(
        replayed.images[&ids[2]].error_code.as_deref(),
        Some("IMG.0057")
    );
    assert_eq!(
        replayed.images[&ids[3]].job_id.as_deref(),
        Some("d00d004a4c464b568ecfca1071b21b10")
    );

    let output = world
        .command(&manifest, &["--report", "r.json", "--no-progress"])
        .envs(world.credentials_env())
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 1, "image 2 failed in the earlier run");
    let report = world.report("r.json");
    let got = statuses(&report);
    assert_eq!(got[&ids[0]], "already_registered", "{report}");
    assert_eq!(got[&ids[1]], "already_registered", "{report}");
    assert_eq!(got[&ids[2]], "failed", "{report}");
    // The pending job is one this simulator never issued and the image is queued: submitted.
    assert_eq!(got[&ids[3]], "registered", "{}", stderr(&output));
    let stats = world.stats();
    assert_eq!(
        stats.submissions.keys().collect::<Vec<_>>(),
        [&ids[3]],
        "only the pending image is submitted"
    );
}
