//! Dependency graph and propagation on a durable store: edges, recompute
//! functions (C function pointers with user data, what Julia's `@cfunction`
//! gives), modes, waves, batch routing, events and marks.
//!
//! Every function here takes a durable store handle (`mmsb_store_open`); the
//! graph queries also take a read-only state (`mmsb_replay_to_lsn`), which has
//! the graph as it stood at that LSN. Graph edits are commits: they are logged
//! and survive reopening; an edge that would close a cycle fails with
//! `MMSB_ERR_CYCLE`, changes nothing, and `mmsb_last_cycle_path` gives the
//! cycle. Recompute functions and subscriptions are not logged: register them
//! again after reopening (`reattach` = true keeps the logged derived pages as
//! they are until an input changes). Functions and callbacks run on the
//! committing thread; callbacks run after the commit is acknowledged, outside
//! the store's lock, so they may call back into the store.

use crate::delta_api::MmsbDelta;
use crate::durable_api::{push, MmsbCommit};
use crate::ffi_util::{call, copy_ids, last_cycle_path, need_out, out, set_last_cycle_path, slice};
use crate::handle::{self, lock, Object, TAG_DURABLE, TAG_STATE};
use crate::page_api::MmsbPageId;
use crate::store_api::MmsbStore;
use mmsb_core::{
    CommitReceipt, DependencyGraph, EdgeKind, EdgeWeight, Error, ErrorCode, Event, EventKind, Op,
    PageId, PropagationMode, RecomputeFn, Result, SubscriptionId,
};
use std::ffi::c_void;

/// Edge kind: the child is recomputed from its data parents.
pub const MMSB_EDGE_DATA: u8 = 0;
/// Edge kind: the child becomes stale.
pub const MMSB_EDGE_CONTROL: u8 = 1;
/// Edge kind: the child gets a pending device sync.
pub const MMSB_EDGE_GPU_SYNC: u8 = 2;
/// Edge kind: the child is invalidated and subscribers are told.
pub const MMSB_EDGE_COMPILER: u8 = 3;
/// In graph queries: edges of any kind.
pub const MMSB_EDGE_ANY: u8 = 255;

/// Propagation mode: every commit runs its wave.
pub const MMSB_PROPAGATION_IMMEDIATE: u8 = 0;
/// Propagation mode: commits only mark pages dirty; `mmsb_propagate` runs the wave.
pub const MMSB_PROPAGATION_DEFERRED: u8 = 1;

/// Event kind: a page's bytes changed (`epoch` is its new epoch).
pub const MMSB_EVENT_PAGE_CHANGED: u8 = 0;
/// Event kind: a page became stale (`cause` is the control parent that changed).
pub const MMSB_EVENT_STALE: u8 = 1;
/// Event kind: a page got a pending device sync (`cause`: the gpu-sync parent).
pub const MMSB_EVENT_GPU_SYNC: u8 = 2;
/// Event kind: a page was invalidated (`cause`: the compiler parent).
pub const MMSB_EVENT_INVALIDATED: u8 = 3;

/// A recompute function: `inputs[i]` points at `input_lens[i]` bytes of the
/// i-th data parent (in the order the edges were added), `out` at the page's
/// `out_len` bytes, holding its current bytes. Write the new bytes and return
/// 0; any other value fails the commit (an `MMSB_ERR_*` code keeps its
/// meaning). Must be a deterministic function of its inputs. (Null is
/// refused where one is expected.)
pub type MmsbRecomputeFn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        inputs: *const *const u8,
        input_lens: *const u64,
        n_inputs: u64,
        out: *mut u8,
        out_len: u64,
    ) -> i32,
>;

/// One event, as passed to an `MmsbEventCallback`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbEvent {
    /// `MMSB_EVENT_*`.
    pub kind: u8,
    /// The page the event is about.
    pub page: MmsbPageId,
    /// For a page change: the page's new epoch (0 otherwise).
    pub epoch: u64,
    /// For a mark: the parent whose change caused it (0 otherwise).
    pub cause: MmsbPageId,
}

/// An event callback: `event` is valid for the duration of the call only.
/// (Null is refused.)
pub type MmsbEventCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const MmsbEvent)>;

fn edge_kind(kind: u8) -> Result<EdgeKind> {
    EdgeKind::from_u8(kind)
        .map_err(|_| Error::invalid(format!("unknown edge kind {kind} (MMSB_EDGE_*)")))
}

fn weight(has_weight: bool, w: f64) -> Option<EdgeWeight> {
    has_weight.then_some(EdgeWeight::Scalar(w))
}

/// Writes `value` through `ptr` unless it is null.
/// # Safety
/// `ptr` is null or valid for writing one `u64`.
unsafe fn maybe_out(ptr: *mut u64, value: u64) -> Result<()> {
    if ptr.is_null() {
        return Ok(());
    }
    // SAFETY: non-null; forwarded from this function's contract.
    unsafe { out(ptr, value, "out_lsn") }
}

/// Writes a commit's LSN through an optional out-pointer.
/// # Safety
/// `out_lsn` is null or valid for writing one `u64`.
unsafe fn receipt_out(r: Result<CommitReceipt>, out_lsn: *mut u64) -> Result<()> {
    let r = r?;
    // SAFETY: forwarded from this function's contract.
    unsafe { maybe_out(out_lsn, r.lsn) }
}

/// Adds the edge `parent -> child` of `kind` (`MMSB_EDGE_*`), with a scalar
/// `weight` if `has_weight`, in a commit of its own; writes its LSN into
/// `*out_lsn` (if not null). An edge that would close a cycle is
/// `MMSB_ERR_CYCLE` and changes nothing (`mmsb_last_cycle_path` gives the
/// cycle); an existing edge is `MMSB_ERR_INVALID_ARGUMENT`; a missing page is
/// `MMSB_ERR_NOT_FOUND`. In immediate mode a new data edge recomputes the
/// child in the same commit.
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_add_dependency(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    kind: u8,
    has_weight: bool,
    weight_value: f64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        let s = handle::durable(store)?;
        let r = s.add_edge(
            PageId(parent),
            PageId(child),
            edge_kind(kind)?,
            weight(has_weight, weight_value),
        );
        // SAFETY: caller contract above.
        unsafe { receipt_out(r, out_lsn) }
    })
}

/// Removes the edge `parent -> child` of `kind` in a commit of its own;
/// `MMSB_ERR_NOT_FOUND` if absent. Writes the LSN into `*out_lsn` (if not null).
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_remove_dependency(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    kind: u8,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        let s = handle::durable(store)?;
        let r = s.remove_edge(PageId(parent), PageId(child), edge_kind(kind)?);
        // SAFETY: caller contract above.
        unsafe { receipt_out(r, out_lsn) }
    })
}

/// Adds "add the edge `parent -> child`" to a commit being built (validated,
/// with the cycle check, when executed).
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_add_dependency(
    commit: MmsbCommit,
    parent: MmsbPageId,
    child: MmsbPageId,
    kind: u8,
    has_weight: bool,
    weight_value: f64,
) -> i32 {
    call(|| {
        let op = Op::AddEdge {
            parent: PageId(parent),
            child: PageId(child),
            kind: edge_kind(kind)?,
            weight: weight(has_weight, weight_value),
        };
        push(commit, op)
    })
}

/// Adds "remove the edge `parent -> child` of `kind`" to a commit being built.
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_remove_dependency(
    commit: MmsbCommit,
    parent: MmsbPageId,
    child: MmsbPageId,
    kind: u8,
) -> i32 {
    call(|| {
        let op = Op::RemoveEdge {
            parent: PageId(parent),
            child: PageId(child),
            kind: edge_kind(kind)?,
        };
        push(commit, op)
    })
}

/// Makes `page` a derived page computed by `func` with `user_data`, and
/// writes the function's id into `*out_function` (if not null). With
/// `reattach` false the page is recomputed at the next wave; with `reattach`
/// true its current bytes are taken as `func`'s result (for registering again,
/// after reopening, the function whose derived deltas the log holds).
/// `thread_safe`: `func` may run concurrently with itself on other pages;
/// false keeps its calls on the committing thread, one at a time.
///
/// # Safety
/// `func` must be safe to call with the arguments described at
/// `MmsbRecomputeFn` and `user_data`, from any thread, for as long as it is
/// registered (until `mmsb_clear_recompute`, a later registration on the page,
/// the page's deletion, or `mmsb_store_close`); `out_function` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_register_recompute(
    store: MmsbStore,
    page: MmsbPageId,
    func: MmsbRecomputeFn,
    user_data: *mut c_void,
    thread_safe: bool,
    reattach: bool,
    out_function: *mut u64,
) -> i32 {
    call(|| {
        let func = func.ok_or_else(|| Error::invalid("func is a null function pointer"))?;
        let s = handle::durable(store)?;
        // SAFETY: the caller promised (contract above) that `func` may be called
        // with engine-provided inputs and `user_data` from any thread while registered.
        let f = unsafe { RecomputeFn::c_function(func, user_data, thread_safe) };
        let id = if reattach {
            s.reattach_recompute(PageId(page), f)?
        } else {
            s.set_recompute(PageId(page), f)?
        };
        // SAFETY: caller contract above.
        unsafe { maybe_out(out_function, id.0) }
    })
}

/// Removes `page`'s recompute function (it becomes an ordinary page, keeping
/// its bytes); `MMSB_ERR_NOT_FOUND` if it had none.
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_clear_recompute(store: MmsbStore, page: MmsbPageId) -> i32 {
    call(|| handle::durable(store)?.clear_recompute(PageId(page)))
}

/// Sets the propagation mode (`MMSB_PROPAGATION_*`). Not durable: a store
/// opens in immediate mode.
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_set_propagation_mode(store: MmsbStore, mode: u8) -> i32 {
    call(|| {
        let m = match mode {
            MMSB_PROPAGATION_IMMEDIATE => PropagationMode::Immediate,
            MMSB_PROPAGATION_DEFERRED => PropagationMode::Deferred,
            m => {
                return Err(Error::invalid(format!(
                    "unknown propagation mode {m} (MMSB_PROPAGATION_*)"
                )))
            }
        };
        handle::durable(store)?.set_mode(m);
        Ok(())
    })
}

/// Writes the propagation mode (`MMSB_PROPAGATION_*`) into `*out_mode`.
///
/// # Safety
/// `out_mode` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_get_propagation_mode(store: MmsbStore, out_mode: *mut u8) -> i32 {
    call(|| {
        need_out(out_mode, "out_mode")?;
        let m = match handle::durable(store)?.mode() {
            PropagationMode::Immediate => MMSB_PROPAGATION_IMMEDIATE,
            PropagationMode::Deferred => MMSB_PROPAGATION_DEFERRED,
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_mode, m, "out_mode") }
    })
}

/// Runs one wave for everything pending (deferred commits' changes, new
/// functions and edges) as a commit of its own, and writes the store's LSN
/// after it into `*out_lsn` (if not null; unchanged if the wave changed no
/// page). A failing recompute function fails it with that function's error,
/// and nothing changes.
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_propagate(store: MmsbStore, out_lsn: *mut u64) -> i32 {
    call(|| {
        let r = handle::durable(store)?.propagate();
        // SAFETY: caller contract above.
        unsafe { receipt_out(r, out_lsn) }
    })
}

/// Schedules every derived page for a recompute and runs the wave (e.g. after
/// reopening a store closed with deferred changes not yet propagated).
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_recompute_all(store: MmsbStore, out_lsn: *mut u64) -> i32 {
    call(|| {
        let r = handle::durable(store)?.recompute_all();
        // SAFETY: caller contract above.
        unsafe { receipt_out(r, out_lsn) }
    })
}

/// Commits the `n` deltas `deltas[0..n]` (delta handles, copied) as one
/// commit with one wave, in either mode, and writes its LSN into `*out_lsn`
/// (if not null). All or nothing.
///
/// # Safety
/// `deltas` is null (only with `n` 0) or valid for reading `n` handles;
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_batch_route_deltas(
    store: MmsbStore,
    deltas: *const MmsbDelta,
    n: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        let s = handle::durable(store)?;
        // SAFETY: caller contract above.
        let hs = unsafe { slice(deltas, n, "deltas")? };
        if hs.is_empty() {
            return Err(Error::invalid("a batch needs at least one delta"));
        }
        let mut ds = Vec::with_capacity(hs.len());
        for &h in hs {
            let d = handle::delta(h)?;
            let d = lock(&d)?.clone();
            d.validate_shape()?;
            ds.push(d);
        }
        let r = s.batch_route_deltas(ds);
        // SAFETY: caller contract above.
        unsafe { receipt_out(r, out_lsn) }
    })
}

/// The user data of a C event callback.
#[derive(Clone, Copy)]
struct CallbackData(*mut c_void);

// SAFETY: the pointer is only handed back to the caller's callback, and
// `mmsb_subscribe`'s caller promised that the callback may be called with it
// from any committing thread while subscribed.
unsafe impl Send for CallbackData {}
// SAFETY: as for `Send` above.
unsafe impl Sync for CallbackData {}

fn event_kind(kind: u8) -> Result<EventKind> {
    Ok(match kind {
        MMSB_EVENT_PAGE_CHANGED => EventKind::PageChanged,
        MMSB_EVENT_STALE => EventKind::Stale,
        MMSB_EVENT_GPU_SYNC => EventKind::GpuSync,
        MMSB_EVENT_INVALIDATED => EventKind::Invalidated,
        k => {
            return Err(Error::invalid(format!(
                "unknown event kind {k} (MMSB_EVENT_*)"
            )))
        }
    })
}

fn c_event(e: &Event) -> MmsbEvent {
    match *e {
        Event::PageChanged { page, epoch } => MmsbEvent {
            kind: MMSB_EVENT_PAGE_CHANGED,
            page: page.0,
            epoch,
            cause: 0,
        },
        Event::Stale { page, cause } => MmsbEvent {
            kind: MMSB_EVENT_STALE,
            page: page.0,
            epoch: 0,
            cause: cause.0,
        },
        Event::GpuSync { page, cause } => MmsbEvent {
            kind: MMSB_EVENT_GPU_SYNC,
            page: page.0,
            epoch: 0,
            cause: cause.0,
        },
        Event::Invalidated { page, cause } => MmsbEvent {
            kind: MMSB_EVENT_INVALIDATED,
            page: page.0,
            epoch: 0,
            cause: cause.0,
        },
    }
}

/// Calls `callback(user_data, &event)` for every event of `kind`
/// (`MMSB_EVENT_*`) of every later acknowledged commit, and writes the
/// subscription's id into `*out_subscription`. Events of one commit come in a
/// fixed order: page changes, then stale, gpu-sync and invalidated marks.
///
/// # Safety
/// `callback` must be safe to call with `user_data` and a valid event pointer,
/// from any committing thread, until `mmsb_unsubscribe` or `mmsb_store_close`;
/// `out_subscription` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_subscribe(
    store: MmsbStore,
    kind: u8,
    callback: MmsbEventCallback,
    user_data: *mut c_void,
    out_subscription: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_subscription, "out_subscription")?;
        let cb = callback.ok_or_else(|| Error::invalid("callback is a null function pointer"))?;
        let k = event_kind(kind)?;
        let s = handle::durable(store)?;
        let data = CallbackData(user_data);
        let id = s.subscribe(k, move |e: &Event| {
            let d = data;
            let ev = c_event(e);
            // SAFETY: the caller of `mmsb_subscribe` promised `cb` may be called
            // with its user data and a pointer to an event valid for the call.
            unsafe { cb(d.0, &ev) };
        });
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_subscription, id.0, "out_subscription") }
    })
}

/// Removes a subscription; writes whether it existed into `*out_existed`.
///
/// # Safety
/// `out_existed` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_unsubscribe(
    store: MmsbStore,
    subscription: u64,
    out_existed: *mut bool,
) -> i32 {
    call(|| {
        need_out(out_existed, "out_existed")?;
        let existed = handle::durable(store)?.unsubscribe(SubscriptionId(subscription));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_existed, existed, "out_existed") }
    })
}

/// Writes whether `page` is stale (a control parent changed since it was
/// last written) into `*out_stale`. Marks are not durable.
///
/// # Safety
/// `out_stale` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_is_stale(
    store: MmsbStore,
    page: MmsbPageId,
    out_stale: *mut bool,
) -> i32 {
    call(|| {
        need_out(out_stale, "out_stale")?;
        let v = handle::durable(store)?.is_stale(PageId(page));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_stale, v, "out_stale") }
    })
}

/// Writes whether `page` is invalidated (a compiler parent changed since it
/// was last written) into `*out_invalidated`.
///
/// # Safety
/// `out_invalidated` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_is_invalidated(
    store: MmsbStore,
    page: MmsbPageId,
    out_invalidated: *mut bool,
) -> i32 {
    call(|| {
        need_out(out_invalidated, "out_invalidated")?;
        let v = handle::durable(store)?.is_invalidated(PageId(page));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_invalidated, v, "out_invalidated") }
    })
}

/// Runs `f` on the graph of a durable store or of a read-only state.
fn with_graph<R>(h: u64, f: impl FnOnce(&DependencyGraph) -> R) -> Result<R> {
    match handle::get_any(
        h,
        &[TAG_DURABLE, TAG_STATE],
        "durable store or read-only state",
    )? {
        Object::Durable(s) => Ok(s.with_graph(f)),
        Object::State(s) => Ok(f(s.graph())),
        _ => Err(Error::new(ErrorCode::Internal, "wrong object kind")),
    }
}

fn kind_filter(kind: u8) -> Result<Option<EdgeKind>> {
    if kind == MMSB_EDGE_ANY {
        Ok(None)
    } else {
        edge_kind(kind).map(Some)
    }
}

/// Keeps the first occurrence of each id.
fn dedup(ids: impl Iterator<Item = PageId>) -> Vec<PageId> {
    let mut seen = std::collections::HashSet::new();
    ids.filter(|p| seen.insert(*p)).collect()
}

/// Copies the children of `page` along edges of `kind` (`MMSB_EDGE_*`, or
/// `MMSB_EDGE_ANY`), each once, by id, into `buf` (capacity `cap` ids) and
/// writes their number into `*out_count`. With `buf` null and `cap` 0 only the
/// number is written; too small a buffer is `MMSB_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` is null or valid for writing `cap` ids; `out_count` is null or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_graph_children(
    store: MmsbStore,
    page: MmsbPageId,
    kind: u8,
    buf: *mut MmsbPageId,
    cap: u64,
    out_count: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let k = kind_filter(kind)?;
        let ids = with_graph(store, |g| {
            dedup(
                g.children(PageId(page))
                    .filter(|e| k.is_none_or(|k| e.kind == k))
                    .map(|e| e.child),
            )
        })?;
        // SAFETY: caller contract above.
        unsafe { copy_ids(&ids, buf, cap, out_count) }
    })
}

/// Copies the parents of `page` along edges of `kind` (or `MMSB_EDGE_ANY`),
/// each once, into `buf`, like `mmsb_graph_children`. For `MMSB_EDGE_DATA`
/// the order is the input order of the page's recompute function.
///
/// # Safety
/// `buf` is null or valid for writing `cap` ids; `out_count` is null or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_graph_parents(
    store: MmsbStore,
    page: MmsbPageId,
    kind: u8,
    buf: *mut MmsbPageId,
    cap: u64,
    out_count: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let k = kind_filter(kind)?;
        let ids = with_graph(store, |g| match k {
            Some(k) => g.parents_of_kind(PageId(page), k),
            None => dedup(g.parents(PageId(page)).map(|e| e.parent)),
        })?;
        // SAFETY: caller contract above.
        unsafe { copy_ids(&ids, buf, cap, out_count) }
    })
}

/// Copies every page of the graph in topological order (each parent before
/// its children) into `buf`, like `mmsb_graph_children`.
///
/// # Safety
/// `buf` is null or valid for writing `cap` ids; `out_count` is null or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_graph_topo_order(
    store: MmsbStore,
    buf: *mut MmsbPageId,
    cap: u64,
    out_count: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let ids = with_graph(store, DependencyGraph::topo_order)?;
        // SAFETY: caller contract above.
        unsafe { copy_ids(&ids, buf, cap, out_count) }
    })
}

/// Copies the cycle of this thread's last error, if it was `MMSB_ERR_CYCLE`
/// (`parent -> child -> ... -> parent`, the first page repeated at the end),
/// into `buf`, like `mmsb_graph_children`; the count is 0 if the last error was
/// not a cycle. Valid until the next failing call on this thread.
///
/// # Safety
/// `buf` is null or valid for writing `cap` ids; `out_count` is null or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_last_cycle_path(
    buf: *mut MmsbPageId,
    cap: u64,
    out_count: *mut u64,
) -> i32 {
    let path = last_cycle_path();
    let rc = call(|| {
        need_out(out_count, "out_count")?;
        // SAFETY: caller contract above.
        unsafe { copy_ids(&path, buf, cap, out_count) }
    });
    // A failure here (a small buffer) must not lose the cycle: ask again.
    set_last_cycle_path(path);
    rc
}
