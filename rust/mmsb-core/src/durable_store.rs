//! The durable store: a data directory, a write-ahead log, checkpoints.
//!
//! [`Store`] wraps the in-memory [`PageStore`] and makes every commit durable
//! and every retained past state reachable. A data directory holds:
//!
//! ```text
//! <dir>/log/00000000000000000001.tlog        log segments (tlog_segment)
//! <dir>/checkpoints/ckpt-<lsn>.mmsbckpt      checkpoints (checkpoint)
//! ```
//!
//! **Commit.** [`Store::commit`] takes a list of [`Op`]s. Under the commit lock
//! it validates all of them against the current state (a bad one rejects the
//! whole commit, which leaves no trace), gives the commit the next LSN, appends
//! it to the log as one frame (write-ahead: logged before any page changes),
//! then applies it. Under [`Durability::Immediate`] the call then waits, outside
//! the lock, until the frame is synced; concurrent commits share one `fsync`
//! (group commit, see [`tlog_writer`](crate::tlog_writer)). Under
//! [`Durability::Buffered`] a background thread syncs at least every
//! `max_delay`, and a crash may lose the commits of that last interval (never
//! part of one). [`Durability::None`] keeps no files at all.
//!
//! **Open.** [`Store::open`] runs [`recovery`]: newest
//! verifying checkpoint, plus the log after it. A torn tail is cut (and
//! reported in [`Store::recovery_report`]); corruption inside the log is an
//! error unless [`StoreOptions::recovery`] accepts the loss. Writing then
//! continues in a fresh segment.
//!
//! **Failures.** An I/O error while appending or syncing (`Io`, `NoSpace`)
//! fails that commit, which is not acknowledged, and *stops the store for
//! writes*: every later commit fails with [`ErrorCode::ReadOnly`] naming the
//! original error, until the store is reopened. Reads go on. The store does not
//! try to carry on after a failed write or `fsync`, because it can no longer
//! know what of the log reached the disk; reopening lets recovery find out.
//! Whether the failed commit itself survives is decided by what reached the
//! disk: it may or may not be present after reopening, entirely or not at all.
//!
//! **Propagation.** The store owns a propagation [`Engine`] over its pages: the
//! dependency graph, the recompute functions, the marks (stale, invalidated,
//! pending device sync, dirty), the subscribers and the mode. Under the commit
//! lock, a commit is validated ([`commit::prepare`]), then *planned* by the
//! engine ([`Engine::plan_records`]): graph edits are tried on a copy of the
//! graph (an edge closing a cycle fails the commit here) and, in
//! [`PropagationMode::Immediate`], the wave runs on staged copies of the pages.
//! The input records, the derived deltas (with their provenance in source and
//! intent) and the graph edits are then logged as **one commit group** and
//! applied. A failing recompute function, like any other rejection, fails the
//! commit before anything is logged: no trace in pages, log or graph. In
//! [`PropagationMode::Deferred`] a commit logs and applies its inputs only, and
//! [`Store::propagate`] later runs one wave as a commit of its own;
//! [`Store::batch_route_deltas`] commits many deltas with one wave in any mode.
//! Events are delivered after the commit is acknowledged, outside the lock.
//!
//! Recompute functions are code and are not logged: after reopening, derived
//! pages are restored byte for byte from their logged derived deltas without
//! running anything, and the application registers its functions again
//! ([`Store::reattach_recompute`] does so without scheduling a recompute). The
//! marks are not durable either: they are notices to live consumers (a device
//! copy, a subscriber, a deferred wave not yet run), and a reopened store
//! starts with none; after reopening a store that was closed with deferred
//! changes not yet propagated, [`Store::recompute_all`] brings every derived
//! page up to date.
//!
//! **Transactions.** [`Store::commit_guarded`] is the seam optimistic
//! transactions (see [`transaction`]) commit through: it
//! takes, besides the ops, the (page, epoch) pairs the transaction read or
//! wrote, and checks them under the commit lock before anything is logged; a
//! page whose epoch moved fails the commit with
//! [`ErrorCode::TransactionConflict`], which leaves no trace. Snapshots
//! ([`snapshot`](crate::snapshot)) are taken under the same lock, so they sit
//! at a commit boundary.
//!
//! **Checkpoints and retention.** [`Store::checkpoint`] snapshots the state at
//! a commit boundary, keeps the newest [`StoreOptions::checkpoints_kept`], and
//! deletes the log segments wholly covered by the oldest kept one.

use crate::checkpoint::{self, CheckpointInfo};
use crate::commit::{self, Op};
use crate::delta::{now_ns, Delta};
use crate::dependency_graph::{DependencyGraph, Edge, EdgeKind, EdgeWeight};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventKind, SubscriptionId};
use crate::page::Page;
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::propagation::{CommitReport, Engine, EngineStats, PropagationMode};
use crate::recompute::{FunctionId, RecomputeFn};
use crate::recovery::{self, RecoveryOptions, RecoveryReport, Target, CHECKPOINT_DIR, LOG_DIR};
use crate::replay::{self, HistoryEntry, ReadOnlyState};
use crate::semiring_nodes::{Declaration, NodeDecl, SemiringNodes, SemiringWeight};
use crate::tlog_reader::LogEnd;
use crate::tlog_record::Record;
use crate::tlog_segment;
use crate::tlog_writer::{io_err, GroupSync, TLogWriter};
use crate::transaction::{self, TxnCounters, TxnGate};
use crate::vfs::{DirLock, RealVfs, Vfs};

/// The file in a data directory whose lock marks the store as open.
pub const LOCK_FILE: &str = "LOCK";
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// When a commit is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `commit` returns after the commit's log frame is synced (group commit).
    Immediate,
    /// `commit` returns after the append; a background thread syncs within `max_delay`.
    Buffered {
        /// The longest a commit stays unsynced (about).
        max_delay: Duration,
    },
    /// No log, no files: an in-memory store.
    None,
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreOptions {
    /// When commits are durable.
    pub durability: Durability,
    /// A log segment is rolled when it would grow past this many bytes.
    pub segment_bytes: u64,
    /// Compress log frames (run-length coding of masks and payloads).
    pub compression: bool,
    /// Checkpoints kept (at least 1).
    pub checkpoints_kept: usize,
    /// What recovery may accept.
    pub recovery: RecoveryOptions,
    /// Under immediate durability, write the log with direct I/O (`O_DIRECT`,
    /// one `pwritev2(RWF_DSYNC)` per group commit; see
    /// [`tlog_direct`](crate::tlog_direct)) where the file system allows it;
    /// the buffered path is used where it does not. [`DurableStats::log_direct_io`]
    /// tells which one runs. The log's bytes are the same either way.
    pub direct_io: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            durability: Durability::Immediate,
            segment_bytes: 64 << 20,
            compression: false,
            checkpoints_kept: 2,
            recovery: RecoveryOptions::default(),
            direct_io: true,
        }
    }
}

/// What a successful commit reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The commit's LSN.
    pub lsn: u64,
    /// The commit's timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Ids of the pages the commit created, in op order.
    pub created: Vec<PageId>,
    /// What propagation did in this commit (empty when no wave ran and no mark was set).
    pub propagation: CommitReport,
}

/// Counters of a durable store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableStats {
    /// LSN of the last commit applied.
    pub lsn: u64,
    /// Highest LSN known to be on disk.
    pub durable_lsn: u64,
    /// Commits since open.
    pub commits: u64,
    /// Log bytes appended since open.
    pub log_bytes: u64,
    /// Log `fsync`s since open (fewer than commits under concurrent load).
    pub log_syncs: u64,
    /// Whether the log is written with direct I/O (asked for by
    /// [`StoreOptions::direct_io`] under immediate durability, and accepted by
    /// the file system when the store was opened).
    pub log_direct_io: bool,
}

#[derive(Debug)]
struct Inner {
    /// The pages, the graph, the functions and the marks.
    engine: Engine,
    /// Semiring nodes and their networks (see `semiring_nodes.rs`).
    semiring: SemiringNodes,
    lsn: u64,
    timestamp_ns: u64,
    writer: Option<TLogWriter>,
    /// Segments of the log, (number, first LSN), ascending.
    segments: Vec<(u64, u64)>,
    failed: Option<Error>,
    closed: bool,
    commits: u64,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    sync: GroupSync,
    vfs: Arc<dyn Vfs>,
    dir: Option<PathBuf>,
    opts: StoreOptions,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    checkpointing: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A durable store. See the module docs.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    report: RecoveryReport,
    background: Option<JoinHandle<()>>,
    /// The data directory's `LOCK` file, held while the store is open.
    lock: Option<DirLock>,
    /// Transaction counters (begun, committed, conflicts, ...).
    pub(crate) txn_counters: TxnCounters,
    /// Lets a transaction that keeps losing conflicts run alone (see
    /// `transaction.rs`, "Starvation").
    pub(crate) txn_gate: TxnGate,
}

impl Store {
    /// An in-memory store (durability `None`).
    pub fn in_memory() -> Store {
        Store::from_parts(
            Arc::new(RealVfs),
            None,
            StoreOptions {
                durability: Durability::None,
                ..StoreOptions::default()
            },
            Engine::new(),
            0,
            0,
            None,
            Vec::new(),
            RecoveryReport::default(),
        )
    }

    /// Opens (creating if needed) the data directory `dir` and recovers its state.
    /// With [`Durability::None`] no file is touched and the store starts empty.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        Store::open_with_vfs(Arc::new(RealVfs), dir.as_ref(), opts)
    }

    /// [`Store::open`] over a given file system (tests use `fault_fs::FaultFs`, feature `failpoints`).
    pub fn open_with_vfs(vfs: Arc<dyn Vfs>, dir: &Path, opts: StoreOptions) -> Result<Store> {
        if opts.durability == Durability::None {
            let mut s = Store::in_memory();
            if let Some(sh) = Arc::get_mut(&mut s.shared) {
                sh.opts = opts;
            }
            return Ok(s);
        }
        let log_dir = dir.join(LOG_DIR);
        let ckpt_dir = dir.join(CHECKPOINT_DIR);
        for d in [dir, &log_dir, &ckpt_dir] {
            vfs.create_dir_all(d)
                .map_err(|e| io_err("creating", d, e))?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = vfs.lock_exclusive(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::new(
                    ErrorCode::Io,
                    format!(
                        "data directory {} is in use: another open store holds {}",
                        dir.display(),
                        lock_path.display()
                    ),
                )
            } else {
                io_err("locking", &lock_path, e)
            }
        })?;
        vfs.sync_dir(dir).map_err(|e| io_err("syncing", dir, e))?;
        checkpoint::remove_temporaries(vfs.as_ref(), &ckpt_dir)?;
        let rec = recovery::recover(vfs.as_ref(), dir, Target::Latest, opts.recovery)?;
        let lsn = rec.report.lsn;
        // Repair: cut a torn tail or accepted corruption, drop what follows it.
        let cut = match &rec.scan.end {
            LogEnd::Clean => None,
            LogEnd::TornTail { file, offset, .. } | LogEnd::Corrupt { file, offset, .. } => {
                Some((file.clone(), *offset))
            }
        };
        let mut segments: Vec<(u64, u64)> = Vec::new();
        let mut dropping = false;
        for s in &rec.scan.segments {
            if dropping {
                vfs.remove(&s.path)
                    .map_err(|e| io_err("removing", &s.path, e))?;
                continue;
            }
            if let Some((file, offset)) = &cut {
                if *file == s.path {
                    dropping = true;
                    if *offset < tlog_segment::HEADER_LEN as u64 {
                        vfs.remove(&s.path)
                            .map_err(|e| io_err("removing", &s.path, e))?;
                        continue;
                    }
                    let f = vfs
                        .open_append(&s.path)
                        .map_err(|e| io_err("opening", &s.path, e))?;
                    f.set_len(*offset)
                        .map_err(|e| io_err("truncating", &s.path, e))?;
                    f.sync().map_err(|e| io_err("syncing", &s.path, e))?;
                }
            }
            segments.push((s.number, s.first_lsn));
        }
        // A checkpoint newer than the whole log makes the log's segments useless
        // (and would leave a gap before the next segment): drop them.
        if lsn > rec.scan.summary.last_lsn && !segments.is_empty() {
            for (n, _) in segments.drain(..) {
                let p = tlog_segment::path(&log_dir, n);
                vfs.remove(&p).map_err(|e| io_err("removing", &p, e))?;
            }
        }
        vfs.sync_dir(&log_dir)
            .map_err(|e| io_err("syncing", &log_dir, e))?;
        let number = rec
            .scan
            .segments
            .iter()
            .map(|s| s.number)
            .max()
            .unwrap_or(0)
            + 1;
        let mut writer = TLogWriter::create(
            Arc::clone(&vfs),
            &log_dir,
            number,
            lsn + 1,
            opts.segment_bytes,
            opts.compression,
        )?;
        // Preallocation makes each commit's sync cheaper; only immediate durability syncs per commit.
        writer.set_preallocate(opts.durability == Durability::Immediate);
        // Direct I/O where the file system takes it: chosen here, once, and kept.
        writer.set_direct_io(opts.direct_io && opts.durability == Durability::Immediate);
        segments.push((number, lsn + 1));
        let ts = rec.report.timestamp_ns;
        let mut store = Store::from_parts(
            vfs,
            Some(dir.to_path_buf()),
            opts,
            Engine::with_store_and_graph(rec.state, rec.graph),
            lsn,
            ts,
            Some(writer),
            segments,
            rec.report,
        );
        store.lock = Some(lock);
        let semiring = SemiringNodes::rebuild(store.shared.lock().engine.store())?;
        store.shared.lock().semiring = semiring;
        store.prune_log()?;
        Ok(store)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        vfs: Arc<dyn Vfs>,
        dir: Option<PathBuf>,
        opts: StoreOptions,
        engine: Engine,
        lsn: u64,
        timestamp_ns: u64,
        writer: Option<TLogWriter>,
        segments: Vec<(u64, u64)>,
        report: RecoveryReport,
    ) -> Store {
        let file = writer.as_ref().map(TLogWriter::file);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine,
                semiring: SemiringNodes::default(),
                lsn,
                timestamp_ns,
                writer,
                segments,
                failed: None,
                closed: false,
                commits: 0,
            }),
            sync: GroupSync::new(lsn, file),
            vfs,
            dir,
            opts,
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            checkpointing: Mutex::new(()),
        });
        let background = match opts.durability {
            Durability::Buffered { max_delay } => {
                let sh = Arc::clone(&shared);
                Some(std::thread::spawn(move || background_sync(&sh, max_delay)))
            }
            _ => None,
        };
        Store {
            shared,
            report,
            background,
            lock: None,
            txn_counters: TxnCounters::default(),
            txn_gate: TxnGate::default(),
        }
    }

    /// Validates, plans (graph edits, and the wave in immediate mode), logs
    /// and applies one commit. See the module docs.
    pub fn commit(&self, ops: Vec<Op>) -> Result<CommitReceipt> {
        self.commit_inner(ops, false, &[], None)
    }

    /// [`Store::commit`], valid only if every `(page, epoch)` of `guard` is
    /// still current when the commit lock is taken (checked before logging);
    /// otherwise it fails with [`ErrorCode::TransactionConflict`] and leaves no
    /// trace. The seam of optimistic transactions.
    pub fn commit_guarded(&self, ops: Vec<Op>, guard: &[(PageId, u64)]) -> Result<CommitReceipt> {
        self.commit_inner(ops, false, guard, None)
    }

    /// Commits `deltas` as one commit with one wave, in any mode (a deferred
    /// store's pending changes join the wave).
    pub fn batch_route_deltas(&self, deltas: Vec<Delta>) -> Result<CommitReceipt> {
        self.commit_inner(deltas.into_iter().map(Op::Delta).collect(), true, &[], None)
    }

    /// Runs one wave for everything pending (changes of deferred commits,
    /// recomputes scheduled by new functions or edges) as a commit of its own.
    /// If the wave changes no page nothing is logged, and the receipt carries
    /// the current LSN.
    pub fn propagate(&self) -> Result<CommitReceipt> {
        self.commit_inner(Vec::new(), true, &[], None)
    }

    /// Schedules every derived page for a recompute and runs the wave.
    pub fn recompute_all(&self) -> Result<CommitReceipt> {
        self.shared.lock().engine.force_all();
        self.propagate()
    }

    /// `wave`: run the wave whatever the mode (and accept an empty `ops`);
    /// `guard`: (page, epoch) pairs that must be current (transactions);
    /// `decl`: a semiring declaration this commit makes.
    fn commit_inner(
        &self,
        ops: Vec<Op>,
        wave: bool,
        guard: &[(PageId, u64)],
        decl: Option<&Declaration>,
    ) -> Result<CommitReceipt> {
        // Waits while a starving transaction runs alone (no-op otherwise).
        self.txn_gate.pass();
        let sh = &self.shared;
        let lsn;
        let events: Vec<Event>;
        let bus;
        let receipt = {
            let mut g = sh.lock();
            if g.closed {
                return Err(Error::new(ErrorCode::ReadOnly, "the store is closed"));
            }
            if let Some(e) = g.failed.clone().or_else(|| sh.sync.failure()) {
                return Err(refused(&e));
            }
            transaction::check_epochs(g.engine.store(), guard)?;
            let (mut records, created) = if ops.is_empty() && (wave || decl.is_some()) {
                (Vec::new(), Vec::new())
            } else {
                commit::prepare(g.engine.store(), ops)?
            };
            // Semiring nodes first: their deltas join the commit as records,
            // so the engine's wave sees node pages like any written page.
            let semiring = {
                let inner = &mut *g;
                inner
                    .semiring
                    .plan(inner.engine.store(), &mut records, decl)?
            };
            let run_wave = wave || g.engine.mode() == PropagationMode::Immediate;
            let mut plan = match g.engine.plan_records(&records, run_wave) {
                Ok(p) => p,
                Err(e) => {
                    let inner = &mut *g;
                    if let Some(p) = semiring {
                        inner.semiring.rollback(p, inner.engine.store());
                    }
                    return Err(e);
                }
            };
            records.extend(plan.take_derived().into_iter().map(Record::Delta));
            let inner = &mut *g;
            if records.is_empty() {
                // A wave that changed nothing: no commit to log, only bookkeeping.
                let (report, ev) = inner.engine.apply_records_commit(&[], &plan)?;
                let quiet_bus = inner.engine.event_bus();
                let (lsn, timestamp_ns) = (inner.lsn, inner.timestamp_ns);
                drop(g);
                quiet_bus.emit_all(&ev);
                return Ok(CommitReceipt {
                    lsn,
                    timestamp_ns,
                    created,
                    propagation: report,
                });
            }
            lsn = inner.lsn + 1;
            let ts = now_ns().max(inner.timestamp_ns);
            if let Some(w) = inner.writer.as_mut() {
                let before = w.segment_number();
                if let Err(e) = w.append(lsn, ts, &records) {
                    if let Some(p) = semiring {
                        inner.semiring.rollback(p, inner.engine.store());
                    }
                    if e.code != ErrorCode::InvalidArgument {
                        inner.failed = Some(e.clone());
                        sh.sync.fail(e.clone());
                    }
                    return Err(e);
                }
                if w.segment_number() != before {
                    inner.segments.push((w.segment_number(), lsn));
                }
                sh.sync.wrote(lsn, w.file());
            }
            let report = match inner.engine.apply_records_commit(&records, &plan) {
                Ok((report, ev)) => {
                    events = ev;
                    report
                }
                Err(e) => {
                    let e = Error::new(
                        ErrorCode::Internal,
                        format!("a validated commit failed to apply: {e}"),
                    );
                    inner.failed = Some(e.clone());
                    return Err(e);
                }
            };
            if let Some(p) = semiring {
                inner.semiring.install(p);
            }
            bus = (!events.is_empty()).then(|| inner.engine.event_bus());
            inner.lsn = lsn;
            inner.timestamp_ns = ts;
            inner.commits += 1;
            CommitReceipt {
                lsn,
                timestamp_ns: ts,
                created,
                propagation: report,
            }
        };
        if sh.opts.durability == Durability::Immediate {
            sh.sync.wait_durable(lsn)?;
        }
        if let Some(bus) = bus {
            bus.emit_all(&events);
        }
        Ok(receipt)
    }

    /// Adds the dependency edge `parent -> child` in a commit of its own (see
    /// [`Op::AddEdge`]). An edge closing a cycle fails with
    /// [`ErrorCode::Cycle`] (the path in [`Error::cycle_path`]) and changes
    /// nothing. In immediate mode a new data edge recomputes the child in
    /// the same commit.
    pub fn add_edge(
        &self,
        parent: PageId,
        child: PageId,
        kind: EdgeKind,
        weight: Option<EdgeWeight>,
    ) -> Result<CommitReceipt> {
        self.commit(vec![Op::AddEdge {
            parent,
            child,
            kind,
            weight,
        }])
    }

    /// Removes the dependency edge `parent -> child` of `kind` in a commit of
    /// its own; `NotFound` if absent.
    pub fn remove_edge(
        &self,
        parent: PageId,
        child: PageId,
        kind: EdgeKind,
    ) -> Result<CommitReceipt> {
        self.commit(vec![Op::RemoveEdge {
            parent,
            child,
            kind,
        }])
    }

    /// Declares `page` a semiring node (see `semiring_nodes.rs`) in a commit
    /// of its own: the declaration is logged as page metadata and the node
    /// page is written with its value (`b` or zero until edges arrive).
    pub fn declare_semiring_node(&self, page: PageId, decl: NodeDecl) -> Result<CommitReceipt> {
        if self.recompute_fn(page).is_some() {
            return Err(Error::invalid(format!(
                "{page} has a recompute function; a semiring node is computed by its network"
            )));
        }
        self.commit_inner(Vec::new(), false, &[], Some(&Declaration::Node(page, decl)))
    }

    /// Adds the semiring edge `parent -> child` (both nodes of the same
    /// semiring and dtype) with `weight`, in a commit of its own; the nodes
    /// it reaches are written with their new values. A cycle fails with
    /// `Cycle` and changes nothing.
    pub fn add_semiring_edge(
        &self,
        parent: PageId,
        child: PageId,
        weight: SemiringWeight,
    ) -> Result<CommitReceipt> {
        self.commit_inner(
            Vec::new(),
            false,
            &[],
            Some(&Declaration::Edge(parent, child, weight)),
        )
    }

    /// Replaces the weight of the existing semiring edge `parent -> child`
    /// in a commit of its own; the nodes it reaches are written with their
    /// new values (a full wave of that network). `NotFound` if there is no
    /// such edge; a weight of the wrong shape or dtype fails with
    /// `InvalidArgument`; either way nothing changes.
    pub fn set_semiring_edge_weight(
        &self,
        parent: PageId,
        child: PageId,
        weight: SemiringWeight,
    ) -> Result<CommitReceipt> {
        self.commit_inner(
            Vec::new(),
            false,
            &[],
            Some(&Declaration::SetWeight(parent, child, weight)),
        )
    }

    /// Removes the semiring edge `parent -> child` in a commit of its own;
    /// the nodes it reached are written with their new values. `NotFound`
    /// if there is no such edge (nothing changes).
    pub fn remove_semiring_edge(&self, parent: PageId, child: PageId) -> Result<CommitReceipt> {
        self.commit_inner(
            Vec::new(),
            false,
            &[],
            Some(&Declaration::RemoveEdge(parent, child)),
        )
    }

    /// The semiring declaration of `page`, if it is a node.
    pub fn semiring_node(&self, page: PageId) -> Option<NodeDecl> {
        self.shared.lock().semiring.decl(page)
    }

    /// Reads semiring node `page` as a typed vector (`E` must match the
    /// node's dtype; `u8` for [`DType::Bool`](crate::dtype::DType::Bool)).
    pub fn read_semiring_node<E: crate::dtype::Element>(&self, page: PageId) -> Result<Vec<E>> {
        let g = self.shared.lock();
        let d = g
            .semiring
            .decl(page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
        let want = if d.dtype == crate::dtype::DType::Bool {
            crate::dtype::DType::U8
        } else {
            d.dtype
        };
        if E::DTYPE != want {
            return Err(Error::invalid(format!(
                "{page} holds {}, not {}",
                d.dtype.name(),
                E::DTYPE.name()
            )));
        }
        let n = (d.len * d.dtype.size()) as usize;
        let page = g.engine.store().page(page)?;
        let bytes = page
            .bytes()
            .get(..n)
            .ok_or_else(|| Error::invalid("the node page is too small"))?;
        crate::dtype::decode(bytes)
    }

    /// Runs `f` on the dependency graph (under the commit lock: keep it short).
    pub fn with_graph<R>(&self, f: impl FnOnce(&DependencyGraph) -> R) -> R {
        f(self.shared.lock().engine.graph())
    }

    /// Every edge of the graph, by parent, child, kind.
    pub fn edges(&self) -> Vec<Edge> {
        self.with_graph(DependencyGraph::edges)
    }

    /// Makes `page` a derived page computed by `f`; it is recomputed at the
    /// next wave. Not logged (functions are code): register it again after
    /// reopening, with [`Store::reattach_recompute`].
    pub fn set_recompute(&self, page: PageId, f: RecomputeFn) -> Result<FunctionId> {
        let mut g = self.shared.lock();
        if g.semiring.decl(page).is_some() {
            return Err(Error::invalid(format!(
                "{page} is a semiring node; its network computes it"
            )));
        }
        g.engine.set_recompute(page, f)
    }

    /// Registers `f` on `page` without scheduling a recompute: for the function
    /// whose derived deltas the log already holds (after reopening).
    pub fn reattach_recompute(&self, page: PageId, f: RecomputeFn) -> Result<FunctionId> {
        let mut g = self.shared.lock();
        if g.semiring.decl(page).is_some() {
            return Err(Error::invalid(format!(
                "{page} is a semiring node; its network computes it"
            )));
        }
        g.engine.reattach_recompute(page, f)
    }

    /// Removes `page`'s recompute function; `NotFound` if it had none.
    pub fn clear_recompute(&self, page: PageId) -> Result<()> {
        self.shared.lock().engine.clear_recompute(page)
    }

    /// The function registered on `page`, if any.
    pub fn recompute_fn(&self, page: PageId) -> Option<FunctionId> {
        self.shared.lock().engine.recompute_fn(page)
    }

    /// The propagation mode (immediate after open).
    pub fn mode(&self) -> PropagationMode {
        self.shared.lock().engine.mode()
    }

    /// Sets the propagation mode. Pending changes stay pending until the next wave.
    pub fn set_mode(&self, mode: PropagationMode) {
        self.shared.lock().engine.set_mode(mode);
    }

    /// Calls `f` after every later acknowledged commit, for each event of
    /// `kind`, outside the commit lock.
    pub fn subscribe(
        &self,
        kind: EventKind,
        f: impl Fn(&Event) + Send + Sync + 'static,
    ) -> SubscriptionId {
        self.shared.lock().engine.subscribe(kind, f)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.shared.lock().engine.unsubscribe(id)
    }

    /// Whether `page` is stale (a control parent changed since it was last written).
    pub fn is_stale(&self, page: PageId) -> bool {
        self.shared.lock().engine.is_stale(page)
    }

    /// Whether `page` is invalidated (a compiler parent changed since it was last written).
    pub fn is_invalidated(&self, page: PageId) -> bool {
        self.shared.lock().engine.is_invalidated(page)
    }

    /// Takes (and clears) the pending device syncs, for the GPU layer.
    pub fn take_gpu_sync(&self) -> Vec<PageId> {
        self.shared
            .lock()
            .engine
            .take_gpu_sync()
            .into_iter()
            .collect()
    }

    /// Pages changed by deferred commits and not yet propagated.
    pub fn dirty_pages(&self) -> Vec<PageId> {
        self.shared
            .lock()
            .engine
            .dirty_pages()
            .iter()
            .copied()
            .collect()
    }

    /// The propagation counters since open.
    pub fn propagation_stats(&self) -> EngineStats {
        self.shared.lock().engine.stats()
    }

    /// Runs `f` on the current state (under the commit lock: keep it short).
    pub fn read_with<R>(&self, f: impl FnOnce(&PageStore) -> R) -> R {
        f(self.shared.lock().engine.store())
    }

    /// Runs `f` on the current state and the LSN of the last commit it
    /// includes (under the commit lock: keep it short).
    pub fn read_with_lsn<R>(&self, f: impl FnOnce(&PageStore, u64) -> R) -> R {
        let g = self.shared.lock();
        f(g.engine.store(), g.lsn)
    }

    /// A copy of a page's bytes.
    pub fn read(&self, id: PageId) -> Result<Vec<u8>> {
        self.read_with(|s| s.read(id))
    }

    /// A copy of a page (bytes shared copy-on-write, epoch, metadata, view).
    pub fn page(&self, id: PageId) -> Result<Page> {
        self.read_with(|s| s.page(id).cloned())
    }

    /// The LSN of the last commit.
    pub fn lsn(&self) -> u64 {
        self.shared.lock().lsn
    }

    /// The data directory, unless in-memory.
    pub fn dir(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    /// What recovery found when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The store's counters.
    pub fn stats(&self) -> DurableStats {
        let g = self.shared.lock();
        DurableStats {
            lsn: g.lsn,
            durable_lsn: if self.shared.dir.is_some() {
                self.shared.sync.synced_lsn()
            } else {
                0
            },
            commits: g.commits,
            log_bytes: g.writer.as_ref().map_or(0, TLogWriter::bytes_written),
            log_syncs: self.shared.sync.sync_count(),
            log_direct_io: g.writer.as_ref().is_some_and(TLogWriter::is_direct),
        }
    }

    /// Makes every commit so far durable (whatever the durability mode).
    pub fn sync(&self) -> Result<()> {
        if self.shared.dir.is_none() {
            return Ok(());
        }
        self.shared.sync.sync_all()
    }

    /// Writes a checkpoint of the current state, prunes old checkpoints and the
    /// log segments they make unnecessary. Commits go on while it is written.
    pub fn checkpoint(&self) -> Result<CheckpointInfo> {
        let sh = &self.shared;
        let dir = sh.dir.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unsupported,
                "an in-memory store has no checkpoints",
            )
        })?;
        let _one = sh.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let (pages, graph, lsn, ts, next) = {
            let g = sh.lock();
            let state = g.engine.store();
            let pages: Vec<Page> = state
                .page_ids()
                .into_iter()
                .filter_map(|id| state.page(id).ok().cloned())
                .collect();
            let graph = g.engine.graph().clone();
            (pages, graph, g.lsn, g.timestamp_ns, state.next_page_id())
        };
        // The log must hold everything the checkpoint claims before it may replace the log.
        sh.sync.wait_durable(lsn)?;
        let ckpt_dir = dir.join(CHECKPOINT_DIR);
        let info = checkpoint::write_with_graph(
            sh.vfs.as_ref(),
            &ckpt_dir,
            lsn,
            ts,
            next,
            &pages,
            &graph,
        )?;
        checkpoint::prune(sh.vfs.as_ref(), &ckpt_dir, sh.opts.checkpoints_kept)?;
        self.prune_log()?;
        Ok(info)
    }

    /// Deletes log segments every frame of which is covered by the oldest kept checkpoint.
    fn prune_log(&self) -> Result<()> {
        let sh = &self.shared;
        let Some(dir) = &sh.dir else { return Ok(()) };
        let ckpts = checkpoint::list(sh.vfs.as_ref(), &dir.join(CHECKPOINT_DIR))?;
        let Some(&(oldest, _)) = ckpts.first() else {
            return Ok(());
        };
        let log_dir = dir.join(LOG_DIR);
        let mut g = sh.lock();
        let mut removed = false;
        while g.segments.len() >= 2 && g.segments[1].1 <= oldest + 1 {
            let (n, _) = g.segments.remove(0);
            let p = tlog_segment::path(&log_dir, n);
            sh.vfs.remove(&p).map_err(|e| io_err("removing", &p, e))?;
            removed = true;
        }
        drop(g);
        if removed {
            sh.vfs
                .sync_dir(&log_dir)
                .map_err(|e| io_err("syncing", &log_dir, e))?;
        }
        Ok(())
    }

    /// The state after commit `lsn` (or at a time), rebuilt from disk, read-only.
    pub fn state_at(&self, target: Target) -> Result<ReadOnlyState> {
        let dir = self.shared.dir.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unsupported,
                "an in-memory store keeps no history",
            )
        })?;
        self.sync()?;
        replay::state_at(self.shared.vfs.as_ref(), dir, target)
    }

    /// The deltas `page` received in commits `from_lsn..=to_lsn`.
    pub fn page_history(
        &self,
        page: PageId,
        from_lsn: u64,
        to_lsn: u64,
    ) -> Result<Vec<HistoryEntry>> {
        let dir = self.shared.dir.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unsupported,
                "an in-memory store keeps no history",
            )
        })?;
        self.sync()?;
        replay::page_history(self.shared.vfs.as_ref(), dir, page, from_lsn, to_lsn)
    }

    /// Syncs everything and closes the store. Later commits fail with `ReadOnly`.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        {
            let mut s = self.shared.stop.lock().unwrap_or_else(|p| p.into_inner());
            *s = true;
            self.shared.stop_cv.notify_all();
        }
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
        let r = self.sync();
        self.shared.lock().closed = true;
        self.lock = None;
        r
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.shared.lock().closed {
            let _ = self.shutdown();
        }
    }
}

fn refused(e: &Error) -> Error {
    Error::new(
        ErrorCode::ReadOnly,
        format!("the store refuses writes after an I/O failure ({e}); reopen it to recover"),
    )
}

fn background_sync(sh: &Shared, max_delay: Duration) {
    let mut stop = sh.stop.lock().unwrap_or_else(|p| p.into_inner());
    while !*stop {
        let (g, _) = sh
            .stop_cv
            .wait_timeout(stop, max_delay)
            .unwrap_or_else(|p| p.into_inner());
        stop = g;
        if *stop {
            break;
        }
        drop(stop);
        let _ = sh.sync.sync_all();
        stop = sh.stop.lock().unwrap_or_else(|p| p.into_inner());
    }
}
