//! The page store's table: pages indexed directly by id.
//!
//! Page ids are handed out in sequence and never reused, so the ids alive in
//! a store are (nearly) dense: a `Vec` slot per id finds a page with one
//! memory access, where a hash map costs a probe of its control bytes and
//! then the slot (two cache misses on a large store). A wave reads every
//! input of every command it runs through this lookup, so it is the
//! innermost step of propagation. Ids far beyond the dense range (a restored
//! store whose ids are sparse, a hand-picked large id) go to a hash map
//! instead, so memory stays proportional to the pages, not to the largest id;
//! when the dense range grows over such an id, its page moves into its slot.

use crate::id_hash::IdHashMap;
use crate::page_id::PageId;

/// Ids below `DENSE_SLACK + 2 * live pages` get a slot.
const DENSE_SLACK: usize = 4096;

/// A map from page id to `T`, dense for small ids. See the module docs.
#[derive(Debug)]
pub(crate) struct PageTable<T> {
    slots: Vec<Option<T>>,
    far: IdHashMap<PageId, T>,
    len: usize,
}

impl<T> Default for PageTable<T> {
    fn default() -> Self {
        PageTable {
            slots: Vec::new(),
            far: IdHashMap::default(),
            len: 0,
        }
    }
}

impl<T> PageTable<T> {
    fn index(id: PageId) -> Option<usize> {
        usize::try_from(id.0).ok()
    }

    /// The value for `id`.
    #[inline]
    pub(crate) fn get(&self, id: PageId) -> Option<&T> {
        match Self::index(id) {
            Some(i) if i < self.slots.len() => self.slots[i].as_ref(),
            _ => self.far.get(&id),
        }
    }

    /// The value for `id`, mutably.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: PageId) -> Option<&mut T> {
        match Self::index(id) {
            Some(i) if i < self.slots.len() => self.slots[i].as_mut(),
            _ => self.far.get_mut(&id),
        }
    }

    /// Whether `id` has a value.
    pub(crate) fn contains(&self, id: PageId) -> bool {
        self.get(id).is_some()
    }

    /// Sets the value for `id`; returns the one it replaces.
    pub(crate) fn insert(&mut self, id: PageId, value: T) -> Option<T> {
        let dense_limit = DENSE_SLACK.saturating_add(self.len.saturating_mul(2));
        let old = match Self::index(id) {
            Some(i) if i < self.slots.len() => self.slots[i].replace(value),
            Some(i) if i < dense_limit => {
                self.grow_to(i + 1);
                self.slots[i].replace(value)
            }
            _ => self.far.insert(id, value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Grows the dense range to `n` slots (doubling), moving far values into it.
    fn grow_to(&mut self, n: usize) {
        let n = n.max(self.slots.len().saturating_mul(2)).max(16);
        self.slots.resize_with(n, || None);
        if !self.far.is_empty() {
            let moved: Vec<PageId> = self
                .far
                .keys()
                .copied()
                .filter(|id| Self::index(*id).is_some_and(|i| i < n))
                .collect();
            for id in moved {
                if let (Some(v), Some(i)) = (self.far.remove(&id), Self::index(id)) {
                    self.slots[i] = Some(v);
                }
            }
        }
    }

    /// Removes and returns the value for `id`.
    pub(crate) fn remove(&mut self, id: PageId) -> Option<T> {
        let old = match Self::index(id) {
            Some(i) if i < self.slots.len() => self.slots[i].take(),
            _ => self.far.remove(&id),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// One more than the largest id that has a slot (ids below it are
    /// looked up, and fit a [`PageBits`], without hashing).
    pub(crate) fn dense_bound(&self) -> u64 {
        self.slots.len() as u64
    }

    /// The ids with a value, ascending.
    pub(crate) fn ids(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| PageId(i as u64))
            .collect();
        let dense = ids.len();
        ids.extend(self.far.keys().copied());
        ids[dense..].sort_unstable();
        ids
    }
}

/// A set of page ids as a bit per id below a bound (one word access per
/// test), with a hash set for ids at or above it. A wave tests every input of
/// every command it plans against the set of pages changed so far.
#[derive(Debug, Default)]
pub(crate) struct PageBits {
    bits: Vec<u64>,
    far: crate::id_hash::IdHashSet<PageId>,
}

impl PageBits {
    /// An empty set with bits for the ids below `bound`.
    pub(crate) fn with_bound(bound: u64) -> PageBits {
        let words = usize::try_from(bound.div_ceil(64)).unwrap_or(0);
        PageBits {
            bits: vec![0; words],
            far: Default::default(),
        }
    }

    fn at(id: PageId) -> (usize, u64) {
        (
            usize::try_from(id.0 / 64).unwrap_or(usize::MAX),
            1u64 << (id.0 % 64),
        )
    }

    /// Adds `id`; returns whether it was new.
    #[inline]
    pub(crate) fn insert(&mut self, id: PageId) -> bool {
        let (w, b) = Self::at(id);
        match self.bits.get_mut(w) {
            Some(word) => {
                let new = *word & b == 0;
                *word |= b;
                new
            }
            None => self.far.insert(id),
        }
    }

    /// Gives the set bits for the ids below `bound` (at least), keeping its
    /// members (far ids that now have a bit move to it).
    pub(crate) fn grow_to(&mut self, bound: u64) {
        let words = usize::try_from(bound.div_ceil(64)).unwrap_or(0);
        if words > self.bits.len() {
            self.bits.resize(words, 0);
            if !self.far.is_empty() {
                let far = std::mem::take(&mut self.far);
                for id in far {
                    self.insert(id);
                }
            }
        }
    }

    /// Removes `id`.
    #[inline]
    pub(crate) fn remove(&mut self, id: PageId) {
        let (w, b) = Self::at(id);
        match self.bits.get_mut(w) {
            Some(word) if *word & b != 0 => *word &= !b,
            _ => {
                if !self.far.is_empty() {
                    self.far.remove(&id);
                }
            }
        }
    }

    /// Whether `id` is in the set.
    #[inline]
    pub(crate) fn contains(&self, id: PageId) -> bool {
        let (w, b) = Self::at(id);
        match self.bits.get(w) {
            Some(word) => word & b != 0,
            None => self.far.contains(&id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Any sequence of inserts and removes, with ids near and far, leaves
        /// the table equal to a `BTreeMap` given the same sequence.
        #[test]
        fn page_table_matches_a_btreemap(
            ops in proptest::collection::vec((0u8..3, 0u64..20_000, any::<u32>()), 0..400),
        ) {
            let mut t: PageTable<u32> = PageTable::default();
            let mut m: BTreeMap<u64, u32> = BTreeMap::new();
            for (op, id, v) in ops {
                // Mostly small ids, some far ones (beyond the dense range).
                let id = if id % 7 == 0 { id * 1000 + 1 } else { id };
                match op {
                    0 | 1 => prop_assert_eq!(t.insert(PageId(id), v), m.insert(id, v)),
                    _ => prop_assert_eq!(t.remove(PageId(id)), m.remove(&id)),
                }
                prop_assert_eq!(t.get(PageId(id)), m.get(&id));
            }
            let want: Vec<PageId> = m.keys().map(|&k| PageId(k)).collect();
            prop_assert_eq!(t.ids(), want);
            for (&k, v) in &m {
                prop_assert_eq!(t.get(PageId(k)), Some(v));
                prop_assert!(t.contains(PageId(k)));
            }
        }
    }

    proptest! {
        /// `PageBits` answers as a `BTreeSet` given the same inserts and
        /// removals, for ids below and above its bound, as the bound grows.
        #[test]
        fn page_bits_match_a_btreeset(
            bound in 0u64..300,
            ops in proptest::collection::vec((0u8..8, 0u64..1000), 0..200),
        ) {
            let mut bits = PageBits::with_bound(bound);
            let mut set = std::collections::BTreeSet::new();
            for (op, id) in ops {
                match op {
                    0 => {
                        bits.remove(PageId(id));
                        set.remove(&id);
                    }
                    1 => bits.grow_to(id),
                    _ => prop_assert_eq!(bits.insert(PageId(id)), set.insert(id)),
                }
            }
            for id in 0..1000 {
                prop_assert_eq!(bits.contains(PageId(id)), set.contains(&id));
            }
        }
    }

    #[test]
    fn far_ids_move_into_slots_when_the_dense_range_grows() {
        let mut t: PageTable<u64> = PageTable::default();
        let far = (DENSE_SLACK * 3) as u64;
        t.insert(PageId(far), 7);
        for i in 1..=(DENSE_SLACK as u64 * 2) {
            t.insert(PageId(i), i);
        }
        assert_eq!(t.get(PageId(far)), Some(&7));
        assert_eq!(t.remove(PageId(far)), Some(7));
        assert_eq!(t.get(PageId(far)), None);
        assert_eq!(t.ids().len(), DENSE_SLACK * 2);
    }
}
