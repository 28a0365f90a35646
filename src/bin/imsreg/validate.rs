//! `imsreg validate`: offline manifest check. Prints every problem with its line (or a JSON
//! array for CI), then a summary; exits 0 for a usable manifest, 2 otherwise.

use std::io::Write;
use std::path::PathBuf;

use imsreg::manifest::{self, Diagnostic, Manifest, Severity, render};

use crate::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One `FILE:LINE...: error: ...` line per problem, then a summary.
    Text,
    /// JSON (validate: an array of {file, line, column, severity, field, message}; preflight:
    /// {file, warnings, summary, problems, entries}).
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to check.
    pub manifest: PathBuf,
    /// How to print the problems.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub fn main(args: Args) -> u8 {
    let label = args.manifest.display().to_string();
    let manifest = match manifest::load(&args.manifest) {
        Ok(manifest) => manifest,
        Err(err) => {
            match args.format {
                OutputFormat::Json => {
                    let diagnostic = Diagnostic {
                        file: label,
                        line: 1,
                        column: 1,
                        severity: Severity::Error,
                        field: "file".to_string(),
                        message: format!("{err} (check the path and permissions)"),
                    };
                    println!("{}", render::to_json(&[diagnostic]));
                }
                OutputFormat::Text => eprintln!("imsreg validate: {err}"),
            }
            return exit::USAGE;
        }
    };
    let valid = manifest.error_count() == 0;
    let written = match args.format {
        OutputFormat::Json => writeln!(
            std::io::stdout(),
            "{}",
            render::to_json(&manifest.diagnostics)
        ),
        OutputFormat::Text => print_text(&manifest, &label),
    };
    if written.is_err() {
        // stdout closed (e.g. piped into `head`): the exit code still tells the result.
    }
    if valid { exit::OK } else { exit::USAGE }
}

fn print_text(manifest: &Manifest, label: &str) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    for diagnostic in &manifest.diagnostics {
        writeln!(out, "{}", render::Styled(diagnostic))?;
    }
    let warnings = manifest.warning_count();
    let errors = manifest.error_count();
    let total = manifest.valid_count() + manifest.invalid.len();
    if errors == 0 {
        let formats: Vec<String> = manifest::format_counts(manifest)
            .into_iter()
            .map(|(format, count)| format!("{format} {count}"))
            .collect();
        let valid = manifest.valid_count();
        let to_create = match manifest.creates.len() {
            0 => String::new(),
            creates => format!(", {creates} to create"),
        };
        writeln!(
            out,
            "{label}: ok: {valid} image{}{to_create} ({}), {warnings} warning{}",
            plural(valid),
            formats.join(", "),
            plural(warnings),
        )
    } else {
        let entries = if manifest.invalid.is_empty() {
            String::new()
        } else {
            format!("; {} of {total} entries invalid", manifest.invalid.len())
        };
        writeln!(
            out,
            "{label}: invalid: {errors} error{}, {warnings} warning{}{entries}",
            plural(errors),
            plural(warnings),
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
