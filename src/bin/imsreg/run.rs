//! `imsreg run`: the terminal side of the registration job. Parses the flags, sets up logging,
//! the progress display and the signal handlers, calls [`imsreg::job::run`] (which does the
//! whole job: manifest, settings, target, journal, engine or dry run, reports), prints the
//! summary or the plan, and maps the verdict to an exit code.

pub mod logging;
mod progress;
mod signals;
mod summary;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use imsreg::job::{self, JobError, JobOptions, JournalChoice, Outcome, Verdict};
use imsreg::manifest::{Settings, bounds};
use imsreg::shard::Shard;
use indicatif::{MultiProgress, ProgressDrawTarget};
use tokio_util::sync::CancellationToken;

pub use logging::LogFormat;

use crate::exit;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 all registered, 1 some failed/invalid/pending/preflight_failed, \
2 nothing attempted (usage, manifest, configuration, credentials, or OBS not reachable for the \
preflight), 75 the state journal is locked by another run, 130 interrupted."
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

    /// Submit without checking the objects in OBS first (manifest: `preflight: false`).
    #[arg(long)]
    pub no_preflight: bool,

    /// OBS endpoint of the preflight [default: https://obs.REGION.myhuaweicloud.com; http://
    /// only for loopback].
    #[arg(long, value_name = "URL", conflicts_with = "simulate")]
    pub obs_endpoint: Option<String>,

    /// How long one IMS call may take, 100ms to 1h [default: 60s]. A create whose answer was
    /// lost may land until then, so a re-run waits that long before it creates again.
    #[arg(long, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<Duration>,

    /// OBS requests per second of the preflight, 0.01 to 1000000 [default: 20].
    #[arg(long, value_name = "RATE", value_parser = bounds::parse_rate)]
    pub obs_rate: Option<f64>,

    /// Write Prometheus metrics to this file (for node_exporter's textfile collector: name it
    /// *.prom), rewritten atomically every 10 s and at the end.
    #[arg(long, value_name = "PATH.prom")]
    pub metrics_file: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics while the run lasts, e.g.
    /// 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Run only shard K of N (K counts from 1), picked by a stable hash of each entry's
    /// identity; the shard takes 1/N of every rate, of --max-active-jobs and of --concurrency
    /// unless a flag sets them, and keeps its own journal (MANIFEST's stem +
    /// .shard-K-of-N.imsreg-state.jsonl).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
}

fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    bounds::parse_duration(
        text,
        &(Duration::from_millis(100)..=Duration::from_secs(3600)),
    )
}

impl Args {
    /// What the library's job is asked to do.
    fn options(&self) -> JobOptions {
        JobOptions {
            manifest: self.manifest.clone(),
            flags: self.settings(),
            reports: self.reports.clone(),
            skip_invalid: self.skip_invalid,
            dry_run: self.dry_run,
            simulate: self.simulate,
            journal: match (&self.state, self.no_state) {
                (_, true) => JournalChoice::Off,
                (Some(path), false) => JournalChoice::At(path.clone()),
                (None, false) => JournalChoice::NextToManifest,
            },
            retry_failed: self.retry_failed,
            environment: job::Environment::Process,
            request_timeout: self.request_timeout,
            metrics: job::MetricsOptions {
                file: self.metrics_file.clone(),
                listen: self.metrics_listen,
            },
            shard: self.shard,
        }
    }

    /// The flags as manifest-shaped settings, to merge over the manifest's.
    fn settings(&self) -> Settings {
        Settings {
            region: self.region.clone(),
            project_id: self.project_id.clone(),
            endpoint: self.endpoint.clone(),
            obs_endpoint: self.obs_endpoint.clone(),
            preflight: self.no_preflight.then_some(false),
            obs_rate: self.obs_rate,
            concurrency: self.concurrency,
            max_active_jobs: self.max_active_jobs,
            submit_rate: self.submit_rate,
            query_rate: self.query_rate,
            poll_interval: self.poll_interval,
            job_timeout: self.job_timeout,
            regions: Default::default(),
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

    let ui = Arc::new(progress::UiSink::new(&multi, show_bars, args.log_format));
    let cancel = CancellationToken::new();
    let clear = ui.clone();
    if let Err(err) = signals::install(cancel.clone(), Arc::new(move || clear.clear())) {
        tracing::error!("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {err}");
        return exit::USAGE;
    }
    let outcome = job::run(args.options(), ui.clone(), cancel).await;
    ui.clear();
    match outcome {
        Ok(Outcome::Ran(finished)) => {
            summary::print(
                &finished.report,
                finished.elapsed,
                &finished.written,
                finished.verdict == Verdict::Interrupted,
            );
            exit_code(finished.verdict)
        }
        Ok(Outcome::Planned(plan)) => {
            match plan.verdict {
                Verdict::Unreachable => {
                    tracing::error!(
                        "dry run: IMS could not be reached (or its answers not understood), so no plan was made; check the network, the endpoint (--endpoint or --region) and any proxy, then run again"
                    )
                }
                Verdict::CredentialsRejected => {
                    tracing::error!(
                        "dry run: IMS rejected the credentials, so no plan was made; check HUAWEICLOUD_SDK_AK/SK (or OS_AUTH_TOKEN), the project ID and the machine's clock"
                    )
                }
                _ => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(plan.render().as_bytes());
                }
            }
            exit_code(plan.verdict)
        }
        Err(err) => {
            if let JobError::Create(job::create::CreateError::UnknownOsVersion { problems }) = &err
            {
                // Each as the manifest's own diagnostics are shown: FILE:LINE:COL: error: ...
                let mut stderr = anstream::stderr().lock();
                for problem in problems {
                    let _ = writeln!(stderr, "{}", imsreg::report::escape::printable(problem));
                }
            }
            tracing::error!("{err}");
            error_exit_code(&err)
        }
    }
}

/// The exit code of a job that got past preparation (documented in the README); also that of
/// `imsreg report merge`, which exits as a run of the whole manifest would.
pub fn exit_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::AllRegistered => exit::OK,
        Verdict::NotAllRegistered | Verdict::Unreachable => exit::SOME_FAILED,
        Verdict::CredentialsRejected => exit::USAGE,
        Verdict::Interrupted => exit::INTERRUPTED,
    }
}

/// Nothing was attempted: busy (75), interrupted during the preflight (130), or a usage,
/// configuration, credentials or OBS problem (2).
fn error_exit_code(err: &JobError) -> u8 {
    if err.is_busy() {
        exit::LOCKED
    } else if err.is_interrupted() {
        exit::INTERRUPTED
    } else {
        exit::USAGE
    }
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
    fn metrics_flags_become_the_jobs_metrics_options() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: Args,
        }
        let plain = Wrapper::parse_from(["imsreg", "m.yaml"]);
        assert_eq!(plain.args.options().metrics, job::MetricsOptions::default());
        let wrapper = Wrapper::parse_from([
            "imsreg",
            "m.yaml",
            "--metrics-file",
            "/var/lib/node_exporter/imsreg.prom",
            "--metrics-listen",
            "127.0.0.1:9464",
        ]);
        assert_eq!(
            wrapper.args.options().metrics,
            job::MetricsOptions {
                file: Some(PathBuf::from("/var/lib/node_exporter/imsreg.prom")),
                listen: Some("127.0.0.1:9464".parse().unwrap()),
            }
        );
        assert!(
            Wrapper::try_parse_from(["imsreg", "m.yaml", "--metrics-listen", "localhost"]).is_err(),
            "an address is IP:PORT"
        );
    }

    #[test]
    fn verdicts_map_to_the_documented_exit_codes() {
        assert_eq!(exit_code(Verdict::AllRegistered), 0);
        assert_eq!(exit_code(Verdict::NotAllRegistered), 1);
        assert_eq!(exit_code(Verdict::Unreachable), 1);
        assert_eq!(exit_code(Verdict::CredentialsRejected), 2);
        assert_eq!(exit_code(Verdict::Interrupted), 130);
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
        let config = imsreg::run::RunConfig::resolve(&wrapper.args.settings(), &manifest);
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
