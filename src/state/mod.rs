//! Run state that outlives a process: the state journal (job IDs and outcomes, replayed on
//! the next run) and the run lock (one run per journal at a time).

pub mod commit;
pub mod journal;
pub mod lock;
pub mod resume;
pub mod sink;

use std::path::{Path, PathBuf};

pub use journal::{EntryKind, ImageState, Journal, Replayed, replay};
pub use lock::{LockHolder, LockState, RunLock};
pub use resume::{Resumed, Slot, resume};
pub use sink::{JournalSink, Tee};

/// The journal's default location: next to the manifest, `<stem>.imsreg-state.jsonl`, so re-runs
/// of the same manifest (cron) find it without a flag.
pub fn default_path(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imsreg".to_string());
    manifest.with_file_name(format!("{stem}.imsreg-state.jsonl"))
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another imsreg run is using the state journal {} ({}); wait for it to finish, or use another --state file",
        state.display(),
        holder.as_ref().map_or_else(|| "holder unknown".to_string(), |h| h.to_string())
    )]
    Locked {
        state: PathBuf,
        holder: Option<LockHolder>,
    },
    /// Not a regular file, or too large to be a journal.
    #[error("{0}")]
    Input(#[from] crate::input::InputError),
    #[error("cannot encode a state journal line: {0}")]
    Encode(String),
    #[error("cannot compact the state journal: {0}")]
    Compact(String),
}

impl StateError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_sits_next_to_the_manifest() {
        assert_eq!(
            default_path(Path::new("waves/wave-1.yaml")),
            Path::new("waves/wave-1.imsreg-state.jsonl")
        );
        assert_eq!(
            default_path(Path::new("m.yml")),
            Path::new("m.imsreg-state.jsonl")
        );
    }
}
