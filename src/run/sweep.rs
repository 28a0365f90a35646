//! Bulk polling: while many jobs are running, learn their images' statuses from list pages
//! instead of one query per job, so that polling costs grow sub-linearly with the jobs.
//!
//! Each followed image registers a watch. While at least
//! [`BULK_THRESHOLD`](super::watch::BULK_THRESHOLD) images are
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
//! followers wait for the sweeps (or the end of bulk mode, [`Sweeper::bulk_ended`](super::watch::Sweeper::bulk_ended)) without
//! waking on their own poll schedule.
//! `active` in a listing is itself the confirmation of a registration; a `killed` image costs
//! one `show_job` for the failure reason.
//!
//! Since `updated_at` has whole seconds, each sweep re-reads the images that ended in the
//! newest second (already delivered); with bursts of registrations ending together, most
//! sweeps between two bursts read nothing new. So while no watched image has run as long as
//! the fastest registration seen so far, sweeps pause (at most [`MAX_SKIPPED_PERIODS`]
//! periods).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::ImageId;
use crate::ims::paging::{PAGE_LIMIT, next_marker};
use crate::ims::{ImageStatus, ImsApi, ListImagesQuery};

use super::context::{Ctx, QueryError};
use super::events::Api;

/// How far behind the newest `updated_at` seen the next sweep starts. Zero: the filter is
/// `gte` on whole seconds, so the newest second is read again anyway; an image stamped
/// earlier but listed late is caught by the next full sweep.
pub const SINCE_OVERLAP: Duration = Duration::ZERO;
/// How far back the first sweep looks.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// While no watched registration is expected to have ended, sweeps pause for at most this
/// many poll intervals.
pub const MAX_SKIPPED_PERIODS: u32 = 4;
/// At the run's end, sweeps come this many times per poll interval (see [`run_sweeps`]).
pub const TAIL_DIVISOR: u32 = 4;
/// A sweep without the `updated_at` filter at least this often.
pub const FULL_SWEEP_EVERY: Duration = Duration::from_secs(300);

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
        // Back to back when a sweep takes longer than the period (pages x query rate). At the
        // run's end (nothing left to submit, and every watched registration could have ended
        // by now, judging by the fastest seen) a fraction of the period, so that the last
        // jobs' end is noticed soon, for a few more small list requests in the whole run.
        let tail = ctx.unsubmitted.load(std::sync::atomic::Ordering::Relaxed) == 0
            && ctx
                .sweeper
                .last_possible_end()
                .is_some_and(|end| end <= Instant::now() + period / TAIL_DIVISOR);
        next = sweep_started + if tail { period / TAIL_DIVISOR } else { period };
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
            .query(Api::ListImages, None, "listing image statuses", || {
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
            // Entries that are no UUID are no image of ours (and none is watched).
            if let Ok(id) = ImageId::parse(&image.id) {
                ctx.sweeper.deliver(&id, &image.status, asked_at);
            }
        }
        if first_page {
            as_of_first_page = *newest_listed;
        }
        match next_marker(&page) {
            Some(next) if ctx.sweeper.watched() > 0 => marker = Some(next),
            _ => return Swept::Done(as_of_first_page),
        }
    }
}
