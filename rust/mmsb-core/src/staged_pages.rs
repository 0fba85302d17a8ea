//! Staged pages: the copies a planned commit works on, in one reused arena.
//!
//! A commit is planned on copies of the pages it touches (see
//! `propagation`): an input delta is applied to a copy of its page, and a
//! recomputed page's new bytes are kept for the commands that read it later
//! in the wave. [`StagedPages`] keeps those copies back to back in one
//! growable byte buffer, each page a `(start, len, epoch)` slot, found through
//! an index by page id: a `Vec` entry per id for ids below the store's dense
//! bound (ids are issued in sequence, see `page_table`), a hash map for the
//! rest. The buffer, the slots and the index are kept across commits and
//! cleared by walking only the slots the commit used, so a batch of 1,000
//! input deltas, or a wave of 10,000 recomputed pages, allocates nothing per
//! page once the arena has grown to the commit's size.
//!
//! A recomputed page is written in place: [`StagedPages::pending`] opens a
//! region at the arena's end (after every staged page) and returns it with a
//! read view of the staged pages, so a function reads its inputs from the
//! arena while it writes its output into the same buffer.
//! [`StagedPages::keep_pending`] makes the region the page's copy; otherwise
//! the next region reuses the same bytes (a page whose output nobody reads,
//! or one that did not change, costs no arena space).
//!
//! Replacing a staged page by a region of another size leaves its old bytes
//! unused in the arena until the commit ends. A page created by the commit
//! (zeroed) gets a heap buffer of its own instead (allocated zeroed, so a
//! large page is not written twice), as does any copy larger than
//! [`HEAP_PAGE`].

use crate::id_hash::IdHashMap;
use crate::page_id::PageId;

/// Copies larger than this (bytes) get a heap buffer of their own, so the
/// arena kept between commits stays small.
pub(crate) const HEAP_PAGE: usize = 1 << 20;

/// The most arena bytes kept between commits.
const KEEP_BYTES: usize = 64 << 20;

/// Where one staged page's bytes are.
#[derive(Clone, Copy, Debug)]
struct Slot {
    page: PageId,
    epoch: u64,
    /// Start in the arena, or index into `heap` if `heap`.
    start: usize,
    len: usize,
    heap: bool,
}

/// The staged copies of a commit's pages. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct StagedPages {
    /// The arena. Only `..end` holds staged pages; its length is the
    /// largest extent ever used (kept so that a region is never zero-filled
    /// twice), and bytes past `end` are scratch.
    bytes: Vec<u8>,
    end: usize,
    /// Length of the region open at `end` (see [`StagedPages::pending`]).
    pending: usize,
    slots: Vec<Slot>,
    heap: Vec<Vec<u8>>,
    /// `index[id]` is the slot of page `id` plus one (0: not staged).
    index: Vec<u32>,
    /// Ids may have an `index` entry below this bound (the store's dense bound).
    dense_bound: usize,
    far: IdHashMap<PageId, usize>,
}

/// A read view of the staged pages (those before an open region).
#[derive(Clone, Copy)]
pub(crate) struct StagedView<'a> {
    bytes: &'a [u8],
    slots: &'a [Slot],
    heap: &'a [Vec<u8>],
    index: &'a [u32],
    far: &'a IdHashMap<PageId, usize>,
}

impl<'a> StagedView<'a> {
    fn slot(&self, page: PageId) -> Option<usize> {
        if let Some(&s) = usize::try_from(page.0).ok().and_then(|i| self.index.get(i)) {
            if s != 0 {
                return Some(s as usize - 1);
            }
        }
        if self.far.is_empty() {
            None
        } else {
            self.far.get(&page).copied()
        }
    }

    /// The staged bytes and epoch of `page`, if it is staged.
    #[inline]
    pub(crate) fn get(&self, page: PageId) -> Option<(&'a [u8], u64)> {
        let s = self.slots.get(self.slot(page)?)?;
        let bytes = if s.heap {
            self.heap.get(s.start)?.as_slice()
        } else {
            self.bytes.get(s.start..s.start + s.len)?
        };
        Some((bytes, s.epoch))
    }
}

impl StagedPages {
    /// Starts a commit on a store whose ids below `dense_bound` are dense.
    /// (The previous commit's pages were cleared by [`StagedPages::clear`].)
    pub(crate) fn begin(&mut self, dense_bound: u64) {
        self.dense_bound = usize::try_from(dense_bound).unwrap_or(usize::MAX);
    }

    /// Forgets every staged page, keeping the memory (up to a cap) for the
    /// next commit. Costs one step per page staged by this commit.
    pub(crate) fn clear(&mut self) {
        for s in &self.slots {
            if let Some(e) = usize::try_from(s.page.0)
                .ok()
                .and_then(|i| self.index.get_mut(i))
            {
                *e = 0;
            }
        }
        self.slots.clear();
        self.heap.clear();
        self.far.clear();
        self.end = 0;
        self.pending = 0;
        if self.bytes.capacity() > KEEP_BYTES {
            self.bytes = Vec::new();
        }
    }

    /// Bytes of memory held (arena and index), to keep the larger of two.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes
            .capacity()
            .saturating_add(self.index.capacity().saturating_mul(4))
    }

    /// A read view of the staged pages.
    pub(crate) fn view(&self) -> StagedView<'_> {
        StagedView {
            bytes: &self.bytes[..self.end],
            slots: &self.slots,
            heap: &self.heap,
            index: &self.index,
            far: &self.far,
        }
    }

    /// The staged bytes and epoch of `page`, if it is staged.
    #[cfg(test)]
    fn get(&self, page: PageId) -> Option<(&[u8], u64)> {
        self.view().get(page)
    }

    /// Whether `page` is staged.
    pub(crate) fn contains(&self, page: PageId) -> bool {
        self.view().slot(page).is_some()
    }

    /// The staged bytes and epoch of `page`, mutably.
    pub(crate) fn get_mut(&mut self, page: PageId) -> Option<(&mut [u8], &mut u64)> {
        let i = self.view().slot(page)?;
        let s = self.slots.get_mut(i)?;
        let bytes = if s.heap {
            self.heap.get_mut(s.start)?.as_mut_slice()
        } else {
            self.bytes.get_mut(s.start..s.start + s.len)?
        };
        Some((bytes, &mut s.epoch))
    }

    /// Points `page` at slot `slot` (or at none).
    fn set_index(&mut self, page: PageId, slot: Option<usize>) {
        let dense = usize::try_from(page.0)
            .ok()
            .filter(|&i| i < self.dense_bound);
        let entry = slot.and_then(|s| u32::try_from(s + 1).ok());
        match dense {
            Some(i) => {
                if i >= self.index.len() {
                    if entry.is_none() {
                        self.far.remove(&page);
                        if let Some(s) = slot {
                            self.far.insert(page, s);
                        }
                        return;
                    }
                    let n = (i + 1)
                        .max(self.index.len().saturating_mul(2))
                        .min(self.dense_bound);
                    self.index.resize(n, 0);
                }
                self.index[i] = entry.unwrap_or(0);
                if !self.far.is_empty() {
                    self.far.remove(&page);
                }
                if let (None, Some(s)) = (entry, slot) {
                    self.far.insert(page, s); // more slots than a u32 counts
                }
            }
            None => {
                match slot {
                    Some(s) => self.far.insert(page, s),
                    None => self.far.remove(&page),
                };
            }
        }
    }

    /// Makes `page`'s copy a new slot.
    fn push_slot(&mut self, page: PageId, slot: Slot) {
        self.slots.push(slot);
        self.set_index(page, Some(self.slots.len() - 1));
    }

    /// Makes `len` arena bytes at `end` usable (zero-filled only the first
    /// time the arena reaches that far).
    fn region(&mut self, len: usize) -> std::ops::Range<usize> {
        let r = self.end..self.end + len;
        if self.bytes.len() < r.end {
            self.bytes.resize(r.end, 0);
        }
        r
    }

    /// Stages a copy of `bytes` as `page` at `epoch` (replacing any copy;
    /// one of the same size is overwritten in place). Returns the copy.
    pub(crate) fn insert(
        &mut self,
        page: PageId,
        bytes: &[u8],
        epoch: u64,
    ) -> (&mut [u8], &mut u64) {
        self.pending = 0;
        let same = self
            .view()
            .slot(page)
            .filter(|&i| self.slots.get(i).is_some_and(|s| s.len == bytes.len()));
        let i = match same {
            Some(i) => {
                if let Some((b, e)) = self.get_mut(page) {
                    b.copy_from_slice(bytes);
                    *e = epoch;
                }
                i
            }
            None if bytes.len() > HEAP_PAGE => {
                self.heap.push(bytes.to_vec());
                let start = self.heap.len() - 1;
                self.push_new(page, start, bytes.len(), epoch, true)
            }
            None => {
                let r = self.region(bytes.len());
                self.bytes[r.clone()].copy_from_slice(bytes);
                self.end = r.end;
                self.push_new(page, r.start, bytes.len(), epoch, false)
            }
        };
        self.slot_mut(i)
    }

    fn push_new(
        &mut self,
        page: PageId,
        start: usize,
        len: usize,
        epoch: u64,
        heap: bool,
    ) -> usize {
        self.push_slot(
            page,
            Slot {
                page,
                epoch,
                start,
                len,
                heap,
            },
        );
        self.slots.len() - 1
    }

    /// Slot `i`'s bytes and epoch, mutably (slot `i` exists).
    fn slot_mut(&mut self, i: usize) -> (&mut [u8], &mut u64) {
        let s = &mut self.slots[i];
        let bytes = if s.heap {
            self.heap[s.start].as_mut_slice()
        } else {
            &mut self.bytes[s.start..s.start + s.len]
        };
        (bytes, &mut s.epoch)
    }

    /// Stages `page` as `len` zero bytes at `epoch` (a page the commit creates).
    pub(crate) fn insert_zeroed(&mut self, page: PageId, len: usize, epoch: u64) {
        self.pending = 0;
        self.heap.push(vec![0; len]);
        let start = self.heap.len() - 1;
        self.push_new(page, start, len, epoch, true);
    }

    /// Forgets `page`'s copy; returns whether it was staged.
    pub(crate) fn remove(&mut self, page: PageId) -> bool {
        if !self.contains(page) {
            return false;
        }
        self.set_index(page, None);
        true
    }

    /// Opens a region of `len` bytes after every staged page (its contents
    /// are unspecified) and returns it with a view of the staged pages.
    /// The region is `page`'s copy only once [`StagedPages::keep_pending`]
    /// says so; any other change to the staging closes it.
    pub(crate) fn pending(&mut self, len: usize) -> (StagedView<'_>, &mut [u8]) {
        let r = self.region(len);
        self.pending = len;
        let (head, tail) = self.bytes.split_at_mut(r.start);
        let view = StagedView {
            bytes: head,
            slots: &self.slots,
            heap: &self.heap,
            index: &self.index,
            far: &self.far,
        };
        (view, &mut tail[..len])
    }

    /// The open region's bytes (empty if none is open).
    pub(crate) fn pending_bytes(&self) -> &[u8] {
        &self.bytes[self.end..self.end + self.pending]
    }

    /// Makes the region opened by the last [`StagedPages::pending`] `page`'s
    /// copy at `epoch` (replacing any copy).
    pub(crate) fn keep_pending(&mut self, page: PageId, epoch: u64) {
        let (start, len) = (self.end, self.pending);
        self.end += len;
        self.pending = 0;
        self.push_new(page, start, len, epoch, false);
    }

    /// Pages staged (a page replaced counts once).
    #[cfg(test)]
    fn staged_count(&self) -> usize {
        let mut n = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if self.view().slot(s.page) == Some(i) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// One step of the model test.
    #[derive(Clone, Debug)]
    enum Op {
        /// Stage a copy of `len` bytes of `fill` at `epoch`.
        Insert(u64, usize, u8, u64),
        /// Stage a zeroed page.
        Zeroed(u64, usize),
        /// Change byte `at % len` of a staged page and bump its epoch.
        Poke(u64, usize, u8),
        Remove(u64),
        /// Open a region of the page's size (or `len` if unstaged), fill
        /// it with `fill`, keep it as the page's copy if `keep`.
        Pending(u64, usize, u8, bool),
        /// End the commit (and start the next with another bound).
        Clear(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Ids near (dense) and far (hashed), some bound-crossing.
        let id = prop_oneof![
            1u64..40,
            1u64..200,
            Just(1u64 << 40),
            1_000_000u64..1_000_003
        ];
        let len = prop_oneof![20 => 0usize..80, 1 => Just(HEAP_PAGE + 1)];
        prop_oneof![
            4 => (id.clone(), len.clone(), any::<u8>(), 0u64..5).prop_map(|(p, n, f, e)| Op::Insert(p, n, f, e)),
            1 => (id.clone(), 0usize..80).prop_map(|(p, n)| Op::Zeroed(p, n)),
            3 => (id.clone(), any::<usize>(), any::<u8>()).prop_map(|(p, a, v)| Op::Poke(p, a, v)),
            1 => id.clone().prop_map(Op::Remove),
            3 => (id, 0usize..80, any::<u8>(), any::<bool>()).prop_map(|(p, n, f, k)| Op::Pending(p, n, f, k)),
            1 => (0u64..300).prop_map(Op::Clear),
        ]
    }

    proptest! {
        /// Any sequence of stagings, in-place changes, removals, regions
        /// kept or dropped and commit ends leaves the staged pages equal to
        /// a `HashMap` of owned copies given the same sequence.
        #[test]
        fn staged_pages_match_a_hashmap_of_copies(
            bound in 0u64..250,
            ops in proptest::collection::vec(op(), 0..120),
        ) {
            let mut s = StagedPages::default();
            s.begin(bound);
            let mut m: HashMap<u64, (Vec<u8>, u64)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(p, n, f, e) => {
                        let (b, ep) = s.insert(PageId(p), &vec![f; n], e);
                        prop_assert_eq!((b.to_vec(), *ep), (vec![f; n], e));
                        m.insert(p, (vec![f; n], e));
                    }
                    Op::Zeroed(p, n) => {
                        s.insert_zeroed(PageId(p), n, 0);
                        m.insert(p, (vec![0; n], 0));
                    }
                    Op::Poke(p, at, v) => {
                        let got = s.get_mut(PageId(p)).map(|(b, e)| {
                            if !b.is_empty() {
                                let i = at % b.len();
                                b[i] = v;
                            }
                            *e += 1;
                        });
                        let want = m.get_mut(&p).map(|(b, e)| {
                            if !b.is_empty() {
                                let i = at % b.len();
                                b[i] = v;
                            }
                            *e += 1;
                        });
                        prop_assert_eq!(got.is_some(), want.is_some());
                    }
                    Op::Remove(p) => {
                        prop_assert_eq!(s.remove(PageId(p)), m.remove(&p).is_some());
                    }
                    Op::Pending(p, n, f, keep) => {
                        let len = m.get(&p).map_or(n, |(b, _)| b.len());
                        let epoch = m.get(&p).map_or(0, |(_, e)| e + 1);
                        let (view, out) = s.pending(len);
                        // The view still shows every staged page as it was.
                        for (q, (b, e)) in &m {
                            let got = view.get(PageId(*q));
                            prop_assert_eq!(got, Some((b.as_slice(), *e)));
                        }
                        out.fill(f);
                        let want = vec![f; len];
                        prop_assert_eq!(s.pending_bytes(), want.as_slice());
                        if keep {
                            s.keep_pending(PageId(p), epoch);
                            m.insert(p, (vec![f; len], epoch));
                        }
                    }
                    Op::Clear(b) => {
                        s.clear();
                        s.begin(b);
                        m.clear();
                    }
                }
                for (q, (b, e)) in &m {
                    prop_assert_eq!(s.get(PageId(*q)), Some((b.as_slice(), *e)));
                }
                for q in [1u64, 7, 39, 150, 1 << 40, 1_000_001] {
                    prop_assert_eq!(s.contains(PageId(q)), m.contains_key(&q));
                }
                prop_assert_eq!(s.staged_count(), m.len());
            }
        }
    }

    /// A batch of small copies fits the arena a previous commit left: no
    /// allocation grows it again.
    #[test]
    fn a_cleared_arena_is_reused_by_the_next_commit() {
        let mut s = StagedPages::default();
        for round in 0..3u8 {
            s.begin(2000);
            for p in 1..1000u64 {
                s.insert(PageId(p), &[round; 64], 1);
            }
            let cap = s.bytes.capacity();
            let ptr = s.bytes.as_ptr();
            assert_eq!(s.get(PageId(500)), Some((&[round; 64][..], 1)));
            s.clear();
            assert_eq!(s.get(PageId(500)), None);
            if round > 0 {
                assert_eq!((s.bytes.capacity(), s.bytes.as_ptr()), (cap, ptr));
            }
        }
    }
}
