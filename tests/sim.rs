//! The simulator over real HTTP: every lifecycle rule, limit and fault seen through the
//! project's own IMS client (`imsreg::ims::client::Client`); wire-level checks (tampered
//! signatures, malformed bodies) through a minimal signed client; and the `imsreg simulate`
//! binary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use imsreg::ims::auth::{Credentials, Secret};
use imsreg::ims::client::{Client, ClientConfig};
use imsreg::ims::signer::{self, SigningInput};
use imsreg::ims::{
    CreateImageMetadataRequest, ErrorClass, ImageStatus, ImsApi, ImsError, JobStatus,
    ListImagesQuery,
};
use imsreg::sim::{DurationDist, Faults, RateLimit, SimConfig, SimHandle, SimStats, Simulator};
use serde_json::{Value, json};

const ID: &str = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";
const URL: &str = "bucket-1:images/centos-7.qcow2";

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(job: Duration) -> SimConfig {
    SimConfig {
        job_duration: DurationDist::Fixed(job),
        images: vec![ID.to_string()],
        ..SimConfig::default()
    }
}

/// The project's own client, with the simulator's AK/SK and project.
fn client(sim: &SimHandle) -> Client {
    let c = &sim.config().credentials;
    client_with(
        sim,
        Credentials::AkSk {
            ak: c.ak.clone(),
            sk: Secret::new(c.sk.clone()),
            security_token: None,
        },
    )
}

fn client_with(sim: &SimHandle, credentials: Credentials) -> Client {
    let mut config = ClientConfig::new(sim.url().parse().unwrap(), credentials);
    config.project_id = Some(sim.config().credentials.project_id.clone());
    config.request_timeout = Duration::from_secs(10);
    Client::new(config).unwrap()
}

/// The error answer of a call that should have failed with one.
fn api_error<T: std::fmt::Debug>(result: Result<T, ImsError>) -> imsreg::ims::ApiError {
    match result {
        Err(ImsError::Api(api)) => api,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

async fn status_of(ims: &Client, id: &str) -> ImageStatus {
    ims.get_image(id).await.unwrap().unwrap().status
}

/// Polls a job until it is terminal; every status seen and the final job.
async fn wait_job(ims: &Client, job_id: &str) -> (Vec<JobStatus>, imsreg::ims::Job) {
    let mut seen: Vec<JobStatus> = Vec::new();
    for _ in 0..300 {
        let job = ims.show_job(job_id).await.unwrap();
        let status = job.status.clone().unwrap();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status.is_terminal() {
            return (seen, job);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job_id} never finished: {seen:?}");
}

/// A minimal signed client for wire-level checks, built on the project's signer.
struct Raw {
    http: reqwest::Client,
    base: String,
    host: String,
    ak: String,
    sk: String,
    project_id: String,
    /// Signing time offset (to test clock skew).
    skew: chrono::Duration,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Raw {
    fn new(sim: &SimHandle) -> Self {
        let credentials = &sim.config().credentials;
        Self {
            http: reqwest::Client::new(),
            base: sim.url(),
            host: sim.addr().to_string(),
            ak: credentials.ak.clone(),
            sk: credentials.sk.clone(),
            project_id: credentials.project_id.clone(),
            skew: chrono::Duration::zero(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![
            (
                "Content-Type".to_string(),
                "application/json;charset=UTF-8".to_string(),
            ),
            ("X-Project-Id".to_string(), self.project_id.clone()),
        ];
        signer::prepare_headers(&mut headers, &self.host, chrono::Utc::now() + self.skew);
        let signature = signer::sign(
            &SigningInput {
                method,
                path,
                query: &query,
                headers: &headers,
                body: body.as_bytes(),
            },
            self.sk.as_bytes(),
            None,
        );
        headers.push((
            "Authorization".to_string(),
            signature.authorization(&self.ak),
        ));
        self.send_with(method, path, &query, headers, body).await
    }

    async fn send_with(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: Vec<(String, String)>,
        body: String,
    ) -> Result<Answer, reqwest::Error> {
        let mut url = format!("{}{}", self.base, path);
        let canonical = signer::canonical_query(query);
        if !canonical.is_empty() {
            url = format!("{url}?{canonical}");
        }
        let mut request = self.http.request(method.parse().unwrap(), url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }
}

fn ims_code(answer: &Answer) -> &str {
    answer.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn register_runs_a_job_and_the_image_becomes_active() {
    let sim = Simulator::start(config(Duration::from_millis(600)), local()).unwrap();
    let ims = client(&sim);
    assert_eq!(status_of(&ims, ID).await, ImageStatus::Queued);

    let job_id = ims.register_image(ID, URL).await.unwrap();
    assert_eq!(job_id.len(), 32);
    assert!(job_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(status_of(&ims, ID).await, ImageStatus::Saving);

    let (seen, job) = wait_job(&ims, &job_id).await;
    assert_eq!(seen.last(), Some(&JobStatus::Success));
    assert!(seen.contains(&JobStatus::Running), "{seen:?}");
    assert_eq!(job.job_type.as_deref(), Some("imsNativeImportImageJob"));
    assert_eq!(job.entities.unwrap().image_id.as_deref(), Some(ID));
    assert!(job.error_code.is_none() && job.fail_reason.is_none());
    let begin = imsreg::ims::types::parse_api_time(&job.begin_time.unwrap()).unwrap();
    let end = imsreg::ims::types::parse_api_time(&job.end_time.unwrap()).unwrap();
    assert!(
        end - begin >= chrono::Duration::milliseconds(590),
        "{begin} {end}"
    );
    let progress = ims.show_job_progress(&job_id).await.unwrap();
    assert_eq!(progress.entities.unwrap().process_percent, Some(100.0));

    let image = ims.get_image(ID).await.unwrap().unwrap();
    assert_eq!(image.status, ImageStatus::Active);
    assert!(image.active_at.is_some());
    assert_eq!(image.imagetype.as_deref(), Some("private"));
    assert_eq!(sim.image_status(ID), Some(ImageStatus::Active));

    let stats = sim.stats();
    assert_eq!(stats.submissions.get(ID), Some(&1));
    assert_eq!(stats.accepted_registers_ms.len(), 1);
    assert_eq!(stats.requests["register"], 1);
    assert!(stats.requests["show_job"] >= 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn progress_reports_running_percent() {
    let sim = Simulator::start(config(Duration::from_secs(4)), local()).unwrap();
    let ims = client(&sim);
    let job_id = ims.register_image(ID, URL).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let progress = ims.show_job_progress(&job_id).await.unwrap();
    assert_eq!(progress.status, Some(JobStatus::Running));
    let percent = progress.entities.unwrap().process_percent.unwrap();
    assert!((20.0..80.0).contains(&percent), "{percent}");
    assert!(progress.end_time.is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn corrupt_objects_and_the_failure_fraction_fail_jobs() {
    let mut cfg = config(Duration::from_millis(100));
    cfg.images.push("corrupt-one".into());
    let sim = Simulator::start(cfg, local()).unwrap();
    let ims = client(&sim);
    let job_id = ims
        .register_image("corrupt-one", "bucket-1:dir/corrupt-disk.vhd")
        .await
        .unwrap();
    let (_, job) = wait_job(&ims, &job_id).await;
    assert_eq!(job.status, Some(JobStatus::Fail));
    assert_eq!(job.error_code.as_deref(), Some("IMG.0057"));
    assert!(job.fail_reason.unwrap().contains("corrupt"));
    assert_eq!(status_of(&ims, "corrupt-one").await, ImageStatus::Killed);
    sim.shutdown().await;

    let sim = Simulator::start(
        SimConfig {
            failure_fraction: 1.0,
            ..config(Duration::from_millis(50))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    let job_id = ims.register_image(ID, URL).await.unwrap();
    let (_, job) = wait_job(&ims, &job_id).await;
    assert_eq!(job.status, Some(JobStatus::Fail));
    assert_eq!(job.error_code.as_deref(), Some("IMG.1075"));
    assert_eq!(status_of(&ims, ID).await, ImageStatus::Killed);
    sim.shutdown().await;
}

#[tokio::test]
async fn registrations_ims_refuses() {
    let sim = Simulator::start(config(Duration::from_secs(5)), local()).unwrap();
    let ims = client(&sim);
    let ids = ["active-1", "saving-1", "killed-1"];
    sim.set_image_status(ids[0], ImageStatus::Active);
    sim.set_image_status(ids[1], ImageStatus::Saving);
    sim.set_image_status(ids[2], ImageStatus::Killed);
    for id in ids {
        let api = api_error(ims.register_image(id, URL).await);
        assert_eq!((api.status, api.code.as_str()), (400, "IMG.0046"), "{id}");
        assert!(api.request_id.is_some());
    }
    let unknown = api_error(
        ims.register_image("00000000-0000-4000-8000-000000000000", URL)
            .await,
    );
    assert_eq!((unknown.status, unknown.code.as_str()), (404, "IMG.0027"));
    for (url, code) in [
        ("no-colon", "IMG.0017"),
        ("UPPER:disk.vhd", "IMG.0017"),
        ("bucket-1:my disk.vhd", "IMG.0175"),
        ("bucket-1:dir name/disk.vhd", "IMG.0175"),
        ("bucket-1:notes.txt", "IMG.0057"),
    ] {
        let api = api_error(ims.register_image(ID, url).await);
        assert_eq!((api.status, api.code.as_str()), (400, code), "{url}");
        assert_eq!(ImsError::Api(api).class(), ErrorClass::Final);
    }

    // Bodies the client never sends, checked on the wire.
    let raw = Raw::new(&sim);
    let empty = raw
        .send("PUT", &format!("/v1/cloudimages/{ID}/upload"), &[], None)
        .await
        .unwrap();
    assert_eq!((empty.status, ims_code(&empty)), (400, "IMG.0007"));
    let wrong_type = raw
        .send(
            "PUT",
            &format!("/v1/cloudimages/{ID}/upload"),
            &[],
            Some(json!({"image_url": 5})),
        )
        .await
        .unwrap();
    assert_eq!(
        (wrong_type.status, ims_code(&wrong_type)),
        (400, "IMG.0001")
    );

    // A second register of an accepted image is refused; only one submission counted.
    ims.register_image(ID, URL).await.unwrap();
    let again = api_error(ims.register_image(ID, URL).await);
    assert_eq!(again.code, "IMG.0046");
    assert_eq!(sim.stats().submissions.get(ID), Some(&1));
    assert!(sim.stats().resubmitted().is_empty());
    let missing_job = api_error(
        ims.show_job_progress("ffffffffffffffffffffffffffffffff")
            .await,
    );
    assert_eq!(missing_job.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn task_limit_answers_img_0060() {
    let ids: Vec<String> = (0..3).map(|i| format!("img-{i}")).collect();
    let sim = Simulator::start(
        SimConfig {
            task_limit: 2,
            job_duration: DurationDist::Fixed(Duration::from_millis(700)),
            images: ids.clone(),
            ..SimConfig::default()
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    ims.register_image(&ids[0], URL).await.unwrap();
    ims.register_image(&ids[1], URL).await.unwrap();
    let over = ims.register_image(&ids[2], URL).await.unwrap_err();
    assert_eq!(over.class(), ErrorClass::FlowControl);
    assert_eq!(over.code(), Some("IMG.0060"));
    assert_eq!(status_of(&ims, &ids[2]).await, ImageStatus::Queued);
    tokio::time::sleep(Duration::from_millis(800)).await;
    ims.register_image(&ids[2], URL).await.unwrap();
    let stats = sim.stats();
    assert_eq!(stats.max_running_jobs, 2);
    assert_eq!(stats.task_limit_rejections, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_is_checked_like_the_gateway() {
    let sim = Simulator::start(config(Duration::from_secs(1)), local()).unwrap();
    let sk = sim.config().credentials.sk.clone();
    let ak = sim.config().credentials.ak.clone();
    let token = sim.config().credentials.token.clone();
    let expect_401 = |result: Result<Option<imsreg::ims::ImageInfo>, ImsError>, what: &str| {
        let err = result.unwrap_err();
        assert_eq!(err.class(), ErrorClass::AuthFailed, "{what}: {err}");
        let ImsError::Api(api) = err else {
            unreachable!()
        };
        assert_eq!(
            (api.status, api.code.as_str()),
            (401, "APIG.0301"),
            "{what}"
        );
        assert!(api.message.contains("IAM"), "{what}: {}", api.message);
        assert!(api.request_id.is_some());
        assert!(!api.message.contains(&sk), "{what} leaks the SK");
    };

    assert!(client(&sim).get_image(ID).await.unwrap().is_some());
    let aksk = |ak: &str, sk: &str| Credentials::AkSk {
        ak: ak.into(),
        sk: Secret::new(sk),
        security_token: None,
    };
    expect_401(
        client_with(&sim, aksk(&ak, "not-the-secret"))
            .get_image(ID)
            .await,
        "SK",
    );
    expect_401(
        client_with(&sim, aksk("OTHERAK", &sk)).get_image(ID).await,
        "AK",
    );
    let by_token = client_with(&sim, Credentials::Token(Secret::new(token)));
    assert!(by_token.get_image(ID).await.unwrap().is_some());
    expect_401(
        client_with(&sim, Credentials::Token(Secret::new("nope")))
            .get_image(ID)
            .await,
        "token",
    );

    // Signing times: 14 minutes off is fine, 16 is not (either way).
    let answer_for = |minutes: i64| {
        let mut raw = Raw::new(&sim);
        raw.skew = chrono::Duration::minutes(minutes);
        async move { raw.send("GET", "/v2/cloudimages", &[], None).await.unwrap() }
    };
    assert_eq!(answer_for(-14).await.status, 200);
    for minutes in [-16, 16] {
        let answer = answer_for(minutes).await;
        assert_eq!(answer.status, 401, "{minutes} min");
        assert_eq!(answer.body["error_code"], "APIG.0301");
        assert!(answer.body["request_id"].is_string());
    }

    // A signed request whose query was changed after signing.
    let raw = Raw::new(&sim);
    let query = vec![("limit".to_string(), "1".to_string())];
    let mut headers = vec![("X-Project-Id".to_string(), raw.project_id.clone())];
    signer::prepare_headers(&mut headers, &raw.host, chrono::Utc::now());
    let signature = signer::sign(
        &SigningInput {
            method: "GET",
            path: "/v2/cloudimages",
            query: &query,
            headers: &headers,
            body: b"",
        },
        raw.sk.as_bytes(),
        None,
    );
    headers.push(("Authorization".into(), signature.authorization(&raw.ak)));
    let tampered = vec![("limit".to_string(), "2".to_string())];
    let answer = raw
        .send_with("GET", "/v2/cloudimages", &tampered, headers, String::new())
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    assert!(
        answer.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    let no_auth = raw
        .send_with("GET", "/v2/cloudimages", &[], vec![], String::new())
        .await
        .unwrap();
    assert_eq!(no_auth.status, 401);
    assert_eq!(sim.stats().auth_failures, 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_the_gateway_body() {
    let ids: Vec<String> = (0..6).map(|i| format!("img-{i}")).collect();
    let sim = Simulator::start(
        SimConfig {
            rate_limits: [(
                "register".to_string(),
                RateLimit {
                    rate: 5.0,
                    burst: 2,
                    retry_after: Some(1),
                },
            )]
            .into(),
            images: ids.clone(),
            ..config(Duration::from_secs(1))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    ims.register_image(&ids[0], URL).await.unwrap();
    ims.register_image(&ids[1], URL).await.unwrap();
    let throttled = ims.register_image(&ids[2], URL).await.unwrap_err();
    assert_eq!(
        throttled.class(),
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(1)),
            throttled: true
        }
    );
    let api = api_error::<()>(Err(throttled));
    assert_eq!((api.status, api.code.as_str()), (429, "APIG.0308"));
    assert_eq!(
        api.message,
        "The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second"
    );
    assert!(api.request_id.is_some());
    // The throttled call registered nothing; other APIs are not limited.
    assert_eq!(status_of(&ims, &ids[2]).await, ImageStatus::Queued);
    tokio::time::sleep(Duration::from_millis(250)).await;
    ims.register_image(&ids[2], URL).await.unwrap();

    let stats = sim.stats();
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.throttled_per_api["register"], 1);
    assert_eq!(stats.requests["register"], 4);
    assert_eq!(stats.register_requests_ms.len(), 4);
    assert_eq!(
        SimStats::max_in_window(&stats.accepted_registers_ms, 1000.0),
        3
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_5xx_use_the_right_bodies() {
    for (faults, status, code) in [
        (
            Faults {
                error_500: 1.0,
                ..Faults::default()
            },
            500,
            "IMG.0061",
        ),
        (
            Faults {
                error_502: 1.0,
                ..Faults::default()
            },
            502,
            "APIG.0202",
        ),
        (
            Faults {
                error_503: 1.0,
                ..Faults::default()
            },
            503,
            "APIG.0203",
        ),
    ] {
        let sim = Simulator::start(
            SimConfig {
                faults,
                ..config(Duration::from_secs(1))
            },
            local(),
        )
        .unwrap();
        let err = client(&sim).register_image(ID, URL).await.unwrap_err();
        assert!(
            matches!(
                err.class(),
                ErrorClass::Retryable {
                    throttled: false,
                    ..
                }
            ),
            "{err}"
        );
        let api = api_error::<()>(Err(err));
        assert_eq!((api.status, api.code.as_str()), (status, code));
        // The fault came before the backend: nothing was registered.
        assert_eq!(sim.image_status(ID), Some(ImageStatus::Queued));
        assert_eq!(sim.stats().server_errors, 1);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn dropped_connections_and_the_ambiguous_register() {
    let sim = Simulator::start(
        SimConfig {
            faults: Faults {
                drop_connection: 1.0,
                ..Faults::default()
            },
            ..config(Duration::from_secs(1))
        },
        local(),
    )
    .unwrap();
    let err = client(&sim).get_image(ID).await.unwrap_err();
    assert!(!matches!(err, ImsError::Api(_)), "{err}");
    assert_eq!(sim.stats().dropped_connections, 1);
    sim.shutdown().await;

    // Accepted, then the answer is lost: the image is saving and was submitted once.
    let sim = Simulator::start(
        SimConfig {
            faults: Faults {
                drop_register_response: 1.0,
                ..Faults::default()
            },
            ..config(Duration::from_millis(300))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    let err = ims.register_image(ID, URL).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Ambiguous, "{err}");
    assert_eq!(status_of(&ims, ID).await, ImageStatus::Saving);
    let stats = sim.stats();
    assert_eq!(stats.submissions.get(ID), Some(&1));
    assert_eq!(stats.dropped_register_responses, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status_of(&ims, ID).await, ImageStatus::Active);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_are_reproducible_for_a_seed() {
    let pattern = |seed: u64| async move {
        let sim = Simulator::start(
            SimConfig {
                seed,
                faults: Faults {
                    error_503: 0.5,
                    ..Faults::default()
                },
                ..config(Duration::from_secs(1))
            },
            local(),
        )
        .unwrap();
        let ims = client(&sim);
        let mut failed = Vec::new();
        for _ in 0..40 {
            failed.push(ims.get_image(ID).await.is_err());
        }
        sim.shutdown().await;
        failed
    };
    let first = pattern(11).await;
    assert_eq!(first, pattern(11).await);
    let failures = first.iter().filter(|failed| **failed).count();
    assert!((8..=32).contains(&failures), "{failures} of 40");
    assert_ne!(first, pattern(12).await);
}

#[tokio::test]
async fn added_latency_delays_answers() {
    let sim = Simulator::start(
        SimConfig {
            latency: DurationDist::Fixed(Duration::from_millis(150)),
            ..config(Duration::from_secs(1))
        },
        local(),
    )
    .unwrap();
    let started = Instant::now();
    client(&sim).get_image(ID).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    sim.shutdown().await;
}

#[tokio::test]
async fn listing_pages_and_filters() {
    let ids: Vec<String> = (0..25).map(|i| format!("id-{i:02}")).collect();
    let sim = Simulator::start(config(Duration::from_millis(50)), local()).unwrap();
    sim.add_images(ids.clone());
    sim.set_image_status("id-07", ImageStatus::Active);
    let ims = client(&sim);

    let mut query = ListImagesQuery {
        imagetype: Some("private".into()),
        limit: Some(10),
        ..ListImagesQuery::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = ims.list_images(&query).await.unwrap();
        pages += 1;
        seen.extend(page.images.into_iter().map(|image| image.id));
        match page.page_info.and_then(|p| p.next_marker) {
            Some(next) => query.marker = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = ids.clone();
    expected.push(ID.to_string());
    expected.sort();
    assert_eq!(seen, expected);

    let list = |query: ListImagesQuery| {
        let ims = ims.clone();
        async move {
            ims.list_images(&query)
                .await
                .unwrap()
                .images
                .into_iter()
                .map(|image| image.id)
                .collect::<Vec<_>>()
        }
    };
    let active = list(ListImagesQuery {
        status: Some(ImageStatus::Active),
        ..ListImagesQuery::default()
    })
    .await;
    assert_eq!(active, ["id-07"]);
    let gold = list(ListImagesQuery {
        imagetype: Some("gold".into()),
        ..ListImagesQuery::default()
    })
    .await;
    assert!(gold.is_empty());
    assert!(ims.get_image("nope").await.unwrap().is_none());
    let since = list(ListImagesQuery {
        updated_at: Some("gt:2000-01-01T00:00:00Z".into()),
        limit: Some(1000),
        ..ListImagesQuery::default()
    })
    .await;
    assert_eq!(since.len(), 26);
    let future = list(ListImagesQuery {
        updated_at: Some("gt:2999-01-01T00:00:00Z".into()),
        ..ListImagesQuery::default()
    })
    .await;
    assert!(future.is_empty());
    let bad = api_error(
        ims.list_images(&ListImagesQuery {
            limit: Some(5000),
            ..ListImagesQuery::default()
        })
        .await,
    );
    assert_eq!((bad.status, bad.code.as_str()), (400, "IMG.0001"));
    sim.shutdown().await;
}

#[tokio::test]
async fn created_images_can_be_registered() {
    let sim = Simulator::start(config(Duration::from_millis(100)), local()).unwrap();
    let ims = client(&sim);
    let created = ims
        .create_image_metadata(&CreateImageMetadataRequest {
            name: Some("web-01".into()),
            disk_format: Some("qcow2".into()),
            min_disk: Some(40),
            ..CreateImageMetadataRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(created.status, ImageStatus::Queued);
    assert_eq!(created.name.as_deref(), Some("web-01"));
    assert_eq!(created.disk_format.as_deref(), Some("qcow2"));
    assert!(uuid::Uuid::parse_str(&created.id).is_ok());

    let job_id = ims.register_image(&created.id, URL).await.unwrap();
    let (_, done) = wait_job(&ims, &job_id).await;
    assert_eq!(done.status, Some(JobStatus::Success));
    assert_eq!(done.entities.unwrap().image_name.as_deref(), Some("web-01"));
    let native = Raw::new(&sim)
        .send("GET", &format!("/v2/images/{}", created.id), &[], None)
        .await
        .unwrap();
    assert_eq!(native.status, 200);
    assert_eq!(native.body["status"], "active");
    assert_eq!(native.body["self"], format!("/v2/images/{}", created.id));
    sim.shutdown().await;
}

fn create_request(name: &str, key: &str) -> CreateImageMetadataRequest {
    CreateImageMetadataRequest {
        name: Some(name.into()),
        os_version: Some("Ubuntu 22.04 server 64bit".into()),
        disk_format: Some("qcow2".into()),
        min_disk: Some(40),
        min_ram: Some(1024),
        tags: Some(vec![format!("imsreg-key={key}"), "team=web".into()]),
        ..CreateImageMetadataRequest::default()
    }
}

#[tokio::test]
async fn created_images_carry_tags_and_are_found_by_them() {
    let sim = Simulator::start(config(Duration::from_millis(100)), local()).unwrap();
    let ims = client(&sim);
    let created = ImsApi::create_image_metadata(&ims, &create_request("web-01", "aaa"))
        .await
        .unwrap();
    assert_eq!(created.tag("imsreg-key"), Some("aaa"));
    assert_eq!(
        created.os_version.as_deref(),
        Some("Ubuntu 22.04 server 64bit")
    );
    assert_eq!(created.min_ram, Some(1024));
    ImsApi::create_image_metadata(&ims, &create_request("web-02", "bbb"))
        .await
        .unwrap();

    let found = ImsApi::find_images_by_tag(&ims, "imsreg-key", "aaa")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, created.id);
    assert!(
        ImsApi::find_images_by_tag(&ims, "imsreg-key", "zzz")
            .await
            .unwrap()
            .is_empty()
    );
    // The manifest image (no tags) is not among the tagged ones.
    let tagged = ImsApi::list_images_tagged(&ims, "imsreg-key")
        .await
        .unwrap();
    let mut names: Vec<_> = tagged.iter().filter_map(|i| i.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["web-01", "web-02"]);
    assert_eq!(
        sim.images_named("web-01"),
        [(created.id.clone(), ImageStatus::Queued)]
    );
    assert_eq!(sim.images_tagged("team", "web").len(), 2);
    let stats = sim.stats();
    assert_eq!(stats.images_per_name.get("web-01"), Some(&1));
    assert!(stats.duplicate_names().is_empty());
    assert_eq!(stats.requests.get("create_image"), Some(&2));
    sim.shutdown().await;
}

#[tokio::test]
async fn tagged_images_are_found_across_list_pages() {
    let sim = Simulator::start(
        SimConfig {
            image_quota: 5000,
            ..config(Duration::from_millis(100))
        },
        local(),
    )
    .unwrap();
    // 2,500 untagged images around the created ones: the bulk listing needs three pages.
    sim.add_images(
        (0..2500u32).map(|n| format!("{:08x}-0000-4000-8000-000000000000", n * 1_700_000)),
    );
    let ims = client(&sim);
    let mut created = Vec::new();
    for n in 0..3 {
        let image = ImsApi::create_image_metadata(
            &ims,
            &create_request(&format!("p-{n}"), &format!("k{n}")),
        )
        .await
        .unwrap();
        created.push(image.id);
    }
    let mut found: Vec<_> = ImsApi::list_images_tagged(&ims, "imsreg-key")
        .await
        .unwrap()
        .into_iter()
        .map(|image| image.id)
        .collect();
    found.sort();
    created.sort();
    assert_eq!(found, created);
    // Pages of 1000, 1000 and 504, then one empty page: a page of 500 or more without a
    // next_marker may be a page the server cut short (ims::paging), so it is followed too.
    assert_eq!(sim.stats().requests.get("list_images"), Some(&4));
    sim.shutdown().await;
}

#[tokio::test]
async fn os_versions_and_the_quota_are_served_from_the_config() {
    let mut os_versions = std::collections::BTreeMap::new();
    os_versions.insert(
        "CentOS".to_string(),
        vec![
            "CentOS 7.9 64bit".to_string(),
            "CentOS 8.2 64bit".to_string(),
        ],
    );
    let sim = Simulator::start(
        SimConfig {
            os_versions,
            image_quota: 3,
            ..config(Duration::from_millis(100))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    let versions = ImsApi::list_os_versions(&ims).await.unwrap();
    let names: Vec<_> = versions.iter().map(|v| v.os_version.as_str()).collect();
    assert_eq!(names, ["CentOS 7.9 64bit", "CentOS 8.2 64bit"]);
    assert_eq!(versions[0].platform, "CentOS");
    assert_eq!(versions[0].os_bit, Some(64));

    // The manifest image counts: 1 of 3 used.
    let quota = ImsApi::image_quota(&ims).await.unwrap();
    assert_eq!((quota.used, quota.quota), (1, 3));
    for n in 0..2 {
        ImsApi::create_image_metadata(&ims, &create_request(&format!("img-{n}"), &format!("k{n}")))
            .await
            .unwrap();
    }
    assert_eq!(ImsApi::image_quota(&ims).await.unwrap().used, 3);
    let full = api_error(ImsApi::create_image_metadata(&ims, &create_request("img-3", "k3")).await);
    assert_eq!((full.status, full.code.as_str()), (400, "IMG.0015"));
    assert!(sim.images_named("img-3").is_empty());
    let stats = sim.stats();
    assert_eq!(stats.requests.get("os_version"), Some(&1));
    assert_eq!(stats.requests.get("quota"), Some(&2));
    sim.shutdown().await;
}

#[tokio::test]
async fn create_bodies_ims_refuses() {
    let sim = Simulator::start(config(Duration::from_millis(100)), local()).unwrap();
    let raw = Raw::new(&sim);
    let cases = [
        (json!({"name": "x".repeat(129)}), "IMG.0002"),
        (json!({"name": " padded"}), "IMG.0003"),
        (json!({"disk_format": "vmdk"}), "IMG.0001"),
        (json!({"min_disk": 0}), "IMG.0001"),
        (json!({"min_disk": 2048}), "IMG.0001"),
        (json!({"min_ram": -5}), "IMG.0001"),
        (json!({"visibility": "public"}), "IMG.0001"),
        (json!({"tags": ["bad key=v"]}), "IMG.0115"),
        (
            json!({"tags": (0..11).map(|i| format!("k{i}=v")).collect::<Vec<_>>()}),
            "IMG.0116",
        ),
    ];
    for (body, code) in cases {
        let answer = raw
            .send("POST", "/v2/images", &[], Some(body.clone()))
            .await
            .unwrap();
        assert_eq!((answer.status, ims_code(&answer)), (400, code), "{body}");
    }
    // Nothing was created by any of them; the one manifest image is all there is.
    assert_eq!(sim.stats().images, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_images() {
    let sim = Simulator::start(config(Duration::from_millis(300)), local()).unwrap();
    let ims = client(&sim);
    let created = ImsApi::create_image_metadata(&ims, &create_request("gone", "g1"))
        .await
        .unwrap();
    let id = imsreg::ids::ImageId::parse(&created.id).unwrap();
    ImsApi::delete_image(&ims, &id).await.unwrap();
    assert!(sim.images_named("gone").is_empty());
    // Again: 404 on the wire, success for the caller (already gone).
    ImsApi::delete_image(&ims, &id).await.unwrap();
    let again = Raw::new(&sim)
        .send("DELETE", &format!("/v2/images/{}", created.id), &[], None)
        .await
        .unwrap();
    assert_eq!((again.status, ims_code(&again)), (404, "IMG.0144"));

    // A saving image (its job runs) is refused; once active it can go.
    ims.register_image(ID, URL).await.unwrap();
    let manifest_id = imsreg::ids::ImageId::parse(ID).unwrap();
    let refused = api_error(ImsApi::delete_image(&ims, &manifest_id).await);
    assert_eq!(refused.status, 409);
    tokio::time::sleep(Duration::from_millis(400)).await;
    ImsApi::delete_image(&ims, &manifest_id).await.unwrap();
    assert!(sim.image_status(ID).is_none());
    let stats = sim.stats();
    assert_eq!(stats.deleted_images, 2);
    assert_eq!(stats.requests.get("delete_image"), Some(&5));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_create_whose_answer_is_dropped_still_creates_the_image() {
    let sim = Simulator::start(
        SimConfig {
            faults: Faults {
                drop_create_response: 1.0,
                ..Faults::default()
            },
            ..config(Duration::from_millis(100))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    let err = ImsApi::create_image_metadata(&ims, &create_request("lost", "l1"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Ambiguous, "{err}");
    // The image exists, and the identity tag finds it.
    let named = sim.images_named("lost");
    assert_eq!(named.len(), 1);
    let found = ImsApi::find_images_by_tag(&ims, "imsreg-key", "l1")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, named[0].0);
    assert_eq!(sim.stats().dropped_create_responses, 1);
    // A refused create is answered (nothing was created, nothing to lose).
    let refused = api_error(
        ImsApi::create_image_metadata(
            &ims,
            &CreateImageMetadataRequest {
                disk_format: Some("vmdk".into()),
                ..CreateImageMetadataRequest::default()
            },
        )
        .await,
    );
    assert_eq!(refused.code, "IMG.0001");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_new_apis_are_rate_limited_and_faulted_by_name() {
    let mut rate_limits = std::collections::BTreeMap::new();
    for name in ["create_image", "quota", "os_version", "delete_image"] {
        rate_limits.insert(
            name.to_string(),
            RateLimit {
                rate: 0.001,
                burst: 1,
                retry_after: None,
            },
        );
    }
    let sim = Simulator::start(
        SimConfig {
            rate_limits,
            ..config(Duration::from_millis(100))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    ImsApi::image_quota(&ims).await.unwrap();
    let throttled = api_error(ImsApi::image_quota(&ims).await);
    assert_eq!(
        (throttled.status, throttled.code.as_str()),
        (429, "APIG.0308")
    );
    ImsApi::list_os_versions(&ims).await.unwrap();
    assert_eq!(api_error(ImsApi::list_os_versions(&ims).await).status, 429);
    ImsApi::create_image_metadata(&ims, &create_request("one", "o1"))
        .await
        .unwrap();
    assert_eq!(
        api_error(ImsApi::create_image_metadata(&ims, &create_request("two", "o2")).await).status,
        429
    );
    let stats = sim.stats();
    for name in ["quota", "os_version", "create_image"] {
        assert_eq!(stats.throttled_per_api.get(name), Some(&1), "{name}");
    }
    sim.shutdown().await;

    // Injected 503s reach the new APIs too.
    let sim = Simulator::start(
        SimConfig {
            faults: Faults {
                error_503: 1.0,
                ..Faults::default()
            },
            ..config(Duration::from_millis(100))
        },
        local(),
    )
    .unwrap();
    let ims = client(&sim);
    assert_eq!(api_error(ImsApi::image_quota(&ims).await).status, 503);
    assert_eq!(api_error(ImsApi::list_os_versions(&ims).await).status, 503);
    assert_eq!(sim.stats().server_errors, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_are_served_over_http_and_shutdown_closes_the_port() {
    let sim = Simulator::start(config(Duration::from_secs(1)), local()).unwrap();
    client(&sim).register_image(ID, URL).await.unwrap();
    let over_http: SimStats = reqwest::get(format!("{}/_sim/stats", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http.submissions, sim.stats().submissions);
    assert_eq!(over_http.running_jobs, 1);
    let unknown = Raw::new(&sim)
        .send("GET", "/v3/nothing", &[], None)
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error_code"], "APIG.0101");

    let addr = sim.addr();
    sim.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    assert!(Simulator::start(SimConfig::default(), local()).is_err());
}

#[cfg(unix)]
#[test]
fn the_simulate_command_serves_manifest_images_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sim.yaml");
    std::fs::write(&config_path, "job_duration: 100ms\n").unwrap();
    let manifest_path = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest_path,
        format!("version: 1\nimages:\n  - image_id: {ID}\n    image_url: \"{URL}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imsreg"))
        .args(["simulate", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .arg("--images")
        .arg(&manifest_path)
        .env("HUAWEICLOUD_SDK_AK", "ENVAK")
        .env("HUAWEICLOUD_SDK_SK", "env-secret")
        .env(
            "HUAWEICLOUD_SDK_PROJECT_ID",
            "00112233445566778899aabbccddeeff",
        )
        .env_remove("OS_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let build = |sk: &str| {
            let credentials = Credentials::AkSk {
                ak: "ENVAK".into(),
                sk: Secret::new(sk),
                security_token: None,
            };
            let mut config = ClientConfig::new(url.parse().unwrap(), credentials);
            config.project_id = Some("00112233445566778899aabbccddeeff".into());
            Client::new(config).unwrap()
        };
        let ims = build("env-secret");
        assert_eq!(status_of(&ims, ID).await, ImageStatus::Queued);
        ims.register_image(ID, URL).await.unwrap();
        let with_default_sk = build(imsreg::sim::config::DEFAULT_SK).get_image(ID).await;
        assert_eq!(
            with_default_sk.unwrap_err().class(),
            ErrorClass::AuthFailed,
            "env credentials replace the defaults"
        );
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn the_example_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sim.yaml");
    let config = SimConfig::from_file(&path).unwrap();
    assert_eq!(config.task_limit, 10);
    assert_eq!(config.rate_limits.len(), 8);
    assert_eq!(config.images, vec![ID.to_string()]);
    assert_eq!(config.image_quota, 200);
    assert_eq!(config.os_versions["Ubuntu"].len(), 2);
    assert_eq!(config.faults.drop_create_response, 0.02);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = Simulator::start(SimConfig::default(), local()).unwrap();
    let addr = sim.addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(sim);
    let mut closed = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the port should close once the handle is dropped");
}
