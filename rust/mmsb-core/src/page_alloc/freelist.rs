//! A lock-free LIFO freelist of slot indices (a Treiber stack), ABA-safe by a
//! generation tag.
//!
//! The stack holds *indices* (`u32`) of free slots, not pointers. Each slot has
//! a link word, an [`AtomicU32`] kept in a side table owned by the caller (the
//! [`Links`] trait), never inside the slot's own memory: a pop that lost a race
//! may read the link of a slot another thread already owns, and because links
//! are atomics outside the page bytes, that read is a well-defined (if stale)
//! atomic load instead of a data race on user memory.
//!
//! The head is one [`AtomicU64`]: the low 32 bits are the top index (or
//! [`NIL`]), the high 32 bits a tag incremented by every successful push and
//! pop. This is the classic ABA defence: thread A reads head `(t, i)` and
//! `next = link[i]`; meanwhile B pops `i`, pops `j`, pushes `i` back. Without a
//! tag A's compare-and-swap would still see top `i` and install `next == j`,
//! handing out `j`, which B owns. With the tag, B's three operations moved the
//! head to `(t + 3, i)` and A's CAS fails. A false success needs exactly 2^32
//! successful operations on this one list between A's load and A's CAS, while A
//! is descheduled inside a loop of a few instructions; we accept that, as
//! packed-tag stacks in practice do, because a 64-bit CAS on a packed word is
//! portable (no 128-bit CAS needed) and needs no epoch bookkeeping. (An epoch
//! scheme would free us of the tag, but memory here is never returned to the
//! OS while the allocator lives, so reclamation safety, the usual reason for
//! epochs, is not a concern: only ABA is, and the tag solves it.)
//!
//! Link values: a free slot's link is the index below it (or [`NIL`]); a slot
//! handed out by [`Freelist::pop`] has link [`LIVE`]. Freeing checks and flips
//! `LIVE` with a compare-and-swap ([`Freelist::mark_free`]), so a double free is
//! reported instead of corrupting the list.
//!
//! Memory ordering: a push writes the link with a relaxed store and publishes
//! it with a release CAS of the head; a pop reads the head with acquire, so the
//! link it then reads (and the bytes the freeing thread wrote to the slot) are
//! visible. Pops that read a stale link always fail their CAS (the tag moved).
//! The loom test explores these interleavings.

use super::sync::{AtomicU32, AtomicU64, Ordering};

/// The link value "no slot" (end of list; also an empty head).
pub const NIL: u32 = u32::MAX;
/// The link value of a slot that is allocated (not on any freelist).
pub const LIVE: u32 = u32::MAX - 1;
/// Largest usable slot index.
pub const MAX_INDEX: u32 = u32::MAX - 2;

/// Where the link word of each slot lives (a side table indexed by slot).
pub trait Links {
    /// The link word of slot `index`. Only called with indices that were pushed
    /// onto (or carved for) a freelist using this table.
    fn link(&self, index: u32) -> &AtomicU32;
}

#[inline]
fn pack(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

#[inline]
fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// A lock-free stack of slot indices with a tagged head.
pub struct Freelist {
    head: AtomicU64,
}

impl Default for Freelist {
    fn default() -> Self {
        Freelist::new()
    }
}

impl Freelist {
    /// An empty freelist.
    pub fn new() -> Freelist {
        Freelist {
            head: AtomicU64::new(pack(0, NIL)),
        }
    }

    /// Takes the top free slot, marking its link [`LIVE`]; `None` when empty.
    /// Adds the number of failed compare-and-swaps to `retries`.
    #[inline]
    pub fn pop<L: Links + ?Sized>(&self, links: &L, retries: &mut u64) -> Option<u32> {
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(cur);
            if top == NIL {
                return None;
            }
            // May be stale (another thread popped `top` after our load); then the
            // tag has moved and the CAS below fails.
            let next = links.link(top).load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                cur,
                pack(tag.wrapping_add(1), next),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    links.link(top).store(LIVE, Ordering::Relaxed);
                    return Some(top);
                }
                Err(now) => {
                    *retries += 1;
                    cur = now;
                }
            }
        }
    }

    /// Takes the whole list at once: returns its top index ([`NIL`] when
    /// empty); the caller now owns the chain, linked through `links` and ending
    /// in [`NIL`]. Their links are left as they are (not [`LIVE`]).
    pub fn take_all(&self, retries: &mut u64) -> u32 {
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(cur);
            if top == NIL {
                return NIL;
            }
            match self.head.compare_exchange_weak(
                cur,
                pack(tag.wrapping_add(1), NIL),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return top,
                Err(now) => {
                    *retries += 1;
                    cur = now;
                }
            }
        }
    }

    /// Pushes the chain `first -> ... -> last` (already linked through
    /// `links`, each link but `last`'s pointing at the next) in one CAS.
    /// The slots must be owned by the caller and on no list.
    #[inline]
    pub fn push_chain<L: Links + ?Sized>(
        &self,
        links: &L,
        first: u32,
        last: u32,
        retries: &mut u64,
    ) {
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(cur);
            links.link(last).store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                cur,
                pack(tag.wrapping_add(1), first),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => {
                    *retries += 1;
                    cur = now;
                }
            }
        }
    }

    /// Pushes one slot the caller owns (see [`Freelist::mark_free`]).
    #[inline]
    pub fn push<L: Links + ?Sized>(&self, links: &L, index: u32, retries: &mut u64) {
        self.push_chain(links, index, index, retries);
    }

    /// Checks that slot `index` is allocated and marks it as being freed.
    /// Returns `false` (and changes nothing) when the slot is not [`LIVE`]:
    /// it is already free, so this would be a double free.
    #[inline]
    pub fn mark_free<L: Links + ?Sized>(links: &L, index: u32) -> bool {
        links
            .link(index)
            .compare_exchange(LIVE, NIL, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the list is empty at this instant (a hint under concurrency).
    pub fn is_empty(&self) -> bool {
        unpack(self.head.load(Ordering::Relaxed)).1 == NIL
    }
}

// Not in the loom build, which compiles this file with loom's atomics (usable
// only inside `loom::model`).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Table(Vec<AtomicU32>);
    impl Links for Table {
        fn link(&self, index: u32) -> &AtomicU32 {
            &self.0[index as usize]
        }
    }

    fn table(n: u32) -> Table {
        Table((0..n).map(|_| AtomicU32::new(LIVE)).collect())
    }

    #[test]
    fn pops_return_pushed_slots_in_lifo_order() {
        let t = table(4);
        let f = Freelist::new();
        let mut r = 0;
        assert_eq!(f.pop(&t, &mut r), None);
        for i in 0..4 {
            assert!(Freelist::mark_free(&t, i));
            f.push(&t, i, &mut r);
        }
        let popped: Vec<u32> = std::iter::from_fn(|| f.pop(&t, &mut r)).collect();
        assert_eq!(popped, vec![3, 2, 1, 0]);
        assert!(f.is_empty());
        // (No assertion on `r`: a weak CAS may fail spuriously even alone, as
        // Miri simulates.)
    }

    #[test]
    fn chain_push_links_every_slot() {
        let t = table(5);
        for i in 0..4 {
            t.0[i as usize].store(i + 1, Ordering::Relaxed);
        }
        let f = Freelist::new();
        let mut r = 0;
        f.push_chain(&t, 0, 4, &mut r);
        let popped: Vec<u32> = std::iter::from_fn(|| f.pop(&t, &mut r)).collect();
        assert_eq!(popped, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn double_free_is_refused() {
        let t = table(1);
        let f = Freelist::new();
        let mut r = 0;
        assert!(Freelist::mark_free(&t, 0));
        f.push(&t, 0, &mut r);
        assert!(!Freelist::mark_free(&t, 0));
        assert_eq!(f.pop(&t, &mut r), Some(0));
        assert!(Freelist::mark_free(&t, 0));
    }
}
