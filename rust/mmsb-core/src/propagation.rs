//! The propagation engine: commits, waves, cutoff, and the seam for logging.
//!
//! An [`Engine`] owns a [`PageStore`] and a [`DependencyGraph`], the recompute
//! functions registered on derived pages, and the bookkeeping of non-data edges
//! (stale pages, pending device syncs, invalidated pages). State changes only
//! through commits.
//!
//! **A commit is planned, then applied.** [`Engine::plan_commit`] takes the
//! input deltas and computes, without changing anything, the whole commit: the
//! input deltas followed by every derived delta the wave produces, plus the
//! stale / gpu-sync / invalidation marks. It works on a *staging* overlay:
//! copies of the pages the commit touches, with the epochs they will have.
//! [`Engine::apply_commit`] then applies that list through the store (so
//! epochs advance exactly as the plan said), updates the marks and emits the
//! events. [`Engine::commit`] does the same in one call (applying its input
//! deltas to the store first, with an undo log: see there). A plan records the engine
//! version it was made at; applying it after any other change to the engine
//! fails with a retryable `TransactionConflict`.
//!
//! **The durable store** ([`Store`](crate::Store)) holds an engine as its state
//! and uses the same planner through [`Engine::plan_records`]: the commit's
//! log records (page creations and deletions, deltas, graph edits) are staged
//! in order — graph edits on a copy of the graph, so a cycle fails the plan
//! and changes nothing — then the same wave runs. The store logs the records
//! and the derived deltas as one commit group and applies exactly that list
//! with [`Engine::apply_records_commit`] (the function replay uses), so a
//! reopened store has the derived pages and the graph without running any
//! function.
//!
//! **All or nothing.** Input deltas are validated on the staging copies
//! (range, mask, compare-and-set against the staged epoch). A recompute
//! function that fails or panics fails the plan; since nothing was applied,
//! nothing partial is ever visible (an engine commit never touches the graph;
//! a durable commit's graph edits are applied with it or not at all).
//!
//! **The wave.** The pages changed by the commit (plus pages left dirty by
//! deferred commits) are the roots. A [`CommandBuffer`] lists every page with a
//! recompute function that the roots reach along data edges, in topological
//! order, grouped into levels. Levels run in order; the commands of one level
//! are independent and run in parallel (rayon) when there are several and all
//! their functions are thread-safe. A command runs only if at least one of its
//! inputs changed in this wave, or it was *forced* (its function was set, or a
//! data edge into it added or removed, since the last wave). Each runs at most
//! once, after every input it has in the wave has been recomputed: inputs are
//! read from the staging overlay, which by then holds their final bytes, so no
//! function sees a mix of old and new (glitch freedom). If a recomputed page's
//! bytes are unchanged, it does not count as changed, and its children run only
//! if another input changed (cutoff). A changed page becomes one dense derived
//! delta over the range of differing bytes, with source `derived:page#P,...`
//! naming the changed parents and an intent JSON naming the page, the function
//! and the cause.
//!
//! **Other edge kinds.** When a page changes in a commit (input or derived),
//! its control children become stale, its gpu-sync children get a pending
//! device sync, and its compiler children become invalidated (subscribers are
//! notified). A page written by a commit is no longer stale or invalidated
//! afterwards (the write is the fresh value); a mark made in the same commit
//! as a write of that page is dropped for the same reason.
//!
//! **Staging.** The copies live in one arena kept across commits
//! (`staged_pages`): an input delta's page is copied into it, and on one
//! thread each function writes its page's new bytes straight into it, where
//! the cutoff compare reads old and new while both are in the cache and
//! later commands read them. So a batch of input deltas or a wave allocates
//! nothing per page once the arena has grown (see `Buffers`).
//!
//! **Fast paths of [`Engine::commit`] and [`Engine::propagate`].** Their plan
//! is applied at once and never shown, so they skip what nobody would see:
//! `commit` applies its input deltas straight to the store, validated once,
//! keeping what they overwrite to put back if the commit fails (no staged
//! copy of the input pages);
//! derived deltas are not built (each changed page's differing range is
//! copied into one plan arena and written into the page, without provenance
//! strings or a second validation), and a changed page that no later command
//! reads is not kept staged; a wave with nothing forced over an unchanged
//! graph reuses the last wave's command buffer when its roots are the same,
//! and the whole graph's (planned once per shape) when it has many roots or
//! its roots reach more than one derived page in 8.
//! [`Engine::apply_commit`] writes a plan's derived deltas without
//! validating them again: the wave built them from the staged copy of exactly
//! the state the version check guarantees. See docs/propagation.md.
//!
//! **Modes.** [`PropagationMode::Immediate`]: every commit runs its wave.
//! [`PropagationMode::Deferred`]: a commit applies its input deltas only and
//! the changed pages become dirty; [`Engine::propagate`] later runs one wave for
//! all of them (batching many commits into one wave) as a commit of its own.
//! Many deltas in one call always make one wave.

use crate::apply;
use crate::byte_diff::diff_range;
use crate::command_buffer::{Command, CommandBuffer, ReachScratch};
use crate::delta::{Delta, MAX_SOURCE_LEN};
use crate::dependency_graph::{DependencyGraph, Edge, EdgeKind, EdgeWeight};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus, EventKind, SubscriptionId};
use crate::location::PageLocation;
use crate::page_id::PageId;
use crate::page_store::{PageStore, UndoLog};
use crate::page_table::PageBits;
use crate::recompute::{FunctionId, RecomputeFn, RecomputeInputs};
use crate::staged_pages::{StagedPages, StagedView};
use crate::tlog_record::Record;
use rayon::prelude::*;
use smallvec::SmallVec;
use std::borrow::Cow;
// Ids are hashed with the fast id hash (the wave hashes several per page).
use crate::id_hash::{IdHashMap as HashMap, IdHashSet as HashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// When waves run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PropagationMode {
    /// Each commit runs its wave as part of the commit.
    #[default]
    Immediate,
    /// Commits only mark pages dirty; [`Engine::propagate`] runs the wave.
    Deferred,
}

/// A planned commit: everything [`Engine::apply_commit`] will do. See the module docs.
#[derive(Clone, Debug)]
pub struct CommitPlan {
    /// Every delta of the commit, in apply order: the inputs, then the derived ones.
    pub deltas: Vec<Delta>,
    /// How many of `deltas` are inputs (the rest are derived).
    pub input_count: usize,
    /// The wave's plan (empty if no wave ran).
    pub commands: CommandBuffer,
    /// The pages whose function ran, in run order.
    pub recomputed: Vec<PageId>,
    /// The pages whose bytes the commit changes, in first-change order.
    pub changed: Vec<PageId>,
    /// `(page, cause)`: pages that become stale (control edges).
    pub stale: Vec<(PageId, PageId)>,
    /// `(page, cause)`: pages that get a pending device sync (gpu-sync edges).
    pub gpu_sync: Vec<(PageId, PageId)>,
    /// `(page, cause)`: pages that become invalidated (compiler edges).
    pub invalidated: Vec<(PageId, PageId)>,
    /// Whether a wave ran (false for a deferred-mode commit).
    pub wave: bool,
    dirty_consumed: Vec<PageId>,
    forced_consumed: Vec<PageId>,
    made_dirty: Vec<PageId>,
    made_forced: Vec<PageId>,
    deleted: Vec<PageId>,
    derived_count: usize,
    /// The derived writes of a plan made without provenance (only inside
    /// [`Engine::commit`] and [`Engine::propagate`], whose plan is applied at
    /// once and never shown): each changed page's range of bytes that differ
    /// from the page, copied into `arena`. They stand for derived deltas
    /// that nobody would read.
    writes: Vec<PlannedWrite>,
    /// The differing bytes of the writes, back to back (one buffer, reused
    /// across waves).
    arena: Vec<u8>,
    version: u64,
    /// Set by the unlinked fast path of [`Engine::plan_records`]: the pages its
    /// deltas touch with their epochs before the commit. The pages that
    /// changed are found after applying (an epoch moves only on a change),
    /// instead of staging a copy of each page.
    unlinked: Option<Vec<(PageId, u64)>>,
}

/// A derived page's new bytes in a plan without provenance: the bytes for
/// `range` of `page` are the range `arena` of the plan's arena.
#[derive(Clone, Debug)]
struct PlannedWrite {
    page: PageId,
    range: std::ops::Range<usize>,
    arena: std::ops::Range<usize>,
}

impl CommitPlan {
    /// The derived deltas.
    pub fn derived(&self) -> &[Delta] {
        &self.deltas[self.input_count..]
    }

    /// Takes the derived deltas out of the plan (the durable store logs them);
    /// the plan can still be applied with [`Engine::apply_records_commit`].
    pub fn take_derived(&mut self) -> Vec<Delta> {
        self.deltas.split_off(self.input_count)
    }
}

/// What an applied commit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// `(page, epoch)` for each page whose bytes changed, in first-change order.
    pub changed: Vec<(PageId, u64)>,
    /// The pages whose function ran.
    pub recomputed: Vec<PageId>,
    /// Number of derived deltas applied.
    pub derived_deltas: usize,
    /// Pages made stale.
    pub stale: Vec<PageId>,
    /// Pages given a pending device sync.
    pub gpu_sync: Vec<PageId>,
    /// Pages invalidated.
    pub invalidated: Vec<PageId>,
}

/// Counters kept by an engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Commits applied.
    pub commits: u64,
    /// Waves run.
    pub waves: u64,
    /// Recompute function calls in applied commits.
    pub recomputes: u64,
    /// Derived deltas applied.
    pub derived_deltas: u64,
}

/// The pages a commit changed, in first-change order, and as a set.
#[derive(Default)]
struct Changed {
    list: Vec<PageId>,
    set: HashSet<PageId>,
}

impl Changed {
    /// Room for `n` pages (a batch's size; capped so a huge batch on a few
    /// pages does not reserve more than it can use).
    fn with_capacity(n: usize) -> Changed {
        let n = n.min(STAGING_RESERVE_MAX);
        Changed {
            list: Vec::with_capacity(n),
            set: HashSet::with_capacity_and_hasher(n, Default::default()),
        }
    }

    fn add(&mut self, p: PageId) {
        if self.set.insert(p) {
            self.list.push(p);
        }
    }
}

/// Pages, graph, functions and marks. See the module docs.
#[derive(Debug, Default)]
pub struct Engine {
    store: PageStore,
    graph: DependencyGraph,
    mode: PropagationMode,
    functions: HashMap<FunctionId, Arc<RecomputeFn>>,
    page_fn: HashMap<PageId, FunctionId>,
    next_fn: u64,
    dirty: BTreeSet<PageId>,
    forced: BTreeSet<PageId>,
    stale: BTreeSet<PageId>,
    gpu_sync: BTreeSet<PageId>,
    invalidated: BTreeSet<PageId>,
    events: EventBus,
    version: u64,
    stats: EngineStats,
    /// The staging arena and the plan arena of earlier commits, reused by
    /// the next one (fresh buffers per page made the allocator return and
    /// re-fault the memory every commit). See `Buffers`.
    spare: std::sync::Mutex<Buffers>,
    /// Changes with every change to the graph or the functions (not with
    /// commits that only write pages): the key of `last_wave`.
    shape: u64,
    /// The last wave's command buffer, reused by a wave from the same roots
    /// over the same shape with nothing forced (a steady-state wave plans
    /// nothing).
    last_wave: std::sync::Mutex<Option<CachedWave>>,
    /// The command buffer of a wave from every page (all that any wave
    /// without forced pages can run), for the current `shape`; used by
    /// waves from many roots (see `Engine::wave_commands`).
    full_wave: std::sync::Mutex<Option<(u64, Arc<CommandBuffer>)>>,
    /// Marks and stacks for sizing a wave's region (see
    /// `Engine::wave_commands`), kept so that a wave clears only its own.
    reach: std::sync::Mutex<ReachScratch>,
}

/// A planned wave kept for reuse (see `Engine::last_wave`).
#[derive(Debug)]
struct CachedWave {
    shape: u64,
    roots: Vec<PageId>,
    commands: Arc<CommandBuffer>,
}

/// Buffers kept between commits (see the module docs, "Fast paths").
///
/// `staged` holds the copies of the pages a commit touches (see
/// `staged_pages`): input deltas are applied to copies in it, and each
/// function of a wave writes its page's new bytes straight into it, next to
/// the pages it reads; the cutoff compare then reads the old and the new
/// bytes while they are still in the cache. A changed page that a later
/// command reads stays staged; any other keeps only its differing bytes,
/// copied into `arena` (the plan's, handed back after the commit).
#[derive(Debug, Default)]
struct Buffers {
    staged: StagedPages,
    arena: Vec<u8>,
}

/// The most bytes of plan arena an engine keeps between waves.
const SPARE_BYTES: usize = 64 << 20;

/// Copies of the pages a planned commit touches, with the epochs they will
/// have, and the graph as the commit leaves it (borrowed until the commit
/// edits it, then a copy).
struct Staging<'a> {
    store: &'a PageStore,
    graph: Cow<'a, DependencyGraph>,
    pages: StagedPages,
    deleted: HashSet<PageId>,
    /// The plan arena to fill (see `Buffers`).
    arena: Vec<u8>,
}

/// The most pages a commit's set of changed pages reserves room for up
/// front (a batch of `n` writes reserves `min(n, this)`; the set still
/// grows past it).
const STAGING_RESERVE_MAX: usize = 1 << 14;

impl<'a> Staging<'a> {
    /// Staging in the kept buffers `bufs` (cleared).
    fn new(store: &'a PageStore, graph: &'a DependencyGraph, bufs: Buffers) -> Staging<'a> {
        let Buffers { mut staged, arena } = bufs;
        staged.begin(store.dense_id_bound());
        Staging {
            store,
            graph: Cow::Borrowed(graph),
            pages: staged,
            deleted: HashSet::default(),
            arena,
        }
    }

    /// The bytes and epoch of `page` as the commit has them so far: staged
    /// (in `view`), deleted, or as in the store.
    #[inline]
    fn lookup<'s>(
        store: &'s PageStore,
        deleted: &HashSet<PageId>,
        view: StagedView<'s>,
        page: PageId,
    ) -> Result<(&'s [u8], u64)> {
        if !deleted.is_empty() && deleted.contains(&page) {
            return Err(Staging::gone(page));
        }
        if let Some(staged) = view.get(page) {
            return Ok(staged);
        }
        let p = store.page(page)?;
        Ok((p.bytes(), p.epoch()))
    }

    fn gone(page: PageId) -> Error {
        Error::not_found(format!("{page} is deleted by this commit"))
    }

    fn bytes_and_epoch(&self, page: PageId) -> Result<(&[u8], u64)> {
        Staging::lookup(self.store, &self.deleted, self.pages.view(), page)
    }

    /// Validates and applies `d` to the copy, as the store would; returns
    /// whether it changed bytes. `check_epoch`: check a compare-and-set epoch
    /// against the staged epoch (the durable store checks it earlier, against
    /// the epoch at the start of the commit).
    fn apply(&mut self, d: &Delta, check_epoch: bool) -> Result<bool> {
        if !self.deleted.is_empty() && self.deleted.contains(&d.page) {
            return Err(Staging::gone(d.page));
        }
        let staged = if self.pages.contains(d.page) {
            self.pages.get_mut(d.page)
        } else {
            let page = self.store.page(d.page)?;
            Some(self.pages.insert(d.page, page.bytes(), page.epoch()))
        };
        let (bytes, epoch) = staged
            .ok_or_else(|| Error::new(ErrorCode::Internal, format!("{} was not staged", d.page)))?;
        d.validate(bytes.len() as u64)?;
        if let (true, Some(e)) = (check_epoch, d.expected_epoch) {
            if e != *epoch {
                return Err(Error::new(
                    ErrorCode::EpochMismatch,
                    format!(
                        "delta on {} expected epoch {e}, the page is at {epoch}",
                        d.page
                    ),
                ));
            }
        }
        let r = d.offset as usize..(d.offset + d.len) as usize;
        if !apply::would_change(&bytes[r.clone()], d) {
            return Ok(false);
        }
        apply::apply(&mut bytes[r], d)?;
        *epoch += 1;
        Ok(true)
    }

    /// Stages a recomputed page: a copy of its function's output buffer,
    /// one epoch on. No validation: the buffer was made from the staged
    /// page, so it has the page's size.
    fn put_output(&mut self, page: PageId, out: &[u8], old_epoch: u64) {
        self.pages.insert(page, out, old_epoch + 1);
    }

    /// Stages one record of a durable commit. Returns whether it changed a
    /// page's bytes; data-edge edits and deletions add the pages they force
    /// to `forced`.
    fn apply_record(&mut self, r: &Record, forced: &mut BTreeSet<PageId>) -> Result<bool> {
        match r {
            Record::CreatePage { id, size, .. } => {
                let n = usize::try_from(*size)
                    .map_err(|_| Error::invalid(format!("page size {size} does not fit memory")))?;
                self.pages.insert_zeroed(*id, n, 0);
                self.deleted.remove(id);
            }
            Record::DeletePage { id } => {
                self.pages.remove(*id);
                self.deleted.insert(*id);
                if self.graph.contains_node(*id) {
                    for e in self.graph.to_mut().remove_node(*id)? {
                        if e.kind == EdgeKind::Data && e.parent == *id {
                            forced.insert(e.child);
                        }
                    }
                }
                forced.remove(id);
            }
            Record::SetMetadata { .. } | Record::RemoveMetadata { .. } | Record::SetView { .. } => {
            }
            Record::Delta(d) => return self.apply(d, false),
            Record::AddEdge {
                parent,
                child,
                kind,
                weight,
            } => {
                self.graph
                    .to_mut()
                    .add_edge(*parent, *child, *kind, weight.clone())?;
                if *kind == EdgeKind::Data {
                    forced.insert(*child);
                }
            }
            Record::RemoveEdge {
                parent,
                child,
                kind,
            } => {
                self.graph.to_mut().remove_edge(*parent, *child, *kind)?;
                if *kind == EdgeKind::Data {
                    forced.insert(*child);
                }
            }
        }
        Ok(false)
    }
}

impl Engine {
    /// An engine over an empty store, in immediate mode.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// An engine over an existing store (after recovery), with an empty graph.
    pub fn with_store(store: PageStore) -> Engine {
        Engine {
            store,
            ..Engine::default()
        }
    }

    /// An engine over a recovered store and graph (the durable store's open).
    pub fn with_store_and_graph(store: PageStore, graph: DependencyGraph) -> Engine {
        Engine {
            store,
            graph,
            ..Engine::default()
        }
    }

    /// The store (read-only: writes go through commits).
    pub fn store(&self) -> &PageStore {
        &self.store
    }

    /// The dependency graph (read-only: edit it through the engine).
    pub fn graph(&self) -> &DependencyGraph {
        &self.graph
    }

    /// The propagation mode.
    pub fn mode(&self) -> PropagationMode {
        self.mode
    }

    /// Sets the propagation mode. Dirty pages stay dirty until the next wave.
    pub fn set_mode(&mut self, mode: PropagationMode) {
        self.mode = mode;
        self.version += 1;
        self.shape += 1;
    }

    /// The engine's counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// A number that changes with every change to the engine (plans record it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Creates a zeroed page.
    pub fn create_page(&mut self, size: u64, location: PageLocation) -> Result<PageId> {
        let id = self.store.create_page(size, location)?;
        self.version += 1;
        self.shape += 1;
        Ok(id)
    }

    /// Deletes a page, its edges, its function and its marks. Its former data
    /// children are recomputed at the next wave (their inputs changed).
    pub fn delete_page(&mut self, page: PageId) -> Result<()> {
        self.store.delete_page(page)?;
        if self.graph.contains_node(page) {
            for e in self.graph.remove_node(page)? {
                if e.kind == EdgeKind::Data && e.parent == page {
                    self.forced.insert(e.child);
                }
            }
        }
        self.forget_page(page);
        self.version += 1;
        self.shape += 1;
        Ok(())
    }

    fn require_page(&self, page: PageId) -> Result<()> {
        self.store.page(page).map(|_| ())
    }

    /// Adds the edge `parent -> child` (both pages must exist). A data edge
    /// forces the child's recompute at the next wave. See
    /// [`DependencyGraph::add_edge`] for the errors (a cycle among them).
    pub fn add_edge(
        &mut self,
        parent: PageId,
        child: PageId,
        kind: EdgeKind,
        weight: Option<EdgeWeight>,
    ) -> Result<()> {
        self.require_page(parent)?;
        self.require_page(child)?;
        self.graph.add_edge(parent, child, kind, weight)?;
        if kind == EdgeKind::Data {
            self.forced.insert(child);
        }
        self.version += 1;
        self.shape += 1;
        Ok(())
    }

    /// Removes an edge and returns it. A data edge forces the child's recompute.
    pub fn remove_edge(&mut self, parent: PageId, child: PageId, kind: EdgeKind) -> Result<Edge> {
        let e = self.graph.remove_edge(parent, child, kind)?;
        if kind == EdgeKind::Data {
            self.forced.insert(child);
        }
        self.version += 1;
        self.shape += 1;
        Ok(e)
    }

    /// Makes `page` a derived page computed by `f` (replacing any earlier
    /// function). It is recomputed at the next wave.
    pub fn set_recompute(&mut self, page: PageId, f: RecomputeFn) -> Result<FunctionId> {
        self.register(page, f, true)
    }

    /// Makes `page` a derived page computed by `f` *without* scheduling a
    /// recompute: its current bytes are taken as `f`'s result. For
    /// re-registering, after a durable store was reopened, the function whose
    /// derived deltas the log already holds. The page is recomputed when an
    /// input changes.
    pub fn reattach_recompute(&mut self, page: PageId, f: RecomputeFn) -> Result<FunctionId> {
        self.register(page, f, false)
    }

    fn register(&mut self, page: PageId, f: RecomputeFn, force: bool) -> Result<FunctionId> {
        self.require_page(page)?;
        self.next_fn += 1;
        let id = FunctionId(self.next_fn);
        if let Some(old) = self.page_fn.insert(page, id) {
            self.functions.remove(&old);
        }
        self.functions.insert(id, Arc::new(f));
        if force {
            self.forced.insert(page);
        } else {
            self.forced.remove(&page);
        }
        self.version += 1;
        self.shape += 1;
        Ok(id)
    }

    /// Removes `page`'s recompute function; `NotFound` if it had none.
    pub fn clear_recompute(&mut self, page: PageId) -> Result<()> {
        let f = self
            .page_fn
            .remove(&page)
            .ok_or_else(|| Error::not_found(format!("{page} has no recompute function")))?;
        self.functions.remove(&f);
        self.forced.remove(&page);
        self.version += 1;
        self.shape += 1;
        Ok(())
    }

    /// The function registered on `page`, if any.
    pub fn recompute_fn(&self, page: PageId) -> Option<FunctionId> {
        self.page_fn.get(&page).copied()
    }

    /// Whether `page` is stale (a control parent changed since it was last written).
    pub fn is_stale(&self, page: PageId) -> bool {
        self.stale.contains(&page)
    }

    /// The stale pages.
    pub fn stale_pages(&self) -> &BTreeSet<PageId> {
        &self.stale
    }

    /// Whether `page` is invalidated (a compiler parent changed since it was last written).
    pub fn is_invalidated(&self, page: PageId) -> bool {
        self.invalidated.contains(&page)
    }

    /// The invalidated pages.
    pub fn invalidated_pages(&self) -> &BTreeSet<PageId> {
        &self.invalidated
    }

    /// The pages with a pending device sync.
    pub fn pending_gpu_sync(&self) -> &BTreeSet<PageId> {
        &self.gpu_sync
    }

    /// Takes (and clears) the pending device syncs, for the GPU layer to perform.
    pub fn take_gpu_sync(&mut self) -> BTreeSet<PageId> {
        std::mem::take(&mut self.gpu_sync)
    }

    /// Pages changed by deferred commits and not yet propagated.
    pub fn dirty_pages(&self) -> &BTreeSet<PageId> {
        &self.dirty
    }

    /// Calls `f` after every later commit, for each event of `kind`.
    pub fn subscribe(
        &mut self,
        kind: EventKind,
        f: impl Fn(&Event) + Send + Sync + 'static,
    ) -> SubscriptionId {
        self.events.subscribe(kind, f)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        self.events.unsubscribe(id)
    }

    /// Plans and applies a commit of `deltas` (one wave in immediate mode).
    ///
    /// The input deltas are applied to the store first, each saving what it
    /// overwrites in an undo log, and the wave is planned over the result
    /// (no staged copy of the input pages). If a delta is invalid or a
    /// function fails, the log puts the bytes, epochs and store counters
    /// back before the error returns, so nothing partial is visible (the
    /// engine is borrowed mutably throughout: nobody reads in between).
    pub fn commit(&mut self, deltas: &[Delta]) -> Result<CommitReport> {
        let mut undo = UndoLog::default();
        let mut changed = Changed::with_capacity(deltas.len());
        for d in deltas {
            match self.store.apply_undoable(d, &mut undo) {
                Ok(o) => {
                    if o.changed {
                        changed.add(d.page);
                    }
                }
                Err(e) => return Err(self.undo_inputs(&mut undo, e)),
            }
        }
        // The plan is applied at once and dropped: its derived deltas would
        // never be read, so their provenance is not built.
        let st = Staging::new(&self.store, &self.graph, self.take_buffers());
        let wave = self.mode == PropagationMode::Immediate;
        let plan = match self.plan_wave(st, changed, BTreeSet::new(), Vec::new(), wave, false) {
            Ok(plan) => plan,
            Err(e) => return Err(self.undo_inputs(&mut undo, e)),
        };
        let report = self.apply_plan(&plan);
        self.recycle(plan);
        report
    }

    /// Puts back the input deltas of a failed [`Engine::commit`]; returns
    /// the error to report (`err`, or an `Internal` one if undoing failed).
    fn undo_inputs(&mut self, undo: &mut UndoLog, err: Error) -> Error {
        match self.store.undo(undo) {
            Ok(()) => err,
            Err(u) => Error::new(
                ErrorCode::Internal,
                format!("{err}; then undoing the commit's input deltas failed: {u}"),
            ),
        }
    }

    /// Runs one wave for everything pending (dirty pages, forced recomputes), in any mode.
    pub fn propagate(&mut self) -> Result<CommitReport> {
        let plan = self.plan(&[], true, false)?;
        let report = self.apply_commit(&plan);
        self.recycle(plan);
        report
    }

    /// Forces every derived page to be recomputed, and runs the wave.
    pub fn recompute_all(&mut self) -> Result<CommitReport> {
        self.force_all();
        self.propagate()
    }

    /// Schedules every derived page for a recompute at the next wave.
    pub fn force_all(&mut self) {
        self.forced.extend(self.page_fn.keys().copied());
        self.version += 1;
        self.shape += 1;
    }

    /// The whole commit `deltas` would make (inputs, then derived deltas), without
    /// changing anything. In deferred mode no wave runs.
    pub fn plan_commit(&self, deltas: &[Delta]) -> Result<CommitPlan> {
        self.plan(deltas, self.mode == PropagationMode::Immediate, true)
    }

    /// The commit [`Engine::propagate`] would make, without changing anything.
    pub fn plan_propagate(&self) -> Result<CommitPlan> {
        self.plan(&[], true, true)
    }

    /// `provenance`: build the derived deltas (with their source and intent);
    /// without it the plan holds [`PlannedWrite`]s instead, for
    /// [`Engine::apply_commit`] right away.
    fn plan(&self, deltas: &[Delta], wave: bool, provenance: bool) -> Result<CommitPlan> {
        let mut st = Staging::new(&self.store, &self.graph, self.take_buffers());
        let mut changed = Changed::with_capacity(deltas.len());
        for d in deltas {
            if let crate::delta::Accumulator::Semiring { .. } = d.accumulator {
                // What the store checks besides what staging does, so that
                // the plan fails here rather than when applied.
                crate::numeric_delta::check_view(d, self.store.page(d.page)?.view())?;
            }
            if st.apply(d, true)? {
                changed.add(d.page);
            }
        }
        // (Without provenance there are no inputs: `Engine::propagate`.)
        let inputs = if provenance {
            deltas.to_vec()
        } else {
            Vec::new()
        };
        let plan = self.plan_wave(st, changed, BTreeSet::new(), inputs, wave, provenance)?;
        Ok(plan)
    }

    /// Plans a durable commit: `records` (validated by
    /// [`commit::prepare`](crate::commit::prepare)) are staged in order —
    /// page creations and deletions, deltas, graph edits on a copy of the
    /// graph (a cycle fails here, changing nothing) — then, if `wave`, the wave
    /// runs on the result. The plan's `deltas` hold only the *derived* deltas
    /// (`input_count` is 0): the inputs are `records`. Apply it with
    /// [`Engine::apply_records_commit`], passing `records` followed by the
    /// derived deltas — exactly what the log holds.
    pub fn plan_records(&self, records: &[Record], wave: bool) -> Result<CommitPlan> {
        if let Some(plan) = self.plan_unlinked(records, wave) {
            return Ok(plan);
        }
        let mut st = Staging::new(&self.store, &self.graph, self.take_buffers());
        let mut changed = Changed::with_capacity(records.len());
        let mut forced = BTreeSet::new();
        let mut deleted = Vec::new();
        for r in records {
            if st.apply_record(r, &mut forced)? {
                changed.add(r.page());
            }
            if let Record::DeletePage { id } = r {
                deleted.push(*id);
            }
        }
        if !deleted.is_empty() {
            changed.list.retain(|p| !st.deleted.contains(p));
            changed.set.retain(|p| !st.deleted.contains(p));
        }
        let mut plan = self.plan_wave(st, changed, forced, Vec::new(), wave, true)?;
        plan.input_count = 0;
        plan.deleted = deleted;
        Ok(plan)
    }

    /// The fast path of [`Engine::plan_records`] for a commit that cannot start
    /// or feed a wave: no graph edits, no page it writes or deletes is in the
    /// graph, and (if `wave`) no dirty or forced page is waiting. Such a commit
    /// derives nothing and marks nothing, so nothing is staged (no page copy);
    /// `records` were validated by `commit::prepare`. `None`: take the full path.
    fn plan_unlinked(&self, records: &[Record], wave: bool) -> Option<CommitPlan> {
        if wave && (!self.dirty.is_empty() || !self.forced.is_empty()) {
            return None;
        }
        let mut touched: Vec<(PageId, u64)> = Vec::new();
        let mut seen = HashSet::default();
        let mut deleted = Vec::new();
        for r in records {
            match r {
                Record::AddEdge { .. } | Record::RemoveEdge { .. } => return None,
                Record::CreatePage { .. }
                | Record::SetMetadata { .. }
                | Record::RemoveMetadata { .. }
                | Record::SetView { .. } => {}
                Record::DeletePage { id } => {
                    if self.graph.contains_node(*id) {
                        return None;
                    }
                    deleted.push(*id);
                }
                Record::Delta(d) => {
                    if self.graph.contains_node(d.page) {
                        return None;
                    }
                    if seen.insert(d.page) {
                        let epoch = self.store.page(d.page).map_or(0, |p| p.epoch());
                        touched.push((d.page, epoch));
                    }
                }
            }
        }
        Some(CommitPlan {
            deltas: Vec::new(),
            input_count: 0,
            commands: CommandBuffer::default(),
            recomputed: Vec::new(),
            changed: Vec::new(),
            stale: Vec::new(),
            gpu_sync: Vec::new(),
            invalidated: Vec::new(),
            wave,
            dirty_consumed: Vec::new(),
            forced_consumed: Vec::new(),
            made_dirty: Vec::new(),
            made_forced: Vec::new(),
            deleted,
            derived_count: 0,
            writes: Vec::new(),
            arena: Vec::new(),
            version: self.version,
            unlinked: Some(touched),
        })
    }

    /// The wave (if `wave`) and the marks, on staged inputs. `deltas` are the
    /// input deltas to put first in the plan; `new_forced`: pages the commit
    /// itself forces (graph edits).
    fn plan_wave(
        &self,
        mut st: Staging<'_>,
        changed: Changed,
        new_forced: BTreeSet<PageId>,
        deltas: Vec<Delta>,
        wave: bool,
        provenance: bool,
    ) -> Result<CommitPlan> {
        let Changed {
            list: mut changed,
            set: mut changed_set,
        } = changed;
        let mut plan = CommitPlan {
            input_count: deltas.len(),
            deltas,
            commands: CommandBuffer::default(),
            recomputed: Vec::new(),
            changed: Vec::new(),
            stale: Vec::new(),
            gpu_sync: Vec::new(),
            invalidated: Vec::new(),
            wave,
            dirty_consumed: Vec::new(),
            forced_consumed: Vec::new(),
            made_dirty: Vec::new(),
            made_forced: Vec::new(),
            deleted: Vec::new(),
            derived_count: 0,
            writes: Vec::new(),
            arena: Vec::new(),
            version: self.version,
            unlinked: None,
        };
        if !wave {
            self.mark(&st.graph, &mut plan, &changed, &changed_set);
            plan.made_dirty = changed.clone();
            plan.made_forced = new_forced.into_iter().collect();
            plan.changed = changed;
            self.keep_staging(st);
            return Ok(plan);
        }
        // Roots: this commit's changes plus what deferred commits left dirty.
        // (A sorted list: cheaper to build than a set for a large batch.)
        let mut roots: Vec<PageId> = Vec::with_capacity(changed.len() + self.dirty.len());
        roots.extend(changed.iter().copied());
        roots.extend(self.dirty.iter().copied());
        roots.sort_unstable();
        roots.dedup();
        let mut forced = new_forced;
        forced.extend(self.forced.iter().copied());
        let cb = self.wave_commands(&st, &roots, &forced, !provenance);
        // Pages changed so far in the wave: a bit per page id (ids are
        // dense), for ids up to a bound that keeps clearing the bits within
        // a small multiple of the wave's size (the rest are hashed).
        let bound = (self.store.dense_id_bound())
            .min(4096u64.saturating_mul((roots.len() + cb.len() + 1) as u64));
        let mut wave_changed = PageBits::with_bound(bound);
        for &r in &roots {
            wave_changed.insert(r);
        }
        changed_set.reserve(cb.len());
        // One timestamp for the wave's derived deltas (they are one commit).
        let wave = WaveOut {
            timestamp_ns: crate::delta::now_ns(),
            provenance,
        };
        plan.deltas.reserve(cb.len());
        plan.recomputed.reserve(cb.len());
        plan.arena = std::mem::take(&mut st.arena);
        plan.arena.clear();
        let parallel_pool = rayon::current_num_threads() > 1;
        for level in &cb.levels {
            let cmds = &cb.commands[level.clone()];
            let runs = |c: &Command, changed: &PageBits| {
                c.forced || c.inputs.iter().any(|i| changed.contains(*i))
            };
            if parallel_pool && cmds.len() > 1 {
                let run: Vec<&Command> = cmds.iter().filter(|c| runs(c, &wave_changed)).collect();
                let parallel = run.len() > 1
                    && run.iter().all(|c| {
                        self.functions
                            .get(&c.function)
                            .is_some_and(|f| f.is_thread_safe())
                    });
                let stage = &st;
                let results: Vec<Result<Output<'_>>> = if parallel {
                    run.par_iter()
                        .map(|c| self.exec(stage, c, Vec::new()))
                        .collect()
                } else {
                    run.iter()
                        .map(|c| self.exec(stage, c, Vec::new()))
                        .collect()
                };
                for (c, r) in run.iter().zip(results) {
                    let o = r?;
                    plan.recomputed.push(c.page);
                    let Some(diff) = o.diff else {
                        continue; // cutoff: same bytes, nothing downstream from here
                    };
                    let keep = wave.record(&mut plan, &wave_changed, c, diff, &o.bytes, o.fname)?;
                    if keep {
                        st.put_output(c.page, &o.bytes, o.epoch);
                    }
                    wave_changed.insert(c.page);
                    if changed_set.insert(c.page) {
                        changed.push(c.page);
                    }
                }
            } else {
                // One thread: run and absorb each command in turn (the
                // commands of a level are independent), with no per-level
                // lists, each function writing into the staging arena.
                for c in cmds {
                    if !runs(c, &wave_changed) {
                        continue;
                    }
                    let r = self.exec_staged(&mut st, c)?;
                    plan.recomputed.push(c.page);
                    let Some(diff) = r.diff else {
                        continue; // cutoff
                    };
                    let out = st.pages.pending_bytes();
                    if wave.record(&mut plan, &wave_changed, c, diff, out, r.fname)? {
                        st.pages.keep_pending(c.page, r.epoch + 1);
                    }
                    wave_changed.insert(c.page);
                    if changed_set.insert(c.page) {
                        changed.push(c.page);
                    }
                }
            }
        }
        plan.commands = if provenance {
            Arc::unwrap_or_clone(cb)
        } else {
            CommandBuffer::default() // never shown: keep the cached one shared
        };
        plan.derived_count = plan.deltas.len() - plan.input_count + plan.writes.len();
        plan.dirty_consumed = self.dirty.iter().copied().collect();
        plan.forced_consumed = forced.into_iter().collect();
        self.mark(&st.graph, &mut plan, &changed, &changed_set);
        plan.changed = changed;
        self.keep_staging(st);
        Ok(plan)
    }

    /// The wave's command buffer: the cached one if the roots and the shape
    /// are those of the last wave and nothing is forced (and the commit edits
    /// no graph), else a fresh plan (kept for the next wave).
    ///
    /// `wide`: the plan is applied at once and never shown (no provenance),
    /// so its command buffer may be the whole graph's (see below).
    fn wave_commands(
        &self,
        st: &Staging<'_>,
        roots: &[PageId],
        forced: &BTreeSet<PageId>,
        wide: bool,
    ) -> Arc<CommandBuffer> {
        let cacheable = forced.is_empty() && matches!(st.graph, Cow::Borrowed(_));
        if cacheable && wide && roots.len().saturating_mul(16) >= self.page_fn.len() {
            // Many roots (at least one per 16 derived pages): the whole
            // graph's commands, planned once per shape. The commands no root
            // reaches have no changed input and are skipped, so the same
            // pages run, in an order that is still topological.
            if let Some(cb) = self.full_commands(&st.graph) {
                return cb;
            }
        }
        if cacheable {
            if let Ok(g) = self.last_wave.lock() {
                if let Some(c) = g.as_ref() {
                    if c.shape == self.shape
                        && c.roots.len() == roots.len()
                        && c.roots.iter().eq(roots.iter())
                    {
                        return Arc::clone(&c.commands);
                    }
                }
            }
        }
        let mut cb = None;
        if cacheable && wide {
            // Few roots that reach a large part of the graph (more than one
            // derived page in 8): the whole graph's commands as well, which
            // skips planning the region (finding it, ordering it, listing
            // each command's inputs) for the price of testing the inputs of
            // the commands it does not reach. Finding out stops at that size.
            let limit = self.page_fn.len() / 8;
            let wide_region = self.reach.lock().is_ok_and(|mut scratch| {
                crate::command_buffer::region_exceeds(
                    &st.graph,
                    roots.iter().copied(),
                    limit,
                    self.store.dense_id_bound(),
                    &mut scratch,
                )
            });
            if wide_region {
                cb = self.full_commands(&st.graph);
            }
        }
        let cb = cb.unwrap_or_else(|| {
            let roots: BTreeSet<PageId> = roots.iter().copied().collect();
            Arc::new(CommandBuffer::plan(
                &st.graph,
                &self.page_fn,
                &roots,
                forced,
            ))
        });
        if cacheable {
            if let Ok(mut g) = self.last_wave.lock() {
                *g = Some(CachedWave {
                    shape: self.shape,
                    roots: roots.to_vec(),
                    commands: Arc::clone(&cb),
                });
            }
        }
        cb
    }

    /// The command buffer of a wave from every page, with nothing forced:
    /// the cached one if planned for the current shape, else planned now
    /// and cached. `None` if the cache's lock is poisoned.
    fn full_commands(&self, graph: &DependencyGraph) -> Option<Arc<CommandBuffer>> {
        let mut g = self.full_wave.lock().ok()?;
        if let Some((shape, cb)) = g.as_ref() {
            if *shape == self.shape {
                return Some(Arc::clone(cb));
            }
        }
        let all: BTreeSet<PageId> = graph.topo_order().into_iter().collect();
        let cb = Arc::new(CommandBuffer::plan(
            graph,
            &self.page_fn,
            &all,
            &BTreeSet::new(),
        ));
        *g = Some((self.shape, Arc::clone(&cb)));
        Some(cb)
    }

    /// Runs one command's function on the staged inputs; returns its output
    /// (the page's staged bytes as the function left them) and the function's name.
    /// `buf`: a kept buffer to use for the output.
    fn exec<'s>(&'s self, st: &Staging<'_>, c: &Command, mut buf: Vec<u8>) -> Result<Output<'s>> {
        let r = self.exec_into(st, c, &mut buf)?;
        Ok(Output {
            bytes: buf,
            diff: r.diff,
            epoch: r.epoch,
            fname: r.fname,
        })
    }

    /// Runs one command's function with its output in the staging arena
    /// (the region [`StagedPages::pending`] opens, holding a copy of the
    /// page's staged bytes first): inputs are read from the arena or the
    /// store, and the output stays there for [`StagedPages::keep_pending`].
    /// Returns where the result differs from the page, the page's staged
    /// epoch and the function's name.
    fn exec_staged<'s>(&'s self, st: &mut Staging<'_>, c: &Command) -> Result<Step<'s>> {
        let f = self.function_of(c)?;
        let len = st.bytes_and_epoch(c.page)?.0.len();
        let (store, deleted) = (st.store, &st.deleted);
        let (view, out) = st.pages.pending(len);
        let lookup = |q| Staging::lookup(store, deleted, view, q);
        let (old, epoch) = lookup(c.page)?;
        out.copy_from_slice(old);
        call_command(f, c, lookup, old, epoch, out)
    }

    /// Runs one command's function with `out` as its output buffer (the
    /// page's staged bytes are copied in first); returns where the result
    /// differs from the page, the page's staged epoch and the function's name.
    fn exec_into<'s>(
        &'s self,
        st: &Staging<'_>,
        c: &Command,
        out: &mut Vec<u8>,
    ) -> Result<Step<'s>> {
        let f = self.function_of(c)?;
        let (old, epoch) = st.bytes_and_epoch(c.page)?;
        out.clear();
        out.extend_from_slice(old);
        call_command(f, c, |q| st.bytes_and_epoch(q), old, epoch, out)
    }

    /// The function registered for command `c`.
    fn function_of(&self, c: &Command) -> Result<&Arc<RecomputeFn>> {
        self.functions.get(&c.function).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("{} of {} is not registered", c.function, c.page),
            )
        })
    }

    /// Fills the plan's non-data marks: the children, along control, gpu-sync
    /// and compiler edges, of every page `changed` by this commit. Pages
    /// written by the commit are fresh, so they are not marked stale or invalid.
    fn mark(
        &self,
        graph: &DependencyGraph,
        plan: &mut CommitPlan,
        changed: &[PageId],
        written: &HashSet<PageId>,
    ) {
        if !graph.has_non_data_edges() {
            return; // only data edges: nothing to mark
        }
        let mut marks: [BTreeMap<PageId, PageId>; 3] = Default::default();
        for &p in changed {
            for e in graph.children(p) {
                let slot = match e.kind {
                    EdgeKind::Data => continue,
                    EdgeKind::Control => 0,
                    EdgeKind::GpuSync => 1,
                    EdgeKind::Compiler => 2,
                };
                marks[slot].entry(e.child).or_insert(p);
            }
        }
        let [stale, gpu, inval] = marks;
        plan.stale = stale
            .into_iter()
            .filter(|(c, _)| !written.contains(c))
            .collect();
        plan.gpu_sync = gpu.into_iter().collect();
        plan.invalidated = inval
            .into_iter()
            .filter(|(c, _)| !written.contains(c))
            .collect();
    }

    /// Applies a plan made by [`Engine::plan_commit`] or [`Engine::plan_propagate`]
    /// on this engine. Fails with `TransactionConflict` (retryable: plan again)
    /// if the engine changed since the plan was made; then nothing changes.
    pub fn apply_commit(&mut self, plan: &CommitPlan) -> Result<CommitReport> {
        self.apply_plan(plan)
    }

    /// The kept buffers, for a commit to plan in (empty ones if another
    /// plan holds them).
    fn take_buffers(&self) -> Buffers {
        self.spare
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }

    /// Keeps a plan's staging buffers (cleared) for the next commit.
    fn keep_staging(&self, st: Staging<'_>) {
        let Staging {
            mut pages, arena, ..
        } = st;
        pages.clear();
        self.keep_buffers(Buffers {
            staged: pages,
            arena,
        });
    }

    /// Keeps an applied plan's arena (emptied) for the next wave.
    fn recycle(&self, plan: CommitPlan) {
        let mut arena = plan.arena;
        arena.clear();
        self.keep_buffers(Buffers {
            staged: StagedPages::default(),
            arena,
        });
    }

    /// Merges `back` (buffers a plan used) into the kept buffers: the
    /// larger staging and the larger arena (one of at most [`SPARE_BYTES`]).
    fn keep_buffers(&self, back: Buffers) {
        let Buffers { staged, arena } = back;
        let Ok(mut g) = self.spare.lock() else {
            return;
        };
        if staged.capacity() > g.staged.capacity() {
            g.staged = staged;
        }
        if arena.capacity() > g.arena.capacity() && arena.capacity() <= SPARE_BYTES {
            g.arena = arena;
        }
    }

    /// Applies a plan (whose input deltas, for a plan without provenance,
    /// [`Engine::commit`] has applied already).
    fn apply_plan(&mut self, plan: &CommitPlan) -> Result<CommitReport> {
        self.check_version(plan)?;
        // The plan was simulated on exactly this state, so every delta
        // applies. The derived ones were built by the wave itself from the
        // staged pages (in range, well-formed, changing bytes): they are
        // written without being validated again.
        let failed = |e: Error| {
            Error::new(
                ErrorCode::Internal,
                format!("a planned delta failed to apply: {e}"),
            )
        };
        // A plan's own input deltas (its `deltas` are public) are
        // validated again.
        for (i, d) in plan.deltas.iter().enumerate() {
            let planned_write = i >= plan.input_count
                && d.mask.is_none()
                && d.expected_epoch.is_none()
                && !d.payload.is_sparse()
                && d.accumulator == crate::delta::Accumulator::Overwrite;
            if planned_write {
                let offset = usize::try_from(d.offset).map_err(|_| {
                    failed(Error::invalid(format!("offset {} does not fit", d.offset)))
                })?;
                self.store
                    .write_planned(d.page, offset, d.payload.bytes())
                    .map_err(failed)?;
            } else {
                self.store.apply_delta(d).map_err(failed)?;
            }
        }
        for w in &plan.writes {
            let bytes = plan.arena.get(w.arena.clone()).ok_or_else(|| {
                failed(Error::invalid(format!(
                    "planned write {:?} lies outside its buffer",
                    w.range
                )))
            })?;
            self.store
                .write_planned(w.page, w.range.start, bytes)
                .map_err(failed)?;
        }
        let (report, events) = self.finish(plan);
        for ev in &events {
            self.events.emit(ev);
        }
        Ok(report)
    }

    /// Applies a plan made by [`Engine::plan_records`]: `records` must be the
    /// records it was planned from followed by its derived deltas (as
    /// [`Record::Delta`]), which is what the durable store logged. Returns the
    /// report and the events to deliver (the caller delivers them, with
    /// [`Engine::emit`], once the commit is acknowledged and no lock is held).
    /// An error here means the state no longer matches the plan: the caller
    /// must treat the engine as failed.
    pub fn apply_records_commit(
        &mut self,
        records: &[Record],
        plan: &CommitPlan,
    ) -> Result<(CommitReport, Vec<Event>)> {
        self.check_version(plan)?;
        if records.iter().any(|r| {
            matches!(
                r,
                Record::AddEdge { .. } | Record::RemoveEdge { .. } | Record::DeletePage { .. }
            )
        }) {
            self.shape += 1;
        }
        crate::commit::apply_records(&mut self.store, &mut self.graph, records).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("a planned commit failed to apply: {e}"),
            )
        })?;
        for p in &plan.deleted {
            self.forget_page(*p);
        }
        if let Some(touched) = &plan.unlinked {
            // Which touched pages changed: their epoch moved (a delta that
            // changes nothing leaves it), and they still exist.
            let changed: Vec<PageId> = touched
                .iter()
                .filter(|&&(p, before)| self.store.page(p).is_ok_and(|pg| pg.epoch() != before))
                .map(|&(p, _)| p)
                .collect();
            let mut plan = plan.clone();
            if !plan.wave {
                plan.made_dirty = changed.clone();
            }
            plan.changed = changed;
            return Ok(self.finish(&plan));
        }
        Ok(self.finish(plan))
    }

    /// Delivers events to the subscribers (see [`Engine::apply_records_commit`]).
    pub fn emit(&self, events: &[Event]) {
        for ev in events {
            self.events.emit(ev);
        }
    }

    /// A copy of the subscriber list, to deliver events without holding the engine.
    pub fn event_bus(&self) -> EventBus {
        self.events.clone()
    }

    fn check_version(&self, plan: &CommitPlan) -> Result<()> {
        if plan.version != self.version {
            return Err(Error::new(
                ErrorCode::TransactionConflict,
                format!(
                    "the commit was planned at engine version {}, the engine is at {}; plan it again",
                    plan.version, self.version
                ),
            ));
        }
        Ok(())
    }

    /// Drops a deleted page's function and marks.
    fn forget_page(&mut self, page: PageId) {
        if let Some(f) = self.page_fn.remove(&page) {
            self.functions.remove(&f);
        }
        for set in [
            &mut self.dirty,
            &mut self.forced,
            &mut self.stale,
            &mut self.gpu_sync,
            &mut self.invalidated,
        ] {
            set.remove(&page);
        }
    }

    /// The bookkeeping after a plan's changes were applied: counters, dirty
    /// and forced sets, marks; returns the report and the events (none if
    /// nobody subscribed).
    fn finish(&mut self, plan: &CommitPlan) -> (CommitReport, Vec<Event>) {
        self.version += 1;
        self.stats.commits += 1;
        let derived = plan.derived_count;
        let mut report = CommitReport {
            derived_deltas: derived,
            recomputed: plan.recomputed.clone(),
            ..CommitReport::default()
        };
        for &p in &plan.changed {
            let epoch = self.store.page(p).map_or(0, |pg| pg.epoch());
            report.changed.push((p, epoch));
            self.stale.remove(&p);
            self.invalidated.remove(&p);
        }
        if plan.wave {
            self.stats.waves += 1;
            self.stats.recomputes += plan.recomputed.len() as u64;
            self.stats.derived_deltas += derived as u64;
            for p in &plan.dirty_consumed {
                self.dirty.remove(p);
            }
            for p in &plan.forced_consumed {
                self.forced.remove(p);
            }
        }
        self.dirty.extend(plan.made_dirty.iter().copied());
        self.forced.extend(plan.made_forced.iter().copied());
        for &(p, _) in &plan.stale {
            self.stale.insert(p);
            report.stale.push(p);
        }
        for &(p, _) in &plan.gpu_sync {
            self.gpu_sync.insert(p);
            report.gpu_sync.push(p);
        }
        for &(p, _) in &plan.invalidated {
            self.invalidated.insert(p);
            report.invalidated.push(p);
        }
        let mut events = Vec::new();
        if !self.events.is_empty() {
            for &(page, epoch) in &report.changed {
                events.push(Event::PageChanged { page, epoch });
            }
            for &(page, cause) in &plan.stale {
                events.push(Event::Stale { page, cause });
            }
            for &(page, cause) in &plan.gpu_sync {
                events.push(Event::GpuSync { page, cause });
            }
            for &(page, cause) in &plan.invalidated {
                events.push(Event::Invalidated { page, cause });
            }
        }
        (report, events)
    }
}

/// One command's result: the recomputed page, the range `first..=last` where
/// it differs from the staged page (`None`: unchanged, cutoff), the staged
/// page's epoch, and the function's name.
struct Output<'s> {
    bytes: Vec<u8>,
    diff: Option<(usize, usize)>,
    epoch: u64,
    fname: &'s str,
}

/// Calls `f` for command `c`: its inputs' bytes and epochs come from
/// `lookup`, and `out` already holds the page's staged bytes `old` (of
/// staged epoch `epoch`). Returns where the result differs from `old`.
fn call_command<'a, 's>(
    f: &'s RecomputeFn,
    c: &Command,
    lookup: impl Fn(PageId) -> Result<(&'a [u8], u64)>,
    old: &[u8],
    epoch: u64,
    out: &mut [u8],
) -> Result<Step<'s>> {
    let mut inputs: SmallVec<[&[u8]; 8]> = SmallVec::with_capacity(c.inputs.len());
    let mut epochs: SmallVec<[u64; 8]> = SmallVec::with_capacity(c.inputs.len());
    for &q in &c.inputs {
        let (b, e) = lookup(q)?;
        inputs.push(b);
        epochs.push(e);
    }
    f.call(
        &RecomputeInputs {
            page: c.page,
            parents: &c.inputs,
            inputs: &inputs,
            epochs: &epochs,
        },
        out,
    )?;
    Ok(Step {
        diff: diff_range(old, out),
        epoch,
        fname: f.name(),
    })
}

/// What running one command into a caller's buffer gave (see [`Engine::exec_into`]).
struct Step<'s> {
    diff: Option<(usize, usize)>,
    epoch: u64,
    fname: &'s str,
}

/// What the wave's commands share when their outputs are absorbed.
struct WaveOut {
    timestamp_ns: u64,
    /// Build derived deltas (else [`PlannedWrite`]s).
    provenance: bool,
}

impl WaveOut {
    /// Takes one changed page's new bytes `out` (differing from the staged
    /// page in `first..=last`) into the plan: the derived delta with
    /// provenance, or a [`PlannedWrite`] of the differing bytes. Returns
    /// whether the page's new bytes must be staged (a later command may
    /// read them; a plan with provenance stages every changed page).
    fn record(
        &self,
        plan: &mut CommitPlan,
        wave_changed: &PageBits,
        c: &Command,
        (first, last): (usize, usize),
        out: &[u8],
        fname: &str,
    ) -> Result<bool> {
        let bytes = out.get(first..=last).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("changed range {first}..={last} lies outside {}", c.page),
            )
        })?;
        if !self.provenance {
            let at = plan.arena.len();
            plan.arena.extend_from_slice(bytes);
            plan.writes.push(PlannedWrite {
                page: c.page,
                range: first..last + 1,
                arena: at..plan.arena.len(),
            });
            return Ok(c.feeds);
        }
        let causes: SmallVec<[PageId; 8]> = c
            .inputs
            .iter()
            .copied()
            .filter(|i| wave_changed.contains(*i))
            .collect();
        let mut d = derived_delta(c.page, first, bytes, &causes, c, fname)?;
        d.timestamp_ns = self.timestamp_ns;
        plan.deltas.push(d);
        Ok(true)
    }
}

/// The derived delta for `page`: `bytes` at `offset`, with provenance.
///
/// The source and the intent are written by hand rather than through
/// `serde_json::json!`: this runs once per changed page of every wave, and the
/// intent is known to be valid JSON (numbers, booleans and one escaped string),
/// so it is set without being parsed back.
fn derived_delta(
    page: PageId,
    offset: usize,
    bytes: &[u8],
    causes: &[PageId],
    cmd: &Command,
    fname: &str,
) -> Result<Delta> {
    use std::fmt::Write as _;
    let mut source = String::with_capacity(16 + 12 * causes.len().min(64));
    source.push_str("derived:");
    for (i, c) in causes.iter().enumerate() {
        let mark = source.len();
        if i > 0 {
            source.push(',');
        }
        source.push_str("page#");
        push_u64(&mut source, c.get());
        if source.len() + 32 > MAX_SOURCE_LEN {
            source.truncate(mark);
            let _ = write!(source, ",+{} more", causes.len() - i);
            break;
        }
    }
    if causes.is_empty() {
        source.push_str("page#");
        push_u64(&mut source, page.get());
    }
    // The keys in the order docs/propagation.md shows.
    let mut intent = String::with_capacity(128 + 12 * causes.len());
    intent.push_str("{\"cause\":\"propagation\",\"page\":");
    push_u64(&mut intent, page.get());
    intent.push_str(",\"function\":");
    push_u64(&mut intent, cmd.function.0);
    intent.push_str(",\"function_kind\":");
    push_json_string(&mut intent, fname);
    intent.push_str(if cmd.forced {
        ",\"forced\":true,\"changed_parents\":["
    } else {
        ",\"forced\":false,\"changed_parents\":["
    });
    for (i, c) in causes.iter().enumerate() {
        if i > 0 {
            intent.push(',');
        }
        push_u64(&mut intent, c.get());
    }
    intent.push_str("]}");
    // Built field by field (not `Delta::dense`), so no clock is read here:
    // the caller stamps the wave's time.
    Ok(Delta {
        page,
        offset: offset as u64,
        len: bytes.len() as u64,
        mask: None,
        payload: crate::delta::Payload::Dense(bytes.to_vec()),
        accumulator: crate::delta::Accumulator::Overwrite,
        source,
        intent: Some(intent),
        expected_epoch: None,
        timestamp_ns: 0,
    })
}

/// Appends the decimal digits of `n` to `out` (what `write!("{n}")` gives,
/// without the formatting machinery: this runs for every id of every
/// derived delta's provenance).
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends `s` to `out` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
