//! Replay and time travel: past states, read-only, and the history of a page.
//!
//! Because every change is a log record and the log is ordered by LSN, the
//! state after any retained commit can be rebuilt exactly: start from the
//! newest checkpoint at or before it and apply the log up to it. [`state_at`]
//! does that for an LSN or a wall-clock time (the state after the last commit
//! stamped at or before it; order is still by LSN, timestamps only select the
//! point). The result, a [`ReadOnlyState`] (pages and dependency graph), can be read like a store but not
//! written: [`ReadOnlyState::commit`] fails with
//! [`ErrorCode::ReadOnly`]. A past state that is no
//! longer retained (its checkpoint and log segments were deleted) is
//! [`ErrorCode::NotFound`].
//!
//! [`page_history`] lists the deltas one page received over an LSN range,
//! straight from the log, with each commit's LSN and timestamp — what audit and
//! lineage queries need.

use crate::commit::Op;
use crate::delta::Delta;
use crate::dependency_graph::DependencyGraph;
use crate::error::{Error, ErrorCode, Result};
use crate::page::Page;
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::recovery::{self, RecoveryOptions, Target, LOG_DIR};
use crate::tlog_reader::{self, LogEnd};
use crate::tlog_record::Record;
use crate::vfs::Vfs;
use std::path::Path;

/// A past state, rebuilt from the log: readable, never writable.
#[derive(Debug)]
pub struct ReadOnlyState {
    state: PageStore,
    graph: DependencyGraph,
    lsn: u64,
    timestamp_ns: u64,
}

impl ReadOnlyState {
    /// The LSN of the last commit the state includes (0 = empty).
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// That commit's timestamp, ns (0 for the empty state).
    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    /// A copy of a page's bytes.
    pub fn read(&self, id: PageId) -> Result<Vec<u8>> {
        self.state.read(id)
    }

    /// A page (bytes, epoch, metadata, view).
    pub fn page(&self, id: PageId) -> Result<&Page> {
        self.state.page(id)
    }

    /// Ids of the pages alive at that point, ascending.
    pub fn page_ids(&self) -> Vec<PageId> {
        self.state.page_ids()
    }

    /// The whole state, read-only.
    pub fn pages(&self) -> &PageStore {
        &self.state
    }

    /// The dependency graph as it stood after that commit.
    pub fn graph(&self) -> &DependencyGraph {
        &self.graph
    }

    /// Always fails with [`ErrorCode::ReadOnly`]: the past cannot be changed.
    pub fn commit(&self, _ops: Vec<Op>) -> Result<u64> {
        Err(Error::new(
            ErrorCode::ReadOnly,
            format!(
                "the state replayed to LSN {} is read-only; commit to the live store",
                self.lsn
            ),
        ))
    }
}

/// Rebuilds the state of data directory `dir` at `target`, read-only.
pub fn state_at(vfs: &dyn Vfs, dir: &Path, target: Target) -> Result<ReadOnlyState> {
    let r = recovery::recover(vfs, dir, target, RecoveryOptions::default())?;
    Ok(ReadOnlyState {
        state: r.state,
        graph: r.graph,
        lsn: r.report.lsn,
        timestamp_ns: r.report.timestamp_ns,
    })
}

/// One delta in a page's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The commit's LSN.
    pub lsn: u64,
    /// The commit's timestamp, ns.
    pub timestamp_ns: u64,
    /// The delta.
    pub delta: Delta,
}

/// The deltas `page` received in commits `from_lsn..=to_lsn`, in LSN order.
///
/// Fails with `NotFound` if part of the range is no longer in the log, and
/// with `Corruption`/`ChecksumMismatch` if damage hides part of it.
pub fn page_history(
    vfs: &dyn Vfs,
    dir: &Path,
    page: PageId,
    from_lsn: u64,
    to_lsn: u64,
) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::new();
    let scan = tlog_reader::scan(vfs, &dir.join(LOG_DIR), |f, records| {
        if f.lsn < from_lsn || f.lsn > to_lsn {
            return Ok(());
        }
        for r in records {
            if let Record::Delta(d) = r {
                if d.page == page {
                    out.push(HistoryEntry {
                        lsn: f.lsn,
                        timestamp_ns: f.timestamp_ns,
                        delta: d,
                    });
                }
            }
        }
        Ok(())
    })?;
    let s = &scan.summary;
    if s.frames > 0 && from_lsn.max(1) < s.first_lsn {
        return Err(Error::not_found(format!(
            "history before LSN {} is no longer in the log",
            s.first_lsn
        )));
    }
    if s.last_lsn < to_lsn {
        if let (LogEnd::Corrupt { .. }, Some(e)) = (&scan.end, scan.end.corruption_error()) {
            return Err(e);
        }
    }
    Ok(out)
}
