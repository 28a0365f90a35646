//! The manifest: a YAML list of images (by ID, or by name for imsreg to create) and OBS URLs,
//! parsed and validated offline into a [`Manifest`] the pipeline can run, with every problem
//! located at its file, line and column.
//!
//! Reading goes, in [`read`]: [`source`] (UTF-8, tabs) -> [`index`] (positions, from
//! saphyr-parser's events; refuses alias bombs) -> [`raw`] (the values, from serde_yaml) ->
//! [`check`] (walks both together and applies [`rules`], and [`create`] to the entries imsreg
//! creates) -> [`Manifest`]; big `images:` lists are read and checked in slices on the way
//! ([`stream`]). [`render`] prints the diagnostics.

pub mod bounds;
mod check;
mod create;
mod fasthash;
mod index;
pub mod model;
mod raw;
mod read;
pub mod render;
mod rules;
mod source;
mod stream;
mod text;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use check::format_counts;
pub use model::{
    CreateEntry, Defaults, Diagnostic, ImageEntry, ImageFormat, ImageUrl, InvalidEntry, Manifest,
    Placement, Position, RegionSettings, Settings, Severity,
};

/// The manifest file could not be read at all (content problems are [`Diagnostic`]s instead):
/// missing, unreadable, not a regular file, or larger than [`crate::input::MAX_INPUT_BYTES`].
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Read(#[from] crate::input::InputError),
}

/// Reads and validates a manifest file. Content problems (syntax, rules) are reported in
/// [`Manifest::diagnostics`]; only a file that cannot be read is an `Err`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let bytes = crate::input::read("manifest", path, crate::input::MAX_INPUT_BYTES)?;
    let mut manifest = parse_bytes(&bytes, &path.display().to_string());
    manifest.path = path.to_path_buf();
    manifest.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
    Ok(manifest)
}

/// Validates manifest text. `file_label` is the file name shown in diagnostics.
pub fn parse_str(source: &str, file_label: &str) -> Manifest {
    read::check_text(source, file_label)
}

/// Validates manifest bytes, reporting non-UTF-8 input as a located diagnostic.
pub fn parse_bytes(source: &[u8], file_label: &str) -> Manifest {
    read::check_bytes(source, file_label)
}
