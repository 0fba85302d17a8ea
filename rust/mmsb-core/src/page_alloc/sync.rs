//! The atomics the lock-free freelist is written against.
//!
//! [`freelist`](super::freelist) names its atomic types through this module
//! only, so the loom model test (`tests/loom_freelist.rs`) can compile the very
//! same source file against `loom::sync::atomic` instead, by including it next
//! to a `sync` module of its own. In the library these are the `std` types.

pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
