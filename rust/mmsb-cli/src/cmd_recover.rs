//! `mmsb recover DIR`: open a data directory, run recovery, report what it found.
//!
//! This is exactly what opening the store does: newest verifying checkpoint
//! plus the log after it, a torn tail cut. Corruption inside the log is an
//! error unless `--accept-loss` is given, in which case the log is cut at the
//! damage and the loss is reported.

use clap::Args;
use mmsb_core::{RecoveryOptions, Store, StoreOptions};
use std::path::PathBuf;

/// `mmsb recover` arguments.
#[derive(Args)]
pub struct RecoverArgs {
    /// The data directory.
    pub dir: PathBuf,
    /// Accept corruption inside the log: keep the log before it, drop the rest.
    #[arg(long)]
    pub accept_loss: bool,
}

/// Runs `mmsb recover`.
pub fn run(a: RecoverArgs) -> Result<(), String> {
    crate::data_dir::check(&a.dir)?;
    eprintln!("recovering {} ...", a.dir.display());
    let opts = StoreOptions {
        recovery: RecoveryOptions {
            recover_past_corruption: a.accept_loss,
        },
        ..StoreOptions::default()
    };
    let s = Store::open(&a.dir, opts).map_err(|e| e.to_string())?;
    let r = s.recovery_report().clone();
    let pages = s.read_with(|st| st.page_ids().len());
    s.close().map_err(|e| e.to_string())?;
    match &r.checkpoint {
        Some(c) => println!("checkpoint: lsn={} {}", c.lsn, c.path.display()),
        None => println!("checkpoint: none (replayed from the start of the log)"),
    }
    for (p, e) in &r.checkpoints_rejected {
        println!("checkpoint rejected: {} ({e})", p.display());
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    println!(
        "replayed: {} commits, {} bytes in {:.3}s ({:.1} MB/s)",
        r.commits_replayed,
        r.bytes_replayed,
        secs,
        r.bytes_replayed as f64 / secs / 1e6
    );
    if let Some(t) = &r.torn_tail {
        println!(
            "torn tail cut: {} at byte {} ({} bytes)",
            t.file.display(),
            t.offset,
            t.bytes
        );
    }
    if let Some(c) = &r.corruption_accepted {
        println!(
            "CORRUPTION ACCEPTED: {} at byte {}: {} bytes of log dropped ({})",
            c.file.display(),
            c.offset,
            c.bytes,
            c.reason
        );
    }
    println!("recovered: lsn={} pages={pages}", r.lsn);
    Ok(())
}
