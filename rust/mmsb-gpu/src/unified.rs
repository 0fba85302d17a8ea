//! Unified (managed) pages and prefetching them ahead of a wave.
//!
//! A unified page lives in CUDA managed memory (`cuMemAllocManaged`): host
//! and device both address it, and the driver migrates it on demand, page
//! fault by page fault. Faults are slow, so before a wave touches a page the
//! engine prefetches it (`cuMemPrefetchAsync` to the device) on a side
//! stream, a few pages ahead of the kernel that uses it. How far ahead is set
//! by [`PrefetchTuner`] from measured times: enough pages to cover the
//! prefetch latency with compute.

use crate::gpu_error;
use cudarc::driver::{sys, CudaContext, CudaStream};
use mmsb_core::error::Result;
use std::sync::Arc;

/// A managed-memory buffer.
pub struct UnifiedBuf {
    ctx: Arc<CudaContext>,
    ptr: u64,
    len: usize,
}

// SAFETY: managed memory is plain memory owned by this value.
unsafe impl Send for UnifiedBuf {}

impl UnifiedBuf {
    /// Allocates `len` bytes of managed memory, attached globally.
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<UnifiedBuf> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))?;
        // SAFETY: the context is current; the driver returns `len` bytes or an error.
        let ptr = unsafe {
            cudarc::driver::result::malloc_managed(
                len.max(1),
                sys::CUmemAttach_flags::CU_MEM_ATTACH_GLOBAL,
            )
        }
        .map_err(|e| gpu_error::driver("cuMemAllocManaged", e))?;
        Ok(UnifiedBuf {
            ctx: ctx.clone(),
            ptr,
            len: len.max(1),
        })
    }

    /// The address (valid on host and device).
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (never: at least one byte is allocated).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes from the host. No device work may be using the buffer (the
    /// caller synchronised); touching them migrates them to the host.
    pub fn host_slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: managed memory is host-addressable; `len` bytes are owned
        // by self and &mut self excludes other host users; the caller
        // guarantees no device work is in flight.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) }
    }

    /// Prefetches `[off, off + n)` to the device (`to_device`) or the host on `stream`.
    pub fn prefetch(
        &self,
        off: usize,
        n: usize,
        to_device: bool,
        stream: &CudaStream,
    ) -> Result<()> {
        let n = n.min(self.len.saturating_sub(off));
        if n == 0 {
            return Ok(());
        }
        let loc = if to_device {
            sys::CUmemLocation {
                type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                id: self.ctx.cu_device(),
            }
        } else {
            sys::CUmemLocation {
                type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST,
                id: 0,
            }
        };
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))?;
        // SAFETY: the range lies inside this managed allocation.
        unsafe {
            cudarc::driver::result::mem_prefetch_async(
                self.ptr + off as u64,
                n,
                loc,
                stream.cu_stream(),
            )
        }
        .map_err(|e| gpu_error::driver("cuMemPrefetchAsync", e))
    }
}

impl Drop for UnifiedBuf {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `ptr` came from cuMemAllocManaged and is freed once.
        let _ = unsafe { cudarc::driver::result::free_sync(self.ptr) };
    }
}

/// Chooses how many pages ahead to prefetch from measured times.
///
/// With `p` the time to prefetch one page and `c` the time to compute on one,
/// the prefetch of page `i + d` overlaps the compute of pages `i..i + d` when
/// `d * c >= p`, so `d = ceil(p / c)`, at least 1 and at most `max`.
/// Measurements are smoothed (exponential moving average, weight 1/4).
#[derive(Clone, Debug)]
pub struct PrefetchTuner {
    prefetch_s: Option<f64>,
    compute_s: Option<f64>,
    max: usize,
}

impl PrefetchTuner {
    /// A tuner that never looks further than `max` pages ahead.
    pub fn new(max: usize) -> PrefetchTuner {
        PrefetchTuner {
            prefetch_s: None,
            compute_s: None,
            max: max.max(1),
        }
    }

    fn smooth(old: Option<f64>, new: f64) -> Option<f64> {
        Some(match old {
            Some(o) => 0.75 * o + 0.25 * new,
            None => new,
        })
    }

    /// Records the time one page's prefetch took.
    pub fn record_prefetch(&mut self, seconds: f64) {
        self.prefetch_s = Self::smooth(self.prefetch_s, seconds);
    }

    /// Records the time one page's compute took.
    pub fn record_compute(&mut self, seconds: f64) {
        self.compute_s = Self::smooth(self.compute_s, seconds);
    }

    /// Pages to prefetch ahead (2 before anything was measured).
    pub fn distance(&self) -> usize {
        match (self.prefetch_s, self.compute_s) {
            (Some(p), Some(c)) if c > 0.0 => ((p / c).ceil() as usize).clamp(1, self.max),
            _ => 2.min(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuner_covers_prefetch_latency_with_compute() {
        let mut t = PrefetchTuner::new(16);
        assert_eq!(t.distance(), 2);
        t.record_prefetch(10e-6);
        t.record_compute(3e-6);
        assert_eq!(t.distance(), 4);
        t.record_compute(1e-9);
        assert!(t.distance() <= 16);
    }
}
