//! Log output of `imsreg run`: tracing-subscriber lines on stderr, as text for people or JSON
//! for cron mailers and log shippers, filtered by `RUST_LOG` (default `info`).
//!
//! When progress bars are on screen, every log line is written through
//! [`MultiProgress::suspend`] so it lands above the bars instead of tearing them.
//!
//! Field values (and the message) of text lines are printed through
//! [`imsreg::report::escape::printable`]: a newline in a server's error text or a file name
//! cannot forge a log line. JSON lines are escaped by the JSON encoder.

use std::io::{self, IsTerminal, Write};

use std::fmt;

use imsreg::report::escape::printable;
use indicatif::MultiProgress;
use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// The filter used when `RUST_LOG` is unset or unparsable.
const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. Later calls (tests running `main` twice) are ignored.
pub fn init(format: LogFormat, bars: MultiProgress) {
    init_with_default(format, bars, DEFAULT_FILTER);
}

/// [`init`] with another filter for when `RUST_LOG` is unset (`imsreg preflight` logs only
/// warnings: its findings go to stdout).
pub fn init_with_default(format: LogFormat, bars: MultiProgress, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let writer = BarSafeStderr { bars };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .fmt_fields(escaped_fields())
            .with_ansi(color_on_stderr())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// The fields of a text line, `name=value` apart by spaces (the message without its name),
/// each value with its control characters escaped.
fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(
        |writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let text = format!("{value:?}");
            let text = printable(&text);
            match field.name() {
                "message" => write!(writer, "{text}"),
                name => write!(writer, "{name}={text}"),
            }
        },
    )
    .delimited(" ")
}

/// Colour only for a person at a terminal, and never when `NO_COLOR` asks otherwise.
fn color_on_stderr() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Stderr, but each formatted event is written while the progress bars are hidden.
#[derive(Clone)]
struct BarSafeStderr {
    bars: MultiProgress,
}

impl<'a> MakeWriter<'a> for BarSafeStderr {
    type Writer = BarSafeStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for BarSafeStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber formats a whole event into one buffer, so one write is one line.
        self.bars.suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
