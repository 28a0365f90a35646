//! The simulator's OBS settings (the `obs:` block of `--config sim.yaml`): the region its IMS
//! registers in, buckets with their region and default storage class, virtual objects (size,
//! storage class, encryption, what their bytes are), and OBS-side faults.
//!
//! Objects have no data: their bytes are computed from a real image head of the named kind
//! (see [`super::obs_content`]), so a 100 GiB object costs a few bytes of memory. Every key is
//! optional; docs/simulator.md lists them for users.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// The region the simulated IMS registers in, and the default region of every bucket.
pub const DEFAULT_REGION: &str = "ap-southeast-1";

/// The simulator's OBS: buckets and objects, keyed by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObsConfig {
    /// The region IMS registers in (IMS refuses a bucket of another region, IMG.0058) and the
    /// region of buckets that name none.
    pub region: String,
    pub buckets: BTreeMap<String, BucketConfig>,
    pub faults: ObsFaults,
}

impl Default for ObsConfig {
    fn default() -> Self {
        Self {
            region: DEFAULT_REGION.to_string(),
            buckets: BTreeMap::new(),
            faults: ObsFaults::default(),
        }
    }
}

/// One bucket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketConfig {
    /// Where the bucket lives (default: `obs.region`).
    pub region: Option<String>,
    /// The default class of new objects: `STANDARD`, `WARM`, `COLD`, `DEEP_ARCHIVE`.
    pub storage_class: ClassName,
    /// Every request on the bucket answers 403 AccessDenied.
    pub denied: bool,
    pub objects: BTreeMap<String, ObjectConfig>,
}

/// One virtual object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    /// Bytes, as a number or with a unit: `4194304`, `10GiB`, `1.5 GiB`, `200MB`.
    #[serde(deserialize_with = "de_size")]
    pub size: u64,
    /// What the bytes are (default: from the key's extension, else `raw`).
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub storage_class: ClassName,
    #[serde(default)]
    pub encryption: EncryptionKind,
    /// HEAD and GET answer 403 AccessDenied.
    #[serde(default)]
    pub denied: bool,
}

/// A storage class as OBS spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassName(pub String);

impl Default for ClassName {
    fn default() -> Self {
        ClassName("STANDARD".to_string())
    }
}

impl ClassName {
    pub fn is_standard(&self) -> bool {
        self.0.eq_ignore_ascii_case("STANDARD")
    }
}

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        let upper = raw.trim().to_ascii_uppercase();
        match upper.as_str() {
            "STANDARD" | "WARM" | "COLD" | "DEEP_ARCHIVE" => Ok(ClassName(upper)),
            _ => Err(serde::de::Error::custom(format!(
                "unknown storage class {raw:?} (STANDARD, WARM, COLD or DEEP_ARCHIVE)"
            ))),
        }
    }
}

impl fmt::Display for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an object is encrypted at rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionKind {
    #[default]
    None,
    /// SSE-KMS (`x-obs-server-side-encryption: kms`).
    Kms,
    /// SSE-OBS (`x-obs-server-side-encryption: AES256`).
    SseObs,
    /// SSE-C: HEAD shows the customer algorithm; GET without the key answers 400.
    SseC,
}

/// What an object's bytes are: the head (and tail) of a real image of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    Qcow,
    Qcow2,
    Qed,
    Vdi,
    /// A dynamic VHD (`conectix` at offset 0).
    Vhd,
    /// A fixed VHD (only the footer, in the last 512 bytes).
    VhdFixed,
    Vhdx,
    /// monolithicSparse.
    Vmdk,
    VmdkStream,
    /// A text descriptor without its data extent.
    VmdkDescriptor,
    Iso,
    Zvhd,
    Zvhd2,
    /// A raw disk (no magic: an MBR signature and a GPT header).
    Raw,
    /// Text, no disk image at all.
    Garbage,
}

impl Content {
    /// The content a file of this IMS format has by default.
    pub fn for_format(format: crate::manifest::ImageFormat) -> Content {
        use crate::manifest::ImageFormat as F;
        match format {
            F::Zvhd => Content::Zvhd,
            F::Zvhd2 => Content::Zvhd2,
            F::Qcow2 => Content::Qcow2,
            F::Qcow => Content::Qcow,
            F::Vhd => Content::Vhd,
            F::Vhdx => Content::Vhdx,
            F::Raw => Content::Raw,
            F::Qed => Content::Qed,
            F::Vdi => Content::Vdi,
            F::Iso => Content::Iso,
            F::Vmdk => Content::VmdkStream,
        }
    }

    /// From a name as in the config (`vhd-fixed`), for hints in object keys.
    pub fn from_name(name: &str) -> Option<Content> {
        serde_yaml::from_str(name).ok()
    }

    /// The content an object key's extension suggests (`raw` when it suggests none).
    pub fn for_key(key: &str) -> Content {
        key.rsplit_once('.')
            .and_then(|(_, ext)| crate::manifest::ImageFormat::from_name(ext))
            .map_or(Content::Raw, Content::for_format)
    }
}

/// OBS-side faults, each a fraction (0..=1) of OBS requests, drawn from a seeded RNG of their
/// own (so OBS faults do not shift the IMS side's pattern).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObsFaults {
    /// 500 InternalError.
    pub error_500: f64,
    /// 503 ServiceUnavailable.
    pub error_503: f64,
    /// 503 SlowDown (OBS's throttling answer).
    pub slow_down: f64,
    /// Close the connection without any answer.
    pub drop_connection: f64,
}

impl ObsFaults {
    pub fn total(&self) -> f64 {
        self.error_500 + self.error_503 + self.slow_down + self.drop_connection
    }
}

impl ObsConfig {
    /// Checks what serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        let faults = &self.faults;
        for (name, value) in [
            ("obs.faults.error_500", faults.error_500),
            ("obs.faults.error_503", faults.error_503),
            ("obs.faults.slow_down", faults.slow_down),
            ("obs.faults.drop_connection", faults.drop_connection),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name} must be between 0 and 1, got {value}"));
            }
        }
        if faults.total() > 1.0 {
            return Err(format!(
                "obs.faults together must not exceed 1, got {}",
                faults.total()
            ));
        }
        for (name, bucket) in &self.buckets {
            if !is_bucket_name(name) {
                return Err(format!(
                    "obs.buckets: {name:?} is not a valid bucket name (3-63 characters from \
                     a-z, 0-9, '-' and '.')"
                ));
            }
            if let Some(key) = bucket
                .objects
                .keys()
                .find(|k| k.is_empty() || k.len() > 1024 || k.starts_with('/'))
            {
                return Err(format!(
                    "obs.buckets.{name}.objects: {key:?} is not an object key (1-1024 bytes, \
                     not starting with '/')"
                ));
            }
        }
        Ok(())
    }
}

/// A name OBS could have given a bucket: 3-63 characters from `a-z 0-9 - .`, starting and
/// ending with a letter or digit. IMS paths (`/v1/...`, `/v2/...`, `/_sim/...`) never start
/// with one, which is how the shared listener tells OBS requests apart.
pub fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// `4194304`, `10GiB`, `1.5 GiB`, `200MB`, `512 B`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 4194304, 10GiB, 200MB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

fn de_size<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(text) => parse_size(&text).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4194304"), Ok(4_194_304));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_size("200MB"), Ok(200_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn buckets_and_objects_parse() {
        let config: ObsConfig = serde_yaml::from_str(
            r#"
region: cn-north-4
buckets:
  images:
    objects:
      a.qcow2: {size: 10GiB}
      b.qcow2: {size: 1024, content: vmdk-stream, storage_class: cold, encryption: sse-c}
  far-away:
    region: eu-west-101
    storage_class: WARM
faults: {slow_down: 0.1}
"#,
        )
        .unwrap();
        config.check().unwrap();
        let images = &config.buckets["images"];
        assert_eq!(images.objects["a.qcow2"].size, 10 << 30);
        assert!(images.objects["a.qcow2"].storage_class.is_standard());
        let b = &images.objects["b.qcow2"];
        assert_eq!(b.content, Some(Content::VmdkStream));
        assert_eq!(b.storage_class.0, "COLD");
        assert_eq!(b.encryption, EncryptionKind::SseC);
        assert_eq!(config.buckets["far-away"].storage_class.0, "WARM");
        assert!(serde_yaml::from_str::<ObsConfig>("buckets: {b1: {storage_class: ICY}}").is_err());
        let bad: ObsConfig = serde_yaml::from_str("buckets: {B_1: {}}").unwrap();
        assert!(bad.check().is_err());
        let faulty: ObsConfig =
            serde_yaml::from_str("faults: {error_500: 0.6, slow_down: 0.6}").unwrap();
        assert!(faulty.check().is_err());
    }

    #[test]
    fn content_from_names_and_keys() {
        assert_eq!(Content::from_name("vhd-fixed"), Some(Content::VhdFixed));
        assert_eq!(Content::from_name("floppy"), None);
        assert_eq!(Content::for_key("a/b.VHDX"), Content::Vhdx);
        assert_eq!(Content::for_key("a/disk.img"), Content::Raw);
    }
}
