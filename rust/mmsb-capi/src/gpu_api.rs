//! GPU stores: pages in CPU, GPU or unified memory, with a CPU fallback.
//!
//! A GPU store (`mmsb-gpu`'s `GpuStore`) is separate from the page stores of
//! `mmsb_store_*`: it keeps its own pages, placed at `MMSB_LOCATION_CPU`,
//! `MMSB_LOCATION_GPU` or `MMSB_LOCATION_UNIFIED`, and applies batches of
//! deltas to them on the GPU. Without a usable GPU every call still works:
//! pages asked for in GPU or unified memory are placed in host memory
//! (`mmsb_gpu_page_info` reports where), and moving a page to the GPU is
//! `MMSB_ERR_GPU_UNAVAILABLE`. A kernel or copy that fails mid-batch finishes
//! on the CPU with identical bytes; `mmsb_gpu_stats` counts what happened.
//! `docs/gpu.md` has the details.

use crate::delta_api::MmsbDelta;
use crate::ffi_util::{call, copy_out, need_out, out, slice};
use crate::handle::{self, lock, Object, TAG_GPU, TAG_GPU_MIRROR};
use crate::page_api::MmsbPageId;
use crate::store_api::MmsbStore;
use mmsb_core::{Error, PageId, PageLocation};
use mmsb_gpu::{FailurePoint, GpuStore};
use std::sync::{Arc, Mutex};

/// A GPU store handle (0 is null).
pub type MmsbGpuStore = u64;

/// No forced failure (`mmsb_gpu_set_forced_failure`).
pub const MMSB_GPU_FAIL_NONE: i32 = 0;
/// Force kernel failures: a batch fails halfway through a launch group.
pub const MMSB_GPU_FAIL_KERNEL: i32 = 2;
/// Force host/device copy failures.
pub const MMSB_GPU_FAIL_COPY: i32 = 3;

/// What `mmsb_gpu_stats` reports (see `FallbackStats` in `docs/gpu.md`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbGpuStats {
    /// Whether the store runs on a device (real or emulated).
    pub has_device: bool,
    /// Pages asked for in GPU or unified memory but placed in host memory.
    pub placement_fallbacks: u64,
    /// Kernel failures seen (real or forced).
    pub kernel_failures: u64,
    /// Copy failures seen (real or forced).
    pub copy_failures: u64,
    /// Batches that finished on the CPU after a device failure.
    pub batches_finished_on_cpu: u64,
    /// Deltas applied on the CPU because of a device failure.
    pub deltas_finished_on_cpu: u64,
    /// Device pages recovered to host memory.
    pub pages_moved_to_cpu: u64,
    /// Pages restored from their host copy.
    pub pages_restored_from_host_copy: u64,
    /// Launch groups applied on the device.
    pub gpu_groups: u64,
    /// Launch groups captured into a CUDA graph (graph replay on).
    pub graph_captures: u64,
    /// Launch groups run by replaying a captured graph.
    pub graph_replays: u64,
}

/// A GPU mirror handle (0 is null): see `mmsb_gpu_mirror_attach`.
pub type MmsbGpuMirror = u64;

/// What `mmsb_gpu_mirror_stats` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbGpuMirrorStats {
    /// Refresh rounds run (one per acknowledged commit that marked pages).
    pub refreshes: u64,
    /// Device copies refreshed (pages, summed over rounds).
    pub pages_refreshed: u64,
    /// Rounds that failed (the commits themselves were not affected).
    pub errors: u64,
}

/// Runs `f` on the GPU store behind `store` (under its lock).
fn with_gpu<R>(
    store: MmsbGpuStore,
    f: impl FnOnce(&mut GpuStore) -> mmsb_core::Result<R>,
) -> mmsb_core::Result<R> {
    let g = handle::gpu(store)?;
    let mut guard = lock(&g)?;
    f(&mut guard)
}

fn register(s: GpuStore, out_store: *mut MmsbGpuStore) -> mmsb_core::Result<()> {
    let h = handle::insert(Object::Gpu(Arc::new(Mutex::new(s))));
    // SAFETY: callers check out_store non-null with need_out first; the C
    // caller guarantees it is valid for one write.
    unsafe { out(out_store, h, "out_store") }
}

/// Probes for a usable GPU (driver, NVRTC, a device) and writes the answer
/// into `*out_available`. Never fails for want of a GPU.
///
/// # Safety
/// `out_available` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_available(out_available: *mut bool) -> i32 {
    call(|| {
        need_out(out_available, "out_available")?;
        let p = mmsb_gpu::probe();
        // SAFETY: caller contract above.
        unsafe { out(out_available, p.available(), "out_available") }
    })
}

/// Opens a GPU store on device 0, or a CPU-only one when no GPU is usable
/// (honours `MMSB_GPU_DISABLE` and `MMSB_GPU_FORCE_FAIL`). Close it with
/// `mmsb_gpu_store_close`.
///
/// # Safety
/// `out_store` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_store_open(out_store: *mut MmsbGpuStore) -> i32 {
    call(|| {
        need_out(out_store, "out_store")?;
        register(GpuStore::open(), out_store)
    })
}

/// Opens a GPU store on a device emulated in host memory (for testing the
/// GPU paths and the fallback on machines without a GPU).
///
/// # Safety
/// `out_store` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_store_open_emulated(out_store: *mut MmsbGpuStore) -> i32 {
    call(|| {
        need_out(out_store, "out_store")?;
        register(GpuStore::emulated(), out_store)
    })
}

/// Closes a GPU store and frees its pages; the handle becomes stale.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_store_close(store: MmsbGpuStore) -> i32 {
    call(|| handle::remove(store, TAG_GPU).map(|_| ()))
}

/// Makes a step fail on purpose: `MMSB_GPU_FAIL_NONE`, `MMSB_GPU_FAIL_KERNEL`
/// or `MMSB_GPU_FAIL_COPY` (initialisation failure is the environment
/// variable `MMSB_GPU_FORCE_FAIL=init` at open).
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_set_forced_failure(store: MmsbGpuStore, point: i32) -> i32 {
    call(|| {
        let p = match point {
            MMSB_GPU_FAIL_NONE => None,
            MMSB_GPU_FAIL_KERNEL => Some(FailurePoint::Kernel),
            MMSB_GPU_FAIL_COPY => Some(FailurePoint::Copy),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown failure point {point} (0 none, 2 kernel, 3 copy)"
                )))
            }
        };
        with_gpu(store, |g| {
            g.set_forced_failure(p);
            Ok(())
        })
    })
}

/// Keeps (or stops keeping) a host copy of every device page, so a failure
/// that loses the device bytes is still recovered.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_set_host_copy(store: MmsbGpuStore, on: bool) -> i32 {
    call(|| with_gpu(store, |g| g.set_host_copy(on)))
}

/// Turns CUDA-graph replay of steady batches on or off (off by default).
/// With it on, a batch whose device deltas touch each page once is captured
/// into a graph once per batch shape (same pages, ranges and masks) and
/// replayed for every later batch of that shape: for repetitive workloads.
/// Results are the same either way; `mmsb_gpu_stats` counts captures and
/// replays (the emulated device counts what a GPU would have done).
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_set_graph_replay(store: MmsbGpuStore, on: bool) -> i32 {
    call(|| {
        with_gpu(store, |g| {
            g.set_graph_replay(on);
            Ok(())
        })
    })
}

/// Creates a zeroed page `page` (a caller-chosen non-zero id) of `size` bytes
/// at `location` (`MMSB_LOCATION_*`) and writes where it was placed into
/// `*out_location` (host memory when there is no device).
///
/// # Safety
/// `out_location` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_create_page(
    store: MmsbGpuStore,
    page: MmsbPageId,
    size: u64,
    location: u8,
    out_location: *mut u8,
) -> i32 {
    call(|| {
        need_out(out_location, "out_location")?;
        let loc = PageLocation::from_u8(location)?;
        let size = usize::try_from(size).map_err(|_| Error::invalid("page size too large"))?;
        let at = with_gpu(store, |g| g.create_page(PageId(page), size, loc))?;
        // SAFETY: caller contract above.
        unsafe { out(out_location, at as u8, "out_location") }
    })
}

/// Moves a page to `location`, keeping its bytes and epoch.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_migrate_page(
    store: MmsbGpuStore,
    page: MmsbPageId,
    location: u8,
) -> i32 {
    call(|| {
        let loc = PageLocation::from_u8(location)?;
        with_gpu(store, |g| g.migrate_page(PageId(page), loc))
    })
}

/// Frees a page of a GPU store.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_remove_page(store: MmsbGpuStore, page: MmsbPageId) -> i32 {
    call(|| with_gpu(store, |g| g.remove_page(PageId(page))))
}

/// Writes a page's location (`MMSB_LOCATION_*`), epoch and size (any pointer
/// may be null if not wanted).
///
/// # Safety
/// Each out-pointer is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_page_info(
    store: MmsbGpuStore,
    page: MmsbPageId,
    out_location: *mut u8,
    out_epoch: *mut u64,
    out_size: *mut u64,
) -> i32 {
    call(|| {
        let g = handle::gpu(store)?;
        let g = lock(&g)?;
        let id = PageId(page);
        let (loc, epoch, size) = (g.location(id)?, g.epoch(id)?, g.page_len(id)?);
        if !out_location.is_null() {
            // SAFETY: non-null; caller contract above.
            unsafe { out(out_location, loc as u8, "out_location")? };
        }
        if !out_epoch.is_null() {
            // SAFETY: non-null; caller contract above.
            unsafe { out(out_epoch, epoch, "out_epoch")? };
        }
        if !out_size.is_null() {
            // SAFETY: non-null; caller contract above.
            unsafe { out(out_size, size as u64, "out_size")? };
        }
        Ok(())
    })
}

/// Writes the device address and length in bytes of a page in GPU or
/// unified memory into `*out_ptr` and `*out_len`, for zero-copy views by
/// other CUDA code in this process (CUDA.jl's `unsafe_wrap(CuArray, ...)`;
/// the store uses device 0's primary context, as CUDA.jl does). The store's
/// work stream is waited for first, so every batch already applied is
/// visible.
///
/// **Lifetime.** The address is valid until the page is migrated
/// (`mmsb_gpu_migrate_page`) or removed (`mmsb_gpu_remove_page`), the store
/// is closed, or a device failure moves the page to host memory during a
/// batch; check `mmsb_gpu_page_info` again after any of those. **Ordering.**
/// Later `mmsb_gpu_apply_deltas` calls run on the store's own stream: do not
/// read or write through the address concurrently with them; synchronise
/// your own stream before the next `mmsb_gpu_*` call that touches the page.
///
/// Errors: `MMSB_ERR_NOT_FOUND` for an unknown page,
/// `MMSB_ERR_GPU_UNAVAILABLE` when the store has no device or runs on the
/// emulated device, `MMSB_ERR_INVALID_ARGUMENT` for a page in host memory.
///
/// # Safety
/// `out_ptr` and `out_len` are null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_page_device_ptr(
    store: MmsbGpuStore,
    page: MmsbPageId,
    out_ptr: *mut u64,
    out_len: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_ptr, "out_ptr")?;
        need_out(out_len, "out_len")?;
        let (addr, len) = with_gpu(store, |g| g.device_pointer(PageId(page)))?;
        // SAFETY: both checked non-null above; caller contract above.
        unsafe {
            out(out_ptr, addr, "out_ptr")?;
            out(out_len, len as u64, "out_len")
        }
    })
}

/// Copies a page's bytes (from the device when it lives there) into `buf`
/// (`cap` bytes) and writes its size into `*out_len`. With `buf` null and
/// `cap` 0 only the size is reported; too small a buffer is
/// `MMSB_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` is null or valid for `cap` bytes; `out_len` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_read_page(
    store: MmsbGpuStore,
    page: MmsbPageId,
    buf: *mut u8,
    cap: u64,
    out_len: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_len, "out_len")?;
        let bytes = with_gpu(store, |g| g.read(PageId(page)))?;
        // SAFETY: caller contract above.
        unsafe { copy_out(&bytes, buf, cap, out_len) }
    })
}

/// Applies `count` deltas (handles from `mmsb_delta_new_*`) in order as one
/// batch: every page it touches gains one epoch. All deltas are validated
/// first; on an error nothing changed. Device failures finish on the CPU.
///
/// # Safety
/// `deltas` is null (only with `count` 0) or valid for `count` handles.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_apply_deltas(
    store: MmsbGpuStore,
    deltas: *const MmsbDelta,
    count: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let hs = unsafe { slice(deltas, count, "deltas")? };
        let mut batch = Vec::with_capacity(hs.len());
        for &h in hs {
            let d = handle::delta(h)?;
            let d = lock(&d)?.clone();
            batch.push(d);
        }
        with_gpu(store, |g| g.apply_batch(&batch))
    })
}

/// Writes the store's fallback statistics into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_stats(store: MmsbGpuStore, out_stats: *mut MmsbGpuStats) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let g = handle::gpu(store)?;
        let g = lock(&g)?;
        let s = g.stats();
        let v = MmsbGpuStats {
            has_device: g.has_device(),
            placement_fallbacks: s.placement_fallbacks,
            kernel_failures: s.kernel_failures,
            copy_failures: s.copy_failures,
            batches_finished_on_cpu: s.batches_finished_on_cpu,
            deltas_finished_on_cpu: s.deltas_finished_on_cpu,
            pages_moved_to_cpu: s.pages_moved_to_cpu,
            pages_restored_from_host_copy: s.pages_restored_from_host_copy,
            gpu_groups: s.gpu_groups,
            graph_captures: s.graph_captures,
            graph_replays: s.graph_replays,
        };
        // SAFETY: caller contract above.
        unsafe { out(out_stats, v, "out_stats") }
    })
}

/// Makes gpu-sync edges of the durable store `durable` (from
/// `mmsb_store_open`) act by themselves:
/// after every later acknowledged commit that marks pages for a device sync
/// (children of gpu-sync edges whose parent changed), the GPU store `gpu`'s
/// copies of those pages are refreshed with their bytes and epoch (created at
/// `location`, an `MMSB_LOCATION_*`, the first time), before the commit call
/// returns. Pages pending now are refreshed at once. Detach with
/// `mmsb_gpu_mirror_detach`. Do not call `mmsb_gpu_*` on `gpu` from inside
/// another subscriber's callback of the same store.
///
/// # Safety
/// `out_mirror` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_mirror_attach(
    gpu: MmsbGpuStore,
    durable: MmsbStore,
    location: u8,
    out_mirror: *mut MmsbGpuMirror,
) -> i32 {
    call(|| {
        need_out(out_mirror, "out_mirror")?;
        let loc = PageLocation::from_u8(location)?;
        let g = handle::gpu(gpu)?;
        let s = handle::durable(durable)?;
        let m = mmsb_gpu::GpuMirror::attach(&s, g, loc)?;
        let h = handle::insert(Object::GpuMirror(Arc::new(m)));
        // SAFETY: checked non-null above; caller contract above.
        unsafe { out(out_mirror, h, "out_mirror") }
    })
}

/// Writes what a GPU mirror did into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_mirror_stats(
    mirror: MmsbGpuMirror,
    out_stats: *mut MmsbGpuMirrorStats,
) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let st = handle::gpu_mirror(mirror)?.stats();
        let v = MmsbGpuMirrorStats {
            refreshes: st.refreshes,
            pages_refreshed: st.pages_refreshed,
            errors: st.errors,
        };
        // SAFETY: caller contract above.
        unsafe { out(out_stats, v, "out_stats") }
    })
}

/// Stops a GPU mirror (later commits refresh nothing); the handle becomes stale.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_gpu_mirror_detach(mirror: MmsbGpuMirror) -> i32 {
    call(|| handle::remove(mirror, TAG_GPU_MIRROR).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta_api::{mmsb_delta_free, mmsb_delta_new_dense};

    #[test]
    fn emulated_gpu_store_applies_deltas_and_falls_back_on_forced_kernel_failure() {
        let mut s: MmsbGpuStore = 0;
        // SAFETY: valid out-pointers to locals; handles come from the library.
        unsafe {
            assert_eq!(mmsb_gpu_store_open_emulated(&mut s), 0);
            let mut at = 9u8;
            assert_eq!(mmsb_gpu_create_page(s, 7, 64, 1, &mut at), 0);
            assert_eq!(at, 1);
            assert_eq!(mmsb_gpu_set_forced_failure(s, MMSB_GPU_FAIL_KERNEL), 0);
            let payload = [5u8; 8];
            let mut d = 0u64;
            assert_eq!(
                mmsb_delta_new_dense(7, 8, payload.as_ptr(), 8, std::ptr::null(), 0, &mut d),
                0
            );
            assert_eq!(mmsb_gpu_apply_deltas(s, &d, 1), 0);
            let mut buf = [0u8; 64];
            let mut n = 0u64;
            assert_eq!(mmsb_gpu_read_page(s, 7, buf.as_mut_ptr(), 64, &mut n), 0);
            assert_eq!(n, 64);
            assert_eq!(&buf[8..16], &payload);
            let mut st = MmsbGpuStats::default();
            assert_eq!(mmsb_gpu_stats(s, &mut st), 0);
            assert!(st.has_device && st.batches_finished_on_cpu == 1);
            let (mut loc, mut epoch) = (9u8, 0u64);
            assert_eq!(
                mmsb_gpu_page_info(s, 7, &mut loc, &mut epoch, std::ptr::null_mut()),
                0
            );
            assert_eq!((loc, epoch), (0, 1));
            assert_eq!(
                mmsb_gpu_set_forced_failure(s, 1),
                crate::MMSB_ERR_INVALID_ARGUMENT
            );
            let (mut ptr, mut len) = (0u64, 0u64);
            assert_eq!(
                mmsb_gpu_page_device_ptr(s, 7, &mut ptr, &mut len),
                crate::MMSB_ERR_INVALID_ARGUMENT,
                "page 7 was moved to host memory by the fallback"
            );
            assert_eq!(mmsb_gpu_create_page(s, 8, 16, 1, &mut at), 0);
            assert_eq!(
                mmsb_gpu_page_device_ptr(s, 8, &mut ptr, &mut len),
                crate::MMSB_ERR_GPU_UNAVAILABLE
            );
            assert_eq!(
                mmsb_gpu_page_device_ptr(s, 99, &mut ptr, &mut len),
                crate::MMSB_ERR_NOT_FOUND
            );
            assert_eq!(
                mmsb_gpu_page_device_ptr(s, 8, std::ptr::null_mut(), &mut len),
                crate::MMSB_ERR_INVALID_ARGUMENT
            );
            assert_eq!((ptr, len), (0, 0));
            assert_eq!(mmsb_delta_free(d), 0);
            assert_eq!(mmsb_gpu_store_close(s), 0);
            assert_eq!(mmsb_gpu_store_close(s), crate::MMSB_ERR_INVALID_HANDLE);
        }
    }
}
