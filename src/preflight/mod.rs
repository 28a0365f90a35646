//! The preflight's pure parts: what a file's bytes say its format is ([`format`]), whether an
//! entry passes given what OBS answered about its bucket and object ([`verdict`]), and the
//! size-aware submission order the sizes allow ([`schedule`]).
//!
//! The OBS calls themselves are [`crate::obs`]'s. Not yet wired into `imsreg run` or a
//! `preflight` command: these are the building blocks issue 16's command is made of.

pub mod format;
pub mod schedule;
pub mod verdict;

pub use format::{Detected, HEAD_BYTES, TAIL_BYTES, VhdType, detect};
pub use verdict::{Answers, Check, EntryVerdict, Finding, judge};
