//! The IMS client: typed API calls, authentication (AK/SK signing or an IAM token), and an
//! error model that tells the pipeline whether to retry, check first, wait, or give up.
//!
//! The pipeline talks to IMS through the [`ImsApi`] trait, which [`client::Client`] implements
//! over HTTP; unit tests of the pipeline implement it in memory.

pub mod api;
pub mod auth;
pub mod client;
pub mod error;
pub mod paging;
pub mod signer;
pub mod types;

pub use api::ImsApi;
pub use auth::{Credentials, Discovered, Secret};
pub use client::{Client, ClientConfig, resolve_endpoint};
pub use error::{ApiError, ErrorClass, ImsError};
pub use types::{
    CreateImageMetadataRequest, ImageInfo, ImageQuota, ImageStatus, ImageStatusEntry,
    ImageStatusPage, Job, JobEntities, JobStatus, ListImagesQuery, ListImagesResponse, OsVersion,
};
