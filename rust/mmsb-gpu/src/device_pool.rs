//! Device page memory: a slab layer over CUDA's stream-ordered pool.
//!
//! Two levels:
//!
//! 1. CUDA's stream-ordered allocator (`cuMemAllocAsync` / `cuMemFreeAsync`)
//!    on the device's default memory pool, with the release threshold raised
//!    to "never", so memory freed to the pool stays mapped and comes back
//!    without a system call.
//! 2. A slab per (page size, stream) above it: a freed page goes onto the
//!    free list of its size and stream and is handed out again by the next
//!    allocation of that size on that stream with no CUDA call at all. Keying
//!    by stream keeps reuse stream-ordered (a page is only reused behind the
//!    work that freed it); [`DevicePool::trim`] returns cached pages to CUDA's
//!    pool, which orders cross-stream reuse itself.
//!
//! Sizes are rounded up to 256 bytes (the alignment kernels assume).
//! [`PoolStats`] counts live and peak bytes and pages, cached pages, and how
//! many allocations the slab served (the reuse rate).

use crate::gpu_error;
use cudarc::driver::{sys, CudaContext, CudaStream};
use mmsb_core::error::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Pool statistics. `live_*` return to zero when every page is freed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Bytes of pages handed out and not yet freed.
    pub live_bytes: u64,
    /// Pages handed out and not yet freed.
    pub live_count: u64,
    /// Highest `live_bytes` seen.
    pub peak_bytes: u64,
    /// Highest `live_count` seen.
    pub peak_count: u64,
    /// Bytes of freed pages kept on slab free lists.
    pub cached_bytes: u64,
    /// Freed pages kept on slab free lists.
    pub cached_count: u64,
    /// Allocations served.
    pub allocs: u64,
    /// Allocations served from a slab free list (no CUDA call).
    pub reuses: u64,
    /// Frees.
    pub frees: u64,
}

impl PoolStats {
    /// Fraction of allocations served by the slab (0 when none).
    pub fn reuse_rate(&self) -> f64 {
        if self.allocs == 0 {
            0.0
        } else {
            self.reuses as f64 / self.allocs as f64
        }
    }
}

/// Rounds a page size up to the pool's 256-byte granule.
pub fn rounded(size: usize) -> usize {
    size.div_ceil(256).max(1) * 256
}

struct Inner {
    free: HashMap<(usize, usize), Vec<u64>>,
    stats: PoolStats,
}

/// The device page pool of one context.
pub struct DevicePool {
    ctx: Arc<CudaContext>,
    inner: Mutex<Inner>,
}

impl DevicePool {
    /// Sets the device's default pool to keep freed memory, and starts empty.
    pub fn new(ctx: Arc<CudaContext>) -> Result<DevicePool> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: the context is current; `pool` is a valid out-pointer.
        let r = unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(gpu_error::gpu(format!("cuDeviceGetDefaultMemPool: {r:?}")));
        }
        let mut threshold: u64 = u64::MAX;
        // SAFETY: `pool` is the device's default pool; the release threshold
        // attribute takes a pointer to a u64.
        let r = unsafe {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            )
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(gpu_error::gpu(format!("cuMemPoolSetAttribute: {r:?}")));
        }
        Ok(DevicePool {
            ctx,
            inner: Mutex::new(Inner {
                free: HashMap::new(),
                stats: PoolStats::default(),
            }),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| gpu_error::gpu("device pool lock poisoned"))
    }

    /// A page of at least `size` bytes, ordered on `stream`.
    pub fn alloc(&self, size: usize, stream: &CudaStream) -> Result<u64> {
        let size = rounded(size);
        let key = (size, stream.cu_stream() as usize);
        {
            let mut g = self.lock()?;
            if let Some(p) = g.free.get_mut(&key).and_then(|v| v.pop()) {
                let s = &mut g.stats;
                s.cached_bytes -= size as u64;
                s.cached_count -= 1;
                s.reuses += 1;
                Self::count_alloc(s, size);
                return Ok(p);
            }
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))?;
        // SAFETY: the context is current and `stream` belongs to it.
        let p = unsafe { cudarc::driver::result::malloc_async(stream.cu_stream(), size) }
            .map_err(|e| gpu_error::driver("cuMemAllocAsync", e))?;
        let mut g = self.lock()?;
        Self::count_alloc(&mut g.stats, size);
        Ok(p)
    }

    fn count_alloc(s: &mut PoolStats, size: usize) {
        s.allocs += 1;
        s.live_bytes += size as u64;
        s.live_count += 1;
        s.peak_bytes = s.peak_bytes.max(s.live_bytes);
        s.peak_count = s.peak_count.max(s.live_count);
    }

    /// Returns a page of `size` bytes (as allocated) to the slab of `stream`.
    pub fn free(&self, ptr: u64, size: usize, stream: &CudaStream) -> Result<()> {
        let size = rounded(size);
        let mut g = self.lock()?;
        g.free
            .entry((size, stream.cu_stream() as usize))
            .or_default()
            .push(ptr);
        let s = &mut g.stats;
        s.live_bytes = s.live_bytes.saturating_sub(size as u64);
        s.live_count = s.live_count.saturating_sub(1);
        s.cached_bytes += size as u64;
        s.cached_count += 1;
        s.frees += 1;
        Ok(())
    }

    /// Hands the cached pages of `stream` back to CUDA's pool (stream-ordered).
    pub fn trim(&self, stream: &CudaStream) -> Result<()> {
        let sk = stream.cu_stream() as usize;
        let mut g = self.lock()?;
        let keys: Vec<(usize, usize)> = g.free.keys().copied().filter(|k| k.1 == sk).collect();
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))?;
        for k in keys {
            for p in g.free.remove(&k).unwrap_or_default() {
                // SAFETY: `p` came from cuMemAllocAsync on this stream and is
                // no longer handed out (it was on the free list).
                unsafe { cudarc::driver::result::free_async(p, stream.cu_stream()) }
                    .map_err(|e| gpu_error::driver("cuMemFreeAsync", e))?;
                g.stats.cached_bytes -= k.0 as u64;
                g.stats.cached_count -= 1;
            }
        }
        Ok(())
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> PoolStats {
        self.lock().map(|g| g.stats).unwrap_or_default()
    }
}
