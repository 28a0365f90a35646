//! `imsreg report merge`: the terminal side of [`imsreg::job::merge_reports`]. Combines the
//! reports of a manifest's shards into one report, prints its counts, and exits as `imsreg
//! run` of the whole manifest would (0 all registered, 1 not all), or 2 when the reports
//! cannot be read or do not belong together.

use std::path::PathBuf;

use imsreg::job;
use imsreg::report::escape::printable;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Combine the JSON reports of `imsreg run --shard K/N` (every shard 1..N once, one
    /// manifest) into the report of the whole manifest.
    #[command(
        after_help = "Exit codes: 0 every image of the manifest is registered, 1 some are not \
(or the merged report could not be written), 2 a report cannot be read, or the reports are not \
every shard of one manifest exactly once."
    )]
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shard reports (.json, or .yaml), written by `imsreg run --shard K/N --report`.
    #[arg(required = true, value_name = "REPORT.json")]
    pub inputs: Vec<PathBuf>,

    /// Write the merged report here; the extension picks the format: .json .yaml/.yml .csv
    /// .xml (JUnit) .md. Repeatable.
    #[arg(long = "report", value_name = "PATH", required = true)]
    pub reports: Vec<PathBuf>,
}

pub fn main(args: Args) -> u8 {
    match args.command {
        Command::Merge(args) => merge(args),
    }
}

fn merge(args: MergeArgs) -> u8 {
    let merged = match job::merge_reports(&args.inputs, &args.reports) {
        Ok(merged) => merged,
        Err(err) => {
            eprintln!("imsreg report merge: {}", printable(&err.to_string()));
            return exit::USAGE;
        }
    };
    let s = &merged.report.summary;
    eprintln!(
        "imsreg report merge: {} report(s) of {}: {} image(s), {} registered, {} already \
         registered, {} failed, {} preflight failed, {} invalid, {} pending, {} cancelled, {} \
         unreachable",
        merged.inputs,
        printable(&merged.report.manifest),
        s.total,
        s.registered,
        s.already_registered,
        s.failed,
        s.preflight_failed,
        s.invalid,
        s.pending,
        s.cancelled,
        s.unreachable
    );
    for path in &merged.written {
        eprintln!("  wrote {}", printable(&path.display().to_string()));
    }
    if let Some(err) = &merged.report_error {
        eprintln!("imsreg report merge: {}", printable(err));
    }
    crate::run::exit_code(merged.verdict)
}
