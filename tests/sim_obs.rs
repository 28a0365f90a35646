//! The simulator's OBS side over real HTTP on loopback, through imsreg's own OBS client (and a
//! few raw requests): buckets and virtual objects from the config, signatures checked, ranged
//! reads of real image heads, refusals in OBS's shape, OBS faults and rate limits, and the IMS
//! side's job time and failures following the objects.

use std::net::SocketAddr;
use std::time::Duration;

use imsreg::ims::JobStatus;
use imsreg::ims::auth::{Credentials, Secret};
use imsreg::obs::{Encryption, ErrorClass, ObsClient, ObsClientConfig, ObsError, StorageClass};
use imsreg::preflight::{self, Detected};
use imsreg::sim::{SimConfig, SimHandle, Simulator};

const ID: &str = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(extra: &str) -> SimConfig {
    SimConfig::from_yaml(&format!(
        r#"
job_duration: 100ms
images: ["{ID}"]
obs:
  region: ap-southeast-1
  buckets:
    images:
      objects:
        web/web-01.qcow2: {{size: 10GiB}}
        web/web-02.qcow2: {{size: 10GiB, content: vmdk-stream}}
        db/fixed.vhd: {{size: 2GiB, content: vhd-fixed}}
        archive/old.qcow2: {{size: 1GiB, storage_class: COLD}}
        secret/a.qcow2: {{size: 1GiB, encryption: sse-c}}
        kms/a.qcow2: {{size: 1GiB, encryption: kms}}
        hidden/a.qcow2: {{size: 1GiB, denied: true}}
    eu-images:
      region: eu-west-101
      storage_class: WARM
{extra}
"#
    ))
    .unwrap()
}

fn obs_client(sim: &SimHandle) -> ObsClient {
    let creds = &sim.config().credentials;
    ObsClient::new(ObsClientConfig::new(
        url::Url::parse(&sim.url()).unwrap(),
        Credentials::AkSk {
            ak: creds.ak.clone(),
            sk: Secret::new(creds.sk.clone()),
            security_token: None,
        },
    ))
    .unwrap()
}

#[tokio::test]
async fn heads_answer_what_the_config_says() {
    let sim = Simulator::start(config(""), local()).unwrap();
    let obs = obs_client(&sim);
    let bucket = obs.head_bucket("images").await.unwrap();
    assert_eq!(bucket.location.as_deref(), Some("ap-southeast-1"));
    assert_eq!(bucket.storage_class, StorageClass::Standard);
    let eu = obs.head_bucket("eu-images").await.unwrap();
    assert_eq!(eu.location.as_deref(), Some("eu-west-101"));
    assert_eq!(eu.storage_class, StorageClass::Warm);

    let web = obs.head_object("images", "web/web-01.qcow2").await.unwrap();
    assert_eq!(web.size, 10 << 30);
    assert_eq!(web.storage_class, StorageClass::Standard);
    assert_eq!(web.encryption, Encryption::None);
    assert!(web.etag.is_some() && web.request_id.is_some());
    let cold = obs
        .head_object("images", "archive/old.qcow2")
        .await
        .unwrap();
    assert_eq!(cold.storage_class, StorageClass::Cold);
    let ssec = obs.head_object("images", "secret/a.qcow2").await.unwrap();
    assert!(matches!(ssec.encryption, Encryption::CustomerKey { .. }));
    let kms = obs.head_object("images", "kms/a.qcow2").await.unwrap();
    assert!(matches!(
        kms.encryption,
        Encryption::Kms { key_id: Some(_) }
    ));

    let missing_key = obs.head_object("images", "nope.qcow2").await.unwrap_err();
    assert!(missing_key.is_no_such_key(), "{missing_key}");
    let missing_bucket = obs.head_object("no-bucket", "a.qcow2").await.unwrap_err();
    assert!(missing_bucket.is_no_such_bucket(), "{missing_bucket}");
    assert!(
        obs.head_bucket("no-bucket")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let denied = obs
        .head_object("images", "hidden/a.qcow2")
        .await
        .unwrap_err();
    assert!(denied.is_access_denied(), "{denied}");
    assert_eq!(sim.stats().obs.requests["obs_head_object"], 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn ranged_reads_give_real_image_heads_and_never_the_whole_object() {
    let sim = Simulator::start(config(""), local()).unwrap();
    let obs = obs_client(&sim);
    let head = obs
        .get_range("images", "web/web-01.qcow2", 0..=preflight::HEAD_BYTES - 1)
        .await
        .unwrap();
    assert_eq!(head.bytes.len() as u64, preflight::HEAD_BYTES);
    assert_eq!(head.total, 10 << 30);
    assert!(matches!(
        preflight::detect(&head.bytes, None),
        Detected::Qcow2 { .. }
    ));
    let vmdk = obs
        .get_range("images", "web/web-02.qcow2", 0..=preflight::HEAD_BYTES - 1)
        .await
        .unwrap();
    assert!(matches!(
        preflight::detect(&vmdk.bytes, None),
        Detected::VmdkSparse { .. }
    ));
    let size = 2u64 << 30;
    let tail = obs
        .get_range("images", "db/fixed.vhd", size - 512..=size - 1)
        .await
        .unwrap();
    assert_eq!(&tail.bytes[..8], b"conectix");

    let cold = obs
        .get_range("images", "archive/old.qcow2", 0..=99)
        .await
        .unwrap_err();
    assert_eq!(cold.code(), Some("InvalidObjectState"), "{cold}");
    let past_end = obs
        .get_range("images", "db/fixed.vhd", size..=size + 10)
        .await
        .unwrap_err();
    assert_eq!(past_end.http_status(), Some(416));

    // A range OBS cannot use is answered with the whole object: the client refuses it unread.
    let creds = sim.config().credentials.clone();
    let whole = raw_get(&sim, "/images/web/web-01.qcow2", "bytes=oops", &creds).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["content-length"].to_str().unwrap(),
        (10u64 << 30).to_string()
    );
    drop(whole);
    let stats = sim.stats().obs;
    assert_eq!(stats.whole_reads, 1);
    assert!(stats.max_range_bytes <= imsreg::obs::MAX_RANGE_BYTES);
    sim.shutdown().await;
}

/// A signed GET with an arbitrary Range header (the client itself only sends good ones).
async fn raw_get(
    sim: &SimHandle,
    path: &str,
    range: &str,
    creds: &imsreg::sim::Credentials,
) -> reqwest::Response {
    use imsreg::obs::signer::{self, Addressing, Dialect, SigningInput};
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let (bucket, key) = path.trim_start_matches('/').split_once('/').unwrap();
    let headers = [("Date".to_string(), date.clone())];
    let authorization = signer::sign(
        Dialect::Obs,
        Addressing::PathStyle,
        &SigningInput {
            method: "GET",
            bucket: Some(bucket),
            key: Some(key),
            query: &[],
            headers: &headers,
        },
        &creds.ak,
        &creds.sk,
    );
    reqwest::Client::new()
        .get(format!("{}{path}", sim.url()))
        .header("Date", date)
        .header("Range", range)
        .header("Authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_credentials_are_refused_like_obs() {
    let sim = Simulator::start(config(""), local()).unwrap();
    let bad = ObsClient::new(ObsClientConfig::new(
        url::Url::parse(&sim.url()).unwrap(),
        Credentials::AkSk {
            ak: sim.config().credentials.ak.clone(),
            sk: Secret::new("not-the-secret"),
            security_token: None,
        },
    ))
    .unwrap();
    let err = bad.head_bucket("images").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::AuthFailed, "{err}");
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(sim.stats().obs.auth_failures, 1);
    // IMS paths are still IMS's.
    let unsigned = reqwest::get(format!("{}/_sim/stats", sim.url()))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn obs_faults_and_rate_limits_answer_like_obs() {
    let sim = Simulator::start(config("  faults: {slow_down: 1.0}\n"), local()).unwrap();
    let err = obs_client(&sim).head_bucket("images").await.unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"), "{err}");
    assert!(matches!(
        err.class(),
        ErrorClass::Retryable {
            throttled: true,
            ..
        }
    ));
    assert_eq!(sim.stats().obs.server_errors, 1);
    sim.shutdown().await;

    let mut limited = config("");
    limited.rate_limits.insert(
        "obs_head_object".into(),
        serde_yaml::from_str("{rate: 1, burst: 2, retry_after: 3}").unwrap(),
    );
    let sim = Simulator::start(limited, local()).unwrap();
    let obs = obs_client(&sim);
    for _ in 0..2 {
        obs.head_object("images", "web/web-01.qcow2").await.unwrap();
    }
    let err = obs
        .head_object("images", "web/web-01.qcow2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"));
    assert_eq!(
        err.class(),
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(3)),
            throttled: true
        }
    );
    assert_eq!(sim.stats().obs.throttled, 1);
    // Other OBS calls are not limited.
    obs.head_bucket("images").await.unwrap();
    sim.shutdown().await;

    let sim = Simulator::start(config("  faults: {drop_connection: 1.0}\n"), local()).unwrap();
    let err = obs_client(&sim).head_bucket("images").await.unwrap_err();
    assert!(
        matches!(err, ObsError::Interrupted { .. } | ObsError::NotSent { .. }),
        "{err}"
    );
    assert_eq!(sim.stats().obs.dropped_connections, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn ims_job_time_follows_the_object_size_and_ims_fails_what_obs_says() {
    let mut config = config("");
    config.job_duration_per_gib = Duration::from_millis(40);
    let other = "5ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";
    config.images.push(other.to_string());
    let sim = Simulator::start(config, local()).unwrap();
    let creds = sim.config().credentials.clone();
    let mut client_config = imsreg::ims::ClientConfig::new(
        url::Url::parse(&sim.url()).unwrap(),
        Credentials::AkSk {
            ak: creds.ak,
            sk: Secret::new(creds.sk),
            security_token: None,
        },
    );
    client_config.project_id = Some(creds.project_id);
    let ims = imsreg::ims::Client::new(client_config).unwrap();

    // 100 ms + 10 GiB x 40 ms = 500 ms: the job cannot be seen done any sooner.
    let asked = std::time::Instant::now();
    let job = ims
        .register_image(ID, "images:web/web-01.qcow2")
        .await
        .unwrap();
    let status = loop {
        let status = ims.show_job(&job).await.unwrap().status;
        if status.as_ref().is_some_and(JobStatus::is_terminal) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, Some(JobStatus::Success));
    assert!(asked.elapsed() >= Duration::from_millis(500));

    // A vmdk named .qcow2 fails the job the way IMS would, minutes later.
    let job = ims
        .register_image(other, "images:web/web-02.qcow2")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let failed = ims.show_job(&job).await.unwrap();
    assert_eq!(failed.status, Some(JobStatus::Fail));
    assert_eq!(failed.error_code.as_deref(), Some("IMG.0057"));
    sim.shutdown().await;
}
