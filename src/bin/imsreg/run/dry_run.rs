//! `imsreg run --dry-run`: what a run would do, without registering anything.
//!
//! The plan depends on the cloud (an `active` image is skipped, a `saving` one is polled), so a
//! dry run reads the current status of the images with read-only calls, paced at `query_rate`
//! — the same credentials check a real run starts with — and asks the engine's own decision
//! ([`action_for`]) what it would do with each. It never sends a registration.

use std::fmt::Write as _;
use std::time::Duration;

use imsreg::ims::{ErrorClass, ImsApi, ImsError, ListImagesQuery};
use imsreg::manifest::InvalidEntry;
use imsreg::report::escape::printable;
use imsreg::run::{Action, CloudStatus, PlannedImage, RunConfig, StatusMap, action_for};

/// Up to this many images are looked up one by one; more are learned from list pages.
const SINGLE_LOOKUP_MAX: usize = 5;
/// Page size of `GET /v2/cloudimages` (the API's default and documented size).
const PAGE_SIZE: u32 = 500;
/// Attempts per status call before the dry run gives up on retryable errors.
const MAX_ATTEMPTS: u32 = 5;

/// Reads the IMS status of every image; images not visible in IMS are `Absent`.
pub async fn cloud_statuses<C: ImsApi>(
    client: &C,
    images: &[PlannedImage],
    query_rate: f64,
) -> Result<StatusMap, ImsError> {
    let pause = Duration::from_secs_f64(1.0 / query_rate.max(0.001));
    let mut pace = tokio::time::interval(pause);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut statuses = StatusMap::new();

    if images.len() <= SINGLE_LOOKUP_MAX {
        for entry in images.iter().map(|i| &i.entry) {
            pace.tick().await;
            let status = match with_retries(|| client.get_image(&entry.image_id)).await? {
                Some(info) => CloudStatus::Found(info.status),
                None => CloudStatus::Absent,
            };
            statuses.insert(entry.image_id.clone(), status);
        }
        return Ok(statuses);
    }

    let wanted: std::collections::HashSet<&str> =
        images.iter().map(|i| i.entry.image_id.as_str()).collect();
    let mut marker: Option<String> = None;
    loop {
        pace.tick().await;
        let query = ListImagesQuery {
            imagetype: Some("private".to_string()),
            marker: marker.clone(),
            limit: Some(PAGE_SIZE),
            ..ListImagesQuery::default()
        };
        let page = with_retries(|| client.list_images(&query)).await?;
        let full_page = page.images.len() >= PAGE_SIZE as usize;
        let next = page
            .page_info
            .as_ref()
            .and_then(|p| p.next_marker.clone())
            .or_else(|| page.images.last().map(|i| i.id.clone()));
        for info in page.images {
            if wanted.contains(info.id.as_str()) {
                statuses.insert(info.id, CloudStatus::Found(info.status));
            }
        }
        match next {
            Some(next) if full_page && marker.as_deref() != Some(next.as_str()) => {
                marker = Some(next)
            }
            _ => break,
        }
        if statuses.len() == wanted.len() {
            break;
        }
    }
    for image in images {
        statuses
            .entry(image.entry.image_id.clone())
            .or_insert(CloudStatus::Absent);
    }
    Ok(statuses)
}

/// Repeats a read-only call on retryable errors (429, 5xx, network) with a doubling pause.
async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, ImsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ImsError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                let hint = match err.class() {
                    ErrorClass::Retryable { retry_after, .. } if attempt < MAX_ATTEMPTS => {
                        retry_after
                    }
                    ErrorClass::Ambiguous | ErrorClass::FlowControl if attempt < MAX_ATTEMPTS => {
                        None
                    }
                    _ => return Err(err),
                };
                let delay = hint.unwrap_or(Duration::from_millis(500 * (1 << attempt)));
                tracing::info!(attempt, "status query failed, retrying: {err}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// The plan as text for stdout.
pub fn render(
    images: &[PlannedImage],
    settled: usize,
    invalid: &[InvalidEntry],
    statuses: &StatusMap,
    config: &RunConfig,
    endpoint: &str,
) -> String {
    let actions: Vec<Action> = images
        .iter()
        .map(|i| action_for(i, statuses.get(&i.entry.image_id)))
        .collect();
    let count = |wanted: fn(&Action) -> bool| actions.iter().filter(|a| wanted(a)).count();
    let mut out = String::new();
    let _ = writeln!(out, "Dry run: nothing will be registered.");
    let _ = writeln!(out, "  endpoint        {endpoint}");
    let _ = writeln!(
        out,
        "  settings        concurrency {}, max active jobs {}, submit rate {}/s, query rate {}/s, poll interval {}, job timeout {}",
        config.concurrency,
        config.max_active_jobs,
        config.submit_rate,
        config.query_rate,
        humantime::format_duration(config.poll_interval),
        humantime::format_duration(config.job_timeout)
    );
    let submit = count(|a| matches!(a, Action::Submit));
    let skip = count(|a| matches!(a, Action::AlreadyRegistered));
    let poll = count(|a| matches!(a, Action::FollowJob(_) | Action::FollowImage));
    let fail = count(|a| matches!(a, Action::Fail { .. }));
    let _ = writeln!(out, "  would submit    {submit}");
    let _ = writeln!(out, "  would skip      {skip} (already active)");
    let _ = writeln!(out, "  would poll      {poll} (already saving)");
    let _ = writeln!(
        out,
        "  would fail      {fail} (killed, deleted or not found in IMS)"
    );
    if settled > 0 {
        let _ = writeln!(
            out,
            "  settled         {settled} (registered or failed in an earlier run, per the state journal)"
        );
    }
    if !invalid.is_empty() {
        let _ = writeln!(
            out,
            "  invalid         {} (skipped, --skip-invalid)",
            invalid.len()
        );
    }
    let _ = writeln!(out);
    for (image, action) in images.iter().zip(&actions) {
        let entry = &image.entry;
        let status = statuses
            .get(&entry.image_id)
            .map_or("unknown", CloudStatus::label);
        let name = entry
            .name
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default();
        let (label, why) = match action {
            Action::Submit => ("submit", String::new()),
            Action::AlreadyRegistered => ("skip", String::new()),
            Action::FollowJob(job) => ("poll", format!(": job {job}")),
            Action::FollowImage => ("poll", String::new()),
            Action::Fail { message, .. } => ("fail", format!(": {message}")),
        };
        // One line per image, whatever the name, the journal or IMS says.
        let line = format!(
            "{label:<7} {}  {}  [{status}]{name}{why}",
            entry.image_id, entry.image_url
        );
        let _ = writeln!(out, "  {}", printable(&line));
    }
    for entry in invalid {
        let line = format!(
            "{:<7} {}  line {}: {}",
            "invalid",
            entry.image_id.as_deref().unwrap_or("(no image_id)"),
            entry.line,
            entry.problems.join("; ")
        );
        let _ = writeln!(out, "  {}", printable(&line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsreg::ims::ImageStatus;
    use imsreg::manifest::{ImageEntry, ImageFormat, ImageUrl};

    fn planned(id: &str) -> PlannedImage {
        PlannedImage {
            entry: ImageEntry {
                image_id: id.into(),
                image_url: ImageUrl {
                    bucket: "bucket".into(),
                    object: format!("{id}.qcow2"),
                },
                name: None,
                format: ImageFormat::Qcow2,
                line: 1,
            },
            known_job_id: None,
        }
    }

    #[test]
    fn plan_counts_and_lists_every_image() {
        let images = [planned("a"), planned("b"), planned("c"), planned("d")];
        let statuses = StatusMap::from([
            ("a".to_string(), CloudStatus::Found(ImageStatus::Queued)),
            ("b".to_string(), CloudStatus::Found(ImageStatus::Active)),
            ("c".to_string(), CloudStatus::Found(ImageStatus::Saving)),
            ("d".to_string(), CloudStatus::Absent),
        ]);
        let config = RunConfig::resolve(&Default::default(), &Default::default());
        let text = render(&images, 0, &[], &statuses, &config, "http://127.0.0.1:1");
        assert!(text.contains("would submit    1"), "{text}");
        assert!(text.contains("would skip      1"), "{text}");
        assert!(text.contains("would poll      1"), "{text}");
        assert!(text.contains("would fail      1"), "{text}");
        assert!(
            text.contains("submit  a  bucket:a.qcow2  [queued]"),
            "{text}"
        );
        assert!(
            text.contains("fail    d  bucket:d.qcow2  [absent]: "),
            "{text}"
        );
    }

    #[test]
    fn names_and_messages_cannot_forge_plan_lines() {
        let mut image = planned("a");
        image.entry.name = Some("web\n  skip    b  bucket:b.qcow2  [active]".into());
        let statuses = StatusMap::from([(
            "a".to_string(),
            CloudStatus::Found(ImageStatus::Other("queued\u{1b}[2J".into())),
        )]);
        let config = RunConfig::resolve(&Default::default(), &Default::default());
        let text = render(&[image], 0, &[], &statuses, &config, "x");
        assert!(!text.contains("\n  skip"), "{text}");
        assert!(text.contains("(web\\n  skip    b"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn invalid_entries_are_listed_with_their_problems() {
        let invalid = [InvalidEntry {
            line: 7,
            image_id: Some("nope".into()),
            image_url: None,
            name: None,
            problems: vec!["image_id: not a UUID".into()],
        }];
        let config = RunConfig::resolve(&Default::default(), &Default::default());
        let text = render(&[], 2, &invalid, &StatusMap::new(), &config, "x");
        assert!(text.contains("invalid         1"), "{text}");
        assert!(text.contains("settled         2"), "{text}");
        assert!(
            text.contains("invalid nope  line 7: image_id: not a UUID"),
            "{text}"
        );
    }
}
