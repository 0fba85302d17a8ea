//! Recovery: rebuilding the state from a checkpoint and the log after it.
//!
//! [`recover`] is the one procedure behind opening a store, replaying to a past
//! LSN or time, and the `mmsb recover` tool:
//!
//! The recovered state is the pages *and* the dependency graph: graph edits are
//! log records like any other, and checkpoints hold the graph. Derived pages
//! come back from their logged derived deltas; no recompute function runs.
//!
//! 1. Take the newest checkpoint that is at or before the target and verifies
//!    (SHA-256 of the file, CRC32C of every page). Checkpoints that fail are
//!    reported in [`RecoveryReport::checkpoints_rejected`] and the next older one
//!    is tried; with none, start from the empty state (the log must then begin
//!    at LSN 1). A checkpoint (or log segment) of a newer format version than
//!    this build reads stops recovery with
//!    [`ErrorCode::Unsupported`]: a newer build
//!    wrote the directory, and nothing is skipped or cut.
//! 2. Scan the log ([`tlog_reader::scan`]) and apply, in LSN order, every
//!    commit after the checkpoint's LSN up to the target. The log must continue
//!    the checkpoint without a gap.
//! 3. Decide on how the log ended: a clean end or a torn tail is normal (the
//!    tail is reported, and cut by the store when it opens for writing); damage
//!    inside the log is an error naming the file and byte offset, unless
//!    [`RecoveryOptions::recover_past_corruption`] accepts losing everything
//!    from the damage on, in which case the loss is reported.
//!
//! Recovery only reads. Repairs (cutting a torn tail, dropping segments after
//! accepted corruption) are the store's, at open, after recovery succeeded.

use crate::checkpoint;
use crate::commit;
use crate::dependency_graph::DependencyGraph;
use crate::error::{Error, ErrorCode, Result};
use crate::page_store::PageStore;
use crate::tlog_reader::{self, LogEnd, LogScan, LogSummary};
use crate::vfs::Vfs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the log directory inside a data directory.
pub const LOG_DIR: &str = "log";
/// Name of the checkpoint directory inside a data directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// How far to recover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every commit in the log.
    Latest,
    /// The state right after the commit with this LSN (0 = the empty state).
    Lsn(u64),
    /// The state after the last commit whose timestamp is at or before this (ns).
    Time(u64),
}

/// Choices the caller makes about damaged data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// Accept corruption inside the log: keep what precedes it, drop the rest
    /// (reported in [`RecoveryReport::corruption_accepted`]). Off by default:
    /// such corruption is an error.
    pub recover_past_corruption: bool,
}

/// A torn tail or accepted corruption: where, and how many bytes are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCut {
    /// The segment.
    pub file: PathBuf,
    /// Byte offset where the good log ends in it.
    pub offset: u64,
    /// Bytes dropped from there to the end of the log.
    pub bytes: u64,
    /// What was wrong.
    pub reason: String,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The checkpoint recovery started from, if any.
    pub checkpoint: Option<checkpoint::CheckpointInfo>,
    /// Checkpoints that failed to verify, with the reason.
    pub checkpoints_rejected: Vec<(PathBuf, Error)>,
    /// Commits replayed from the log.
    pub commits_replayed: u64,
    /// Log bytes replayed.
    pub bytes_replayed: u64,
    /// The LSN of the recovered state.
    pub lsn: u64,
    /// The timestamp of the commit at that LSN (0 for the empty state).
    pub timestamp_ns: u64,
    /// A torn tail found at the end of the log (never acknowledged commits).
    pub torn_tail: Option<LogCut>,
    /// Corruption accepted under [`RecoveryOptions::recover_past_corruption`].
    pub corruption_accepted: Option<LogCut>,
    /// Totals of the log scan.
    pub log: LogSummary,
    /// Wall time recovery took.
    pub elapsed: Duration,
}

/// A recovered state.
#[derive(Debug)]
pub struct Recovered {
    /// The pages.
    pub state: PageStore,
    /// The dependency graph.
    pub graph: DependencyGraph,
    /// What happened.
    pub report: RecoveryReport,
    /// The log as scanned (segments and how it ended).
    pub scan: LogScan,
}

/// Rebuilds the state of the data directory `dir` at `target`. See the module docs.
pub fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    target: Target,
    opts: RecoveryOptions,
) -> Result<Recovered> {
    let t0 = Instant::now();
    let mut report = RecoveryReport::default();
    let ckpt_dir = dir.join(CHECKPOINT_DIR);
    let mut base = None;
    for (lsn, path) in checkpoint::list(vfs, &ckpt_dir)?.into_iter().rev() {
        if let Target::Lsn(t) = target {
            if lsn > t {
                continue;
            }
        }
        match checkpoint::load(vfs, &path) {
            Ok(c) => {
                if let Target::Time(t) = target {
                    if c.info.timestamp_ns > t {
                        continue;
                    }
                }
                base = Some(c);
                break;
            }
            // A newer build wrote this directory: stop rather than fall back
            // to an older checkpoint behind its back.
            Err(e) if e.code == ErrorCode::Unsupported => return Err(e),
            Err(e) => report.checkpoints_rejected.push((path, e)),
        }
    }
    let (mut state, mut graph, mut lsn, mut ts) = match base {
        Some(c) => {
            let (l, t) = (c.info.lsn, c.info.timestamp_ns);
            report.checkpoint = Some(c.info);
            (c.state, c.graph, l, t)
        }
        None => (PageStore::new(), DependencyGraph::new(), 0, 0),
    };
    let base_lsn = lsn;
    let mut done = matches!(target, Target::Lsn(t) if t <= lsn);
    let scan = tlog_reader::scan(vfs, &dir.join(LOG_DIR), |f, records| {
        if f.lsn <= base_lsn || done {
            return Ok(());
        }
        if let Target::Time(t) = target {
            if f.timestamp_ns > t {
                done = true;
                return Ok(());
            }
        }
        if f.lsn != lsn + 1 {
            let e = Error::new(
                if target == Target::Latest {
                    ErrorCode::Corruption
                } else {
                    ErrorCode::NotFound
                },
                format!(
                    "the log resumes at LSN {} but the state is at LSN {lsn}: the commits between are not retained",
                    f.lsn
                ),
            );
            return Err(e);
        }
        commit::apply_records(&mut state, &mut graph, &records).map_err(|e| {
            Error::corruption(format!(
                "commit at LSN {} does not apply: {}",
                f.lsn, e.message
            ))
        })?;
        lsn = f.lsn;
        ts = f.timestamp_ns;
        report.commits_replayed += 1;
        report.bytes_replayed += f.stored_len() as u64;
        if matches!(target, Target::Lsn(t) if t == lsn) {
            done = true;
        }
        Ok(())
    })?;
    match &scan.end {
        LogEnd::Clean => {}
        LogEnd::TornTail {
            file,
            offset,
            bytes,
        } => {
            report.torn_tail = Some(LogCut {
                file: file.clone(),
                offset: *offset,
                bytes: *bytes,
                reason: "partial or damaged frame at the end of the log".into(),
            });
        }
        LogEnd::Corrupt {
            file,
            offset,
            error,
            bytes_after,
        } => {
            if !done && !opts.recover_past_corruption {
                if let Some(e) = scan.end.corruption_error() {
                    return Err(e);
                }
            }
            report.corruption_accepted = Some(LogCut {
                file: file.clone(),
                offset: *offset,
                bytes: *bytes_after,
                reason: error.message.clone(),
            });
        }
    }
    match target {
        Target::Lsn(t) if t != lsn => {
            return Err(Error::not_found(format!(
                "LSN {t} is not retained: the reachable state ends at LSN {lsn}"
            )))
        }
        // The log begins after the state reached: the commits between are
        // gone, and any of them may be stamped at or before `t`.
        Target::Time(t) if lsn + 1 < scan.summary.first_lsn => {
            return Err(Error::not_found(format!(
                "the state at time {t} ns is not retained: no checkpoint at or before it, \
                 and the log begins at LSN {}",
                scan.summary.first_lsn
            )))
        }
        _ => {}
    }
    report.lsn = lsn;
    report.timestamp_ns = ts;
    report.log = scan.summary.clone();
    report.elapsed = t0.elapsed();
    Ok(Recovered {
        state,
        graph,
        report,
        scan,
    })
}
