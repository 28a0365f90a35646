//! Group commit for the state journal: job-ID lines are written at once, and one background
//! thread fsyncs the file for all of them together.
//!
//! An fsync costs the same for one line as for fifty, and a run with many register calls in
//! flight accepts jobs faster than a disk syncs them one by one. So writers only note that a
//! line needs the disk ([`GroupCommit::written`]); the syncer thread fsyncs whenever lines are
//! waiting, and each fsync covers every line written before it started. A writer that must not
//! go on before its line is durable awaits [`GroupCommit::durable`], which never blocks a tokio
//! worker thread. With nothing waiting, a line is synced at once: no added latency when idle.

use std::fs::File;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

/// The syncer thread and what writers share with it.
pub struct GroupCommit {
    shared: Arc<Shared>,
    /// The newest line number known to be on disk.
    durable: watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
    /// Used only if the thread could not be started: every line is synced inline.
    inline: Option<File>,
}

struct Shared {
    counters: Mutex<Counters>,
    wake: Condvar,
}

#[derive(Default)]
struct Counters {
    /// Lines noted by writers so far (line numbers start at 1).
    written: u64,
    closing: bool,
    /// The first fsync failure.
    failure: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GroupCommit {
    /// Starts syncing `file` (a handle on the journal; see `Journal::sync_handle`).
    pub fn start(file: File) -> Self {
        let shared = Arc::new(Shared {
            counters: Mutex::new(Counters::default()),
            wake: Condvar::new(),
        });
        let (sender, durable) = watch::channel(0);
        let (thread, inline) = match file.try_clone() {
            Ok(for_thread) => {
                let for_syncer = shared.clone();
                match std::thread::Builder::new()
                    .name("imsreg-journal".into())
                    .spawn(move || sync_loop(&for_syncer, &for_thread, &sender))
                {
                    Ok(thread) => (Some(thread), None),
                    Err(_) => (None, Some(file)),
                }
            }
            Err(_) => (None, Some(file)),
        };
        GroupCommit {
            shared,
            durable,
            thread,
            inline,
        }
    }

    /// Notes one more line that must reach the disk; returns its number, for [`Self::durable`].
    pub fn written(&self) -> u64 {
        let line = {
            let mut counters = self.shared.lock();
            counters.written += 1;
            counters.written
        };
        match &self.inline {
            Some(file) => {
                if let Err(e) = file.sync_data() {
                    self.shared.lock().failure.get_or_insert(e.to_string());
                }
            }
            None => self.shared.wake.notify_one(),
        }
        line
    }

    /// The number of the newest line noted so far.
    pub fn last_written(&self) -> u64 {
        self.shared.lock().written
    }

    /// Resolves once line `line` and every line before it are on disk (or the syncer gave up:
    /// see [`Self::failure`]).
    pub fn durable(&self, line: u64) -> impl Future<Output = ()> + Send + 'static {
        let mut durable = self.durable.clone();
        let inline = self.inline.is_some();
        async move {
            if !inline {
                // An error means the syncer is gone; nothing more will become durable.
                let _ = durable.wait_for(|synced| *synced >= line).await;
            }
        }
    }

    /// The first fsync failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failure.clone()
    }
}

impl Drop for GroupCommit {
    /// Syncs what is still waiting, then stops the thread.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(shared: &Shared, file: &File, durable: &watch::Sender<u64>) {
    let mut synced = 0;
    loop {
        let target = {
            let mut counters = shared.lock();
            while counters.written == synced && !counters.closing {
                counters = shared
                    .wake
                    .wait(counters)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if counters.written == synced {
                return;
            }
            counters.written
        };
        // Every line up to `target` was written before this fsync starts.
        if let Err(e) = file.sync_data() {
            let mut counters = shared.lock();
            if counters.failure.is_none() {
                tracing::error!(error = %e, "could not fsync the state journal");
                counters.failure = Some(e.to_string());
            }
        }
        synced = target;
        durable.send_replace(synced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_noted_line_becomes_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut file = File::create(&path).unwrap();
        let commit = GroupCommit::start(file.try_clone().unwrap());
        assert_eq!(commit.last_written(), 0);
        // Already durable: nothing was written.
        commit.durable(0).await;

        let mut waits = Vec::new();
        for i in 0..200 {
            writeln!(file, "line {i}").unwrap();
            let line = commit.written();
            assert_eq!(line, i + 1);
            waits.push(tokio::spawn(commit.durable(line)));
        }
        for wait in waits {
            tokio::time::timeout(std::time::Duration::from_secs(10), wait)
                .await
                .expect("a noted line never became durable")
                .unwrap();
        }
        assert_eq!(*commit.durable.borrow(), 200);
        assert!(commit.failure().is_none());
    }

    #[test]
    fn dropping_syncs_what_waits_and_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("j.jsonl")).unwrap();
        let commit = GroupCommit::start(file);
        commit.written();
        commit.written();
        let durable = commit.durable.clone();
        drop(commit);
        assert_eq!(*durable.borrow(), 2);
    }
}
