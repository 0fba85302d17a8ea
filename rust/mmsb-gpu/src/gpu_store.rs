//! [`GpuStore`]: pages in CPU, GPU or unified memory, with a CPU fallback.
//!
//! The store owns pages (bytes, epoch, location) and applies batches of
//! deltas to them. Where a page lives decides where its deltas run: host
//! pages on the CPU kernels of `mmsb_core::apply`, device and unified pages
//! on the GPU (grouped so one launch never touches a page twice).
//!
//! **Fallback.** [`GpuStore::open`] probes; without a usable GPU the store
//! runs everything on the CPU, and pages asked for in GPU or unified memory
//! are placed in host memory (counted). When a kernel or a copy fails in the
//! middle of a batch, the pages the failed part touched are recovered —
//! from their host copy when the store keeps one ([`GpuStore::set_host_copy`]),
//! otherwise by reading the device bytes back, which is safe because
//! overwrite deltas are idempotent (re-applying a delta over its own partial
//! application gives the same bytes) — moved to host memory, and the rest of
//! the batch finishes on the CPU. The result is byte-identical to a CPU run;
//! [`FallbackStats`] counts what happened. If the device bytes cannot be read
//! and there is no host copy, the batch fails with `GpuError` and the caller
//! restores the page from the log.
//!
//! **Numeric deltas.** A delta with a semiring accumulator (`page ⊕= payload`)
//! on a device page runs the masked accumulate kernel in place, or the CPU
//! over its range for pairs without a kernel (see [`crate::numeric_apply`]);
//! each is a launch group of its own, so a failed group never replays a
//! partially applied accumulate.
//!
//! **Gpu-sync edges.** [`GpuStore::sync_from`] takes the pending device
//! syncs of a durable store (children of gpu-sync edges whose parent changed in
//! a wave) and refreshes their device copies here, bytes and epoch.
//!
//! **Forced failure.** [`GpuStore::set_forced_failure`] (or the environment
//! variable `MMSB_GPU_FORCE_FAIL=init|kernel|copy`) makes that step fail on
//! purpose, so the fallback is tested on any machine; [`GpuStore::emulated`]
//! gives a host-memory device for machines without a GPU.

use crate::backend::{Backend, DevBuf, ReplayRun};
use crate::csr::Csr;
use crate::cuda_device::CudaDevice;
use crate::delta_gpu::split_by_page;
use crate::emulated::EmulatedDevice;
use crate::gpu_error;
use crate::semiring_core::{self, Elem, Semiring};
use crate::semiring_gpu::FoldOp;
use mmsb_core::delta::{Accumulator, Delta};
use mmsb_core::error::{Error, ErrorCode, Result};
use mmsb_core::{PageId, PageLocation};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A step that can be made to fail on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePoint {
    /// Opening the device: the store starts in CPU mode.
    Init,
    /// A kernel: a batch fails halfway through a launch group (after the
    /// first group when there are several), folds and SpMV fail.
    Kernel,
    /// A copy between host and device.
    Copy,
}

/// The environment variable read by [`GpuStore::open`]: `init`, `kernel` or `copy`.
pub const FORCE_FAIL_ENV: &str = "MMSB_GPU_FORCE_FAIL";

impl FailurePoint {
    /// Parses `init`, `kernel` or `copy`.
    pub fn parse(s: &str) -> Option<FailurePoint> {
        match s.trim().to_ascii_lowercase().as_str() {
            "init" => Some(FailurePoint::Init),
            "kernel" => Some(FailurePoint::Kernel),
            "copy" => Some(FailurePoint::Copy),
            _ => None,
        }
    }

    fn from_env() -> Option<FailurePoint> {
        std::env::var(FORCE_FAIL_ENV)
            .ok()
            .and_then(|v| FailurePoint::parse(&v))
    }
}

/// What the fallback did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FallbackStats {
    /// Why the store runs on the CPU from the start, if it does.
    pub init_fallback: Option<String>,
    /// Pages asked for in GPU or unified memory but placed in host memory.
    pub placement_fallbacks: u64,
    /// Kernel failures seen (real or forced).
    pub kernel_failures: u64,
    /// Copy failures seen (real or forced).
    pub copy_failures: u64,
    /// Batches that finished on the CPU after a device failure.
    pub batches_finished_on_cpu: u64,
    /// Deltas applied on the CPU because of a device failure.
    pub deltas_finished_on_cpu: u64,
    /// Device pages recovered to host memory.
    pub pages_moved_to_cpu: u64,
    /// Pages restored from their host copy (the device bytes were not used).
    pub pages_restored_from_host_copy: u64,
    /// Semiring operations computed on the CPU after a device failure.
    pub ops_finished_on_cpu: u64,
    /// Launch groups applied on the device.
    pub gpu_groups: u64,
    /// Semiring operations computed on the device.
    pub gpu_ops: u64,
    /// Launch groups captured into a CUDA graph (graph replay on).
    pub graph_captures: u64,
    /// Launch groups run by replaying a captured graph.
    pub graph_replays: u64,
    /// Numeric (accumulate) deltas on device pages run by the accumulate kernel.
    pub numeric_deltas_on_gpu: u64,
    /// Numeric deltas on device pages whose (semiring, dtype) pair has no
    /// device kernel: applied on the CPU to the range read back.
    pub numeric_deltas_on_cpu: u64,
}

enum Mem {
    Host(Vec<u8>),
    Device(DevBuf),
}

struct Slot {
    len: usize,
    epoch: u64,
    mem: Mem,
    host_copy: Option<Vec<u8>>,
}

/// Pages in CPU, GPU or unified memory, with a CPU fallback.
pub struct GpuStore {
    backend: Option<Backend>,
    pages: BTreeMap<PageId, Slot>,
    forced: Option<FailurePoint>,
    keep_host_copy: bool,
    graph_replay: bool,
    stats: FallbackStats,
}

impl GpuStore {
    /// Opens device 0 if the probe finds a usable GPU, else a CPU-only store.
    /// Never fails and never panics. Honours `MMSB_GPU_FORCE_FAIL` and `MMSB_GPU_DISABLE`.
    pub fn open() -> GpuStore {
        let forced = FailurePoint::from_env();
        if forced == Some(FailurePoint::Init) {
            let mut s = GpuStore::cpu_only("forced initialisation failure");
            s.forced = forced;
            return s;
        }
        let mut s = match CudaDevice::open(0) {
            Ok(dev) => GpuStore::with_device(Arc::new(dev)),
            Err(e) => GpuStore::cpu_only(&e.message),
        };
        s.forced = forced;
        s
    }

    /// A store that runs on the CPU; `why` is reported in the statistics.
    pub fn cpu_only(why: &str) -> GpuStore {
        GpuStore {
            backend: None,
            pages: BTreeMap::new(),
            forced: None,
            keep_host_copy: false,
            graph_replay: false,
            stats: FallbackStats {
                init_fallback: Some(why.to_string()),
                ..FallbackStats::default()
            },
        }
    }

    /// A store on an open CUDA device.
    pub fn with_device(dev: Arc<CudaDevice>) -> GpuStore {
        GpuStore::with_backend(Backend::cuda(dev))
    }

    /// A store on a host-memory emulated device (tests without a GPU).
    pub fn emulated() -> GpuStore {
        GpuStore::with_backend(Backend::Emulated(EmulatedDevice::new()))
    }

    fn with_backend(b: Backend) -> GpuStore {
        GpuStore {
            backend: Some(b),
            pages: BTreeMap::new(),
            forced: None,
            keep_host_copy: false,
            graph_replay: false,
            stats: FallbackStats::default(),
        }
    }

    /// Whether work runs on a device (real or emulated).
    pub fn has_device(&self) -> bool {
        self.backend.is_some()
    }

    /// What the store runs on.
    pub fn describe(&self) -> String {
        match &self.backend {
            Some(b) => b.describe(),
            None => "cpu".into(),
        }
    }

    /// Makes a step fail on purpose (`None`: no forced failures).
    pub fn set_forced_failure(&mut self, point: Option<FailurePoint>) {
        self.forced = point;
    }

    /// Keeps a host copy of every device page, updated after each batch, so a
    /// failure that loses the device bytes is still recovered (costs a CPU
    /// apply per delta).
    pub fn set_host_copy(&mut self, on: bool) -> Result<()> {
        self.keep_host_copy = on;
        let ids: Vec<PageId> = self.pages.keys().copied().collect();
        for id in ids {
            let copy = if on && self.is_device(id) {
                Some(self.read(id)?)
            } else {
                None
            };
            if let Some(s) = self.pages.get_mut(&id) {
                s.host_copy = copy;
            }
        }
        Ok(())
    }

    /// The device buffer of a page that lives on the device.
    pub(crate) fn device_buf(&self, id: PageId) -> Option<DevBuf> {
        match self.pages.get(&id) {
            Some(Slot {
                mem: Mem::Device(b),
                ..
            }) => Some(*b),
            _ => None,
        }
    }

    /// Whether `p` is the forced failure point.
    pub(crate) fn forced_failure(&self, p: FailurePoint) -> bool {
        self.forced(p)
    }

    /// The device, if there is one.
    pub(crate) fn backend_mut(&mut self) -> Option<&mut Backend> {
        self.backend.as_mut()
    }

    /// The ids of the pages here, in order.
    pub fn page_ids(&self) -> Vec<PageId> {
        self.pages.keys().copied().collect()
    }

    /// Sets a page's epoch (a mirror following another store's epochs).
    pub(crate) fn set_epoch(&mut self, id: PageId, epoch: u64) -> Result<()> {
        self.pages
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))?
            .epoch = epoch;
        Ok(())
    }

    /// Counts wave levels captured into, or replayed from, CUDA graphs.
    pub(crate) fn note_wave_graphs(&mut self, captures: usize, replays: usize) {
        self.stats.graph_captures += captures as u64;
        self.stats.graph_replays += replays as u64;
    }

    /// Counts a kernel failure whose work finished on the CPU.
    pub(crate) fn note_kernel_failure(&mut self) {
        self.stats.kernel_failures += 1;
        self.stats.ops_finished_on_cpu += 1;
    }

    /// Replaces a page's bytes, keeping its location and epoch (a failed
    /// upload keeps the bytes on the host, as `mirror_page` does).
    pub(crate) fn overwrite(&mut self, id: PageId, bytes: &[u8]) -> Result<()> {
        let (epoch, at) = (self.epoch(id)?, self.location(id)?);
        self.mirror_page(id, bytes, epoch, at)
    }

    /// After a device wave changed page `id`: one more epoch, and its host
    /// copy (if kept) follows the device bytes.
    pub(crate) fn bump_after_wave(&mut self, id: PageId) -> Result<()> {
        let refresh = self.keep_host_copy && self.is_device(id);
        let copy = if refresh { Some(self.read(id)?) } else { None };
        let slot = self
            .pages
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))?;
        slot.epoch += 1;
        if copy.is_some() {
            slot.host_copy = copy;
        }
        Ok(())
    }

    /// Turns CUDA-graph replay of steady batches on or off. With it on, a
    /// batch whose device deltas form one launch group (no page twice) is
    /// staged into a graph captured once per batch shape (staged bytes,
    /// count, longest delta) and replayed for every later batch of that
    /// shape: one launch call for the whole wave, for repetitive workloads.
    /// Batches of several groups, and forced failures, take the stream path.
    /// Device waves ([`GpuStore::run_wave`]) replay too: each level is captured
    /// once per command table (see [`crate::wave_replay`]).
    /// `stats()` counts captures and replays. Off by default.
    pub fn set_graph_replay(&mut self, on: bool) {
        self.graph_replay = on;
        if !on {
            if let Some(b) = self.backend.as_mut() {
                b.drop_graph();
            }
        }
    }

    /// Whether CUDA-graph replay is on.
    pub fn graph_replay(&self) -> bool {
        self.graph_replay
    }

    /// The fallback statistics.
    pub fn stats(&self) -> &FallbackStats {
        &self.stats
    }

    fn forced(&self, p: FailurePoint) -> bool {
        self.forced == Some(p)
    }

    fn slot(&self, id: PageId) -> Result<&Slot> {
        self.pages
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))
    }

    fn is_device(&self, id: PageId) -> bool {
        matches!(
            self.pages.get(&id),
            Some(Slot {
                mem: Mem::Device(_),
                ..
            })
        )
    }

    /// Creates a zeroed page of `size` bytes at `location`. Without a device
    /// (or if the device allocation fails) a GPU or unified page is placed in
    /// host memory instead; [`GpuStore::location`] tells where it is.
    pub fn create_page(
        &mut self,
        id: PageId,
        size: usize,
        location: PageLocation,
    ) -> Result<PageLocation> {
        if id.0 == 0 || size == 0 {
            return Err(Error::invalid("a page needs a non-zero id and size"));
        }
        if self.pages.contains_key(&id) {
            return Err(Error::invalid(format!("page {id} already exists")));
        }
        let mem = self.place(size, location, None)?;
        let at = mem_location(&mem);
        let host_copy =
            (self.keep_host_copy && matches!(mem, Mem::Device(_))).then(|| vec![0; size]);
        self.pages.insert(
            id,
            Slot {
                len: size,
                epoch: 0,
                mem,
                host_copy,
            },
        );
        Ok(at)
    }

    /// Memory for `size` bytes at `location` holding `bytes` (zero without).
    fn place(&mut self, size: usize, location: PageLocation, bytes: Option<&[u8]>) -> Result<Mem> {
        if location == PageLocation::Cpu {
            return Ok(Mem::Host(
                bytes.map_or_else(|| vec![0; size], |b| b.to_vec()),
            ));
        }
        let unified = location == PageLocation::Unified;
        let forced_copy = self.forced(FailurePoint::Copy);
        let Some(b) = self.backend.as_mut() else {
            self.stats.placement_fallbacks += 1;
            return Ok(Mem::Host(
                bytes.map_or_else(|| vec![0; size], |b| b.to_vec()),
            ));
        };
        let buf = match b.alloc(size, unified) {
            Ok(buf) => buf,
            Err(_) => {
                self.stats.placement_fallbacks += 1;
                return Ok(Mem::Host(
                    bytes.map_or_else(|| vec![0; size], |b| b.to_vec()),
                ));
            }
        };
        if let Some(bytes) = bytes {
            let up = if forced_copy {
                Err(gpu_error::gpu("forced copy failure"))
            } else {
                b.upload(&buf, bytes)
            };
            if up.is_err() {
                b.free(&buf);
                self.stats.copy_failures += 1;
                self.stats.placement_fallbacks += 1;
                return Ok(Mem::Host(bytes.to_vec()));
            }
        }
        Ok(Mem::Device(buf))
    }

    /// Where the page's bytes are now.
    pub fn location(&self, id: PageId) -> Result<PageLocation> {
        Ok(mem_location(&self.slot(id)?.mem))
    }

    /// The page's epoch (batches that changed it).
    pub fn epoch(&self, id: PageId) -> Result<u64> {
        Ok(self.slot(id)?.epoch)
    }

    /// Page size in bytes.
    pub fn page_len(&self, id: PageId) -> Result<usize> {
        Ok(self.slot(id)?.len)
    }

    /// The page's bytes (copied from the device when it lives there; from the
    /// host copy if that copy fails and one is kept).
    pub fn read(&mut self, id: PageId) -> Result<Vec<u8>> {
        let forced_copy = self.forced(FailurePoint::Copy);
        let slot = self
            .pages
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))?;
        match &slot.mem {
            Mem::Host(v) => Ok(v.clone()),
            Mem::Device(buf) => {
                let mut out = vec![0u8; slot.len];
                let r = match (forced_copy, self.backend.as_mut()) {
                    (true, _) => Err(gpu_error::gpu("forced copy failure")),
                    (false, Some(b)) => b.download(buf, &mut out),
                    (false, None) => Err(gpu_error::unavailable("no device")),
                };
                match r {
                    Ok(()) => Ok(out),
                    Err(e) => {
                        self.stats.copy_failures += 1;
                        slot.host_copy.clone().ok_or(e)
                    }
                }
            }
        }
    }

    /// Moves a page between CPU, GPU and unified memory, keeping its bytes
    /// and epoch. Moving to GPU or unified memory without a device is
    /// `GpuUnavailable`; a failed copy leaves the page where it was.
    pub fn migrate_page(&mut self, id: PageId, to: PageLocation) -> Result<()> {
        let from = self.location(id)?;
        if from == to {
            return Ok(());
        }
        if to != PageLocation::Cpu && self.backend.is_none() {
            return Err(gpu_error::unavailable(format!(
                "cannot move {id} to {} memory: {}",
                to.name(),
                self.stats.init_fallback.as_deref().unwrap_or("no GPU")
            )));
        }
        let bytes = self.read(id)?;
        let len = bytes.len();
        let mem = if to == PageLocation::Cpu {
            Mem::Host(bytes.clone())
        } else {
            let m = self.place(len, to, Some(&bytes))?;
            if mem_location(&m) != to {
                return Err(Error::new(
                    ErrorCode::GpuError,
                    format!("could not place {id} in {} memory", to.name()),
                ));
            }
            m
        };
        let keep = self.keep_host_copy;
        if let Some(slot) = self.pages.get_mut(&id) {
            let old = std::mem::replace(&mut slot.mem, mem);
            slot.host_copy = (keep && to != PageLocation::Cpu).then_some(bytes);
            if let (Mem::Device(buf), Some(b)) = (old, self.backend.as_mut()) {
                b.free(&buf);
            }
        }
        Ok(())
    }

    /// Acts on gpu-sync edges: takes the pending device syncs of `store` (the
    /// children of gpu-sync edges whose parents changed) and refreshes the
    /// device copy of each with the page's current bytes and epoch. A page not
    /// mirrored yet is created here at `location`; one already here keeps its
    /// location; one deleted from `store` is removed here. Returns the pages
    /// refreshed, in id order.
    pub fn sync_from(
        &mut self,
        store: &mmsb_core::Store,
        location: PageLocation,
    ) -> Result<Vec<PageId>> {
        let mut done = Vec::new();
        for id in store.take_gpu_sync() {
            let page = match store.page(id) {
                Ok(p) => p,
                Err(e) if e.code == ErrorCode::NotFound => {
                    if self.pages.contains_key(&id) {
                        self.remove_page(id)?;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.mirror_page(id, page.bytes(), page.epoch(), location)?;
            done.push(id);
        }
        done.sort();
        Ok(done)
    }

    /// Sets page `id` to `bytes` at `epoch` (a mirror of a page kept
    /// elsewhere), creating it at `location` if absent or if its size changed.
    pub fn mirror_page(
        &mut self,
        id: PageId,
        bytes: &[u8],
        epoch: u64,
        location: PageLocation,
    ) -> Result<()> {
        let at = match self.pages.get(&id) {
            Some(slot) if slot.len == bytes.len() => mem_location(&slot.mem),
            Some(_) => {
                let at = self.location(id)?;
                self.remove_page(id)?;
                at
            }
            None => location,
        };
        if !self.pages.contains_key(&id) {
            let mem = self.place(bytes.len(), at, Some(bytes))?;
            let keep = self.keep_host_copy && matches!(mem, Mem::Device(_));
            self.pages.insert(
                id,
                Slot {
                    len: bytes.len(),
                    epoch,
                    mem,
                    host_copy: keep.then(|| bytes.to_vec()),
                },
            );
            return Ok(());
        }
        let forced_copy = self.forced(FailurePoint::Copy);
        let keep = self.keep_host_copy;
        let slot = self
            .pages
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))?;
        match &mut slot.mem {
            Mem::Host(v) => v.copy_from_slice(bytes),
            Mem::Device(buf) => {
                let r = match (forced_copy, self.backend.as_mut()) {
                    (true, _) => Err(gpu_error::gpu("forced copy failure")),
                    (false, Some(b)) => b.upload(buf, bytes),
                    (false, None) => Err(gpu_error::unavailable("no device")),
                };
                if r.is_err() {
                    // The device copy could not be refreshed: keep the page on the host.
                    self.stats.copy_failures += 1;
                    self.stats.pages_moved_to_cpu += 1;
                    let old = std::mem::replace(&mut slot.mem, Mem::Host(bytes.to_vec()));
                    slot.host_copy = None;
                    if let (Mem::Device(b), Some(be)) = (old, self.backend.as_mut()) {
                        be.free(&b);
                    }
                } else if keep {
                    slot.host_copy = Some(bytes.to_vec());
                }
            }
        }
        slot.epoch = epoch;
        Ok(())
    }

    /// The device address and length of a page in GPU or unified memory, for
    /// zero-copy views by other CUDA code in this process (for example
    /// CUDA.jl, which shares the device's primary context). Waits for the
    /// store's work stream first. The address stays valid until the page is
    /// migrated or removed or the store is dropped; work the store enqueues
    /// later is ordered on its own stream, not the caller's.
    ///
    /// Errors: `NotFound` for an unknown page; `GpuUnavailable` when the
    /// store has no device (pages asked for on the GPU were placed in host
    /// memory) or runs on the emulated device; `InvalidArgument` for a page
    /// in host memory.
    pub fn device_pointer(&mut self, id: PageId) -> Result<(u64, usize)> {
        let slot = self
            .pages
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))?;
        let Some(backend) = self.backend.as_mut() else {
            return Err(gpu_error::unavailable(format!(
                "page {id} has no device address: the store runs on the CPU (no usable GPU)"
            )));
        };
        match &slot.mem {
            Mem::Host(_) => Err(Error::invalid(format!(
                "page {id} lives in host memory (location cpu); migrate it to gpu or unified first"
            ))),
            Mem::Device(buf) => Ok((backend.device_address(buf)?, slot.len)),
        }
    }

    /// Frees a page.
    pub fn remove_page(&mut self, id: PageId) -> Result<()> {
        let slot = self
            .pages
            .remove(&id)
            .ok_or_else(|| Error::not_found(format!("no page {id} in the GPU store")))?;
        if let (Mem::Device(buf), Some(b)) = (slot.mem, self.backend.as_mut()) {
            b.free(&buf);
        }
        Ok(())
    }

    /// Applies a batch of deltas, in order, as one commit: every page it
    /// touches gains one epoch. Invalid deltas are rejected before anything
    /// changes. Device failures finish the batch on the CPU (see the module
    /// docs); the bytes are those a CPU run would give.
    pub fn apply_batch(&mut self, deltas: &[Delta]) -> Result<()> {
        for d in deltas {
            let len = self.slot(d.page)?.len;
            d.validate(len as u64)?;
        }
        let mut device: Vec<&Delta> = Vec::new();
        for d in deltas {
            if let Some(Slot {
                mem: Mem::Host(v), ..
            }) = self.pages.get_mut(&d.page)
            {
                let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
                mmsb_core::apply::apply(&mut v[lo..hi], d)?;
            } else {
                device.push(d);
            }
        }
        if !device.is_empty() {
            self.apply_on_device(&device)?;
        }
        let touched: HashSet<PageId> = deltas.iter().map(|d| d.page).collect();
        for id in touched {
            if let Some(s) = self.pages.get_mut(&id) {
                s.epoch += 1;
            }
        }
        Ok(())
    }

    fn buf(&self, id: PageId) -> Result<DevBuf> {
        match &self.slot(id)?.mem {
            Mem::Device(b) => Ok(*b),
            Mem::Host(_) => Err(Error::new(
                ErrorCode::Internal,
                format!("{id} is not on the device"),
            )),
        }
    }

    fn apply_on_device(&mut self, deltas: &[&Delta]) -> Result<()> {
        let pages: Vec<PageId> = deltas.iter().map(|d| d.page).collect();
        let groups = split_numeric(split_by_page(&pages), deltas);
        let mut bufs = Vec::with_capacity(deltas.len());
        for d in deltas {
            bufs.push(self.buf(d.page)?);
        }
        let fail_at = self
            .forced(FailurePoint::Kernel)
            .then(|| 1.min(groups.len() - 1));
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| gpu_error::unavailable("no device"))?;
        let _ = backend.prefetch(&bufs);
        let mut failed: Option<(usize, Error)> = None;
        let steady = self.graph_replay
            && groups.len() == 1
            && fail_at.is_none()
            && deltas
                .iter()
                .all(|d| d.accumulator == Accumulator::Overwrite);
        for (g, range) in groups.iter().enumerate() {
            let items: Vec<(DevBuf, &Delta)> =
                range.clone().map(|i| (bufs[i], deltas[i])).collect();
            let numeric = items.len() == 1 && items[0].1.accumulator != Accumulator::Overwrite;
            let r = if numeric && fail_at != Some(g) {
                backend
                    .accumulate_delta(&items[0].0, items[0].1)
                    .map(|on_gpu| {
                        if on_gpu {
                            self.stats.numeric_deltas_on_gpu += 1;
                        } else {
                            self.stats.numeric_deltas_on_cpu += 1;
                        }
                    })
            } else if steady {
                backend.apply_group_replayed(&items).map(|run| match run {
                    ReplayRun::Captured => self.stats.graph_captures += 1,
                    ReplayRun::Replayed => self.stats.graph_replays += 1,
                })
            } else if fail_at == Some(g) {
                // A kernel that dies halfway: the first half of the group lands.
                let _ = backend.apply_group(&items[..items.len() / 2]);
                Err(gpu_error::gpu("forced kernel failure"))
            } else {
                backend.apply_group(&items)
            };
            match r {
                Ok(()) => self.stats.gpu_groups += 1,
                Err(e) => {
                    failed = Some((g, e));
                    break;
                }
            }
        }
        match failed {
            None => self.update_host_copies(deltas),
            Some((g, e)) => {
                self.stats.kernel_failures += 1;
                self.finish_on_cpu(deltas, groups[g].start, e)?;
                // Pages still on the device took all their deltas there; their
                // host copies follow (recovered pages have none any more).
                self.update_host_copies(deltas)
            }
        }
    }

    /// Applies `deltas` to the host copies of the device pages that keep one.
    fn update_host_copies(&mut self, deltas: &[&Delta]) -> Result<()> {
        if !self.keep_host_copy {
            return Ok(());
        }
        for d in deltas {
            if let Some(Slot {
                mem: Mem::Device(_),
                host_copy: Some(c),
                ..
            }) = self.pages.get_mut(&d.page)
            {
                let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
                mmsb_core::apply::apply(&mut c[lo..hi], d)?;
            }
        }
        Ok(())
    }

    /// Recovers the pages touched from delta `from` on, moves them to host
    /// memory, and applies the remaining deltas there.
    fn finish_on_cpu(&mut self, deltas: &[&Delta], from: usize, cause: Error) -> Result<()> {
        let mut recovered: HashSet<PageId> = HashSet::new();
        let forced_copy = self.forced(FailurePoint::Copy);
        for d in &deltas[from..] {
            if !recovered.insert(d.page) {
                continue;
            }
            let slot = self
                .pages
                .get_mut(&d.page)
                .ok_or_else(|| Error::not_found(format!("no page {}", d.page)))?;
            let Mem::Device(buf) = slot.mem else { continue };
            let (bytes, replay_from) = if let Some(copy) = slot.host_copy.take() {
                // The host copy is the state before this batch: replay all of it.
                self.stats.pages_restored_from_host_copy += 1;
                (copy, 0)
            } else {
                let mut out = vec![0u8; slot.len];
                let r = match (forced_copy, self.backend.as_mut()) {
                    (true, _) => Err(gpu_error::gpu("forced copy failure")),
                    (false, Some(b)) => b.download(&buf, &mut out),
                    (false, None) => Err(gpu_error::unavailable("no device")),
                };
                if let Err(e) = r {
                    self.stats.copy_failures += 1;
                    return Err(gpu_error::gpu(format!(
                        "{cause}; page {} could not be read back ({e}) and has no host copy: restore it from the log",
                        d.page
                    )));
                }
                (out, from)
            };
            let mut v = bytes;
            for d2 in deltas[replay_from..].iter().filter(|x| x.page == d.page) {
                let (lo, hi) = (d2.offset as usize, (d2.offset + d2.len) as usize);
                mmsb_core::apply::apply(&mut v[lo..hi], d2)?;
                self.stats.deltas_finished_on_cpu += 1;
            }
            if let Some(slot) = self.pages.get_mut(&d.page) {
                slot.mem = Mem::Host(v);
            }
            if let Some(b) = self.backend.as_mut() {
                b.free(&buf);
            }
            self.stats.pages_moved_to_cpu += 1;
        }
        self.stats.batches_finished_on_cpu += 1;
        Ok(())
    }

    pub(crate) fn run_op<R>(
        &mut self,
        gpu: impl FnOnce(&mut Backend) -> Result<R>,
        cpu: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let forced = self.forced(FailurePoint::Kernel);
        match self.backend.as_mut() {
            None => cpu(),
            Some(b) => {
                let r = if forced {
                    Err(gpu_error::gpu("forced kernel failure"))
                } else {
                    gpu(b)
                };
                match r {
                    Ok(v) => {
                        self.stats.gpu_ops += 1;
                        Ok(v)
                    }
                    Err(e) if e.code == ErrorCode::InvalidArgument => Err(e),
                    Err(_) => {
                        self.stats.kernel_failures += 1;
                        self.stats.ops_finished_on_cpu += 1;
                        cpu()
                    }
                }
            }
        }
    }

    /// `⊕` over `x` (on the device when there is one).
    pub fn fold_add<T: Elem>(&mut self, s: Semiring, x: &[T]) -> Result<T> {
        s.check(T::TYPE)?;
        self.run_op(
            |b| b.fold(FoldOp::Add, s, x),
            || semiring_core::fold_add(s, x),
        )
    }

    /// `⊗` over `x` (on the device when there is one).
    pub fn fold_mul<T: Elem>(&mut self, s: Semiring, x: &[T]) -> Result<T> {
        s.check(T::TYPE)?;
        self.run_op(
            |b| b.fold(FoldOp::Mul, s, x),
            || semiring_core::fold_mul(s, x),
        )
    }

    /// `c[i] = c[i] ⊕ t[i]` where the mask bit is set (everywhere without one).
    pub fn accumulate<T: Elem>(
        &mut self,
        s: Semiring,
        c: &mut [T],
        t: &[T],
        mask: Option<&[u64]>,
    ) -> Result<()> {
        semiring_core::check_accumulate(c.len(), t.len(), mask)?;
        s.check(T::TYPE)?;
        let mut tmp = c.to_vec();
        let done = self.run_op(
            |b| b.accumulate(s, &mut tmp, t, mask).map(|_| true),
            || Ok(false),
        )?;
        if done {
            c.copy_from_slice(&tmp);
            Ok(())
        } else {
            semiring_core::accumulate(s, c, t, mask)
        }
    }

    /// `y = A ⊗ x` over `s`.
    pub fn spmv<T: Elem>(&mut self, s: Semiring, a: &Csr<T>, x: &[T], y: &mut [T]) -> Result<()> {
        a.check_spmv(x.len(), y.len())?;
        s.check(T::TYPE)?;
        let mut tmp = y.to_vec();
        let done = self.run_op(|b| b.spmv(s, a, x, &mut tmp).map(|_| true), || Ok(false))?;
        if done {
            y.copy_from_slice(&tmp);
            Ok(())
        } else {
            semiring_core::spmv(s, a, x, y)
        }
    }
}

/// Gives every numeric (accumulate) delta a launch group of its own: it is
/// one accumulate launch, and a failed group is replayed from its start,
/// which only overwrite deltas tolerate after a partial run.
fn split_numeric(
    groups: Vec<std::ops::Range<usize>>,
    deltas: &[&Delta],
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut start = g.start;
        for i in g.clone() {
            if deltas[i].accumulator != Accumulator::Overwrite {
                if start < i {
                    out.push(start..i);
                }
                out.push(i..i + 1);
                start = i + 1;
            }
        }
        if start < g.end {
            out.push(start..g.end);
        }
    }
    out
}

fn mem_location(m: &Mem) -> PageLocation {
    match m {
        Mem::Host(_) => PageLocation::Cpu,
        Mem::Device(b) if b.unified => PageLocation::Unified,
        Mem::Device(_) => PageLocation::Gpu,
    }
}

impl Drop for GpuStore {
    fn drop(&mut self) {
        if let Some(b) = self.backend.as_mut() {
            for slot in self.pages.values() {
                if let Mem::Device(buf) = &slot.mem {
                    b.free(buf);
                }
            }
        }
    }
}
