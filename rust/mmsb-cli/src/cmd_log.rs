//! `mmsb log inspect|verify DIR`: what the transaction log holds, and whether it is whole.
//!
//! `inspect` lists each segment (number, first and last LSN, size) and the
//! totals (commits, records, bytes, compression ratio), then how the log
//! ends. `verify` scans every frame's checksum and LSN. Both exit non-zero on
//! a torn tail or corruption, naming the file and byte offset (`inspect` after
//! printing its listing). Neither writes anything.

use clap::Subcommand;
use mmsb_core::recovery::LOG_DIR;
use mmsb_core::tlog_reader::{self, LogEnd, LogScan};
use mmsb_core::vfs::RealVfs;
use std::path::{Path, PathBuf};

/// `mmsb log ...`
#[derive(Subcommand)]
pub enum LogCmd {
    /// List segments and totals of the log in a data directory.
    Inspect {
        /// The data directory.
        dir: PathBuf,
    },
    /// Check every frame of the log; exit non-zero on any damage.
    Verify {
        /// The data directory.
        dir: PathBuf,
    },
}

/// Scans the log of `dir`, printing progress every 100k commits.
pub fn scan(dir: &Path) -> Result<LogScan, String> {
    crate::data_dir::check(dir)?;
    let log = dir.join(LOG_DIR);
    if !log.is_dir() {
        return Err(format!("{} has no log directory", dir.display()));
    }
    let mut n = 0u64;
    tlog_reader::scan(&RealVfs, &log, |f, _| {
        n += 1;
        if n.is_multiple_of(100_000) {
            eprintln!("... {n} commits scanned (LSN {})", f.lsn);
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}

/// Describes how the log ends; `Err` for anything but a clean end.
pub fn describe_end(end: &LogEnd) -> Result<(), String> {
    match end {
        LogEnd::Clean => Ok(()),
        LogEnd::TornTail {
            file,
            offset,
            bytes,
        } => Err(format!(
            "torn tail: {} from byte {offset} ({bytes} bytes of unacknowledged commits; cut at the next open)",
            file.display()
        )),
        LogEnd::Corrupt {
            error, bytes_after, ..
        } => Err(format!("{error} ({bytes_after} bytes of log from there on)")),
    }
}

/// Runs a `log` subcommand.
pub fn run(cmd: LogCmd) -> Result<(), String> {
    match cmd {
        LogCmd::Inspect { dir } => {
            let s = scan(&dir)?;
            println!("segment               first_lsn   last_lsn      bytes");
            for g in &s.segments {
                println!(
                    "{:020} {:>10} {:>10} {:>10}",
                    g.number,
                    g.first_lsn,
                    g.last_lsn.map_or("-".to_owned(), |l| l.to_string()),
                    g.len
                );
            }
            let m = &s.summary;
            println!(
                "segments={} commits={} records={} lsn={}..{} stored_bytes={} raw_bytes={} compressed_frames={} compression_ratio={:.3}",
                m.segments,
                m.frames,
                m.records,
                m.first_lsn,
                m.last_lsn,
                m.stored_bytes,
                m.raw_bytes,
                m.compressed_frames,
                m.compression_ratio()
            );
            // The listing is printed whole; damage then makes the exit non-zero.
            match describe_end(&s.end) {
                Ok(()) => {
                    println!("end: clean");
                    Ok(())
                }
                Err(e) => {
                    println!("end: {e}");
                    Err(format!("the log does not end cleanly: {e}"))
                }
            }
        }
        LogCmd::Verify { dir } => {
            let s = scan(&dir)?;
            describe_end(&s.end)?;
            println!(
                "ok: {} commits in {} segments, LSN {}..{}, every checksum verified",
                s.summary.frames, s.summary.segments, s.summary.first_lsn, s.summary.last_lsn
            );
            Ok(())
        }
    }
}
