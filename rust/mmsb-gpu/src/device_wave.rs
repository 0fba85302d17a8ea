//! Propagation waves on the device: a planned [`CommandBuffer`] run as kernels.
//!
//! The engine plans every wave as a command buffer before it runs
//! (`mmsb_core::CommandBuffer`: levels of commands, each recomputing one
//! derived page from its data parents). [`GpuStore::run_wave`] runs such a
//! plan over the store's pages with the same rules as the CPU engine
//! (`mmsb_core::propagation`): level by level, a command runs if it is forced
//! or one of its inputs changed in this wave (a root or a page an earlier
//! command changed); a recomputed page whose bytes did not change stops the
//! wave there (cutoff); every changed page gains one epoch.
//!
//! The built-in recompute functions that are elementwise over the first
//! input run on the device ([`DeviceFn`]: passthrough, xor-const, add-const;
//! `DeviceFn::from_recompute` maps a `RecomputeFn` to one): one launch of
//! `mmsb_wave_level` (`kernels/wave.cu`) per level for the commands whose
//! page and first input both live on the device, with a changed flag per
//! command read back for the cutoff. Commands with a page in host memory run
//! on the CPU in the same level. A plan naming a function with no device
//! form (a Rust closure, a C function, a general byte map) is `Unsupported`
//! before anything runs: run that wave on the CPU engine.
//!
//! With the store's graph-replay toggle on, each level runs through a CUDA
//! graph captured once per level (command table) and replayed afterwards
//! ([`crate::wave_replay`]); the report and `FallbackStats` count captures
//! and replays. The bytes and the cutoff are those of the stream path.
//!
//! Failures: a level whose launch fails (or is forced to fail) runs on the
//! CPU from the device bytes. A kernel writes `dst[i] = f(src[i])`, so
//! re-running it over a partial launch gives the same bytes; since the old
//! bytes may be partly overwritten, every command of a failed launch is then
//! treated as changed (the bytes stay exact; at worst downstream commands
//! recompute and epochs count one change more). A forced failure fails before
//! launching, so it matches the CPU exactly.

use crate::backend::{DevBuf, ReplayRun};
use crate::gpu_error;
use crate::gpu_store::{FailurePoint, GpuStore};
use mmsb_core::command_buffer::{Command, CommandBuffer};
use mmsb_core::error::{Error, ErrorCode, Result};
use mmsb_core::recompute::{ByteTransform, FunctionId, RecomputeFn};
use mmsb_core::PageId;
use std::collections::{BTreeSet, HashMap, HashSet};

/// A recompute function with a device kernel: elementwise over the first input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceFn {
    /// `RecomputeFn::Passthrough`: copy the first input.
    Copy,
    /// `ByteTransform::XorConst(k)`.
    Xor(u8),
    /// `ByteTransform::AddConst(k)` (wrapping).
    Add(u8),
}

impl DeviceFn {
    /// The device form of a recompute function, if it has one.
    pub fn from_recompute(f: &RecomputeFn) -> Option<DeviceFn> {
        match f {
            RecomputeFn::Passthrough => Some(DeviceFn::Copy),
            RecomputeFn::Transform(ByteTransform::XorConst(k)) => Some(DeviceFn::Xor(*k)),
            RecomputeFn::Transform(ByteTransform::AddConst(k)) => Some(DeviceFn::Add(*k)),
            _ => None,
        }
    }

    /// The kernel's operation code and constant.
    pub fn code(self) -> (u32, u32) {
        match self {
            DeviceFn::Copy => (0, 0),
            DeviceFn::Xor(k) => (1, k as u32),
            DeviceFn::Add(k) => (2, k as u32),
        }
    }

    /// One byte.
    pub fn apply(self, b: u8) -> u8 {
        match self {
            DeviceFn::Copy => b,
            DeviceFn::Xor(k) => b ^ k,
            DeviceFn::Add(k) => b.wrapping_add(k),
        }
    }

    /// The CPU twin of one command: `out[i] = f(src[i])` over the shorter
    /// length; returns whether any byte changed.
    pub fn run_cpu(self, src: &[u8], out: &mut [u8]) -> bool {
        let mut changed = false;
        for (o, &s) in out.iter_mut().zip(src) {
            let v = self.apply(s);
            changed |= *o != v;
            *o = v;
        }
        changed
    }
}

/// One command of a device level: page `dst` = `f(src)` over `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaveCommand {
    /// The derived page's buffer.
    pub dst: DevBuf,
    /// Its first input's buffer.
    pub src: DevBuf,
    /// Bytes computed (the shorter page).
    pub len: usize,
    /// The function.
    pub f: DeviceFn,
}

/// Bytes per encoded command (`WaveCmd` in `kernels/wave.cu`).
pub const WAVE_COMMAND_BYTES: usize = 32;

/// Encodes a level's commands for the kernel.
pub fn encode_level(cmds: &[WaveCommand]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmds.len() * WAVE_COMMAND_BYTES);
    for c in cmds {
        let (op, k) = c.f.code();
        out.extend_from_slice(&c.dst.addr.to_le_bytes());
        out.extend_from_slice(&c.src.addr.to_le_bytes());
        out.extend_from_slice(&(c.len as u64).to_le_bytes());
        out.extend_from_slice(&op.to_le_bytes());
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}

/// What a device wave did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceWaveReport {
    /// Pages whose command ran, in run order.
    pub recomputed: Vec<PageId>,
    /// Pages whose bytes changed, in run order.
    pub changed: Vec<PageId>,
    /// Commands run by device kernels.
    pub on_device: usize,
    /// Commands run on the CPU (host pages, or a failed launch).
    pub on_cpu: usize,
    /// Device launches (one per level with device commands).
    pub launches: usize,
    /// Levels captured into a CUDA graph (graph replay on).
    pub graph_captures: usize,
    /// Levels run by replaying a captured graph.
    pub graph_replays: usize,
}

impl GpuStore {
    /// Runs the planned wave `plan` over this store's pages: see the module
    /// docs. `functions` gives the device form of each function the plan
    /// names; `roots` are the pages the commit changed before the wave (their
    /// deltas are already applied here, e.g. with [`GpuStore::apply_batch`]).
    pub fn run_wave(
        &mut self,
        plan: &CommandBuffer,
        functions: &HashMap<FunctionId, DeviceFn>,
        roots: &BTreeSet<PageId>,
    ) -> Result<DeviceWaveReport> {
        for c in &plan.commands {
            if !functions.contains_key(&c.function) {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} of {} has no device kernel: run this wave on the CPU",
                        c.function, c.page
                    ),
                ));
            }
            if c.inputs.is_empty() {
                return Err(Error::invalid(format!(
                    "recompute of {} needs at least one input",
                    c.page
                )));
            }
            self.page_len(c.page)?;
            for &q in &c.inputs {
                self.page_len(q)?;
            }
        }
        let mut report = DeviceWaveReport::default();
        let mut wave_changed: HashSet<PageId> = roots.iter().copied().collect();
        for level in &plan.levels {
            let run: Vec<&Command> = plan.commands[level.clone()]
                .iter()
                .filter(|c| c.forced || c.inputs.iter().any(|i| wave_changed.contains(i)))
                .collect();
            let mut device: Vec<(&Command, WaveCommand)> = Vec::new();
            let mut host: Vec<&Command> = Vec::new();
            for c in run {
                let f = functions[&c.function];
                match (self.device_buf(c.page), self.device_buf(c.inputs[0])) {
                    (Some(dst), Some(src)) if self.has_device() => device.push((
                        c,
                        WaveCommand {
                            dst,
                            src,
                            len: dst.len.min(src.len),
                            f,
                        },
                    )),
                    _ => host.push(c),
                }
            }
            let mut flags: Vec<(PageId, bool)> = Vec::new();
            if !device.is_empty() {
                let cmds: Vec<WaveCommand> = device.iter().map(|(_, w)| *w).collect();
                let replay = self.graph_replay();
                let r = if self.forced_failure(FailurePoint::Kernel) {
                    Err(gpu_error::gpu("forced kernel failure"))
                } else {
                    self.backend_mut()
                        .ok_or_else(|| gpu_error::unavailable("no device"))
                        .and_then(|b| {
                            if replay {
                                b.wave_level_replayed(&cmds)
                            } else {
                                b.wave_level(&cmds).map(|c| (c, None))
                            }
                        })
                };
                let r = r.map(|(changed, run)| {
                    match run {
                        Some(ReplayRun::Captured) => report.graph_captures += 1,
                        Some(ReplayRun::Replayed) => report.graph_replays += 1,
                        None => {}
                    }
                    changed
                });
                match r {
                    Ok(changed) => {
                        report.launches += 1;
                        report.on_device += device.len();
                        for ((c, _), ch) in device.iter().zip(changed) {
                            flags.push((c.page, ch));
                        }
                    }
                    Err(e) if e.code == ErrorCode::InvalidArgument => return Err(e),
                    Err(_) => {
                        let forced = self.forced_failure(FailurePoint::Kernel);
                        self.note_kernel_failure();
                        for (c, w) in &device {
                            let ch = self.run_on_cpu(c, w.f)?;
                            // A real launch may have landed in part: see the module docs.
                            flags.push((c.page, ch || !forced));
                            report.on_cpu += 1;
                        }
                    }
                }
            }
            for c in host {
                let ch = self.run_on_cpu(c, functions[&c.function])?;
                flags.push((c.page, ch));
                report.on_cpu += 1;
            }
            // Run order: the plan's order within the level.
            let pos: HashMap<PageId, usize> = plan.commands[level.clone()]
                .iter()
                .enumerate()
                .map(|(i, c)| (c.page, i))
                .collect();
            flags.sort_by_key(|(p, _)| pos.get(p).copied().unwrap_or(usize::MAX));
            for (page, ch) in flags {
                report.recomputed.push(page);
                if ch {
                    report.changed.push(page);
                    wave_changed.insert(page);
                }
            }
        }
        for &p in &report.changed {
            self.bump_after_wave(p)?;
        }
        self.note_wave_graphs(report.graph_captures, report.graph_replays);
        Ok(report)
    }

    /// Runs one command on the CPU over the pages' current bytes (read from
    /// the device where they live) and writes the result back.
    fn run_on_cpu(&mut self, c: &Command, f: DeviceFn) -> Result<bool> {
        let src = self.read(c.inputs[0])?;
        let mut out = self.read(c.page)?;
        let changed = f.run_cpu(&src, &mut out);
        if changed {
            self.overwrite(c.page, &out)?;
        }
        Ok(changed)
    }
}
