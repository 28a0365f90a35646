//! Bulk polling: while many jobs are running, learn their images' statuses from list pages
//! instead of one query per job, so that polling costs grow sub-linearly with the jobs.
//!
//! Each followed image registers a watch. While at least [`BULK_THRESHOLD`] images are
//! watched, a sweep runs every `poll_interval` (or back to back, if a sweep takes longer):
//! it lists the private images that ended lately (`status=active`, then `status=killed`, each
//! with `updated_at=gte:<since>`, where `since` is the newest `updated_at` listed when the
//! previous sweep's first page arrived, less [`SINCE_OVERLAP`]; see [`sweep_once`]; the first
//! sweep looks back [`FIRST_LOOKBACK`], the clock skew the gateway tolerates on signatures),
//! so a sweep costs about one small page whatever the number of jobs. Every
//! [`FULL_SWEEP_EVERY`] a sweep lists every private image without filters, so nothing is
//! missed if the server ignores or mis-stamps `updated_at` (and `deleted` images are seen); if
//! the server refuses the filter (400), every sweep is a full one. Images found `active`,
//! `killed` or `deleted` are handed to their followers, which then stop querying; meanwhile
//! followers wait for the sweeps (or the end of bulk mode, [`Sweeper::bulk_ended`]) without
//! waking on their own poll schedule.
//! `active` in a listing is itself the confirmation of a registration; a `killed` image costs
//! one `show_job` for the failure reason.
//!
//! Since `updated_at` has whole seconds, each sweep re-reads the images that ended in the
//! newest second (already delivered); with bursts of registrations ending together, most
//! sweeps between two bursts read nothing new. So while no watched image has run as long as
//! the fastest registration seen so far, sweeps pause (at most [`MAX_SKIPPED_PERIODS`]
//! periods).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ims::{ImageStatus, ImsApi, ListImagesQuery};

use super::check::{PAGE_LIMIT, next_marker};
use super::context::{Ctx, QueryError};

/// Followed images from which on sweeps replace per-job polls.
pub const BULK_THRESHOLD: usize = 8;
/// How far behind the newest `updated_at` seen the next sweep starts. Zero: the filter is
/// `gte` on whole seconds, so the newest second is read again anyway; an image stamped
/// earlier but listed late is caught by the next full sweep.
pub const SINCE_OVERLAP: Duration = Duration::ZERO;
/// How far back the first sweep looks.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// While no watched registration is expected to have ended, sweeps pause for at most this
/// many poll intervals.
pub const MAX_SKIPPED_PERIODS: u32 = 4;
/// A sweep without the `updated_at` filter at least this often.
pub const FULL_SWEEP_EVERY: Duration = Duration::from_secs(300);

/// The watched images, each with the channel its follower listens on.
pub struct Sweeper {
    watchers: Mutex<HashMap<String, Watcher>>,
    count: AtomicUsize,
    /// The shortest time from submission to delivery seen so far in this run (see
    /// [`Sweeper::first_possible_end`]).
    fastest: Mutex<Option<Duration>>,
    /// Notified when the watched images drop below [`BULK_THRESHOLD`].
    bulk_ended: Notify,
}

struct Watcher {
    sender: oneshot::Sender<ImageStatus>,
    /// When the image was submitted (or adopted).
    started: Instant,
}

/// A follower's registration; unregisters on drop.
pub struct Watch<'a> {
    sweeper: &'a Sweeper,
    image_id: &'a str,
    pub receiver: Option<oneshot::Receiver<ImageStatus>>,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.sweeper.remove(self.image_id);
    }
}

impl Default for Sweeper {
    fn default() -> Self {
        Self::new()
    }
}

impl Sweeper {
    pub fn new() -> Self {
        Sweeper {
            watchers: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            fastest: Mutex::new(None),
            bulk_ended: Notify::new(),
        }
    }

    /// Watches an image submitted (or adopted) at `started`.
    pub fn watch<'a>(&'a self, image_id: &'a str, started: Instant) -> Watch<'a> {
        let (sender, receiver) = oneshot::channel();
        let mut watchers = self.lock();
        if watchers
            .insert(image_id.to_string(), Watcher { sender, started })
            .is_none()
        {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Watch {
            sweeper: self,
            image_id,
            receiver: Some(receiver),
        }
    }

    /// Whether sweeps are running (followers do not poll on their own).
    pub fn is_bulk(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= BULK_THRESHOLD
    }

    /// Resolves when sweeps stop covering the watched images (fewer than [`BULK_THRESHOLD`]
    /// left); followers then poll on their own again.
    pub fn bulk_ended(&self) -> Notified<'_> {
        self.bulk_ended.notified()
    }

    /// The earliest instant a watched registration can be expected to end, judging by the
    /// fastest one seen so far: the oldest watch plus that duration. `None` before any
    /// registration was seen ending (or with nothing watched): no guess, sweep on time.
    pub fn first_possible_end(&self) -> Option<Instant> {
        let fastest = (*self.fastest.lock().unwrap_or_else(|e| e.into_inner()))?;
        let oldest = self.lock().values().map(|w| w.started).min()?;
        Some(oldest + fastest)
    }

    fn remove(&self, image_id: &str) -> Option<Watcher> {
        let removed = self.lock().remove(image_id);
        if removed.is_some() && self.count.fetch_sub(1, Ordering::Relaxed) == BULK_THRESHOLD {
            self.bulk_ended.notify_waiters();
        }
        removed
    }

    /// Hands a final-looking status to the image's follower, if it is watched. `asked_at`:
    /// when the page that shows it was asked for (the registration had ended by then, or
    /// shortly after).
    fn deliver(&self, image_id: &str, status: &ImageStatus, asked_at: Instant) {
        if !matches!(
            status,
            ImageStatus::Active | ImageStatus::Killed | ImageStatus::Deleted
        ) {
            return;
        }
        if let Some(watcher) = self.remove(image_id) {
            let took = asked_at.saturating_duration_since(watcher.started);
            let mut fastest = self.fastest.lock().unwrap_or_else(|e| e.into_inner());
            *fastest = Some(fastest.map_or(took, |f| f.min(took)));
            let _ = watcher.sender.send(status.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watcher>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs sweeps until `done` or the run stops.
pub async fn run_sweeps<C: ImsApi>(ctx: Arc<Ctx<C>>, done: CancellationToken) {
    let period = ctx.config.poll_interval.max(Duration::from_millis(50));
    let mut since: DateTime<Utc> = Utc::now()
        - chrono::Duration::from_std(FIRST_LOOKBACK).unwrap_or_else(|_| chrono::Duration::zero());
    let mut last_full = Instant::now();
    let mut filter_works = true;
    let mut next = Instant::now() + period;
    let mut last_sweep = Instant::now();
    // The newest `updated_at` listed so far: the server's clock had reached it.
    let mut newest_listed: Option<DateTime<Utc>> = None;
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = ctx.stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        if !ctx.sweeper.is_bulk() {
            next = Instant::now() + period;
            continue;
        }
        // No watched registration has run as long as the fastest one seen so far took: a
        // sweep now would most likely re-read only what earlier sweeps delivered. Wait for
        // that, but never longer than [`MAX_SKIPPED_PERIODS`] periods after the last sweep (a
        // faster registration than any seen before is still noticed soon).
        let latest = last_sweep + period * MAX_SKIPPED_PERIODS;
        if let Some(due) = ctx.sweeper.first_possible_end()
            && due.min(latest) > Instant::now()
        {
            next = due.min(latest);
            continue;
        }
        let sweep_started = Instant::now();
        last_sweep = sweep_started;
        let full = !filter_works || last_full.elapsed() >= FULL_SWEEP_EVERY;
        let filter = (!full).then_some(since);
        match sweep_once(&ctx, filter, &mut newest_listed).await {
            Swept::Done(Some(next_since)) => {
                let overlap = chrono::Duration::from_std(SINCE_OVERLAP)
                    .unwrap_or_else(|_| chrono::Duration::zero());
                since = since.max(next_since - overlap);
            }
            Swept::Done(None) | Swept::Failed => {}
            // The server refuses the `updated_at` filter: list everything from now on.
            Swept::FilterRefused => filter_works = false,
            Swept::Stopped => return,
        }
        if full {
            last_full = Instant::now();
        }
        // Back to back when a sweep takes longer than the period (pages x query rate).
        next = sweep_started + period;
    }
}

enum Swept {
    /// Read to the end; where the next sweep may start (see [`sweep_once`]), if known.
    Done(Option<DateTime<Utc>>),
    /// A page failed after retries; the next sweep starts from the same `since`.
    Failed,
    /// The first page was refused (400) while filtering on `updated_at`.
    FilterRefused,
    Stopped,
}

/// One sweep. Incremental sweeps (`since` given) list only the images that ended lately:
/// `status=active` then `status=killed`, each filtered on `updated_at`; a full sweep lists
/// every private image once.
///
/// Where the next sweep may start: `newest_listed` as it stood once the first page of this
/// sweep arrived. Pages are not a snapshot, so an image that ends while the sweep pages on may
/// fall behind the marker; but `updated_at` has whole seconds and the server stamps no image
/// later than its clock, so an image ending after the first page was produced is stamped no
/// earlier than any stamp listed by then. Images that ended before it are on this sweep's
/// pages (both listings start no earlier than the first page).
async fn sweep_once<C: ImsApi>(
    ctx: &Ctx<C>,
    since: Option<DateTime<Utc>>,
    newest_listed: &mut Option<DateTime<Utc>>,
) -> Swept {
    let Some(since) = since else {
        return list_all(ctx, None, None, newest_listed).await;
    };
    let updated_at = format!("gte:{}", since.format("%Y-%m-%dT%H:%M:%SZ"));
    let mut next_since = None;
    for (listing, status) in [ImageStatus::Active, ImageStatus::Killed]
        .into_iter()
        .enumerate()
    {
        match list_all(ctx, Some(status), Some(updated_at.clone()), newest_listed).await {
            // Only the first listing's first page bounds what this sweep may have missed.
            Swept::Done(start) if listing == 0 => next_since = start,
            Swept::Done(_) => {}
            other => return other,
        }
    }
    Swept::Done(next_since)
}

/// Pages through one listing, handing final statuses to the followers and raising
/// `newest_listed`; `Done` carries `newest_listed` as of the first page.
async fn list_all<C: ImsApi>(
    ctx: &Ctx<C>,
    status: Option<ImageStatus>,
    updated_at: Option<String>,
    newest_listed: &mut Option<DateTime<Utc>>,
) -> Swept {
    let mut marker: Option<String> = None;
    let mut as_of_first_page = None;
    loop {
        let first_page = marker.is_none();
        let asked_at = Instant::now();
        let query = ListImagesQuery {
            imagetype: Some("private".into()),
            status: status.clone(),
            updated_at: updated_at.clone(),
            marker: marker.take(),
            limit: Some(PAGE_LIMIT),
            ..ListImagesQuery::default()
        };
        let page = match ctx
            .query(None, "listing image statuses", || {
                ctx.client.list_image_statuses(&query)
            })
            .await
        {
            Ok(page) => page,
            Err(QueryError::Stopped) => return Swept::Stopped,
            Err(QueryError::Failed(error))
                if first_page && updated_at.is_some() && error.http_status() == Some(400) =>
            {
                return Swept::FilterRefused;
            }
            Err(QueryError::Failed(_)) => return Swept::Failed,
        };
        tracing::trace!(
            status = ?query.status,
            updated_at = ?query.updated_at,
            images = page.images.len(),
            "sweep page"
        );
        for image in &page.images {
            *newest_listed = (*newest_listed).max(image.updated_at);
            ctx.sweeper.deliver(&image.id, &image.status, asked_at);
        }
        if first_page {
            as_of_first_page = *newest_listed;
        }
        match next_marker(&page) {
            Some(next) if ctx.sweeper.count.load(Ordering::Relaxed) > 0 => marker = Some(next),
            _ => return Swept::Done(as_of_first_page),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_statuses_are_delivered_once() {
        let sweeper = Sweeper::new();
        let mut watch = sweeper.watch("a", Instant::now());
        let _other = sweeper.watch("b", Instant::now());
        assert!(!sweeper.is_bulk());
        sweeper.deliver("a", &ImageStatus::Saving, Instant::now());
        sweeper.deliver("a", &ImageStatus::Queued, Instant::now());
        let mut receiver = watch.receiver.take().unwrap();
        assert!(receiver.try_recv().is_err());
        sweeper.deliver("a", &ImageStatus::Active, Instant::now());
        assert_eq!(receiver.try_recv().unwrap(), ImageStatus::Active);
        assert_eq!(sweeper.count.load(Ordering::Relaxed), 1);
        drop(watch);
        assert_eq!(sweeper.count.load(Ordering::Relaxed), 1, "b still watched");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_possible_end_follows_the_fastest_registration_seen() {
        let sweeper = Sweeper::new();
        let t0 = Instant::now();
        let _a = sweeper.watch("a", t0);
        assert_eq!(sweeper.first_possible_end(), None, "nothing ended yet");
        let _b = sweeper.watch("b", t0 + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(6)).await;
        let asked_at = t0 + Duration::from_secs(5);
        sweeper.deliver("b", &ImageStatus::Active, asked_at);
        // b was listed `active` 4 s after it started; a, the oldest watch, may end 4 s after
        // it started.
        assert_eq!(
            sweeper.first_possible_end(),
            Some(t0 + Duration::from_secs(4))
        );
        sweeper.deliver("a", &ImageStatus::Killed, asked_at);
        assert_eq!(sweeper.first_possible_end(), None, "nothing watched");
        let _c = sweeper.watch("c", Instant::now());
        assert_eq!(
            sweeper.first_possible_end(),
            Some(Instant::now() + Duration::from_secs(4))
        );
    }

    #[test]
    fn bulk_from_the_threshold() {
        let sweeper = Sweeper::new();
        let ids: Vec<String> = (0..BULK_THRESHOLD).map(|i| i.to_string()).collect();
        let mut watches: Vec<_> = ids
            .iter()
            .map(|id| sweeper.watch(id, Instant::now()))
            .collect();
        assert!(sweeper.is_bulk());
        watches.pop();
        assert!(!sweeper.is_bulk());
    }
}
