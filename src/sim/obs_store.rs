//! The simulated OBS account: buckets and virtual objects as the configuration describes them,
//! what HEAD and a ranged GET answer about them, and what the simulated IMS learns from them
//! when it registers one (how long the job takes, and why it fails when IMS would fail it).
//!
//! Pure: no HTTP and no clock here, so every rule is unit-tested directly.

use std::collections::HashMap;

use super::obs_config::{BucketConfig, ClassName, Content, EncryptionKind, ObsConfig};
use super::obs_content;

/// IMS's largest registrable file (IMG.0059, "128 GB" read as GiB).
const MAX_IMAGE_BYTES: u64 = 128 << 30;

#[derive(Debug, Clone)]
pub struct SimBucket {
    pub region: String,
    pub storage_class: ClassName,
    pub denied: bool,
    objects: HashMap<String, SimObject>,
}

#[derive(Debug, Clone)]
pub struct SimObject {
    pub size: u64,
    pub content: Content,
    pub storage_class: ClassName,
    pub encryption: EncryptionKind,
    pub denied: bool,
    /// A stable ETag (quoted hex), from the bucket, key and size.
    pub etag: String,
}

/// An OBS refusal: status, code and message, as the XML body or the `x-obs-error-*` headers
/// carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsRefusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ObsRefusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// What a ranged GET answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// 206: bytes `first..=last` of `total`.
    Partial {
        first: u64,
        last: u64,
        total: u64,
        bytes: Vec<u8>,
    },
    /// 200: no usable range, so the whole object (the handler streams it).
    Whole { size: u64 },
}

/// What IMS learns about the file of a registration, when the simulated OBS knows its bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    pub size_bytes: Option<u64>,
    /// The job will FAIL with this code and reason (IMS reads the file during the job).
    pub failure: Option<(&'static str, String)>,
}

/// Every bucket and object of the simulated account.
#[derive(Debug, Clone, Default)]
pub struct ObsStore {
    region: String,
    buckets: HashMap<String, SimBucket>,
}

impl ObsStore {
    pub fn new(config: &ObsConfig) -> Self {
        let buckets = config
            .buckets
            .iter()
            .map(|(name, bucket)| (name.clone(), sim_bucket(name, bucket, &config.region)))
            .collect();
        Self {
            region: config.region.clone(),
            buckets,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Adds `other`'s buckets this store does not have, and its objects in buckets both have.
    pub fn merge(&mut self, other: ObsStore) {
        for (name, bucket) in other.buckets {
            match self.buckets.entry(name) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(bucket);
                }
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    let objects = &mut slot.get_mut().objects;
                    for (key, object) in bucket.objects {
                        objects.entry(key).or_insert(object);
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// HEAD Bucket.
    pub fn bucket(&self, name: &str) -> Result<&SimBucket, ObsRefusal> {
        let bucket = self.buckets.get(name).ok_or_else(|| {
            ObsRefusal::new(404, "NoSuchBucket", "The specified bucket does not exist.")
        })?;
        if bucket.denied {
            return Err(ObsRefusal::new(403, "AccessDenied", "Access Denied"));
        }
        Ok(bucket)
    }

    /// HEAD Object.
    pub fn object(&self, bucket: &str, key: &str) -> Result<&SimObject, ObsRefusal> {
        let object = self.bucket(bucket)?.objects.get(key).ok_or_else(|| {
            ObsRefusal::new(404, "NoSuchKey", "The specified key does not exist.")
        })?;
        if object.denied {
            return Err(ObsRefusal::new(403, "AccessDenied", "Access Denied"));
        }
        Ok(object)
    }

    /// GET Object with the `Range` header as sent (`None` without one).
    pub fn read(&self, bucket: &str, key: &str, range: Option<&str>) -> Result<Read, ObsRefusal> {
        let object = self.object(bucket, key)?;
        if !object.storage_class.is_standard() && object.storage_class.0 != "WARM" {
            return Err(ObsRefusal::new(
                403,
                "InvalidObjectState",
                "The operation is not valid for the object's storage class (restore it first).",
            ));
        }
        if object.encryption == EncryptionKind::SseC {
            return Err(ObsRefusal::new(
                400,
                "InvalidRequest",
                "The object was stored with a customer-provided key (SSE-C); send the key headers.",
            ));
        }
        let size = object.size;
        let Some((first, last)) = range.and_then(|r| parse_range(r, size)) else {
            return Ok(Read::Whole { size });
        };
        if first >= size {
            return Err(ObsRefusal::new(
                416,
                "InvalidRange",
                "The requested range cannot be satisfied.",
            ));
        }
        let last = last.min(size - 1);
        Ok(Read::Partial {
            first,
            last,
            total: size,
            bytes: obs_content::read(object.content, size, first, last),
        })
    }

    /// What IMS would find registering `bucket:object`; `None` when the simulated OBS does not
    /// know the bucket at all (configurations without an `obs:` block behave as before).
    pub fn facts(&self, image_url: &str) -> Option<ObjectFacts> {
        let (bucket_name, key) = image_url.split_once(':')?;
        let bucket = self.buckets.get(bucket_name)?;
        let fail = |code, reason: String| {
            Some(ObjectFacts {
                size_bytes: None,
                failure: Some((code, reason)),
            })
        };
        if bucket.region != self.region {
            return fail(
                "IMG.0058",
                format!(
                    "The OBS bucket {bucket_name} is in region {}, not in {} where the image is registered.",
                    bucket.region, self.region
                ),
            );
        }
        let unreadable = |why: &str| {
            format!(
                "The image file is empty, does not exist, is in an incorrect format, or cannot be accessed: {image_url} {why}."
            )
        };
        if bucket.denied {
            return fail("IMG.0057", unreadable("cannot be accessed (403)"));
        }
        let Some(object) = bucket.objects.get(key) else {
            return fail("IMG.0057", unreadable("does not exist"));
        };
        let mut facts = ObjectFacts {
            size_bytes: Some(object.size),
            failure: None,
        };
        let failure = if object.denied {
            Some(("IMG.0057", unreadable("cannot be accessed (403)")))
        } else if !object.storage_class.is_standard() {
            Some((
                "IMG.0057",
                unreadable(&format!(
                    "cannot be read (storage class {})",
                    object.storage_class
                )),
            ))
        } else if object.size == 0 {
            Some(("IMG.0057", unreadable("is empty")))
        } else if object.size > MAX_IMAGE_BYTES {
            Some((
                "IMG.0059",
                format!("The image file {image_url} is larger than 128 GB."),
            ))
        } else if object.encryption == EncryptionKind::SseC {
            Some((
                "IMG.0057",
                unreadable("cannot be read (encrypted with a customer key)"),
            ))
        } else {
            format_mismatch(key, object).map(|why| ("IMG.0057", unreadable(&why)))
        };
        facts.failure = failure;
        Some(facts)
    }
}

/// IMS converts by the file's extension: bytes of another format fail the conversion.
fn format_mismatch(key: &str, object: &SimObject) -> Option<String> {
    let named = key
        .rsplit_once('.')
        .and_then(|(_, ext)| crate::manifest::ImageFormat::from_name(ext))?;
    let size = object.size;
    let head_end = size.min(crate::preflight::HEAD_BYTES) - 1;
    let head = obs_content::read(object.content, size, 0, head_end);
    let tail = obs_content::read(
        object.content,
        size,
        size.saturating_sub(crate::preflight::TAIL_BYTES),
        size - 1,
    );
    let found = crate::preflight::detect(&head, Some(&tail));
    match found.format() {
        Some(format) if format == named => None,
        None if named == crate::manifest::ImageFormat::Raw => None,
        _ => Some(format!(
            "is in an incorrect format (named .{named}, the file is {found})"
        )),
    }
}

fn sim_bucket(name: &str, config: &BucketConfig, default_region: &str) -> SimBucket {
    let objects = config
        .objects
        .iter()
        .map(|(key, object)| {
            let etag = format!(
                "\"{:016x}{:016x}\"",
                super::hash::unit_hash(object.size, name).to_bits(),
                super::hash::unit_hash(object.size, key).to_bits()
            );
            let sim = SimObject {
                size: object.size,
                content: object.content.unwrap_or_else(|| Content::for_key(key)),
                storage_class: object.storage_class.clone(),
                encryption: object.encryption,
                denied: object.denied,
                etag,
            };
            (key.clone(), sim)
        })
        .collect();
    SimBucket {
        region: config
            .region
            .clone()
            .unwrap_or_else(|| default_region.to_string()),
        storage_class: config.storage_class.clone(),
        denied: config.denied,
        objects,
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range only) as offsets within `size`; `None` for
/// anything else, which OBS answers with the whole object.
pub fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (false, false) => {
            let (a, b) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
            (a <= b).then_some((a, b))
        }
        (false, true) => Some((first.parse().ok()?, u64::MAX)),
        (true, false) => {
            let n: u64 = last.parse().ok()?;
            (n > 0).then(|| (size.saturating_sub(n), u64::MAX))
        }
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ObsStore {
        let config: ObsConfig = serde_yaml::from_str(
            r#"
region: ap-southeast-1
buckets:
  images:
    objects:
      web.qcow2: {size: 10GiB}
      cold.qcow2: {size: 10GiB, storage_class: COLD}
      big.raw: {size: 130GiB}
      empty.vhd: {size: 0}
      secret.qcow2: {size: 1GiB, encryption: sse-c}
      lies.qcow2: {size: 1GiB, content: vmdk-stream}
      hidden.qcow2: {size: 1GiB, denied: true}
      disk.img: {size: 1GiB}
  far-away:
    region: eu-west-101
    objects:
      a.qcow2: {size: 1GiB}
  locked:
    denied: true
"#,
        )
        .unwrap();
        ObsStore::new(&config)
    }

    #[test]
    fn heads_answer_like_obs() {
        let s = store();
        assert_eq!(s.bucket("images").unwrap().region, "ap-southeast-1");
        assert_eq!(s.bucket("nope").unwrap_err().code, "NoSuchBucket");
        assert_eq!(s.bucket("locked").unwrap_err().status, 403);
        assert_eq!(s.object("images", "web.qcow2").unwrap().size, 10 << 30);
        assert_eq!(s.object("images", "nope").unwrap_err().code, "NoSuchKey");
        assert_eq!(
            s.object("nope", "web.qcow2").unwrap_err().code,
            "NoSuchBucket"
        );
        assert_eq!(
            s.object("images", "hidden.qcow2").unwrap_err().code,
            "AccessDenied"
        );
    }

    #[test]
    fn ranged_reads() {
        let s = store();
        let Read::Partial {
            first,
            last,
            total,
            bytes,
        } = s
            .read("images", "web.qcow2", Some("bytes=0-36863"))
            .unwrap()
        else {
            panic!("not partial");
        };
        assert_eq!((first, last, total), (0, 36863, 10 << 30));
        assert_eq!(&bytes[..4], b"QFI\xfb");
        assert_eq!(
            s.read("images", "web.qcow2", Some("bytes=0-x")).unwrap(),
            Read::Whole { size: 10 << 30 }
        );
        assert_eq!(
            s.read("images", "web.qcow2", None).unwrap(),
            Read::Whole { size: 10 << 30 }
        );
        let tail = s.read("images", "web.qcow2", Some("bytes=-512")).unwrap();
        assert!(matches!(tail, Read::Partial { first, .. } if first == (10 << 30) - 512));
        assert_eq!(
            s.read(
                "images",
                "web.qcow2",
                Some(&format!("bytes={}-", 10u64 << 30))
            )
            .unwrap_err()
            .status,
            416
        );
        assert_eq!(
            s.read("images", "cold.qcow2", Some("bytes=0-1"))
                .unwrap_err()
                .code,
            "InvalidObjectState"
        );
        assert_eq!(
            s.read("images", "secret.qcow2", Some("bytes=0-1"))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn ims_fails_what_it_cannot_register() {
        let s = store();
        let code = |url: &str| s.facts(url).and_then(|f| f.failure).map(|(code, _)| code);
        assert_eq!(
            s.facts("images:web.qcow2").unwrap().size_bytes,
            Some(10 << 30)
        );
        assert_eq!(code("images:web.qcow2"), None);
        assert_eq!(code("images:disk.img"), None, "raw bytes named .img");
        assert_eq!(code("images:cold.qcow2"), Some("IMG.0057"));
        assert_eq!(code("images:big.raw"), Some("IMG.0059"));
        assert_eq!(code("images:empty.vhd"), Some("IMG.0057"));
        assert_eq!(code("images:secret.qcow2"), Some("IMG.0057"));
        assert_eq!(code("images:hidden.qcow2"), Some("IMG.0057"));
        assert_eq!(code("images:missing.qcow2"), Some("IMG.0057"));
        assert_eq!(code("far-away:a.qcow2"), Some("IMG.0058"));
        let lies = s.facts("images:lies.qcow2").unwrap().failure.unwrap().1;
        assert!(
            lies.contains("named .qcow2") && lies.contains("vmdk"),
            "{lies}"
        );
        assert_eq!(s.facts("unknown-bucket:a.qcow2"), None);
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=10-", 1000), Some((10, u64::MAX)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, u64::MAX)));
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
