//! Per-image state for the progress tally, looked up by image ID from the engine's events.
//!
//! A 100,000-image run would spend about 8 MB on a `HashMap<String, _>` of cloned IDs. Manifest
//! IDs are lower-case UUIDs, so they are kept as sorted 16-byte numbers (binary search, no
//! allocation per image); any other ID (tests, hand-made plans) keeps its text in a map.

use std::collections::HashMap;

use uuid::Uuid;

/// A value per image ID; duplicate IDs share one value, as map keys would.
#[derive(Debug)]
pub struct ByImageId<T> {
    /// Sorted, without duplicates; `values[i]` belongs to `uuids[i]`.
    uuids: Vec<u128>,
    values: Vec<T>,
    others: HashMap<String, T>,
}

impl<T: Copy> ByImageId<T> {
    /// Every ID starts at `initial`.
    pub fn new(ids: impl IntoIterator<Item = String>, initial: T) -> Self {
        let mut uuids = Vec::new();
        let mut others = HashMap::new();
        for id in ids {
            match canonical_uuid(&id) {
                Some(uuid) => uuids.push(uuid),
                None => {
                    others.insert(id, initial);
                }
            }
        }
        uuids.sort_unstable();
        uuids.dedup();
        uuids.shrink_to_fit();
        let values = vec![initial; uuids.len()];
        ByImageId {
            uuids,
            values,
            others,
        }
    }

    pub fn len(&self) -> usize {
        self.uuids.len() + self.others.len()
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        match canonical_uuid(id) {
            Some(uuid) => {
                let index = self.uuids.binary_search(&uuid).ok()?;
                self.values.get_mut(index)
            }
            None => self.others.get_mut(id),
        }
    }
}

/// The ID as a number when it is a UUID written the way manifests hold them (lower-case,
/// hyphenated), so that two different texts never share a number.
fn canonical_uuid(id: &str) -> Option<u128> {
    let uuid = Uuid::try_parse(id).ok()?;
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut text) == id).then(|| uuid.as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_other_ids_are_found() {
        let lower = "0f3c1a2e-0001-4a2b-9c3d-000000000001".to_string();
        let ids = [lower.clone(), "plain".into(), lower.clone()];
        let mut stages = ByImageId::new(ids, 0u8);
        assert_eq!(stages.len(), 2, "duplicates count once");
        *stages.get_mut(&lower).unwrap() = 7;
        *stages.get_mut("plain").unwrap() = 3;
        assert_eq!(stages.get_mut(&lower).copied(), Some(7));
        assert_eq!(stages.get_mut("plain").copied(), Some(3));
        // The same UUID in other spellings is another ID.
        assert_eq!(stages.get_mut(&lower.to_uppercase()), None);
        assert_eq!(stages.get_mut(&lower.replace('-', "")), None);
        assert_eq!(stages.get_mut("0f3c1a2e-0002-4a2b-9c3d-000000000002"), None);
    }
}
