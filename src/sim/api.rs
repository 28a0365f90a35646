//! Request handling: route, count, add latency, authenticate, rate-limit, inject faults, then
//! answer from the [`Store`] with the same paths, fields and error bodies as IMS.
//!
//! Every API request passes the same gate, in the order the real gateway and backend apply
//! them: 401 (auth) before 429 (throttling) before backend faults and IMS's own answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::auth::{self, Received};
use super::config::SimConfig;
use super::create::parse_new_image;
use super::limits::Bucket;
use super::routes::{Api, route};
use super::server::{ConnectionKiller, drop_connection};
use super::state::{ImsFault, ListFilter, Store, os_versions_json, parse_time_filter};
use super::stats::SimStats;
use crate::ims::ImageStatus;

/// Largest body accepted (the gateway's limit for AK/SK-signed requests).
const MAX_BODY: usize = 12 * 1024 * 1024;

/// Default and largest `limit` of `GET /v2/cloudimages`.
const DEFAULT_LIST_LIMIT: usize = 500;
const MAX_LIST_LIMIT: usize = 1000;

/// State shared by every connection.
pub struct Shared {
    config: SimConfig,
    start: Instant,
    start_wall: DateTime<Utc>,
    inner: Mutex<Inner>,
    /// The OBS side (same listener, path-style).
    obs: super::obs::ObsSide,
}

struct Inner {
    store: Store,
    buckets: HashMap<Api, Bucket>,
    faults: StdRng,
    request_seq: u64,
    stats: SimStats,
}

impl Shared {
    pub fn new(config: SimConfig) -> Self {
        let start_wall = Utc::now();
        let buckets = config
            .rate_limits
            .iter()
            .filter_map(|(name, limit)| Some((Api::from_name(name)?, Bucket::new(limit))))
            .collect();
        let inner = Inner {
            store: Store::new(&config, start_wall),
            buckets,
            faults: StdRng::seed_from_u64(config.seed),
            request_seq: 0,
            stats: SimStats::default(),
        };
        Self {
            obs: super::obs::ObsSide::new(&config),
            config,
            start: Instant::now(),
            start_wall,
            inner: Mutex::new(inner),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn add_objects_for(&self, entries: &[crate::manifest::ImageEntry]) {
        self.obs.add_objects_for(entries);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn add_images(&self, ids: impl IntoIterator<Item = String>) {
        let now = self.now();
        self.lock().store.add_queued(ids, now);
    }

    pub fn set_image_status(&self, id: &str, status: ImageStatus) {
        let now = self.now();
        self.lock().store.set_status(id, status, now);
    }

    pub fn image_status(&self, id: &str) -> Option<ImageStatus> {
        let now = self.now();
        self.lock().store.image_status(id, now)
    }

    pub fn images_named(&self, name: &str) -> Vec<(String, ImageStatus)> {
        let now = self.now();
        self.lock().store.images_named(name, now)
    }

    pub fn images_tagged(&self, key: &str, value: &str) -> Vec<(String, ImageStatus)> {
        let now = self.now();
        self.lock().store.images_tagged(key, value, now)
    }

    pub fn stats(&self) -> SimStats {
        let now = self.now();
        let mut inner = self.lock();
        let running = inner.store.running_jobs(now);
        let counters = inner.store.counters.clone();
        let images = inner.store.image_count();
        let mut stats = inner.stats.clone();
        stats.submissions = counters.submissions;
        stats.accepted_registers_ms = counters
            .accepted_at
            .iter()
            .map(|t| t.as_secs_f64() * 1000.0)
            .collect();
        stats.max_running_jobs = counters.max_running;
        stats.running_jobs = running;
        stats.images = images;
        stats.jobs = counters.accepted_at.len();
        stats.deleted_images = counters.deleted;
        stats.images_per_name = inner.store.images_per_name();
        stats.obs = self.obs.stats();
        stats
    }
}

/// Every path the simulator answers: its own stats, and the IMS APIs (unknown paths get the
/// gateway's 404).
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/stats", get(stats))
        .fallback(handle)
        .with_state(shared)
}

/// `GET /_sim/stats` (no auth, no faults).
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(shared.stats()).unwrap_or_default(),
        None,
    )
}

/// Every API request comes through here.
pub async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if super::obs::is_obs_path(request.uri().path()) {
        return super::obs::handle(&shared.obs, &shared.config, request).await;
    }
    let (parts, body) = request.into_parts();
    let killer = parts.extensions.get::<ConnectionKiller>().cloned();
    let request_id = {
        let mut inner = shared.lock();
        inner.request_seq += 1;
        format!("{:016x}{:016x}", shared.config.seed, inner.request_seq)
    };
    let Some((api, params)) = route(&parts.method, parts.uri.path()) else {
        return gateway_error(
            StatusCode::NOT_FOUND,
            "APIG.0101",
            "The API does not exist or has not been published in the environment",
            &request_id,
            None,
        );
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return gateway_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "APIG.0201",
                "Request entity too large",
                &request_id,
                None,
            );
        }
    };
    let arrived = shared.now();
    {
        let mut inner = shared.lock();
        *inner.stats.requests.entry(api.name().into()).or_default() += 1;
        if api == Api::Register {
            inner
                .stats
                .register_requests_ms
                .push(arrived.as_secs_f64() * 1000.0);
        }
    }

    if !shared.config.latency.is_zero() {
        let unit = shared.lock().faults.random::<f64>();
        tokio::time::sleep(shared.config.latency.pick(unit)).await;
    }

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
    let received = Received {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body: &body,
    };
    if let Err(err) = auth::verify(
        &received,
        &shared.config.credentials,
        shared.config.max_clock_skew,
        shared.start_wall + chrono::Duration::from_std(shared.now()).unwrap_or_default(),
    ) {
        shared.lock().stats.auth_failures += 1;
        return gateway_error(
            StatusCode::UNAUTHORIZED,
            "APIG.0301",
            &err.to_string(),
            &request_id,
            None,
        );
    }

    if let Some(response) = throttle(&shared, api, &request_id) {
        return response;
    }

    match pick_fault(&shared) {
        Fault::None => {}
        Fault::Drop => {
            shared.lock().stats.dropped_connections += 1;
            return drop_connection(killer).await;
        }
        Fault::Status(status) => {
            shared.lock().stats.server_errors += 1;
            return injected_error(status, &request_id);
        }
    }

    let query = auth::query_pairs(parts.uri.query());
    let answer = match api {
        Api::Register => register(&shared, &params[0], &body),
        Api::ShowJob => show_job(&shared, &params[0], &params[1], false),
        Api::ShowJobProgress => show_job(&shared, "", &params[0], true),
        Api::ListImages => list_images(&shared, &query),
        Api::CreateImage => create_image(&shared, &body),
        Api::GetImage => get_image(&shared, &params[0]),
        Api::DeleteImage => delete_image(&shared, &params[0]),
        Api::OsVersion => Ok(Answer::Json(
            StatusCode::OK,
            os_versions_json(&shared.config.os_versions),
        )),
        Api::Quota => Ok(Answer::Json(
            StatusCode::OK,
            shared.lock().store.quota_json(),
        )),
    };
    match answer {
        Ok(Answer::Json(status, value)) => json_response(status, &value, Some(&request_id)),
        Ok(Answer::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Ok(Answer::Created(image)) => {
            let fraction = shared.config.faults.drop_create_response;
            let drop_it = fraction > 0.0 && shared.lock().faults.random::<f64>() < fraction;
            if drop_it {
                shared.lock().stats.dropped_create_responses += 1;
                return drop_connection(killer).await;
            }
            json_response(StatusCode::CREATED, &image, Some(&request_id))
        }
        Ok(Answer::Registered(job_id)) => {
            let drop_it = shared.config.faults.drop_register_response > 0.0
                && shared.lock().faults.random::<f64>()
                    < shared.config.faults.drop_register_response;
            if drop_it {
                shared.lock().stats.dropped_register_responses += 1;
                return drop_connection(killer).await;
            }
            let faults = &shared.config.faults;
            let garble_it = faults.garble_register_response > 0.0
                && shared.lock().faults.random::<f64>() < faults.garble_register_response;
            if garble_it {
                let mut response = (StatusCode::OK, faults.garbled_body.body()).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(faults.garbled_body.content_type()),
                );
                return response;
            }
            json_response(
                StatusCode::OK,
                &json!({ "job_id": job_id }),
                Some(&request_id),
            )
        }
        Err(fault) => {
            if fault.code == "IMG.0060" {
                shared.lock().stats.task_limit_rejections += 1;
            }
            ims_error(fault, &request_id)
        }
    }
}

enum Answer {
    Json(StatusCode, Value),
    Registered(String),
    /// A created image (201), whose answer `drop_create_response` may drop.
    Created(Value),
    /// 204 with no body.
    NoContent,
}

enum Fault {
    None,
    Drop,
    Status(StatusCode),
}

/// 429 when the API's bucket is empty.
fn throttle(shared: &Shared, api: Api, request_id: &str) -> Option<Response> {
    let now = shared.now();
    let mut inner = shared.lock();
    let bucket = inner.buckets.get_mut(&api)?;
    if bucket.try_take(now) {
        return None;
    }
    inner.stats.throttled += 1;
    *inner
        .stats
        .throttled_per_api
        .entry(api.name().into())
        .or_default() += 1;
    drop(inner);
    let limit = shared.config.rate_limits.get(api.name())?;
    let message = format!(
        "The throttling threshold has been reached: policy user over ratelimit,limit:{},time:1 second",
        limit.rate.ceil() as u64
    );
    Some(gateway_error(
        StatusCode::TOO_MANY_REQUESTS,
        "APIG.0308",
        &message,
        request_id,
        limit.retry_after,
    ))
}

/// One seeded draw decides among the configured 500/502/503/drop fractions.
fn pick_fault(shared: &Shared) -> Fault {
    let faults = &shared.config.faults;
    let total = faults.error_500 + faults.error_502 + faults.error_503 + faults.drop_connection;
    if total <= 0.0 {
        return Fault::None;
    }
    let draw = shared.lock().faults.random::<f64>();
    let mut edge = faults.drop_connection;
    if draw < edge {
        return Fault::Drop;
    }
    for (fraction, status) in [
        (faults.error_500, StatusCode::INTERNAL_SERVER_ERROR),
        (faults.error_502, StatusCode::BAD_GATEWAY),
        (faults.error_503, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        edge += fraction;
        if draw < edge {
            return Fault::Status(status);
        }
    }
    Fault::None
}

fn register(shared: &Shared, image_id: &str, body: &[u8]) -> Result<Answer, ImsFault> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(fault(400, "IMG.0007", "The request body is empty."));
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|e| {
        fault(
            400,
            "IMG.0001",
            format!("The request message format is invalid: {e}."),
        )
    })?;
    let Some(image_url) = parsed.get("image_url").and_then(Value::as_str) else {
        return Err(fault(
            400,
            "IMG.0001",
            "The request message format is invalid: image_url (string) is required.",
        ));
    };
    let now = shared.now();
    let facts = shared.obs.facts(image_url).unwrap_or_default();
    let job_id = shared
        .lock()
        .store
        .register_with(image_id, image_url, now, facts)?;
    Ok(Answer::Registered(job_id))
}

fn show_job(
    shared: &Shared,
    project: &str,
    job_id: &str,
    progress: bool,
) -> Result<Answer, ImsFault> {
    let not_found = || {
        fault(
            404,
            // The real code for an unknown job is unconfirmed (ims-api.md section 2).
            "SIM.0404",
            format!("The job {job_id} does not exist in this project."),
        )
    };
    if !progress && project != shared.config.credentials.project_id {
        return Err(not_found());
    }
    let now = shared.now();
    let job = shared.lock().store.job_json(job_id, now, progress);
    job.map(|value| Answer::Json(StatusCode::OK, value))
        .ok_or_else(not_found)
}

fn list_images(shared: &Shared, query: &[(String, String)]) -> Result<Answer, ImsFault> {
    let bad = |what: &str| {
        fault(
            400,
            "IMG.0001",
            format!("The request message format is invalid: {what}."),
        )
    };
    let mut filter = ListFilter {
        limit: DEFAULT_LIST_LIMIT,
        ..ListFilter::default()
    };
    for (key, value) in query {
        match key.as_str() {
            "id" => filter.id = Some(value.clone()),
            "status" => filter.status = Some(value.clone()),
            "__imagetype" => filter.imagetype = Some(value.clone()),
            "name" => filter.name = Some(value.clone()),
            "tag" => filter.tag = Some(value.clone()),
            "marker" => filter.marker = Some(value.clone()),
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit must be an integer from 1 to 1000"))?;
            }
            "updated_at" => {
                filter.updated_at = Some(parse_time_filter(value).ok_or_else(|| bad("updated_at"))?)
            }
            "created_at" => {
                filter.created_at = Some(parse_time_filter(value).ok_or_else(|| bad("created_at"))?)
            }
            // Other documented filters (owner, visibility, sort_key, ...) are accepted and
            // ignored: every simulated image is private and listed in ID order.
            _ => {}
        }
    }
    let now = shared.now();
    let (images, next_marker) = shared.lock().store.list(&filter, now);
    let mut body = json!({ "images": images });
    if let Some(marker) = next_marker {
        body["page_info"] = json!({ "next_marker": marker });
    }
    Ok(Answer::Json(StatusCode::OK, body))
}

fn create_image(shared: &Shared, body: &[u8]) -> Result<Answer, ImsFault> {
    let new = parse_new_image(body)?;
    let now = shared.now();
    let image = shared.lock().store.create_image(new, now)?;
    Ok(Answer::Created(image))
}

fn delete_image(shared: &Shared, image_id: &str) -> Result<Answer, ImsFault> {
    let now = shared.now();
    shared.lock().store.delete_image(image_id, now)?;
    Ok(Answer::NoContent)
}

fn get_image(shared: &Shared, image_id: &str) -> Result<Answer, ImsFault> {
    let now = shared.now();
    let image = shared.lock().store.image_json(image_id, now);
    image
        .map(|value| Answer::Json(StatusCode::OK, value))
        .ok_or_else(|| {
            fault(
                404,
                "IMG.0144",
                format!("The image {image_id} does not exist."),
            )
        })
}

fn fault(status: u16, code: &'static str, message: impl Into<String>) -> ImsFault {
    ImsFault {
        status,
        code,
        message: message.into(),
    }
}

fn json_response(status: StatusCode, body: &Value, request_id: Option<&str>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("x-request-id", id);
    }
    response
}

/// `{"error": {"code", "message"}}`, the IMS extension APIs' error body.
fn ims_error(fault: ImsFault, request_id: &str) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(
        status,
        &json!({ "error": { "code": fault.code, "message": fault.message } }),
        Some(request_id),
    )
}

/// `{"error_code", "error_msg", "request_id"}`, the API gateway's error body.
fn gateway_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
    retry_after: Option<u64>,
) -> Response {
    let mut response = json_response(
        status,
        &json!({ "error_code": code, "error_msg": message, "request_id": request_id }),
        Some(request_id),
    );
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Injected 5xx: 500 comes from IMS (IMS body), 502/503 from the gateway (gateway body; the
/// exact APIG codes of backend errors are unconfirmed, clients key on the status).
fn injected_error(status: StatusCode, request_id: &str) -> Response {
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => ims_error(
            fault(500, "IMG.0061", "Unknown system error (simulated fault)."),
            request_id,
        ),
        StatusCode::BAD_GATEWAY => {
            gateway_error(status, "APIG.0202", "Backend unavailable", request_id, None)
        }
        _ => gateway_error(status, "APIG.0203", "Service unavailable", request_id, None),
    }
}
