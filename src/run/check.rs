//! The status check before any submission (the cloud is the source of truth), with as few
//! requests as possible.
//!
//! Up to [`PER_ID_THRESHOLD`] images: one `get_image` per image (concurrently, query lane).
//! More: page through the account's private images (`__imagetype=private`, `limit`
//! [`PAGE_LIMIT`](crate::ims::paging::PAGE_LIMIT), following `page_info.next_marker`, or the last ID of a full page when the
//! server sends no marker). An account may hold far more images than the manifest, so the
//! paging is abandoned for per-ID lookups of the images not seen yet as soon as the pages read
//! so far outnumber them: the check never costs more than about twice the cheaper of the two
//! strategies. An image not found by either is `absent`.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::ids::{ImageId, JobId};
use crate::ims::paging::{PAGE_LIMIT, next_marker};
use crate::ims::{ImageInfo, ImageStatus, ImsApi, ListImagesQuery};

use super::config::RunConfig;
use super::context::{Ctx, QueryError};
use super::events::{Api, EventSink, RunEvent};
use super::plan::{CloudStatus, PlannedImage, StatusMap};

/// At most this many images are checked one by one; more are checked through list pages.
pub const PER_ID_THRESHOLD: usize = 20;

/// Learns the cloud status of every image. Images left out of the map were not checked
/// because the run stopped (cancel or 401).
pub async fn check_statuses<C: ImsApi>(ctx: &Ctx<C>, images: &[PlannedImage]) -> StatusMap {
    let mut statuses = StatusMap::with_capacity(images.len());
    let ids: Vec<ImageId> = images.iter().map(|i| i.entry.image_id).collect();
    let unseen = if ids.len() <= PER_ID_THRESHOLD {
        ids
    } else {
        match list_pages(ctx, &ids, &mut statuses).await {
            Paging::Complete => {
                for id in ids {
                    statuses.entry(id).or_insert(CloudStatus::Absent);
                }
                Vec::new()
            }
            Paging::Abandoned => ids
                .into_iter()
                .filter(|id| !statuses.contains_key(id))
                .collect(),
            // IMS is not answering: one lookup per image would only say so once per image,
            // each after its own retries.
            Paging::Unanswered(error) => {
                for id in ids {
                    statuses.entry(id).or_insert_with(|| CloudStatus::Unknown {
                        code: error.code().map(str::to_string),
                        message: error.message_without_code(),
                    });
                }
                Vec::new()
            }
            Paging::Stopped => return statuses,
        }
    };
    per_id(ctx, unseen, &mut statuses).await;
    find_stale_jobs(ctx, images, &mut statuses).await;
    for image in images {
        if let Some(status) = statuses.get(&image.entry.image_id) {
            ctx.emit(RunEvent::StatusKnown {
                image_id: image.entry.image_id,
                status: status.clone(),
            });
        }
    }
    statuses
}

enum Paging {
    /// Every page was read: images not seen are absent.
    Complete,
    /// Reading on would cost more than looking the rest up one by one (or IMS refused a page).
    Abandoned,
    /// A page got no usable answer after the retries (IMS not reached, a server error, an
    /// answer that cannot be read).
    Unanswered(crate::ims::ImsError),
    Stopped,
}

async fn list_pages<C: ImsApi>(ctx: &Ctx<C>, ids: &[ImageId], statuses: &mut StatusMap) -> Paging {
    let wanted: HashSet<ImageId> = ids.iter().copied().collect();
    let mut unseen = wanted.len();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = ListImagesQuery {
            imagetype: Some("private".into()),
            marker: marker.take(),
            limit: Some(PAGE_LIMIT),
            ..ListImagesQuery::default()
        };
        let page = match ctx
            .query(Api::ListImages, None, "listing private images", || {
                ctx.client.list_image_statuses(&query)
            })
            .await
        {
            Ok(page) => page,
            Err(QueryError::Stopped) => return Paging::Stopped,
            Err(QueryError::Failed(error)) if !ims_answered(&error) => {
                return Paging::Unanswered(error);
            }
            Err(QueryError::Failed(_)) => return Paging::Abandoned,
        };
        pages += 1;
        let next = next_marker(&page);
        for image in page.images {
            // The account's other images need not have UUIDs; they are none of ours.
            let Ok(id) = ImageId::parse(&image.id) else {
                continue;
            };
            if wanted.contains(&id) && !statuses.contains_key(&id) {
                unseen -= 1;
                statuses.insert(id, CloudStatus::Found(image.status));
            }
        }
        match next {
            _ if unseen == 0 => return Paging::Complete,
            None => return Paging::Complete,
            Some(_) if pages >= unseen => return Paging::Abandoned,
            Some(next) => marker = Some(next),
        }
    }
}

/// Whether an error is an answer from IMS itself (a refusal with a client-error status), as
/// opposed to not reaching it, a server error or an unreadable answer.
fn ims_answered(error: &crate::ims::ImsError) -> bool {
    matches!(error.http_status(), Some(400..=499))
}

/// One image's status lookup. A named async fn over an owned ID: the compiler cannot prove an
/// `async move` closure over a borrowed ID `Send`, and the run's future must be (embedders
/// spawn it).
async fn lookup<C: ImsApi>(
    ctx: &Ctx<C>,
    id: ImageId,
) -> (ImageId, Result<Option<ImageInfo>, QueryError>) {
    let answer = ctx
        .query(Api::GetImage, Some(id), "checking the image status", || {
            ctx.client.get_image(&id)
        })
        .await;
    (id, answer)
}

async fn per_id<C: ImsApi>(ctx: &Ctx<C>, ids: Vec<ImageId>, statuses: &mut StatusMap) {
    let lookups = futures::stream::iter(ids)
        .map(|id| lookup(ctx, id))
        .buffer_unordered(ctx.config.concurrency.max(1) as usize);
    futures::pin_mut!(lookups);
    while let Some((id, answer)) = lookups.next().await {
        let status = match answer {
            Ok(Some(image)) => CloudStatus::Found(image.status),
            Ok(None) => CloudStatus::Absent,
            Err(QueryError::Stopped) => continue,
            Err(QueryError::Failed(error)) => CloudStatus::Unknown {
                code: error.code().map(str::to_string),
                message: error.message_without_code(),
            },
        };
        statuses.insert(id, status);
    }
}

/// Images that IMS shows `queued` although the journal knows a job for them: if IMS does not
/// know that job (a journal carried across accounts, regions or CI caches, or a job record IMS
/// expired), nothing is running for the image and it is to be submitted, in this run. A job IMS
/// still knows is followed as usual (it may have been accepted a moment ago). One `show_job`
/// per such image; there are none in a normal run.
async fn find_stale_jobs<C: ImsApi>(
    ctx: &Ctx<C>,
    images: &[PlannedImage],
    statuses: &mut StatusMap,
) {
    let suspects: Vec<(ImageId, JobId)> = images
        .iter()
        .filter_map(|image| {
            let job = image.known_job_id.as_ref()?;
            let id = image.entry.image_id;
            matches!(
                statuses.get(&id),
                Some(CloudStatus::Found(ImageStatus::Queued))
            )
            .then(|| (id, job.clone()))
        })
        .collect();
    let lookups = futures::stream::iter(suspects)
        .map(|(id, job)| job_lookup(ctx, id, job))
        .buffer_unordered(ctx.config.concurrency.max(1) as usize);
    futures::pin_mut!(lookups);
    while let Some((id, answer)) = lookups.next().await {
        if let Err(QueryError::Failed(error)) = answer
            && error.http_status() == Some(404)
        {
            statuses.insert(id, CloudStatus::QueuedWithoutJob);
        }
    }
}

/// One journaled job's lookup (a named async fn over owned IDs, as [`lookup`]).
async fn job_lookup<C: ImsApi>(
    ctx: &Ctx<C>,
    id: ImageId,
    job: JobId,
) -> (ImageId, Result<crate::ims::Job, QueryError>) {
    let answer = ctx
        .query(
            Api::ShowJob,
            Some(id),
            "checking a job known from the state journal",
            || ctx.client.show_job(&job),
        )
        .await;
    (id, answer)
}

/// The read-only status check alone, for `--dry-run`: learns every image's cloud status with
/// the engine's own requests and policy (list pages or per-ID lookups, query lane, rate limit,
/// retries) and sends nothing else. Images missing from the map were not checked because
/// `cancel` fired or the credentials were rejected (then [`CheckResult::auth_failed`] is set
/// and a [`RunEvent::AuthFailed`] was emitted).
pub async fn check_only<C: ImsApi>(
    client: Arc<C>,
    images: &[PlannedImage],
    config: &RunConfig,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> CheckResult {
    let ctx = Ctx::new(client, config, sink, cancel.child_token());
    ctx.emit(RunEvent::CheckingStatus {
        images: images.len(),
    });
    let statuses = check_statuses(&ctx, images).await;
    CheckResult {
        unreachable: super::plan::unreachable(&statuses, images.len()),
        statuses,
        auth_failed: ctx.auth_failed(),
    }
}

/// What [`check_only`] learned.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub statuses: StatusMap,
    /// A 401 stopped the check.
    pub auth_failed: bool,
    /// No image's status could be learned: IMS was not reached, or none of its answers could
    /// be understood.
    pub unreachable: bool,
}
