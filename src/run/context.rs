//! What every task of a run shares: the client, the settings, the two call lanes (register
//! calls and status queries, each with its own in-flight bound and rate limiter), the
//! active-jobs bound, the bulk sweeper, and the stop signal.
//!
//! In-flight bounds: at most `concurrency` register calls *and* at most `concurrency` status
//! queries are on the wire at once (two separate lanes, so that slow polls never hold back
//! submissions, and a register call waiting for its rate-limiter turn never holds a query
//! permit). A permit is taken before the rate limiter, so calls leave spaced by the limiter.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::ids::ImageId;
use crate::ims::{ErrorClass, ImsApi, ImsError};

use super::active::ActiveJobs;
use super::config::RunConfig;
use super::events::{Api, EventSink, RunEvent};
use super::pacer::{Limiter, Pacer, RATE_MARGIN};
use super::retry::{RetryDecision, decide_query, jitter};
use super::watch::Sweeper;

pub struct Ctx<C> {
    pub client: Arc<C>,
    pub config: RunConfig,
    sink: Arc<dyn EventSink>,
    submit_calls: Semaphore,
    query_calls: Semaphore,
    submit_limiter: Limiter,
    query_limiter: Limiter,
    pub pacer: Pacer,
    pub active: Arc<ActiveJobs>,
    pub sweeper: Sweeper,
    /// Images still to be submitted (waiting for their turn, or their register call on the
    /// wire); set by the engine once it knows which images it submits.
    pub unsubmitted: AtomicUsize,
    /// Fires on cancellation or on an authentication failure: no new request after it.
    pub stop: CancellationToken,
    auth_failed: AtomicBool,
    /// `show_job_progress` is not answered here: poll with `show_job`.
    progress_unsupported: AtomicBool,
}

/// Why a status query produced no answer.
#[derive(Debug)]
pub enum QueryError {
    /// The run is stopping (cancel or 401).
    Stopped,
    /// The retry policy gave up on this error.
    Failed(ImsError),
}

impl<C: ImsApi> Ctx<C> {
    pub fn new(
        client: Arc<C>,
        config: &RunConfig,
        sink: Arc<dyn EventSink>,
        stop: CancellationToken,
    ) -> Self {
        let lanes = config.concurrency.max(1) as usize;
        Ctx {
            client,
            config: config.clone(),
            sink,
            submit_calls: Semaphore::new(lanes),
            query_calls: Semaphore::new(lanes),
            pacer: Pacer::for_rate(config.submit_rate),
            submit_limiter: Limiter::with_margin(config.submit_rate, RATE_MARGIN),
            query_limiter: Limiter::new(config.query_rate),
            active: ActiveJobs::new(config.max_active_jobs),
            sweeper: Sweeper::new(),
            unsubmitted: AtomicUsize::new(0),
            stop,
            auth_failed: AtomicBool::new(false),
            progress_unsupported: AtomicBool::new(false),
        }
    }

    pub fn emit(&self, event: RunEvent) {
        self.sink.event(&event);
    }

    /// [`Ctx::emit`] for an event the caller keeps.
    pub fn emit_ref(&self, event: &RunEvent) {
        self.sink.event(event);
    }

    /// Waits until the events emitted so far are durable (see [`EventSink::durable`]).
    pub async fn events_durable(&self) {
        self.sink.durable().await;
    }

    pub fn auth_failed(&self) -> bool {
        self.auth_failed.load(Ordering::SeqCst)
    }

    pub fn progress_unsupported(&self) -> bool {
        self.progress_unsupported.load(Ordering::Relaxed)
    }

    pub fn set_progress_unsupported(&self) {
        self.progress_unsupported.store(true, Ordering::Relaxed);
    }

    /// A 401: stop every request of the run at once (the gateway locks an AK after repeated
    /// signature failures). Reported once.
    pub fn stop_for_auth(&self, error: &ImsError) {
        if !self.auth_failed.swap(true, Ordering::SeqCst) {
            self.emit(RunEvent::AuthFailed {
                message: error.to_string(),
            });
        }
        self.stop.cancel();
    }

    /// Sleeps unless the run stops first; `false` if it stopped.
    pub async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Waits for a turn to send a register call: an in-flight permit, then the slot schedule
    /// and throttle state, then the rate limiter. `None` if the run stopped first.
    pub async fn submit_turn(&self) -> Option<SemaphorePermit<'_>> {
        let turn = async {
            let permit = self.submit_calls.acquire().await.ok()?;
            self.submit_limiter.until_ready(Some(&self.pacer)).await;
            Some(permit)
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            permit = turn => permit,
        }
    }

    /// One status query in the query lane, no retry. `None` if the run stopped first.
    pub async fn query_once<T, Fut>(
        &self,
        call: impl FnOnce() -> Fut,
    ) -> Option<Result<T, ImsError>>
    where
        Fut: Future<Output = Result<T, ImsError>>,
    {
        let query = async {
            let _permit = self.query_calls.acquire().await.ok()?;
            self.query_limiter.until_ready(None).await;
            // Boxed while on the wire only: an HTTP call's future is large, and thousands of
            // tasks waiting for a sweep would otherwise each carry room for one.
            Some(Box::pin(call()).await)
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            answer = query => answer,
        }
    }

    /// A job poll's answer was a 429: told as [`RunEvent::Throttled`] with no delay (polls are
    /// not retried; the next one comes at its usual time).
    pub fn note_throttled_poll(&self, api: Api, error: &ImsError) {
        if matches!(
            error.class(),
            ErrorClass::Retryable {
                throttled: true,
                ..
            }
        ) {
            self.emit(RunEvent::Throttled {
                api,
                delay: Duration::ZERO,
            });
        }
    }

    /// A status query to `api` under the retry policy for reads (see [`super::retry`]).
    pub async fn query<T, Fut>(
        &self,
        api: Api,
        image_id: Option<ImageId>,
        what: &str,
        call: impl Fn() -> Fut,
    ) -> Result<T, QueryError>
    where
        Fut: Future<Output = Result<T, ImsError>>,
    {
        let mut failures = super::retry::Failures::default();
        loop {
            let error = match self.query_once(&call).await {
                None => return Err(QueryError::Stopped),
                Some(Ok(value)) => return Ok(value),
                Some(Err(error)) => error,
            };
            let class = error.class();
            let throttled = matches!(
                class,
                ErrorClass::Retryable {
                    throttled: true,
                    ..
                }
            );
            let attempt = failures.count(&class);
            match decide_query(&class, attempt, jitter()) {
                RetryDecision::RetryAfter(delay) => {
                    if throttled {
                        self.emit(RunEvent::Throttled { api, delay });
                    }
                    self.emit(RunEvent::Retrying {
                        api,
                        image_id,
                        reason: format!("{what}: {error}"),
                        delay,
                    });
                    if !self.sleep(delay).await {
                        return Err(QueryError::Stopped);
                    }
                }
                RetryDecision::StopRun => {
                    self.stop_for_auth(&error);
                    return Err(QueryError::Stopped);
                }
                _ => return Err(QueryError::Failed(error)),
            }
        }
    }
}
