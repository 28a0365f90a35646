//! The OBS client the preflight uses: it reads, never writes, what OBS knows about a bucket
//! (region, default storage class) and an object (size, storage class, encryption, its first
//! and last bytes), signing every request with the OBS signature.
//!
//! [`signer`] is the pure signature (and the verifier a simulator checks requests with),
//! [`client::ObsClient`] the typed HTTP calls, [`error`] the classified failures. The
//! credentials are IMS's: an AK/SK pair with an optional security token (an IAM token cannot
//! sign OBS requests). docs/obs.md lists the OBS facts all this relies on.

pub mod client;
pub mod error;
pub mod signer;
pub mod types;

pub use client::{MAX_RANGE_BYTES, ObsClient, ObsClientConfig, resolve_endpoint};
pub use error::{ErrorClass, ObsApiError, ObsError};
pub use types::{BucketInfo, Encryption, ObjectInfo, RangeRead, StorageClass};
