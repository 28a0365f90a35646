//! Run state that outlives a process: the state journal (job IDs and outcomes, replayed on
//! the next run) and the run lock (one run per journal at a time).

pub mod journal;
pub mod lock;

use std::path::{Path, PathBuf};

pub use journal::{EntryKind, ImageState, Journal, Replayed, replay};
pub use lock::{LockHolder, RunLock};

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
