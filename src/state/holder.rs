//! Who holds a run lock, as the holder writes itself into the lock file.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who holds a lock (written into the lock file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PID {}, started {}",
            self.pid,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}
