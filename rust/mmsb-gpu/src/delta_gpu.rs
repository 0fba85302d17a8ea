//! Delta apply on the device: encoding a batch and launching the kernels.
//!
//! A batch of deltas is encoded into one staging buffer — a table of
//! [`APPLY_COMMAND_BYTES`]-byte commands (destination, payload, mask, sparse
//! prefix, length) followed by each delta's payload, mask words and, for a
//! sparse payload, the per-word prefix counts — copied to the device in one
//! transfer and applied by one launch of `mmsb_apply_batch`. Commands of one
//! launch must not touch the same page ([`split_by_page`] makes groups that
//! keep the batch's order), so the kernel may run them in any order.
//!
//! The semantics are those of `mmsb_core::apply` (the CPU reference).

use crate::cuda_device::{Arg, CudaDevice};
use crate::kernel_cache::KernelSource;
use mmsb_core::delta::{Delta, Payload};
use mmsb_core::error::{Error, Result};
use mmsb_core::PageId;
use std::collections::HashSet;

/// Bytes per encoded command (matches `struct ApplyCmd` in `kernels/delta_apply.cu`).
pub const APPLY_COMMAND_BYTES: usize = 48;

/// Staged items start on 16-byte boundaries (the vector path of the kernel).
fn align16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

fn delta_extra_bytes(d: &Delta) -> usize {
    let payload = align16(d.payload.bytes().len());
    let mask = d.mask.as_ref().map_or(0, |m| align16(m.len() * 8));
    let prefix = match (&d.payload, &d.mask) {
        (Payload::Sparse(_), Some(m)) => align16(m.len() * 4),
        _ => 0,
    };
    payload + mask + prefix
}

/// The staging size of a batch of `deltas`.
pub fn batch_bytes(deltas: &[&Delta]) -> usize {
    align16(deltas.len() * APPLY_COMMAND_BYTES)
        + deltas.iter().map(|d| delta_extra_bytes(d)).sum::<usize>()
}

/// Encodes `items` (device address of each delta's first byte, the delta)
/// for a staging buffer that will live at device address `base`.
pub fn encode_batch(items: &[(u64, &Delta)], base: u64) -> Result<Vec<u8>> {
    let deltas: Vec<&Delta> = items.iter().map(|(_, d)| *d).collect();
    let mut out = vec![0u8; batch_bytes(&deltas)];
    let mut at = align16(items.len() * APPLY_COMMAND_BYTES);
    for (i, (dst, d)) in items.iter().enumerate() {
        d.validate_shape()?;
        let bytes = d.payload.bytes();
        let payload_at = at;
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += align16(bytes.len());
        let mut mask_addr = 0u64;
        let mut prefix_addr = 0u64;
        if let Some(m) = &d.mask {
            mask_addr = base + at as u64;
            for (k, w) in m.iter().enumerate() {
                out[at + 8 * k..at + 8 * k + 8].copy_from_slice(&w.to_le_bytes());
            }
            at += align16(m.len() * 8);
            if let Payload::Sparse(_) = d.payload {
                prefix_addr = base + at as u64;
                let mut running = 0u32;
                for (k, w) in m.iter().enumerate() {
                    out[at + 4 * k..at + 4 * k + 4].copy_from_slice(&running.to_le_bytes());
                    running += w.count_ones();
                }
                at += align16(m.len() * 4);
            }
        } else if d.payload.is_sparse() {
            return Err(Error::invalid("a sparse payload needs a mask"));
        }
        let cmd = [
            *dst,
            base + payload_at as u64,
            mask_addr,
            prefix_addr,
            d.len,
            0,
        ];
        for (k, v) in cmd.iter().enumerate() {
            let o = i * APPLY_COMMAND_BYTES + 8 * k;
            out[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Splits a batch into consecutive groups in which no page appears twice,
/// keeping the order of the deltas of each page.
pub fn split_by_page(pages: &[PageId]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut seen = HashSet::new();
    let mut start = 0;
    for (i, p) in pages.iter().enumerate() {
        if !seen.insert(*p) {
            groups.push(start..i);
            seen.clear();
            seen.insert(*p);
            start = i;
        }
    }
    if start < pages.len() {
        groups.push(start..pages.len());
    }
    groups
}

/// Launch shape of a batch: 256 threads a block, enough blocks to cover the
/// 16-byte lanes of the longest range (up to 1024 per command), one grid row per command.
pub fn batch_grid(max_len: u64, n: usize) -> (u32, u32, u32) {
    let lanes = max_len.div_ceil(16);
    let x = lanes.div_ceil(256).clamp(1, 1024) as u32;
    (x, n.clamp(1, 65535) as u32, 1)
}

/// Applies a staged batch already on the device at `staging` (`n` commands).
pub fn launch_batch(
    dev: &CudaDevice,
    stream: &cudarc::driver::CudaStream,
    staging: u64,
    n: usize,
    max_len: u64,
) -> Result<()> {
    let f = dev.function(KernelSource::DeltaApply, "mmsb_apply_batch")?;
    dev.launch_on(
        stream,
        &f,
        batch_grid(max_len, n),
        256,
        &[Arg::U64(staging), Arg::U32(n as u32)],
    )
}

/// Blocks for one delta: enough for its 16-byte lanes, at most 64 per SM
/// (measured on H200: more blocks than that slow sparse masks down, fewer
/// slow full ones).
pub fn one_grid(dev: &CudaDevice, len: u64) -> u32 {
    let cap = (dev.sm_count() as u64 * 64).max(1);
    len.div_ceil(16).div_ceil(256).clamp(1, cap) as u32
}

/// Applies one delta whose payload, mask and prefix are already on the device
/// (`mask` 0: no mask; `prefix` 0: dense payload), on the work stream.
pub fn launch_one(
    dev: &CudaDevice,
    dst: u64,
    payload: u64,
    mask: u64,
    prefix: u64,
    len: u64,
    blocks: u32,
) -> Result<()> {
    launch_one_named(
        dev,
        "mmsb_apply_one",
        [dst, payload, mask, prefix, len],
        blocks,
    )
}

/// [`launch_one`] with a named kernel of `delta_apply.cu` taking
/// `[dst, payload, mask, prefix, len]`.
pub fn launch_one_named(dev: &CudaDevice, kernel: &str, args: [u64; 5], blocks: u32) -> Result<()> {
    let [dst, payload, mask, prefix, len] = args;
    let f = dev.function(KernelSource::DeltaApply, kernel)?;
    dev.launch(
        &f,
        (blocks.max(1), 1, 1),
        256,
        &[
            Arg::U64(dst),
            Arg::U64(payload),
            Arg::U64(mask),
            Arg::U64(prefix),
            Arg::U64(len),
        ],
    )
}

/// Encodes, uploads and applies `items` (which must not repeat a page) on the
/// device's work stream, using a scratch allocation from the pool; waits.
pub fn apply_group(dev: &CudaDevice, items: &[(u64, &Delta)]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let deltas: Vec<&Delta> = items.iter().map(|(_, d)| *d).collect();
    let size = batch_bytes(&deltas);
    let scratch = dev.pool().alloc(size, dev.stream())?;
    let result = (|| {
        let staged = encode_batch(items, scratch)?;
        dev.upload_on(dev.stream(), scratch, &staged)?;
        let max_len = deltas.iter().map(|d| d.len).max().unwrap_or(0);
        launch_batch(dev, dev.stream(), scratch, items.len(), max_len)?;
        dev.sync()
    })();
    dev.pool().free(scratch, size, dev.stream())?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_page_never_puts_a_page_twice_in_a_group() {
        let pages: Vec<PageId> = [1, 2, 1, 3, 3, 2].iter().map(|&p| PageId(p)).collect();
        let groups = split_by_page(&pages);
        assert_eq!(groups, vec![0..2, 2..4, 4..6]);
        for g in groups {
            let set: HashSet<_> = pages[g.clone()].iter().collect();
            assert_eq!(set.len(), g.len());
        }
    }

    #[test]
    fn encoded_sparse_command_carries_prefix_counts() {
        let d = Delta::sparse(PageId(1), 0, 128, vec![0b1011, 0b1], vec![1, 2, 3, 4]);
        let staged = encode_batch(&[(4096, &d)], 1 << 20).unwrap();
        let word = |k: usize| u64::from_le_bytes(staged[8 * k..8 * k + 8].try_into().unwrap());
        assert_eq!(word(0), 4096);
        assert_eq!(word(4), 128);
        let prefix_off = (word(3) - (1 << 20)) as usize;
        let p1 = u32::from_le_bytes(staged[prefix_off + 4..prefix_off + 8].try_into().unwrap());
        assert_eq!(p1, 3);
    }
}
