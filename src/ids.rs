//! The two identifiers a registration is about: the image's ID (a UUID, checked once when the
//! manifest is read) and the job ID IMS answers for a registration (checked once when the
//! answer arrives). Both are parsed at the edge and carried typed from there on, so that no
//! later layer re-checks, re-parses or compares them as text. Also the identity tag that marks
//! an image imsreg created, derived from the manifest entry's name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An IMS image ID: a UUID, shown (and sent to IMS) lower-case and hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(Uuid);

/// Why a text is not an [`ImageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a UUID (IMS image IDs look like 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86: \
     8-4-4-4-12 hexadecimal digits)"
)]
pub struct InvalidImageId(String);

impl ImageId {
    /// The hyphenated form `8-4-4-4-12` in any case, as the manifest accepts it; nothing else
    /// (no braces, no `urn:uuid:`, no spaces, no undashed form).
    pub fn parse(text: &str) -> Result<Self, InvalidImageId> {
        let bytes = text.as_bytes();
        let hyphenated = bytes.len() == 36
            && bytes.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        hyphenated
            .then(|| Uuid::try_parse(text).ok())
            .flatten()
            .map(ImageId)
            .ok_or_else(|| InvalidImageId(shorten(text)))
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        ImageId(uuid)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for ImageId {
    type Err = InvalidImageId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for ImageId {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageId {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(de)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The longest job ID accepted. IMS's are 32 hexadecimal digits (ims-api.md section 1); other
/// Huawei Cloud services answer UUIDs with dashes (36). Twice that leaves room.
pub const MAX_JOB_ID_LEN: usize = 64;

/// A job ID as IMS sends it, trimmed (the documented example has a leading space): 1 to
/// [`MAX_JOB_ID_LEN`] characters of `0-9 A-Z a-z -`. Built only by [`JobId::parse`], so any
/// `JobId` is safe to journal and to put in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Box<str>);

/// Why a text is not a [`JobId`] (empty, a megabyte, an HTML fragment...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidJobId(String);

impl JobId {
    pub fn parse(raw: &str) -> Result<Self, InvalidJobId> {
        let job_id = raw.trim();
        if job_id.is_empty() {
            return Err(InvalidJobId("the job_id is empty".to_string()));
        }
        if job_id.len() > MAX_JOB_ID_LEN {
            return Err(InvalidJobId(format!(
                "the job_id is {} bytes long (job IDs are at most {MAX_JOB_ID_LEN})",
                job_id.len()
            )));
        }
        if !job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(InvalidJobId(format!(
                "the job_id `{}` is not a job ID (IMS's are 32 hexadecimal digits)",
                job_id.escape_debug()
            )));
        }
        Ok(JobId(job_id.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

/// A job ID reads as the text IMS sent.
impl std::ops::Deref for JobId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for JobId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for JobId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl From<JobId> for String {
    fn from(job_id: JobId) -> Self {
        job_id.into_string()
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(de)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The tag key imsreg puts on every image it creates.
pub const IDENTITY_TAG_KEY: &str = "imsreg-key";

/// Characters of [`identity_tag_value`]: IMS's longest tag value (create-shard-metrics.md A.4).
const IDENTITY_TAG_LEN: usize = 43;

/// The value of the identity tag of the image created for the manifest entry `name`: base32
/// (RFC 4648 alphabet, lower-case, no padding) of sha256(name), first 43 characters. It fits
/// IMS's tag value limit (43 characters of a-z and 0-9) and keeps 215 bits of the hash, so a
/// re-run finds the image by its name without two names ever sharing a tag.
pub fn identity_tag_value(name: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = Sha256::digest(name.as_bytes());
    let mut out = String::with_capacity(IDENTITY_TAG_LEN + 8);
    // Five bits a character: feed bytes into an accumulator, take the top 5 bits while 5 are there.
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in digest.iter() {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out.truncate(IDENTITY_TAG_LEN);
    out
}

#[cfg(test)]
impl ImageId {
    /// A test image's ID spelled by a short name (its bytes, zero-padded; at most 16), so that
    /// unit tests can speak of images "done" or "inflight".
    pub fn named(name: &str) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        ImageId(Uuid::from_bytes(bytes))
    }
}

/// At most 60 characters of a rejected value, for messages.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", text[..end].escape_debug()),
        None => text.escape_debug().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86";

    #[test]
    fn identity_tag_values_match_python_base32_of_sha256() {
        // python3 -c 'import base64,hashlib;print(base64.b32encode(hashlib.sha256("NAME"
        //   .encode()).digest()).decode().lower()[:43])'
        for (name, expected) in [
            ("web-01", "booz6bwmrt2eoznbfqfkagtoeilrgclz6tp63isoeky"),
            ("中文镜像 01", "mxdbxe4kdwvnbwhnqenobabmq5uatmyoiyhmof22gp5"),
            ("", "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswm"),
        ] {
            let value = identity_tag_value(name);
            assert_eq!(value, expected, "{name}");
            assert_eq!(value.len(), 43);
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
        }
        assert_eq!(IDENTITY_TAG_KEY, "imsreg-key");
    }

    #[test]
    fn image_ids_are_hyphenated_uuids_in_any_case_shown_lower_case() {
        let upper = ImageId::parse(&ID.to_uppercase()).unwrap();
        assert_eq!(upper, ImageId::parse(ID).unwrap());
        assert_eq!(upper.to_string(), ID);
        assert_eq!(ID.parse::<ImageId>().unwrap(), upper);
        for bad in [
            "",
            "4ca46bf15c6148ffb4f30ad4e5e3ba86",
            "{4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86}",
            "urn:uuid:4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86",
            " 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86",
            "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba8g",
            "4ca46bf1+5c61-48ff-b4f3-0ad4e5e3ba86",
        ] {
            assert!(ImageId::parse(bad).is_err(), "{bad:?}");
        }
        let long = ImageId::parse(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(long.contains("is not a UUID") && long.len() < 200, "{long}");
    }

    #[test]
    fn image_ids_order_and_serialize_as_their_text() {
        let low = ImageId::parse("00000000-0000-0000-0000-000000000001").unwrap();
        let high = ImageId::parse("00000000-0000-0000-0000-0000000000FF").unwrap();
        assert!(low < high);
        let json = serde_json::to_string(&high).unwrap();
        assert_eq!(json, "\"00000000-0000-0000-0000-0000000000ff\"");
        assert_eq!(serde_json::from_str::<ImageId>(&json).unwrap(), high);
        assert!(serde_json::from_str::<ImageId>("\"nope\"").is_err());
    }

    #[test]
    fn job_ids_have_a_sane_shape() {
        assert_eq!(
            JobId::parse(" b912fb4a4c464b568ecfca1071b21b10")
                .unwrap()
                .as_str(),
            "b912fb4a4c464b568ecfca1071b21b10"
        );
        assert!(JobId::parse("ff808081-4dbd-65d7-014d-be0d84db0013").is_ok());
        assert!(JobId::parse(&"a".repeat(MAX_JOB_ID_LEN)).is_ok());
        for bad in ["", "  ", "<html>", "a/b", "a b", "job\n1", "ü"] {
            assert!(JobId::parse(bad).is_err(), "{bad:?}");
        }
        let huge = "a".repeat(1 << 20);
        let err = JobId::parse(&huge).unwrap_err().to_string();
        assert!(err.contains("1048576 bytes") && err.len() < 100, "{err}");
    }

    #[test]
    fn job_ids_serialize_as_their_text_and_refuse_bad_shapes() {
        let job = JobId::parse("job-1").unwrap();
        assert_eq!(job, "job-1");
        assert_eq!(job.to_string(), "job-1");
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(json, "\"job-1\"");
        assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), job);
        assert!(serde_json::from_str::<JobId>("\"a/b\"").is_err());
    }
}
