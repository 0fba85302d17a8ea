//! Statistics of the page allocator (layer 0) across the C boundary.
//!
//! Every CPU page of every store lives in the process-wide page allocator
//! (`mmsb_core::page_alloc::PageAllocator::global()`, see `docs/allocator.md`).
//! These functions copy its counters into a caller-owned [`MmsbAllocStats`]:
//! the totals, the large-page (mutex) path, or one size class.
//! Counters are exact when no thread is allocating; otherwise each is a recent
//! value.

use crate::ffi_util::{call, need_out, out};
use mmsb_core::page_alloc::{ClassStats, PageAllocator};
use mmsb_core::Error;

/// Counters of the page allocator: the totals, the large path, or one size class.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbAllocStats {
    /// Slot size in bytes of a size class; 0 for the totals and the large path.
    pub slot_size: u64,
    /// Pages currently allocated.
    pub live_pages: u64,
    /// Bytes currently allocated (slot bytes for a class, page bytes for large pages).
    pub live_bytes: u64,
    /// Bytes reserved from the system (slab chunks; live large pages).
    pub reserved_bytes: u64,
    /// Allocations since the process started.
    pub allocations: u64,
    /// Frees since the process started.
    pub frees: u64,
    /// Failed compare-and-swaps on the lock-free freelists (contention).
    pub cas_retries: u64,
    /// Slow-path entries: an empty freelist (steal or carve a chunk); every large-page call.
    pub slow_path: u64,
    /// Large path only: times its mutex was found held by another thread.
    pub lock_contended: u64,
}

impl From<ClassStats> for MmsbAllocStats {
    fn from(c: ClassStats) -> Self {
        MmsbAllocStats {
            slot_size: c.slot_size as u64,
            live_pages: c.live_pages,
            live_bytes: c.live_bytes,
            reserved_bytes: c.reserved_bytes,
            allocations: c.allocations,
            frees: c.frees,
            cas_retries: c.cas_retries,
            slow_path: c.slow_path,
            lock_contended: c.lock_contended,
        }
    }
}

/// Writes the page allocator's totals (every size class plus the large path)
/// into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_allocator_stats(out_stats: *mut MmsbAllocStats) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let s = PageAllocator::global().stats().totals();
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_stats, s.into(), "out_stats") }
    })
}

/// Writes the counters of the large-page path (pages above 64 KiB) into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_allocator_large_stats(out_stats: *mut MmsbAllocStats) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let s = PageAllocator::global().stats().large;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_stats, s.into(), "out_stats") }
    })
}

/// Writes the number of size classes (valid `class_index` values are below it)
/// into `*out_count`.
///
/// # Safety
/// `out_count` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_allocator_class_count(out_count: *mut u64) -> i32 {
    let n = mmsb_core::page_alloc::size_class::NUM_CLASSES as u64;
    // SAFETY: caller contract above.
    call(|| unsafe { out(out_count, n, "out_count") })
}

/// Writes the counters of size class `class_index` (0 = the smallest slot size)
/// into `*out_stats`. An index not below `mmsb_allocator_class_count` is
/// `MMSB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_allocator_class_stats(
    class_index: u64,
    out_stats: *mut MmsbAllocStats,
) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let stats = PageAllocator::global().stats();
        let c = usize::try_from(class_index)
            .ok()
            .and_then(|i| stats.classes.get(i).copied())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "size class {class_index} does not exist (there are {})",
                    stats.classes.len()
                ))
            })?;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_stats, c.into(), "out_stats") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmsb_core::page_buf::PageBuf;

    #[test]
    fn stats_reflect_pages_allocated_through_page_buf() {
        let mut count = 0u64;
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { mmsb_allocator_class_count(&mut count) }, 0);
        let class = mmsb_core::page_alloc::size_class::class_of(8192).unwrap() as u64;
        let mut before = MmsbAllocStats::default();
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { mmsb_allocator_class_stats(class, &mut before) }, 0);
        assert_eq!(before.slot_size, 8192);
        let bufs: Vec<PageBuf> = (0..5).map(|_| PageBuf::zeroed(8192).unwrap()).collect();
        let mut mid = MmsbAllocStats::default();
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { mmsb_allocator_class_stats(class, &mut mid) }, 0);
        assert!(mid.allocations >= before.allocations + 5);
        drop(bufs);
        let mut bad = MmsbAllocStats::default();
        // SAFETY: valid out-pointer; the index is out of range on purpose.
        let rc = unsafe { mmsb_allocator_class_stats(count, &mut bad) };
        assert_eq!(rc, mmsb_core::ErrorCode::InvalidArgument.as_i32());
        // SAFETY: a null out-pointer must be refused, not written.
        let rc = unsafe { mmsb_allocator_stats(std::ptr::null_mut()) };
        assert_eq!(rc, mmsb_core::ErrorCode::InvalidArgument.as_i32());
    }
}
