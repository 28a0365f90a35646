//! What a cloud lookup by identity tag means for one manifest entry that imsreg creates (pure,
//! unit-tested for 0, 1 and many images found in every status).
//!
//! No IMS create call is idempotent, so the lookup is the truth: 0 images carry the entry's
//! tag -> create one; 1 -> use it by its status; more -> several workers (or a lost answer and
//! a retry) created some. Then the rule every worker applies alike: if at most one of them has
//! gone past `queued` (metadata only, nothing registered into it), that one, or else the oldest
//! (creation time, then ID), is kept and the other `queued` ones are deleted before anything is
//! registered; two or more past `queued` cannot be told apart safely, and are reported with
//! every ID and left alone.

use chrono::{DateTime, Utc};

use crate::ids::ImageId;
use crate::ims::ImageStatus;

/// One image the lookup found with the entry's identity tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub id: ImageId,
    pub status: ImageStatus,
    pub created_at: Option<DateTime<Utc>>,
}

/// What to do with the entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No image carries the tag: create one.
    Create,
    /// Use this image as found (`queued`: register it; `saving`: follow it; `active`: done;
    /// `killed` without `--retry-failed`: report it). `extras` are metadata-only duplicates to
    /// delete first.
    Use { image: Found, extras: Vec<ImageId> },
    /// The image ended `killed` and `--retry-failed` is on: delete it (and the extras), then
    /// create a fresh one.
    Replace {
        killed: ImageId,
        extras: Vec<ImageId>,
    },
    /// More than one image went past `queued`: report all of them, touch none.
    Conflict { ids: Vec<ImageId> },
}

/// Decides from the images found (in any order; `deleted` ones count as gone).
pub fn decide(found: Vec<Found>, retry_failed: bool) -> Decision {
    let mut live: Vec<Found> = found
        .into_iter()
        .filter(|image| image.status != ImageStatus::Deleted)
        .collect();
    if live.is_empty() {
        return Decision::Create;
    }
    // Oldest first; an image without a creation time sorts last, the ID breaks ties, so
    // every worker orders the same list the same way.
    live.sort_by(|a, b| {
        (a.created_at.is_none(), a.created_at, a.id).cmp(&(
            b.created_at.is_none(),
            b.created_at,
            b.id,
        ))
    });
    let past_queued: Vec<usize> = (0..live.len())
        .filter(|&i| live[i].status != ImageStatus::Queued)
        .collect();
    let keep = match past_queued.as_slice() {
        [] => 0,
        [only] => *only,
        _ => {
            return Decision::Conflict {
                ids: live.into_iter().map(|image| image.id).collect(),
            };
        }
    };
    let image = live.swap_remove(keep);
    let mut extras: Vec<ImageId> = live.into_iter().map(|image| image.id).collect();
    extras.sort();
    if image.status == ImageStatus::Killed && retry_failed {
        return Decision::Replace {
            killed: image.id,
            extras,
        };
    }
    Decision::Use { image, extras }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0)
    }

    fn found(name: &str, status: ImageStatus, second: u32) -> Found {
        Found {
            id: ImageId::named(name),
            status,
            created_at: at(second),
        }
    }

    fn id(name: &str) -> ImageId {
        ImageId::named(name)
    }

    const EVERY_STATUS: [ImageStatus; 4] = [
        ImageStatus::Queued,
        ImageStatus::Saving,
        ImageStatus::Active,
        ImageStatus::Killed,
    ];

    #[test]
    fn none_found_creates() {
        assert_eq!(decide(vec![], false), Decision::Create);
        assert_eq!(decide(vec![], true), Decision::Create);
        let gone = vec![found("a", ImageStatus::Deleted, 1)];
        assert_eq!(decide(gone, false), Decision::Create, "deleted is gone");
    }

    #[test]
    fn one_found_is_used_by_its_status() {
        for status in EVERY_STATUS {
            for retry_failed in [false, true] {
                let decision = decide(vec![found("a", status.clone(), 1)], retry_failed);
                if status == ImageStatus::Killed && retry_failed {
                    assert_eq!(
                        decision,
                        Decision::Replace {
                            killed: id("a"),
                            extras: vec![]
                        }
                    );
                } else {
                    assert_eq!(
                        decision,
                        Decision::Use {
                            image: found("a", status.clone(), 1),
                            extras: vec![]
                        },
                        "{status:?} retry_failed={retry_failed}"
                    );
                }
            }
        }
    }

    #[test]
    fn several_queued_keep_the_oldest_whatever_the_order() {
        let images = vec![
            found("b", ImageStatus::Queued, 5),
            found("a", ImageStatus::Queued, 3),
            found("c", ImageStatus::Queued, 9),
        ];
        let expected = Decision::Use {
            image: found("a", ImageStatus::Queued, 3),
            extras: {
                let mut ids = vec![id("b"), id("c")];
                ids.sort();
                ids
            },
        };
        let mut reversed = images.clone();
        reversed.reverse();
        assert_eq!(decide(images, false), expected);
        assert_eq!(decide(reversed, true), expected);
    }

    #[test]
    fn same_second_falls_back_to_the_id() {
        let (x, y) = (
            found("x", ImageStatus::Queued, 4),
            found("y", ImageStatus::Queued, 4),
        );
        let first = if x.id < y.id { x.clone() } else { y.clone() };
        let other = if x.id < y.id { y.id } else { x.id };
        for list in [vec![x.clone(), y.clone()], vec![y, x]] {
            assert_eq!(
                decide(list, false),
                Decision::Use {
                    image: first.clone(),
                    extras: vec![other]
                }
            );
        }
    }

    #[test]
    fn one_past_queued_among_queued_is_kept_even_if_younger() {
        for status in [
            ImageStatus::Saving,
            ImageStatus::Active,
            ImageStatus::Killed,
        ] {
            let images = vec![
                found("old", ImageStatus::Queued, 1),
                found("busy", status.clone(), 7),
            ];
            assert_eq!(
                decide(images.clone(), false),
                Decision::Use {
                    image: found("busy", status.clone(), 7),
                    extras: vec![id("old")]
                },
                "{status:?}"
            );
            if status == ImageStatus::Killed {
                assert_eq!(
                    decide(images, true),
                    Decision::Replace {
                        killed: id("busy"),
                        extras: vec![id("old")]
                    }
                );
            }
        }
    }

    #[test]
    fn two_past_queued_is_a_conflict_naming_all() {
        for a in [
            ImageStatus::Saving,
            ImageStatus::Active,
            ImageStatus::Killed,
        ] {
            for b in [
                ImageStatus::Saving,
                ImageStatus::Active,
                ImageStatus::Killed,
            ] {
                let images = vec![
                    found("q", ImageStatus::Queued, 1),
                    found("a", a.clone(), 2),
                    found("b", b.clone(), 3),
                ];
                assert_eq!(
                    decide(images, true),
                    Decision::Conflict {
                        ids: vec![id("q"), id("a"), id("b")]
                    }
                );
            }
        }
    }

    #[test]
    fn an_image_without_a_creation_time_is_not_the_oldest() {
        let mut undated = found("u", ImageStatus::Queued, 0);
        undated.created_at = None;
        let dated = found("d", ImageStatus::Queued, 30);
        assert_eq!(
            decide(vec![undated.clone(), dated.clone()], false),
            Decision::Use {
                image: dated,
                extras: vec![undated.id]
            }
        );
    }
}
