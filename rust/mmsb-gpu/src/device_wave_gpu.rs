//! Launches of `mmsb_wave_level` (`kernels/wave.cu`): one level of a device wave.
//!
//! The level's command table and a changed flag per command share one pool
//! allocation: the table is uploaded, the flags zeroed, one launch (grid rows
//! = commands, in chunks of 65535) computes every command, and the flags come
//! back for the cutoff. See [`crate::device_wave`].

use crate::cuda_device::{Arg, CudaDevice};
use crate::device_wave::{encode_level, WaveCommand, WAVE_COMMAND_BYTES};
use crate::kernel_cache::KernelSource;
use mmsb_core::error::Result;

/// Most grid rows (commands) in one launch.
const MAX_ROWS: usize = 65535;

/// Blocks per command row: enough to cover the longest command, at most 64.
pub fn level_grid_x(max_len: usize) -> u32 {
    (max_len.div_ceil(256 * 4)).clamp(1, 64) as u32
}

/// Runs one level on the device; returns per command whether its page changed.
pub fn launch_level(dev: &CudaDevice, cmds: &[WaveCommand]) -> Result<Vec<bool>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let f = dev.function(KernelSource::Wave, "mmsb_wave_level")?;
    let table = encode_level(cmds);
    let flags_at = table.len().div_ceil(256) * 256;
    let size = flags_at + cmds.len() * 4;
    let scratch = dev.pool().alloc(size, dev.stream())?;
    let result = (|| {
        dev.upload_on(dev.stream(), scratch, &table)?;
        dev.memset(scratch + flags_at as u64, 0, cmds.len() * 4)?;
        for start in (0..cmds.len()).step_by(MAX_ROWS) {
            let n = (cmds.len() - start).min(MAX_ROWS);
            let max_len = cmds[start..start + n]
                .iter()
                .map(|c| c.len)
                .max()
                .unwrap_or(0);
            dev.launch(
                &f,
                (level_grid_x(max_len), n as u32, 1),
                256,
                &[
                    Arg::U64(scratch + (start * WAVE_COMMAND_BYTES) as u64),
                    Arg::U32(n as u32),
                    Arg::U64(scratch + (flags_at + start * 4) as u64),
                ],
            )?;
        }
        let mut flags = vec![0u8; cmds.len() * 4];
        dev.download(scratch + flags_at as u64, &mut flags)?;
        Ok(flags
            .chunks_exact(4)
            .map(|w| w.iter().any(|&b| b != 0))
            .collect())
    })();
    dev.pool().free(scratch, size, dev.stream())?;
    result
}
