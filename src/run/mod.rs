//! The run pipeline: plan -> check the cloud -> submit (rate-limited) -> poll -> confirm.
//!
//! The contract between the engine ([`execute`], and [`check_only`] for the dry run) and its
//! callers ([`crate::job`], tests, benchmarks) is in `config.rs` (the effective settings),
//! `plan.rs` (what the engine is given and decides), and `events.rs` (what it emits and
//! returns). This file only declares the modules and re-exports that contract; no file here
//! imports it. The engine knows nothing of terminals or files: observers implement
//! [`EventSink`].

mod active;
mod check;
mod config;
mod context;
mod engine;
mod events;
mod follow;
pub mod pacer;
pub mod plan;
pub mod retry;
pub mod schedule;
mod submit;
pub mod sweep;
/// The in-memory IMS fake, for the engine's tests and the job layer's (the create stage).
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod watch;

pub use check::{CheckResult, PER_ID_THRESHOLD, check_only};
pub use config::{RunConfig, defaults};
pub use engine::execute;
pub use events::{
    Api, Durable, EventSink, ImageError, ImageResult, NoEvents, RunEvent, RunResult, Tee,
};
pub use plan::{Action, CloudStatus, PlannedImage, StatusMap, action_for};
pub use submit::{AMBIGUITY_GRACE, DRAIN_LIMIT};
