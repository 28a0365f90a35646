//! Splitting one manifest across N workers (`--shard K/N`): which shard an entry belongs to.
//!
//! Membership is a pure function of the entry's identity string, never of its position, so
//! adding, removing or reordering entries never moves any other entry to another shard. The
//! scheme is called "hash-v1" and never changes: the first 8 bytes of SHA-256 of the identity,
//! read as a big-endian u64, modulo N, plus 1, is the entry's shard. A different scheme would
//! get a new name (hash-v2) and be written as such into the reports, so that `imsreg report
//! merge` can refuse to combine shards split two different ways.
//!
//! The identity of an entry that names an existing image is `id:` + its lower-case UUID
//! ([`identity_of_image_id`]); of an entry known only by its name, `name:` + the name
//! ([`identity_of_name`]). The prefixes keep a name that looks like a UUID from landing where
//! that UUID would.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::ids::ImageId;

/// The name of the membership scheme, written into reports.
pub const SCHEME: &str = "hash-v1";

/// The most shards a manifest can be split into (Kubernetes Indexed Jobs allow 100,000
/// completions, GitLab `parallel:` 200, a GitHub matrix 256; a shard per 10 images of a
/// 100,000-image manifest is already more than any quota can use).
pub const MAX_SHARDS: u32 = 10_000;

/// One shard of N: `index` counts from 1, as `--shard` does in Playwright, Jest and nextest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    total: u32,
}

/// Why a `--shard` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("`{0}` is not K/N (e.g. 2/5: the second of five shards)")]
    Syntax(String),
    #[error(
        "shard {index}/{total}: K counts from 1 (the first shard is 1/{total}; Kubernetes' \
         JOB_COMPLETION_INDEX counts from 0, so pass $((JOB_COMPLETION_INDEX+1))/{total})"
    )]
    ZeroIndex { index: u32, total: u32 },
    #[error("shard {index}/{total}: there are only {total} shard(s), so K must be 1 to {total}")]
    IndexAboveTotal { index: u32, total: u32 },
    #[error("shard {index}/{total}: N must be at least 1")]
    ZeroTotal { index: u32, total: u32 },
    #[error("shard {index}/{total}: at most {MAX_SHARDS} shards")]
    TooMany { index: u32, total: u32 },
}

impl Shard {
    /// Shard `index` (1-based) of `total`.
    pub fn new(index: u32, total: u32) -> Result<Self, ShardError> {
        if total == 0 {
            Err(ShardError::ZeroTotal { index, total })
        } else if total > MAX_SHARDS {
            Err(ShardError::TooMany { index, total })
        } else if index == 0 {
            Err(ShardError::ZeroIndex { index, total })
        } else if index > total {
            Err(ShardError::IndexAboveTotal { index, total })
        } else {
            Ok(Shard { index, total })
        }
    }

    /// The whole manifest: shard 1 of 1.
    pub fn whole() -> Self {
        Shard { index: 1, total: 1 }
    }

    /// 1-based.
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// Whether this is the only shard (1/1: every entry).
    pub fn is_whole(&self) -> bool {
        self.total == 1
    }

    /// Whether the entry with this identity belongs to this shard (hash-v1).
    pub fn contains(&self, identity: &str) -> bool {
        shard_of(identity, self.total) == self.index
    }

    /// Whether an entry belongs here, given its identity if it has a usable one: entries with
    /// none (an invalid entry whose ID is no UUID and that has no name) all go to shard 1, so
    /// that exactly one shard reports each of them.
    pub fn contains_maybe(&self, identity: Option<&str>) -> bool {
        match identity {
            Some(identity) => self.contains(identity),
            None => self.index == 1,
        }
    }
}

/// The shard (1-based) of `total` that the identity belongs to, by hash-v1.
pub fn shard_of(identity: &str, total: u32) -> u32 {
    let digest = Sha256::digest(identity.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let bucket = u64::from_be_bytes(first) % u64::from(total.max(1));
    // `bucket < total <= u32::MAX`, so it fits.
    u32::try_from(bucket).unwrap_or(0) + 1
}

/// The identity of an entry that names an existing image.
pub fn identity_of_image_id(image_id: &ImageId) -> String {
    format!("id:{image_id}")
}

/// The identity of an entry known only by its name (one imsreg creates).
pub fn identity_of_name(name: &str) -> String {
    format!("name:{name}")
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `K/N` with decimal K and N (spaces around either are allowed).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || ShardError::Syntax(text.chars().take(40).collect());
        let (index, total) = text.split_once('/').ok_or_else(syntax)?;
        let number = |part: &str| {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            // Digits only: a parse failure is an overflow, which no valid shard reaches.
            Ok(part.parse::<u32>().unwrap_or(u32::MAX))
        };
        Shard::new(number(index)?, number(total)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k_of_n_counting_from_one() {
        let shard: Shard = "2/5".parse().unwrap();
        assert_eq!((shard.index(), shard.total()), (2, 5));
        assert_eq!(shard.to_string(), "2/5");
        assert_eq!(" 1 / 1 ".parse::<Shard>().unwrap(), Shard::whole());
        assert_eq!("10000/10000".parse::<Shard>().unwrap().total(), MAX_SHARDS);
    }

    #[test]
    fn refuses_what_is_not_a_shard() {
        let err = |text: &str| text.parse::<Shard>().unwrap_err();
        assert!(matches!(err("0/3"), ShardError::ZeroIndex { .. }));
        assert!(err("0/3").to_string().contains("JOB_COMPLETION_INDEX+1"));
        assert!(matches!(err("4/3"), ShardError::IndexAboveTotal { .. }));
        assert!(matches!(err("1/0"), ShardError::ZeroTotal { .. }));
        assert!(matches!(err("1/10001"), ShardError::TooMany { .. }));
        assert!(matches!(err("1/99999999999"), ShardError::TooMany { .. }));
        for bad in [
            "", "3", "1/", "/3", "a/3", "1/b", "-1/3", "1/3/4", "+1/3", "1.0/3",
        ] {
            assert!(matches!(err(bad), ShardError::Syntax(_)), "{bad}");
        }
    }

    #[test]
    fn hash_v1_is_fixed() {
        // These values pin the scheme: if they change, reports split under hash-v1 no longer
        // merge with new ones. A new scheme needs a new name.
        let digest = Sha256::digest(b"id:4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86");
        let first = u64::from_be_bytes(digest[..8].try_into().unwrap());
        for total in [1, 2, 3, 7, 100, MAX_SHARDS] {
            let expected = u32::try_from(first % u64::from(total)).unwrap() + 1;
            assert_eq!(
                shard_of("id:4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86", total),
                expected
            );
        }
        assert_eq!(shard_of("anything", 1), 1);
        // sha256("abc") starts ba7816bf8f01cfea: 0xba7816bf8f01cfea % 10 = 4, so shard 5.
        assert_eq!(0xba78_16bf_8f01_cfea_u64 % 10, 4);
        assert_eq!(shard_of("abc", 10), 5);
    }

    #[test]
    fn identities_of_ids_and_names_never_collide() {
        let id = ImageId::parse("4CA46BF1-5C61-48FF-B4F3-0AD4E5E3BA86").unwrap();
        assert_eq!(
            identity_of_image_id(&id),
            "id:4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86"
        );
        assert_ne!(
            identity_of_image_id(&id),
            identity_of_name("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86")
        );
    }

    #[test]
    fn every_identity_is_in_exactly_one_shard() {
        let total = 7;
        for n in 0..500 {
            let identity = identity_of_name(&format!("image-{n}"));
            let holders = (1..=total)
                .filter(|&k| Shard::new(k, total).unwrap().contains(&identity))
                .count();
            assert_eq!(holders, 1, "{identity}");
        }
        let none_goes_to_one = (1..=total)
            .filter(|&k| Shard::new(k, total).unwrap().contains_maybe(None))
            .collect::<Vec<_>>();
        assert_eq!(none_goes_to_one, [1]);
    }
}
