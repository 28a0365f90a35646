//! imsreg registers many disk-image files stored in Huawei Cloud OBS as private images in
//! Huawei Cloud IMS, in one unattended run.
//!
//! The pipeline, module by module: [`manifest`] (parse, validate) -> [`run`] (plan, check,
//! submit, poll, confirm) -> [`report`]; [`ims`] is the typed IMS client (signing, errors) and
//! [`sim`] the built-in simulator that stands in for IMS in the demo, tests and benchmarks.

pub mod ims;
pub mod input;
pub mod manifest;
pub mod report;
pub mod run;
pub mod sim;
pub mod state;

/// The version printed by `--version` and written into reports and the `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
