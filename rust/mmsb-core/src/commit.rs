//! Commits: what a caller asks for, and the check that runs before anything is logged.
//!
//! A caller hands the durable store a list of [`Op`]s. The store turns them
//! into log [`Record`]s (assigning ids to created pages) and validates the
//! whole list against the current state with [`prepare`] *before* the commit
//! is logged or any page is touched: if any operation is bad — a delta outside
//! its page, a compare-and-set on a stale epoch, a write to a page deleted
//! earlier in the same commit — the whole commit is rejected and leaves no trace.
//!
//! Validation simulates the commit's effect on page existence and size (a
//! commit may create a page and write it, or write a page and delete it), so a
//! prepared commit always applies in full, live and at replay.
//! Compare-and-set deltas compare against the page's epoch at the *start* of
//! the commit: the commit is one atomic step, and that is the state the caller
//! could have read.
//!
//! Graph edits ([`Op::AddEdge`], [`Op::RemoveEdge`]) are checked here for the
//! existence of their pages; whether an edge closes a cycle, already exists or
//! is missing is decided by the propagation planner, which applies the
//! commit's edits, in order, to a copy of the graph before anything is logged
//! (see [`propagation`](crate::propagation)).

use crate::delta::Delta;
use crate::dependency_graph::{DependencyGraph, EdgeKind, EdgeWeight};
use crate::dtype::NumericView;
use crate::error::{Error, ErrorCode, Result};
use crate::location::PageLocation;
use crate::page::{MAX_METADATA_KEY, MAX_PAGE_SIZE};
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::tlog_record::Record;
use std::collections::HashMap;

/// One operation of a commit.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Create a zeroed page; the store assigns its id (reported in the receipt).
    CreatePage {
        /// Size in bytes.
        size: u64,
        /// Where the bytes live.
        location: PageLocation,
    },
    /// Delete a page.
    DeletePage(PageId),
    /// Set user metadata.
    SetMetadata {
        /// The page.
        page: PageId,
        /// The key (1 to 256 bytes).
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove user metadata (a no-op if absent).
    RemoveMetadata {
        /// The page.
        page: PageId,
        /// The key.
        key: String,
    },
    /// Set or clear the numeric view.
    SetView {
        /// The page.
        page: PageId,
        /// The view, or `None` to clear it.
        view: Option<NumericView>,
    },
    /// Apply a delta.
    Delta(Delta),
    /// Add the dependency edge `parent -> child` (both pages must exist).
    AddEdge {
        /// The page depended on.
        parent: PageId,
        /// The page that depends on it.
        child: PageId,
        /// What a change of the parent does to the child.
        kind: EdgeKind,
        /// Optional weight (for the semiring layer).
        weight: Option<EdgeWeight>,
    },
    /// Remove the dependency edge `parent -> child` of this kind.
    RemoveEdge {
        /// The page depended on.
        parent: PageId,
        /// The page that depended on it.
        child: PageId,
        /// The edge's kind.
        kind: EdgeKind,
    },
}

/// Validates `ops` against `state` and turns them into log records.
///
/// Returns the records and the ids of created pages, in op order. On error
/// nothing is returned and nothing anywhere changed.
pub fn prepare(state: &PageStore, ops: Vec<Op>) -> Result<(Vec<Record>, Vec<PageId>)> {
    if ops.is_empty() {
        return Err(Error::invalid("a commit needs at least one operation"));
    }
    // Pages whose existence or size this commit changed: Some(size) or None (deleted).
    let mut shadow: HashMap<PageId, Option<u64>> = HashMap::new();
    let mut next = state.next_page_id().0;
    let mut created = Vec::new();
    let mut records = Vec::with_capacity(ops.len());
    let size_of = |shadow: &HashMap<PageId, Option<u64>>, id: PageId| -> Result<u64> {
        match shadow.get(&id) {
            Some(Some(s)) => Ok(*s),
            Some(None) => Err(Error::not_found(format!(
                "{id} was deleted earlier in this commit"
            ))),
            None => Ok(state.page(id)?.size()),
        }
    };
    for (i, op) in ops.into_iter().enumerate() {
        let ctx = |e: Error| {
            Error::new(
                e.code,
                format!("operation {i} of the commit: {}", e.message),
            )
        };
        let rec = match op {
            Op::CreatePage { size, location } => {
                if size == 0 || size > MAX_PAGE_SIZE {
                    return Err(ctx(Error::invalid(format!(
                        "page size {size} is outside 1..={MAX_PAGE_SIZE}"
                    ))));
                }
                if location != PageLocation::Cpu {
                    return Err(ctx(Error::new(
                        ErrorCode::Unsupported,
                        format!("{} pages are not supported by this build", location.name()),
                    )));
                }
                let id = PageId(next);
                next += 1;
                shadow.insert(id, Some(size));
                created.push(id);
                Record::CreatePage { id, size, location }
            }
            Op::DeletePage(id) => {
                size_of(&shadow, id).map_err(ctx)?;
                shadow.insert(id, None);
                Record::DeletePage { id }
            }
            Op::SetMetadata { page, key, value } => {
                size_of(&shadow, page).map_err(ctx)?;
                check_key(&key).map_err(ctx)?;
                Record::SetMetadata {
                    id: page,
                    key,
                    value,
                }
            }
            Op::RemoveMetadata { page, key } => {
                size_of(&shadow, page).map_err(ctx)?;
                check_key(&key).map_err(ctx)?;
                Record::RemoveMetadata { id: page, key }
            }
            Op::SetView { page, view } => {
                let size = size_of(&shadow, page).map_err(ctx)?;
                if let Some(v) = view {
                    v.validate(size).map_err(ctx)?;
                }
                Record::SetView { id: page, view }
            }
            Op::Delta(d) => {
                let size = size_of(&shadow, d.page).map_err(ctx)?;
                d.validate(size).map_err(ctx)?;
                if let Some(e) = d.expected_epoch {
                    let current = if shadow.contains_key(&d.page) && !state.contains(d.page) {
                        0
                    } else {
                        state.page(d.page).map_err(ctx)?.epoch()
                    };
                    if e != current {
                        return Err(ctx(Error::new(
                            ErrorCode::EpochMismatch,
                            format!(
                                "delta on {} expected epoch {e}, the page is at {current}",
                                d.page
                            ),
                        )));
                    }
                }
                Record::Delta(d)
            }
            Op::AddEdge {
                parent,
                child,
                kind,
                weight,
            } => {
                size_of(&shadow, parent).map_err(ctx)?;
                size_of(&shadow, child).map_err(ctx)?;
                Record::AddEdge {
                    parent,
                    child,
                    kind,
                    weight,
                }
            }
            Op::RemoveEdge {
                parent,
                child,
                kind,
            } => Record::RemoveEdge {
                parent,
                child,
                kind,
            },
        };
        records.push(rec);
    }
    Ok((records, created))
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_METADATA_KEY {
        return Err(Error::invalid(format!(
            "metadata key must be 1..={MAX_METADATA_KEY} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

/// Applies prepared records to `state` and `graph`, in order.
pub fn apply_records(
    state: &mut PageStore,
    graph: &mut DependencyGraph,
    records: &[Record],
) -> Result<()> {
    for r in records {
        r.apply(state, graph)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_write_in_one_commit_is_valid() {
        let s = PageStore::new();
        let (recs, created) = prepare(
            &s,
            vec![
                Op::CreatePage {
                    size: 8,
                    location: PageLocation::Cpu,
                },
                Op::Delta(Delta::dense(PageId(1), 0, vec![1; 8]).with_expected_epoch(0)),
            ],
        )
        .unwrap();
        assert_eq!(created, vec![PageId(1)]);
        let mut s2 = PageStore::new();
        apply_records(&mut s2, &mut DependencyGraph::new(), &recs).unwrap();
        assert_eq!(s2.read(PageId(1)).unwrap(), vec![1; 8]);
    }

    #[test]
    fn write_after_delete_rejects_the_commit() {
        let mut s = PageStore::new();
        let id = s.create_page(8, PageLocation::Cpu).unwrap();
        let e = prepare(
            &s,
            vec![Op::DeletePage(id), Op::Delta(Delta::dense(id, 0, vec![1]))],
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
    }

    #[test]
    fn one_bad_delta_rejects_everything() {
        let mut s = PageStore::new();
        let id = s.create_page(8, PageLocation::Cpu).unwrap();
        let e = prepare(
            &s,
            vec![
                Op::Delta(Delta::dense(id, 0, vec![1])),
                Op::Delta(Delta::dense(id, 7, vec![1, 2])),
            ],
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("operation 1"), "{e}");
    }
}
