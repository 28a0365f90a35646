//! What OBS answers about a bucket and an object, read from the response headers the
//! preflight cares about (docs/obs.md §3): region, storage class, size, encryption, and the
//! bytes of a ranged GET.

use std::fmt;

/// A bucket's default or an object's storage class.
///
/// OBS sends `x-obs-storage-class` on an object only when it is *not* Standard, so an absent
/// header means Standard; a bucket always carries its default class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageClass {
    Standard,
    /// `WARM`: infrequent access.
    Warm,
    /// `COLD`: archive; must be restored before it can be read.
    Cold,
    DeepArchive,
    /// Any other value, as sent (e.g. `INTELLIGENT_TIERING`).
    Other(String),
}

impl StorageClass {
    /// From the `x-obs-storage-class` header (absent or empty means Standard).
    pub fn from_header(value: Option<&str>) -> Self {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return StorageClass::Standard;
        };
        match value.to_ascii_uppercase().as_str() {
            "STANDARD" => StorageClass::Standard,
            "WARM" => StorageClass::Warm,
            "COLD" => StorageClass::Cold,
            "DEEP_ARCHIVE" => StorageClass::DeepArchive,
            _ => StorageClass::Other(value.to_string()),
        }
    }

    pub fn is_standard(&self) -> bool {
        *self == StorageClass::Standard
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::Warm => "WARM",
            StorageClass::Cold => "COLD",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
            StorageClass::Other(value) => value,
        })
    }
}

/// How an object is encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    None,
    /// SSE-KMS (`x-obs-server-side-encryption: kms`), which IMS accepts.
    Kms {
        key_id: Option<String>,
    },
    /// SSE-OBS (`x-obs-server-side-encryption: AES256`): not on IMS's list (unconfirmed).
    ObsManaged,
    /// SSE-C (`x-obs-server-side-encryption-customer-algorithm`): IMS cannot read it.
    CustomerKey {
        algorithm: String,
    },
    /// Another `x-obs-server-side-encryption` value, as sent.
    Other(String),
}

impl Encryption {
    /// From the three encryption headers of a HEAD answer.
    pub fn from_headers(
        sse: Option<&str>,
        kms_key_id: Option<&str>,
        customer_algorithm: Option<&str>,
    ) -> Self {
        fn present(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        if let Some(algorithm) = present(customer_algorithm) {
            return Encryption::CustomerKey {
                algorithm: algorithm.to_string(),
            };
        }
        match present(sse) {
            None => Encryption::None,
            Some(v) if v.eq_ignore_ascii_case("kms") => Encryption::Kms {
                key_id: present(kms_key_id).map(str::to_string),
            },
            Some(v) if v.eq_ignore_ascii_case("AES256") => Encryption::ObsManaged,
            Some(v) => Encryption::Other(v.to_string()),
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::None => f.write_str("none"),
            Encryption::Kms { .. } => f.write_str("SSE-KMS"),
            Encryption::ObsManaged => f.write_str("SSE-OBS (AES256)"),
            Encryption::CustomerKey { algorithm } => write!(f, "SSE-C ({algorithm})"),
            Encryption::Other(value) => write!(f, "server-side encryption {value:?}"),
        }
    }
}

/// HEAD Bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// `x-obs-bucket-location`: the region the bucket lives in.
    pub location: Option<String>,
    /// `x-obs-storage-class`: the default class of new objects.
    pub storage_class: StorageClass,
    /// `x-obs-fs-file-interface: Enabled` (a parallel file system).
    pub file_interface: bool,
    pub request_id: Option<String>,
}

/// HEAD Object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `Content-Length`.
    pub size: u64,
    pub storage_class: StorageClass,
    pub encryption: Encryption,
    /// `x-obs-restore` of a Cold object being or already restored.
    pub restore: Option<String>,
    /// `x-obs-object-type` (only sent when not Normal, e.g. `Appendable`).
    pub object_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub version_id: Option<String>,
    /// `x-obs-expiration` (a lifecycle rule will delete the object).
    pub expiration: Option<String>,
    pub request_id: Option<String>,
}

/// A slice of an object from a ranged GET (206).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    /// Offset of the first byte.
    pub first: u64,
    /// Offset of the last byte (OBS cuts an end past the object to its last byte).
    pub last: u64,
    /// The whole object's size, from `Content-Range`.
    pub total: u64,
    pub bytes: Vec<u8>,
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_class_absent_means_standard() {
        assert_eq!(StorageClass::from_header(None), StorageClass::Standard);
        assert_eq!(StorageClass::from_header(Some(" ")), StorageClass::Standard);
        assert_eq!(
            StorageClass::from_header(Some("STANDARD")),
            StorageClass::Standard
        );
        assert_eq!(StorageClass::from_header(Some("COLD")), StorageClass::Cold);
        assert_eq!(StorageClass::from_header(Some("warm")), StorageClass::Warm);
        assert_eq!(
            StorageClass::from_header(Some("DEEP_ARCHIVE")),
            StorageClass::DeepArchive
        );
        let other = StorageClass::from_header(Some("INTELLIGENT_TIERING"));
        assert!(!other.is_standard());
        assert_eq!(other.to_string(), "INTELLIGENT_TIERING");
    }

    #[test]
    fn encryption_kinds() {
        assert_eq!(Encryption::from_headers(None, None, None), Encryption::None);
        assert_eq!(
            Encryption::from_headers(Some("kms"), Some("key-1"), None),
            Encryption::Kms {
                key_id: Some("key-1".into())
            }
        );
        assert_eq!(
            Encryption::from_headers(Some("AES256"), None, None),
            Encryption::ObsManaged
        );
        // SSE-C wins whatever else is sent.
        assert_eq!(
            Encryption::from_headers(Some("AES256"), None, Some("AES256")),
            Encryption::CustomerKey {
                algorithm: "AES256".into()
            }
        );
        assert_eq!(
            Encryption::from_headers(Some("sm4"), None, None),
            Encryption::Other("sm4".into())
        );
    }
}
