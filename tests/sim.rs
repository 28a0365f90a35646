//! The simulator over real HTTP: every lifecycle rule, auth check, limit and fault, seen from
//! a client signing requests with the project's own signer, plus the `imsreg simulate` binary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use imsreg::ims::ImageStatus;
use imsreg::ims::signer::{self, SigningInput};
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

/// A minimal signed client: what any SDK does, built on the project's signer.
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
    headers: reqwest::header::HeaderMap,
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
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn register(&self, id: &str, url: &str) -> Answer {
        self.send(
            "PUT",
            &format!("/v1/cloudimages/{id}/upload"),
            &[],
            Some(json!({ "image_url": url })),
        )
        .await
        .unwrap()
    }

    async fn job(&self, job_id: &str) -> Value {
        let path = format!("/v1/{}/jobs/{job_id}", self.project_id);
        let answer = self.send("GET", &path, &[], None).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    async fn progress(&self, job_id: &str) -> Value {
        let path = format!("/v1/cloudimages/job/{job_id}");
        let answer = self.send("GET", &path, &[], None).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    async fn list(&self, query: &[(&str, &str)]) -> Value {
        let answer = self
            .send("GET", "/v2/cloudimages", query, None)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    async fn image_status(&self, id: &str) -> String {
        let list = self.list(&[("id", id), ("__imagetype", "private")]).await;
        list["images"][0]["status"].as_str().unwrap().to_string()
    }

    /// Polls the job until terminal, returning every status seen and the final job.
    async fn wait(&self, job_id: &str) -> (Vec<String>, Value) {
        let mut seen = Vec::new();
        for _ in 0..200 {
            let job = self.job(job_id).await;
            let status = job["status"].as_str().unwrap().to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == "SUCCESS" || status == "FAIL" {
                return (seen, job);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job {job_id} never finished: {seen:?}");
    }
}

fn ims_code(answer: &Answer) -> &str {
    answer.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn register_runs_a_job_and_the_image_becomes_active() {
    let sim = Simulator::start(config(Duration::from_millis(600)), local()).unwrap();
    let client = Raw::new(&sim);
    assert_eq!(client.image_status(ID).await, "queued");

    let answer = client.register(ID, URL).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.headers.contains_key("x-request-id"));
    let job_id = answer.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(job_id.len(), 32);
    assert!(job_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(client.image_status(ID).await, "saving");

    let (seen, job) = client.wait(&job_id).await;
    assert_eq!(seen.last().unwrap(), "SUCCESS");
    assert!(seen.iter().any(|s| s == "RUNNING"), "{seen:?}");
    assert_eq!(job["job_type"], "imsNativeImportImageJob");
    assert_eq!(job["entities"]["image_id"], ID);
    assert!(job["error_code"].is_null() && job["fail_reason"].is_null());
    assert!(imsreg::ims::types::parse_api_time(job["end_time"].as_str().unwrap()).is_some());
    let progress = client.progress(&job_id).await;
    assert_eq!(progress["entities"]["process_percent"], 100.0);

    let listed = client.list(&[("id", ID), ("__imagetype", "private")]).await;
    assert_eq!(listed["images"][0]["status"], "active");
    assert!(listed["images"][0]["active_at"].is_string());
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
    let client = Raw::new(&sim);
    let job_id = client.register(ID, URL).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let progress = client.progress(&job_id).await;
    assert_eq!(progress["status"], "RUNNING");
    let percent = progress["entities"]["process_percent"].as_f64().unwrap();
    assert!((20.0..80.0).contains(&percent), "{percent}");
    assert!(progress["end_time"].is_null());
    sim.shutdown().await;
}

#[tokio::test]
async fn corrupt_objects_and_the_failure_fraction_fail_jobs() {
    let mut cfg = config(Duration::from_millis(100));
    cfg.images.push("corrupt-one".into());
    let sim = Simulator::start(cfg, local()).unwrap();
    let client = Raw::new(&sim);
    let answer = client
        .register("corrupt-one", "bucket-1:dir/corrupt-disk.vhd")
        .await;
    let (_, job) = client.wait(answer.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "FAIL");
    assert_eq!(job["error_code"], "IMG.0057");
    assert!(job["fail_reason"].as_str().unwrap().contains("corrupt"));
    assert_eq!(client.image_status("corrupt-one").await, "killed");
    sim.shutdown().await;

    let sim = Simulator::start(
        SimConfig {
            failure_fraction: 1.0,
            ..config(Duration::from_millis(50))
        },
        local(),
    )
    .unwrap();
    let client = Raw::new(&sim);
    let answer = client.register(ID, URL).await;
    let (_, job) = client.wait(answer.body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "FAIL");
    assert_eq!(job["error_code"], "IMG.1075");
    sim.shutdown().await;
}

#[tokio::test]
async fn registrations_ims_refuses() {
    let sim = Simulator::start(config(Duration::from_secs(5)), local()).unwrap();
    let client = Raw::new(&sim);
    let ids = ["active-1", "saving-1", "killed-1"];
    sim.set_image_status(ids[0], ImageStatus::Active);
    sim.set_image_status(ids[1], ImageStatus::Saving);
    sim.set_image_status(ids[2], ImageStatus::Killed);
    for id in ids {
        let answer = client.register(id, URL).await;
        assert_eq!(
            (answer.status, ims_code(&answer)),
            (400, "IMG.0046"),
            "{id}"
        );
    }
    let unknown = client
        .register("00000000-0000-4000-8000-000000000000", URL)
        .await;
    assert_eq!((unknown.status, ims_code(&unknown)), (404, "IMG.0027"));
    for (url, code) in [
        ("no-colon", "IMG.0017"),
        ("UPPER:disk.vhd", "IMG.0017"),
        ("bucket-1:my disk.vhd", "IMG.0175"),
        ("bucket-1:dir name/disk.vhd", "IMG.0175"),
        ("bucket-1:notes.txt", "IMG.0057"),
    ] {
        let answer = client.register(ID, url).await;
        assert_eq!((answer.status, ims_code(&answer)), (400, code), "{url}");
    }
    let empty = client
        .send("PUT", &format!("/v1/cloudimages/{ID}/upload"), &[], None)
        .await
        .unwrap();
    assert_eq!((empty.status, ims_code(&empty)), (400, "IMG.0007"));
    let wrong_type = client
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
    assert_eq!(client.register(ID, URL).await.status, 200);
    let again = client.register(ID, URL).await;
    assert_eq!((again.status, ims_code(&again)), (400, "IMG.0046"));
    assert_eq!(sim.stats().submissions.get(ID), Some(&1));
    assert!(sim.stats().resubmitted().is_empty());
    let missing_job = client
        .send(
            "GET",
            "/v1/cloudimages/job/ffffffffffffffffffffffffffffffff",
            &[],
            None,
        )
        .await
        .unwrap();
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
    let client = Raw::new(&sim);
    assert_eq!(client.register(&ids[0], URL).await.status, 200);
    assert_eq!(client.register(&ids[1], URL).await.status, 200);
    let over = client.register(&ids[2], URL).await;
    assert_eq!((over.status, ims_code(&over)), (400, "IMG.0060"));
    assert_eq!(client.image_status(&ids[2]).await, "queued");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(client.register(&ids[2], URL).await.status, 200);
    let stats = sim.stats();
    assert_eq!(stats.max_running_jobs, 2);
    assert_eq!(stats.task_limit_rejections, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_is_checked_like_the_gateway() {
    let sim = Simulator::start(config(Duration::from_secs(1)), local()).unwrap();
    let good = Raw::new(&sim);
    assert_eq!(
        good.send("GET", "/v2/cloudimages", &[("limit", "1")], None)
            .await
            .unwrap()
            .status,
        200
    );

    let expect_401 = |answer: Answer, what: &str| {
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        assert_eq!(answer.body["error_code"], "APIG.0301", "{what}");
        assert!(answer.body["error_msg"].as_str().unwrap().contains("IAM"));
        assert!(answer.body["request_id"].is_string());
        let text = answer.body.to_string();
        assert!(
            !text.contains(&sim.config().credentials.sk),
            "{what} leaks the SK"
        );
    };
    let mut wrong_sk = Raw::new(&sim);
    wrong_sk.sk = "not-the-secret".into();
    expect_401(
        wrong_sk
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap(),
        "SK",
    );
    let mut wrong_ak = Raw::new(&sim);
    wrong_ak.ak = "OTHERAK".into();
    expect_401(
        wrong_ak
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap(),
        "AK",
    );
    let mut stale = Raw::new(&sim);
    stale.skew = chrono::Duration::minutes(-16);
    expect_401(
        stale
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap(),
        "stale",
    );
    let mut future = Raw::new(&sim);
    future.skew = chrono::Duration::minutes(16);
    expect_401(
        future
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap(),
        "future",
    );
    let mut slightly_off = Raw::new(&sim);
    slightly_off.skew = chrono::Duration::minutes(-14);
    assert_eq!(
        slightly_off
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap()
            .status,
        200
    );

    // A signed request whose query was changed after signing.
    let query = vec![("limit".to_string(), "1".to_string())];
    let mut headers = vec![("X-Project-Id".to_string(), good.project_id.clone())];
    signer::prepare_headers(&mut headers, &good.host, chrono::Utc::now());
    let signature = signer::sign(
        &SigningInput {
            method: "GET",
            path: "/v2/cloudimages",
            query: &query,
            headers: &headers,
            body: b"",
        },
        good.sk.as_bytes(),
        None,
    );
    headers.push(("Authorization".into(), signature.authorization(&good.ak)));
    let tampered = vec![("limit".to_string(), "2".to_string())];
    expect_401(
        good.send_with("GET", "/v2/cloudimages", &tampered, headers, String::new())
            .await
            .unwrap(),
        "tampered",
    );

    // Tokens: the configured one is accepted, others and no auth at all are not.
    let token = sim.config().credentials.token.clone();
    let with_token = |value: String| vec![("X-Auth-Token".to_string(), value)];
    let ok = good
        .send_with(
            "GET",
            "/v2/cloudimages",
            &[],
            with_token(token),
            String::new(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    expect_401(
        good.send_with(
            "GET",
            "/v2/cloudimages",
            &[],
            with_token("x".into()),
            String::new(),
        )
        .await
        .unwrap(),
        "token",
    );
    expect_401(
        good.send_with("GET", "/v2/cloudimages", &[], vec![], String::new())
            .await
            .unwrap(),
        "none",
    );
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
    let client = Raw::new(&sim);
    assert_eq!(client.register(&ids[0], URL).await.status, 200);
    assert_eq!(client.register(&ids[1], URL).await.status, 200);
    let throttled = client.register(&ids[2], URL).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.body["error_code"], "APIG.0308");
    assert_eq!(
        throttled.body["error_msg"],
        "The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second"
    );
    assert!(throttled.body["request_id"].is_string());
    assert_eq!(throttled.headers["retry-after"], "1");
    // The throttled call did not register anything; other APIs are not limited.
    assert_eq!(client.image_status(&ids[2]).await, "queued");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(client.register(&ids[2], URL).await.status, 200);

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
    for (faults, status, check) in [
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
        let client = Raw::new(&sim);
        let answer = client.register(ID, URL).await;
        assert_eq!(answer.status, status);
        let code = answer.body["error"]["code"]
            .as_str()
            .or(answer.body["error_code"].as_str())
            .unwrap();
        assert_eq!(code, check);
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
    let client = Raw::new(&sim);
    let err = client
        .send("GET", "/v2/cloudimages", &[], None)
        .await
        .err()
        .expect("a dropped connection has no answer");
    assert!(!err.is_status() && !err.is_timeout(), "{err}");
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
    let client = Raw::new(&sim);
    let result = client
        .send(
            "PUT",
            &format!("/v1/cloudimages/{ID}/upload"),
            &[],
            Some(json!({ "image_url": URL })),
        )
        .await;
    assert!(result.is_err(), "the register answer should be dropped");
    assert_eq!(client.image_status(ID).await, "saving");
    let stats = sim.stats();
    assert_eq!(stats.submissions.get(ID), Some(&1));
    assert_eq!(stats.dropped_register_responses, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(client.image_status(ID).await, "active");
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
        let client = Raw::new(&sim);
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let answer = client
                .send("GET", "/v2/cloudimages", &[], None)
                .await
                .unwrap();
            statuses.push(answer.status);
        }
        sim.shutdown().await;
        statuses
    };
    let first = pattern(11).await;
    assert_eq!(first, pattern(11).await);
    let failures = first.iter().filter(|s| **s == 503).count();
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
    let client = Raw::new(&sim);
    let started = Instant::now();
    assert_eq!(
        client
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    sim.shutdown().await;
}

#[tokio::test]
async fn listing_pages_and_filters() {
    let ids: Vec<String> = (0..25).map(|i| format!("id-{i:02}")).collect();
    let sim = Simulator::start(config(Duration::from_millis(50)), local()).unwrap();
    sim.add_images(ids.clone());
    sim.set_image_status("id-07", ImageStatus::Active);
    let client = Raw::new(&sim);

    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("__imagetype", "private"), ("limit", "10")];
        if let Some(m) = marker.as_deref() {
            query.push(("marker", m));
        }
        let page = client.list(&query).await;
        pages += 1;
        for image in page["images"].as_array().unwrap() {
            seen.push(image["id"].as_str().unwrap().to_string());
        }
        match page["page_info"]["next_marker"].as_str() {
            Some(next) => marker = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = ids.clone();
    expected.push(ID.to_string());
    expected.sort();
    assert_eq!(seen, expected);

    let active = client.list(&[("status", "active")]).await;
    assert_eq!(active["images"].as_array().unwrap().len(), 1);
    assert_eq!(active["images"][0]["id"], "id-07");
    let gold = client.list(&[("__imagetype", "gold")]).await;
    assert!(gold["images"].as_array().unwrap().is_empty());
    let none = client.list(&[("id", "nope")]).await;
    assert!(none["images"].as_array().unwrap().is_empty());
    let bad = client
        .send("GET", "/v2/cloudimages", &[("limit", "x")], None)
        .await
        .unwrap();
    assert_eq!((bad.status, ims_code(&bad)), (400, "IMG.0001"));
    let since = client
        .list(&[("updated_at", "gt:2000-01-01T00:00:00Z"), ("limit", "1000")])
        .await;
    assert_eq!(since["images"].as_array().unwrap().len(), 26);
    let future = client
        .list(&[("updated_at", "gt:2999-01-01T00:00:00Z")])
        .await;
    assert!(future["images"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn created_images_can_be_registered() {
    let sim = Simulator::start(config(Duration::from_millis(100)), local()).unwrap();
    let client = Raw::new(&sim);
    let created = client
        .send(
            "POST",
            "/v2/images",
            &[],
            Some(json!({"name": "web-01", "disk_format": "qcow2", "min_disk": 40})),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.body["status"], "queued");
    assert_eq!(created.body["name"], "web-01");
    assert_eq!(created.body["__imagetype"], "private");
    let id = created.body["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(
        created.body["self"].as_str().unwrap(),
        format!("/v2/images/{id}")
    );

    let job = client.register(&id, URL).await.body["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, done) = client.wait(&job).await;
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(done["entities"]["image_name"], "web-01");
    let native = client
        .send("GET", &format!("/v2/images/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(native.status, 200);
    assert_eq!(native.body["status"], "active");
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_are_served_over_http_and_shutdown_closes_the_port() {
    let sim = Simulator::start(config(Duration::from_secs(1)), local()).unwrap();
    let client = Raw::new(&sim);
    client.register(ID, URL).await;
    let over_http: SimStats = reqwest::get(format!("{}/_sim/stats", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http.submissions, sim.stats().submissions);
    assert_eq!(over_http.running_jobs, 1);
    let unknown = client.send("GET", "/v3/nothing", &[], None).await.unwrap();
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
fn the_simulate_command_prints_its_url_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sim.yaml");
    std::fs::write(
        &config_path,
        format!("images: [{ID}]\njob_duration: 100ms\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imsreg"))
        .args(["simulate", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
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
        let mut client = Raw {
            http: reqwest::Client::new(),
            host: url.trim_start_matches("http://").to_string(),
            base: url.clone(),
            ak: "ENVAK".into(),
            sk: "env-secret".into(),
            project_id: "00112233445566778899aabbccddeeff".into(),
            skew: chrono::Duration::zero(),
        };
        assert_eq!(client.image_status(ID).await, "queued");
        assert_eq!(client.register(ID, URL).await.status, 200);
        client.sk = imsreg::sim::config::DEFAULT_SK.into();
        let rejected = client
            .send("GET", "/v2/cloudimages", &[], None)
            .await
            .unwrap();
        assert_eq!(rejected.status, 401, "env credentials replace the defaults");
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
    assert_eq!(config.rate_limits.len(), 5);
    assert_eq!(config.images, vec![ID.to_string()]);
}
