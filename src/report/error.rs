//! What can go wrong when a report is rendered or written, in words for the user.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "cannot tell the report format of {}: use a .json, .yaml, .yml, .csv, .xml (JUnit) or .md file name",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("cannot render the {format} report: {detail}")]
    Render {
        format: &'static str,
        detail: String,
    },
    /// A report given to `imsreg report merge` cannot be read (the message names it).
    #[error("{0}")]
    Unreadable(String),
    #[error("{} is not a report written by `imsreg run`: {detail}", path.display())]
    NotAReport { path: PathBuf, detail: String },
    /// The reports given to `imsreg report merge` do not belong together (the message says
    /// which files, and why).
    #[error("cannot merge: {0}")]
    Merge(String),
    #[error("cannot write report {}: {source} (check that its folder is writable)", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
