//! CUDA-graph replay of steady-state device waves.
//!
//! A device wave ([`crate::device_wave`]) runs level by level, and the host
//! reads each level's changed flags for the cutoff before choosing the next
//! level's commands. A steady workload runs the same levels over and over:
//! the same commands (pages, lengths, functions), new bytes in the roots.
//! With the store's graph-replay toggle on ([`crate::GpuStore::set_graph_replay`]),
//! each level's work — zero the flags, the `mmsb_wave_level` launches, copy
//! the flags to pinned host memory — is captured once into a CUDA graph keyed
//! by the level's encoded command table (device addresses, lengths,
//! functions: everything the work depends on), and a later level with the
//! same table replays it: one graph launch per level instead of an upload,
//! a memset, the launches and a download. The table itself is uploaded once,
//! at capture. The cache keeps [`MAX_GRAPHS`] levels (cleared when full, and
//! when replay is turned off). The emulated device runs the level directly
//! and counts what a GPU would have captured or replayed.

use crate::backend::ReplayRun;
use crate::cuda_device::{Arg, CudaDevice};
use crate::device_wave::{encode_level, WaveCommand};
use crate::device_wave_gpu::level_grid_x;
use crate::gpu_error;
use crate::kernel_cache::KernelSource;
use crate::pinned::PinnedBuf;
use cudarc::driver::{sys, CudaGraph, CudaStream};
use mmsb_core::error::Result;
use std::collections::HashMap;
use std::sync::Arc;

/// Most captured levels kept.
pub const MAX_GRAPHS: usize = 64;

/// Most commands in one captured level (one launch, grid rows = commands).
const MAX_ROWS: usize = 65535;

struct LevelGraph {
    graph: CudaGraph,
    scratch: u64,
    size: usize,
    flags: PinnedBuf,
    n: usize,
}

// SAFETY: as for `graph_replay::OwnedGraph`: a `LevelGraph` is owned by one
// `WaveGraphs`, reached only through `&mut self`, so calls on its graph are
// serialized; cudarc binds the context before each call. Exercised by the GPU
// check `device_wave_graph_replay_equals_stream_wave`.
unsafe impl Send for LevelGraph {}

/// The captured levels of one device.
pub struct WaveGraphs {
    dev: Arc<CudaDevice>,
    stream: Arc<CudaStream>,
    graphs: HashMap<Vec<u8>, LevelGraph>,
}

impl WaveGraphs {
    /// An empty cache on its own stream.
    pub fn new(dev: Arc<CudaDevice>) -> Result<WaveGraphs> {
        let stream = dev
            .context()
            .new_stream()
            .map_err(|e| gpu_error::driver("create wave replay stream", e))?;
        Ok(WaveGraphs {
            dev,
            stream,
            graphs: HashMap::new(),
        })
    }

    /// Runs one level through its graph (captured first if new); returns
    /// per command whether its page changed, and what was done (`None`: the
    /// level took the stream path — empty, or more commands than one launch).
    pub fn run_level(&mut self, cmds: &[WaveCommand]) -> Result<(Vec<bool>, Option<ReplayRun>)> {
        if cmds.is_empty() || cmds.len() > MAX_ROWS {
            return crate::device_wave_gpu::launch_level(&self.dev, cmds).map(|c| (c, None));
        }
        // Work already issued on the device's stream (uploads) comes first.
        self.dev.sync()?;
        let table = encode_level(cmds);
        let run = if self.graphs.contains_key(&table) {
            ReplayRun::Replayed
        } else {
            if self.graphs.len() >= MAX_GRAPHS {
                self.clear();
            }
            let g = self.capture(cmds, &table)?;
            self.graphs.insert(table.clone(), g);
            ReplayRun::Captured
        };
        let g = self
            .graphs
            .get_mut(&table)
            .ok_or_else(|| gpu_error::gpu("no captured level"))?;
        let r = g
            .graph
            .launch()
            .map_err(|e| gpu_error::driver("wave graph launch", e))
            .and_then(|()| {
                self.stream
                    .synchronize()
                    .map_err(|e| gpu_error::driver("wave replay stream synchronize", e))
            });
        if let Err(e) = r {
            // A failed graph is not reused.
            if let Some(g) = self.graphs.remove(&table) {
                self.free(g);
            }
            return Err(e);
        }
        let flags = g
            .flags
            .as_slice()
            .chunks_exact(4)
            .take(g.n)
            .map(|w| w.iter().any(|&b| b != 0))
            .collect();
        Ok((flags, Some(run)))
    }

    fn capture(&mut self, cmds: &[WaveCommand], table: &[u8]) -> Result<LevelGraph> {
        let f = self.dev.function(KernelSource::Wave, "mmsb_wave_level")?;
        let flags_at = table.len().div_ceil(256) * 256;
        let size = flags_at + cmds.len() * 4;
        let scratch = self.dev.pool().alloc(size, &self.stream)?;
        let flags = match PinnedBuf::new(self.dev.context(), cmds.len() * 4) {
            Ok(f) => f,
            Err(e) => {
                let _ = self.dev.pool().free(scratch, size, &self.stream);
                return Err(e);
            }
        };
        let captured = (|| {
            self.dev.upload_on(&self.stream, scratch, table)?;
            self.stream
                .synchronize()
                .map_err(|e| gpu_error::driver("wave replay stream synchronize", e))?;
            self.dev.bind()?;
            self.stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                .map_err(|e| gpu_error::driver("begin capture", e))?;
            let issued = (|| {
                let flags_dev = scratch + flags_at as u64;
                // SAFETY: `flags_dev` is `cmds.len() * 4` bytes inside the
                // `scratch` allocation, which the cache keeps while the graph lives.
                unsafe {
                    cudarc::driver::result::memset_d8_async(
                        flags_dev,
                        0,
                        cmds.len() * 4,
                        self.stream.cu_stream(),
                    )
                }
                .map_err(|e| gpu_error::driver("zero wave flags", e))?;
                let max_len = cmds.iter().map(|c| c.len).max().unwrap_or(0);
                self.dev.launch_on(
                    &self.stream,
                    &f,
                    (level_grid_x(max_len), cmds.len() as u32, 1),
                    256,
                    &[
                        Arg::U64(scratch),
                        Arg::U32(cmds.len() as u32),
                        Arg::U64(flags_dev),
                    ],
                )?;
                // SAFETY: the pinned buffer holds `cmds.len() * 4` bytes and
                // lives in the cache entry as long as the graph that writes it.
                unsafe {
                    cudarc::driver::result::memcpy_dtoh_async(
                        std::slice::from_raw_parts_mut(flags.host_ptr(), cmds.len() * 4),
                        flags_dev,
                        self.stream.cu_stream(),
                    )
                }
                .map_err(|e| gpu_error::driver("read wave flags", e))
            })();
            let graph = self
                .stream
                .end_capture(sys::CUgraphInstantiate_flags(0))
                .map_err(|e| gpu_error::driver("end capture", e))?;
            issued?;
            graph.ok_or_else(|| gpu_error::gpu("capture produced no graph"))
        })();
        match captured {
            Ok(graph) => Ok(LevelGraph {
                graph,
                scratch,
                size,
                flags,
                n: cmds.len(),
            }),
            Err(e) => {
                let _ = self.dev.pool().free(scratch, size, &self.stream);
                Err(e)
            }
        }
    }

    fn free(&self, g: LevelGraph) {
        let _ = self.stream.synchronize();
        let (scratch, size) = (g.scratch, g.size);
        drop(g.graph);
        let _ = self.dev.pool().free(scratch, size, &self.stream);
    }

    /// Drops every captured level.
    pub fn clear(&mut self) {
        let all: Vec<LevelGraph> = self.graphs.drain().map(|(_, g)| g).collect();
        for g in all {
            self.free(g);
        }
    }

    /// Captured levels kept.
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Whether no level is captured.
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }
}

impl Drop for WaveGraphs {
    fn drop(&mut self) {
        self.clear();
    }
}
