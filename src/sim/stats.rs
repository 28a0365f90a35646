//! What the simulator saw, for tests and benchmarks: requests per API, throttling, injected
//! faults, every accepted registration (per image and in time) and the images per name, so a
//! test can prove no image was submitted or created twice and no rate was exceeded. Served as
//! JSON at `GET /_sim/stats`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of the simulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests received per API name (every one, including rejected and faulted ones).
    pub requests: BTreeMap<String, u64>,
    /// 429 answers (APIG.0308), in total and per API.
    pub throttled: u64,
    pub throttled_per_api: BTreeMap<String, u64>,
    /// 401 answers.
    pub auth_failures: u64,
    /// Injected 500/502/503 answers.
    pub server_errors: u64,
    /// Connections closed without any answer (injected before handling the request).
    pub dropped_connections: u64,
    /// Register calls accepted (job created) whose answer was then dropped.
    pub dropped_register_responses: u64,
    /// `POST /v2/images` calls that created an image whose answer was then dropped.
    #[serde(default)]
    pub dropped_create_responses: u64,
    /// Images removed by `DELETE /v2/images/{id}`.
    #[serde(default)]
    pub deleted_images: u64,
    /// Images in the store now, per name (unnamed ones not counted): above 1 is a duplicate.
    #[serde(default)]
    pub images_per_name: BTreeMap<String, u64>,
    /// 400 IMG.0060 answers (task limit reached).
    pub task_limit_rejections: u64,
    /// Accepted register calls per image ID (a value above 1 is a double submission).
    pub submissions: BTreeMap<String, u64>,
    /// When each accepted register call arrived, in milliseconds since the simulator started.
    pub accepted_registers_ms: Vec<f64>,
    /// When each register request arrived (accepted or not), in ms since start.
    pub register_requests_ms: Vec<f64>,
    /// The most register jobs running at once so far, and right now.
    pub max_running_jobs: usize,
    pub running_jobs: usize,
    /// Images known and jobs created.
    pub images: usize,
    pub jobs: usize,
    /// The OBS side's counters.
    #[serde(default)]
    pub obs: super::obs::ObsStats,
}

impl SimStats {
    /// Image IDs that were accepted more than once.
    pub fn resubmitted(&self) -> Vec<&str> {
        self.submissions
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Names held by more than one image.
    pub fn duplicate_names(&self) -> Vec<&str> {
        self.images_per_name
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Total accepted register calls.
    pub fn accepted_registers(&self) -> u64 {
        self.submissions.values().sum()
    }

    /// The most events inside any window of `window_ms` (sliding, half-open), given sorted or
    /// unsorted times in ms.
    pub fn max_in_window(times_ms: &[f64], window_ms: f64) -> usize {
        let mut times = times_ms.to_vec();
        times.sort_by(f64::total_cmp);
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= window_ms {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_counts() {
        let times = [0.0, 100.0, 999.0, 1000.0, 1500.0, 1999.0];
        assert_eq!(SimStats::max_in_window(&times, 1000.0), 3);
        assert_eq!(SimStats::max_in_window(&times, 1001.0), 4);
        assert_eq!(SimStats::max_in_window(&[], 1000.0), 0);
        assert_eq!(SimStats::max_in_window(&[5.0, 1.0, 3.0], 10.0), 3);
    }

    #[test]
    fn resubmissions_are_listed() {
        let mut stats = SimStats::default();
        stats.submissions.insert("a".into(), 1);
        stats.submissions.insert("b".into(), 2);
        assert_eq!(stats.resubmitted(), vec!["b"]);
        assert_eq!(stats.accepted_registers(), 3);
    }
}
