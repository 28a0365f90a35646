//! `imsreg run --dry-run`: what a run would do, without registering anything.
//!
//! The plan depends on the cloud (an `active` image is skipped, a `saving` one is polled), so a
//! dry run reads the current status of the images with the engine's own status check
//! ([`crate::run::check_only`]: the same list pages or lookups, query lane, rate limit and
//! retries as a real run) and asks the engine's own decision ([`action_for`]) what it would
//! do with each. It never sends a registration and writes no report.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::report::escape::printable;

use crate::ids::ImageId;
use crate::manifest::{CreateEntry, InvalidEntry};
use crate::report::ImageRecord;
use crate::run::{
    Action, CloudStatus, EventSink, PlannedImage, RunConfig, StatusMap, action_for, check_only,
};
use crate::shard::Shard;

use super::create_stage::CreateStage;
use super::outcome::Verdict;
use super::prepare::Job;

/// A dry run's result: the plan, and whether it could be made.
#[derive(Debug)]
pub struct DryRunPlan {
    /// The images the engine would get (after the state journal), in manifest order.
    pub images: Vec<PlannedImage>,
    /// Their cloud status, by image ID.
    pub statuses: StatusMap,
    /// Entries the state journal settled (not checked again).
    pub settled: usize,
    /// Invalid entries (with `--skip-invalid`).
    pub invalid: Vec<InvalidEntry>,
    /// Entries the preflight failed (never submitted), in manifest order.
    pub preflight_failed: Vec<ImageRecord>,
    /// Entries without an `image_id` that no image's tag matches: a run would create them.
    pub to_create: Vec<CreateEntry>,
    /// The images found by their tag for entries imsreg creates (among `images`).
    pub created_images: HashSet<ImageId>,
    pub config: RunConfig,
    pub endpoint: String,
    /// `--shard K/N`: the plan is that shard's.
    pub shard: Option<Shard>,
    /// Each region's (and project's) endpoint and settings, when the manifest spans more than
    /// one (`config` and `endpoint` are then the first one's).
    pub regions: Vec<RegionPlan>,
    /// `AllRegistered` when the plan was made; `Unreachable` or `CredentialsRejected` when IMS
    /// could not tell.
    pub verdict: Verdict,
}

/// Where one region's entries would go, and with which settings.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    pub region: Option<String>,
    pub endpoint: String,
    pub config: RunConfig,
}

impl DryRunPlan {
    /// One plan of the plans of each region (and project): the images in manifest order (the
    /// preflight failures region by region), the counts added, the first verdict that is not a
    /// success.
    pub fn merge(plans: Vec<DryRunPlan>) -> DryRunPlan {
        let mut plans = plans.into_iter();
        let Some(mut merged) = plans.next() else {
            return DryRunPlan::empty();
        };
        let rest: Vec<DryRunPlan> = plans.collect();
        if rest.is_empty() {
            // One region (or none): the plan's own endpoint and settings say it all.
            merged.regions.clear();
            return merged;
        }
        for plan in rest {
            merged.regions.extend(plan.regions);
            merged.images.extend(plan.images);
            merged.statuses.extend(plan.statuses);
            merged.settled += plan.settled;
            merged.invalid.extend(plan.invalid);
            merged.preflight_failed.extend(plan.preflight_failed);
            merged.to_create.extend(plan.to_create);
            merged.created_images.extend(plan.created_images);
            if merged.verdict == Verdict::AllRegistered {
                merged.verdict = plan.verdict;
            }
        }
        merged.images.sort_by_key(|image| image.entry.line);
        merged.to_create.sort_by_key(|entry| entry.line);
        merged
    }

    fn empty() -> DryRunPlan {
        DryRunPlan {
            images: Vec::new(),
            statuses: StatusMap::new(),
            settled: 0,
            invalid: Vec::new(),
            preflight_failed: Vec::new(),
            to_create: Vec::new(),
            created_images: HashSet::new(),
            config: RunConfig::resolve(&Default::default(), &Default::default()),
            endpoint: String::new(),
            regions: Vec::new(),
            shard: None,
            verdict: Verdict::AllRegistered,
        }
    }

    /// The plan as text for stdout.
    pub fn render(&self) -> String {
        let mut text = render(
            &Listed {
                images: &self.images,
                settled: self.settled,
                invalid: &self.invalid,
                preflight_failed: &self.preflight_failed,
                to_create: &self.to_create,
                created_images: &self.created_images,
            },
            &self.statuses,
            &self.config,
            &self.endpoint,
            self.shard,
        );
        if !self.regions.is_empty() {
            let mut lines = String::new();
            for region in &self.regions {
                let config = &region.config;
                let _ = writeln!(
                    lines,
                    "  region          {} at {}: concurrency {}, max active jobs {}, submit rate {}/s, query rate {}/s",
                    printable(region.region.as_deref().unwrap_or("(none)")),
                    printable(&region.endpoint),
                    config.concurrency,
                    config.max_active_jobs,
                    config.submit_rate,
                    config.query_rate
                );
            }
            // After the endpoint and settings lines (the first three).
            let at = text
                .match_indices('\n')
                .nth(2 + usize::from(self.shard.is_some()))
                .map_or(text.len(), |(at, _)| at + 1);
            text.insert_str(at, &lines);
        }
        text
    }
}

/// Reads the cloud status of the job's images and plans.
pub async fn plan(
    job: &mut Job,
    created: &CreateStage,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> DryRunPlan {
    let images = job.journal.take_images();
    let client = Arc::new(job.target.client.clone());
    let check = check_only(client, &images, &job.config, sink, cancel).await;
    let verdict = if check.auth_failed {
        Verdict::CredentialsRejected
    } else if check.unreachable {
        Verdict::Unreachable
    } else {
        Verdict::AllRegistered
    };
    DryRunPlan {
        settled: job.journal.settled(),
        preflight_failed: job.journal.preflight_failed().cloned().collect(),
        images,
        statuses: check.statuses,
        to_create: created.to_create.clone(),
        created_images: created.images.clone(),
        invalid: std::mem::take(&mut job.invalid),
        config: job.config.clone(),
        endpoint: job.target.endpoint.clone(),
        shard: job.shard,
        regions: vec![RegionPlan {
            region: job.key.region.clone(),
            endpoint: job.target.endpoint.clone(),
            config: job.config.clone(),
        }],
        verdict,
    }
}

/// What the plan lists besides the cloud statuses.
struct Listed<'a> {
    images: &'a [PlannedImage],
    settled: usize,
    invalid: &'a [InvalidEntry],
    preflight_failed: &'a [ImageRecord],
    to_create: &'a [CreateEntry],
    created_images: &'a HashSet<ImageId>,
}

/// The plan as text for stdout.
fn render(
    listed: &Listed<'_>,
    statuses: &StatusMap,
    config: &RunConfig,
    endpoint: &str,
    shard: Option<Shard>,
) -> String {
    let Listed {
        images,
        settled,
        invalid,
        preflight_failed,
        to_create,
        created_images,
    } = *listed;
    let actions: Vec<Action> = images
        .iter()
        .map(|i| action_for(i, statuses.get(&i.entry.image_id)))
        .collect();
    let count = |wanted: fn(&Action) -> bool| actions.iter().filter(|a| wanted(a)).count();
    let mut out = String::new();
    let _ = writeln!(out, "Dry run: nothing will be registered.");
    let _ = writeln!(out, "  endpoint        {endpoint}");
    if let Some(shard) = shard {
        let _ = writeln!(
            out,
            "  shard           {shard} ({}; its share of the quota below)",
            crate::shard::SCHEME
        );
    }
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
    let unsettled = count(|a| matches!(a, Action::Unsettled { .. }));
    if !to_create.is_empty() || !created_images.is_empty() {
        let _ = writeln!(
            out,
            "  would create    {} (no image carries their imsreg-key tag yet)",
            to_create.len()
        );
        let _ = writeln!(
            out,
            "  found           {} (created by imsreg before, found by their tag; planned below)",
            created_images.len()
        );
    }
    let _ = writeln!(out, "  would submit    {submit}");
    let _ = writeln!(out, "  would skip      {skip} (already active)");
    let _ = writeln!(out, "  would poll      {poll} (already saving)");
    let _ = writeln!(
        out,
        "  would fail      {fail} (killed, deleted or not found in IMS)"
    );
    if unsettled > 0 {
        let _ = writeln!(
            out,
            "  unknown         {unsettled} (IMS could not tell; a run would not submit them)"
        );
    }
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
    if !preflight_failed.is_empty() {
        let _ = writeln!(
            out,
            "  preflight       {} failed (would not be submitted: IMS would fail them)",
            preflight_failed.len()
        );
    }
    let _ = writeln!(out);
    for (image, action) in images.iter().zip(&actions) {
        let entry = &image.entry;
        let status = statuses
            .get(&entry.image_id)
            .map_or("unknown", CloudStatus::label);
        let created = if created_images.contains(&entry.image_id) {
            ", created by imsreg"
        } else {
            ""
        };
        let name = match entry.name.as_deref() {
            Some(n) => format!("  ({n}{created})"),
            None => String::new(),
        };
        let (label, why) = match action {
            Action::Submit => ("submit", String::new()),
            Action::AlreadyRegistered => ("skip", String::new()),
            Action::FollowJob(job) => ("poll", format!(": job {job}")),
            Action::FollowImage => ("poll", String::new()),
            Action::Fail { message, .. } => ("fail", format!(": {message}")),
            Action::Unsettled { message, .. } => ("unknown", format!(": {message}")),
        };
        // One line per image, whatever the name, the journal or IMS says.
        let line = format!(
            "{label:<7} {}  {}  [{status}]{name}{why}",
            entry.image_id, entry.image_url
        );
        let _ = writeln!(out, "  {}", printable(&line));
    }
    for entry in to_create {
        let line = format!(
            "{:<7} {:<36}  {}  ({}, line {})",
            "create", "-", entry.image_url, entry.name, entry.line
        );
        let _ = writeln!(out, "  {}", printable(&line));
    }
    for record in preflight_failed {
        let _ = writeln!(
            out,
            "  {:<7} {}  {}  {}",
            "refuse",
            record.image_id.as_deref().unwrap_or("-"),
            record.image_url.as_deref().unwrap_or("-"),
            record.error_message.as_deref().unwrap_or("")
        );
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
    use crate::ids::ImageId;
    use crate::ims::ImageStatus;
    use crate::manifest::{ImageEntry, ImageFormat, ImageUrl};

    /// The test image `name` (one hexadecimal digit), and its ID.
    fn id(name: &str) -> ImageId {
        ImageId::parse(&format!("00000000-0000-0000-0000-{name:0>12}")).unwrap()
    }

    fn planned(name: &str) -> PlannedImage {
        PlannedImage {
            entry: ImageEntry {
                image_id: id(name),
                image_url: ImageUrl {
                    bucket: "bucket".into(),
                    object: format!("{name}.qcow2"),
                },
                name: None,
                format: ImageFormat::Qcow2,
                line: 1,
            },
            known_job_id: None,
            size_bytes: None,
        }
    }

    #[test]
    fn plan_counts_and_lists_every_image() {
        let images = [planned("a"), planned("b"), planned("c"), planned("d")];
        let statuses = StatusMap::from([
            (id("a"), CloudStatus::Found(ImageStatus::Queued)),
            (id("b"), CloudStatus::Found(ImageStatus::Active)),
            (id("c"), CloudStatus::Found(ImageStatus::Saving)),
            (id("d"), CloudStatus::Absent),
        ]);
        let config = RunConfig::resolve(&Default::default(), &Default::default());
        let listed = Listed {
            images: &images,
            settled: 0,
            invalid: &[],
            preflight_failed: &[],
            to_create: &[],
            created_images: &HashSet::new(),
        };
        let text = render(&listed, &statuses, &config, "http://127.0.0.1:1", None);
        assert!(text.contains("would submit    1"), "{text}");
        assert!(text.contains("would skip      1"), "{text}");
        assert!(text.contains("would poll      1"), "{text}");
        assert!(text.contains("would fail      1"), "{text}");
        assert!(
            text.contains("submit  00000000-0000-0000-0000-00000000000a  bucket:a.qcow2  [queued]"),
            "{text}"
        );
        assert!(
            text.contains(
                "fail    00000000-0000-0000-0000-00000000000d  bucket:d.qcow2  [absent]: "
            ),
            "{text}"
        );
    }

    #[test]
    fn names_and_messages_cannot_forge_plan_lines() {
        let mut image = planned("a");
        image.entry.name = Some("web\n  skip    b  bucket:b.qcow2  [active]".into());
        let statuses = StatusMap::from([(
            id("a"),
            CloudStatus::Found(ImageStatus::Other("queued\u{1b}[2J".into())),
        )]);
        let config = RunConfig::resolve(&Default::default(), &Default::default());
        let listed = Listed {
            images: &[image],
            settled: 0,
            invalid: &[],
            preflight_failed: &[],
            to_create: &[],
            created_images: &HashSet::new(),
        };
        let text = render(&listed, &statuses, &config, "x", None);
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
        let mut refused = ImageRecord::for_entry(
            &planned("e").entry,
            crate::report::ImageOutcome::PreflightFailed,
        );
        refused.error_message = Some("cold".into());
        let listed = Listed {
            images: &[],
            settled: 2,
            invalid: &invalid,
            preflight_failed: &[refused],
            to_create: &[],
            created_images: &HashSet::new(),
        };
        let text = render(&listed, &StatusMap::new(), &config, "x", "2/3".parse().ok());
        assert!(text.contains("preflight       1 failed"), "{text}");
        let refused_line = format!("refuse  {}  bucket:", id("e"));
        assert!(text.contains(&refused_line), "{text}");
        assert!(text.contains("cold"), "{text}");
        assert!(text.contains("invalid         1"), "{text}");
        assert!(text.contains("settled         2"), "{text}");
        assert!(text.contains("shard           2/3 (hash-v1"), "{text}");
        assert!(
            text.contains("invalid nope  line 7: image_id: not a UUID"),
            "{text}"
        );
    }
}
