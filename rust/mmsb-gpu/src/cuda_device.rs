//! One CUDA device: its context, a work stream, the loaded kernels, a pool.
//!
//! [`CudaDevice::open`] runs only after [`crate::probe`](fn@crate::probe) said the libraries
//! load, so no cudarc call can panic for a missing library. Kernels are looked
//! up by name in the modules compiled by [`crate::kernel_cache`]; launches go
//! through [`CudaDevice::launch`], which takes raw device addresses (`u64`)
//! as arguments, the representation every memory type of this crate shares
//! (pool pages, managed memory, host-mapped pinned memory).

use crate::device_pool::DevicePool;
use crate::gpu_error;
use crate::kernel_cache::{self, KernelSource};
use crate::probe;
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use mmsb_core::error::Result;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// A kernel argument: what `cuLaunchKernel` copies by value.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device address or a 64-bit integer.
    U64(u64),
    /// A 32-bit integer.
    U32(u32),
}

/// An open CUDA device.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<KernelSource, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    pool: Arc<DevicePool>,
    name: String,
    cc: (i32, i32),
    sm_count: u32,
    /// Seconds spent compiling kernels with NVRTC for this device.
    compile_seconds: Mutex<f64>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaDevice({}, sm_{}{})",
            self.name, self.cc.0, self.cc.1
        )
    }
}

impl CudaDevice {
    /// Opens device `ordinal` after probing; a missing GPU is `GpuUnavailable`.
    pub fn open(ordinal: usize) -> Result<CudaDevice> {
        let p = probe::probe();
        if !p.available() {
            return Err(gpu_error::unavailable(
                p.reason.unwrap_or_else(|| "no usable GPU".into()),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| gpu_error::driver("open context", e))?;
        // This crate passes raw device addresses, never cudarc slices, so
        // cudarc's per-slice event tracking (which synchronises the context
        // at times, and would wait forever on a persistent kernel) is off.
        // SAFETY: no CudaSlice of this context exists yet or is ever made.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| gpu_error::driver("create stream", e))?;
        let name = ctx
            .name()
            .map_err(|e| gpu_error::driver("device name", e))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| gpu_error::driver("compute capability", e))?;
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| gpu_error::driver("SM count", e))? as u32;
        let pool = Arc::new(DevicePool::new(ctx.clone())?);
        Ok(CudaDevice {
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            pool,
            name,
            cc,
            sm_count,
            compile_seconds: Mutex::new(0.0),
        })
    }

    /// The device name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// The context (for streams, events, graphs).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The work stream every operation of this device is ordered on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The device page pool.
    pub fn pool(&self) -> &Arc<DevicePool> {
        &self.pool
    }

    /// Seconds spent in NVRTC compiling for this device (0 when the process
    /// cache already had the PTX).
    pub fn compile_seconds(&self) -> f64 {
        self.compile_seconds.lock().map(|s| *s).unwrap_or(0.0)
    }

    /// Makes this device's context current on the calling thread.
    pub fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_error::driver("bind context", e))
    }

    fn module(&self, src: KernelSource) -> Result<Arc<CudaModule>> {
        let mut mods = self
            .modules
            .lock()
            .map_err(|_| gpu_error::gpu("module table lock poisoned"))?;
        if let Some(m) = mods.get(&src) {
            return Ok(m.clone());
        }
        let before = kernel_cache::compile_count();
        let (ptx, secs) = kernel_cache::ptx_for(src, self.cc)?;
        if kernel_cache::compile_count() > before {
            if let Ok(mut s) = self.compile_seconds.lock() {
                *s += secs;
            }
        }
        let m = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| gpu_error::driver(&format!("load kernels/{}", src.file()), e))?;
        mods.insert(src, m.clone());
        Ok(m)
    }

    /// Compiles and loads every kernel source now (otherwise each compiles on first use).
    pub fn warm_up(&self) -> Result<()> {
        for src in KernelSource::ALL {
            self.module(src)?;
        }
        Ok(())
    }

    /// The kernel `name` from `src`.
    pub fn function(&self, src: KernelSource, name: &str) -> Result<CudaFunction> {
        if let Some(f) = self
            .functions
            .lock()
            .map_err(|_| gpu_error::gpu("function table lock poisoned"))?
            .get(name)
        {
            return Ok(f.clone());
        }
        let f = self
            .module(src)?
            .load_function(name)
            .map_err(|e| gpu_error::driver(&format!("kernel {name}"), e))?;
        if let Ok(mut t) = self.functions.lock() {
            t.insert(name.to_string(), f.clone());
        }
        Ok(f)
    }

    /// Launches `f` on `stream` with raw arguments.
    pub fn launch_on(
        &self,
        stream: &CudaStream,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: u32,
        args: &[Arg],
    ) -> Result<()> {
        self.bind()?;
        let mut vals: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                Arg::U64(v) => v,
                Arg::U32(v) => v as u64,
            })
            .collect();
        // Every argument is passed as a pointer to its value; a u32 argument
        // reads the low 4 bytes of its u64 slot (little-endian).
        let mut ptrs: Vec<*mut c_void> = vals
            .iter_mut()
            .map(|v| (v as *mut u64).cast::<c_void>())
            .collect();
        // SAFETY: `f` comes from a loaded module of this context; `ptrs` holds
        // one pointer per kernel parameter, each to a live 8-byte value whose
        // low bytes are the parameter (the kernels take u64 and u32 only);
        // cuLaunchKernel copies the values before returning.
        unsafe {
            cudarc::driver::result::launch_kernel(
                f.cu_function(),
                grid,
                (block, 1, 1),
                0,
                stream.cu_stream(),
                &mut ptrs,
            )
        }
        .map_err(|e| gpu_error::driver("kernel launch", e))
    }

    /// Launches `f` on the device's work stream.
    pub fn launch(
        &self,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: u32,
        args: &[Arg],
    ) -> Result<()> {
        self.launch_on(&self.stream, f, grid, block, args)
    }

    /// Waits for the work stream.
    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| gpu_error::driver("stream synchronize", e))
    }

    /// Copies host bytes to device address `dst` (ordered on the work stream, waits).
    pub fn upload(&self, dst: u64, bytes: &[u8]) -> Result<()> {
        self.upload_on(&self.stream, dst, bytes)?;
        self.sync()
    }

    /// Copies host bytes to `dst` on `stream`; the caller synchronises before
    /// `bytes` may change (the copy from pageable memory is staged by the driver).
    pub fn upload_on(&self, stream: &CudaStream, dst: u64, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` addresses at least bytes.len() bytes of device memory
        // owned by the caller; `bytes` is a live host slice.
        unsafe { cudarc::driver::result::memcpy_htod_async(dst, bytes, stream.cu_stream()) }
            .map_err(|e| gpu_error::driver("host-to-device copy", e))
    }

    /// Copies device bytes at `src` into `out` (waits).
    pub fn download(&self, src: u64, out: &mut [u8]) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` addresses at least out.len() bytes of device memory
        // owned by the caller; `out` is a live host slice; we synchronise
        // before returning so `out` is complete and no longer referenced.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }
            .map_err(|e| gpu_error::driver("device-to-host copy", e))?;
        self.sync()
    }

    /// Device-to-device copy of `n` bytes on `stream` (does not wait).
    pub fn copy_dtod_on(&self, stream: &CudaStream, dst: u64, src: u64, n: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: both addresses name at least `n` bytes of device memory owned by the caller.
        unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, n, stream.cu_stream()) }
            .map_err(|e| gpu_error::driver("device-to-device copy", e))
    }

    /// Fills `n` bytes at `dst` with `value` on the work stream (does not wait).
    pub fn memset(&self, dst: u64, value: u8, n: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: `dst` names at least `n` bytes of device memory owned by the caller.
        unsafe { cudarc::driver::result::memset_d8_async(dst, value, n, self.stream.cu_stream()) }
            .map_err(|e| gpu_error::driver("memset", e))
    }
}
