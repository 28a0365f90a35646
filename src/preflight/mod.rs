//! The preflight: every manifest entry's bucket and object checked in OBS before anything goes
//! to IMS. The pure parts: what a file's bytes say its format is ([`format`]), whether an
//! entry passes given what OBS answered about its bucket and object ([`verdict`]), and the
//! size-aware submission order the sizes allow ([`schedule`]); [`run`] asks OBS (through
//! [`crate::obs`]) and judges every entry. `imsreg preflight` and `imsreg run` call it through
//! [`crate::job::preflight`].

pub mod format;
pub mod render;
pub mod run;
pub mod schedule;
pub mod verdict;

pub use format::{Detected, HEAD_BYTES, TAIL_BYTES, VhdType, detect};
pub use run::{DEFAULT_OBS_RATE, PreflightConfig, PreflightError, PreflightReport, check};
pub use verdict::{Answers, Check, EntryVerdict, Finding, judge};
