//! What the run will do with each image once its cloud status is known (pure; shared by the
//! engine and `--dry-run`).
//!
//! `active` -> already registered; `saving` -> being registered already: follow it, never
//! submit; `killed`/`deleted`/absent -> failed with the reason; `queued` -> submit. An image with
//! a job accepted by an earlier run (`known_job_id`) is followed, never submitted.

use std::collections::HashMap;

use crate::ims::ImageStatus;

use super::PlannedImage;

/// What the cloud told the status check about one image.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudStatus {
    /// The image is listed with this status.
    Found(ImageStatus),
    /// The image is not among the account's private images.
    Absent,
    /// The status could not be learned (the check gave up on an error).
    Unknown {
        code: Option<String>,
        message: String,
    },
}

impl CloudStatus {
    /// For [`super::RunEvent::StatusKnown`] and the dry-run listing.
    pub fn label(&self) -> &str {
        match self {
            CloudStatus::Found(status) => status.as_str(),
            CloudStatus::Absent => "absent",
            CloudStatus::Unknown { .. } => "unknown",
        }
    }
}

/// The result of the status check, by image ID.
pub type StatusMap = HashMap<String, CloudStatus>;

/// What the run does with one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Submit,
    /// Follow a job accepted earlier.
    FollowJob(String),
    /// The image is `saving` with no job ID known: follow the image's status.
    FollowImage,
    AlreadyRegistered,
    Fail {
        code: Option<String>,
        message: String,
    },
}

/// Decides what to do with one image. Without a status (dry run without a check), queued is
/// assumed.
pub fn action_for(image: &PlannedImage, status: Option<&CloudStatus>) -> Action {
    let status = match status {
        Some(CloudStatus::Found(status)) => status,
        Some(CloudStatus::Absent) => {
            return Action::Fail {
                code: None,
                message: "no private image with this ID is visible to the account; create \
                          it first (POST /v2/images) and check the project/region"
                    .into(),
            };
        }
        // A job accepted earlier is followed even when the image could not be looked at.
        Some(CloudStatus::Unknown { .. }) if image.known_job_id.is_some() => {
            return Action::FollowJob(image.known_job_id.clone().unwrap_or_default());
        }
        Some(CloudStatus::Unknown { code, message }) => {
            return Action::Fail {
                code: code.clone(),
                message: format!("could not check the image's status before submitting: {message}"),
            };
        }
        None => &ImageStatus::Queued,
    };
    match status {
        ImageStatus::Active => Action::AlreadyRegistered,
        ImageStatus::Killed => Action::Fail {
            code: None,
            message: "the image is `killed` (an earlier upload failed); delete it and create \
                      a new one"
                .into(),
        },
        ImageStatus::Deleted => Action::Fail {
            code: None,
            message: "the image is `deleted`".into(),
        },
        // A job known from an earlier run is followed whatever the image says meanwhile.
        _ if image.known_job_id.is_some() => {
            Action::FollowJob(image.known_job_id.clone().unwrap_or_default())
        }
        ImageStatus::Queued => Action::Submit,
        ImageStatus::Saving => Action::FollowImage,
        ImageStatus::Other(raw) => Action::Fail {
            code: None,
            message: format!("the image has an unexpected status `{raw}`; not submitting"),
        },
    }
}

/// What a run would do, for `--dry-run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Image IDs that would be submitted.
    pub submit: Vec<String>,
    /// Image IDs whose running registration would be followed (known job or `saving`).
    pub follow: Vec<String>,
    /// Image IDs already `active`: nothing to do.
    pub already_registered: Vec<String>,
    /// Image IDs that would be reported failed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Summarises the plan. Pass the status check's result when one was made (`--dry-run` may make
/// that read-only check); without it every image without a known job counts as to be submitted.
pub fn plan_summary(images: &[PlannedImage], statuses: Option<&StatusMap>) -> PlanSummary {
    let mut summary = PlanSummary::default();
    for image in images {
        let id = image.entry.image_id.clone();
        let status = statuses.and_then(|map| map.get(&image.entry.image_id));
        let status = match (statuses, status) {
            (Some(_), None) => Some(&CloudStatus::Absent),
            _ => status,
        };
        match action_for(image, status) {
            Action::Submit => summary.submit.push(id),
            Action::FollowJob(_) | Action::FollowImage => summary.follow.push(id),
            Action::AlreadyRegistered => summary.already_registered.push(id),
            Action::Fail { message, .. } => summary.failed.push((id, message)),
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::planned;

    #[test]
    fn actions_follow_the_image_status() {
        let fresh = planned("00000000-0000-0000-0000-000000000001", None);
        let known = planned("00000000-0000-0000-0000-000000000002", Some("job-2"));
        let found = |s: ImageStatus| CloudStatus::Found(s);
        assert_eq!(
            action_for(&fresh, Some(&found(ImageStatus::Queued))),
            Action::Submit
        );
        assert_eq!(action_for(&fresh, None), Action::Submit);
        assert_eq!(
            action_for(&fresh, Some(&found(ImageStatus::Active))),
            Action::AlreadyRegistered
        );
        assert_eq!(
            action_for(&fresh, Some(&found(ImageStatus::Saving))),
            Action::FollowImage
        );
        assert!(matches!(
            action_for(&fresh, Some(&found(ImageStatus::Killed))),
            Action::Fail { .. }
        ));
        assert!(matches!(
            action_for(&fresh, Some(&CloudStatus::Absent)),
            Action::Fail { message, .. } if message.contains("create it first")
        ));
        // A known job is followed, never submitted, even if the image still says queued.
        assert_eq!(
            action_for(&known, Some(&found(ImageStatus::Queued))),
            Action::FollowJob("job-2".into())
        );
        assert_eq!(
            action_for(&known, Some(&found(ImageStatus::Saving))),
            Action::FollowJob("job-2".into())
        );
        assert_eq!(
            action_for(&known, Some(&found(ImageStatus::Active))),
            Action::AlreadyRegistered
        );
    }

    #[test]
    fn summary_counts_each_kind() {
        let images = vec![
            planned("00000000-0000-0000-0000-000000000001", None),
            planned("00000000-0000-0000-0000-000000000002", None),
            planned("00000000-0000-0000-0000-000000000003", Some("j")),
            planned("00000000-0000-0000-0000-000000000004", None),
        ];
        let mut statuses = StatusMap::new();
        statuses.insert(
            images[0].entry.image_id.clone(),
            CloudStatus::Found(ImageStatus::Queued),
        );
        statuses.insert(
            images[1].entry.image_id.clone(),
            CloudStatus::Found(ImageStatus::Active),
        );
        statuses.insert(
            images[2].entry.image_id.clone(),
            CloudStatus::Found(ImageStatus::Saving),
        );
        let summary = plan_summary(&images, Some(&statuses));
        assert_eq!(summary.submit, vec![images[0].entry.image_id.clone()]);
        assert_eq!(summary.already_registered.len(), 1);
        assert_eq!(summary.follow.len(), 1);
        assert_eq!(summary.failed.len(), 1, "absent from the listing");

        let offline = plan_summary(&images, None);
        assert_eq!(offline.submit.len(), 3);
        assert_eq!(offline.follow.len(), 1);
    }
}
