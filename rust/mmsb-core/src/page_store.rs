//! The in-memory page store: create, read, delete pages and apply deltas.
//!
//! [`PageStore`] is the single-threaded heart that later layers wrap: the
//! durable store logs each commit before calling [`PageStore::apply_delta`], the
//! transaction layer puts it behind snapshots, and the C ABI behind a lock.
//!
//! Applying a delta is all or nothing: it is validated against the page
//! (range, mask, payload, expected epoch) before any byte moves; a delta that
//! would change no byte is a no-op that leaves the epoch alone and reports
//! `changed: false`, so it triggers nothing downstream.

use crate::apply;
use crate::delta::Delta;
use crate::dtype::NumericView;
use crate::error::{Error, ErrorCode, Result};
use crate::location::PageLocation;
use crate::page::{Page, PageSnapshot};
use crate::page_id::PageId;
use crate::page_table::PageTable;

/// What applying one delta did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Whether at least one byte changed.
    pub changed: bool,
    /// The page's epoch after the apply.
    pub epoch: u64,
}

/// What a run of [`PageStore::apply_undoable`] overwrote (see there).
#[derive(Debug, Default)]
pub(crate) struct UndoLog {
    entries: Vec<UndoEntry>,
    /// The saved bytes, back to back.
    bytes: Vec<u8>,
    stats: Option<StoreStats>,
}

/// One changed delta's range: the page, where, its old bytes in
/// `UndoLog::bytes`, and the page's epoch before.
#[derive(Debug)]
struct UndoEntry {
    page: PageId,
    offset: usize,
    saved: std::ops::Range<usize>,
    epoch: u64,
}

/// Counters kept by a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Pages alive now.
    pub pages: u64,
    /// Bytes held by live pages.
    pub page_bytes: u64,
    /// Deltas that changed a page.
    pub deltas_applied: u64,
    /// Deltas that would have changed nothing.
    pub deltas_noop: u64,
    /// Deltas rejected (validation or compare-and-set).
    pub deltas_rejected: u64,
    /// Payload bytes written by applied deltas.
    pub bytes_written: u64,
}

/// An in-memory set of pages. See the module docs.
#[derive(Debug, Default)]
pub struct PageStore {
    pages: PageTable<Page>,
    next_id: u64,
    stats: StoreStats,
}

impl PageStore {
    /// An empty store.
    pub fn new() -> PageStore {
        PageStore {
            pages: PageTable::default(),
            next_id: 1,
            stats: StoreStats::default(),
        }
    }

    /// Creates a zeroed page of `size` bytes and returns its new id.
    pub fn create_page(&mut self, size: u64, location: PageLocation) -> Result<PageId> {
        let id = PageId(self.next_id.max(1));
        let page = Page::new(id, size, location)?;
        self.next_id = id.0 + 1;
        self.stats.pages += 1;
        self.stats.page_bytes += size;
        self.pages.insert(id, page);
        Ok(id)
    }

    /// Inserts a page built elsewhere (recovery, replay). Its id must be free.
    pub fn insert_page(&mut self, page: Page) -> Result<()> {
        let id = page.id();
        if self.pages.contains(id) {
            return Err(Error::invalid(format!("{id} already exists")));
        }
        self.next_id = self.next_id.max(id.0 + 1);
        self.stats.pages += 1;
        self.stats.page_bytes += page.size();
        self.pages.insert(id, page);
        Ok(())
    }

    /// The id the next created page will get.
    pub fn next_page_id(&self) -> PageId {
        PageId(self.next_id.max(1))
    }

    /// Deletes a page. Snapshots taken earlier stay readable.
    pub fn delete_page(&mut self, id: PageId) -> Result<()> {
        let p = self
            .pages
            .remove(id)
            .ok_or_else(|| Error::not_found(format!("{id} does not exist")))?;
        self.stats.pages -= 1;
        self.stats.page_bytes -= p.size();
        Ok(())
    }

    /// The page, if it exists.
    pub fn page(&self, id: PageId) -> Result<&Page> {
        self.pages
            .get(id)
            .ok_or_else(|| Error::not_found(format!("{id} does not exist")))
    }

    fn page_mut(&mut self, id: PageId) -> Result<&mut Page> {
        self.pages
            .get_mut(id)
            .ok_or_else(|| Error::not_found(format!("{id} does not exist")))
    }

    /// One more than the largest page id stored densely (see `page_table`).
    pub(crate) fn dense_id_bound(&self) -> u64 {
        self.pages.dense_bound()
    }

    /// Whether the page exists.
    pub fn contains(&self, id: PageId) -> bool {
        self.pages.contains(id)
    }

    /// Ids of all pages, ascending.
    pub fn page_ids(&self) -> Vec<PageId> {
        self.pages.ids()
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    pub fn read_into(&self, id: PageId, offset: u64, out: &mut [u8]) -> Result<()> {
        let p = self.page(id)?;
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&e| e <= p.size())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "read {offset}+{} lies outside {id} ({} bytes)",
                    out.len(),
                    p.size()
                ))
            })?;
        out.copy_from_slice(&p.bytes()[offset as usize..end as usize]);
        Ok(())
    }

    /// A copy of the whole page.
    pub fn read(&self, id: PageId) -> Result<Vec<u8>> {
        Ok(self.page(id)?.bytes().to_vec())
    }

    /// A zero-copy snapshot of the page (pinned while held).
    pub fn snapshot(&self, id: PageId) -> Result<PageSnapshot> {
        Ok(self.page(id)?.snapshot())
    }

    /// Checks that `delta` could apply now: valid for its page, expected epoch
    /// current, and a numeric delta consistent with the page's numeric view.
    pub fn check_delta(&self, delta: &Delta) -> Result<&Page> {
        let p = self.page(delta.page)?;
        delta.validate(p.size())?;
        crate::numeric_delta::check_view(delta, p.view())?;
        if let Some(e) = delta.expected_epoch {
            if e != p.epoch() {
                return Err(Error::new(
                    ErrorCode::EpochMismatch,
                    format!(
                        "delta on {} expected epoch {e}, the page is at {}",
                        delta.page,
                        p.epoch()
                    ),
                ));
            }
        }
        Ok(p)
    }

    /// Validates and applies one delta. On error nothing changed.
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<ApplyOutcome> {
        self.apply_checked(delta, true)
    }

    /// Applies one delta whose compare-and-set epoch was already checked by the
    /// caller (the durable store checks it against the state at the start of a
    /// commit, before logging; replay must not check it again). Every other
    /// rule is still validated; on error nothing changed.
    pub fn apply_delta_unconditional(&mut self, delta: &Delta) -> Result<ApplyOutcome> {
        self.apply_checked(delta, false)
    }

    /// Validates and applies one delta like [`PageStore::apply_delta`],
    /// first saving in `undo` what it overwrites (the bytes of its range and
    /// the page's epoch, and the counters before the first delta), so that
    /// [`PageStore::undo`] can put it all back. On error nothing changed.
    pub(crate) fn apply_undoable(
        &mut self,
        delta: &Delta,
        undo: &mut UndoLog,
    ) -> Result<ApplyOutcome> {
        if undo.stats.is_none() {
            undo.stats = Some(self.stats);
        }
        let p = match self.check_delta(delta) {
            Ok(p) => p,
            Err(e) => {
                self.stats.deltas_rejected += 1;
                return Err(e);
            }
        };
        let r = delta.offset as usize..(delta.offset + delta.len) as usize;
        let old = &p.bytes()[r.clone()];
        if apply::would_change(old, delta) {
            let at = undo.bytes.len();
            undo.bytes.extend_from_slice(old);
            undo.entries.push(UndoEntry {
                page: delta.page,
                offset: r.start,
                saved: at..undo.bytes.len(),
                epoch: p.epoch(),
            });
        }
        self.apply_validated(delta)
    }

    /// Puts back everything `undo` saved, latest first (bytes, epochs, then
    /// the counters), and empties it.
    pub(crate) fn undo(&mut self, undo: &mut UndoLog) -> Result<()> {
        while let Some(e) = undo.entries.pop() {
            let saved = undo.bytes.get(e.saved.clone()).ok_or_else(|| {
                Error::new(ErrorCode::Internal, "undo log entry outside its bytes")
            })?;
            let p = self.page_mut(e.page)?;
            let dst = p
                .bytes_mut()?
                .get_mut(e.offset..e.offset + saved.len())
                .ok_or_else(|| Error::new(ErrorCode::Internal, "undo range outside its page"))?;
            dst.copy_from_slice(saved);
            p.set_epoch(e.epoch);
        }
        undo.bytes.clear();
        if let Some(stats) = undo.stats.take() {
            self.stats = stats;
        }
        Ok(())
    }

    /// Applies a delta that [`PageStore::check_delta`] just accepted on this
    /// state, without validating it again. Whether it changes bytes is still
    /// found here (for the epoch and the counters). A delta outside its page
    /// is still an error, never a panic; nothing changes then.
    fn apply_validated(&mut self, delta: &Delta) -> Result<ApplyOutcome> {
        let written = delta.written_bytes();
        let p = self.page_mut(delta.page)?;
        let r = usize::try_from(delta.offset)
            .ok()
            .zip(usize::try_from(delta.offset.saturating_add(delta.len)).ok())
            .filter(|&(_, end)| end <= p.bytes().len())
            .map(|(start, end)| start..end)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    format!("planned delta on {} lies outside the page", delta.page),
                )
            })?;
        if !apply::would_change(&p.bytes()[r.clone()], delta) {
            let epoch = p.epoch();
            self.stats.deltas_noop += 1;
            return Ok(ApplyOutcome {
                changed: false,
                epoch,
            });
        }
        apply::apply(&mut p.bytes_mut()?[r], delta)?;
        p.bump_epoch();
        let epoch = p.epoch();
        self.stats.deltas_applied += 1;
        self.stats.bytes_written += written;
        Ok(ApplyOutcome {
            changed: true,
            epoch,
        })
    }

    /// Writes `bytes` at `offset` of `id` and bumps its epoch, without the
    /// checks of [`PageStore::apply_delta`]: for the derived deltas of a
    /// planned wave, which the engine built itself from the staged copy of
    /// exactly this state (the range lies inside the page, the bytes differ,
    /// the provenance is well-formed), so validating them again (the intent
    /// JSON included) would only repeat the plan. A range outside the page is
    /// still an error (`Internal`), never a panic; nothing changes then.
    pub(crate) fn write_planned(
        &mut self,
        id: PageId,
        offset: usize,
        bytes: &[u8],
    ) -> Result<ApplyOutcome> {
        let p = self.page_mut(id)?;
        let dst = p
            .bytes_mut()?
            .get_mut(offset..offset.saturating_add(bytes.len()))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    format!("planned write {offset}+{} lies outside {id}", bytes.len()),
                )
            })?;
        dst.copy_from_slice(bytes);
        p.bump_epoch();
        let epoch = p.epoch();
        self.stats.deltas_applied += 1;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(ApplyOutcome {
            changed: true,
            epoch,
        })
    }

    /// Raises the id the next created page gets to at least `id` (checkpoint
    /// restore: ids of deleted pages are never reused).
    pub fn reserve_page_ids_below(&mut self, id: PageId) {
        self.next_id = self.next_id.max(id.0);
    }

    fn apply_checked(&mut self, delta: &Delta, check_epoch: bool) -> Result<ApplyOutcome> {
        let checked = if check_epoch {
            self.check_delta(delta)
        } else {
            self.page(delta.page)
                .and_then(|p| delta.validate(p.size()).map(|()| p))
        };
        let changed = match checked {
            Ok(p) => {
                let r = delta.offset as usize..(delta.offset + delta.len) as usize;
                apply::would_change(&p.bytes()[r], delta)
            }
            Err(e) => {
                self.stats.deltas_rejected += 1;
                return Err(e);
            }
        };
        let written = delta.written_bytes();
        let p = self.page_mut(delta.page)?;
        if !changed {
            let epoch = p.epoch();
            self.stats.deltas_noop += 1;
            return Ok(ApplyOutcome { changed, epoch });
        }
        let r = delta.offset as usize..(delta.offset + delta.len) as usize;
        apply::apply(&mut p.bytes_mut()?[r], delta)?;
        p.bump_epoch();
        let epoch = p.epoch();
        self.stats.deltas_applied += 1;
        self.stats.bytes_written += written;
        Ok(ApplyOutcome { changed, epoch })
    }

    /// Sets or clears a page's numeric view.
    pub fn set_view(&mut self, id: PageId, view: Option<NumericView>) -> Result<()> {
        self.page_mut(id)?.set_view(view)
    }

    /// Sets user metadata on a page.
    pub fn set_metadata(&mut self, id: PageId, key: &str, value: &[u8]) -> Result<()> {
        self.page_mut(id)?.set_metadata(key, value)
    }

    /// Removes user metadata; `NotFound` if the key was absent.
    pub fn remove_metadata(&mut self, id: PageId, key: &str) -> Result<()> {
        if self.page_mut(id)?.remove_metadata(key) {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "{id} has no metadata key {key:?}"
            )))
        }
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_apply_read_delete() {
        let mut s = PageStore::new();
        let id = s.create_page(16, PageLocation::Cpu).unwrap();
        let out = s.apply_delta(&Delta::dense(id, 4, vec![1, 2, 3])).unwrap();
        assert_eq!(
            out,
            ApplyOutcome {
                changed: true,
                epoch: 1
            }
        );
        let mut buf = [0u8; 5];
        s.read_into(id, 3, &mut buf).unwrap();
        assert_eq!(buf, [0, 1, 2, 3, 0]);
        s.delete_page(id).unwrap();
        assert_eq!(s.read(id).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(s.stats().pages, 0);
    }

    #[test]
    fn ids_are_never_reused() {
        let mut s = PageStore::new();
        let a = s.create_page(8, PageLocation::Cpu).unwrap();
        s.delete_page(a).unwrap();
        let b = s.create_page(8, PageLocation::Cpu).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn no_op_delta_keeps_epoch() {
        let mut s = PageStore::new();
        let id = s.create_page(8, PageLocation::Cpu).unwrap();
        let out = s.apply_delta(&Delta::dense(id, 0, vec![0; 8])).unwrap();
        assert_eq!(
            out,
            ApplyOutcome {
                changed: false,
                epoch: 0
            }
        );
        assert_eq!(s.stats().deltas_noop, 1);
    }

    #[test]
    fn compare_and_set_checks_epoch() {
        let mut s = PageStore::new();
        let id = s.create_page(8, PageLocation::Cpu).unwrap();
        s.apply_delta(&Delta::dense(id, 0, vec![1]).with_expected_epoch(0))
            .unwrap();
        let e = s
            .apply_delta(&Delta::dense(id, 0, vec![2]).with_expected_epoch(0))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::EpochMismatch);
        assert!(e.is_retryable());
        assert_eq!(s.read(id).unwrap()[0], 1);
    }

    #[test]
    fn rejected_delta_leaves_page_unchanged() {
        let mut s = PageStore::new();
        let id = s.create_page(8, PageLocation::Cpu).unwrap();
        s.apply_delta(&Delta::dense(id, 0, vec![7; 8])).unwrap();
        let before = s.read(id).unwrap();
        assert!(s.apply_delta(&Delta::dense(id, 6, vec![1, 2, 3])).is_err());
        assert_eq!(s.read(id).unwrap(), before);
        assert_eq!(s.page(id).unwrap().epoch(), 1);
        assert_eq!(s.stats().deltas_rejected, 1);
    }

    #[test]
    fn reads_outside_the_page_are_rejected() {
        let mut s = PageStore::new();
        let id = s.create_page(8, PageLocation::Cpu).unwrap();
        let mut buf = [0u8; 4];
        assert!(s.read_into(id, 5, &mut buf).is_err());
        assert!(s.read_into(id, u64::MAX, &mut buf).is_err());
    }
}
