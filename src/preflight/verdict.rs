//! The preflight's judgement of one manifest entry from what OBS answered about its bucket and
//! object: every rule IMS would otherwise fail the registration on, minutes to hours later.
//!
//! Pure: the answers come in (as the OBS client returned them, errors included), the
//! [`Finding`]s go out. A finding is an error (the entry will not be submitted) or a warning;
//! each message names the object and says how to fix it. The rules and their sources are in
//! docs/obs.md §5.

use std::fmt;

use super::format::{Detected, VhdType};
use crate::manifest::{ImageEntry, ImageFormat, ImageUrl, Severity};
use crate::obs::{
    BucketInfo, Encryption, ErrorClass, ObjectInfo, ObsError, RangeRead, StorageClass,
};

/// IMS refuses to register a file larger than this (IMG.0059, "128 GB"), read as GiB.
pub const MAX_IMAGE_BYTES: u64 = 128 << 30;

/// "128 GB" read as 10^9 bytes: above this (and within [`MAX_IMAGE_BYTES`]) a warning, since
/// which unit IMS means is unconfirmed.
pub const DECIMAL_128_GB: u64 = 128_000_000_000;

/// Which rule a finding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Bucket,
    Region,
    BucketStorageClass,
    Object,
    StorageClass,
    Size,
    Encryption,
    Format,
    /// OBS could not be asked (network, 5xx after retries, credentials): nothing is known.
    Unverified,
}

impl Check {
    /// `storage_class`, `format`, ...: for JSON and report codes.
    pub fn name(self) -> &'static str {
        match self {
            Check::Bucket => "bucket",
            Check::Region => "region",
            Check::BucketStorageClass => "bucket_storage_class",
            Check::Object => "object",
            Check::StorageClass => "storage_class",
            Check::Size => "size",
            Check::Encryption => "encryption",
            Check::Format => "format",
            Check::Unverified => "unverified",
        }
    }

    /// The report's `error_code` of an entry this check failed: `PREFLIGHT.STORAGE_CLASS`.
    pub fn code(self) -> String {
        format!("PREFLIGHT.{}", self.name().to_ascii_uppercase())
    }
}

/// One problem found with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub check: Check,
    /// The IMS error code this pre-empts, when there is one.
    pub ims_code: Option<&'static str>,
    pub message: String,
}

impl Finding {
    fn error(check: Check, ims_code: Option<&'static str>, message: String) -> Self {
        Self {
            severity: Severity::Error,
            check,
            ims_code,
            message,
        }
    }

    fn warning(check: Check, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            check,
            ims_code: None,
            message,
        }
    }
}

/// What OBS answered for one entry. `None` means not asked (e.g. no object HEAD when the
/// bucket is missing, no tail read when the head already identified the format).
#[derive(Debug, Clone)]
pub struct Answers {
    pub bucket: Result<BucketInfo, ObsError>,
    pub object: Option<Result<ObjectInfo, ObsError>>,
    pub head: Option<Result<RangeRead, ObsError>>,
    pub tail: Option<Result<RangeRead, ObsError>>,
}

/// The judgement of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryVerdict {
    /// The entry's manifest line.
    pub line: usize,
    pub image_id: String,
    pub image_url: ImageUrl,
    /// The object's size, when HEAD answered (for size-aware scheduling).
    pub size_bytes: Option<u64>,
    /// What the bytes are, when they were read.
    pub detected: Option<Detected>,
    pub findings: Vec<Finding>,
}

impl EntryVerdict {
    /// No error: the entry may be submitted (warnings allowed).
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// Why the entry failed, for the report: the first error's code and every error's
    /// message (`None` when it passed).
    pub fn failure(&self) -> Option<(String, String)> {
        let first = self.errors().next()?;
        let message = self
            .errors()
            .map(|f| match f.ims_code {
                Some(code) => format!("{} [{code}]", f.message),
                None => f.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Some((first.check.code(), message))
    }
}

/// Judges one entry. `ims_region` is the region IMS registers in; `None` skips the region
/// check (the caller warns once for the run).
pub fn judge(entry: &ImageEntry, ims_region: Option<&str>, answers: &Answers) -> EntryVerdict {
    let url = &entry.image_url;
    let mut findings = check_bucket(url, ims_region, &answers.bucket);
    let bucket_found = answers.bucket.is_ok();
    let mut size_bytes = None;
    if let Some(object) = &answers.object {
        findings.extend(check_object(url, object, bucket_found));
        size_bytes = object.as_ref().ok().map(|info| info.size);
    }
    let mut detected = None;
    if let Some(head) = &answers.head {
        match head {
            Ok(head) => {
                if let Some(size) = size_bytes.filter(|&size| size != head.total) {
                    findings.push(Finding::warning(
                        Check::Object,
                        format!(
                            "{url} changed while it was checked (HEAD said {size} bytes, the \
                             read {}): check that nothing is still writing it",
                            head.total
                        ),
                    ));
                }
                let tail = match &answers.tail {
                    Some(Ok(tail)) => Some(tail.bytes.as_slice()),
                    Some(Err(err)) => {
                        findings.push(read_failed(url, "last bytes", err));
                        None
                    }
                    None => None,
                };
                let found = super::format::detect(&head.bytes, tail);
                findings.extend(check_format(url, entry.format, &found));
                detected = Some(found);
            }
            Err(err) => findings.push(read_failed(url, "first bytes", err)),
        }
    }
    EntryVerdict {
        line: entry.line,
        image_id: entry.image_id.to_string(),
        image_url: url.clone(),
        size_bytes,
        detected,
        findings,
    }
}

/// True when the error is OBS's answer about this bucket or object (missing, denied, an
/// unreadable range), false when OBS could not be asked properly at all (network, 5xx after
/// retries, our signature or clock): then nothing is known about the entry, and the caller
/// decides whether the whole preflight can go on.
pub fn is_about_the_entry(err: &ObsError) -> bool {
    match err {
        ObsError::Api { .. } => err.class() == ErrorClass::Final,
        ObsError::RangeRefused { .. } => true,
        _ => false,
    }
}

/// The bucket exists, is in the IMS region, and its default class is Standard.
pub fn check_bucket(
    url: &ImageUrl,
    ims_region: Option<&str>,
    answer: &Result<BucketInfo, ObsError>,
) -> Vec<Finding> {
    let bucket = &url.bucket;
    let info = match answer {
        Ok(info) => info,
        Err(err) if err.is_not_found() => {
            let region = ims_region.map_or(String::new(), |r| format!(" in region {r}"));
            return vec![Finding::error(
                Check::Bucket,
                Some("IMG.0058"),
                format!(
                    "bucket {bucket} (of {url}) does not exist{region}: OBS answers \
                     NoSuchBucket also for a bucket of another region; check the bucket name \
                     in image_url and the region"
                ),
            )];
        }
        Err(err) if err.is_access_denied() => {
            return vec![denied(url, &format!("bucket {bucket}"), err)];
        }
        Err(err) => return vec![unverified(url, err)],
    };
    let mut findings = Vec::new();
    match (ims_region, info.location.as_deref()) {
        (Some(region), Some(location)) if !location.eq_ignore_ascii_case(region) => {
            findings.push(Finding::error(
                Check::Region,
                Some("IMG.0058"),
                format!(
                    "bucket {bucket} (of {url}) is in region {location}, but the images are \
                     registered in {region} (IMS refuses with IMG.0058): copy the object to a \
                     bucket in {region}, or register in {location}"
                ),
            ));
        }
        (Some(region), None) => findings.push(Finding::warning(
            Check::Region,
            format!(
                "OBS did not say which region bucket {bucket} (of {url}) is in, so whether it \
                 is in {region} was not checked"
            ),
        )),
        _ => {}
    }
    if !info.storage_class.is_standard() {
        findings.push(Finding::error(
            Check::BucketStorageClass,
            None,
            format!(
                "bucket {bucket} (of {url}) has the default storage class {}, and IMS registers \
                 only from Standard buckets: set the bucket's default storage class to Standard, \
                 or copy the object to a Standard bucket",
                info.storage_class
            ),
        ));
    }
    findings
}

/// The object exists, is Standard, 0 < size <= 128 GiB, and is unencrypted or SSE-KMS.
/// `bucket_found`: when the bucket check already failed, a missing object says nothing new.
pub fn check_object(
    url: &ImageUrl,
    answer: &Result<ObjectInfo, ObsError>,
    bucket_found: bool,
) -> Vec<Finding> {
    let info = match answer {
        Ok(info) => info,
        Err(err) if err.is_no_such_bucket() || (err.is_not_found() && !bucket_found) => {
            return Vec::new();
        }
        Err(err) if err.is_not_found() => {
            return vec![Finding::error(
                Check::Object,
                Some("IMG.0057"),
                format!(
                    "{url} does not exist (NoSuchKey): check the object name in image_url \
                     (keys are case-sensitive, folders are part of the key) or upload the file"
                ),
            )];
        }
        Err(err) if err.is_access_denied() => return vec![denied(url, "object", err)],
        Err(err) => return vec![unverified(url, err)],
    };
    let mut findings = Vec::new();
    if !info.storage_class.is_standard() {
        let restored = if info.restore.is_some() {
            " (a restored copy is still not Standard)"
        } else {
            ""
        };
        let how = match info.storage_class {
            StorageClass::Cold | StorageClass::DeepArchive => {
                "restore it, then change its storage class to Standard (or copy it as Standard)"
            }
            _ => "change its storage class to Standard (or copy it as Standard)",
        };
        findings.push(Finding::error(
            Check::StorageClass,
            None,
            format!(
                "{url} has the storage class {}{restored}; IMS reads only Standard objects: {how}",
                info.storage_class
            ),
        ));
    }
    if info.size == 0 {
        findings.push(Finding::error(
            Check::Size,
            Some("IMG.0057"),
            format!("{url} is empty (0 bytes): upload the image file again"),
        ));
    } else if info.size > MAX_IMAGE_BYTES {
        findings.push(Finding::error(
            Check::Size,
            Some("IMG.0059"),
            format!(
                "{url} is {} and IMS registers files of at most 128 GiB (IMG.0059): convert it \
                 to a compact format (qcow2, zvhd2) or shrink the disk",
                human_size(info.size)
            ),
        ));
    } else if info.size > DECIMAL_128_GB {
        findings.push(Finding::warning(
            Check::Size,
            format!(
                "{url} is {}: above 128 GB (10^9 bytes) but within 128 GiB; IMS's limit is \
                 \"128 GB\" and which unit it means is unconfirmed (IMG.0059 if it is 10^9)",
                human_size(info.size)
            ),
        ));
    }
    match &info.encryption {
        Encryption::None | Encryption::Kms { .. } => {}
        Encryption::CustomerKey { .. } => findings.push(Finding::error(
            Check::Encryption,
            None,
            format!(
                "{url} is encrypted with a customer-provided key (SSE-C), which IMS cannot \
                 read: upload it unencrypted or with SSE-KMS"
            ),
        )),
        Encryption::ObsManaged => findings.push(Finding::warning(
            Check::Encryption,
            format!(
                "{url} is encrypted with SSE-OBS (AES256); IMS documents only unencrypted and \
                 SSE-KMS files: if the registration fails, upload it unencrypted or with SSE-KMS"
            ),
        )),
        Encryption::Other(value) => findings.push(Finding::warning(
            Check::Encryption,
            format!(
                "{url} has server-side encryption {value:?}, which imsreg does not know; IMS \
                 documents only unencrypted and SSE-KMS files"
            ),
        )),
    }
    if info
        .object_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("Appendable"))
    {
        findings.push(Finding::warning(
            Check::Object,
            format!("{url} is an appendable object and may still be growing"),
        ));
    }
    findings
}

/// The bytes are the format the manifest declares; unrecognised bytes pass only as raw.
pub fn check_format(url: &ImageUrl, declared: ImageFormat, detected: &Detected) -> Vec<Finding> {
    let error = |message| vec![Finding::error(Check::Format, Some("IMG.0057"), message)];
    match (detected.format(), detected) {
        (_, Detected::VmdkDescriptor { .. }) => error(format!(
            "{url} is {detected}: IMS needs the whole disk in one file; convert it, e.g. \
             `qemu-img convert -O vmdk -o subformat=streamOptimized`, or upload the flat extent \
             as raw"
        )),
        (
            _,
            Detected::Vhd {
                disk_type: VhdType::Differencing,
            },
        ) => error(format!(
            "{url} is a differencing vhd, which needs its parent image: merge it into a \
             standalone image first (e.g. `qemu-img convert -O vpc`)"
        )),
        (Some(found), _) if found == declared => Vec::new(),
        (Some(found), _) => error(format!(
            "{url} is {found}, the manifest says {declared} ({detected} found in its first \
             bytes): set `format: {found}` on the entry, or upload the right file"
        )),
        (None, _) if declared == ImageFormat::Raw => Vec::new(),
        (None, _) => error(format!(
            "{url} is not {declared}: no known image format in its first and last bytes; if it \
             is a raw disk, set `format: raw` on the entry, otherwise the file is damaged or not \
             a disk image"
        )),
    }
}

fn read_failed(url: &ImageUrl, what: &str, err: &ObsError) -> Finding {
    if err.code() == Some("InvalidObjectState") {
        return Finding::error(
            Check::StorageClass,
            None,
            format!(
                "{url} cannot be read (InvalidObjectState: archived and not restored): restore \
                 it and change its storage class to Standard"
            ),
        );
    }
    if err.is_access_denied() {
        return denied(url, "object", err);
    }
    if !is_about_the_entry(err) {
        return unverified(url, err);
    }
    Finding::error(
        Check::Format,
        None,
        format!("reading the {what} of {url} to check its format failed: {err}"),
    )
}

fn denied(url: &ImageUrl, what: &str, err: &ObsError) -> Finding {
    let request_id = err
        .api()
        .and_then(|api| api.request_id.as_deref())
        .map_or(String::new(), |id| format!(", request id {id}"));
    Finding::error(
        Check::Object,
        Some("IMG.0057"),
        format!(
            "no permission to read the {what} of {url} (403 AccessDenied{request_id}); IMS \
             reads it with your own OBS permissions: grant the user read access to the bucket \
             and object (obs:bucket:HeadBucket, obs:object:GetObject)"
        ),
    )
}

fn unverified(url: &ImageUrl, err: &ObsError) -> Finding {
    Finding::error(
        Check::Unverified,
        None,
        format!("{url} could not be checked: {err}"),
    )
}

/// `137438953472 bytes (128.0 GiB)`.
fn human_size(bytes: u64) -> String {
    format!(
        "{bytes} bytes ({:.1} GiB)",
        bytes as f64 / (1u64 << 30) as f64
    )
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}", self.message)?;
        if let Some(code) = self.ims_code {
            write!(f, " [{code}]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::ObsApiError;

    fn url() -> ImageUrl {
        ImageUrl {
            bucket: "images".into(),
            object: "centos/7.qcow2".into(),
        }
    }

    fn entry(format: ImageFormat) -> ImageEntry {
        ImageEntry {
            image_id: "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86".parse().unwrap(),
            image_url: url(),
            name: None,
            format,
            line: 7,
        }
    }

    fn api(status: u16, code: Option<&str>) -> ObsError {
        ObsError::Api {
            operation: "HeadObject images:centos/7.qcow2".into(),
            error: ObsApiError {
                status,
                code: code.map(str::to_string),
                message: None,
                request_id: Some("req-9".into()),
                retry_after: None,
            },
        }
    }

    fn bucket(location: &str, class: StorageClass) -> BucketInfo {
        BucketInfo {
            location: Some(location.into()),
            storage_class: class,
            file_interface: false,
            request_id: None,
        }
    }

    fn object(size: u64) -> ObjectInfo {
        ObjectInfo {
            size,
            storage_class: StorageClass::Standard,
            encryption: Encryption::None,
            restore: None,
            object_type: None,
            etag: None,
            last_modified: None,
            version_id: None,
            expiration: None,
            request_id: None,
        }
    }

    fn errors(findings: &[Finding]) -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect()
    }

    const REGION: Option<&str> = Some("ap-southeast-1");

    #[test]
    fn bucket_in_the_region_and_standard_passes() {
        let ok = bucket("ap-southeast-1", StorageClass::Standard);
        assert!(check_bucket(&url(), REGION, &Ok(ok.clone())).is_empty());
        // Without a known IMS region there is nothing to compare.
        assert!(check_bucket(&url(), None, &Ok(ok)).is_empty());
    }

    #[test]
    fn bucket_in_another_region_fails_with_img_0058() {
        let far = bucket("eu-west-101", StorageClass::Standard);
        let found = check_bucket(&url(), REGION, &Ok(far));
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].check, found[0].ims_code),
            (Check::Region, Some("IMG.0058"))
        );
        let text = &found[0].message;
        assert!(
            text.contains("images:centos/7.qcow2")
                && text.contains("eu-west-101")
                && text.contains("copy the object"),
            "{text}"
        );
        // An unknown location is only a warning.
        let mut unknown = bucket("x", StorageClass::Standard);
        unknown.location = None;
        let found = check_bucket(&url(), REGION, &Ok(unknown));
        assert_eq!(found[0].severity, Severity::Warning);
    }

    #[test]
    fn bucket_missing_denied_or_not_standard() {
        let missing = check_bucket(&url(), REGION, &Err(api(404, Some("NoSuchBucket"))));
        assert_eq!(missing[0].check, Check::Bucket);
        assert!(
            missing[0]
                .message
                .contains("does not exist in region ap-southeast-1")
        );

        let denied = check_bucket(&url(), REGION, &Err(api(403, Some("AccessDenied"))));
        assert_eq!(denied[0].severity, Severity::Error);
        assert!(
            denied[0].message.contains("403") && denied[0].message.contains("req-9"),
            "{}",
            denied[0].message
        );

        let warm = check_bucket(
            &url(),
            REGION,
            &Ok(bucket("ap-southeast-1", StorageClass::Warm)),
        );
        assert_eq!(warm[0].check, Check::BucketStorageClass);
        assert!(warm[0].message.contains("WARM") && warm[0].message.contains("Standard"));

        let unreachable = check_bucket(
            &url(),
            REGION,
            &Err(ObsError::NotSent {
                endpoint: "https://obs".into(),
                detail: "refused".into(),
            }),
        );
        assert_eq!(unreachable[0].check, Check::Unverified);
    }

    #[test]
    fn object_missing_is_told_from_bucket_missing() {
        let missing = check_object(&url(), &Err(api(404, Some("NoSuchKey"))), true);
        assert_eq!(
            (missing[0].check, missing[0].ims_code),
            (Check::Object, Some("IMG.0057"))
        );
        assert!(missing[0].message.contains("NoSuchKey"));
        // The bucket check already reported the missing bucket.
        assert!(check_object(&url(), &Err(api(404, Some("NoSuchBucket"))), true).is_empty());
        assert!(check_object(&url(), &Err(api(404, None)), false).is_empty());
        let denied = check_object(&url(), &Err(api(403, Some("AccessDenied"))), true);
        assert_eq!(errors(&denied).len(), 1);
    }

    #[test]
    fn object_storage_class_must_be_standard() {
        let mut cold = object(1 << 30);
        cold.storage_class = StorageClass::Cold;
        cold.restore = Some("ongoing-request=\"false\"".into());
        let found = check_object(&url(), &Ok(cold), true);
        assert_eq!(found[0].check, Check::StorageClass);
        assert!(
            found[0].message.contains("COLD")
                && found[0].message.contains("restore it")
                && found[0].message.contains("restored copy"),
            "{}",
            found[0].message
        );
        assert!(check_object(&url(), &Ok(object(1 << 30)), true).is_empty());
    }

    #[test]
    fn sizes() {
        let empty = check_object(&url(), &Ok(object(0)), true);
        assert_eq!(
            (empty[0].check, empty[0].ims_code),
            (Check::Size, Some("IMG.0057"))
        );
        assert!(check_object(&url(), &Ok(object(1)), true).is_empty());
        assert!(check_object(&url(), &Ok(object(DECIMAL_128_GB)), true).is_empty());
        let between = check_object(&url(), &Ok(object(DECIMAL_128_GB + 1)), true);
        assert_eq!(between[0].severity, Severity::Warning);
        let limit = check_object(&url(), &Ok(object(MAX_IMAGE_BYTES)), true);
        assert_eq!(limit[0].severity, Severity::Warning);
        let over = check_object(&url(), &Ok(object(MAX_IMAGE_BYTES + 1)), true);
        assert_eq!(
            (over[0].severity, over[0].ims_code),
            (Severity::Error, Some("IMG.0059"))
        );
        assert!(over[0].message.contains("137438953473 bytes (128.0 GiB)"));
    }

    #[test]
    fn encryption() {
        let with = |encryption| {
            let mut info = object(1 << 20);
            info.encryption = encryption;
            check_object(&url(), &Ok(info), true)
        };
        assert!(with(Encryption::Kms { key_id: None }).is_empty());
        let ssec = with(Encryption::CustomerKey {
            algorithm: "AES256".into(),
        });
        assert_eq!(
            (ssec[0].severity, ssec[0].check),
            (Severity::Error, Check::Encryption)
        );
        let sse_obs = with(Encryption::ObsManaged);
        assert_eq!(sse_obs[0].severity, Severity::Warning);
        assert!(sse_obs[0].message.contains("unencrypted or with SSE-KMS"));
        assert_eq!(
            with(Encryption::Other("sm4".into()))[0].severity,
            Severity::Warning
        );
    }

    #[test]
    fn formats() {
        let qcow2 = Detected::Qcow2 { version: 3 };
        assert!(check_format(&url(), ImageFormat::Qcow2, &qcow2).is_empty());
        let vmdk = Detected::VmdkSparse {
            version: 3,
            create_type: Some("streamOptimized".into()),
        };
        let mismatch = check_format(&url(), ImageFormat::Qcow2, &vmdk);
        assert!(
            mismatch[0]
                .message
                .contains("is vmdk, the manifest says qcow2")
                && mismatch[0].message.contains("format: vmdk"),
            "{}",
            mismatch[0].message
        );
        // Unrecognised bytes pass only when declared raw.
        assert!(check_format(&url(), ImageFormat::Raw, &Detected::Unrecognised).is_empty());
        let unknown = check_format(&url(), ImageFormat::Qcow2, &Detected::Unrecognised);
        assert!(unknown[0].message.contains("format: raw"));
        // A known format declared raw is a mismatch too.
        let iso = check_format(&url(), ImageFormat::Raw, &Detected::Iso);
        assert!(iso[0].message.contains("is iso, the manifest says raw"));
        let fixed = Detected::Vhd {
            disk_type: VhdType::Fixed,
        };
        assert!(check_format(&url(), ImageFormat::Vhd, &fixed).is_empty());
        let differencing = Detected::Vhd {
            disk_type: VhdType::Differencing,
        };
        assert_eq!(
            check_format(&url(), ImageFormat::Vhd, &differencing).len(),
            1
        );
        let descriptor = Detected::VmdkDescriptor {
            create_type: Some("monolithicFlat".into()),
        };
        assert!(
            check_format(&url(), ImageFormat::Vmdk, &descriptor)[0]
                .message
                .contains("monolithicFlat")
        );
    }

    fn read(bytes: &[u8], total: u64) -> RangeRead {
        RangeRead {
            first: 0,
            last: bytes.len() as u64 - 1,
            total,
            bytes: bytes.to_vec(),
            request_id: None,
        }
    }

    #[test]
    fn judge_combines_the_rules_and_reports_the_size() {
        let vmdk_head = b"KDMV\x03\0\0\0".to_vec();
        let answers = Answers {
            bucket: Ok(bucket("ap-southeast-1", StorageClass::Standard)),
            object: Some(Ok(object(8))),
            head: Some(Ok(read(&vmdk_head, 8))),
            tail: None,
        };
        let verdict = judge(&entry(ImageFormat::Qcow2), REGION, &answers);
        assert_eq!((verdict.line, verdict.size_bytes), (7, Some(8)));
        assert!(!verdict.passed());
        assert_eq!(verdict.findings.len(), 1);
        assert!(
            verdict.findings[0]
                .to_string()
                .starts_with("error: images:centos/7.qcow2 is vmdk")
        );

        let raw = Answers {
            bucket: Ok(bucket("ap-southeast-1", StorageClass::Standard)),
            object: Some(Ok(object(1024))),
            head: Some(Ok(read(&[0u8; 1024], 1024))),
            tail: Some(Ok(read(&[0u8; 512], 1024))),
        };
        let verdict = judge(&entry(ImageFormat::Raw), REGION, &raw);
        assert!(verdict.passed(), "{:?}", verdict.findings);
        assert_eq!(verdict.detected, Some(Detected::Unrecognised));

        // The fixed VHD's footer in the tail makes it a vhd.
        let mut footer = vec![0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        footer[60..64].copy_from_slice(&2u32.to_be_bytes());
        let fixed = Answers {
            tail: Some(Ok(read(&footer, 1024))),
            ..raw.clone()
        };
        assert!(judge(&entry(ImageFormat::Vhd), REGION, &fixed).passed());
        assert!(!judge(&entry(ImageFormat::Raw), REGION, &fixed).passed());

        // A size that changed between HEAD and the read is a warning.
        let changed = Answers {
            head: Some(Ok(read(&[0u8; 1024], 2048))),
            ..raw
        };
        let verdict = judge(&entry(ImageFormat::Raw), REGION, &changed);
        assert!(verdict.passed());
        assert!(
            verdict.findings[0]
                .message
                .contains("changed while it was checked")
        );
    }

    #[test]
    fn judge_of_missing_or_unreadable_objects() {
        let missing_bucket = Answers {
            bucket: Err(api(404, Some("NoSuchBucket"))),
            object: None,
            head: None,
            tail: None,
        };
        let verdict = judge(&entry(ImageFormat::Qcow2), REGION, &missing_bucket);
        assert_eq!(verdict.findings.len(), 1);
        assert_eq!(verdict.size_bytes, None);

        let archived = Answers {
            bucket: Ok(bucket("ap-southeast-1", StorageClass::Standard)),
            object: Some(Ok(object(1 << 20))),
            head: Some(Err(api(403, Some("InvalidObjectState")))),
            tail: None,
        };
        let verdict = judge(&entry(ImageFormat::Qcow2), REGION, &archived);
        assert_eq!(verdict.findings[0].check, Check::StorageClass);

        let ignored_range = Answers {
            head: Some(Err(ObsError::RangeRefused {
                operation: "GetObject images:centos/7.qcow2".into(),
                detail: "HTTP 200".into(),
            })),
            ..archived
        };
        let verdict = judge(&entry(ImageFormat::Qcow2), REGION, &ignored_range);
        assert_eq!(verdict.findings[0].check, Check::Format);
        assert!(!verdict.passed());
    }

    #[test]
    fn which_errors_are_about_the_entry() {
        assert!(is_about_the_entry(&api(404, Some("NoSuchKey"))));
        assert!(is_about_the_entry(&api(403, Some("AccessDenied"))));
        assert!(!is_about_the_entry(&api(
            403,
            Some("SignatureDoesNotMatch")
        )));
        assert!(!is_about_the_entry(&api(503, Some("SlowDown"))));
        assert!(!is_about_the_entry(&ObsError::Interrupted {
            operation: "x".into(),
            detail: "y".into()
        }));
    }
}
