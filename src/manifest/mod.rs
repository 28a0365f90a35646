//! The manifest: a YAML list of image IDs and OBS URLs, parsed and validated offline into a
//! [`Manifest`] the pipeline can run, with every problem located at its file, line and column.

pub mod model;

use std::path::{Path, PathBuf};

pub use model::{
    Diagnostic, ImageEntry, ImageFormat, ImageUrl, InvalidEntry, Manifest, Settings, Severity,
};

/// The manifest file could not be read at all (content problems are [`Diagnostic`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads and validates a manifest file. Content problems (syntax, rules) are reported in
/// [`Manifest::diagnostics`]; only an unreadable file is an `Err`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let _ = path;
    unimplemented!("manifest loading is being built (issue 2)")
}
