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
//! verdict). [`merge_reports`] is `imsreg report merge`: the shards' reports of one manifest
//! combined and judged as one run.

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
pub mod resume;
pub mod sharding;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::report::{ImageOutcome, Report};
use crate::run::{EventSink, Tee};

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
pub async fn run(
    options: JobOptions,
    observer: Arc<dyn JobObserver>,
    cancel: CancellationToken,
) -> Result<Outcome, JobError> {
    let clock = Instant::now();
    let started_at = Utc::now();
    let mut job = prepare::prepare(&options, observer.as_ref())?;

    // Metrics of a run (a dry run has none), from before the preflight on.
    let exporter = if options.dry_run {
        None
    } else {
        let region = job.target.region.clone();
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
                job.shutdown().await;
                return Err(err);
            }
        }
    };
    if let Some(exporter) = &exporter {
        exporter
            .metrics
            .images_known(job.journal.images.len(), settled_statuses(&job));
    }

    // The preflight settles what IMS would fail anyway before anything is sent to IMS.
    let label = options.manifest.display().to_string();
    if let Err(err) = preflight::screen(&mut job, &label, observer.as_ref(), cancel.clone()).await {
        if let Some(exporter) = exporter {
            exporter.finish(None).await;
        }
        job.shutdown().await;
        return Err(err);
    }

    // Entries without an image_id get their image (found by its tag, or created) first.
    let created =
        match create_stage::run(&mut job, &options, observer.as_ref(), cancel.clone()).await {
            Ok(created) => created,
            Err(err) => {
                job.shutdown().await;
                return Err(err);
            }
        };

    if options.dry_run {
        let sink: Arc<dyn EventSink> = observer.clone();
        let plan = dry_run::plan(&mut job, &created, sink, cancel).await;
        job.shutdown().await;
        return Ok(Outcome::Planned(Box::new(plan)));
    }

    // Largest files first when the preflight learned the sizes (records come back in plan
    // order and are put back in manifest order below).
    let (images, reordered) = order::largest_first_plan(job.journal.take_images());
    let sizes: Vec<Option<u64>> = images.iter().map(|image| image.size_bytes).collect();
    observer.engine_starting(&images, &job.config);
    let mut sinks: Vec<Arc<dyn EventSink>> = job.journal.sink().into_iter().collect();
    sinks.push(observer.clone());
    if let Some(exporter) = &exporter {
        exporter
            .metrics
            .engine_starting(&images, settled_statuses(&job));
        sinks.push(exporter.metrics.clone());
    }
    let sink: Arc<dyn EventSink> = match sinks.len() {
        1 => observer.clone(),
        _ => Arc::new(Tee(sinks)),
    };
    tracing::info!(
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
    let result = crate::run::execute(client, images, &job.config, sink, cancel.clone()).await;
    if !result.interrupted {
        create_stage::tidy(&job, &created, cancel).await;
    }
    let journal_error = job.journal.error();
    if let Some(err) = &journal_error {
        tracing::error!(
            "the state journal could not be written ({err}); the report still has every job ID"
        );
    }

    let ending = outcome::Ending {
        interrupted: result.interrupted,
        auth_failed: result.auth_failed,
        unreachable: result.unreachable,
    };
    let mut engine_records = result.records;
    for (record, size) in engine_records.iter_mut().zip(sizes) {
        record.size_bytes = size;
    }
    if let Some(reordered) = &reordered {
        engine_records = reordered.restore(engine_records);
    }
    let mut records = job.journal.records(engine_records);
    created.mark(&mut records);
    let records = outcome::records_in_manifest_order(&job.valid_lines, records, &job.invalid);
    let report = outcome::build_report(
        &options.manifest,
        job.coverage(),
        started_at,
        Utc::now(),
        job.report_settings(false),
        records,
    );
    let mut verdict = outcome::verdict(&report.images, ending);
    if report.images.is_empty() && job.shard.is_some() && verdict == Verdict::NotAllRegistered {
        // The hash gave this shard no entry: nothing to do is a success (a run of the whole
        // manifest always has entries, as validation refuses an empty list).
        verdict = Verdict::AllRegistered;
    }
    let (written, report_error) = match crate::report::write_reports(&report, &job.reports) {
        Ok(()) => (job.reports.clone(), None),
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
    job.shutdown().await;
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
