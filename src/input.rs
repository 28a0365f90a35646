//! Reading a file the user named (a manifest, a state journal, a credentials file): it must be
//! a regular file, and it is read up to a bound. `/dev/zero`, a FIFO or a folder given where a
//! file is expected is refused with a message that says so, and a file larger than the bound
//! is an error naming the file and the bound, instead of a read that grows without end.
//!
//! The file is opened without blocking (a FIFO with no writer would otherwise hang the open),
//! its type and size are checked on the open descriptor (no race with a rename), and the read
//! itself is bounded (`take(limit + 1)`), so a file that grows while it is read, or whose size
//! `stat` does not tell (`/proc`), cannot slip past the size checked first.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest manifest or state journal imsreg reads (a 100,000-image manifest is about
/// 12 MiB, its journal about 25 MiB).
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Why a file could not be read. `what` names the file's role ("manifest", "state journal").
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the {what} {} is {kind}, not a regular file (give the path of a file)",
        path.display()
    )]
    NotAFile {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error(
        "the {what} {} is larger than {}, the most imsreg reads (is it the right file?)",
        path.display(),
        show_size(*limit)
    )]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        limit: u64,
    },
}

impl InputError {
    /// The file does not exist (callers may treat a missing file as empty).
    pub fn is_not_found(&self) -> bool {
        matches!(self, InputError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// What is wrong, without the file's role and path (for messages that name them already).
    pub fn detail(&self) -> String {
        match self {
            InputError::Io { source, .. } => source.to_string(),
            InputError::NotAFile { kind, .. } => format!("it is {kind}, not a regular file"),
            InputError::TooLarge { limit, .. } => {
                format!(
                    "it is larger than {}, the most imsreg reads",
                    show_size(*limit)
                )
            }
        }
    }
}

fn show_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// A regular file opened for reading, whose reads stop after `limit` bytes; reading past the
/// limit is an [`InputError::TooLarge`] (see [`Bounded`]).
pub fn open(what: &'static str, path: &Path, limit: u64) -> Result<Bounded, InputError> {
    let io = |source| InputError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    let file_type = metadata.file_type();
    let kind = if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a folder")
    } else if file_type.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if file_type.is_char_device() || file_type.is_block_device() {
        Some("a device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(kind) = kind {
        return Err(InputError::NotAFile {
            what,
            path: path.to_path_buf(),
            kind,
        });
    }
    // Saves reading what is too large already; the bounded read below still guards files
    // whose size is not what `stat` says (`/proc`, a file growing while it is read).
    if metadata.len() > limit {
        return Err(InputError::TooLarge {
            what,
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(Bounded {
        what,
        path: path.to_path_buf(),
        limit,
        announced: metadata.len(),
        reader: BufReader::new(file).take(limit.saturating_add(1)),
    })
}

/// The whole file, if it is a regular file of at most `limit` bytes.
pub fn read(what: &'static str, path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let mut file = open(what, path, limit)?;
    let mut bytes = Vec::with_capacity(file.announced.saturating_add(1) as usize);
    file.read_to_end(&mut bytes)
        .map_err(|source| file.error(source))?;
    Ok(bytes)
}

/// A file being read under a size bound: `take(limit + 1)`, and a read that reaches the byte
/// after the bound fails (line readers may still get the line holding that byte; the next
/// read fails). [`Bounded::error`] turns a read error back into an [`InputError`].
pub struct Bounded {
    what: &'static str,
    path: PathBuf,
    limit: u64,
    /// The size `stat` gave (at most `limit`), to size the buffer once.
    announced: u64,
    reader: std::io::Take<BufReader<File>>,
}

impl Bounded {
    /// The [`InputError`] for a failed read of this file.
    pub fn error(&self, source: std::io::Error) -> InputError {
        let too_large = source
            .get_ref()
            .is_some_and(|inner| inner.is::<TooLargeMarker>());
        if too_large {
            InputError::TooLarge {
                what: self.what,
                path: self.path.clone(),
                limit: self.limit,
            }
        } else {
            InputError::Io {
                what: self.what,
                path: self.path.clone(),
                source,
            }
        }
    }

    fn passed_limit(&self) -> bool {
        self.reader.limit() == 0
    }
}

/// Marks the read error raised when a file passes its bound.
#[derive(Debug)]
struct TooLargeMarker;

impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file is larger than the most imsreg reads")
    }
}

impl std::error::Error for TooLargeMarker {}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.reader.read(buf)?;
        if self.passed_limit() {
            return Err(std::io::Error::other(TooLargeMarker));
        }
        Ok(read)
    }
}

impl std::io::BufRead for Bounded {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.passed_limit() {
            return Err(std::io::Error::other(TooLargeMarker));
        }
        self.reader.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.reader.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_fifos_are_refused() {
        let err = read("manifest", Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(matches!(err, InputError::NotAFile { .. }), "{err}");
        assert!(err.to_string().contains("/dev/zero is a device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = read("manifest", dir.path(), 1024).unwrap_err();
        assert!(err.to_string().contains("is a folder"), "{err}");
        let fifo = dir.path().join("pipe");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Opening a FIFO nobody writes to would block; this must not.
        let err = read("state journal", &fifo, 1024).unwrap_err();
        assert!(err.to_string().contains("named pipe"), "{err}");
        let missing = read("manifest", &dir.path().join("nope"), 1024).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
    }

    #[test]
    fn files_up_to_the_bound_are_read_and_larger_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read("manifest", &path, 100).unwrap().len(), 100);
        let err = read("manifest", &path, 99).unwrap_err();
        assert!(
            matches!(err, InputError::TooLarge { limit: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("larger than 99 bytes"), "{err}");
        let err = read("manifest", &path, MAX_INPUT_BYTES).map(|b| b.len());
        assert_eq!(err.unwrap(), 100);
    }

    #[test]
    fn the_read_is_bounded_even_when_stat_says_the_file_is_empty() {
        // A regular file whose size `stat` reports as 0 (as a file growing while read would
        // slip past a size checked first).
        let path = Path::new("/proc/self/status");
        assert_eq!(std::fs::metadata(path).unwrap().len(), 0);
        let err = read("manifest", path, 16).unwrap_err();
        assert!(
            matches!(err, InputError::TooLarge { limit: 16, .. }),
            "{err}"
        );
        assert!(!read("manifest", path, 1 << 20).unwrap().is_empty());
    }

    #[test]
    fn line_reads_stop_at_the_bound() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, b"aaaa\nbbbb\n").unwrap();
        let mut file = open("state journal", &path, 10).unwrap();
        let mut line = Vec::new();
        assert_eq!(file.read_until(b'\n', &mut line).unwrap(), 5);
        line.clear();
        assert_eq!(file.read_until(b'\n', &mut line).unwrap(), 5);
        line.clear();
        assert_eq!(file.read_until(b'\n', &mut line).unwrap(), 0);

        // Lines of a file larger than `stat` says: the line reader meets the bound.
        let mut file = open("state journal", Path::new("/proc/self/status"), 40).unwrap();
        let mut all = Vec::new();
        let err = loop {
            match file.read_until(b'\n', &mut all) {
                Ok(0) => panic!("read past the bound"),
                Ok(_) => {}
                Err(err) => break file.error(err),
            }
        };
        assert!(matches!(err, InputError::TooLarge { .. }), "{err}");
    }
}
