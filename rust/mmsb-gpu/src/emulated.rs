//! A device emulated in host memory, for testing the GPU paths without a GPU.
//!
//! [`EmulatedDevice`] keeps "device" buffers in host vectors and runs the
//! CPU reference kernels on them. It has the same seam as a CUDA device (see
//! [`crate::backend::Backend`]): allocation, copies, grouped delta apply,
//! semiring operations. The store's placement, migration and fallback logic
//! is written once against that seam, so on a machine without a GPU the
//! tests drive exactly the code a GPU run takes, including a forced kernel
//! failure halfway through a batch.

use crate::backend::DevBuf;
use crate::device_wave::WaveCommand;
use mmsb_core::delta::Delta;
use mmsb_core::error::{Error, Result};
use std::collections::{HashMap, HashSet};

/// Host-memory emulation of a device.
#[derive(Debug, Default)]
pub struct EmulatedDevice {
    bufs: HashMap<u64, Vec<u8>>,
    next: u64,
    /// The batch shape of the last "captured graph" (graph replay emulation).
    pub(crate) graph_shape: Option<(usize, usize, u64)>,
    /// The wave levels "captured" (graph replay emulation of device waves).
    pub(crate) wave_keys: HashSet<Vec<u8>>,
}

impl EmulatedDevice {
    /// An empty emulated device.
    pub fn new() -> EmulatedDevice {
        EmulatedDevice {
            bufs: HashMap::new(),
            next: 1 << 20,
            graph_shape: None,
            wave_keys: HashSet::new(),
        }
    }

    /// Allocates a zeroed buffer.
    pub fn alloc(&mut self, len: usize, unified: bool) -> DevBuf {
        let addr = self.next;
        self.next += (len as u64).div_ceil(256).max(1) * 256;
        self.bufs.insert(addr, vec![0; len]);
        DevBuf { addr, len, unified }
    }

    /// Frees a buffer.
    pub fn free(&mut self, buf: &DevBuf) {
        self.bufs.remove(&buf.addr);
    }

    fn get(&mut self, buf: &DevBuf) -> Result<&mut Vec<u8>> {
        self.bufs
            .get_mut(&buf.addr)
            .ok_or_else(|| Error::invalid(format!("no emulated buffer at {:#x}", buf.addr)))
    }

    /// Copies `bytes` into the buffer at `offset`.
    pub fn upload(&mut self, buf: &DevBuf, offset: usize, bytes: &[u8]) -> Result<()> {
        let b = self.get(buf)?;
        let end = offset
            .checked_add(bytes.len())
            .filter(|&e| e <= b.len())
            .ok_or_else(|| Error::invalid("upload outside the buffer"))?;
        b[offset..end].copy_from_slice(bytes);
        Ok(())
    }

    /// The bytes `lo..hi` of a buffer, to change in place.
    pub(crate) fn range_mut(&mut self, buf: &DevBuf, lo: usize, hi: usize) -> Result<&mut [u8]> {
        self.get(buf)?
            .get_mut(lo..hi)
            .ok_or_else(|| Error::invalid("range outside the buffer"))
    }

    /// Copies the buffer into `out` (which has the buffer's length).
    pub fn download(&mut self, buf: &DevBuf, out: &mut [u8]) -> Result<()> {
        let b = self.get(buf)?;
        if out.len() != b.len() {
            return Err(Error::invalid("download length differs from the buffer"));
        }
        out.copy_from_slice(b);
        Ok(())
    }

    /// Applies each delta to its buffer (range at the delta's offset).
    pub fn apply_group(&mut self, items: &[(DevBuf, &Delta)]) -> Result<()> {
        for (buf, d) in items {
            let b = self.get(buf)?;
            let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
            mmsb_core::apply::apply(&mut b[lo..hi], d)?;
        }
        Ok(())
    }

    /// One level of a device wave, on the CPU: `dst = f(src)` per command.
    pub fn wave_level(&mut self, cmds: &[WaveCommand]) -> Result<Vec<bool>> {
        let mut changed = Vec::with_capacity(cmds.len());
        for c in cmds {
            let src = self
                .bufs
                .get(&c.src.addr)
                .ok_or_else(|| Error::invalid("unknown emulated buffer"))?[..c.len]
                .to_vec();
            let dst = self
                .bufs
                .get_mut(&c.dst.addr)
                .ok_or_else(|| Error::invalid("unknown emulated buffer"))?;
            changed.push(c.f.run_cpu(&src, &mut dst[..c.len]));
        }
        Ok(changed)
    }
}
