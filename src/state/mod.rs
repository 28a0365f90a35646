//! Run state that outlives a process: the state journal (job IDs and outcomes, replayed on
//! the next run) and the run lock (one run per journal at a time). Storage only: this module
//! knows nothing of the engine or the report; what a replayed journal means for a run is
//! decided in [`crate::job`].

pub mod commit;
pub mod journal;
pub mod lock;

use std::path::{Path, PathBuf};

pub use journal::{EntryKind, ImageState, Journal, JournalStatus, Replayed, replay};
pub use lock::{LockHolder, LockState, RunLock};

/// The file a journal path stands for, symlinks resolved: every name of one journal (a
/// symlink, a path through a linked folder) shares one lock, and compaction rewrites the file
/// the link points to, keeping the link a link. A journal that does not exist yet resolves
/// through its folder.
pub fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |p| p.join(name))
        }
        _ => path.to_path_buf(),
    }
}

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
