//! Pinned, host-mapped memory: host bytes the device reads and writes directly.
//!
//! `cuMemHostAlloc` with `DEVICEMAP | PORTABLE` gives page-locked host memory
//! with a device address. The persistent kernel's command ring and the
//! staging buffers of captured graphs live here: the host writes with
//! volatile stores, the device reads over the bus, with no copy call.

use crate::gpu_error;
use cudarc::driver::{sys, CudaContext};
use mmsb_core::error::Result;
use std::sync::Arc;

/// A pinned, host-mapped, zero-filled buffer.
pub struct PinnedBuf {
    ctx: Arc<CudaContext>,
    host: *mut u8,
    dev: u64,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value; the raw pointer is
// only dereferenced through &self/&mut self methods.
unsafe impl Send for PinnedBuf {}

impl PinnedBuf {
    /// Allocates `len` bytes (at least 1) of pinned, mapped host memory.
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<PinnedBuf> {
        let len = len.max(1);
        ctx.bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))?;
        let flags = sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE;
        // SAFETY: the context is current; the driver returns `len` bytes or an error.
        let host = unsafe { cudarc::driver::result::malloc_host(len, flags) }
            .map_err(|e| gpu_error::driver("cuMemHostAlloc", e))?
            .cast::<u8>();
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` was allocated with DEVICEMAP above; `dev` is a valid out-pointer.
        let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host.cast(), 0) };
        if r != sys::CUresult::CUDA_SUCCESS {
            // SAFETY: `host` came from cuMemHostAlloc and is not used after this.
            let _ = unsafe { cudarc::driver::result::free_host(host.cast()) };
            return Err(gpu_error::gpu(format!("cuMemHostGetDevicePointer: {r:?}")));
        }
        // SAFETY: `host` points to `len` writable bytes.
        unsafe { std::ptr::write_bytes(host, 0, len) };
        Ok(PinnedBuf {
            ctx: ctx.clone(),
            host,
            dev,
            len,
        })
    }

    /// The device address of byte 0.
    pub fn device_ptr(&self) -> u64 {
        self.dev
    }

    /// The host address of byte 0 (for volatile access by the owner).
    pub fn host_ptr(&self) -> *mut u8 {
        self.host
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (never: at least one byte is allocated).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, for the host (no device work may be writing them).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `host` points to `len` initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.host, self.len) }
    }

    /// The bytes, mutable, for the host (no device work may be using them).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.host, self.len) }
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `host` came from cuMemHostAlloc and is freed exactly once.
        let _ = unsafe { cudarc::driver::result::free_host(self.host.cast()) };
    }
}
