//! The metrics file for node_exporter's textfile collector (`--metrics-file PATH.prom`):
//! written atomically, so that a scrape never reads half a file, and read back at the start of
//! a run for the last success an earlier run recorded.
//!
//! Atomic: the text goes to a temporary file in the same directory (a rename is atomic only
//! within one filesystem) whose name does not end in `.prom` (the collector reads `*.prom`
//! only), is fsynced, then renamed over the target; the directory is fsynced so the rename
//! survives a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The name of the series kept across runs (see [`read_last_successes`]).
const LAST_SUCCESS: &str = "imsreg_last_success_timestamp_seconds";

/// The temporary file `path` is written through: `.NAME.tmp.PID` in the same directory.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imsreg.prom".to_string());
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Replaces the file at `path` with `text` atomically (see the module's doc).
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let temp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    // Best effort: not every filesystem lets a directory be opened and synced.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// How often `--metrics-file` is rewritten while a run lasts (and once more at its end).
pub const REWRITE_INTERVAL: Duration = Duration::from_secs(10);

/// Rewrites `path` with `render()` every `interval` until `stop` fires (the final write is
/// the caller's, after the report). A failed write is logged and tried again next time.
pub fn spawn_rewrites(
    path: PathBuf,
    interval: Duration,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let (path, text) = (path.clone(), render());
            let written = tokio::task::spawn_blocking(move || write_atomically(&path, &text)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!("cannot rewrite the metrics file: {err}"),
                Err(err) => tracing::warn!("cannot rewrite the metrics file: {err}"),
            }
        }
    })
}

/// The last-success timestamps (manifest label, value) an earlier run wrote into the file at
/// `path`; none when there is no file or it holds none.
pub fn read_last_successes(path: &Path) -> Vec<(String, f64)> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines().filter_map(parse_last_success).collect()
}

/// `imsreg_last_success_timestamp_seconds{manifest="NAME"} VALUE`, as the registry writes it.
fn parse_last_success(line: &str) -> Option<(String, f64)> {
    let rest = line
        .strip_prefix(LAST_SUCCESS)?
        .strip_prefix("{manifest=\"")?;
    let mut manifest = String::new();
    let mut chars = rest.char_indices();
    let end = loop {
        match chars.next()? {
            (_, '\\') => match chars.next()?.1 {
                'n' => manifest.push('\n'),
                other => manifest.push(other),
            },
            (at, '"') => break at,
            (_, other) => manifest.push(other),
        }
    };
    let value = rest[end + 1..].strip_prefix('}')?.trim();
    let value: f64 = value.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((manifest, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_file_is_beside_the_target_and_not_read_by_the_collector() {
        let temp = temp_path(Path::new("/var/lib/node_exporter/imsreg.prom"));
        assert_eq!(temp.parent(), Some(Path::new("/var/lib/node_exporter")));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(!name.ends_with(".prom"), "{name}");
        assert!(name.starts_with(".imsreg.prom.tmp."), "{name}");
        assert_eq!(
            temp_path(Path::new("imsreg.prom")).parent(),
            Some(Path::new(""))
        );
    }

    #[test]
    fn a_rewrite_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsreg.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["imsreg.prom"]);
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsreg.prom");
        write_atomically(&path, "a 1\n").unwrap();
        // The target is now a directory: the rename fails, the temporary file goes away.
        let blocked = dir.path().join("blocked.prom");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), "").unwrap();
        assert!(write_atomically(&blocked, "b 1\n").is_err());
        assert!(!temp_path(&blocked).exists());
        assert_eq!(fs::read_to_string(&path).unwrap(), "a 1\n");
    }

    #[tokio::test(start_paused = true)]
    async fn the_file_is_rewritten_every_interval_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsreg.prom");
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = count.clone();
        let render = Arc::new(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            format!("imsreg_test {n}\n")
        });
        let stop = CancellationToken::new();
        let task = spawn_rewrites(path.clone(), REWRITE_INTERVAL, render, stop.clone());
        let read = || fs::read_to_string(&path).ok();
        // Nothing before the first interval has passed.
        tokio::time::sleep(REWRITE_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(read(), None);
        let mut seen = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(REWRITE_INTERVAL).await;
            // The blocking write finishes on its own thread; wait for it without moving time.
            while read().as_deref() == seen.last().map(String::as_str) {
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.push(read().unwrap());
        }
        assert_eq!(
            seen,
            ["imsreg_test 1\n", "imsreg_test 2\n", "imsreg_test 3\n"]
        );
        stop.cancel();
        task.await.unwrap();
        tokio::time::sleep(REWRITE_INTERVAL * 3).await;
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn last_successes_are_read_back_with_their_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsreg.prom");
        assert!(read_last_successes(&path).is_empty());
        fs::write(
            &path,
            "# HELP imsreg_last_success_timestamp_seconds x\n\
             # TYPE imsreg_last_success_timestamp_seconds gauge\n\
             imsreg_last_success_timestamp_seconds{manifest=\"wave-1.yaml\"} 1780000000.25\n\
             imsreg_last_success_timestamp_seconds{manifest=\"q\\\"x\\\\y.yaml\"} 17\n\
             imsreg_last_success_timestamp_seconds{manifest=\"bad.yaml\"} NaN\n\
             imsreg_run_start_timestamp_seconds 5\n",
        )
        .unwrap();
        assert_eq!(
            read_last_successes(&path),
            [
                ("wave-1.yaml".to_string(), 1780000000.25),
                ("q\"x\\y.yaml".to_string(), 17.0)
            ]
        );
    }
}
