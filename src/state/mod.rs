//! Run state that outlives a process: the state journal (job IDs and outcomes, replayed on
//! the next run) and the run lock (one run per journal at a time). Storage only: this module
//! knows nothing of the engine or the report; what a replayed journal means for a run is
//! decided in [`crate::job`].

pub mod commit;
mod error;
mod holder;
pub mod journal;
pub mod lock;
mod path;

pub use error::StateError;
pub use holder::LockHolder;
pub use journal::{
    CreateKind, CreateState, EntryKind, ImageState, Journal, JournalStatus, Replayed, replay,
};
pub use lock::{LockState, RunLock};
pub use path::{default_path, resolve, shard_path};
