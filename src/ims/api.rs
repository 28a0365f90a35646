//! The IMS calls the pipeline needs, as a trait: the HTTP client ([`super::client::Client`])
//! implements it, and so do the engine's in-memory test fakes.

use std::future::Future;

use crate::ids::{ImageId, JobId};

use super::error::ImsError;
use super::types::{
    CreateImageMetadataRequest, ImageInfo, ImageQuota, ImageStatusPage, Job, ListImagesQuery,
    ListImagesResponse, OsVersion,
};

/// The IMS calls the pipeline needs. Implemented by the HTTP client and by test fakes.
pub trait ImsApi: Send + Sync + 'static {
    /// `PUT /v1/cloudimages/{image_id}/upload`; answers the `job_id`. A 2xx answer that
    /// cannot be used (no job ID of the right shape, see [`JobId::parse`]) is
    /// [`ImsError::Ambiguous`]: the call was probably accepted.
    fn register_image(
        &self,
        image_id: &ImageId,
        image_url: &str,
    ) -> impl Future<Output = Result<JobId, ImsError>> + Send;

    /// `GET /v1/{project_id}/jobs/{job_id}`.
    fn show_job(&self, job_id: &JobId) -> impl Future<Output = Result<Job, ImsError>> + Send;

    /// `GET /v1/cloudimages/job/{job_id}`: the job plus `entities.process_percent`.
    fn show_job_progress(
        &self,
        job_id: &JobId,
    ) -> impl Future<Output = Result<Job, ImsError>> + Send;

    /// `GET /v2/cloudimages` with the given filter and paging.
    fn list_images(
        &self,
        query: &ListImagesQuery,
    ) -> impl Future<Output = Result<ListImagesResponse, ImsError>> + Send;

    /// `GET /v2/cloudimages` read leanly: each image's ID, status and `updated_at` only (what
    /// bulk status checks and sweeps need, at about half the decoding cost of `list_images`).
    fn list_image_statuses(
        &self,
        query: &ListImagesQuery,
    ) -> impl Future<Output = Result<ImageStatusPage, ImsError>> + Send;

    /// One image by ID through `GET /v2/cloudimages?id=...&__imagetype=private`;
    /// `None` when no such image is visible.
    fn get_image(
        &self,
        image_id: &ImageId,
    ) -> impl Future<Output = Result<Option<ImageInfo>, ImsError>> + Send;

    /// `POST /v2/images`: creates a private image's metadata (201, status `queued`), answered
    /// as the image. A 2xx answer that cannot be read is [`ImsError::Ambiguous`] (the image
    /// was probably created). Never retried by the implementation: a lost answer may have
    /// created the image, so the caller looks it up (by its identity tag) before any retry.
    fn create_image_metadata(
        &self,
        request: &CreateImageMetadataRequest,
    ) -> impl Future<Output = Result<ImageInfo, ImsError>> + Send;

    /// `GET /v2/cloudimages?__imagetype=private&tag=KEY=VALUE`, every page (marker paging):
    /// the private images carrying that tag.
    fn find_images_by_tag(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<ImageInfo>, ImsError>> + Send;

    /// Every private image that carries a tag with this key (all pages of
    /// `GET /v2/cloudimages?__imagetype=private`, filtered on `tags` here): the bulk form of
    /// [`ImsApi::find_images_by_tag`] for large manifests.
    fn list_images_tagged(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Vec<ImageInfo>, ImsError>> + Send;

    /// `GET /v1/cloudimages/os_version`: every OS version the region accepts, flattened from
    /// its platform list.
    fn list_os_versions(&self) -> impl Future<Output = Result<Vec<OsVersion>, ImsError>> + Send;

    /// `GET /v1/cloudimages/quota`: the `image` resource (private images used and allowed).
    fn image_quota(&self) -> impl Future<Output = Result<ImageQuota, ImsError>> + Send;

    /// `DELETE /v2/images/{image_id}` (204). 404 means already gone and is `Ok(())`.
    fn delete_image(&self, image_id: &ImageId)
    -> impl Future<Output = Result<(), ImsError>> + Send;
}
