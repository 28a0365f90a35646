//! The preflight itself: asks OBS about every entry's bucket and object and judges each entry
//! with [`super::judge`], before anything goes to IMS.
//!
//! Per entry: HEAD Bucket (once per bucket, shared by its entries), HEAD Object, then, for an
//! object IMS could read (not empty, not archived, not SSE-C), a ranged GET of its first 36 KiB
//! and, only when those bytes match no format, of its last 512 bytes (a fixed VHD's footer).
//! Every request waits for an in-flight permit (`concurrency`) and the OBS rate limiter
//! (`obs_rate`, a GCRA like the IMS lanes', [`crate::run::pacer::Limiter`]); failures are retried
//! as IMS status queries are ([`crate::run::retry::decide_query`]: full-jitter backoff for 5xx,
//! drops and timeouts, 2-5 s pauses or `Retry-After` for 503 SlowDown). A refused signature
//! stops everything at once. OBS never reached at all is an error, not a pass.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::format::{HEAD_BYTES, TAIL_BYTES, head_range, needs_tail, tail_range};
use super::verdict::{Answers, EntryVerdict, judge};
use crate::ims;
use crate::manifest::ImageEntry;
use crate::obs::{
    BucketInfo, Encryption, ErrorClass, ObsClient, ObsError, RangeRead, StorageClass,
};
use crate::run::pacer::Limiter;
use crate::run::retry::{RetryDecision, decide_query, jitter};

/// The default `--obs-rate`: OBS requests per second.
pub const DEFAULT_OBS_RATE: f64 = 20.0;

/// How the preflight runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightConfig {
    /// OBS requests in flight at once (the run's `concurrency`).
    pub concurrency: u32,
    /// OBS requests per second.
    pub obs_rate: f64,
    /// The region IMS registers in; `None` skips the bucket-region check.
    pub ims_region: Option<String>,
}

/// What the preflight found.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightReport {
    /// One per entry checked, in the order given.
    pub verdicts: Vec<EntryVerdict>,
    /// OBS requests sent (retries included), and how many of them were retries.
    pub requests: u64,
    pub retries: u64,
    pub elapsed: Duration,
}

impl PreflightReport {
    pub fn passed(&self) -> usize {
        self.verdicts.iter().filter(|v| v.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.verdicts.len() - self.passed()
    }

    pub fn warnings(&self) -> usize {
        self.verdicts
            .iter()
            .flat_map(|v| &v.findings)
            .filter(|f| f.severity == crate::manifest::Severity::Warning)
            .count()
    }
}

/// Why the preflight could not judge the entries at all. Nothing was submitted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "OBS refused the credentials, so no object could be checked and nothing was submitted: \
         {0}. Check the AK/SK (and security token) and the machine's clock, or run with \
         --no-preflight"
    )]
    CredentialsRejected(String),
    #[error(
        "could not reach OBS at {endpoint}: no request got an answer, so no object could be \
         checked and nothing was submitted ({detail}). Check the network and --obs-endpoint, or \
         run with --no-preflight"
    )]
    Unreachable { endpoint: String, detail: String },
    #[error("the preflight was interrupted before it finished; nothing was submitted")]
    Interrupted,
}

/// Checks `entries` in OBS; answers one verdict per entry, in their order.
pub async fn check(
    client: &ObsClient,
    entries: &[&ImageEntry],
    config: &PreflightConfig,
    cancel: CancellationToken,
) -> Result<PreflightReport, PreflightError> {
    let started = Instant::now();
    let lane = Lane::new(client, config, cancel.child_token());
    let mut buckets: HashMap<&str, OnceCell<Result<BucketInfo, ObsError>>> = HashMap::new();
    for entry in entries {
        buckets.entry(entry.image_url.bucket.as_str()).or_default();
    }
    let region = config.ims_region.as_deref();
    let lane = &lane;
    let buckets = &buckets;
    // Ordered, and a bounded window of entries in progress: memory stays flat for large
    // manifests, and the permits, not this window, bound the requests in flight.
    let window = (config.concurrency.max(1) as usize) * 4;
    // By index: a closure taking a borrowed entry would make the future not `Send`.
    let verdicts: Vec<EntryVerdict> = futures::stream::iter(0..entries.len())
        .map(|index| check_entry(lane, buckets, region, entries[index]))
        .buffered(window)
        .collect()
        .await;

    if cancel.is_cancelled() {
        return Err(PreflightError::Interrupted);
    }
    if let Some(message) = lane.auth_failure() {
        return Err(PreflightError::CredentialsRejected(message));
    }
    if !entries.is_empty() && !lane.answered.load(Ordering::SeqCst) {
        return Err(PreflightError::Unreachable {
            endpoint: client.endpoint().to_string(),
            detail: lane
                .last_failure()
                .unwrap_or_else(|| "no answer".to_string()),
        });
    }
    Ok(PreflightReport {
        verdicts,
        requests: lane.requests.load(Ordering::Relaxed),
        retries: lane.retries.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// The OBS answers one entry's verdict needs (see the module documentation for the order).
/// One entry's checks. A named async fn, not an `async move` closure: the compiler can then
/// prove the future `Send` (the job's future is spawned by embedders).
async fn check_entry(
    lane: &Lane<'_>,
    buckets: &HashMap<&str, OnceCell<Result<BucketInfo, ObsError>>>,
    region: Option<&str>,
    entry: &ImageEntry,
) -> EntryVerdict {
    let cell = &buckets[entry.image_url.bucket.as_str()];
    let answers = ask(lane, cell, entry).await;
    judge(entry, region, &answers)
}

async fn ask(
    lane: &Lane<'_>,
    bucket: &OnceCell<Result<BucketInfo, ObsError>>,
    entry: &ImageEntry,
) -> Answers {
    let client = lane.client;
    let (name, key) = (
        entry.image_url.bucket.as_str(),
        entry.image_url.object.as_str(),
    );
    let bucket = bucket
        .get_or_init(|| lane.call(|| client.head_bucket(name)))
        .await
        .clone();
    let mut answers = Answers {
        bucket,
        object: None,
        head: None,
        tail: None,
    };
    if answers.bucket.is_err() {
        return answers;
    }
    let object = lane.call(|| client.head_object(name, key)).await;
    let readable = object.as_ref().ok().filter(|info| {
        !matches!(
            info.storage_class,
            StorageClass::Cold | StorageClass::DeepArchive
        ) && !matches!(info.encryption, Encryption::CustomerKey { .. })
    });
    let size = readable.map(|info| info.size);
    answers.object = Some(object);
    let Some(head_range) = size.and_then(head_range) else {
        return answers;
    };
    let head = lane
        .call(|| client.get_range(name, key, head_range.clone()))
        .await;
    if let (Ok(read), Some(size)) = (&head, size)
        && needs_tail(&read.bytes)
    {
        answers.tail = Some(if size <= HEAD_BYTES {
            // The whole object is in hand: its tail is the end of the first read.
            Ok(RangeRead {
                first: size.saturating_sub(TAIL_BYTES),
                last: size - 1,
                total: size,
                bytes: read.bytes[read.bytes.len().saturating_sub(TAIL_BYTES as usize)..].to_vec(),
                request_id: read.request_id.clone(),
            })
        } else {
            match tail_range(size) {
                Some(range) => {
                    lane.call(|| client.get_range(name, key, range.clone()))
                        .await
                }
                None => Err(ObsError::Config("empty object".to_string())),
            }
        });
    }
    answers.head = Some(head);
    answers
}

/// The OBS request lane: in-flight permits, the rate limiter, retries, and what happened.
struct Lane<'a> {
    client: &'a ObsClient,
    permits: Semaphore,
    limiter: Limiter,
    stop: CancellationToken,
    /// Some request got an answer from OBS (any status): it is reachable.
    answered: AtomicBool,
    auth_failed: std::sync::Mutex<Option<String>>,
    last_failure: std::sync::Mutex<Option<String>>,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl<'a> Lane<'a> {
    fn new(client: &'a ObsClient, config: &PreflightConfig, stop: CancellationToken) -> Self {
        Lane {
            client,
            permits: Semaphore::new(config.concurrency.max(1) as usize),
            limiter: Limiter::new(config.obs_rate),
            stop,
            answered: AtomicBool::new(false),
            auth_failed: std::sync::Mutex::new(None),
            last_failure: std::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    fn auth_failure(&self) -> Option<String> {
        self.auth_failed.lock().ok().and_then(|m| m.clone())
    }

    fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|m| m.clone())
    }

    /// One OBS call under the permits, the rate limit and the retry policy for reads. After a
    /// stop (cancel or refused credentials) it sends nothing and answers why.
    async fn call<T, Fut>(&self, call: impl Fn() -> Fut) -> Result<T, ObsError>
    where
        Fut: Future<Output = Result<T, ObsError>>,
    {
        let mut failures = crate::run::retry::Failures::default();
        loop {
            let attempt = async {
                let _permit = self.permits.acquire().await.ok()?;
                self.limiter.until_ready(None).await;
                self.requests.fetch_add(1, Ordering::Relaxed);
                Some(call().await)
            };
            let answer = tokio::select! {
                biased;
                _ = self.stop.cancelled() => None,
                answer = attempt => answer,
            };
            let error = match answer {
                None => return Err(self.stopped()),
                Some(Ok(value)) => {
                    self.answered.store(true, Ordering::SeqCst);
                    return Ok(value);
                }
                Some(Err(error)) => error,
            };
            if error.api().is_some() {
                self.answered.store(true, Ordering::SeqCst);
            }
            let class = as_query_class(&error.class());
            let tries = failures.count(&class);
            match decide_query(&class, tries, jitter()) {
                RetryDecision::RetryAfter(delay) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(delay_ms = delay.as_millis() as u64, "retrying OBS: {error}");
                    let slept = tokio::select! {
                        biased;
                        _ = self.stop.cancelled() => false,
                        _ = tokio::time::sleep(delay) => true,
                    };
                    if !slept {
                        return Err(self.stopped());
                    }
                }
                RetryDecision::StopRun => {
                    if let Ok(mut first) = self.auth_failed.lock() {
                        first.get_or_insert_with(|| error.to_string());
                    }
                    self.stop.cancel();
                    return Err(error);
                }
                _ => {
                    if !super::verdict::is_about_the_entry(&error)
                        && let Ok(mut last) = self.last_failure.lock()
                    {
                        *last = Some(error.to_string());
                    }
                    return Err(error);
                }
            }
        }
    }

    fn stopped(&self) -> ObsError {
        ObsError::Interrupted {
            operation: "the preflight".to_string(),
            detail: "stopped before this request was sent".to_string(),
        }
    }
}

/// OBS's error classes as the query retry policy reads them.
fn as_query_class(class: &ErrorClass) -> ims::ErrorClass {
    match class {
        ErrorClass::Retryable {
            retry_after,
            throttled,
        } => ims::ErrorClass::Retryable {
            retry_after: *retry_after,
            throttled: *throttled,
        },
        ErrorClass::AuthFailed => ims::ErrorClass::AuthFailed,
        ErrorClass::Final => ims::ErrorClass::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_classes_map_to_the_query_policy() {
        let slow = ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(3)),
            throttled: true,
        };
        assert_eq!(
            decide_query(&as_query_class(&slow), 1, 0.5),
            RetryDecision::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            decide_query(&as_query_class(&ErrorClass::AuthFailed), 1, 0.5),
            RetryDecision::StopRun
        );
        assert_eq!(
            decide_query(&as_query_class(&ErrorClass::Final), 1, 0.5),
            RetryDecision::GiveUp
        );
        let dropped = ErrorClass::Retryable {
            retry_after: None,
            throttled: false,
        };
        assert!(matches!(
            decide_query(&as_query_class(&dropped), 2, 1.0),
            RetryDecision::RetryAfter(d) if d == Duration::from_secs(1)
        ));
    }
}
