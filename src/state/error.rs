//! What can go wrong with the state journal and its lock, in words for the user.

use std::path::{Path, PathBuf};

use super::holder::LockHolder;

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
    #[error(
        "{} is not an imsreg state journal (it is not empty, and no line of it is a journal line); nothing was changed. Give --state a new file, or the journal of this manifest",
        path.display()
    )]
    NotAJournal { path: PathBuf },
    /// Not a regular file, or too large to be a journal.
    #[error("{0}")]
    Input(#[from] crate::input::InputError),
    #[error("cannot encode a state journal line: {0}")]
    Encode(String),
    #[error("cannot compact the state journal: {0}")]
    Compact(String),
}

impl StateError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
