//! `mmsb checkpoint create|verify DIR`: write a checkpoint, or check the ones there.
//!
//! `create` opens the store (running recovery), writes a checkpoint of the
//! recovered state and prunes old checkpoints and log segments as the store
//! does. `verify` checks every checkpoint's SHA-256 and page CRC32Cs, printing
//! one line each, and exits non-zero if any fails.

use clap::Subcommand;
use mmsb_core::checkpoint;
use mmsb_core::recovery::CHECKPOINT_DIR;
use mmsb_core::vfs::RealVfs;
use mmsb_core::{Store, StoreOptions};
use std::path::PathBuf;

/// `mmsb checkpoint ...`
#[derive(Subcommand)]
pub enum CheckpointCmd {
    /// Recover the store in DIR and write a checkpoint of its state.
    Create {
        /// The data directory.
        dir: PathBuf,
    },
    /// Verify every checkpoint in DIR.
    Verify {
        /// The data directory.
        dir: PathBuf,
    },
}

/// Runs a `checkpoint` subcommand.
pub fn run(cmd: CheckpointCmd) -> Result<(), String> {
    match cmd {
        CheckpointCmd::Create { dir } => {
            crate::data_dir::check(&dir)?;
            eprintln!("recovering {} ...", dir.display());
            let s = Store::open(&dir, StoreOptions::default()).map_err(|e| e.to_string())?;
            eprintln!("writing checkpoint at LSN {} ...", s.lsn());
            let info = s.checkpoint().map_err(|e| e.to_string())?;
            s.close().map_err(|e| e.to_string())?;
            println!(
                "checkpoint lsn={} pages={} bytes={} path={}",
                info.lsn,
                info.pages,
                info.file_bytes,
                info.path.display()
            );
            Ok(())
        }
        CheckpointCmd::Verify { dir } => {
            crate::data_dir::check(&dir)?;
            let list =
                checkpoint::list(&RealVfs, &dir.join(CHECKPOINT_DIR)).map_err(|e| e.to_string())?;
            if list.is_empty() {
                println!("no checkpoints in {}", dir.display());
                return Ok(());
            }
            let mut bad = 0;
            for (lsn, path) in list {
                match checkpoint::load(&RealVfs, &path) {
                    Ok(c) => println!(
                        "ok   lsn={lsn} pages={} bytes={} {}",
                        c.info.pages,
                        c.info.file_bytes,
                        path.display()
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("FAIL lsn={lsn} {e}");
                    }
                }
            }
            if bad > 0 {
                return Err(format!("{bad} checkpoint(s) failed verification"));
            }
            Ok(())
        }
    }
}
