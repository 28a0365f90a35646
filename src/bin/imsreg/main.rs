//! The `imsreg` command line: a thin layer over the library that parses flags, sets up logging
//! and the terminal, calls into `imsreg::*`, and maps outcomes to exit codes.

mod preflight;
mod report;
mod run;
mod simulate;
mod status;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc keeps a long run's resident memory close to its live heap; glibc malloc let it
/// grow to twice that (491 against 209 MiB peak RSS for a 100,000-image run).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start. One arena: the tasks move between runtime threads,
/// and memory one thread frees is then reused by the others instead of sitting in a
/// per-thread arena; freed pages go back to the system at once instead of after 10 s (the
/// last moment of a large run allocates the records while the plan is being released). Peak
/// RSS at 20,000 / 100,000 images: 48 / 94 MiB default, 34-39 / 83-86 MiB with a 1 s decay,
/// 31-32 / 75-77 MiB with these. Returning pages at once has a CPU price (an `madvise` per
/// emptied slab, a page fault when it is used again): about a sixth of the engine's CPU in
/// `bench_run` (a). A 100 ms delay saves that but lifts the 100,000-image peak to 64.0-64.7 MiB
/// (1 s: 65-67 MiB) against 61.5 with these, so memory wins.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static ALLOCATOR_OPTIONS: AllocatorOptions =
    AllocatorOptions(c"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr());

/// A C string pointer that may live in a static (it points to a constant).
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
struct AllocatorOptions(*const std::ffi::c_char);

// SAFETY: the pointer targets an immutable 'static C string literal.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for AllocatorOptions {}

/// Exit codes shared by every subcommand (documented in the README).
pub mod exit {
    /// Everything succeeded.
    pub const OK: u8 = 0;
    /// The run finished but some images failed, are invalid or still pending.
    pub const SOME_FAILED: u8 = 1;
    /// Nothing was attempted: usage, manifest, configuration or credential error.
    pub const USAGE: u8 = 2;
    /// Another run holds the state journal's lock ("busy, try later"; EX_TEMPFAIL).
    pub const LOCKED: u8 = 75;
    /// Interrupted by SIGINT/SIGTERM/SIGHUP.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(
    name = "imsreg",
    version,
    about = "Register many OBS disk-image files as private images in Huawei Cloud IMS",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest offline and report every problem with its line.
    Validate(validate::Args),
    /// Check every entry's object in OBS (exists, Standard, size, encryption, format), read-only.
    Preflight(preflight::Args),
    /// Register every image of a manifest: submit, poll, confirm, report.
    Run(Box<run::Args>),
    /// Serve the built-in IMS simulator over HTTP (for demos, tests and benchmarks).
    Simulate(simulate::Args),
    /// Show where a run stands, from its state journal (no network).
    Status(status::Args),
    /// Work with reports: `imsreg report merge` combines the reports of a manifest's shards.
    Report(report::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with exit 0, and usage errors to stderr.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let code = match cli.command {
        Command::Validate(args) => validate::main(args),
        Command::Preflight(args) => preflight::main(args),
        Command::Run(args) => run::main(*args),
        Command::Simulate(args) => simulate::main(args),
        Command::Status(args) => status::main(args),
        Command::Report(args) => report::main(args),
    };
    ExitCode::from(code)
}
