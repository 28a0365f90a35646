//! The bound on registrations running in the cloud at once (`max_active_jobs`).
//!
//! A [`Slot`] is taken before a register call and held until its job is terminal (or the run
//! gives up waiting). Jobs found already running when the run starts (`saving` images, known
//! job IDs) are [`ActiveJobs::adopt`]ed: they count at once, even above the bound, so new
//! submissions wait until the cloud is below it.

use std::sync::Arc;
use std::sync::Mutex;

use tokio::sync::Notify;

pub struct ActiveJobs {
    limit: usize,
    running: Mutex<usize>,
    /// Woken when a slot frees (the submitter waits here).
    room: Notify,
    /// Woken when one of our jobs ends (tasks told "too many tasks" by IMS wait here).
    ended: Notify,
}

/// One running registration; frees its place when dropped.
pub struct Slot {
    jobs: Arc<ActiveJobs>,
}

impl ActiveJobs {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(ActiveJobs {
            limit: limit.max(1) as usize,
            running: Mutex::new(0),
            room: Notify::new(),
            ended: Notify::new(),
        })
    }

    /// Waits for room below the bound and takes a slot. Cancel-safe.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            self.room.notified().await;
        }
    }

    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut running = self.lock();
        if *running < self.limit {
            *running += 1;
            return Some(Slot { jobs: self.clone() });
        }
        None
    }

    /// Counts a job that is already running in the cloud, bound or not.
    pub fn adopt(self: &Arc<Self>) -> Slot {
        *self.lock() += 1;
        Slot { jobs: self.clone() }
    }

    /// Resolves when one of our running jobs ends.
    pub async fn one_ended(&self) {
        self.ended.notified().await;
    }

    pub fn running(&self) -> usize {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let below = {
            let mut running = self.jobs.lock();
            *running = running.saturating_sub(1);
            *running < self.jobs.limit
        };
        self.jobs.ended.notify_one();
        if below {
            self.jobs.room.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn adopted_jobs_count_and_block_new_ones() {
        let jobs = ActiveJobs::new(2);
        let a = jobs.adopt();
        let b = jobs.adopt();
        let c = jobs.adopt();
        assert_eq!(jobs.running(), 3);
        assert!(jobs.try_acquire().is_none());
        drop(a);
        assert!(jobs.try_acquire().is_none(), "still at the bound");
        let waiter = tokio::spawn({
            let jobs = jobs.clone();
            async move { jobs.acquire().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(b);
        let slot = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(jobs.running(), 2);
        drop(slot);
        drop(c);
        assert_eq!(jobs.running(), 0);
    }
}
