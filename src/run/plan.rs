//! What the run will do with each image once its cloud status is known (pure; shared by the
//! engine and `--dry-run`).
//!
//! `active` -> already registered; `saving` -> being registered already: follow it, never
//! submit; `killed`/`deleted`/absent -> failed with the reason; `queued` -> submit; status not
//! learned -> unsettled (`unreachable`: no verdict, the next run looks again). An image with a
//! job accepted by an earlier run (`known_job_id`) is followed, never submitted.

use std::collections::HashMap;

use crate::ids::{ImageId, JobId};
use crate::ims::ImageStatus;

use crate::manifest::ImageEntry;

/// One image handed to the engine: a valid manifest entry, plus what an earlier run learned
/// about it (the state journal of a later issue fills `known_job_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedImage {
    pub entry: ImageEntry,
    /// A job already accepted for this image: poll it, never re-submit.
    pub known_job_id: Option<JobId>,
    /// The object's size in OBS, when the preflight learned it (sets the submission order).
    pub size_bytes: Option<u64>,
}

/// What the cloud told the status check about one image.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudStatus {
    /// The image is listed with this status.
    Found(ImageStatus),
    /// The image is not among the account's private images.
    Absent,
    /// The image is `queued` and IMS does not know the job the state journal recorded for it:
    /// nothing is running, so it is submitted like any queued image.
    QueuedWithoutJob,
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
            CloudStatus::QueuedWithoutJob => "queued",
            CloudStatus::Unknown { .. } => "unknown",
        }
    }
}

/// The result of the status check, by image ID.
pub type StatusMap = HashMap<ImageId, CloudStatus>;

/// What the run does with one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Submit,
    /// Follow a job accepted earlier.
    FollowJob(JobId),
    /// The image is `saving` with no job ID known: follow the image's status.
    FollowImage,
    AlreadyRegistered,
    /// IMS's own verdict: the image cannot be registered.
    Fail {
        code: Option<String>,
        message: String,
    },
    /// IMS could not tell (not reached, answer not understood): report it `unreachable`,
    /// record nothing final.
    Unsettled {
        code: Option<String>,
        message: String,
    },
}

/// Decides what to do with one image. Without a status (dry run without a check), queued is
/// assumed.
pub fn action_for(image: &PlannedImage, status: Option<&CloudStatus>) -> Action {
    let status = match status {
        Some(CloudStatus::Found(status)) => status,
        Some(CloudStatus::QueuedWithoutJob) => return Action::Submit,
        Some(CloudStatus::Absent) => {
            return Action::Fail {
                code: None,
                message: "no private image with this ID is visible to the account; create \
                          it first (POST /v2/images) and check the project/region"
                    .into(),
            };
        }
        // A job accepted earlier is followed even when the image could not be looked at.
        Some(CloudStatus::Unknown { .. }) if let Some(job_id) = &image.known_job_id => {
            return Action::FollowJob(job_id.clone());
        }
        // Not knowing is no verdict: the image stays unsettled for the next run.
        Some(CloudStatus::Unknown { code, message }) => {
            return Action::Unsettled {
                code: code.clone(),
                message: format!(
                    "could not learn the image's status from IMS, so nothing was submitted; the next run tries again: {message}"
                ),
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
        _ if let Some(job_id) = &image.known_job_id => Action::FollowJob(job_id.clone()),
        ImageStatus::Queued => Action::Submit,
        ImageStatus::Saving => Action::FollowImage,
        ImageStatus::Other(raw) => Action::Fail {
            code: None,
            message: format!("the image has an unexpected status `{raw}`; not submitting"),
        },
    }
}

/// True when the status check learned nothing at all from IMS: every image's status is
/// unknown (IMS not reached, or no answer understood). The run then stops before submitting
/// anything, and says so once.
pub fn unreachable(statuses: &StatusMap, images: usize) -> bool {
    images > 0
        && statuses.len() == images
        && statuses
            .values()
            .all(|status| matches!(status, CloudStatus::Unknown { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::{id, job_id, planned};

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
        let unknown = CloudStatus::Unknown {
            code: None,
            message: "could not reach IMS".into(),
        };
        assert!(
            matches!(action_for(&fresh, Some(&unknown)), Action::Unsettled { .. }),
            "not knowing is no verdict"
        );
        assert_eq!(
            action_for(&known, Some(&unknown)),
            Action::FollowJob(job_id("job-2"))
        );
        assert_eq!(
            action_for(&known, Some(&CloudStatus::QueuedWithoutJob)),
            Action::Submit,
            "a journaled job IMS does not know, with the image queued"
        );
        // A known job is followed, never submitted, even if the image still says queued.
        assert_eq!(
            action_for(&known, Some(&found(ImageStatus::Queued))),
            Action::FollowJob(job_id("job-2"))
        );
        assert_eq!(
            action_for(&known, Some(&found(ImageStatus::Saving))),
            Action::FollowJob(job_id("job-2"))
        );
        assert_eq!(
            action_for(&known, Some(&found(ImageStatus::Active))),
            Action::AlreadyRegistered
        );
    }

    #[test]
    fn unreachable_only_when_nothing_was_learned() {
        let unknown = || CloudStatus::Unknown {
            code: None,
            message: "connection refused".into(),
        };
        let mut statuses = StatusMap::new();
        assert!(!unreachable(&statuses, 0));
        statuses.insert(id(0), unknown());
        statuses.insert(id(1), unknown());
        assert!(unreachable(&statuses, 2));
        assert!(!unreachable(&statuses, 3), "an image not checked (stopped)");
        statuses.insert(id(2), CloudStatus::Absent);
        assert!(!unreachable(&statuses, 3), "IMS answered for one");
    }
}
