//! The submission order of a run: when the preflight learned the objects' sizes, the largest
//! files go first ([`crate::preflight::schedule::largest_first`]), so the long IMS jobs start
//! early and the short ones fill the gaps at the end; the engine submits in plan order and
//! keeps its rate and active-job bounds. The engine's records come back in plan order and are
//! put back in manifest order before anything else reads them.

use crate::preflight::schedule::largest_first;
use crate::report::ImageRecord;
use crate::run::PlannedImage;

/// Where each planned image came from: `plan[i]` was manifest-order image `from[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reordered {
    from: Vec<usize>,
}

/// Orders the images largest first when any size is known (unknown sizes last, in manifest
/// order); `None` (and the images untouched) when no size is known.
pub fn largest_first_plan(images: Vec<PlannedImage>) -> (Vec<PlannedImage>, Option<Reordered>) {
    if images.iter().all(|image| image.size_bytes.is_none()) {
        return (images, None);
    }
    let from = largest_first(&images, |image| image.size_bytes);
    let mut slots: Vec<Option<PlannedImage>> = images.into_iter().map(Some).collect();
    let plan = from.iter().filter_map(|&i| slots[i].take()).collect();
    (plan, Some(Reordered { from }))
}

impl Reordered {
    /// Puts records in plan order back in manifest order.
    pub fn restore(&self, records: Vec<ImageRecord>) -> Vec<ImageRecord> {
        let mut slots: Vec<Option<ImageRecord>> = (0..records.len()).map(|_| None).collect();
        for (record, &origin) in records.into_iter().zip(&self.from) {
            if let Some(slot) = slots.get_mut(origin) {
                *slot = Some(record);
            }
        }
        slots.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ImageId;
    use crate::manifest::{ImageEntry, ImageFormat, ImageUrl};
    use crate::report::ImageOutcome;

    fn planned(id: &str, size: Option<u64>) -> PlannedImage {
        PlannedImage {
            entry: ImageEntry {
                image_id: ImageId::named(id),
                image_url: ImageUrl {
                    bucket: "bkt".into(),
                    object: format!("{id}.qcow2"),
                },
                name: None,
                format: ImageFormat::Qcow2,
                line: 1,
            },
            known_job_id: None,
            size_bytes: size,
        }
    }

    fn ids(images: &[PlannedImage]) -> Vec<ImageId> {
        images.iter().map(|i| i.entry.image_id).collect()
    }

    #[test]
    fn largest_go_first_and_records_come_back_in_manifest_order() {
        let images = vec![
            planned("a", Some(5)),
            planned("b", None),
            planned("c", Some(90)),
            planned("d", Some(40)),
        ];
        let (plan, order) = largest_first_plan(images);
        assert_eq!(ids(&plan), ["c", "d", "a", "b"].map(ImageId::named));
        let records: Vec<ImageRecord> = plan
            .iter()
            .map(|i| ImageRecord::for_entry(&i.entry, ImageOutcome::Registered))
            .collect();
        let restored = order.unwrap().restore(records);
        let back: Vec<_> = restored
            .iter()
            .map(|r| r.image_id.clone().unwrap())
            .collect();
        assert_eq!(
            back,
            ["a", "b", "c", "d"].map(|n| ImageId::named(n).to_string())
        );
    }

    #[test]
    fn without_sizes_the_manifest_order_stays() {
        let (plan, order) = largest_first_plan(vec![planned("a", None), planned("b", None)]);
        assert_eq!(ids(&plan), ["a", "b"].map(ImageId::named));
        assert_eq!(order, None);
    }
}
