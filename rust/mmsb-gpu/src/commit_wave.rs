//! Device waves that follow a durable store's commits.
//!
//! [`crate::GpuMirror`] keeps device copies of gpu-sync children current by
//! *uploading* the bytes the CPU wave computed: after each acknowledged
//! commit it copies every marked page (whatever its function) to the
//! device. [`GpuStore::follow_commit`] is the other way to keep device pages
//! current: it *recomputes* them there. Given one acknowledged commit of a
//! `mmsb_core::Store` in immediate mode — the deltas it committed and its
//! receipt — it applies the deltas to the pages mirrored here, plans the
//! commit's wave from the store's graph and recompute functions
//! (`CommandBuffer::plan`, the planner the CPU engine uses, with the
//! commit's changed source pages as roots and the pages the store's wave
//! recomputed as forced: a page whose function was set since the last wave
//! is recomputed once whatever its inputs did), and runs the plan with
//! [`GpuStore::run_wave`]: built-in device functions (passthrough,
//! xor-const, add-const; `functions` maps the store's function ids to them)
//! run as device kernels on pages that live on the device, host pages run
//! on the CPU. The roots are the pages whose bytes the commit changed (this
//! mirror's bytes before, the store's after). The pages the device wave
//! recomputes must be among those the store's wave recomputed (checked).
//! With `verify`, every page the store recomputed is compared with the
//! store's bytes. Changed pages take the store's epochs.
//!
//! Limits (checked, nothing changes when they fail): every page of the wave's
//! region must be mirrored here (`NotFound` otherwise); every function of the
//! plan needs a device form (`Unsupported`: use the mirror); the store must
//! be in immediate mode (`Unsupported`: a deferred commit runs no wave). The
//! caller runs it on the committing thread before the next commit: the
//! store's graph and pages must be those of that commit.

use crate::device_wave::{DeviceFn, DeviceWaveReport};
use crate::gpu_store::GpuStore;
use mmsb_core::command_buffer::CommandBuffer;
use mmsb_core::delta::Delta;
use mmsb_core::error::{Error, ErrorCode, Result};
use mmsb_core::id_hash::IdHashMap;
use mmsb_core::propagation::PropagationMode;
use mmsb_core::recompute::FunctionId;
use mmsb_core::{CommitReceipt, PageId, Store};
use std::collections::{BTreeSet, HashMap};

impl GpuStore {
    /// Follows one acknowledged commit of `store` on the device: see the
    /// module docs. `deltas` are the commit's deltas (those on pages not
    /// mirrored here are skipped), `receipt` what `commit` returned.
    pub fn follow_commit(
        &mut self,
        store: &Store,
        deltas: &[Delta],
        receipt: &CommitReceipt,
        functions: &HashMap<FunctionId, DeviceFn>,
        verify: bool,
    ) -> Result<DeviceWaveReport> {
        if store.mode() != PropagationMode::Immediate {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "a deferred commit runs no wave: follow the store with GpuMirror",
            ));
        }
        let prop = &receipt.propagation;
        let recomputed: BTreeSet<PageId> = prop.recomputed.iter().copied().collect();
        // The roots: pages the commit's deltas changed, found by comparing
        // this mirror's bytes (the state before the commit) with the store's.
        let mut roots: BTreeSet<PageId> = BTreeSet::new();
        for d in deltas {
            if !roots.contains(&d.page)
                && !recomputed.contains(&d.page)
                && self.page_len(d.page).is_ok()
                && self.read(d.page)? != store.read(d.page)?
            {
                roots.insert(d.page);
            }
        }
        let mut page_fn: IdHashMap<PageId, FunctionId> = IdHashMap::default();
        // The pages here and those the store's wave recomputed (so a
        // recomputed page missing here shows up in the plan, as `NotFound`).
        for p in self
            .page_ids()
            .into_iter()
            .chain(recomputed.iter().copied())
        {
            if let Some(f) = store.recompute_fn(p) {
                page_fn.insert(p, f);
            }
        }
        // Forced: every page the store's wave recomputed, so the device runs
        // what the store ran — including pages the store forced (a function
        // set since the last wave runs once whatever its inputs did).
        let plan = store.with_graph(|g| CommandBuffer::plan(g, &page_fn, &roots, &recomputed));
        // Everything the wave touches must be here, and have a device form,
        // before any byte changes.
        for c in &plan.commands {
            self.page_len(c.page)?;
            for &q in &c.inputs {
                self.page_len(q)?;
            }
            if !functions.contains_key(&c.function) {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} of {} has no device form: follow it with GpuMirror",
                        c.function, c.page
                    ),
                ));
            }
        }
        let mine: Vec<Delta> = deltas
            .iter()
            .filter(|d| self.page_len(d.page).is_ok())
            .cloned()
            .collect();
        if !mine.is_empty() {
            self.apply_batch(&mine)?;
        }
        let report = self.run_wave(&plan, functions, &roots)?;
        let ran: BTreeSet<PageId> = report.recomputed.iter().copied().collect();
        if !ran.is_subset(&recomputed) {
            return Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "the device wave recomputed {} pages, not all among the store's {}",
                    ran.len(),
                    recomputed.len()
                ),
            ));
        }
        for &(p, epoch) in &prop.changed {
            if self.page_len(p).is_ok() {
                self.set_epoch(p, epoch)?;
            }
        }
        if verify {
            let here: Vec<PageId> = recomputed
                .iter()
                .copied()
                .filter(|&p| self.page_len(p).is_ok())
                .collect();
            for p in here {
                if self.read(p)? != store.read(p)? {
                    return Err(Error::new(
                        ErrorCode::Internal,
                        format!("page {p} differs between the device wave and the store"),
                    ));
                }
            }
        }
        Ok(report)
    }
}
