//! The device seam: what [`crate::GpuStore`] needs from a device.
//!
//! A [`Backend`] is a CUDA device or an [`EmulatedDevice`]; both offer
//! buffers ([`DevBuf`]), copies, grouped delta apply and the semiring
//! operations. The store never calls CUDA directly, so its placement,
//! migration and fallback logic is the same code with or without a GPU.

use crate::csr::Csr;
use crate::cuda_device::CudaDevice;
use crate::delta_gpu;
use crate::device_wave::WaveCommand;
use crate::emulated::EmulatedDevice;
use crate::graph_replay::{batch_shape, SteadyBatch};
use crate::numeric_apply;
use crate::semiring_core::{self, Elem, Semiring};
use crate::semiring_gpu::{self, FoldOp};
use crate::unified::UnifiedBuf;
use crate::wave_replay::WaveGraphs;
use mmsb_core::delta::Delta;
use mmsb_core::error::Result;
use std::collections::HashMap;
use std::sync::Arc;

/// A buffer on a backend: its address and length, and whether it is unified memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevBuf {
    /// Device address (an opaque key on the emulated device).
    pub addr: u64,
    /// Length in bytes.
    pub len: usize,
    /// Managed (unified) memory rather than device memory.
    pub unified: bool,
}

/// A CUDA device with the unified buffers it owns.
pub struct CudaBackend {
    /// The device.
    pub dev: Arc<CudaDevice>,
    unified: HashMap<u64, UnifiedBuf>,
    steady: Option<SteadyBatch>,
    waves: Option<WaveGraphs>,
}

/// What a group applied with graph replay did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayRun {
    /// A new batch shape: the work was captured into a graph, then launched.
    Captured,
    /// The shape of the last captured graph: the graph was replayed.
    Replayed,
}

/// A device the store can run on.
pub enum Backend {
    /// A real GPU.
    Cuda(CudaBackend),
    /// Host-memory emulation (tests, CPU-only CI).
    Emulated(EmulatedDevice),
}

impl Backend {
    /// A backend over an open CUDA device.
    pub fn cuda(dev: Arc<CudaDevice>) -> Backend {
        Backend::Cuda(CudaBackend {
            dev,
            unified: HashMap::new(),
            steady: None,
            waves: None,
        })
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cuda(c) => format!("cuda: {}", c.dev.name()),
            Backend::Emulated(_) => "emulated device (host memory)".into(),
        }
    }

    /// A zeroed buffer of `len` bytes.
    pub fn alloc(&mut self, len: usize, unified: bool) -> Result<DevBuf> {
        match self {
            Backend::Emulated(e) => Ok(e.alloc(len, unified)),
            Backend::Cuda(c) => {
                if unified {
                    let mut u = UnifiedBuf::new(c.dev.context(), len)?;
                    u.host_slice_mut().fill(0);
                    let addr = u.ptr();
                    c.unified.insert(addr, u);
                    Ok(DevBuf { addr, len, unified })
                } else {
                    let addr = c.dev.pool().alloc(len, c.dev.stream())?;
                    c.dev.memset(addr, 0, len)?;
                    c.dev.sync()?;
                    Ok(DevBuf { addr, len, unified })
                }
            }
        }
    }

    /// Releases a buffer.
    pub fn free(&mut self, buf: &DevBuf) {
        match self {
            Backend::Emulated(e) => e.free(buf),
            Backend::Cuda(c) => {
                if buf.unified {
                    let _ = c.dev.sync();
                    c.unified.remove(&buf.addr);
                } else {
                    let _ = c.dev.pool().free(buf.addr, buf.len, c.dev.stream());
                }
            }
        }
    }

    /// The address of `buf` that other CUDA code in this process may use
    /// (zero-copy views): waits for the work stream first, so every batch
    /// already applied is visible. The emulated device has no device
    /// addresses: `GpuUnavailable`.
    pub fn device_address(&mut self, buf: &DevBuf) -> Result<u64> {
        match self {
            Backend::Emulated(_) => Err(crate::gpu_error::unavailable(
                "the emulated device has no device addresses",
            )),
            Backend::Cuda(c) => {
                c.dev.sync()?;
                Ok(buf.addr)
            }
        }
    }

    /// Copies the whole page `bytes` into `buf`.
    pub fn upload(&mut self, buf: &DevBuf, bytes: &[u8]) -> Result<()> {
        match self {
            Backend::Emulated(e) => e.upload(buf, 0, bytes),
            Backend::Cuda(c) => c.dev.upload(buf.addr, bytes),
        }
    }

    /// Copies `buf` into `out`.
    pub fn download(&mut self, buf: &DevBuf, out: &mut [u8]) -> Result<()> {
        match self {
            Backend::Emulated(e) => e.download(buf, out),
            Backend::Cuda(c) => c.dev.download(buf.addr, out),
        }
    }

    /// Prefetches unified buffers to the device before a wave (no-op otherwise).
    pub fn prefetch(&mut self, bufs: &[DevBuf]) -> Result<()> {
        if let Backend::Cuda(c) = self {
            for b in bufs.iter().filter(|b| b.unified) {
                if let Some(u) = c.unified.get(&b.addr) {
                    u.prefetch(0, b.len, true, c.dev.stream())?;
                }
            }
        }
        Ok(())
    }

    /// Applies deltas that name distinct buffers, as one launch.
    pub fn apply_group(&mut self, items: &[(DevBuf, &Delta)]) -> Result<()> {
        match self {
            Backend::Emulated(e) => e.apply_group(items),
            Backend::Cuda(c) => {
                let staged: Vec<(u64, &Delta)> =
                    items.iter().map(|(b, d)| (b.addr + d.offset, *d)).collect();
                delta_gpu::apply_group(&c.dev, &staged)
            }
        }
    }

    /// Applies deltas that name distinct buffers through CUDA-graph replay: a
    /// group of the same shape as the last one (staged bytes, count, longest
    /// delta: see [`batch_shape`]) replays the captured graph with the new
    /// deltas staged; another shape is captured first. The emulated device
    /// applies the group directly and reports what a GPU would have done.
    pub fn apply_group_replayed(&mut self, items: &[(DevBuf, &Delta)]) -> Result<ReplayRun> {
        let staged: Vec<(u64, &Delta)> =
            items.iter().map(|(b, d)| (b.addr + d.offset, *d)).collect();
        let shape = batch_shape(&staged);
        match self {
            Backend::Emulated(e) => {
                e.apply_group(items)?;
                let run = if e.graph_shape == Some(shape) {
                    ReplayRun::Replayed
                } else {
                    e.graph_shape = Some(shape);
                    ReplayRun::Captured
                };
                Ok(run)
            }
            Backend::Cuda(c) => {
                // Work issued on the device's stream (uploads, prefetches)
                // comes first: the graph runs on its own stream.
                c.dev.sync()?;
                let run = match c.steady.as_mut() {
                    Some(sb) if sb.shape() == shape => {
                        sb.update(&staged)?;
                        ReplayRun::Replayed
                    }
                    _ => {
                        c.steady = None;
                        let mut sb = SteadyBatch::new(c.dev.clone(), &staged)?;
                        sb.set_replay(true);
                        c.steady = Some(sb);
                        ReplayRun::Captured
                    }
                };
                let r = match c.steady.as_mut() {
                    Some(sb) => sb.run(),
                    None => Err(crate::gpu_error::gpu("no steady batch")),
                };
                if r.is_err() {
                    // A failed graph is not reused.
                    c.steady = None;
                }
                r.map(|()| run)
            }
        }
    }

    /// Applies one numeric (accumulate) delta to `buf` in place: the masked
    /// accumulate kernel where the pair has one (returns `true`), otherwise
    /// the CPU on the range read back and written again (`false`). See
    /// [`crate::numeric_apply`].
    pub fn accumulate_delta(&mut self, buf: &DevBuf, d: &Delta) -> Result<bool> {
        let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
        let pair = numeric_apply::device_pair(d.accumulator);
        match self {
            Backend::Emulated(e) => {
                let range = e.range_mut(buf, lo, hi)?;
                match pair {
                    Some((s, t)) => {
                        let op = numeric_apply::operands(d, t.size())?;
                        numeric_apply::accumulate_cpu(s, t, range, &op)?;
                        Ok(true)
                    }
                    None => {
                        mmsb_core::apply::apply(range, d)?;
                        Ok(false)
                    }
                }
            }
            Backend::Cuda(c) => match pair {
                Some((s, t)) => {
                    let op = numeric_apply::operands(d, t.size())?;
                    let mut sc = semiring_gpu::Scratch::new(&c.dev);
                    let td = sc.upload(&op.t)?;
                    let md = match &op.mask {
                        Some(m) => sc.upload(semiring_gpu::u64_bytes(m))?,
                        None => 0,
                    };
                    c.dev.sync()?;
                    semiring_gpu::accumulate_device(
                        &c.dev,
                        s,
                        t,
                        buf.addr + d.offset,
                        td,
                        md,
                        op.n,
                    )?;
                    c.dev.sync()?;
                    Ok(true)
                }
                None => {
                    let mut range = vec![0u8; hi - lo];
                    c.dev.download(buf.addr + d.offset, &mut range)?;
                    mmsb_core::apply::apply(&mut range, d)?;
                    c.dev.upload(buf.addr + d.offset, &range)?;
                    Ok(false)
                }
            },
        }
    }

    /// Runs one level of a device wave (`kernels/wave.cu`); returns, per
    /// command, whether its page's bytes changed.
    pub fn wave_level(&mut self, cmds: &[WaveCommand]) -> Result<Vec<bool>> {
        match self {
            Backend::Emulated(e) => e.wave_level(cmds),
            Backend::Cuda(c) => crate::device_wave_gpu::launch_level(&c.dev, cmds),
        }
    }

    /// Runs one level of a device wave through CUDA-graph replay (see
    /// [`crate::wave_replay`]): a level whose command table was seen before
    /// replays its graph, a new one is captured. `None`: the stream path ran.
    /// The emulated device runs the level and reports what a GPU would do.
    pub fn wave_level_replayed(
        &mut self,
        cmds: &[WaveCommand],
    ) -> Result<(Vec<bool>, Option<ReplayRun>)> {
        match self {
            Backend::Emulated(e) => {
                let key = crate::device_wave::encode_level(cmds);
                let changed = e.wave_level(cmds)?;
                if cmds.is_empty() {
                    return Ok((changed, None));
                }
                if e.wave_keys.len() >= crate::wave_replay::MAX_GRAPHS
                    && !e.wave_keys.contains(&key)
                {
                    e.wave_keys.clear();
                }
                let run = if e.wave_keys.insert(key) {
                    ReplayRun::Captured
                } else {
                    ReplayRun::Replayed
                };
                Ok((changed, Some(run)))
            }
            Backend::Cuda(c) => {
                if c.waves.is_none() {
                    c.waves = Some(WaveGraphs::new(c.dev.clone())?);
                }
                match c.waves.as_mut() {
                    Some(w) => w.run_level(cmds),
                    None => Err(crate::gpu_error::gpu("no wave graph cache")),
                }
            }
        }
    }

    /// Drops a captured graph (when replay is turned off).
    pub fn drop_graph(&mut self) {
        match self {
            Backend::Emulated(e) => {
                e.graph_shape = None;
                e.wave_keys.clear();
            }
            Backend::Cuda(c) => {
                c.steady = None;
                c.waves = None;
            }
        }
    }

    /// A fold on the backend.
    pub fn fold<T: Elem>(&mut self, op: FoldOp, s: Semiring, x: &[T]) -> Result<T> {
        match self {
            Backend::Emulated(_) => match op {
                FoldOp::Add => semiring_core::fold_add(s, x),
                FoldOp::Mul => semiring_core::fold_mul(s, x),
            },
            Backend::Cuda(c) => semiring_gpu::fold_host(&c.dev, op, s, x),
        }
    }

    /// A masked accumulate on the backend.
    pub fn accumulate<T: Elem>(
        &mut self,
        s: Semiring,
        c: &mut [T],
        t: &[T],
        mask: Option<&[u64]>,
    ) -> Result<()> {
        match self {
            Backend::Emulated(_) => semiring_core::accumulate(s, c, t, mask),
            Backend::Cuda(cb) => semiring_gpu::accumulate_host(&cb.dev, s, c, t, mask),
        }
    }

    /// A SpMV on the backend.
    pub fn spmv<T: Elem>(&mut self, s: Semiring, a: &Csr<T>, x: &[T], y: &mut [T]) -> Result<()> {
        match self {
            Backend::Emulated(_) => semiring_core::spmv(s, a, x, y),
            Backend::Cuda(c) => semiring_gpu::spmv_host(&c.dev, s, a, x, y),
        }
    }
}
