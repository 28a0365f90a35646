//! Objects made up for a manifest's entries (`imsreg run --simulate`, `imsreg preflight
//! --simulate`): every entry's bucket and object exist, in the IMS region, Standard,
//! unencrypted, with a plausible size (2-40 GiB, seeded by the image ID) and the bytes of the
//! entry's format, so a clean manifest passes the preflight and registers.
//!
//! Words in the names change that, to show what the preflight catches (docs/simulator.md):
//! the bucket or object key is split into words at every character that is not a letter or a
//! digit, and these words (any case) apply:
//!
//! | word | in a bucket name | in an object key |
//! |---|---|---|
//! | `missing` | the bucket does not exist | the object does not exist |
//! | `denied` | 403 on the bucket | 403 on the object |
//! | `cold` / `warm` | default storage class COLD / WARM | storage class COLD / WARM |
//! | `otherregion` | the bucket is in `eu-west-101` | |
//! | `empty` / `large` / `huge` | | 0 bytes / 130·10⁹ bytes (over 128 GB, under 128 GiB) / 130 GiB |
//! | `<N>gib` (e.g. `37gib`) | | N GiB |
//! | `ssec` / `sseobs` / `kms` | | SSE-C / SSE-OBS / SSE-KMS |
//! | `actually` + a kind | | the bytes are that kind (`actually-vmdk`, `actually-vhd-fixed`) |
//! | `garbage` / `descriptor` | | text bytes / a vmdk descriptor without data |

use std::collections::btree_map::Entry;

use super::hash::unit_hash;
use super::obs_config::{
    BucketConfig, ClassName, Content, EncryptionKind, ObjectConfig, ObsConfig,
};
use crate::manifest::ImageEntry;

/// Where a bucket named `otherregion` lives.
pub const OTHER_REGION: &str = "eu-west-101";

/// Sizes of made-up objects: 2 to 40 GiB.
const MIN_GIB: f64 = 2.0;
const MAX_GIB: f64 = 40.0;

/// An OBS configuration with a bucket and an object for every entry.
pub fn for_entries(entries: &[ImageEntry], region: &str, seed: u64) -> ObsConfig {
    let mut config = ObsConfig {
        region: region.to_string(),
        ..ObsConfig::default()
    };
    add_entries(&mut config, entries, seed);
    config
}

/// Adds a bucket and an object for every entry to `config`, leaving the buckets it already
/// has alone (a configuration file's buckets win over made-up ones).
pub fn add_entries(config: &mut ObsConfig, entries: &[ImageEntry], seed: u64) {
    let configured: std::collections::BTreeSet<String> = config.buckets.keys().cloned().collect();
    for entry in entries {
        if configured.contains(&entry.image_url.bucket) {
            continue;
        }
        let bucket_words = words(&entry.image_url.bucket);
        if bucket_words.iter().any(|w| w == "missing") {
            continue;
        }
        let bucket = match config.buckets.entry(entry.image_url.bucket.clone()) {
            Entry::Occupied(bucket) => bucket.into_mut(),
            Entry::Vacant(slot) => slot.insert(bucket_for(&bucket_words)),
        };
        let key = &entry.image_url.object;
        let key_words = words(key);
        if key_words.iter().any(|w| w == "missing") {
            continue;
        }
        if let Entry::Vacant(slot) = bucket.objects.entry(key.clone()) {
            slot.insert(object_for(entry, &key_words, seed));
        }
    }
}

fn bucket_for(words: &[String]) -> BucketConfig {
    let has = |word: &str| words.iter().any(|w| w == word);
    BucketConfig {
        region: has("otherregion").then(|| OTHER_REGION.to_string()),
        storage_class: class_from(words).unwrap_or_default(),
        denied: has("denied"),
        objects: Default::default(),
    }
}

fn object_for(entry: &ImageEntry, words: &[String], seed: u64) -> ObjectConfig {
    let has = |word: &str| words.iter().any(|w| w == word);
    let gib = MIN_GIB + (MAX_GIB - MIN_GIB) * unit_hash(seed, &entry.image_id.to_string());
    let plausible = ((gib * 1024.0).round() as u64) << 20;
    let stated = words.iter().find_map(|w| {
        let gib: u64 = w.strip_suffix("gib")?.parse().ok()?;
        gib.checked_mul(1 << 30)
    });
    let size = if has("empty") {
        0
    } else if let Some(size) = stated {
        size
    } else if has("huge") {
        130 << 30
    } else if has("large") {
        130_000_000_000
    } else {
        plausible
    };
    let content = if has("garbage") {
        Content::Garbage
    } else if has("descriptor") {
        Content::VmdkDescriptor
    } else {
        actually(words).unwrap_or_else(|| Content::for_format(entry.format))
    };
    let encryption = if has("ssec") {
        EncryptionKind::SseC
    } else if has("sseobs") {
        EncryptionKind::SseObs
    } else if has("kms") {
        EncryptionKind::Kms
    } else {
        EncryptionKind::None
    };
    ObjectConfig {
        size,
        content: Some(content),
        storage_class: class_from(words).unwrap_or_default(),
        encryption,
        denied: has("denied"),
    }
}

/// `cold` / `warm` among the words.
fn class_from(words: &[String]) -> Option<ClassName> {
    words.iter().find_map(|w| match w.as_str() {
        "cold" => Some(ClassName("COLD".into())),
        "warm" => Some(ClassName("WARM".into())),
        _ => None,
    })
}

/// The kind after `actually`: two words first (`vhd-fixed`), then one.
fn actually(words: &[String]) -> Option<Content> {
    let at = words.iter().position(|w| w == "actually")?;
    let rest = &words[at + 1..];
    let two = rest.get(..2).map(|pair| pair.join("-"));
    two.and_then(|name| Content::from_name(&name))
        .or_else(|| rest.first().and_then(|name| Content::from_name(name)))
}

/// Lower-cased words: runs of letters and digits.
fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ImageFormat, ImageUrl};

    fn entry(i: u32, url: &str, format: ImageFormat) -> ImageEntry {
        let (bucket, object) = url.split_once(':').unwrap();
        ImageEntry {
            image_id: format!("00000000-0000-4000-8000-{i:012}").parse().unwrap(),
            image_url: ImageUrl {
                bucket: bucket.into(),
                object: object.into(),
            },
            name: None,
            format,
            line: i as usize,
        }
    }

    #[test]
    fn plain_entries_get_plausible_standard_objects_of_their_format() {
        let entries: Vec<ImageEntry> = (0..50)
            .map(|i| entry(i, &format!("images:web/web-{i}.qcow2"), ImageFormat::Qcow2))
            .collect();
        let config = for_entries(&entries, "ap-southeast-1", 1);
        let bucket = &config.buckets["images"];
        assert_eq!(bucket.region, None, "the IMS region");
        assert!(bucket.storage_class.is_standard());
        assert_eq!(bucket.objects.len(), 50);
        for object in bucket.objects.values() {
            assert!((2u64 << 30..=40u64 << 30).contains(&object.size));
            assert_eq!(object.content, Some(Content::Qcow2));
            assert!(object.storage_class.is_standard());
            assert_eq!(object.encryption, EncryptionKind::None);
        }
        let sizes: std::collections::BTreeSet<u64> =
            bucket.objects.values().map(|o| o.size).collect();
        assert!(sizes.len() > 40, "sizes vary with the image ID");
        assert_eq!(
            for_entries(&entries, "ap-southeast-1", 1).buckets["images"].objects["web/web-3.qcow2"]
                .size,
            bucket.objects["web/web-3.qcow2"].size,
            "and are the same on every run"
        );
    }

    #[test]
    fn words_in_names_make_problems() {
        let entries = [
            entry(1, "images:archive/cold-web.qcow2", ImageFormat::Qcow2),
            entry(
                2,
                "images:web/web-07.actually-vmdk.qcow2",
                ImageFormat::Qcow2,
            ),
            entry(3, "images:gone/missing.vhd", ImageFormat::Vhd),
            entry(4, "missing-bucket:a.qcow2", ImageFormat::Qcow2),
            entry(5, "eu-otherregion:a.qcow2", ImageFormat::Qcow2),
            entry(6, "images:x/huge.raw", ImageFormat::Raw),
            entry(7, "images:x/ssec.qcow2", ImageFormat::Qcow2),
            entry(8, "images:x/a.actually-vhd-fixed.vhd", ImageFormat::Vhd),
            entry(9, "images:x/swarm-empty.vhd", ImageFormat::Vhd),
            entry(10, "images:x/db-037gib.vhd", ImageFormat::Vhd),
        ];
        let config = for_entries(&entries, "ap-southeast-1", 1);
        let objects = &config.buckets["images"].objects;
        assert_eq!(objects["archive/cold-web.qcow2"].storage_class.0, "COLD");
        assert_eq!(
            objects["web/web-07.actually-vmdk.qcow2"].content,
            Some(Content::Vmdk)
        );
        assert!(!objects.contains_key("gone/missing.vhd"));
        assert!(!config.buckets.contains_key("missing-bucket"));
        assert_eq!(
            config.buckets["eu-otherregion"].region.as_deref(),
            Some(OTHER_REGION)
        );
        assert_eq!(objects["x/huge.raw"].size, 130 << 30);
        assert_eq!(objects["x/ssec.qcow2"].encryption, EncryptionKind::SseC);
        assert_eq!(
            objects["x/a.actually-vhd-fixed.vhd"].content,
            Some(Content::VhdFixed)
        );
        let swarm = &objects["x/swarm-empty.vhd"];
        assert!(swarm.storage_class.is_standard(), "swarm is not warm");
        assert_eq!(swarm.size, 0);
        assert_eq!(objects["x/db-037gib.vhd"].size, 37 << 30);
    }
}
