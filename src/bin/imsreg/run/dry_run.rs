//! `imsreg run --dry-run`: what a run would do, without registering anything.
//!
//! The plan depends on the cloud (an `active` image is skipped, a `saving` one is polled), so a
//! dry run reads the current status of the images with read-only list calls, paced at
//! `query_rate` — the same credentials check a real run starts with. It never sends a
//! registration.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use imsreg::ims::{ErrorClass, ImageStatus, ImsApi, ImsError, ListImagesQuery};
use imsreg::manifest::{ImageEntry, InvalidEntry};
use imsreg::run::RunConfig;

/// Up to this many images are looked up one by one; more are learned from list pages.
const SINGLE_LOOKUP_MAX: usize = 5;
/// Page size of `GET /v2/cloudimages` (the API's default and documented size).
const PAGE_SIZE: u32 = 500;
/// Attempts per status call before the dry run gives up on retryable errors.
const MAX_ATTEMPTS: u32 = 5;

/// What a run would do with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `queued`: register it.
    Submit,
    /// `active`: already registered, nothing to do.
    Skip,
    /// `saving`: a registration is already running; poll it.
    Poll,
    /// `killed`, `deleted`, another status, or not visible: reported `failed`.
    Fail,
}

impl Action {
    pub fn of(status: Option<&ImageStatus>) -> Self {
        match status {
            Some(ImageStatus::Queued) => Action::Submit,
            Some(ImageStatus::Active) => Action::Skip,
            Some(ImageStatus::Saving) => Action::Poll,
            _ => Action::Fail,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Skip => "skip",
            Action::Poll => "poll",
            Action::Fail => "fail",
        }
    }
}

/// Reads the IMS status of every image (absent from the map: not visible in IMS).
pub async fn cloud_statuses<C: ImsApi>(
    client: &C,
    images: &[ImageEntry],
    query_rate: f64,
) -> Result<HashMap<String, ImageStatus>, ImsError> {
    let pause = Duration::from_secs_f64(1.0 / query_rate.max(0.001));
    let mut pace = tokio::time::interval(pause);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut statuses = HashMap::new();

    if images.len() <= SINGLE_LOOKUP_MAX {
        for entry in images {
            pace.tick().await;
            if let Some(info) = with_retries(|| client.get_image(&entry.image_id)).await? {
                statuses.insert(entry.image_id.clone(), info.status);
            }
        }
        return Ok(statuses);
    }

    let wanted: std::collections::HashSet<&str> =
        images.iter().map(|e| e.image_id.as_str()).collect();
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
                statuses.insert(info.id, info.status);
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

/// The plan as text for stdout. `statuses` is `None` when the cloud was not asked.
pub fn render(
    images: &[ImageEntry],
    invalid: &[InvalidEntry],
    statuses: &HashMap<String, ImageStatus>,
    config: &RunConfig,
    endpoint: &str,
) -> String {
    let actions: Vec<Action> = images
        .iter()
        .map(|e| Action::of(statuses.get(&e.image_id)))
        .collect();
    let count = |wanted: Action| actions.iter().filter(|a| **a == wanted).count();
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
    let _ = writeln!(out, "  would submit    {}", count(Action::Submit));
    let _ = writeln!(
        out,
        "  would skip      {} (already active)",
        count(Action::Skip)
    );
    let _ = writeln!(
        out,
        "  would poll      {} (already saving)",
        count(Action::Poll)
    );
    let _ = writeln!(
        out,
        "  would fail      {} (killed, deleted or not found in IMS)",
        count(Action::Fail)
    );
    if !invalid.is_empty() {
        let _ = writeln!(
            out,
            "  invalid         {} (skipped, --skip-invalid)",
            invalid.len()
        );
    }
    let _ = writeln!(out);
    for (entry, action) in images.iter().zip(&actions) {
        let status = statuses
            .get(&entry.image_id)
            .map_or("not found", ImageStatus::as_str);
        let name = entry
            .name
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<6} {}  {}  [{status}]{name}",
            action.label(),
            entry.image_id,
            entry.image_url
        );
    }
    for entry in invalid {
        let _ = writeln!(
            out,
            "  {:<6} {}  line {}: {}",
            "invalid",
            entry.image_id.as_deref().unwrap_or("(no image_id)"),
            entry.line,
            entry.problems.join("; ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsreg::manifest::{ImageFormat, ImageUrl};

    fn entry(id: &str) -> ImageEntry {
        ImageEntry {
            image_id: id.into(),
            image_url: ImageUrl {
                bucket: "bucket".into(),
                object: format!("{id}.qcow2"),
            },
            name: None,
            format: ImageFormat::Qcow2,
            line: 1,
        }
    }

    #[test]
    fn actions_follow_the_cloud_status() {
        assert_eq!(Action::of(Some(&ImageStatus::Queued)), Action::Submit);
        assert_eq!(Action::of(Some(&ImageStatus::Active)), Action::Skip);
        assert_eq!(Action::of(Some(&ImageStatus::Saving)), Action::Poll);
        assert_eq!(Action::of(Some(&ImageStatus::Killed)), Action::Fail);
        assert_eq!(Action::of(Some(&ImageStatus::Deleted)), Action::Fail);
        assert_eq!(Action::of(None), Action::Fail);
    }

    #[test]
    fn plan_counts_and_lists_every_image() {
        let images = [entry("a"), entry("b"), entry("c"), entry("d")];
        let statuses = HashMap::from([
            ("a".to_string(), ImageStatus::Queued),
            ("b".to_string(), ImageStatus::Active),
            ("c".to_string(), ImageStatus::Saving),
        ]);
        let config = RunConfig::resolve(&Default::default(), &Default::default());
        let text = render(&images, &[], &statuses, &config, "http://127.0.0.1:1");
        assert!(text.contains("would submit    1"));
        assert!(text.contains("would skip      1"));
        assert!(text.contains("would poll      1"));
        assert!(text.contains("would fail      1"));
        assert!(text.contains("submit a  bucket:a.qcow2  [queued]"));
        assert!(text.contains("fail   d  bucket:d.qcow2  [not found]"));
    }
}
