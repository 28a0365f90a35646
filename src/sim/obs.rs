//! The simulator's OBS side, served path-style on the same listener as IMS: `HEAD /{bucket}`,
//! `HEAD /{bucket}/{key}` and `GET /{bucket}/{key}` (ranged or whole) on the virtual objects of
//! [`super::obs_store`].
//!
//! A request is OBS's when its first path segment is a bucket name ([`is_obs_path`]); IMS
//! paths (`/v1/...`, `/v2/...`, `/_sim/...`) never are. Every OBS request passes the same gate
//! as an IMS one, in the same order: route, latency, signature ([`crate::obs::signer::verify`],
//! the native `OBS` form and the `AWS` form the official SDK sends path-style), rate limit
//! (503 SlowDown), injected fault (500, 503, SlowDown, dropped connection), then the answer.
//! Answers carry the headers of the request's dialect (`x-obs-*` or `x-amz-*`); errors carry
//! `x-obs-error-code` (HEAD has no body) and an XML body on GET.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use percent_encoding::percent_decode_str;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::SimConfig;
use super::limits::Bucket;
use super::obs_config::{EncryptionKind, is_bucket_name};
use super::obs_content;
use super::obs_store::{ObjectFacts, ObsRefusal, ObsStore, Read, SimObject};
use super::routes::ObsApi;
use super::server::{ConnectionKiller, drop_connection};
use crate::obs::signer::{self, Dialect, ReceivedRequest};

/// Chunk size of a whole-object answer's body.
const STREAM_CHUNK: u64 = 64 * 1024;

/// What the OBS side saw (part of [`super::SimStats`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObsStats {
    /// Requests per OBS API name (every one, including refused and faulted ones).
    pub requests: BTreeMap<String, u64>,
    /// Signature, access-key or clock refusals (403).
    pub auth_failures: u64,
    /// 503 SlowDown answers from the rate limits.
    pub throttled: u64,
    /// Injected 500/503/SlowDown answers.
    pub server_errors: u64,
    pub dropped_connections: u64,
    /// The most bytes one ranged GET asked for (206 answers).
    pub max_range_bytes: u64,
    /// GETs answered with the whole object (200: no usable range).
    pub whole_reads: u64,
    /// When each OBS request arrived, in ms since the OBS side started (for rate checks with
    /// [`super::SimStats::max_in_window`]).
    pub arrivals_ms: Vec<f64>,
}

impl ObsStats {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// The OBS side's state: the objects (read-only), and the seeded RNG, rate buckets and
/// counters behind a lock.
pub struct ObsSide {
    /// Read by every request; written only when a test or `--simulate` adds objects.
    store: RwLock<ObsStore>,
    seed: u64,
    started: Instant,
    started_wall: SystemTime,
    inner: Mutex<Inner>,
}

struct Inner {
    rng: StdRng,
    buckets: HashMap<ObsApi, Bucket>,
    request_seq: u64,
    stats: ObsStats,
}

impl ObsSide {
    pub fn new(config: &SimConfig) -> Self {
        let buckets = config
            .rate_limits
            .iter()
            .filter_map(|(name, limit)| Some((ObsApi::from_name(name)?, Bucket::new(limit))))
            .collect();
        Self {
            store: RwLock::new(ObsStore::new(&config.obs)),
            seed: config.seed,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            inner: Mutex::new(Inner {
                // A stream of its own: OBS traffic does not shift the IMS side's faults.
                rng: StdRng::seed_from_u64(config.seed ^ 0x0b5_0b5),
                buckets,
                request_seq: 0,
                stats: ObsStats::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn stats(&self) -> ObsStats {
        self.lock().stats.clone()
    }

    fn store(&self) -> RwLockReadGuard<'_, ObsStore> {
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What IMS learns registering `image_url` (see [`ObsStore::facts`]).
    pub fn facts(&self, image_url: &str) -> Option<ObjectFacts> {
        self.store().facts(image_url)
    }

    /// Adds a bucket and an object for every entry, made up as for `--simulate`
    /// ([`super::obs_manifest`]); buckets and objects already known are left alone.
    pub fn add_objects_for(&self, entries: &[crate::manifest::ImageEntry]) {
        let mut store = self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let made = super::obs_manifest::for_entries(entries, store.region(), self.seed);
        store.merge(ObsStore::new(&made));
    }
}

/// True when the path addresses a bucket (path-style OBS), not an IMS API.
pub fn is_obs_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    is_bucket_name(&percent_decode_str(first).decode_utf8_lossy())
}

/// Answers one OBS request.
pub async fn handle(side: &ObsSide, config: &SimConfig, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let killer = parts.extensions.get::<ConnectionKiller>().cloned();
    let request_id = {
        let mut inner = side.lock();
        inner.request_seq += 1;
        format!("{:08X}{:016X}", config.seed as u32, inner.request_seq)
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Until the signature is read, answer in the dialect the Authorization header claims.
    let claimed = match headers.iter().find(|(n, _)| n == "authorization") {
        Some((_, v)) if v.starts_with("AWS ") => Dialect::AwsV2,
        _ => Dialect::Obs,
    };
    let reply = Reply {
        dialect: claimed,
        request_id,
        head: parts.method == Method::HEAD,
    };

    let path = parts.uri.path();
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let api = match (&parts.method, has_key) {
        (&Method::HEAD, false) => ObsApi::HeadBucket,
        (&Method::HEAD, true) => ObsApi::HeadObject,
        (&Method::GET, true) => ObsApi::GetObject,
        _ => {
            return reply.error(&ObsRefusal {
                status: 405,
                code: "MethodNotAllowed",
                message: format!(
                    "The simulator's OBS serves HEAD Bucket, HEAD Object and GET Object only, not {} {path}.",
                    parts.method
                ),
            });
        }
    };
    {
        let arrived = side.started.elapsed().as_secs_f64() * 1000.0;
        let stats = &mut side.lock().stats;
        *stats.requests.entry(api.name().into()).or_default() += 1;
        stats.arrivals_ms.push(arrived);
    }

    if !config.latency.is_zero() {
        let unit = side.lock().rng.random::<f64>();
        tokio::time::sleep(config.latency.pick(unit)).await;
    }

    let target = parts
        .uri
        .path_and_query()
        .map_or(path, |target| target.as_str());
    let received = ReceivedRequest {
        method: parts.method.as_str(),
        target,
        headers: &headers,
    };
    let credentials = &config.credentials;
    let verified = signer::verify(&received, None, SystemTime::now(), |ak| {
        (ak == credentials.ak).then(|| credentials.sk.clone())
    });
    let verified = match verified {
        Ok(verified) => verified,
        Err(err) => {
            side.lock().stats.auth_failures += 1;
            return reply.error(&ObsRefusal {
                status: err.http_status(),
                code: err.code(),
                message: err.to_string(),
            });
        }
    };
    let reply = Reply {
        dialect: verified.dialect,
        ..reply
    };

    if let Some(response) = throttle(side, config, api, &reply) {
        return response;
    }
    match pick_fault(side, config) {
        Fault::None => {}
        Fault::Drop => {
            side.lock().stats.dropped_connections += 1;
            return drop_connection(killer).await;
        }
        Fault::Status(status, code) => {
            side.lock().stats.server_errors += 1;
            return reply.error(&ObsRefusal {
                status,
                code,
                message: "Simulated fault.".to_string(),
            });
        }
    }

    let bucket = verified.bucket.as_deref().unwrap_or_default();
    let key = verified.key.as_deref().unwrap_or_default();
    let store = side.store();
    match api {
        ObsApi::HeadBucket => match store.bucket(bucket) {
            Ok(found) => {
                let mut response = reply.empty(StatusCode::OK);
                // The S3-compatible (AWS-V2) answer names both differently, as the SDK reads.
                match reply.dialect {
                    Dialect::Obs => {
                        reply.obs_header(&mut response, "bucket-location", &found.region);
                        reply.obs_header(&mut response, "storage-class", &found.storage_class.0);
                    }
                    Dialect::AwsV2 => {
                        reply.obs_header(&mut response, "bucket-region", &found.region);
                        set(
                            &mut response,
                            HeaderName::from_static("x-default-storage-class"),
                            &found.storage_class.0,
                        );
                    }
                }
                response
            }
            Err(refusal) => reply.error(&refusal),
        },
        ObsApi::HeadObject => match store.object(bucket, key) {
            Ok(object) => {
                let mut response = reply.empty(StatusCode::OK);
                reply.object_headers(&mut response, object, side.started_wall);
                set(
                    &mut response,
                    header::CONTENT_LENGTH,
                    &object.size.to_string(),
                );
                response
            }
            Err(refusal) => reply.error(&refusal),
        },
        ObsApi::GetObject => {
            let range = parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            let object = match store.object(bucket, key) {
                Ok(object) => object,
                Err(refusal) => return reply.error(&refusal),
            };
            match store.read(bucket, key, range) {
                Ok(Read::Partial {
                    first,
                    last,
                    total,
                    bytes,
                }) => {
                    {
                        let stats = &mut side.lock().stats;
                        stats.max_range_bytes = stats.max_range_bytes.max(last - first + 1);
                    }
                    let mut response = Response::new(Body::from(bytes));
                    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                    reply.common_headers(&mut response);
                    reply.object_headers(&mut response, object, side.started_wall);
                    set(
                        &mut response,
                        header::CONTENT_RANGE,
                        &format!("bytes {first}-{last}/{total}"),
                    );
                    response
                }
                Ok(Read::Whole { size }) => {
                    side.lock().stats.whole_reads += 1;
                    let mut response = Response::new(whole_body(object.clone()));
                    reply.common_headers(&mut response);
                    reply.object_headers(&mut response, object, side.started_wall);
                    set(&mut response, header::CONTENT_LENGTH, &size.to_string());
                    response
                }
                Err(refusal) => reply.error(&refusal),
            }
        }
    }
}

/// The whole object, computed chunk by chunk as the client reads (a client that refuses a 200
/// closes the connection after the first chunk).
fn whole_body(object: SimObject) -> Body {
    let stream = futures::stream::unfold(0u64, move |offset| {
        let object = object.clone();
        async move {
            if offset >= object.size {
                return None;
            }
            let last = (offset + STREAM_CHUNK).min(object.size) - 1;
            let chunk = obs_content::read(object.content, object.size, offset, last);
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), last + 1))
        }
    });
    Body::from_stream(stream)
}

/// 503 SlowDown when the API's bucket is empty.
fn throttle(side: &ObsSide, config: &SimConfig, api: ObsApi, reply: &Reply) -> Option<Response> {
    let now = side.started.elapsed();
    let mut inner = side.lock();
    let bucket = inner.buckets.get_mut(&api)?;
    if bucket.try_take(now) {
        return None;
    }
    inner.stats.throttled += 1;
    drop(inner);
    let mut response = reply.error(&ObsRefusal {
        status: 503,
        code: "SlowDown",
        message: "Please reduce your request rate.".to_string(),
    });
    if let Some(seconds) = config
        .rate_limits
        .get(api.name())
        .and_then(|limit| limit.retry_after)
    {
        set(&mut response, header::RETRY_AFTER, &seconds.to_string());
    }
    Some(response)
}

enum Fault {
    None,
    Drop,
    Status(u16, &'static str),
}

/// One seeded draw decides among the configured OBS fault fractions.
fn pick_fault(side: &ObsSide, config: &SimConfig) -> Fault {
    let faults = &config.obs.faults;
    if faults.total() <= 0.0 {
        return Fault::None;
    }
    let draw = side.lock().rng.random::<f64>();
    let mut edge = faults.drop_connection;
    if draw < edge {
        return Fault::Drop;
    }
    for (fraction, status, code) in [
        (faults.error_500, 500, "InternalError"),
        (faults.error_503, 503, "ServiceUnavailable"),
        (faults.slow_down, 503, "SlowDown"),
    ] {
        edge += fraction;
        if draw < edge {
            return Fault::Status(status, code);
        }
    }
    Fault::None
}

/// How answers to one request are dressed.
struct Reply {
    dialect: Dialect,
    request_id: String,
    head: bool,
}

impl Reply {
    fn empty(&self, status: StatusCode) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        self.common_headers(&mut response);
        response
    }

    fn common_headers(&self, response: &mut Response) {
        self.obs_header(response, "request-id", &self.request_id);
        self.obs_header(response, "id-2", &format!("sim{}", self.request_id));
        set(response, header::SERVER, "OBS");
    }

    /// `x-obs-{name}` (or `x-amz-{name}`).
    fn obs_header(&self, response: &mut Response, name: &str, value: &str) {
        let full = format!("{}{name}", self.dialect.header_prefix());
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(full.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }

    fn object_headers(&self, response: &mut Response, object: &SimObject, modified: SystemTime) {
        set(response, header::ETAG, &object.etag);
        set(
            response,
            header::LAST_MODIFIED,
            &httpdate::fmt_http_date(modified),
        );
        set(response, header::ACCEPT_RANGES, "bytes");
        set(response, header::CONTENT_TYPE, "binary/octet-stream");
        if !object.storage_class.is_standard() {
            self.obs_header(response, "storage-class", &object.storage_class.0);
        }
        match object.encryption {
            EncryptionKind::None => {}
            EncryptionKind::Kms => {
                let (kms, key_header) = match self.dialect {
                    Dialect::Obs => ("kms", "server-side-encryption-kms-key-id"),
                    Dialect::AwsV2 => ("aws:kms", "server-side-encryption-aws-kms-key-id"),
                };
                self.obs_header(response, "server-side-encryption", kms);
                self.obs_header(
                    response,
                    key_header,
                    "sim-region:0123456789abcdef0123456789abcdef:key/imsreg-sim-key",
                );
            }
            EncryptionKind::SseObs => {
                self.obs_header(response, "server-side-encryption", "AES256");
            }
            EncryptionKind::SseC => {
                self.obs_header(
                    response,
                    "server-side-encryption-customer-algorithm",
                    "AES256",
                );
                self.obs_header(
                    response,
                    "server-side-encryption-customer-key-MD5",
                    "c2ltdWxhdGVkLWtleS1tZDU=",
                );
            }
        }
    }

    /// An error answer: the code in headers (HEAD has no body) and the XML body on GET.
    fn error(&self, refusal: &ObsRefusal) -> Response {
        let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = if self.head {
            self.empty(status)
        } else {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId><HostId>sim</HostId></Error>",
                refusal.code,
                xml_escape(&refusal.message),
                self.request_id
            );
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            self.common_headers(&mut response);
            set(&mut response, header::CONTENT_TYPE, "application/xml");
            response
        };
        self.obs_header(&mut response, "error-code", refusal.code);
        let message: String = refusal
            .message
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        self.obs_header(&mut response, "error-message", &message);
        response
    }
}

fn set(response: &mut Response, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_paths_start_with_a_bucket_name() {
        assert!(is_obs_path("/images/centos/7.qcow2"));
        assert!(is_obs_path("/images"));
        assert!(is_obs_path("/dr-exports.ap/win/a.vhdx"));
        assert!(!is_obs_path("/v1/cloudimages/x/upload"));
        assert!(!is_obs_path("/v2/cloudimages"));
        assert!(!is_obs_path("/_sim/stats"));
        assert!(!is_obs_path("/v3/nothing"));
        assert!(!is_obs_path("/"));
    }

    #[test]
    fn api_names_round_trip() {
        for api in ObsApi::ALL {
            assert_eq!(ObsApi::from_name(api.name()), Some(api));
        }
        assert_eq!(ObsApi::from_name("register"), None);
    }
}
