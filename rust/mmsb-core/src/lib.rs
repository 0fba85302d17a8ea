//! # MMSB core: the Memory-Mapped State Bus engine
//!
//! MMSB keeps an application's state as **pages**: fixed-size byte buffers with
//! an identity ([`PageId`]), a location ([`PageLocation`]), an epoch that counts
//! the commits that changed them, user metadata and an optional numeric view
//! ([`NumericView`]). State changes only through **deltas** ([`Delta`]): a byte
//! range of one page, an optional bit mask, a dense or sparse payload.
//!
//! A guide to the modules, in the order a reader meets them:
//!
//! * [`error`]: the error taxonomy with stable codes, shared with the C ABI and Julia.
//! * [`page_alloc`]: layer 0, the page allocator (size-class slabs, lock-free
//!   freelists, thread caches, a mutex path for large pages, statistics).
//! * [`page_id`], [`location`], [`dtype`], [`page_buf`], [`page`]: what a page is.
//! * [`mask`], [`delta`]: what a change is, and its validation rules.
//! * [`apply`]: the apply kernels (reference, scalar, SIMD) and their dispatch.
//! * [`delta_merge`]: composing two deltas into one.
//! * [`delta_codec`]: the versioned binary encoding the log stores.
//! * [`page_store`]: the in-memory store that creates pages and applies deltas
//!   (pages found by id in a dense table, `page_table`).
//! * [`durable_store`]: the durable store (data directory, write-ahead log,
//!   group commit, checkpoints); [`commit`] validates what it is asked to do.
//! * The log: [`tlog_record`] (what a commit changes), [`tlog_frame`] (one
//!   commit on disk), [`tlog_segment`] (log files), [`tlog_writer`] (append,
//!   group commit), [`tlog_reader`] (scan, torn tails, corruption),
//!   [`tlog_compression`].
//! * [`checkpoint`], [`recovery`], [`replay`] (time travel, page history).
//! * [`vfs`] (the file-system seam), [`retry`] (retry with backoff), and, with
//!   the `failpoints` feature, `fault_fs` (fault injection, crash simulation).
//! * [`dependency_graph`]: typed edges between pages, cycle rejection, an
//!   incrementally kept topological order, traversals.
//! * [`recompute`], [`command_buffer`], [`events`], [`propagation`]: recompute
//!   functions on derived pages, the wave plan, subscriber callbacks, and the
//!   [`Engine`] that commits deltas and propagates them (see `docs/propagation.md`);
//!   the durable [`Store`] holds an engine, so its commits propagate too, with
//!   derived deltas and graph edits in the commit's log group.
//! * [`snapshot`], [`transaction`]: consistent multi-page reads at a commit
//!   boundary, and optimistic serializable transactions with retry (see
//!   `docs/transactions.md`).
//! * [`semiring`]: the semiring trait, the built-ins and their run-time
//!   descriptors; [`semiring_kernels`]: folds and accumulation (SIMD);
//!   [`semiring_user`]: semirings from C function pointers;
//!   [`numeric_delta`]: deltas that accumulate `page ⊕= payload` (see
//!   `docs/semiring.md`).
//! * [`semiring_matrix`] (edge weights: scalar, diagonal, CSR; mxv kernels),
//!   [`semiring_network`] (numeric pages linked by semiring edges, full waves),
//!   [`semiring_plan`] (the flat command list of a semiring wave),
//!   [`semiring_wave`] (incremental waves) and [`semiring_pages`] (waves as
//!   page deltas): see `docs/semiring-propagation.md`.
//!
//! ```
//! use mmsb_core::{Delta, PageLocation, PageStore};
//! let mut store = PageStore::new();
//! let page = store.create_page(4096, PageLocation::Cpu)?;
//! store.apply_delta(&Delta::dense(page, 0, b"hello".to_vec()))?;
//! assert_eq!(&store.read(page)?[..5], b"hello");
//! # Ok::<(), mmsb_core::Error>(())
//! ```

pub mod apply;
#[cfg(target_arch = "x86_64")]
mod apply_avx2;
#[cfg(target_arch = "x86_64")]
mod apply_avx512;
pub mod byte_diff;
pub mod checkpoint;
pub mod command_buffer;
pub mod commit;
pub mod delta;
pub mod delta_codec;
pub mod delta_merge;
pub mod dependency_graph;
pub mod dtype;
pub mod durable_store;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "failpoints"))]
pub mod fault_fs;
pub mod id_hash;
pub mod location;
pub mod mask;
pub mod numeric_delta;
pub mod page;
pub mod page_alloc;
pub mod page_buf;
pub mod page_id;
pub mod page_store;
mod page_table;
pub mod propagation;
pub mod recompute;
pub mod recovery;
pub mod replay;
pub mod retry;
pub mod semiring;
pub mod semiring_kernels;
pub mod semiring_matrix;
pub mod semiring_network;
pub mod semiring_nodes;
pub mod semiring_pages;
pub mod semiring_plan;
pub mod semiring_user;
pub mod semiring_wave;
pub mod snapshot;
mod staged_pages;
pub mod tlog_compression;
pub mod tlog_direct;
pub mod tlog_frame;
pub mod tlog_reader;
pub mod tlog_record;
pub mod tlog_segment;
pub mod tlog_writer;
pub mod transaction;
pub mod vfs;

pub use apply::Kernel;
pub use command_buffer::{Command, CommandBuffer};
pub use commit::Op;
pub use delta::{Accumulator, Delta, Payload};
pub use dependency_graph::{DependencyGraph, Edge, EdgeKind, EdgeWeight};
pub use dtype::{DType, Element, NumericView};
pub use durable_store::{CommitReceipt, Durability, DurableStats, Store, StoreOptions};
pub use error::{Error, ErrorCode, ErrorDetail, Result};
pub use events::{Event, EventBus, EventKind, SubscriptionId};
pub use location::PageLocation;
pub use page::{Page, PageSnapshot};
pub use page_id::PageId;
pub use page_store::{ApplyOutcome, PageStore, StoreStats};
pub use propagation::{CommitPlan, CommitReport, Engine, EngineStats, PropagationMode};
pub use recompute::{ByteTransform, CRecomputeFn, FunctionId, RecomputeFn, RecomputeInputs};
pub use recovery::{RecoveryOptions, RecoveryReport, Target};
pub use replay::{HistoryEntry, ReadOnlyState};
pub use semiring::{Properties, Semiring, SemiringKind};
pub use semiring_matrix::{Csr, Weight};
pub use semiring_network::{SemiringNetwork, WaveReport};
pub use semiring_plan::{Strategy, WaveCommand, WaveOp, WavePlan};
pub use semiring_wave::Change;
pub use snapshot::Snapshot;
pub use transaction::{Committed, Transaction, TxnBuffer, TxnStats, TXN_RETRY};
