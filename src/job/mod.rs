//! The whole registration job, as one entry point: [`run`] takes the options of an `imsreg run`
//! (manifest, flag settings, reports, journal choice), an observer and a cancellation token,
//! and answers an [`Outcome`]. Everything between the command line and the engine lives here:
//! loading and checking the manifest, resolving settings and the target (the cloud or the
//! in-process simulator), applying the state journal, running the engine or the dry run,
//! merging the records back into manifest order, writing the reports, and the verdict that
//! the binary turns into an exit code. The binary keeps only the terminal: flags, logging,
//! progress display, summary, signals and the verdict -> exit code mapping.
//!
//! The steps, in order: [`prepare`] (manifest, settings, target, journal), [`preflight`] (every
//! object checked in OBS; failures settled as `preflight_failed`), [`create`] (the images of
//! entries without an `image_id`, found by their tag or created), then either [`dry_run`] or
//! the engine ([`crate::run::execute`]), then [`outcome`] (records in manifest order, report,
//! verdict). A manifest across regions is one such pipeline per region and project
//! ([`regions`]), run at the same time, with one journal and one report. [`merge_reports`] is
//! `imsreg report merge`: the shards' reports of one manifest combined and judged as one run.

pub mod create;
mod create_stage;
pub mod disk_format;
pub mod dry_run;
mod journal;
mod journal_sink;
pub mod lookup;
pub mod merge;
mod metrics;
mod options;
pub mod order;
pub mod outcome;
pub mod preflight;
pub mod prepare;
pub mod regions;
pub mod resume;
pub mod sharding;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::report::{ImageOutcome, Report};
use crate::run::{self, EventSink, Tee};

use metrics::Exporter;

pub use dry_run::DryRunPlan;
pub use journal::JournalChoice;
pub use journal_sink::JournalSink;
pub use merge::{Merged, merge_reports};
pub use options::{JobObserver, JobOptions, MetricsOptions, PreflightSettings, Unobserved};
pub use outcome::Verdict;
pub use preflight::{PreflightOptions, PreflightOutcome};
pub use prepare::{DEFAULT_REPORT, JobError, SIMULATE_POLL_INTERVAL};
pub use target::Environment;

/// How the job ended (when it got past preparation).
#[derive(Debug)]
pub enum Outcome {
    /// The engine ran: the report, where it was written, and the verdict.
    Ran(Box<Finished>),
    /// `--dry-run`: the plan, nothing registered, no report written.
    Planned(Box<DryRunPlan>),
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::Ran(finished) => finished.verdict,
            Outcome::Planned(plan) => plan.verdict,
        }
    }
}

/// The end of a run that reached the engine.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    /// The report paths written (empty when writing failed).
    pub written: Vec<PathBuf>,
    /// Why the reports could not be written (the verdict then is not a success).
    pub report_error: Option<String>,
    /// Why the state journal could not be written (the report still has every job ID).
    pub journal_error: Option<String>,
    /// Why the final write of `--metrics-file` failed (the verdict does not change).
    pub metrics_error: Option<String>,
    pub verdict: Verdict,
    /// Wall time of the whole job.
    pub elapsed: std::time::Duration,
}

/// Runs the job: prepare, then the engine (or the dry run), then the report. Errors are the
/// cases in which nothing was attempted.
///
/// The entries of each region and project (see [`regions`]) form a group with its own client,
/// limiters and active-job bound: the groups' preflights and create stages run at once, then
/// their engines run at once (a throttled region never holds another back), and their records
/// come together in one report, in manifest order.
pub async fn run(
    options: JobOptions,
    observer: Arc<dyn JobObserver>,
    cancel: CancellationToken,
) -> Result<Outcome, JobError> {
    let clock = Instant::now();
    let started_at = Utc::now();
    let mut jobs = prepare::prepare(&options, observer.as_ref())?;

    // Metrics of a run (a dry run has none), from before the preflight on.
    let exporter = if options.dry_run {
        None
    } else {
        // The `region` label of the run: its region; across regions, each record's own (the
        // label left empty for entries without one).
        let region = match jobs.as_slice() {
            [job] => job.target.region.clone(),
            _ => None,
        };
        let started = Exporter::start(
            &options.metrics,
            &options.manifest,
            region.as_deref(),
            started_at,
            observer.as_ref(),
        )
        .await;
        match started {
            Ok(exporter) => exporter,
            Err(err) => {
                shutdown(&mut jobs).await;
                return Err(err);
            }
        }
    };
    if let Some(exporter) = &exporter {
        let in_progress: Vec<usize> = jobs.iter().map(|job| job.journal.images.len()).collect();
        known_by_region(&exporter.metrics, &jobs, &in_progress);
    }

    // The preflight settles what IMS would fail anyway before anything is sent to IMS; then
    // entries without an image_id get their image (found by its tag, or created). Every group
    // at once; an error in any stops the job before anything is registered.
    let label = options.manifest.display().to_string();
    let staged = futures::future::join_all(jobs.iter_mut().map(|job| {
        let (label, options, observer, cancel) = (&label, &options, &observer, cancel.clone());
        async move {
            preflight::screen(job, label, observer.as_ref(), cancel.clone()).await?;
            create_stage::run(job, options, observer.as_ref(), cancel).await
        }
    }))
    .await;
    let mut stages = Vec::with_capacity(staged.len());
    for stage in staged {
        match stage {
            Ok(stage) => stages.push(stage),
            Err(err) => {
                if let Some(exporter) = exporter {
                    exporter.finish(None).await;
                }
                shutdown(&mut jobs).await;
                return Err(err);
            }
        }
    }

    if options.dry_run {
        let sink: Arc<dyn EventSink> = observer.clone();
        let plans = futures::future::join_all(
            jobs.iter_mut()
                .zip(&stages)
                .map(|(job, stage)| dry_run::plan(job, stage, sink.clone(), cancel.clone())),
        )
        .await;
        shutdown(&mut jobs).await;
        return Ok(Outcome::Planned(Box::new(DryRunPlan::merge(plans))));
    }

    // Largest files first when the preflight learned the sizes (records come back in plan
    // order and are put back in manifest order below).
    let plans: Vec<_> = jobs
        .iter_mut()
        .map(|job| order::largest_first_plan(job.journal.take_images()))
        .collect();
    let all_images: Vec<run::PlannedImage>;
    let starting: &[run::PlannedImage] = match plans.as_slice() {
        [(images, _)] => images,
        _ => {
            all_images = plans
                .iter()
                .flat_map(|(images, _)| images.clone())
                .collect();
            &all_images
        }
    };
    observer.engine_starting(starting, &jobs[0].config);
    // One journal for the whole manifest: every group's sink is the same writer.
    let mut sinks: Vec<Arc<dyn EventSink>> = jobs[0].journal.sink().into_iter().collect();
    sinks.push(observer.clone());
    if let Some(exporter) = &exporter {
        let metrics = &exporter.metrics;
        metrics.engine_starting(starting, jobs.iter().flat_map(settled_statuses));
        if jobs.len() > 1 {
            for (job, (images, _)) in jobs.iter().zip(&plans) {
                if let Some(region) = &job.key.region {
                    metrics.place(region, images.iter().map(|image| image.entry.image_id));
                }
            }
            let in_progress: Vec<usize> = plans.iter().map(|(images, _)| images.len()).collect();
            known_by_region(metrics, &jobs, &in_progress);
        }
        sinks.push(metrics.clone());
    }
    let sink: Arc<dyn EventSink> = match sinks.len() {
        1 => observer.clone(),
        _ => Arc::new(Tee(sinks)),
    };
    let engines = jobs
        .iter()
        .zip(&stages)
        .zip(plans)
        .map(|((job, stage), (images, reordered))| {
            let (sink, cancel) = (sink.clone(), cancel.clone());
            async move {
                let sizes: Vec<Option<u64>> = images.iter().map(|image| image.size_bytes).collect();
                tracing::info!(
                    region = job.key.region.as_deref().unwrap_or(""),
                    images = images.len(),
                    order = if reordered.is_some() { "largest first" } else { "manifest" },
                    concurrency = job.config.concurrency,
                    max_active_jobs = job.config.max_active_jobs,
                    submit_rate = job.config.submit_rate,
                    query_rate = job.config.query_rate,
                    poll_interval = %humantime::format_duration(job.config.poll_interval),
                    job_timeout = %humantime::format_duration(job.config.job_timeout),
                    "starting the run"
                );
                let client = Arc::new(job.target.client.clone());
                let result =
                    crate::run::execute(client, images, &job.config, sink, cancel.clone()).await;
                if !result.interrupted {
                    create_stage::tidy(job, stage, cancel).await;
                }
                (result, sizes, reordered)
            }
        });
    let results = futures::future::join_all(engines).await;
    let journal_error = jobs[0].journal.error();
    if let Some(err) = &journal_error {
        tracing::error!(
            "the state journal could not be written ({err}); the report still has every job ID"
        );
    }

    let mut ending = outcome::Ending {
        interrupted: false,
        auth_failed: false,
        unreachable: false,
    };
    let mut valid_lines = Vec::new();
    let mut valid_records = Vec::new();
    let mut invalid = Vec::new();
    for ((job, stage), (result, sizes, reordered)) in jobs.iter_mut().zip(&stages).zip(results) {
        ending.interrupted |= result.interrupted;
        ending.auth_failed |= result.auth_failed;
        ending.unreachable |= result.unreachable;
        let mut engine_records = result.records;
        for (record, size) in engine_records.iter_mut().zip(sizes) {
            record.size_bytes = size;
        }
        if let Some(reordered) = &reordered {
            engine_records = reordered.restore(engine_records);
        }
        let mut records = job.journal.records(engine_records);
        stage.mark(&mut records);
        // Each record names its region (and project) when the manifest or a flag names one.
        if let Some(region) = &job.key.region {
            for record in &mut records {
                record.region = Some(region.clone());
                record.project_id = job.target.project_id.clone();
            }
        }
        // One group (most manifests): its lists are the run's, moved, never copied.
        if valid_records.is_empty() {
            valid_lines = std::mem::take(&mut job.valid_lines);
            valid_records = records;
        } else {
            valid_lines.append(&mut job.valid_lines);
            valid_records.append(&mut records);
        }
        invalid.append(&mut job.invalid);
    }
    let records = outcome::records_in_manifest_order(&valid_lines, valid_records, &invalid);
    let mut settings = jobs[0].report_settings(false);
    if jobs.len() > 1 {
        settings.regions = jobs.iter().map(prepare::Job::region_settings).collect();
    }
    let report = outcome::build_report(
        &options.manifest,
        jobs[0].coverage(),
        started_at,
        Utc::now(),
        settings,
        records,
    );
    let reports = jobs[0].reports.clone();
    let mut verdict = outcome::verdict(&report.images, ending);
    if report.images.is_empty() && jobs[0].shard.is_some() && verdict == Verdict::NotAllRegistered {
        // The hash gave this shard no entry: nothing to do is a success (a run of the whole
        // manifest always has entries, as validation refuses an empty list).
        verdict = Verdict::AllRegistered;
    }
    let (written, report_error) = match crate::report::write_reports(&report, &reports) {
        Ok(()) => (reports, None),
        Err(err) => {
            tracing::error!("cannot write the report: {err}");
            if verdict == Verdict::AllRegistered {
                verdict = Verdict::NotAllRegistered;
            }
            (Vec::new(), Some(err.to_string()))
        }
    };
    let summary = &report.summary;
    tracing::info!(
        total = summary.total,
        registered = summary.registered,
        already_registered = summary.already_registered,
        failed = summary.failed,
        invalid = summary.invalid,
        pending = summary.pending,
        cancelled = summary.cancelled,
        unreachable = summary.unreachable,
        preflight_failed = summary.preflight_failed,
        created = summary.created,
        verdict = ?verdict,
        "run finished"
    );
    // After the report: the metrics' final write holds the report's counts.
    let metrics_error = match exporter {
        Some(exporter) => {
            exporter
                .finish(Some((&report, verdict == Verdict::AllRegistered)))
                .await
        }
        None => None,
    };
    shutdown(&mut jobs).await;
    Ok(Outcome::Ran(Box::new(Finished {
        report,
        written,
        report_error,
        journal_error,
        metrics_error,
        verdict,
        elapsed: clock.elapsed(),
    })))
}

/// The images by status and region of the metrics: `in_progress[i]` of job `i` still to run,
/// the statuses of its settled entries. Jobs of one region (several projects) count together.
fn known_by_region(
    metrics: &crate::metrics::Metrics,
    jobs: &[prepare::Job],
    in_progress: &[usize],
) {
    let mut by_region: Vec<(Option<&str>, usize, Vec<ImageOutcome>)> = vec![(None, 0, Vec::new())];
    for (job, &running) in jobs.iter().zip(in_progress) {
        // A single job is labelled with the run's region (`None` here).
        let region = if jobs.len() > 1 {
            job.key.region.as_deref()
        } else {
            None
        };
        let index = match by_region.iter().position(|(r, ..)| *r == region) {
            Some(index) => index,
            None => {
                by_region.push((region, 0, Vec::new()));
                by_region.len() - 1
            }
        };
        let entry = &mut by_region[index];
        entry.1 += running;
        entry.2.extend(settled_statuses(job));
    }
    for (region, running, settled) in by_region {
        metrics.images_known_in(region, running, settled);
    }
}

/// Stops the in-process simulators, if any.
async fn shutdown(jobs: &mut [prepare::Job]) {
    for job in jobs {
        job.shutdown().await;
    }
}

/// The statuses of the entries the engine does not run: settled from the journal or by the
/// preflight, and the invalid ones.
fn settled_statuses(job: &prepare::Job) -> impl Iterator<Item = ImageOutcome> + '_ {
    job.journal
        .settled
        .iter()
        .flatten()
        .map(|record| record.status)
        .chain(job.invalid.iter().map(|_| ImageOutcome::Invalid))
}
