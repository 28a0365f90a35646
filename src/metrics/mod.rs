//! Prometheus metrics of a run (issue 15): the registry ([`Metrics`], fed by the engine's
//! events and the job's milestones), the textfile for node_exporter's textfile collector
//! (`--metrics-file`, rewritten atomically), and `GET /metrics` (`--metrics-listen`). The job
//! layer ([`crate::job`]) starts and ends them; this module knows nothing of flags.

mod registry;
mod server;
mod textfile;

pub use registry::{IN_PROGRESS, JOB_DURATION_BUCKETS, Metrics, STATUSES};
pub use server::serve;
pub use textfile::{
    REWRITE_INTERVAL, read_last_successes, spawn_rewrites, temp_path, write_atomically,
};
