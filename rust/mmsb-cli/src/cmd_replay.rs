//! `mmsb replay DIR --to-lsn N | --to-time T`: rebuild a past state, read-only.
//!
//! Prints the LSN and time reached and one line per page (id, size, epoch,
//! CRC32C of the bytes), so two replays can be compared. Nothing is written.

use clap::Args;
use mmsb_core::replay;
use mmsb_core::tlog_frame::crc32c;
use mmsb_core::vfs::RealVfs;
use mmsb_core::Target;
use std::path::PathBuf;

/// `mmsb replay` arguments.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_lsn", "to_time"])))]
pub struct ReplayArgs {
    /// The data directory.
    pub dir: PathBuf,
    /// Replay up to and including the commit with this LSN.
    #[arg(long)]
    pub to_lsn: Option<u64>,
    /// Replay every commit stamped at or before this time (ns since the Unix epoch).
    #[arg(long)]
    pub to_time: Option<u64>,
}

/// Runs `mmsb replay`.
pub fn run(a: ReplayArgs) -> Result<(), String> {
    crate::data_dir::check(&a.dir)?;
    let target = match (a.to_lsn, a.to_time) {
        (Some(l), _) => Target::Lsn(l),
        (None, Some(t)) => Target::Time(t),
        (None, None) => return Err("give --to-lsn or --to-time".into()),
    };
    eprintln!("replaying {} to {target:?} ...", a.dir.display());
    let s = replay::state_at(&RealVfs, &a.dir, target).map_err(|e| e.to_string())?;
    println!("lsn={} timestamp_ns={}", s.lsn(), s.timestamp_ns());
    for id in s.page_ids() {
        let p = s.page(id).map_err(|e| e.to_string())?;
        println!(
            "{id} size={} epoch={} crc32c={:08x}",
            p.size(),
            p.epoch(),
            crc32c(p.bytes())
        );
    }
    Ok(())
}
