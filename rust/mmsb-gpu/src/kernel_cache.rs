//! Run-time compilation of `kernels/*.cu` with NVRTC, once per process.
//!
//! The CUDA sources are embedded in the binary (`include_str!`), so a build
//! needs no CUDA toolkit and the kernels always match the code that calls
//! them. The first use of a source on a device of a given compute capability
//! compiles it to PTX for exactly that architecture; the PTX is cached for the
//! life of the process (a second device or a reopened one loads it without
//! compiling), and each [`crate::CudaDevice`] keeps its loaded modules.

use crate::gpu_error;
use mmsb_core::error::Result;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// A CUDA source file of `kernels/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSource {
    /// `delta_apply.cu`: single and batched delta apply, the launch probe.
    DeltaApply,
    /// `semiring.cu`: folds, accumulate, SpMV for the built-in semirings.
    Semiring,
    /// `persistent.cu`: the command-ring consumer.
    Persistent,
    /// `kernels/wave.cu`: levels of propagation waves.
    Wave,
}

impl KernelSource {
    /// Every source.
    pub const ALL: [KernelSource; 4] = [
        KernelSource::DeltaApply,
        KernelSource::Semiring,
        KernelSource::Persistent,
        KernelSource::Wave,
    ];

    /// The file name in `kernels/`.
    pub fn file(self) -> &'static str {
        match self {
            KernelSource::DeltaApply => "delta_apply.cu",
            KernelSource::Semiring => "semiring.cu",
            KernelSource::Persistent => "persistent.cu",
            KernelSource::Wave => "wave.cu",
        }
    }

    /// The CUDA C source text.
    pub fn text(self) -> &'static str {
        match self {
            KernelSource::DeltaApply => include_str!("../../../kernels/delta_apply.cu"),
            KernelSource::Semiring => include_str!("../../../kernels/semiring.cu"),
            KernelSource::Persistent => include_str!("../../../kernels/persistent.cu"),
            KernelSource::Wave => include_str!("../../../kernels/wave.cu"),
        }
    }
}

type PtxCache = Mutex<HashMap<(KernelSource, i32, i32), (String, f64)>>;

fn cache() -> &'static PtxCache {
    static CACHE: OnceLock<PtxCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How many NVRTC compilations this process ran (each source compiles once
/// per architecture).
pub fn compile_count() -> usize {
    cache().lock().map(|c| c.len()).unwrap_or(0)
}

/// The PTX of `src` for compute capability `cc`, compiled on first use.
/// Returns the PTX and the seconds its compilation took.
pub fn ptx_for(src: KernelSource, cc: (i32, i32)) -> Result<(String, f64)> {
    let key = (src, cc.0, cc.1);
    let mut guard = cache()
        .lock()
        .map_err(|_| gpu_error::gpu("kernel cache lock poisoned"))?;
    if let Some(hit) = guard.get(&key) {
        return Ok(hit.clone());
    }
    let t0 = Instant::now();
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![
            format!("--gpu-architecture=compute_{}{}", cc.0, cc.1),
            "--std=c++17".into(),
        ],
        name: Some(src.file().into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src.text(), opts)
        .map_err(|e| gpu_error::gpu(format!("NVRTC failed on kernels/{}: {e:?}", src.file())))?;
    let entry = (ptx.to_src(), t0.elapsed().as_secs_f64());
    guard.insert(key, entry.clone());
    Ok(entry)
}
