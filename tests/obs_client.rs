//! The OBS client against a small fake OBS on 127.0.0.1 (axum): path-style, every request's
//! signature checked with the crate's own verifier, objects of any size with deterministic
//! content, and per-object faults (a range answered with the whole object, more bytes than
//! announced, a body cut short, 503 SlowDown, 500, 403). A test-only fake, not the simulator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use futures::StreamExt as _;
use imsreg::ims::auth::{Credentials, Secret};
use imsreg::obs::signer::{self, ReceivedRequest};
use imsreg::obs::{
    Encryption, ErrorClass, MAX_RANGE_BYTES, ObsClient, ObsClientConfig, ObsError, StorageClass,
};

const AK: &str = "OBSCLIENTTESTAK00001";
const SK: &str = "obs-client-Secret-Key-0123";
const TOKEN: &str = "obs-client-Secret-Token+/=";

// ---------------------------------------------------------------------------------------------
// The fake.

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Answer a ranged GET with 200 and the whole (huge) object.
    IgnoreRange,
    /// Answer 206 announcing the asked range but send twice as many bytes.
    Oversend,
    /// Answer 206 and close after half the bytes.
    CutShort,
    SlowDown,
    ServerError,
    Denied,
}

#[derive(Clone)]
struct FakeObject {
    size: u64,
    headers: Vec<(&'static str, &'static str)>,
    fault: Fault,
}

#[derive(Clone)]
struct FakeBucket {
    location: &'static str,
    storage_class: &'static str,
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Fake {
    buckets: HashMap<String, FakeBucket>,
    objects: HashMap<(String, String), FakeObject>,
    requests: Mutex<Vec<Recorded>>,
    /// Object bytes put into response bodies so far.
    served: AtomicU64,
}

/// The object's byte at `offset`: deterministic, so any slice can be checked.
fn byte_at(offset: u64) -> u8 {
    (offset % 251) as u8
}

fn slice(first: u64, last: u64) -> Vec<u8> {
    (first..=last).map(byte_at).collect()
}

fn error(status: u16, code: &str, head: bool) -> Response {
    let builder = Response::builder()
        .status(status)
        .header("x-obs-request-id", "fake-req-1");
    if head {
        builder
            .header("x-obs-error-code", code)
            .header("x-obs-error-message", format!("{code} (fake)"))
            .body(Body::empty())
            .unwrap()
    } else {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>{code} &amp; more (fake)</Message><RequestId>fake-req-2</RequestId></Error>"
        );
        builder
            .header("Content-Type", "application/xml")
            .body(Body::from(xml))
            .unwrap()
    }
}

async fn handle(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let method = request.method().clone();
    let head = method == Method::HEAD;
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |pq| pq.as_str().to_string());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    fake.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        target: target.clone(),
        headers: headers.clone(),
    });

    let verified = signer::verify(
        &ReceivedRequest {
            method: method.as_str(),
            target: &target,
            headers: &headers,
        },
        None,
        SystemTime::now(),
        |ak| (ak == AK).then(|| SK.to_string()),
    );
    let verified = match verified {
        Ok(v) => v,
        Err(err) => return error(err.http_status(), err.code(), head),
    };
    let Some(bucket_name) = verified.bucket else {
        return error(400, "InvalidURI", head);
    };
    let Some(bucket) = fake.buckets.get(&bucket_name) else {
        return error(404, "NoSuchBucket", head);
    };
    let Some(key) = verified.key else {
        return Response::builder()
            .status(200)
            .header("x-obs-request-id", "fake-bucket-req")
            .header("x-obs-bucket-location", bucket.location)
            .header("x-obs-storage-class", bucket.storage_class)
            .body(Body::empty())
            .unwrap();
    };
    let Some(object) = fake.objects.get(&(bucket_name, key)).cloned() else {
        return error(404, "NoSuchKey", head);
    };
    match object.fault {
        Fault::SlowDown => return error(503, "SlowDown", head),
        Fault::ServerError => return error(500, "InternalError", head),
        Fault::Denied => return error(403, "AccessDenied", head),
        _ => {}
    }
    if head {
        let mut builder = Response::builder()
            .status(200)
            .header("Content-Length", object.size.to_string())
            .header("x-obs-request-id", "fake-head-req");
        for (name, value) in &object.headers {
            builder = builder.header(*name, *value);
        }
        return builder.body(Body::empty()).unwrap();
    }
    ranged_get(&fake, request.headers(), &object)
}

fn ranged_get(fake: &Arc<Fake>, headers: &HeaderMap, object: &FakeObject) -> Response {
    if object.fault == Fault::IgnoreRange {
        // The whole object, streamed in 64 KiB chunks and counted as they leave.
        let fake = fake.clone();
        let chunks = object.size / 65536;
        let stream = futures::stream::iter(0..chunks).map(move |_| {
            fake.served.fetch_add(65536, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 65536]))
        });
        return Response::builder()
            .status(200)
            .header("Content-Length", object.size.to_string())
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let Some((first, last)) = range else {
        return error(400, "InvalidArgument", false);
    };
    if first >= object.size {
        return error(416, "InvalidRange", false);
    }
    let last = last.min(object.size - 1);
    let mut body = slice(first, last);
    match object.fault {
        Fault::Oversend => body.extend(slice(first, last)),
        Fault::CutShort => {
            // Announce the full length, send half, then fail the stream: the connection dies.
            let half = body[..body.len() / 2].to_vec();
            let stream = futures::stream::iter(vec![
                Ok(Bytes::from(half)),
                Err(std::io::Error::other("cut")),
            ]);
            return Response::builder()
                .status(206)
                .header(
                    "Content-Range",
                    format!("bytes {first}-{last}/{}", object.size),
                )
                .header("Content-Length", (last - first + 1).to_string())
                .body(Body::from_stream(stream))
                .unwrap();
        }
        _ => {}
    }
    fake.served.fetch_add(body.len() as u64, Ordering::Relaxed);
    Response::builder()
        .status(206)
        .header(
            "Content-Range",
            format!("bytes {first}-{last}/{}", object.size),
        )
        .header("x-obs-request-id", "fake-get-req")
        .body(Body::from(body))
        .unwrap()
}

struct Server {
    addr: SocketAddr,
    fake: Arc<Fake>,
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.fake.requests.lock().unwrap().clone()
    }

    fn client(&self, token: Option<&str>) -> ObsClient {
        client_at(&format!("http://{}", self.addr), token)
    }
}

fn client_at(endpoint: &str, token: Option<&str>) -> ObsClient {
    let config = ObsClientConfig::new(
        endpoint.parse().unwrap(),
        Credentials::AkSk {
            ak: AK.into(),
            sk: Secret::new(SK),
            security_token: token.map(Secret::new),
        },
    );
    ObsClient::new(config).unwrap()
}

const GIB: u64 = 1 << 30;

async fn start() -> Server {
    let mut fake = Fake::default();
    fake.buckets.insert(
        "images-bucket".into(),
        FakeBucket {
            location: "ap-southeast-1",
            storage_class: "STANDARD",
        },
    );
    fake.buckets.insert(
        "cold-bucket".into(),
        FakeBucket {
            location: "eu-west-101",
            storage_class: "COLD",
        },
    );
    let mut object = |key: &str, size: u64, headers: Vec<(&'static str, &'static str)>, fault| {
        fake.objects.insert(
            ("images-bucket".into(), key.into()),
            FakeObject {
                size,
                headers,
                fault,
            },
        );
    };
    object("plain/centos.qcow2", 100 * GIB, vec![], Fault::None);
    object("镜像/系统盘 v2+1.qcow2", 4096, vec![], Fault::None);
    object(
        "kms.qcow2",
        10 * GIB,
        vec![
            ("x-obs-storage-class", "COLD"),
            ("x-obs-server-side-encryption", "kms"),
            ("x-obs-server-side-encryption-kms-key-id", "kms-key-1"),
            ("x-obs-restore", "ongoing-request=\"true\""),
        ],
        Fault::None,
    );
    object(
        "ssec.qcow2",
        1024,
        vec![("x-obs-server-side-encryption-customer-algorithm", "AES256")],
        Fault::None,
    );
    object("whole.raw", 256 << 20, vec![], Fault::IgnoreRange);
    object("oversend.raw", 1 << 20, vec![], Fault::Oversend);
    object("cut.raw", 1 << 20, vec![], Fault::CutShort);
    object("slow.raw", 1, vec![], Fault::SlowDown);
    object("broken.raw", 1, vec![], Fault::ServerError);
    object("denied.raw", 1, vec![], Fault::Denied);

    let fake = Arc::new(fake);
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, fake }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn head_bucket_reads_region_and_default_class_path_style() {
    let server = start().await;
    let client = server.client(None);
    let info = client.head_bucket("images-bucket").await.unwrap();
    assert_eq!(info.location.as_deref(), Some("ap-southeast-1"));
    assert_eq!(info.storage_class, StorageClass::Standard);
    assert_eq!(info.request_id.as_deref(), Some("fake-bucket-req"));
    let cold = client.head_bucket("cold-bucket").await.unwrap();
    assert_eq!(cold.storage_class, StorageClass::Cold);
    assert_eq!(cold.location.as_deref(), Some("eu-west-101"));

    let requests = server.requests();
    assert_eq!(requests[0].method, "HEAD");
    assert_eq!(requests[0].target, "/images-bucket");
    let auth = requests[0].header("authorization").unwrap();
    assert!(auth.starts_with(&format!("OBS {AK}:")), "{auth}");
    assert!(requests[0].header("date").is_some());
}

#[tokio::test]
async fn head_object_reads_size_class_and_encryption() {
    let server = start().await;
    let client = server.client(Some(TOKEN));
    let plain = client
        .head_object("images-bucket", "plain/centos.qcow2")
        .await
        .unwrap();
    assert_eq!(plain.size, 100 * GIB);
    assert_eq!(plain.storage_class, StorageClass::Standard);
    assert_eq!(plain.encryption, Encryption::None);
    assert_eq!(plain.request_id.as_deref(), Some("fake-head-req"));

    let kms = client
        .head_object("images-bucket", "kms.qcow2")
        .await
        .unwrap();
    assert_eq!(kms.storage_class, StorageClass::Cold);
    assert_eq!(
        kms.encryption,
        Encryption::Kms {
            key_id: Some("kms-key-1".into())
        }
    );
    assert_eq!(kms.restore.as_deref(), Some("ongoing-request=\"true\""));

    let ssec = client
        .head_object("images-bucket", "ssec.qcow2")
        .await
        .unwrap();
    assert!(matches!(ssec.encryption, Encryption::CustomerKey { .. }));

    // The key is encoded as the SDK encodes it; the signed token travels.
    let unicode = client
        .head_object("images-bucket", "镜像/系统盘 v2+1.qcow2")
        .await
        .unwrap();
    assert_eq!(unicode.size, 4096);
    let sent = server.requests().pop().unwrap();
    assert_eq!(
        sent.target,
        "/images-bucket/%E9%95%9C%E5%83%8F/%E7%B3%BB%E7%BB%9F%E7%9B%98%20v2%2B1.qcow2"
    );
    assert_eq!(sent.header("x-obs-security-token"), Some(TOKEN));
}

#[tokio::test]
async fn not_found_tells_bucket_from_key_on_bodiless_heads() {
    let server = start().await;
    let client = server.client(None);
    let missing_bucket = client
        .head_object("no-such-bucket", "plain/centos.qcow2")
        .await
        .unwrap_err();
    assert!(missing_bucket.is_no_such_bucket(), "{missing_bucket}");
    assert!(!missing_bucket.is_no_such_key());
    let missing_key = client
        .head_object("images-bucket", "plain/missing.qcow2")
        .await
        .unwrap_err();
    assert!(missing_key.is_no_such_key(), "{missing_key}");
    assert_eq!(missing_key.class(), ErrorClass::Final);
    let message = missing_key.to_string();
    assert!(
        message.contains("HeadObject images-bucket:plain/missing.qcow2")
            && message.contains("404 NoSuchKey")
            && message.contains("fake-req-1"),
        "{message}"
    );
    let bucket = client.head_bucket("no-such-bucket").await.unwrap_err();
    assert!(bucket.is_no_such_bucket(), "{bucket}");
}

#[tokio::test]
async fn errors_are_classified() {
    let server = start().await;
    let client = server.client(None);
    let slow = client
        .head_object("images-bucket", "slow.raw")
        .await
        .unwrap_err();
    assert!(
        matches!(
            slow.class(),
            ErrorClass::Retryable {
                throttled: true,
                ..
            }
        ),
        "{slow}"
    );
    let broken = client
        .head_object("images-bucket", "broken.raw")
        .await
        .unwrap_err();
    assert!(matches!(
        broken.class(),
        ErrorClass::Retryable {
            throttled: false,
            ..
        }
    ));
    let denied = client
        .head_object("images-bucket", "denied.raw")
        .await
        .unwrap_err();
    assert!(denied.is_access_denied() && denied.class() == ErrorClass::Final);

    // A wrong secret key: the fake's verifier refuses the signature, which stops everything.
    let config = ObsClientConfig::new(
        format!("http://{}", server.addr).parse().unwrap(),
        Credentials::AkSk {
            ak: AK.into(),
            sk: Secret::new("wrong-secret"),
            security_token: None,
        },
    );
    let wrong = ObsClient::new(config)
        .unwrap()
        .head_bucket("images-bucket")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(wrong.class(), ErrorClass::AuthFailed);
    assert!(!wrong.to_string().contains("wrong-secret"));

    // XML bodies of GET errors are read for the code and message.
    let get = client
        .get_range("images-bucket", "slow.raw", 0..=9)
        .await
        .unwrap_err();
    assert_eq!(get.code(), Some("SlowDown"));
    assert_eq!(
        get.api().unwrap().message.as_deref(),
        Some("SlowDown & more (fake)")
    );

    // Nobody listening: never sent, retryable.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let refused = client_at(&format!("http://{closed}"), None)
        .head_bucket("images-bucket")
        .await
        .unwrap_err();
    assert!(matches!(refused, ObsError::NotSent { .. }), "{refused}");
    assert!(matches!(refused.class(), ErrorClass::Retryable { .. }));
}

#[tokio::test]
async fn ranged_reads_get_exactly_the_slice() {
    let server = start().await;
    let client = server.client(None);
    let head = client
        .get_range("images-bucket", "plain/centos.qcow2", 0..=36863)
        .await
        .unwrap();
    assert_eq!((head.first, head.last, head.total), (0, 36863, 100 * GIB));
    assert_eq!(head.bytes, slice(0, 36863));
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.header("range"), Some("bytes=0-36863"));

    let tail_start = 100 * GIB - 512;
    let tail = client
        .get_range(
            "images-bucket",
            "plain/centos.qcow2",
            tail_start..=100 * GIB - 1,
        )
        .await
        .unwrap();
    assert_eq!(tail.bytes, slice(tail_start, 100 * GIB - 1));

    // A small object answers a shorter 206.
    let small = client
        .get_range("images-bucket", "镜像/系统盘 v2+1.qcow2", 0..=36863)
        .await
        .unwrap();
    assert_eq!(
        (small.last, small.total, small.bytes.len()),
        (4095, 4096, 4096)
    );

    // A start past the end is OBS's 416 InvalidRange.
    let past = client
        .get_range("images-bucket", "镜像/系统盘 v2+1.qcow2", 5000..=5100)
        .await
        .unwrap_err();
    assert_eq!(
        (past.http_status(), past.code()),
        (Some(416), Some("InvalidRange"))
    );
}

#[tokio::test]
async fn ranged_reads_never_take_more_than_asked() {
    let server = start().await;
    let client = server.client(None);
    let total = 256u64 << 20;

    // The whole object instead of the range: refused without reading the body.
    let whole = client
        .get_range("images-bucket", "whole.raw", 0..=36863)
        .await
        .unwrap_err();
    assert!(matches!(whole, ObsError::RangeRefused { .. }), "{whole}");
    assert_eq!(whole.class(), ErrorClass::Final);
    assert!(server.fake.served.load(Ordering::Relaxed) < total);

    let over = client
        .get_range("images-bucket", "oversend.raw", 0..=1023)
        .await
        .unwrap_err();
    assert!(matches!(over, ObsError::RangeRefused { .. }), "{over}");

    let cut = client
        .get_range("images-bucket", "cut.raw", 0..=36863)
        .await
        .unwrap_err();
    assert!(matches!(cut, ObsError::Interrupted { .. }), "{cut}");
    assert!(matches!(cut.class(), ErrorClass::Retryable { .. }));

    // Asking for more than 64 KiB is refused before anything is sent.
    let asked = server.requests().len();
    let big = client
        .get_range("images-bucket", "plain/centos.qcow2", 0..=MAX_RANGE_BYTES)
        .await
        .unwrap_err();
    assert!(matches!(big, ObsError::Config(_)), "{big}");
    assert_eq!(server.requests().len(), asked);
    assert!(
        client
            .get_range(
                "images-bucket",
                "plain/centos.qcow2",
                0..=MAX_RANGE_BYTES - 1
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn invalid_names_are_refused_before_sending() {
    let server = start().await;
    let client = server.client(None);
    let bad = client.head_bucket("../etc").await.unwrap_err();
    assert!(matches!(bad, ObsError::Config(_)), "{bad}");
    let empty = client.head_object("images-bucket", "").await.unwrap_err();
    assert!(matches!(empty, ObsError::Config(_)), "{empty}");
    assert!(server.requests().is_empty());
}
