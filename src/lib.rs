//! imsreg registers many disk-image files stored in Huawei Cloud OBS as private images in
//! Huawei Cloud IMS, in one unattended run.
//!
//! The pipeline, module by module: [`manifest`] (parse, validate) -> [`run`] (plan, check,
//! submit, poll, confirm) -> [`report`]; [`job`] is the whole job as one entry point (what
//! `imsreg run` does, minus the terminal); [`state`] the journal and run lock; [`ims`] the
//! typed IMS client (signing, errors) and [`sim`] the built-in simulator that stands in for IMS
//! in the demo, tests and benchmarks; [`ids`] the typed image and job IDs every layer shares;
//! [`shard`] which entries belong to shard K of N (`--shard K/N`).

pub mod endpoint;
pub mod ids;
pub mod ims;
pub mod input;
pub mod job;
pub mod manifest;
pub mod metrics;
pub mod obs;
pub mod preflight;
pub mod report;
pub mod run;
pub mod shard;
pub mod sim;
pub mod state;

/// The version printed by `--version` and written into reports and the `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
