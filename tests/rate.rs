//! The submission rate as the server sees it. This test has a binary of its own so that no
//! other test runs beside it: the check is on the simulator's arrival times, and a machine
//! busy with parallel tests delays some arrivals more than others, which bunches them up.

mod common;

use common::e2e::*;

use imsreg::sim::{RateLimit, SimStats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_rate_never_exceeds_submit_rate() {
    // The simulator enforces the same rate: a client that keeps to submit_rate is never
    // throttled. The bucket holds 2 tokens, not 1: the simulator takes its token a few
    // milliseconds after a request arrives (after auth), so with exact 200 ms spacing on the
    // wire a 1-token bucket sees gaps of 197 ms and throttles a correct client.
    let rate = 5.0;
    let mut config = quick_jobs();
    config.rate_limits.insert(
        "register".into(),
        RateLimit {
            rate,
            burst: 2,
            retry_after: None,
        },
    );
    let world = World::start(config);
    let objects = objects(12);
    let (manifest, _) = world.manifest("m.yaml", &refs(&objects), FAST);
    let output = world
        .run(
            &manifest,
            &["--no-progress", "--submit-rate", "5", "--concurrency", "16"],
        )
        .await;
    assert_eq!(code(&output), 0);
    let stats = world.stats();
    assert_eq!(stats.accepted_registers(), 12);
    // Every register call the simulator saw (accepted or not), in any sliding second.
    let most = SimStats::max_in_window(&stats.register_requests_ms, 1000.0);
    assert!(
        most <= rate as usize,
        "{most} register calls in one second: {stats:?}"
    );
    assert_eq!(stats.throttled, 0, "{stats:?}");
}
