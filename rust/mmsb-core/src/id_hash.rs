//! A fast hash for small integer keys (page ids, function ids).
//!
//! The standard library's SipHash is built to resist hash flooding by
//! untrusted keys; page and function ids are handed out by the engine itself,
//! and the graph and the wave planner hash them several times per page per
//! wave, where SipHash costs more than the rest of the lookup. [`IdHasher`] is
//! the multiply-rotate hash of rustc's `FxHasher` (one multiply per word).
//! Iteration order of maps using it is deterministic (no random seed), though
//! code that needs an order still sorts.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hasher (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Builds [`IdHasher`]s.
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;
/// A `HashMap` keyed by ids, hashed with [`IdHasher`].
pub type IdHashMap<K, V> = HashMap<K, V, IdBuildHasher>;
/// A `HashSet` of ids, hashed with [`IdHasher`].
pub type IdHashSet<K> = HashSet<K, IdBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_id::PageId;
    use std::hash::BuildHasher;

    fn h(p: PageId) -> u64 {
        IdBuildHasher::default().hash_one(p)
    }

    #[test]
    fn distinct_small_ids_hash_apart() {
        let hs: HashSet<u64> = (0..10_000).map(|i| h(PageId(i))).collect();
        assert_eq!(hs.len(), 10_000);
    }

    #[test]
    fn maps_behave_like_std_maps() {
        let mut a: IdHashMap<PageId, u64> = IdHashMap::default();
        let mut b: std::collections::BTreeMap<PageId, u64> = Default::default();
        for i in 0..1000u64 {
            let k = PageId((i * 7919) % 1013);
            *a.entry(k).or_default() += i;
            *b.entry(k).or_default() += i;
        }
        let mut av: Vec<_> = a.into_iter().collect();
        av.sort_unstable();
        assert_eq!(av, b.into_iter().collect::<Vec<_>>());
    }
}
