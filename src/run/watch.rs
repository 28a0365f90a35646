//! Which images are waiting for a bulk sweep to tell them their end: each follower registers
//! a watch (with the channel it listens on); the sweeps ([`super::sweep`]) deliver final
//! statuses through it. While at least [`BULK_THRESHOLD`] images are watched, sweeps replace
//! per-job polls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::ids::ImageId;
use crate::ims::ImageStatus;

/// Followed images from which on sweeps replace per-job polls.
pub const BULK_THRESHOLD: usize = 8;

/// The watched images, each with the channel its follower listens on.
pub struct Sweeper {
    watchers: Mutex<HashMap<ImageId, Watcher>>,
    count: AtomicUsize,
    /// The shortest time from submission to delivery seen so far in this run (see
    /// [`Sweeper::first_possible_end`]).
    fastest: Mutex<Option<Duration>>,
    /// Notified when the watched images drop below [`BULK_THRESHOLD`].
    bulk_ended: Notify,
}

struct Watcher {
    sender: oneshot::Sender<ImageStatus>,
    /// When the image was submitted (or adopted).
    started: Instant,
}

/// A follower's registration; unregisters on drop.
pub struct Watch<'a> {
    sweeper: &'a Sweeper,
    image_id: ImageId,
    pub receiver: Option<oneshot::Receiver<ImageStatus>>,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.sweeper.remove(&self.image_id);
    }
}

impl Default for Sweeper {
    fn default() -> Self {
        Self::new()
    }
}

impl Sweeper {
    pub fn new() -> Self {
        Sweeper {
            watchers: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            fastest: Mutex::new(None),
            bulk_ended: Notify::new(),
        }
    }

    /// Watches an image submitted (or adopted) at `started`.
    pub fn watch(&self, image_id: ImageId, started: Instant) -> Watch<'_> {
        let (sender, receiver) = oneshot::channel();
        let mut watchers = self.lock();
        if watchers
            .insert(image_id, Watcher { sender, started })
            .is_none()
        {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Watch {
            sweeper: self,
            image_id,
            receiver: Some(receiver),
        }
    }

    /// How many images are watched.
    pub fn watched(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether sweeps are running (followers do not poll on their own).
    pub fn is_bulk(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= BULK_THRESHOLD
    }

    /// Resolves when sweeps stop covering the watched images (fewer than [`BULK_THRESHOLD`]
    /// left); followers then poll on their own again.
    pub fn bulk_ended(&self) -> Notified<'_> {
        self.bulk_ended.notified()
    }

    /// The earliest instant a watched registration can be expected to end, judging by the
    /// fastest one seen so far: the oldest watch plus that duration. `None` before any
    /// registration was seen ending (or with nothing watched): no guess, sweep on time.
    pub fn first_possible_end(&self) -> Option<Instant> {
        let fastest = (*self.fastest.lock().unwrap_or_else(|e| e.into_inner()))?;
        let oldest = self.lock().values().map(|w| w.started).min()?;
        Some(oldest + fastest)
    }

    /// The instant by which every watched registration can be expected to have ended, judging
    /// by the fastest one seen so far: the newest watch plus that duration (`None` as above).
    pub fn last_possible_end(&self) -> Option<Instant> {
        let fastest = (*self.fastest.lock().unwrap_or_else(|e| e.into_inner()))?;
        let newest = self.lock().values().map(|w| w.started).max()?;
        Some(newest + fastest)
    }

    fn remove(&self, image_id: &ImageId) -> Option<Watcher> {
        let removed = self.lock().remove(image_id);
        if removed.is_some() && self.count.fetch_sub(1, Ordering::Relaxed) == BULK_THRESHOLD {
            self.bulk_ended.notify_waiters();
        }
        removed
    }

    /// Hands a final-looking status to the image's follower, if it is watched. `asked_at`:
    /// when the page that shows it was asked for (the registration had ended by then, or
    /// shortly after).
    pub fn deliver(&self, image_id: &ImageId, status: &ImageStatus, asked_at: Instant) {
        if !matches!(
            status,
            ImageStatus::Active | ImageStatus::Killed | ImageStatus::Deleted
        ) {
            return;
        }
        if let Some(watcher) = self.remove(image_id) {
            let took = asked_at.saturating_duration_since(watcher.started);
            let mut fastest = self.fastest.lock().unwrap_or_else(|e| e.into_inner());
            *fastest = Some(fastest.map_or(took, |f| f.min(took)));
            let _ = watcher.sender.send(status.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ImageId, Watcher>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::id;

    #[test]
    fn only_final_statuses_are_delivered_once() {
        let sweeper = Sweeper::new();
        let mut watch = sweeper.watch(id(0), Instant::now());
        let _other = sweeper.watch(id(1), Instant::now());
        assert!(!sweeper.is_bulk());
        sweeper.deliver(&id(0), &ImageStatus::Saving, Instant::now());
        sweeper.deliver(&id(0), &ImageStatus::Queued, Instant::now());
        let mut receiver = watch.receiver.take().unwrap();
        assert!(receiver.try_recv().is_err());
        sweeper.deliver(&id(0), &ImageStatus::Active, Instant::now());
        assert_eq!(receiver.try_recv().unwrap(), ImageStatus::Active);
        assert_eq!(sweeper.count.load(Ordering::Relaxed), 1);
        drop(watch);
        assert_eq!(sweeper.count.load(Ordering::Relaxed), 1, "b still watched");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_possible_end_follows_the_fastest_registration_seen() {
        let sweeper = Sweeper::new();
        let t0 = Instant::now();
        let _a = sweeper.watch(id(0), t0);
        assert_eq!(sweeper.first_possible_end(), None, "nothing ended yet");
        let _b = sweeper.watch(id(1), t0 + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(6)).await;
        let asked_at = t0 + Duration::from_secs(5);
        sweeper.deliver(&id(1), &ImageStatus::Active, asked_at);
        // b was listed `active` 4 s after it started; a, the oldest watch, may end 4 s after
        // it started.
        assert_eq!(
            sweeper.first_possible_end(),
            Some(t0 + Duration::from_secs(4))
        );
        sweeper.deliver(&id(0), &ImageStatus::Killed, asked_at);
        assert_eq!(sweeper.first_possible_end(), None, "nothing watched");
        let _c = sweeper.watch(id(2), Instant::now());
        assert_eq!(
            sweeper.first_possible_end(),
            Some(Instant::now() + Duration::from_secs(4))
        );
    }

    #[test]
    fn bulk_from_the_threshold() {
        let sweeper = Sweeper::new();
        let mut watches: Vec<_> = (0..BULK_THRESHOLD)
            .map(|n| sweeper.watch(id(n), Instant::now()))
            .collect();
        assert!(sweeper.is_bulk());
        watches.pop();
        assert!(!sweeper.is_bulk());
    }
}
