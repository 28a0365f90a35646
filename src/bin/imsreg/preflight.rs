//! `imsreg preflight`: checks every manifest entry's bucket and object in OBS, read-only, with
//! [`imsreg::job::preflight::preflight`]. Prints one line per problem and a summary (or one
//! JSON document for CI); exits 0 when every entry passes, 1 when some fail, 2 when no verdict
//! could be made (usage, manifest, credentials, OBS endpoint unreachable).

use std::io::Write;
use std::path::PathBuf;

use imsreg::job::{self, JobError, JobObserver, PreflightOptions};
use imsreg::manifest::{Manifest, Settings, render as manifest_render};
use imsreg::preflight::render;
use imsreg::run::{EventSink, RunEvent};
use indicatif::{MultiProgress, ProgressDrawTarget};
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::run::LogFormat;
use crate::validate::OutputFormat;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every entry passes (warnings allowed), 1 some entries fail, \
2 no verdict (usage, manifest, credentials, or OBS could not be reached)."
)]
pub struct Args {
    /// The manifest whose objects to check.
    pub manifest: PathBuf,

    /// How to print the problems.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    /// OBS endpoint URL [default: https://obs.REGION.myhuaweicloud.com; http:// only for
    /// loopback].
    #[arg(long, value_name = "URL", conflicts_with = "simulate")]
    pub obs_endpoint: Option<String>,

    /// OBS requests per second, 0.01 to 1000000 [default: 20].
    #[arg(long, value_name = "RATE", value_parser = imsreg::manifest::bounds::parse_rate)]
    pub obs_rate: Option<f64>,

    /// Region IMS registers in, e.g. ap-southeast-1: buckets elsewhere fail (IMG.0058), and it
    /// selects the default OBS endpoint.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// IMS endpoint URL: its ims.REGION.myhuaweicloud.com host gives the region when
    /// --region is not set.
    #[arg(long, value_name = "URL", conflicts_with = "simulate")]
    pub endpoint: Option<String>,

    /// OBS requests in flight at once [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Check against the built-in simulator's OBS, with an object made up for every entry.
    #[arg(long)]
    pub simulate: bool,

    /// Check only the entries of shard K of N (as `imsreg run --shard K/N` runs them), with
    /// 1/N of the OBS rate and concurrency unless a flag sets them.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<imsreg::shard::Shard>,
}

impl Args {
    fn options(&self) -> PreflightOptions {
        PreflightOptions {
            manifest: self.manifest.clone(),
            flags: Settings {
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
                obs_endpoint: self.obs_endpoint.clone(),
                obs_rate: self.obs_rate,
                concurrency: self.concurrency,
                ..Settings::default()
            },
            simulate: self.simulate,
            environment: job::Environment::Process,
            shard: self.shard,
        }
    }
}

/// Shows the manifest's diagnostics (on stderr, or as JSON on stdout when the manifest is
/// unusable and JSON was asked for).
struct Diagnostics {
    format: OutputFormat,
}

impl EventSink for Diagnostics {
    fn event(&self, _event: &RunEvent) {}
}

impl JobObserver for Diagnostics {
    fn manifest_checked(&self, manifest: &Manifest) {
        match self.format {
            OutputFormat::Json if manifest.error_count() > 0 => {
                println!("{}", manifest_render::to_json(&manifest.diagnostics));
            }
            OutputFormat::Json => {}
            OutputFormat::Text => {
                let mut stderr = anstream::stderr().lock();
                for diagnostic in &manifest.diagnostics {
                    let _ = writeln!(stderr, "{}", manifest_render::Styled(diagnostic));
                }
            }
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
            eprintln!("imsreg preflight: cannot start the async runtime: {err}");
            return exit::USAGE;
        }
    };
    crate::run::logging::init_with_default(
        LogFormat::Text,
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        "warn",
    );
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let observer = Diagnostics {
        format: args.format,
    };
    let outcome = runtime.block_on(job::preflight::preflight(
        &args.options(),
        &observer,
        cancel,
    ));
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(outcome) => {
            let written = match args.format {
                OutputFormat::Json => writeln!(
                    std::io::stdout(),
                    "{}",
                    render::to_json(&outcome.manifest, &outcome.report, &outcome.warnings)
                ),
                OutputFormat::Text => print_text(&outcome),
            };
            // stdout closed (e.g. piped into `head`): the exit code still tells the result.
            drop(written);
            if outcome.report.failed() == 0 {
                exit::OK
            } else {
                exit::SOME_FAILED
            }
        }
        Err(err) => {
            if !matches!(err, JobError::Manifest { .. }) || args.format == OutputFormat::Text {
                eprintln!("imsreg preflight: {err}");
            }
            exit::USAGE
        }
    }
}

fn print_text(outcome: &job::PreflightOutcome) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    for problem in render::problems(&outcome.manifest, &outcome.report.verdicts) {
        writeln!(out, "{}", render::Styled(&problem))?;
    }
    writeln!(
        out,
        "{}",
        render::summary(&outcome.manifest, &outcome.report)
    )
}
