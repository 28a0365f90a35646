//! `imsreg run`: the registration job. Loads and checks the manifest, resolves settings
//! (flags > manifest `settings:` > defaults), finds the credentials and the endpoint (or starts
//! the simulator), runs the engine with a progress display and signal handling, writes every
//! report and maps the outcome to an exit code. All the work is in the library; this file is
//! the order of the steps.

mod dry_run;
mod journal;
mod logging;
mod outcome;
mod progress;
mod signals;
mod stages;
mod summary;
mod target;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use imsreg::manifest::{self, Manifest, Settings, bounds};
use imsreg::report::ReportSettings;
use imsreg::run::{EventSink, RunConfig, RunResult};
use imsreg::state::Tee;
use indicatif::{MultiProgress, ProgressDrawTarget};
use tokio_util::sync::CancellationToken;

pub use logging::LogFormat;

use crate::exit;

/// The report written when no `--report` is given.
pub const DEFAULT_REPORT: &str = "imsreg-report.json";

/// First poll delay under `--simulate` unless `--poll-interval` says otherwise: simulated jobs
/// take 1-3 s, so the manifest's (real-cloud) interval would only make the demo wait.
pub const SIMULATE_POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 all registered, 1 some failed/invalid/pending, \
2 nothing attempted (usage, manifest, configuration or credentials), 75 the state journal \
is locked by another run, 130 interrupted."
)]
pub struct Args {
    /// The manifest of images to register.
    pub manifest: PathBuf,

    /// IMS endpoint URL (default https://ims.REGION.myhuaweicloud.com; http:// only for loopback).
    #[arg(long, value_name = "URL", conflicts_with = "simulate")]
    pub endpoint: Option<String>,

    /// Region ID, e.g. ap-southeast-1 (selects the endpoint).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Project ID (default HUAWEICLOUD_SDK_PROJECT_ID).
    #[arg(long, value_name = "ID", value_parser = imsreg::ims::auth::parse_project_id)]
    pub project_id: Option<String>,

    /// API calls in flight at once, 1 to 1024 [default: 8].
    #[arg(long, value_name = "N", value_parser = bounds::parse_concurrency)]
    pub concurrency: Option<u32>,

    /// Register calls per second, 0.01 to 1000000 [default: 2].
    #[arg(long, value_name = "RATE", value_parser = bounds::parse_rate)]
    pub submit_rate: Option<f64>,

    /// Status queries per second, 0.01 to 1000000 [default: 10].
    #[arg(long, value_name = "RATE", value_parser = bounds::parse_rate)]
    pub query_rate: Option<f64>,

    /// First poll of a job after this long, 1ms to 7d, e.g. 10s [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = bounds::parse_poll_interval)]
    pub poll_interval: Option<Duration>,

    /// An image still running this long after submission is reported pending, 1ms to 30d,
    /// e.g. 2h [default: 2h].
    #[arg(long, value_name = "DURATION", value_parser = bounds::parse_job_timeout)]
    pub job_timeout: Option<Duration>,

    /// Registrations running in the cloud at once (IMS allows 40 per account), 1 to 1000000
    /// [default: 20].
    #[arg(long, value_name = "N", value_parser = bounds::parse_max_active_jobs)]
    pub max_active_jobs: Option<u32>,

    /// Write a report here; the extension picks the format: .json .yaml/.yml .csv .xml (JUnit)
    /// .md. Repeatable [default: imsreg-report.json].
    #[arg(long = "report", value_name = "PATH")]
    pub reports: Vec<PathBuf>,

    /// Run the valid entries of a manifest with invalid ones, reporting those as `invalid`.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Print what would be submitted, skipped and polled (reads image status), register nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Log line format on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// No progress bars, even on a terminal: one log line per state change.
    #[arg(long)]
    pub no_progress: bool,

    /// Run against the built-in IMS simulator (in-process, short jobs) instead of the cloud.
    #[arg(long)]
    pub simulate: bool,

    /// State journal of this manifest's runs [default: MANIFEST's stem + .imsreg-state.jsonl,
    /// next to it].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Run without a state journal (the cloud-status check still prevents double submissions).
    #[arg(long, conflicts_with = "state")]
    pub no_state: bool,

    /// Try again images an earlier run reported failed, if IMS shows them `queued` again.
    #[arg(long)]
    pub retry_failed: bool,
}

impl Args {
    /// The flags as manifest-shaped settings, to merge over the manifest's.
    fn settings(&self) -> Settings {
        Settings {
            region: self.region.clone(),
            project_id: self.project_id.clone(),
            endpoint: self.endpoint.clone(),
            concurrency: self.concurrency,
            max_active_jobs: self.max_active_jobs,
            submit_rate: self.submit_rate,
            query_rate: self.query_rate,
            poll_interval: self.poll_interval,
            job_timeout: self.job_timeout,
        }
    }
}

pub fn main(args: Args) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("imsreg: cannot start the async runtime: {err}");
            return exit::USAGE;
        }
    };
    let code = runtime.block_on(run(args));
    // Calls still in flight after a cancellation do not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

async fn run(args: Args) -> u8 {
    let show_bars =
        !args.no_progress && args.log_format == LogFormat::Text && std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if show_bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    logging::init(args.log_format, multi.clone());
    let started_at = Utc::now();
    let clock = Instant::now();

    let mut job = match prepare(&args) {
        Ok(job) => job,
        Err(code) => return code,
    };
    if args.dry_run {
        return dry_run(&job).await;
    }
    let ui = Arc::new(progress::UiSink::new(
        &job.journal.images,
        &multi,
        show_bars,
    ));
    let result = match register(&mut job, ui.clone()).await {
        Ok(result) => result,
        Err(code) => return code,
    };
    ui.clear();
    let code = finish(&args, &mut job, result, started_at, clock.elapsed());
    if let Some(simulator) = job.target.simulator {
        simulator.shutdown().await;
    }
    code
}

/// Everything checked and resolved before the first request.
struct Job {
    /// The manifest line of each valid entry (the entries themselves move to the engine).
    valid_lines: Vec<usize>,
    /// Reported as `invalid` (only with `--skip-invalid`).
    invalid: Vec<manifest::InvalidEntry>,
    reports: Vec<PathBuf>,
    config: RunConfig,
    target: target::Target,
    /// The valid entries after the state journal, with what the engine gets.
    journal: journal::Prepared,
}

/// Steps 1-3: manifest, reports, settings, credentials and endpoint (or the simulator), state
/// journal. Every failure is an exit code; nothing has been sent yet.
fn prepare(args: &Args) -> Result<Job, u8> {
    let refuse = |message: &dyn std::fmt::Display| {
        tracing::error!("{message}");
        exit::USAGE
    };

    // 1. The manifest: nothing is sent unless it is valid (or --skip-invalid).
    let mut manifest = manifest::load(&args.manifest).map_err(|err| refuse(&err))?;
    if !manifest_usable(&manifest, args.skip_invalid, args.log_format) {
        return Err(exit::USAGE);
    }
    let reports = report_paths(&args.reports).map_err(|message| refuse(&message))?;

    // 2. Settings, then where to send requests and as whom.
    let flags = args.settings();
    let mut config = RunConfig::resolve(&flags, &manifest.settings);
    let target = if args.simulate {
        if flags.poll_interval.is_none() {
            config.poll_interval = SIMULATE_POLL_INTERVAL;
        }
        target::simulated(manifest.images.iter().map(|e| e.image_id.clone()).collect())
    } else {
        target::real(target::Location {
            endpoint: flags.endpoint.or(manifest.settings.endpoint.clone()),
            region: flags.region.or(manifest.settings.region.clone()),
            project_id: flags.project_id.or(manifest.settings.project_id.clone()),
        })
    }
    .map_err(|err| refuse(&err))?;

    // 3. What earlier runs settled (state journal); the rest goes to the engine.
    let mode = journal::Mode::choose(
        &args.manifest,
        args.state.as_deref(),
        args.no_state,
        args.simulate,
        args.dry_run,
    );
    let valid_lines = manifest.images.iter().map(|entry| entry.line).collect();
    let entries = std::mem::take(&mut manifest.images);
    let journal = journal::prepare(&mode, entries, args.retry_failed).map_err(|refused| {
        tracing::error!("{}", refused.message);
        refused.code
    })?;
    let invalid = if args.skip_invalid {
        std::mem::take(&mut manifest.invalid)
    } else {
        Vec::new()
    };
    Ok(Job {
        valid_lines,
        invalid,
        reports,
        config,
        target,
        journal,
    })
}

/// Step 4: the engine, cancellable by SIGINT/SIGTERM/SIGHUP. The journal hears of every job ID before
/// the display does.
async fn register(job: &mut Job, ui: Arc<progress::UiSink>) -> Result<RunResult, u8> {
    let sink: Arc<dyn EventSink> = match &job.journal.journal {
        Some((journal, _lock)) => Arc::new(Tee(vec![journal.clone(), ui.clone()])),
        None => ui.clone(),
    };
    let cancel = CancellationToken::new();
    if let Err(err) = signals::install(cancel.clone(), Arc::new(move || ui.clear())) {
        tracing::error!("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {err}");
        return Err(exit::USAGE);
    }
    let config = &job.config;
    tracing::info!(
        images = job.journal.images.len(),
        concurrency = config.concurrency,
        max_active_jobs = config.max_active_jobs,
        submit_rate = config.submit_rate,
        query_rate = config.query_rate,
        poll_interval = %humantime::format_duration(config.poll_interval),
        job_timeout = %humantime::format_duration(config.job_timeout),
        "starting the run"
    );
    let client = Arc::new(job.target.client.clone());
    let images = std::mem::take(&mut job.journal.images);
    let result = imsreg::run::execute(client, images, config, sink, cancel).await;
    if let Some(err) = job.journal.journal.as_ref().and_then(|(j, _)| j.error()) {
        tracing::error!(
            "the state journal could not be written ({err}); the report still has every job ID"
        );
    }
    Ok(result)
}

/// Step 5: the report (also after an interruption), the summary and the exit code.
fn finish(
    args: &Args,
    job: &mut Job,
    result: RunResult,
    started_at: DateTime<Utc>,
    elapsed: Duration,
) -> u8 {
    let ending = outcome::Ending {
        interrupted: result.interrupted,
        auth_failed: result.auth_failed,
    };
    let valid_records = job.journal.records(result.records);
    let records = outcome::records_in_manifest_order(&job.valid_lines, valid_records, &job.invalid);
    let report = outcome::build_report(
        &args.manifest,
        started_at,
        Utc::now(),
        report_settings(&job.target, &job.config),
        records,
    );
    let mut code = outcome::exit_code(&report.images, ending);
    let written = match imsreg::report::write_reports(&report, &job.reports) {
        Ok(()) => job.reports.as_slice(),
        Err(err) => {
            tracing::error!("cannot write the report: {err}");
            if code == exit::OK {
                code = exit::SOME_FAILED;
            }
            &[]
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
        exit_code = code,
        "run finished"
    );
    summary::print(&report, elapsed, written, ending.interrupted);
    code
}

/// Prints the manifest's diagnostics (as log events in JSON mode, so every stderr line stays
/// JSON); false when the run must not start.
fn manifest_usable(manifest: &Manifest, skip_invalid: bool, format: LogFormat) -> bool {
    let errors = manifest.error_count();
    let skipping = skip_invalid && !manifest.fatal;
    let mut stderr = anstream::stderr().lock();
    for diagnostic in &manifest.diagnostics {
        match format {
            LogFormat::Text => {
                let _ = writeln!(stderr, "{}", manifest::render::Styled(diagnostic));
            }
            LogFormat::Json => log_diagnostic(diagnostic),
        }
    }
    drop(stderr);
    if errors == 0 {
        return true;
    }
    if skipping {
        tracing::warn!(
            invalid = manifest.invalid.len(),
            valid = manifest.images.len(),
            "--skip-invalid: the invalid entries will be reported as `invalid`; running the others"
        );
        return true;
    }
    let hint = if manifest.fatal {
        ""
    } else {
        " (--skip-invalid runs the valid entries and reports the others)"
    };
    tracing::error!(
        "{} has {errors} error(s); nothing was submitted{hint}",
        manifest.path.display()
    );
    false
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

/// The report paths, each with a known extension (checked before anything is sent; the
/// writer creates missing folders).
fn report_paths(given: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let paths = if given.is_empty() {
        vec![PathBuf::from(DEFAULT_REPORT)]
    } else {
        given.to_vec()
    };
    imsreg::report::check_paths(&paths).map_err(|err| format!("--report: {err}"))?;
    Ok(paths)
}

fn report_settings(target: &target::Target, config: &RunConfig) -> ReportSettings {
    ReportSettings {
        endpoint: target.endpoint.clone(),
        region: target.region.clone(),
        project_id: target.project_id.clone(),
        concurrency: config.concurrency,
        max_active_jobs: config.max_active_jobs,
        submit_rate: config.submit_rate,
        query_rate: config.query_rate,
        poll_interval_s: config.poll_interval.as_secs_f64(),
        job_timeout_s: config.job_timeout.as_secs_f64(),
        dry_run: false,
    }
}

/// `--dry-run`: read the cloud status, print the plan, register nothing.
async fn dry_run(job: &Job) -> u8 {
    let statuses = match dry_run::cloud_statuses(
        &job.target.client,
        &job.journal.images,
        job.config.query_rate,
    )
    .await
    {
        Ok(statuses) => statuses,
        Err(err) => {
            tracing::error!("dry run: cannot read the image status from IMS: {err}");
            return match err.class() {
                imsreg::ims::ErrorClass::AuthFailed => exit::USAGE,
                _ => exit::SOME_FAILED,
            };
        }
    };
    let text = dry_run::render(
        &job.journal.images,
        job.journal.settled(),
        &job.invalid,
        &statuses,
        &job.config,
        &job.target.endpoint,
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_engines_defaults() {
        use clap::CommandFactory;
        use imsreg::run::defaults;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: Args,
        }
        let help = Wrapper::command().render_help().to_string();
        let expect = [
            ("--concurrency", defaults::CONCURRENCY.to_string()),
            ("--submit-rate", defaults::SUBMIT_RATE.to_string()),
            ("--query-rate", defaults::QUERY_RATE.to_string()),
            (
                "--poll-interval",
                humantime::format_duration(defaults::POLL_INTERVAL).to_string(),
            ),
            (
                "--job-timeout",
                humantime::format_duration(defaults::JOB_TIMEOUT).to_string(),
            ),
            ("--max-active-jobs", defaults::MAX_ACTIVE_JOBS.to_string()),
        ];
        for (flag, default) in expect {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(flag))
                .unwrap();
            assert!(line.contains(&format!("[default: {default}]")), "{line}");
        }
    }

    #[test]
    fn report_paths_default_and_check_the_extension() {
        assert_eq!(report_paths(&[]).unwrap(), [PathBuf::from(DEFAULT_REPORT)]);
        let good: Vec<PathBuf> = ["r.json", "r.YAML", "r.yml", "r.csv", "r.xml", "r.md"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(report_paths(&good).unwrap(), good);
        let err = report_paths(&[PathBuf::from("r.txt")]).unwrap_err();
        assert!(err.contains("r.txt") && err.contains(".md"), "{err}");
    }

    #[test]
    fn flags_override_manifest_settings() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: Args,
        }
        let wrapper = Wrapper::parse_from([
            "imsreg",
            "m.yaml",
            "--concurrency",
            "3",
            "--poll-interval",
            "100ms",
            "--report",
            "a.json",
            "--report",
            "b.md",
        ]);
        let manifest = Settings {
            concurrency: Some(16),
            submit_rate: Some(7.0),
            ..Settings::default()
        };
        let config = RunConfig::resolve(&wrapper.args.settings(), &manifest);
        assert_eq!(config.concurrency, 3, "the flag wins");
        assert_eq!(
            config.submit_rate, 7.0,
            "the manifest wins over the default"
        );
        assert_eq!(config.poll_interval, Duration::from_millis(100));
        assert_eq!(
            config.max_active_jobs,
            imsreg::run::defaults::MAX_ACTIVE_JOBS
        );
        assert_eq!(wrapper.args.reports.len(), 2);
    }
}
