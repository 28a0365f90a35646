//! What a person watching `imsreg run` sees while it works: the binary's [`EventSink`].
//!
//! On a terminal it draws an indicatif display (one overall bar with queued / submitted /
//! registered / failed counts, the current submission and completion rates and an ETA, plus a
//! bar per running image where IMS reports a percentage) and logs only what needs attention.
//! Off a terminal, or with `--no-progress`, there are no bars and every state change is one
//! log line at info level. The engine never touches the terminal itself.
//!
//! When the preflight learned the sizes, the overall bar counts bytes (those of finished
//! images plus the reported share of running ones), so its ETA follows the bytes, not the
//! image count: a run that starts with its largest files has few images done early on.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use imsreg::ids::ImageId;
use imsreg::ims::ImageStatus;
use imsreg::job::JobObserver;
use imsreg::manifest::{self, Manifest};
use imsreg::preflight::{self, PreflightReport};
use imsreg::report::ImageOutcome;
use imsreg::run::{CloudStatus, EventSink, ImageResult, PlannedImage, RunConfig, RunEvent};

use super::LogFormat;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// At most this many per-image bars at once; other running images only count.
const MAX_JOB_BARS: usize = 8;

/// Rates are averaged over this trailing window.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Where one image stands, as far as the events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not accepted by IMS yet (includes calls in flight and retries).
    Queued,
    /// Accepted, or found `saving`: a job runs in the cloud.
    InCloud,
    Done(ImageOutcome),
}

/// One image's stage, size (0 when unknown) and last reported percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    stage: Stage,
    size: u64,
    percent: u8,
}

/// Counts per stage, fed by events; pure bookkeeping, unit-tested.
/// Counters move with each stage change (O(1) per event, whatever the number of images).
#[derive(Debug)]
pub struct Tally {
    started: Instant,
    total: usize,
    stages: HashMap<ImageId, Slot>,
    /// The stage counters; the rates are filled in by [`Tally::counts`].
    counts: Counts,
    submissions: VecDeque<Instant>,
    completions: VecDeque<Instant>,
}

/// A snapshot of the tally for display.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub queued: usize,
    pub in_cloud: usize,
    pub registered: usize,
    pub failed: usize,
    pub other_done: usize,
    pub throttled: u64,
    pub retries: u64,
    pub submits_per_s: f64,
    pub done_per_s: f64,
    /// Bytes of the images whose size is known, of those finished (any outcome), of those
    /// registered, and the finished bytes plus the reported share of running images.
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_registered: u64,
    pub bytes_progress: u64,
}

impl Counts {
    pub fn done(&self) -> usize {
        self.registered + self.failed + self.other_done
    }
}

impl Tally {
    pub fn new(image_ids: impl IntoIterator<Item = ImageId>, now: Instant) -> Self {
        let initial = Slot {
            stage: Stage::Queued,
            size: 0,
            percent: 0,
        };
        let stages: HashMap<ImageId, Slot> =
            image_ids.into_iter().map(|id| (id, initial)).collect();
        Tally {
            started: now,
            total: stages.len(),
            counts: Counts {
                queued: stages.len(),
                ..Counts::default()
            },
            stages,
            submissions: VecDeque::new(),
            completions: VecDeque::new(),
        }
    }

    /// Applies one event. Unknown image IDs and repeated events change nothing twice.
    /// Records an image's size (from the preflight), counted in the byte totals.
    pub fn set_size(&mut self, image_id: &ImageId, size: u64) {
        if let Some(slot) = self.stages.get_mut(image_id) {
            self.counts.bytes_total = self.counts.bytes_total - slot.size + size;
            slot.size = size;
        }
    }

    pub fn apply(&mut self, event: &RunEvent, now: Instant) {
        match event {
            RunEvent::Progress { image_id, percent } => self.progress(image_id, *percent),
            RunEvent::StatusKnown {
                image_id,
                status: CloudStatus::Found(ImageStatus::Saving),
            } => {
                self.advance(image_id, Stage::InCloud);
            }
            RunEvent::Submitted { image_id, .. } => {
                let first_time = self.advance(image_id, Stage::InCloud);
                if first_time {
                    self.submissions.push_back(now);
                }
            }
            RunEvent::Finished { result, .. }
                if self.advance(&result.image_id, Stage::Done(result.outcome)) =>
            {
                self.completions.push_back(now);
            }
            RunEvent::Throttled { .. } => self.counts.throttled += 1,
            RunEvent::Retrying { .. } => self.counts.retries += 1,
            _ => {}
        }
    }

    /// A running image's share of its bytes, as IMS reports its percentage.
    fn progress(&mut self, image_id: &ImageId, percent: f64) {
        let Some(slot) = self.stages.get_mut(image_id) else {
            return;
        };
        if matches!(slot.stage, Stage::Done(_)) {
            return;
        }
        let percent = percent.clamp(0.0, 100.0).round() as u8;
        let share = |size: u64, percent: u8| size / 100 * u64::from(percent);
        self.counts.bytes_progress =
            self.counts.bytes_progress - share(slot.size, slot.percent) + share(slot.size, percent);
        slot.percent = percent;
    }

    /// Moves an image forward (never back); true when its stage changed.
    fn advance(&mut self, image_id: &ImageId, to: Stage) -> bool {
        let Some(slot) = self.stages.get_mut(image_id) else {
            return false;
        };
        let forward = matches!(
            (slot.stage, to),
            (Stage::Queued, Stage::InCloud) | (Stage::Queued | Stage::InCloud, Stage::Done(_))
        );
        if !forward {
            return false;
        }
        let from = std::mem::replace(&mut slot.stage, to);
        let (size, percent) = (slot.size, slot.percent);
        if let Stage::Done(outcome) = to {
            let counts = &mut self.counts;
            counts.bytes_progress = counts.bytes_progress - size / 100 * u64::from(percent) + size;
            counts.bytes_done += size;
            if outcome.is_success() {
                counts.bytes_registered += size;
            }
        }
        *self.counter(from) -= 1;
        *self.counter(to) += 1;
        true
    }

    fn counter(&mut self, stage: Stage) -> &mut usize {
        match stage {
            Stage::Queued => &mut self.counts.queued,
            Stage::InCloud => &mut self.counts.in_cloud,
            Stage::Done(outcome) if outcome.is_success() => &mut self.counts.registered,
            Stage::Done(ImageOutcome::Failed) => &mut self.counts.failed,
            Stage::Done(_) => &mut self.counts.other_done,
        }
    }

    pub fn counts(&mut self, now: Instant) -> Counts {
        let mut counts = self.counts.clone();
        let window = now
            .saturating_duration_since(self.started)
            .min(RATE_WINDOW)
            .as_secs_f64()
            .max(1.0);
        counts.submits_per_s = trailing_count(&mut self.submissions, now) as f64 / window;
        counts.done_per_s = trailing_count(&mut self.completions, now) as f64 / window;
        counts
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// Drops instants older than the rate window and counts the rest.
fn trailing_count(instants: &mut VecDeque<Instant>, now: Instant) -> usize {
    while instants
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > RATE_WINDOW)
    {
        instants.pop_front();
    }
    instants.len()
}

/// The one-line status shown next to the overall bar.
pub fn status_line(counts: &Counts) -> String {
    let mut line = format!(
        "{} queued · {} submitted · {} registered · {} failed",
        counts.queued, counts.in_cloud, counts.registered, counts.failed
    );
    if counts.bytes_total > 0 {
        line.push_str(&format!(
            " · {} images done · {} registered",
            counts.done(),
            preflight::render::human_bytes(counts.bytes_registered)
        ));
    }
    if counts.other_done > 0 {
        line.push_str(&format!(" · {} other", counts.other_done));
    }
    line.push_str(&format!(
        " · {:.1} submits/s · {:.1} done/s",
        counts.submits_per_s, counts.done_per_s
    ));
    if counts.throttled > 0 {
        line.push_str(&format!(" · throttled {}x", counts.throttled));
    }
    line
}

/// The terminal display, present only on a TTY without `--no-progress`.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    jobs: HashMap<ImageId, ProgressBar>,
}

struct Inner {
    tally: Tally,
    bars: Option<Bars>,
}

/// The binary's [`JobObserver`]: manifest diagnostics, then progress bars and/or log lines.
pub struct UiSink {
    inner: Mutex<Inner>,
    multi: MultiProgress,
    /// Labels (name, else the image ID) for per-image bars; empty without bars.
    labels: OnceLock<HashMap<ImageId, String>>,
    /// True when bars are drawn: routine state changes then go to debug level.
    quiet: bool,
    log_format: LogFormat,
}

impl UiSink {
    /// `multi` is the display the logger also writes through; pass `show_bars = false` to get
    /// log lines only. The bars appear when the engine starts.
    pub fn new(multi: &MultiProgress, show_bars: bool, log_format: LogFormat) -> Self {
        UiSink {
            inner: Mutex::new(Inner {
                tally: Tally::new(Vec::new(), Instant::now()),
                bars: None,
            }),
            multi: multi.clone(),
            labels: OnceLock::new(),
            quiet: show_bars,
            log_format,
        }
    }

    fn start_display(&self, images: &[PlannedImage]) {
        let mut tally = Tally::new(images.iter().map(|i| i.entry.image_id), Instant::now());
        for image in images {
            if let Some(size) = image.size_bytes {
                tally.set_size(&image.entry.image_id, size);
            }
        }
        let show_bars = self.quiet;
        let by_bytes = tally.counts.bytes_total > 0;
        let bars = show_bars.then(|| {
            let (length, template) = if by_bytes {
                (
                    tally.counts.bytes_total,
                    "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {binary_bytes}/{binary_total_bytes} done, ETA {eta}\n  {msg}",
                )
            } else {
                (
                    tally.total() as u64,
                    "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} done, ETA {eta}\n  {msg}",
                )
            };
            let overall = self.multi.add(ProgressBar::new(length));
            overall.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(120));
            Bars {
                multi: self.multi.clone(),
                overall,
                jobs: HashMap::new(),
            }
        });
        // Only per-image bars show labels.
        let shown = if show_bars { images } else { &[] };
        let labels = shown
            .iter()
            .map(|i| {
                let label = i
                    .entry
                    .name
                    .clone()
                    .unwrap_or_else(|| i.entry.image_id.to_string());
                (i.entry.image_id, label)
            })
            .collect();
        let _ = self.labels.set(labels);
        if let Ok(mut inner) = self.inner.lock() {
            *inner = Inner { tally, bars };
        }
    }

    /// Removes the bars from the screen (before the final summary, or on a second signal).
    pub fn clear(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        // Nothing is displayed any more: the per-image stages need not outlive the display.
        inner.tally = Tally::new(Vec::new(), inner.tally.started);
        if let Some(bars) = inner.bars.take() {
            for (_, bar) in bars.jobs {
                bar.finish_and_clear();
            }
            bars.overall.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }

    fn update_display(&self, inner: &mut Inner, event: &RunEvent) {
        let now = Instant::now();
        inner.tally.apply(event, now);
        let counts = inner.tally.counts(now);
        let Some(bars) = inner.bars.as_mut() else {
            return;
        };
        bars.overall.set_position(if counts.bytes_total > 0 {
            counts.bytes_progress
        } else {
            counts.done() as u64
        });
        bars.overall.set_message(status_line(&counts));
        match event {
            RunEvent::CheckingStatus { images } => {
                bars.overall
                    .set_message(format!("checking the status of {images} images in IMS"));
            }
            RunEvent::Progress { image_id, percent } => {
                let label = self
                    .labels
                    .get()
                    .and_then(|labels| labels.get(image_id))
                    .cloned()
                    .unwrap_or_default();
                if !bars.jobs.contains_key(image_id) && bars.jobs.len() < MAX_JOB_BARS {
                    let bar = bars.multi.add(ProgressBar::new(100));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix:<36!} {bar:30.green/white} {pos:>3}%",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(label);
                    bars.jobs.insert(*image_id, bar);
                }
                if let Some(bar) = bars.jobs.get(image_id) {
                    bar.set_position(percent.clamp(0.0, 100.0).round() as u64);
                }
            }
            RunEvent::Finished { result, .. } => {
                if let Some(bar) = bars.jobs.remove(&result.image_id) {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}

impl EventSink for UiSink {
    fn event(&self, event: &RunEvent) {
        log_event(event, self.quiet);
        if let Ok(mut inner) = self.inner.lock() {
            self.update_display(&mut inner, event);
        }
    }
}

impl JobObserver for UiSink {
    fn manifest_checked(&self, manifest: &Manifest) {
        print_diagnostics(manifest, self.log_format);
    }

    fn preflight_starting(&self, entries: usize, endpoint: &str) {
        tracing::info!(entries, endpoint, "preflight: checking the objects in OBS");
    }

    fn preflight_finished(&self, manifest: &str, report: &PreflightReport) {
        print_preflight(manifest, report, self.log_format);
    }

    fn creating_images(&self, entries: usize) {
        tracing::info!(
            entries,
            "looking up the images of the entries without image_id (by their imsreg-key tag); creating those not found"
        );
    }

    fn images_created(&self, created: usize, found: usize, settled: usize) {
        tracing::info!(
            created,
            found,
            not_created = settled,
            "images to create: done"
        );
    }

    fn engine_starting(&self, images: &[PlannedImage], _config: &RunConfig) {
        self.start_display(images);
    }
}

/// The preflight's problems on stderr, one `FILE:LINE: ...` line each, then its summary (as
/// log events in JSON mode).
fn print_preflight(manifest: &str, report: &PreflightReport, format: LogFormat) {
    let problems = preflight::render::problems(manifest, &report.verdicts);
    match format {
        LogFormat::Text => {
            let mut stderr = anstream::stderr().lock();
            for problem in &problems {
                let _ = writeln!(stderr, "{}", preflight::render::Styled(problem));
            }
            let _ = writeln!(stderr, "{}", preflight::render::summary(manifest, report));
        }
        LogFormat::Json => {
            for p in &problems {
                match p.severity {
                    manifest::Severity::Error => tracing::error!(
                        file = %p.file, line = p.line, image_id = %p.image_id, check = p.check,
                        "preflight: {}", p.message
                    ),
                    manifest::Severity::Warning => tracing::warn!(
                        file = %p.file, line = p.line, image_id = %p.image_id, check = p.check,
                        "preflight: {}", p.message
                    ),
                }
            }
        }
    }
}

/// The manifest's diagnostics on stderr (as log events in JSON mode, so every stderr line
/// stays JSON).
fn print_diagnostics(manifest: &Manifest, format: LogFormat) {
    let mut stderr = anstream::stderr().lock();
    for diagnostic in &manifest.diagnostics {
        match format {
            LogFormat::Text => {
                let _ = writeln!(stderr, "{}", manifest::render::Styled(diagnostic));
            }
            LogFormat::Json => log_diagnostic(diagnostic),
        }
    }
}

fn log_diagnostic(d: &manifest::Diagnostic) {
    match d.severity {
        manifest::Severity::Error => tracing::error!(
            file = %d.file, line = d.line, column = d.column, field = %d.field,
            "manifest: {}", d.message
        ),
        manifest::Severity::Warning => tracing::warn!(
            file = %d.file, line = d.line, column = d.column, field = %d.field,
            "manifest: {}", d.message
        ),
    }
}

/// Routine state changes: info without bars, debug under bars (the bars show them).
macro_rules! state_change {
    ($quiet:expr, $($arg:tt)+) => {
        if $quiet { tracing::debug!($($arg)+) } else { tracing::info!($($arg)+) }
    };
}

/// One log line per state change; anything needing attention at warn or error.
fn log_event(event: &RunEvent, quiet: bool) {
    match event {
        RunEvent::CheckingStatus { images } => {
            state_change!(
                quiet,
                images,
                "checking the current status of the images in IMS"
            );
        }
        RunEvent::StatusKnown {
            image_id,
            status:
                status @ (CloudStatus::Found(ImageStatus::Queued) | CloudStatus::QueuedWithoutJob),
        } => {
            tracing::debug!(image_id = %image_id, status = %status.label(), "image is queued in IMS");
        }
        RunEvent::StatusKnown {
            image_id,
            status: CloudStatus::Unknown { message, .. },
        } => {
            tracing::debug!(image_id = %image_id, "image status unknown: {message}");
        }
        RunEvent::StatusKnown { image_id, status } => {
            let status = status.label();
            state_change!(quiet, image_id = %image_id, status = %status, "image is already {status} in IMS");
        }
        RunEvent::Submitting { image_id, attempt } if *attempt <= 1 => {
            tracing::debug!(image_id = %image_id, attempt, "submitting registration");
        }
        RunEvent::Submitting { image_id, attempt } => {
            state_change!(quiet, image_id = %image_id, attempt, "re-sending registration");
        }
        RunEvent::Submitted {
            image_id, job_id, ..
        } => {
            state_change!(quiet, image_id = %image_id, job_id = %job_id, "registration accepted");
        }
        RunEvent::Retrying {
            image_id,
            reason,
            delay,
            ..
        } => {
            let delay = humantime::format_duration(round_ms(*delay)).to_string();
            match image_id {
                Some(id) => {
                    state_change!(quiet, image_id = %id, delay = %delay, "retrying: {reason}")
                }
                None => state_change!(quiet, delay = %delay, "retrying: {reason}"),
            }
        }
        RunEvent::Throttled { api, delay } if delay.is_zero() => {
            state_change!(quiet, api = %api, "IMS throttled a job poll; polling again at its usual time");
        }
        RunEvent::Throttled { api, delay } => {
            let delay = humantime::format_duration(round_ms(*delay)).to_string();
            state_change!(quiet, api = %api, delay = %delay, "IMS is throttling requests; slowing down");
        }
        RunEvent::Progress { image_id, percent } => {
            tracing::debug!(image_id = %image_id, percent, "job progress");
        }
        RunEvent::Finished { result, .. } => log_finished(result, quiet),
        RunEvent::AuthFailed { message } => {
            tracing::error!(
                "IMS rejected the credentials; stopping the run without sending more requests: {message}"
            );
        }
        RunEvent::Unreachable { message } => {
            tracing::error!(
                "could not reach IMS (or understand its answers) before anything was submitted; nothing was recorded, the next run tries again: {message}"
            );
        }
    }
}

fn log_finished(result: &ImageResult, quiet: bool) {
    let id = &result.image_id;
    let job = result.job_id.as_deref().unwrap_or("-");
    let code = result.error_code().unwrap_or("-");
    let reason = result.error_message().unwrap_or("");
    let status = result.outcome;
    match status {
        ImageOutcome::Registered | ImageOutcome::AlreadyRegistered | ImageOutcome::Cancelled => {
            state_change!(quiet, image_id = %id, job_id = %job, status = %status, "image {status}");
        }
        ImageOutcome::Failed | ImageOutcome::Invalid => {
            tracing::warn!(image_id = %id, job_id = %job, status = %status, error_code = %code, "image failed: {reason}");
        }
        ImageOutcome::Pending if result.job_id.is_some() => {
            tracing::warn!(image_id = %id, job_id = %job, status = %status, "image left pending: its job is still running in IMS (job ID in the report)");
        }
        ImageOutcome::Pending => {
            tracing::warn!(image_id = %id, status = %status, "image left pending: IMS may have accepted its registration but did not say so; the next run checks its status before submitting: {reason}");
        }
        // Said once for the run when IMS was not reached at all (RunEvent::Unreachable).
        ImageOutcome::Unreachable => {
            tracing::debug!(image_id = %id, job_id = %job, status = %status, "image not settled: {reason}");
        }
        ImageOutcome::PreflightFailed => {
            tracing::warn!(image_id = %id, status = %status, error_code = %code, "not submitted: {reason}");
        }
    }
}

fn round_ms(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> ImageId {
        ImageId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn submitted(n: u128) -> RunEvent {
        RunEvent::Submitted {
            image_id: id(n),
            job_id: "j1".parse().unwrap(),
            image_url: "bkt:a.raw".into(),
        }
    }

    fn finished(n: u128, outcome: ImageOutcome) -> RunEvent {
        RunEvent::Finished {
            result: ImageResult::new(id(n), outcome),
            image_url: "bkt:a.raw".into(),
        }
    }

    #[test]
    fn tally_follows_images_through_their_stages() {
        let t0 = Instant::now();
        let mut tally = Tally::new((1..=4).map(id), t0);
        tally.apply(
            &RunEvent::StatusKnown {
                image_id: id(4),
                status: CloudStatus::Found(ImageStatus::Saving),
            },
            t0,
        );
        tally.apply(&submitted(1), t0);
        tally.apply(&submitted(2), t0);
        tally.apply(&finished(1, ImageOutcome::Registered), t0);
        tally.apply(&finished(2, ImageOutcome::Failed), t0);
        let counts = tally.counts(t0 + Duration::from_secs(2));
        assert_eq!(counts.queued, 1, "3 was never submitted");
        assert_eq!(counts.in_cloud, 1, "4 is saving");
        assert_eq!(counts.registered, 1);
        assert_eq!(counts.failed, 1);
        assert_eq!(counts.done(), 2);
    }

    #[test]
    fn repeated_and_unknown_events_count_once() {
        let t0 = Instant::now();
        let mut tally = Tally::new([id(1), id(1)], t0);
        assert_eq!(tally.total(), 1, "duplicates count once");
        tally.apply(&submitted(1), t0);
        tally.apply(&submitted(1), t0);
        tally.apply(&submitted(99), t0);
        tally.apply(&finished(1, ImageOutcome::Pending), t0);
        // A late Submitted must not move a finished image back into the cloud.
        tally.apply(&submitted(1), t0);
        let counts = tally.counts(t0);
        assert_eq!(counts.in_cloud, 0);
        assert_eq!(counts.other_done, 1);
        assert_eq!(counts.done(), 1);
        assert_eq!(tally.total(), 1);
    }

    #[test]
    fn rates_use_a_trailing_window() {
        let t0 = Instant::now();
        let mut tally = Tally::new((0..30).map(id), t0);
        // 20 submissions in the first second, 10 more at t = 15 s.
        for n in 0..20 {
            tally.apply(&submitted(n), t0 + Duration::from_millis(500));
        }
        assert_eq!(
            tally.counts(t0 + Duration::from_secs(1)).submits_per_s,
            20.0
        );
        for n in 20..30 {
            tally.apply(&submitted(n), t0 + Duration::from_secs(15));
        }
        // The first burst is out of the 10 s window by now.
        assert_eq!(
            tally.counts(t0 + Duration::from_secs(15)).submits_per_s,
            1.0
        );
    }

    #[test]
    fn status_line_mentions_throttling_only_when_it_happened() {
        let mut counts = Counts {
            queued: 3,
            in_cloud: 2,
            registered: 5,
            failed: 1,
            submits_per_s: 2.0,
            ..Counts::default()
        };
        let line = status_line(&counts);
        assert!(line.starts_with("3 queued · 2 submitted · 5 registered · 1 failed"));
        assert!(line.contains("2.0 submits/s"));
        assert!(!line.contains("throttled"));
        counts.throttled = 4;
        assert!(status_line(&counts).contains("throttled 4x"));
    }
}
