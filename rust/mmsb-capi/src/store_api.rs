//! Stores: open, close, statistics, applying deltas.

use crate::durable_api::commit_one;
use crate::ffi_util::{call, out};
use crate::handle::{self, lock, Object, Writer, TAG_DURABLE, TAG_STORE};
use mmsb_core::{commit, Op, PageStore};
use std::sync::{Arc, Mutex};

/// A store handle (0 is null).
pub type MmsbStore = u64;

/// Counters of a store (see `mmsb_store_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbStoreStats {
    /// Pages alive now.
    pub pages: u64,
    /// Bytes held by live pages.
    pub page_bytes: u64,
    /// Deltas that changed a page.
    pub deltas_applied: u64,
    /// Deltas that changed nothing (no-ops).
    pub deltas_noop: u64,
    /// Deltas rejected (validation or compare-and-set).
    pub deltas_rejected: u64,
    /// Payload bytes written by applied deltas.
    pub bytes_written: u64,
}

/// Opens a new in-memory store and writes its handle into `*out_store`.
/// Close it with `mmsb_store_close`.
///
/// # Safety
/// `out_store` is null or valid for writing one handle.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_open_memory(out_store: *mut MmsbStore) -> i32 {
    call(|| {
        crate::ffi_util::need_out(out_store, "out_store")?;
        let h = handle::insert(Object::Store(Arc::new(Mutex::new(PageStore::new()))));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_store, h, "out_store") }
    })
}

/// Closes a store, in-memory or durable; its handle becomes stale. Outstanding
/// borrows stay readable until released. Deltas are independent of stores and
/// stay valid. A durable store syncs its log first; a sync failure is reported
/// (the handle is stale either way). Read-only states are freed with
/// `mmsb_state_free`, not here.
///
/// # Safety
/// None beyond passing a handle value (any value is checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_close(store: MmsbStore) -> i32 {
    call(
        || match handle::remove_any(store, &[TAG_STORE, TAG_DURABLE], "store")? {
            Object::Durable(s) => match std::sync::Arc::try_unwrap(s) {
                Ok(s) => s.close(),
                // Another thread is inside a call on it: the store closes (and
                // syncs) when that call returns and drops the last reference.
                Err(_) => Ok(()),
            },
            _ => Ok(()),
        },
    )
}

/// Writes the store's counters into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for writing one `MmsbStoreStats`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_stats(store: MmsbStore, out_stats: *mut MmsbStoreStats) -> i32 {
    call(|| {
        let st = handle::reader(store)?.with(|g| Ok(g.stats()))?;
        let v = MmsbStoreStats {
            pages: st.pages,
            page_bytes: st.page_bytes,
            deltas_applied: st.deltas_applied,
            deltas_noop: st.deltas_noop,
            deltas_rejected: st.deltas_rejected,
            bytes_written: st.bytes_written,
        };
        // SAFETY: caller contract above.
        unsafe { out(out_stats, v, "out_stats") }
    })
}

/// Validates and applies a delta to its page. On a durable store the delta is
/// one commit (logged, then applied; durable per the store's mode), and
/// `out_changed` / `out_epoch` are read right after it (exact unless another
/// thread commits to the same page concurrently). On a read-only state:
/// `MMSB_ERR_READ_ONLY`. On success writes whether any
/// byte changed into `*out_changed` and the page's new epoch into `*out_epoch`
/// (either pointer may be null if not wanted). On error nothing changed. A
/// compare-and-set delta whose expected epoch is stale fails with
/// `MMSB_ERR_EPOCH_MISMATCH`.
///
/// # Safety
/// `out_changed` and `out_epoch` are null or valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_apply_delta(
    store: MmsbStore,
    delta: crate::delta_api::MmsbDelta,
    out_changed: *mut bool,
    out_epoch: *mut u64,
) -> i32 {
    call(|| {
        let w = handle::writer(store)?;
        let d = handle::delta(delta)?;
        let d = lock(&d)?.clone();
        let (changed, epoch) = match w {
            Writer::Memory(s) => {
                let outcome = lock(&s)?.apply_delta(&d)?;
                (outcome.changed, outcome.epoch)
            }
            Writer::Durable(s) => {
                let page = d.page;
                let epoch_of =
                    |s: &PageStore| -> mmsb_core::Result<u64> { Ok(s.page(page)?.epoch()) };
                let before = s.read_with(epoch_of)?;
                commit_one(&s, Op::Delta(d))?;
                let after = s.read_with(epoch_of)?;
                (after != before, after)
            }
        };
        if !out_changed.is_null() {
            // SAFETY: non-null; caller contract above.
            unsafe { out(out_changed, changed, "out_changed")? };
        }
        if !out_epoch.is_null() {
            // SAFETY: non-null; caller contract above.
            unsafe { out(out_epoch, epoch, "out_epoch")? };
        }
        Ok(())
    })
}

/// Checks that a delta could apply to the store now (page exists, range fits,
/// shapes agree, expected epoch current) without applying it.
///
/// # Safety
/// None beyond passing handle values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_check_delta(
    store: MmsbStore,
    delta: crate::delta_api::MmsbDelta,
) -> i32 {
    call(|| {
        let w = handle::writer(store)?;
        let d = handle::delta(delta)?;
        let d = lock(&d)?.clone();
        match w {
            Writer::Memory(s) => {
                let g = lock(&s)?;
                let r = g.check_delta(&d).map(|_| ());
                r
            }
            Writer::Durable(s) => {
                s.read_with(|g| commit::prepare(g, vec![Op::Delta(d)]).map(|_| ()))
            }
        }
    })
}
