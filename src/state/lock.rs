//! The run lock: one run at a time per state journal.
//!
//! The lock is an exclusive advisory lock (`flock`, through std's `File::try_lock`) on a
//! sibling file `<state>.lock`, not on the journal itself: compaction replaces the journal by
//! rename, which would silently drop a lock held on the old file. The holder writes its PID and
//! start time into the lock file so a second run can say who is busy. The lock dies with the
//! process, so a crashed run never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::error::StateError;
use super::holder::LockHolder;
use super::path::resolve;

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
    /// The journal file itself, locked too: hard links give one journal several names (and so
    /// several lock files), but one inode.
    _journal: Option<File>,
}

/// The lock file that guards `state_path`.
pub fn lock_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    state_path.with_file_name(name)
}

impl RunLock {
    /// Takes the lock for `state_path` without waiting; `StateError::Locked` names the holder.
    /// The lock is that of the file the path resolves to, whatever name it is reached by
    /// (symlinks, hard links).
    pub fn acquire(state_path: &Path) -> Result<RunLock, StateError> {
        let real = resolve(state_path);
        let path = lock_path(&real);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StateError::io(&path, source))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StateError::Locked {
                    state: state_path.to_path_buf(),
                    holder: serde_json::from_str(text.trim()).ok(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::io(&path, source));
            }
        }
        // Only a regular file is opened here (opening a FIFO would block); anything else is
        // refused when the journal is read.
        let regular = std::fs::metadata(&real).is_ok_and(|meta| meta.is_file());
        let opened = if regular {
            File::open(&real)
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        };
        let journal = match opened {
            Ok(journal) => match journal.try_lock() {
                Ok(()) => Some(journal),
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StateError::Locked {
                        state: state_path.to_path_buf(),
                        holder: None,
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(StateError::io(&real, source));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(StateError::io(&real, source)),
        };
        let holder = LockHolder {
            pid: std::process::id(),
            started_at: Utc::now(),
        };
        let text = serde_json::to_string(&holder).map_err(|e| StateError::Encode(e.to_string()))?;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|source| StateError::io(&path, source))?;
        Ok(RunLock {
            path,
            _file: file,
            _journal: journal,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a run holds the lock of a state journal, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// Held; the holder as it wrote itself into the lock file (None if unreadable).
    Held(Option<LockHolder>),
}

/// Looks at the lock of `state_path` without taking it for more than an instant and without
/// writing anything (for `imsreg status`, which may only have read access). A missing lock
/// file means no run ever started on this journal.
pub fn probe(state_path: &Path) -> Result<LockState, StateError> {
    let path = lock_path(&resolve(state_path));
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockState::Free),
        Err(source) => return Err(StateError::io(&path, source)),
    };
    // A shared lock is granted unless a run holds the exclusive one; dropping the file
    // releases it at once.
    match file.try_lock_shared() {
        Ok(()) => Ok(LockState::Free),
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Ok(LockState::Held(serde_json::from_str(text.trim()).ok()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StateError::io(&path, source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("run.state.jsonl");
        let first = RunLock::acquire(&state).unwrap();
        assert_eq!(first.path(), dir.path().join("run.state.jsonl.lock"));
        match RunLock::acquire(&state) {
            Err(StateError::Locked { holder, .. }) => {
                let holder = holder.expect("holder recorded");
                assert_eq!(holder.pid, std::process::id());
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(&state).expect("free again after the holder is gone");
    }

    #[test]
    fn probe_names_the_holder_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.jsonl");
        assert_eq!(probe(&state).unwrap(), LockState::Free, "no lock file yet");
        assert!(!lock_path(&state).exists(), "probing creates nothing");

        let held = RunLock::acquire(&state).unwrap();
        let before = std::fs::read(held.path()).unwrap();
        match probe(&state).unwrap() {
            LockState::Held(Some(holder)) => assert_eq!(holder.pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(std::fs::read(held.path()).unwrap(), before, "holder kept");
        drop(held);

        assert_eq!(probe(&state).unwrap(), LockState::Free);
        let _again = RunLock::acquire(&state).expect("a probe leaves the lock free");
    }
}
