//! # MMSB GPU execution
//!
//! Pages and propagation on an NVIDIA GPU, without ever losing work: when no
//! GPU is usable, or a kernel or copy fails mid-run, the work finishes on the
//! CPU with the same results. A guide to the modules:
//!
//! * [`probe`](mod@probe): is a GPU usable? (Never panics; `MMSB_GPU_DISABLE=1` says no.)
//! * [`gpu_store`]: [`GpuStore`], the entry point: pages in CPU, GPU or unified
//!   memory, batched delta apply, migration, semiring operations, CPU fallback
//!   and its statistics, the forced-failure switch for CPU-only testing.
//! * [`cuda_device`], [`kernel_cache`]: one device, and the NVRTC compilation
//!   (once per process) of the CUDA sources in `kernels/`.
//! * [`device_pool`]: device pages from CUDA's stream-ordered pool under a slab
//!   layer; [`unified`]: managed pages and adaptive prefetch; [`pinned`]:
//!   pinned host-mapped buffers.
//! * [`delta_gpu`]: delta apply on the device (batch encoding, launches);
//!   [`semiring_gpu`]: fold_add / fold_mul / accumulate / SpMV on the device;
//!   [`semiring_core`]: the semiring and element tags mapped onto mmsb-core's
//!   semiring layer, whose kernels are the CPU reference and the fallback;
//!   [`semiring_wave_gpu`]: full semiring-network waves (mmsb-core's
//!   `WavePlan`) as CSR SpMV + accumulate launches; [`csr`]: sparse matrices.
//! * [`device_wave`]: propagation waves (planned `CommandBuffer`s) run as
//!   device kernels for the built-in passthrough and byte transforms
//!   ([`device_wave_gpu`]: the launches; [`wave_replay`]: their levels
//!   captured into CUDA graphs and replayed); [`commit_wave`]: a durable
//!   store's commit waves recomputed on the device (`GpuStore::follow_commit`).
//! * [`numeric_apply`]: numeric (accumulate) deltas on device pages, through
//!   the masked accumulate kernel.
//! * [`gpu_mirror`]: [`GpuMirror`], gpu-sync edges that act by themselves:
//!   device copies refreshed after each acknowledged commit of a durable store.
//! * [`persistent`]: the resident kernel fed by a command ring.
//! * [`graph_replay`]: CUDA-graph capture and replay of steady-state batches.
//! * [`backend`], [`emulated`]: the device seam the store's fallback logic is
//!   written against, and a host-memory emulation of a device with fault
//!   injection, so the fallback is tested on machines without a GPU.
//!
//! See `docs/gpu.md` for the design and the measured numbers.

#![deny(missing_docs)]

pub mod backend;
pub mod commit_wave;
pub mod csr;
pub mod cuda_device;
pub mod delta_gpu;
pub mod device_pool;
pub mod device_wave;
pub mod device_wave_gpu;
pub mod emulated;
pub mod gpu_error;
pub mod gpu_mirror;
pub mod gpu_store;
pub mod graph_replay;
pub mod kernel_cache;
pub mod numeric_apply;
pub mod persistent;
pub mod pinned;
pub mod probe;
pub mod semiring_core;
pub mod semiring_gpu;
pub mod semiring_wave_gpu;
pub mod unified;
pub mod wave_replay;

pub use csr::Csr;
pub use cuda_device::CudaDevice;
pub use device_wave::{DeviceFn, DeviceWaveReport};
pub use gpu_mirror::{GpuMirror, MirrorStats};
pub use gpu_store::{FailurePoint, FallbackStats, GpuStore};
pub use probe::{probe, Probe};
pub use semiring_core::{Elem, ElemType, Semiring};
pub use semiring_wave_gpu::SemiringWaveProgram;
