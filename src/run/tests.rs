//! Engine tests against the in-memory IMS of [`super::testing`], on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::RunConfig;
use super::engine::execute;
use super::events::{EventSink, RunEvent, RunResult};
use super::plan::PlannedImage;
use super::testing::{Counters, FakeIms, Fault, id, image_id, planned};
use crate::ids::{ImageId, JobId};
use crate::ims::{
    ApiError, CreateImageMetadataRequest, ImageInfo, ImageQuota, ImageStatus, ImageStatusPage,
    ImsApi, ImsError, Job, ListImagesQuery, ListImagesResponse, OsVersion,
};
use crate::report::ImageOutcome;

/// Every event, with when it came on tokio's clock.
#[derive(Default)]
struct Events(Mutex<Vec<(Instant, RunEvent)>>);

impl EventSink for Events {
    fn event(&self, event: &RunEvent) {
        self.0.lock().unwrap().push((Instant::now(), event.clone()));
    }
}

impl Events {
    fn all(&self) -> Vec<RunEvent> {
        self.timed().into_iter().map(|(_, e)| e).collect()
    }

    fn timed(&self) -> Vec<(Instant, RunEvent)> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, pick: impl Fn(&RunEvent) -> bool) -> usize {
        self.all().iter().filter(|e| pick(e)).count()
    }
}

fn config() -> RunConfig {
    RunConfig {
        concurrency: 8,
        max_active_jobs: 20,
        submit_rate: f64::INFINITY,
        query_rate: f64::INFINITY,
        poll_interval: Duration::from_secs(1),
        job_timeout: Duration::from_secs(3600),
    }
}

fn images(n: usize) -> Vec<PlannedImage> {
    (0..n).map(|i| planned(&image_id(i), None)).collect()
}

async fn run(
    fake: &Arc<FakeIms>,
    images: Vec<PlannedImage>,
    config: RunConfig,
) -> (RunResult, Arc<Events>) {
    let events = Arc::new(Events::default());
    let result = execute(
        fake.clone(),
        images,
        &config,
        events.clone(),
        CancellationToken::new(),
    )
    .await;
    (result, events)
}

fn statuses(result: &RunResult) -> Vec<ImageOutcome> {
    result.records.iter().map(|r| r.status).collect()
}

fn assert_submitted_once(counters: &Counters) {
    for (image, times) in &counters.accepted {
        assert_eq!(*times, 1, "{image} accepted {times} times");
    }
}

fn assert_finished_once_each(events: &Events, n: usize) {
    let mut finished: Vec<_> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::Finished { result, .. } => Some(result.image_id),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), n);
    finished.sort();
    finished.dedup();
    assert_eq!(finished.len(), n, "an image finished twice");
}

#[tokio::test(start_paused = true)]
async fn happy_path_registers_everything_in_plan_order() {
    let fake = Arc::new(FakeIms::new(5, Duration::from_secs(30)));
    let (result, events) = run(&fake, images(5), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 5]);
    for (i, record) in result.records.iter().enumerate() {
        assert_eq!(record.image_id.as_deref(), Some(image_id(i).as_str()));
        assert!(record.job_id.is_some());
        assert_eq!(record.attempts, 1);
        assert!(record.submitted_at.is_some() && record.finished_at.is_some());
        let duration = record.duration_s.unwrap();
        assert!((30.0..60.0).contains(&duration), "{duration}");
        assert_eq!(fake.status_of(&image_id(i)), Some(ImageStatus::Active));
    }
    assert!(!result.auth_failed && !result.interrupted);
    let counters = fake.counters();
    assert_eq!(counters.register_calls, 5);
    assert_submitted_once(&counters);
    assert_finished_once_each(&events, 5);
    // Few images: checked one by one, no listing.
    assert_eq!(counters.list_images, 0);
    assert_eq!(events.count(|e| matches!(e, RunEvent::Submitted { .. })), 5);
    assert!(events.count(|e| matches!(e, RunEvent::Progress { .. })) > 0);
    // Submitted comes before the image's Finished.
    let all = events.all();
    let submitted = all
        .iter()
        .position(|e| matches!(e, RunEvent::Submitted { image_id, .. } if *image_id == id(0)))
        .unwrap();
    let finished = all
        .iter()
        .position(|e| matches!(e, RunEvent::Finished { result, .. } if result.image_id == id(0)))
        .unwrap();
    assert!(submitted < finished);
}

/// When each register call of `image` was about to be sent.
fn submitting_times(events: &Events, image: &ImageId) -> Vec<Instant> {
    events
        .timed()
        .into_iter()
        .filter_map(|(at, e)| match e {
            RunEvent::Submitting { image_id, .. } if image_id == *image => Some(at),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_throttled_call_waits_its_retry_after_while_the_others_go_on() {
    let fake = Arc::new(FakeIms::new(6, Duration::from_secs(5)));
    fake.fault(Fault::Throttle(None));
    fake.fault(Fault::Throttle(Some(Duration::from_secs(7))));
    fake.fault(Fault::ServerError);
    let (result, events) = run(&fake, images(6), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 6]);
    assert_submitted_once(&fake.counters());
    assert_eq!(fake.counters().register_calls, 9);
    let throttled: Vec<Duration> = events
        .all()
        .iter()
        .filter_map(|e| match e {
            RunEvent::Throttled {
                api: crate::run::Api::Register,
                delay,
            } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(throttled.len(), 2);
    assert!(throttled[0] >= Duration::from_secs(2) && throttled[0] <= Duration::from_secs(5));
    assert_eq!(throttled[1], Duration::from_secs(7));
    // Each failed call was sent again no sooner than its pause: `Retry-After` when the server
    // sent one, else 2-5 s.
    let mut pauses = Vec::new();
    for (at, event) in events.timed() {
        if let RunEvent::Retrying {
            image_id: Some(image),
            delay,
            ..
        } = event
        {
            let tries = submitting_times(&events, &image);
            let again = tries.iter().find(|t| **t > at).expect("sent again");
            assert!(*again >= at + delay, "{image} sent again before its pause");
            pauses.push((image, tries));
        }
    }
    assert_eq!(pauses.len(), 3);
    // The lane did not stop for the throttled calls: the call that met a server error went
    // again while both throttled ones were still waiting.
    let (thrown_back, server_error) = (&pauses[0].1, &pauses[2].1);
    assert!(server_error[1] < thrown_back[1] && server_error[1] < pauses[1].1[1]);
}

/// An IMS behind a gateway that accepts `rate` register calls per second (a token bucket of
/// 2) and answers 429 with `Retry-After: 1` beyond it, as the benchmark's simulator.
struct Quota {
    ims: FakeIms,
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
    throttled: Mutex<u32>,
}

impl Quota {
    fn new(ims: FakeIms, rate: f64) -> Self {
        Quota {
            ims,
            rate,
            bucket: Mutex::new((2.0, Instant::now())),
            throttled: Mutex::new(0),
        }
    }

    /// Takes a token if there is one; counts a throttled call if not.
    fn take(&self) -> bool {
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap();
        let (tokens, refilled) = *bucket;
        let tokens = (tokens + (now - refilled).as_secs_f64() * self.rate).min(2.0);
        let accepted = tokens >= 1.0;
        *bucket = (if accepted { tokens - 1.0 } else { tokens }, now);
        if !accepted {
            *self.throttled.lock().unwrap() += 1;
        }
        accepted
    }
}

impl ImsApi for Quota {
    async fn register_image(&self, image_id: &ImageId, image_url: &str) -> Result<JobId, ImsError> {
        if !self.take() {
            return Err(ImsError::Api(ApiError {
                status: 429,
                code: "APIG.0308".into(),
                message: "The throttling threshold has been reached".into(),
                request_id: None,
                retry_after: Some(Duration::from_secs(1)),
            }));
        }
        self.ims.register_image(image_id, image_url).await
    }

    async fn show_job(&self, job_id: &JobId) -> Result<Job, ImsError> {
        self.ims.show_job(job_id).await
    }

    async fn show_job_progress(&self, job_id: &JobId) -> Result<Job, ImsError> {
        self.ims.show_job_progress(job_id).await
    }

    async fn list_images(&self, query: &ListImagesQuery) -> Result<ListImagesResponse, ImsError> {
        self.ims.list_images(query).await
    }

    async fn list_image_statuses(
        &self,
        query: &ListImagesQuery,
    ) -> Result<ImageStatusPage, ImsError> {
        self.ims.list_image_statuses(query).await
    }

    async fn get_image(&self, image_id: &ImageId) -> Result<Option<ImageInfo>, ImsError> {
        self.ims.get_image(image_id).await
    }

    async fn create_image_metadata(
        &self,
        request: &CreateImageMetadataRequest,
    ) -> Result<ImageInfo, ImsError> {
        self.ims.create_image_metadata(request).await
    }

    async fn find_images_by_tag(&self, key: &str, value: &str) -> Result<Vec<ImageInfo>, ImsError> {
        self.ims.find_images_by_tag(key, value).await
    }

    async fn list_images_tagged(&self, key: &str) -> Result<Vec<ImageInfo>, ImsError> {
        self.ims.list_images_tagged(key).await
    }

    async fn list_os_versions(&self) -> Result<Vec<OsVersion>, ImsError> {
        self.ims.list_os_versions().await
    }

    async fn image_quota(&self) -> Result<ImageQuota, ImsError> {
        self.ims.image_quota().await
    }

    async fn delete_image(&self, image_id: &ImageId) -> Result<(), ImsError> {
        self.ims.delete_image(image_id).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_limit_below_the_submit_rate_is_found_and_no_image_fails() {
    // The account's real limit is 20 % below `submit_rate` (benchmark scenario d).
    let quota = Arc::new(Quota::new(FakeIms::new(600, Duration::from_secs(2)), 16.0));
    let mut config = config();
    config.submit_rate = 20.0;
    config.max_active_jobs = 1000;
    let events = Arc::new(Events::default());
    let result = execute(
        quota.clone(),
        images(600),
        &config,
        events.clone(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 600]);
    let counters = quota.ims.counters();
    assert_submitted_once(&counters);
    // Throttled now and then (the limit is found by probing past it), never for long.
    let throttled = *quota.throttled.lock().unwrap();
    assert!((3..=40).contains(&throttled), "{throttled} throttled calls");
    // Throttled calls never reach IMS; every image reached it once.
    assert_eq!(counters.register_calls, 600);
    // More than 90 % of the server's rate was used: the 600 accepted calls took less than
    // 600 / (0.9 x 16) s (the clock is tokio's paused one: this is exact, not a speed test).
    let accepted: Vec<Instant> = counters.register_at.clone();
    let span = *accepted.last().unwrap() - accepted[0];
    assert!(
        span < Duration::from_secs_f64(600.0 / (0.9 * 16.0)),
        "{span:?}"
    );
    // And the configured rate stayed the ceiling: no second held more than 20 calls.
    for (i, start) in accepted.iter().enumerate() {
        let inside = accepted[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(inside <= 20, "{inside} calls in one second");
    }
}

#[tokio::test(start_paused = true)]
async fn ambiguous_register_that_was_accepted_is_not_sent_again() {
    let fake = Arc::new(FakeIms::new(3, Duration::from_secs(5)));
    fake.fault(Fault::AcceptedThenDropped);
    let (result, _) = run(&fake, images(3), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 3]);
    let counters = fake.counters();
    assert_eq!(counters.register_calls, 3);
    assert_submitted_once(&counters);
    let first = &result.records[0];
    assert_eq!(first.attempts, 1);
    assert_eq!(first.job_id, None, "accepted, but the answer was lost");
}

#[tokio::test(start_paused = true)]
async fn ambiguous_register_that_was_not_accepted_is_sent_again_after_the_grace() {
    let fake = Arc::new(FakeIms::new(1, Duration::from_secs(5)));
    fake.fault(Fault::DroppedNotAccepted);
    let (result, _) = run(&fake, images(1), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered]);
    let counters = fake.counters();
    assert_eq!(counters.register_calls, 2);
    assert_submitted_once(&counters);
    assert_eq!(result.records[0].attempts, 2);
    assert!(result.records[0].job_id.is_some());
    assert_eq!(counters.get_image, 1 + 2 + 1, "check, two looks, confirm");
}

#[tokio::test(start_paused = true)]
async fn flow_control_waits_and_never_fails_the_image() {
    let fake = Arc::new(FakeIms::new(12, Duration::from_secs(20)).with_task_limit(3));
    let mut config = config();
    config.max_active_jobs = 10;
    let (result, _) = run(&fake, images(12), config).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 12]);
    let counters = fake.counters();
    assert!(counters.flow_control_answers > 0);
    assert!(counters.max_running <= 3);
    assert_submitted_once(&counters);
}

#[tokio::test(start_paused = true)]
async fn active_jobs_bound_is_never_exceeded() {
    let fake = Arc::new(FakeIms::new(40, Duration::from_secs(10)));
    let mut config = config();
    config.max_active_jobs = 4;
    let (result, _) = run(&fake, images(40), config).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 40]);
    let counters = fake.counters();
    assert_eq!(counters.max_running, 4);
    assert_eq!(counters.flow_control_answers, 0);
}

#[tokio::test(start_paused = true)]
async fn auth_failure_stops_everything_at_once() {
    let fake = Arc::new(FakeIms::new(10, Duration::from_secs(60)));
    let mut config = config();
    config.max_active_jobs = 2;
    config.concurrency = 1;
    // Call 1 (image 0) gets a 503, call 2 is accepted, call 3 gets the 401. Which image makes
    // call 2 depends on the random backoff of image 0's retry, so the test does not assume it.
    fake.fault(Fault::ServerError);
    fake.fault(Fault::Pass);
    fake.fault(Fault::Unauthorized);
    let events = Arc::new(Events::default());
    let result = execute(
        fake.clone(),
        images(10),
        &config,
        events.clone(),
        CancellationToken::new(),
    )
    .await;
    assert!(result.auth_failed);
    assert!(!result.interrupted);
    assert_eq!(
        events.count(|e| matches!(e, RunEvent::AuthFailed { .. })),
        1
    );
    let counters = fake.counters();
    assert_eq!(counters.register_calls, 3);
    assert_eq!(counters.calls_after_auth_failure, 0);
    let by_status = statuses(&result);
    let accepted: Vec<usize> = (0..2)
        .filter(|&i| by_status[i] == ImageOutcome::Pending)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "one of images 0 and 1 was accepted: {by_status:?}"
    );
    assert!(result.records[accepted[0]].job_id.is_some());
    assert_eq!(by_status[1 - accepted[0]], ImageOutcome::Cancelled);
    assert!(by_status[2..].iter().all(|s| *s == ImageOutcome::Cancelled));
    assert_finished_once_each(&events, 10);
}

#[tokio::test(start_paused = true)]
async fn failed_jobs_and_final_errors_carry_code_and_reason() {
    let fake = Arc::new(FakeIms::new(3, Duration::from_secs(10)));
    fake.fail_job_of(&image_id(1));
    fake.fault(Fault::Final("IMG.0057"));
    let (result, _) = run(&fake, images(3), config()).await;
    let first = &result.records[0];
    assert_eq!(first.status, ImageOutcome::Failed);
    assert_eq!(first.error_code.as_deref(), Some("IMG.0057"));
    let message = first.error_message.as_deref().unwrap();
    assert!(message.contains("refused"), "{message}");
    // The code has a field of its own; the message does not repeat it.
    assert!(!message.contains("IMG.0057"), "{message}");
    let second = &result.records[1];
    assert_eq!(second.status, ImageOutcome::Failed);
    assert_eq!(second.error_code.as_deref(), Some("IMG.1075"));
    assert_eq!(
        second.error_message.as_deref(),
        Some("the image file is corrupt")
    );
    assert!(second.job_id.is_some());
    assert_eq!(result.records[2].status, ImageOutcome::Registered);
}

#[tokio::test(start_paused = true)]
async fn job_past_the_timeout_is_pending_with_its_job_id() {
    let fake = Arc::new(FakeIms::new(2, Duration::from_secs(3 * 3600)));
    let mut config = config();
    config.job_timeout = Duration::from_secs(1800);
    config.poll_interval = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    let (result, _) = run(&fake, images(2), config).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Pending; 2]);
    assert!(result.records.iter().all(|r| r.job_id.is_some()));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1800) && elapsed < Duration::from_secs(1801));
    // A 30-minute wait costs about a dozen queries per job, not hundreds.
    let polls = fake.counters().show_job_progress;
    assert!((16..=32).contains(&polls), "{polls} polls for two jobs");
}

#[tokio::test(start_paused = true)]
async fn cancellation_keeps_calls_on_the_wire_and_reports_pending_and_cancelled() {
    let fake = Arc::new(FakeIms::new(10, Duration::from_secs(60)));
    let mut config = config();
    config.max_active_jobs = 3;
    let cancel = CancellationToken::new();
    let events = Arc::new(Events::default());
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.cancel();
    });
    let result = execute(fake.clone(), images(10), &config, events.clone(), cancel).await;
    assert!(result.interrupted && !result.auth_failed);
    let by_status = statuses(&result);
    assert_eq!(&by_status[..3], &[ImageOutcome::Pending; 3]);
    assert!(result.records[..3].iter().all(|r| r.job_id.is_some()));
    assert!(by_status[3..].iter().all(|s| *s == ImageOutcome::Cancelled));
    assert_eq!(fake.counters().register_calls, 3);
    assert_finished_once_each(&events, 10);
}

#[tokio::test(start_paused = true)]
async fn cloud_status_decides_before_any_submission() {
    let fake = Arc::new(FakeIms::new(4, Duration::from_secs(10)));
    fake.set_status(&image_id(0), ImageStatus::Active);
    fake.set_status(&image_id(2), ImageStatus::Killed);
    let running_job = fake.start_job(&image_id(3));
    // image 1 saving with no job we know of: started by someone else.
    let other_job = fake.start_job(&image_id(1));
    let _ = other_job;
    let mut plan = images(4);
    plan[3].known_job_id = Some(running_job.clone());
    plan.push(planned(&image_id(99), None));
    let (result, events) = run(&fake, plan, config()).await;
    assert_eq!(
        statuses(&result),
        vec![
            ImageOutcome::AlreadyRegistered,
            ImageOutcome::Registered,
            ImageOutcome::Failed,
            ImageOutcome::Registered,
            ImageOutcome::Failed,
        ]
    );
    assert_eq!(fake.counters().register_calls, 0, "nothing submitted");
    assert_eq!(
        result.records[3].job_id.as_deref(),
        Some(running_job.as_str())
    );
    assert!(
        result.records[4]
            .error_message
            .as_deref()
            .unwrap()
            .contains("create it first")
    );
    assert_eq!(
        events.count(|e| matches!(e, RunEvent::StatusKnown { .. })),
        5
    );
    assert_eq!(
        events.count(|e| matches!(e, RunEvent::CheckingStatus { images: 5 })),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn many_images_are_checked_and_followed_in_bulk() {
    let n = 300;
    let fake = Arc::new(FakeIms::new(n, Duration::from_secs(600)));
    let mut config = config();
    config.max_active_jobs = 300;
    config.poll_interval = Duration::from_secs(10);
    let (result, _) = run(&fake, images(n), config).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; n]);
    let counters = fake.counters();
    assert_submitted_once(&counters);
    // One page for the check, then sweeps (two small listings every poll interval over the
    // 10 minutes) instead of ~10 polls per job.
    assert_eq!(counters.get_image, 0);
    let job_queries = counters.show_job + counters.show_job_progress;
    assert!(job_queries < 10, "{job_queries} job queries");
    assert!(
        counters.list_images <= 130,
        "{} listings",
        counters.list_images
    );
}

#[tokio::test(start_paused = true)]
async fn jobs_without_progress_call_are_polled_with_show_job() {
    let mut fake = FakeIms::new(2, Duration::from_secs(30));
    fake.progress_supported = false;
    let fake = Arc::new(fake);
    let (result, _) = run(&fake, images(2), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 2]);
    let counters = fake.counters();
    assert!(counters.show_job >= 4, "{counters:?}");
    assert!(counters.show_job_progress <= 2, "{counters:?}");
}

#[tokio::test(start_paused = true)]
async fn a_big_account_is_not_paged_through_for_a_small_manifest() {
    // 21 manifest images (above the per-ID threshold) sorted after 40,000 other images: the
    // listing is abandoned once the pages read outnumber the images still unseen.
    let fake = Arc::new(FakeIms::new(0, Duration::from_secs(5)).with_other_images(40_000));
    let plan: Vec<PlannedImage> = (0..21)
        .map(|i| {
            let id = format!("ffffffff-0000-0000-0000-{i:012}");
            fake.set_status(&id, ImageStatus::Active);
            planned(&id, None)
        })
        .collect();
    let (result, _) = run(&fake, plan, config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::AlreadyRegistered; 21]);
    let counters = fake.counters();
    assert_eq!(counters.list_images, 21);
    assert_eq!(counters.get_image, 21);
}

#[tokio::test(start_paused = true)]
async fn many_images_in_a_small_account_are_checked_with_one_page() {
    let fake = Arc::new(FakeIms::new(50, Duration::from_secs(5)).with_other_images(100));
    let (result, _) = run(&fake, images(50), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 50]);
    let counters = fake.counters();
    assert_eq!(counters.get_image, 0);
    assert_submitted_once(&counters);
}

/// No one-second window holds more register calls than the rate, no two calls come closer than
/// a period less the limiter's slack, and the pace holds (tokio's paused clock: the limiter's
/// own tests cover late timer turns).
#[tokio::test(start_paused = true)]
async fn submissions_never_exceed_the_submit_rate() {
    let fake = Arc::new(FakeIms::new(30, Duration::from_millis(50)));
    let mut config = config();
    config.submit_rate = 20.0;
    config.poll_interval = Duration::from_millis(20);
    config.concurrency = 4;
    let (result, _) = run(&fake, images(30), config).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered; 30]);
    let times = fake.counters().register_at;
    assert_eq!(times.len(), 30);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(50) - super::pacer::SLACK,
            "gap {gap:?}"
        );
    }
    for (i, start) in times.iter().enumerate() {
        let inside = times[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(inside <= 20, "{inside} calls in one second");
    }
    // And the pace holds: 29 periods at 0.995 x 20/s, within a timer tick each.
    let period = Duration::from_secs_f64(1.0 / (20.0 * super::pacer::RATE_MARGIN));
    let span = times[29] - times[0];
    assert!(span >= period * 29 - super::pacer::SLACK, "{span:?}");
    assert!(span <= period * 29 + Duration::from_millis(29), "{span:?}");
}

#[tokio::test(start_paused = true)]
async fn polls_start_after_the_interval_and_grow_by_half() {
    let fake = Arc::new(FakeIms::new(1, Duration::from_secs(1800)));
    let mut config = config();
    config.poll_interval = Duration::from_secs(10);
    let (result, _) = run(&fake, images(1), config).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered]);
    let counters = fake.counters();
    let submitted = counters.register_at[0];
    let at: Vec<f64> = counters
        .job_query_at
        .iter()
        .map(|t| (*t - submitted).as_secs_f64())
        .collect();
    assert!((9.0..=11.0).contains(&at[0]), "first poll at {}", at[0]);
    let gaps: Vec<f64> = std::iter::once(at[0])
        .chain(at.windows(2).map(|w| w[1] - w[0]))
        .collect();
    for pair in gaps.windows(2).take(6) {
        let growth = pair[1] / pair[0];
        assert!(
            (1.5 * 0.9 / 1.1..=1.5 * 1.1 / 0.9).contains(&growth),
            "{gaps:?}"
        );
    }
    assert!(gaps.iter().all(|g| *g <= 330.0), "{gaps:?}");
    assert!(
        (10..=15).contains(&at.len()),
        "{} polls for a 30-minute job",
        at.len()
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_exponentially_with_full_jitter() {
    let fake = Arc::new(FakeIms::new(1, Duration::from_secs(5)));
    for _ in 0..4 {
        fake.fault(Fault::ServerError);
    }
    let (result, events) = run(&fake, images(1), config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered]);
    assert_eq!(result.records[0].attempts, 5);
    let delays: Vec<Duration> = events
        .all()
        .iter()
        .filter_map(|e| match e {
            RunEvent::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 4);
    for (n, delay) in delays.iter().enumerate() {
        assert!(
            *delay <= Duration::from_millis(500) * (1 << n),
            "{delays:?}"
        );
    }
    // Each retry left right after its announced pause (tokio timers have 1 ms granularity).
    let at = fake.counters().register_at;
    for (n, delay) in delays.iter().enumerate() {
        let gap = at[n + 1] - at[n];
        assert!(
            gap >= *delay && gap <= *delay + Duration::from_millis(2),
            "{gap:?} vs {delay:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn too_many_server_errors_fail_the_image_with_the_code() {
    let fake = Arc::new(FakeIms::new(2, Duration::from_secs(5)));
    for _ in 0..super::retry::MAX_ATTEMPTS {
        fake.fault(Fault::ServerError);
    }
    let mut config = config();
    config.max_active_jobs = 1;
    let (result, _) = run(&fake, images(2), config).await;
    let failed: Vec<_> = result
        .records
        .iter()
        .filter(|r| r.status == ImageOutcome::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error_code.as_deref(), Some("503"));
    assert_eq!(failed[0].attempts, super::retry::MAX_ATTEMPTS);
    assert_eq!(
        result
            .records
            .iter()
            .filter(|r| r.status == ImageOutcome::Registered)
            .count(),
        1,
        "the run goes on with the others"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_ims_no_longer_knows_falls_back_to_the_image_status() {
    let fake = Arc::new(FakeIms::new(1, Duration::from_secs(60)));
    let job = fake.start_job(&image_id(0));
    fake.hide_job(&job);
    let plan = vec![planned(&image_id(0), Some(&job))];
    let (result, _) = run(&fake, plan, config()).await;
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered]);
    assert_eq!(result.records[0].job_id.as_deref(), Some(job.as_str()));
    assert_eq!(fake.counters().register_calls, 0);
    assert!(fake.counters().get_image >= 2);
}

/// Issue 13, case 4: a journal job IMS does not know, with the image `queued` (a journal
/// carried across accounts or regions, or an expired job record): submitted in the same run,
/// whether the status check uses per-ID lookups (few images) or list pages (many), with bulk
/// sweeps following the new jobs.
#[tokio::test(start_paused = true)]
async fn a_journaled_job_ims_does_not_know_with_the_image_queued_is_submitted() {
    for n in [1, 3, 30] {
        let fake = Arc::new(FakeIms::new(n, Duration::from_secs(5)));
        let plan: Vec<PlannedImage> = (0..n)
            .map(|i| planned(&image_id(i), Some(&format!("{:032x}", 0xdead_0000 + i))))
            .collect();
        let (result, _) = run(&fake, plan, config()).await;
        assert_eq!(
            statuses(&result),
            vec![ImageOutcome::Registered; n],
            "{n} images"
        );
        let counters = fake.counters();
        assert_eq!(counters.register_calls as usize, n, "{n} images");
        assert_submitted_once(&counters);
        for record in &result.records {
            assert_ne!(
                record.job_id.as_deref().map(|j| j.starts_with("0000")),
                Some(true),
                "the new job is reported, not the stale one"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_journaled_job_ims_still_knows_is_followed_not_resubmitted() {
    let fake = Arc::new(FakeIms::new(1, Duration::from_secs(5)));
    let job = fake.start_job(&image_id(0));
    fake.set_status(&image_id(0), ImageStatus::Queued);
    let (result, _) = run(&fake, vec![planned(&image_id(0), Some(&job))], config()).await;
    assert_eq!(fake.counters().register_calls, 0);
    assert_eq!(result.records[0].job_id.as_deref(), Some(job.as_str()));
}

#[tokio::test(start_paused = true)]
async fn failures_seen_by_a_sweep_carry_the_jobs_code_and_reason() {
    let n = 30;
    let fake = Arc::new(FakeIms::new(n, Duration::from_secs(120)));
    for i in [3, 17, 29] {
        fake.fail_job_of(&image_id(i));
    }
    let mut config = config();
    config.max_active_jobs = 30;
    config.poll_interval = Duration::from_secs(5);
    let (result, _) = run(&fake, images(n), config).await;
    for (i, record) in result.records.iter().enumerate() {
        if [3, 17, 29].contains(&i) {
            assert_eq!(record.status, ImageOutcome::Failed);
            assert_eq!(record.error_code.as_deref(), Some("IMG.1075"));
            assert_eq!(
                record.error_message.as_deref(),
                Some("the image file is corrupt")
            );
        } else {
            assert_eq!(record.status, ImageOutcome::Registered, "image {i}");
        }
    }
    let counters = fake.counters();
    assert_eq!(
        counters.show_job, 3,
        "one query per failure, for its reason"
    );
    assert_eq!(counters.show_job_progress, 0);
}

#[tokio::test(start_paused = true)]
async fn followers_wait_for_sweeps_in_bulk_and_poll_again_once_few_are_left() {
    let n = super::watch::BULK_THRESHOLD + 1;
    let fake = Arc::new(FakeIms::new(n, Duration::from_secs(1800)));
    let mut config = config();
    config.poll_interval = Duration::from_secs(10);
    let checks = async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let in_bulk = fake.counters();
        assert_eq!(in_bulk.register_calls as usize, n);
        assert_eq!(
            in_bulk.show_job + in_bulk.show_job_progress,
            0,
            "sweeps alone follow the jobs: {in_bulk:?}"
        );
        assert_eq!(
            in_bulk.get_image as usize, n,
            "only the check before submitting"
        );
        // Two registrations fail: fewer than the bulk threshold are left, and those poll their
        // jobs themselves from then on (the sweeps stop).
        fake.set_status(&image_id(0), ImageStatus::Killed);
        fake.set_status(&image_id(1), ImageStatus::Killed);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let alone = fake.counters();
        assert_eq!(alone.show_job, 2, "the failure reasons: {alone:?}");
        assert!(
            alone.show_job_progress >= n as u32 - 2,
            "each remaining follower polls: {alone:?}"
        );
        let lists_then = alone.list_images;
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(fake.counters().list_images, lists_then, "no more sweeps");
    };
    let ((result, _), ()) = tokio::join!(run(&fake, images(n), config), checks);
    let mut expected = vec![ImageOutcome::Registered; n];
    expected[0] = ImageOutcome::Failed;
    expected[1] = ImageOutcome::Failed;
    assert_eq!(statuses(&result), expected);
}

/// A sink whose disk is slow: `durable()` waits until the test opens the gate.
struct SlowDisk {
    events: Events,
    gate: tokio::sync::Semaphore,
}

impl EventSink for SlowDisk {
    fn event(&self, event: &RunEvent) {
        self.events.event(event);
    }

    fn durable(&self) -> super::Durable<'_> {
        Box::pin(async {
            let _ = self.gate.acquire().await;
        })
    }
}

#[tokio::test(start_paused = true)]
async fn an_image_counts_as_submitted_only_once_its_job_id_is_durable() {
    let fake = Arc::new(FakeIms::new(1, Duration::from_secs(30)));
    let sink = Arc::new(SlowDisk {
        events: Events::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let config = config();
    let engine = execute(
        fake.clone(),
        images(1),
        &config,
        sink.clone(),
        CancellationToken::new(),
    );
    let disk = async {
        // Long past the job's end: the engine still waits for the disk, not for IMS.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            sink.events
                .count(|e| matches!(e, RunEvent::Submitted { .. })),
            1
        );
        assert_eq!(
            sink.events
                .count(|e| matches!(e, RunEvent::Finished { .. })),
            0,
            "the image went on before its job ID was durable"
        );
        sink.gate.add_permits(1);
    };
    let (result, ()) = tokio::join!(engine, disk);
    assert_eq!(statuses(&result), vec![ImageOutcome::Registered]);
}
