//! CUDA-graph capture and replay of a steady-state batch.
//!
//! A wave that repeats with the same shape — the same pages, ranges and masks,
//! new payload bytes — costs the same driver work every time: a copy of the
//! staged batch and a kernel launch. [`SteadyBatch`] stages the batch in
//! pinned memory and, with replay on, captures that work once into a CUDA
//! graph and replays the graph afterwards: one launch call for the whole
//! wave. With replay off it issues the same operations on the stream, which
//! is the reference replay must equal. [`SteadyBatch::set_replay`] is the
//! toggle.

use crate::cuda_device::CudaDevice;
use crate::delta_gpu::{batch_bytes, encode_batch, launch_batch};
use crate::gpu_error;
use crate::kernel_cache::KernelSource;
use crate::pinned::PinnedBuf;
use cudarc::driver::{sys, CudaGraph, CudaStream};
use mmsb_core::delta::Delta;
use mmsb_core::error::{Error, Result};
use std::sync::Arc;

/// Counters of a [`SteadyBatch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Runs issued operation by operation on the stream.
    pub stream_runs: u64,
    /// Graph captures.
    pub captures: u64,
    /// Graph launches.
    pub replays: u64,
}

/// The shape a captured graph depends on: staged bytes, delta count and the
/// longest delta (the launch grid). Batches of one shape share a graph.
pub fn batch_shape(items: &[(u64, &Delta)]) -> (usize, usize, u64) {
    let deltas: Vec<&Delta> = items.iter().map(|(_, d)| *d).collect();
    (
        batch_bytes(&deltas),
        items.len(),
        deltas.iter().map(|d| d.len).max().unwrap_or(0),
    )
}

/// A captured graph owned by one [`SteadyBatch`].
struct OwnedGraph(CudaGraph);

// SAFETY: CUDA graph handles may be used from any thread as long as calls on
// one graph are serialized (CUDA's graph thread-safety rules); cudarc binds
// the context to the calling thread before each graph call. An `OwnedGraph`
// is owned by exactly one `SteadyBatch` and only reached through `&mut self`
// (launch) or drop, so moving it to another thread keeps calls serialized.
// It is not `Sync`. Exercised by the GPU check (graph replay through a
// `GpuStore` held in the C ABI's handle table, which moves between threads).
unsafe impl Send for OwnedGraph {}

/// A repeating batch of deltas (no page twice) with optional graph replay.
pub struct SteadyBatch {
    dev: Arc<CudaDevice>,
    stream: Arc<CudaStream>,
    staging: PinnedBuf,
    scratch: u64,
    size: usize,
    n: usize,
    max_len: u64,
    graph: Option<OwnedGraph>,
    replay: bool,
    stats: ReplayStats,
}

impl SteadyBatch {
    /// Stages `items` (device address of each delta's range, delta).
    pub fn new(dev: Arc<CudaDevice>, items: &[(u64, &Delta)]) -> Result<SteadyBatch> {
        let deltas: Vec<&Delta> = items.iter().map(|(_, d)| *d).collect();
        let size = batch_bytes(&deltas);
        let stream = dev
            .context()
            .new_stream()
            .map_err(|e| gpu_error::driver("create replay stream", e))?;
        let scratch = dev.pool().alloc(size, &stream)?;
        let staging = PinnedBuf::new(dev.context(), size)?;
        // Load the kernel before any capture (module loading cannot be captured).
        dev.function(KernelSource::DeltaApply, "mmsb_apply_batch")?;
        let mut b = SteadyBatch {
            dev,
            stream,
            staging,
            scratch,
            size,
            n: items.len(),
            max_len: deltas.iter().map(|d| d.len).max().unwrap_or(0),
            graph: None,
            replay: false,
            stats: ReplayStats::default(),
        };
        b.update(items)?;
        Ok(b)
    }

    /// The shape of the staged batch (see [`batch_shape`]).
    pub fn shape(&self) -> (usize, usize, u64) {
        (self.size, self.n, self.max_len)
    }

    /// Restages new deltas of the same shape (same staged size, count and
    /// longest delta).
    pub fn update(&mut self, items: &[(u64, &Delta)]) -> Result<()> {
        if batch_shape(items) != self.shape() {
            return Err(Error::invalid(
                "a steady batch keeps its shape: same deltas, ranges and masks",
            ));
        }
        let staged = encode_batch(items, self.scratch)?;
        if staged.len() != self.size || items.len() != self.n {
            return Err(Error::invalid(
                "a steady batch keeps its shape: same deltas, ranges and masks",
            ));
        }
        self.stream
            .synchronize()
            .map_err(|e| gpu_error::driver("replay stream synchronize", e))?;
        self.staging.as_mut_slice()[..self.size].copy_from_slice(&staged);
        Ok(())
    }

    /// Turns graph replay on or off.
    pub fn set_replay(&mut self, on: bool) {
        self.replay = on;
    }

    /// Whether graph replay is on.
    pub fn replay(&self) -> bool {
        self.replay
    }

    /// Counters.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    fn enqueue(&self) -> Result<()> {
        self.dev.bind()?;
        // SAFETY: the staging buffer is pinned and holds `size` bytes; the
        // scratch allocation holds `size` bytes; both live as long as self.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(
                self.scratch,
                &self.staging.as_slice()[..self.size],
                self.stream.cu_stream(),
            )
        }
        .map_err(|e| gpu_error::driver("stage batch", e))?;
        launch_batch(&self.dev, &self.stream, self.scratch, self.n, self.max_len)
    }

    /// Runs the batch once (replaying the graph when replay is on) and waits.
    pub fn run(&mut self) -> Result<()> {
        self.launch()?;
        self.stream
            .synchronize()
            .map_err(|e| gpu_error::driver("replay stream synchronize", e))
    }

    /// Issues the batch without waiting (for pipelined measurements).
    pub fn launch(&mut self) -> Result<()> {
        if !self.replay {
            self.enqueue()?;
            self.stats.stream_runs += 1;
            return Ok(());
        }
        if self.graph.is_none() {
            self.stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                .map_err(|e| gpu_error::driver("begin capture", e))?;
            let issued = self.enqueue();
            let graph = self
                .stream
                .end_capture(sys::CUgraphInstantiate_flags(0))
                .map_err(|e| gpu_error::driver("end capture", e))?;
            issued?;
            self.graph =
                Some(OwnedGraph(graph.ok_or_else(|| {
                    gpu_error::gpu("capture produced no graph")
                })?));
            self.stats.captures += 1;
        }
        if let Some(OwnedGraph(g)) = &self.graph {
            g.launch()
                .map_err(|e| gpu_error::driver("graph launch", e))?;
            self.stats.replays += 1;
        }
        Ok(())
    }

    /// Waits for issued runs.
    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| gpu_error::driver("replay stream synchronize", e))
    }
}

impl Drop for SteadyBatch {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        self.graph = None;
        let _ = self.dev.pool().free(self.scratch, self.size, &self.stream);
    }
}
