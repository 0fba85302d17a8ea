//! Per-thread caches in front of the shared freelists (the global allocator).
//!
//! Even uncontended, every compare-and-swap or atomic add is a locked
//! instruction of some 20 cycles; a shared-freelist allocate+free pair needs
//! four of them. So the process-wide allocator keeps, per thread and size
//! class, two private lists of slots, touched only by their thread (relaxed
//! loads and stores: plain moves):
//!
//! * the **free list**: slots this thread freed, reused first (LIFO, warm in
//!   cache), linked through the slots themselves. When it holds
//!   [`flush_limit`] slots (at most 63, at most 256 KiB), it goes to the
//!   thread's shard as one chain, one CAS.
//! * the **alloc list**: a whole chain taken from the shared freelists in one
//!   CAS ([`Freelist::take_all`](super::freelist::Freelist::take_all)), or a
//!   freshly carved chunk, linked through the link table and consumed by later
//!   allocations.
//!
//! The fast paths are what mimalloc's are: an allocation pops the free list, a
//! free pushes on it, no atomic read-modify-write, no lock, no chunk-table
//! walk. Per allocate+free pair they store to memory five times besides the
//! page itself: the list head twice, the free-list entry (two words) and one
//! counter. The free list's length rides in the low bits of the head pointer
//! (slots are 64-byte aligned), and the allocation count is derived rather
//! than counted (below).
//!
//! **Link words.** A slot's link word (see [`freelist`](super::freelist))
//! says [`LIVE`] while the slot is outside the shared freelists and alloc
//! lists: handed out, *or on a thread's free list*. The fast paths leave it
//! alone (a store each way to a line of its own cost some 7% of a 1 KiB
//! allocate+free pair); the link changes when the slot leaves the thread:
//! `LocalClass::flush` chains the slots through their links. So
//! [`free_raw`](super::PageAllocator::free_raw) cannot tell a slot on another
//! thread's free list from a live one (that case is its documented "memory
//! owned by someone else" misuse); it does check the calling thread's own
//! free list (`LocalClass::contains`), so a pointer freed and then freed
//! again on one thread is still refused.
//!
//!
//! **Counters.** A thread counts, per class, its frees (`frees`, one plain
//! increment per free), the slots its free list handed on to the shared
//! freelists (`flushed`) and its allocations that did not come from the free
//! list (`taken`). Every slot pushed on the free list either is still on it
//! (the length in the head), or was flushed, or was popped by an allocation,
//! so allocations = `taken` + `frees` - `flushed` - length, exactly.
//! [`PageAllocator::stats`](super::PageAllocator::stats) sums these over a
//! registry of live caches; when a thread exits, its cache gives every slot
//! back to the shared freelists and folds its counts into the class.
//!
//! The cost: a thread may hold up to one chunk (about 1 MiB) per class it
//! allocated from, plus its free list, that other threads cannot use until it
//! flushes or exits (mimalloc's thread-owned pages make the same trade).

use super::freelist::{LIVE, NIL};
use super::size_class::NUM_CLASSES;
use super::slab_class::SlabClass;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Slots a thread's free list of a class may hold before it is flushed (at
/// most `TAG_MASK`: the length is kept in the head pointer's low bits).
pub fn flush_limit(slot_size: usize) -> u32 {
    ((256 * 1024) / slot_size).clamp(4, TAG_MASK) as u32
}

/// Low bits of a slot address that are always zero (slots are 64-byte
/// aligned): the free list keeps its length there.
const TAG_MASK: usize = 63;

/// One class of one thread. Written only by the owning thread; the counters
/// and the head are read by others (for statistics).
///
/// The free list is intrusive: a slot on it holds, in its first 12 bytes, the
/// head word below it (8 bytes: the next slot's address with the then length
/// in its low bits) and its own index (4 bytes). That is sound because a slot
/// on a thread's free list belongs to that thread alone (its `Block` was given
/// up, and no shared list holds it), and it makes an allocation a single load
/// from memory the allocation is about to zero anyway, instead of a walk
/// through the link table; popping restores the head word below, length
/// included.
///
/// The fast paths ([`LocalClass::pop`], [`LocalClass::push`]) touch this
/// struct (one cache line) and the slot, nothing else.
#[repr(align(64))]
pub(crate) struct LocalClass {
    /// The free list's head word: address of the first slot (null when empty)
    /// with the list's length in the low [`TAG_MASK`] bits.
    free_head: AtomicPtr<u8>,
    /// Frees by this thread (every push).
    frees: AtomicU64,
    /// Slots the free list handed to the shared freelists.
    flushed: AtomicU64,
    /// Allocations not served by the free list (alloc list or refill).
    taken: AtomicU64,
    /// First slot of the alloc list (a chain through the link table), or NIL.
    alloc_head: AtomicU32,
    /// Slots the free list holds before it is flushed.
    flush_limit: u32,
}

/// Increment by the single writer: a load and a store, no locked instruction.
#[inline(always)]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// The slot address of a head word (its length bits cleared).
#[inline(always)]
fn slot_of(word: *mut u8) -> *mut u8 {
    word.map_addr(|a| a & !TAG_MASK)
}

/// The free-list length a head word carries.
#[inline(always)]
fn len_of(word: *mut u8) -> u32 {
    (word.addr() & TAG_MASK) as u32
}

/// Reads the (head word below, index) pair a free-list slot holds.
///
/// # Safety
/// `p` is a slot on the calling thread's free list (written by `push`).
#[inline(always)]
unsafe fn read_entry(p: *mut u8) -> (*mut u8, u32) {
    // SAFETY: the caller's contract: `p` is a 64-byte aligned slot of at least
    // 64 bytes, owned by this thread, whose first 12 bytes `push` wrote.
    unsafe { (p.cast::<*mut u8>().read(), p.add(8).cast::<u32>().read()) }
}

impl LocalClass {
    /// The cache of one thread for `class`.
    pub fn new(class: &SlabClass) -> LocalClass {
        LocalClass {
            free_head: AtomicPtr::new(std::ptr::null_mut()),
            frees: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            alloc_head: AtomicU32::new(NIL),
            flush_limit: class.flush_limit(),
        }
    }

    /// (allocations, frees) by this thread: exact when the thread is not
    /// allocating or freeing in this class at the same time (else each term
    /// is a recent value, so the sum is approximate; never negative).
    pub fn counts(&self) -> (u64, u64) {
        let len = u64::from(len_of(self.free_head.load(Ordering::Relaxed)));
        let flushed = self.flushed.load(Ordering::Relaxed);
        let taken = self.taken.load(Ordering::Relaxed);
        let frees = self.frees.load(Ordering::Relaxed);
        // Every pushed slot was popped, flushed, or is still on the list.
        let popped = frees.saturating_sub(flushed).saturating_sub(len);
        (taken + popped, frees)
    }

    /// The fast allocation: the top of the free list (its link word still
    /// says LIVE); `None` when the free list is empty (then see
    /// [`LocalClass::take`]).
    #[inline(always)]
    pub fn pop(&self) -> Option<(NonNull<u8>, u32)> {
        let p = NonNull::new(slot_of(self.free_head.load(Ordering::Relaxed)))?;
        // SAFETY: a non-null free head is a slot on this thread's free list.
        let (below, index) = unsafe { read_entry(p.as_ptr()) };
        self.free_head.store(below, Ordering::Relaxed);
        Some((p, index))
    }

    /// An allocation when the free list is empty: the next slot of the alloc
    /// list, refilled from the shared freelists (or a new chunk) when empty.
    #[inline(never)]
    pub fn take(
        &self,
        class: &SlabClass,
        shard: usize,
    ) -> crate::error::Result<(NonNull<u8>, u32)> {
        if let Some(r) = self.pop() {
            return Ok(r);
        }
        let a = self.alloc_head.load(Ordering::Relaxed);
        let index = if a != NIL {
            a
        } else {
            class.take_chain(shard)?
        };
        let (link, ptr) = class.slot(index);
        self.alloc_head
            .store(link.load(Ordering::Relaxed), Ordering::Relaxed);
        link.store(LIVE, Ordering::Relaxed);
        bump(&self.taken, 1);
        Ok((ptr, index))
    }

    /// The fast free: slot `index` at `ptr` of this class, given up by its
    /// owner, goes on top of the free list (its link word stays LIVE).
    /// Returns `true` when the list is full and must be flushed
    /// ([`LocalClass::flush`]).
    ///
    /// # Safety
    /// `ptr` is slot `index` of the class this cache serves, live (handed out
    /// by this allocator and not freed since), and the caller gives it up.
    #[inline(always)]
    pub unsafe fn push(&self, ptr: NonNull<u8>, index: u32) -> bool {
        let below = self.free_head.load(Ordering::Relaxed);
        // SAFETY: the slot (64-byte aligned, at least 64 bytes) was just given
        // up by its owner and now belongs to this thread's free list alone.
        unsafe {
            ptr.as_ptr().cast::<*mut u8>().write(below);
            ptr.as_ptr().add(8).cast::<u32>().write(index);
        }
        let n = len_of(below) + 1;
        // n <= flush_limit <= TAG_MASK: the length fits the alignment bits.
        self.free_head
            .store(ptr.as_ptr().map_addr(|a| a | n as usize), Ordering::Relaxed);
        bump(&self.frees, 1);
        n >= self.flush_limit
    }

    /// Moves the whole free list to shard `shard` as one chain: links it
    /// through the link table (a walk of at most the flush limit), one CAS.
    #[cold]
    #[inline(never)]
    pub fn flush(&self, class: &SlabClass, shard: usize) {
        let word = self.free_head.load(Ordering::Relaxed);
        let mut p = slot_of(word);
        if p.is_null() {
            return;
        }
        // SAFETY: p is the head of this thread's free list.
        let (mut below, first) = unsafe { read_entry(p) };
        let mut last = first;
        while !slot_of(below).is_null() {
            p = slot_of(below);
            // SAFETY: every entry of the list is a slot on this thread's free list.
            let (b, index) = unsafe { read_entry(p) };
            class.set_link(last, index);
            last = index;
            below = b;
        }
        class.give_chain(shard, first, last);
        // The count first, then the empty head: a concurrent `counts` that
        // sees the stores in this order under-counts allocations for an
        // instant rather than over-counting them (it is exact once the
        // thread is quiet either way).
        bump(&self.flushed, u64::from(len_of(word)));
        self.free_head
            .store(std::ptr::null_mut(), Ordering::Relaxed);
    }

    /// Whether `ptr` is on this free list (a walk of at most the flush
    /// limit). Only for the owning thread.
    pub fn contains(&self, ptr: *const u8) -> bool {
        let mut p = slot_of(self.free_head.load(Ordering::Relaxed));
        while !p.is_null() {
            if std::ptr::eq(p, ptr) {
                return true;
            }
            // SAFETY: the caller is the owning thread, so every entry of the
            // list is a slot on its free list, written by `push`.
            p = slot_of(unsafe { read_entry(p) }.0);
        }
        false
    }

    /// Gives every cached slot back to the shared freelists.
    pub fn drain(&self, class: &SlabClass, shard: usize) {
        self.flush(class, shard);
        let a = self.alloc_head.swap(NIL, Ordering::Relaxed);
        if a != NIL {
            let mut last = a;
            loop {
                let next = class.next_of(last);
                if next == NIL {
                    break;
                }
                last = next;
            }
            class.give_chain(shard, a, last);
        }
    }
}

/// The cache of one thread: one [`LocalClass`] per size class.
pub(crate) struct ThreadCache {
    pub shard: usize,
    /// Inline (not boxed): one load fewer from the thread's pointer to a class.
    pub classes: [LocalClass; NUM_CLASSES],
}

impl ThreadCache {
    pub fn new(shard: usize, classes: &[SlabClass]) -> ThreadCache {
        ThreadCache {
            shard,
            classes: std::array::from_fn(|c| LocalClass::new(&classes[c])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::size_class::class_size;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn flush_limits_fit_the_length_bits_of_the_head() {
        for c in 0..NUM_CLASSES {
            let l = flush_limit(class_size(c)) as usize;
            assert!((4..=TAG_MASK).contains(&l), "class {c}: limit {l}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The derived allocation count (taken + frees - flushed - length)
        /// equals a model that counts every operation, after every step;
        /// no slot is handed out twice; `contains` agrees with the model of
        /// the free list.
        #[test]
        fn derived_counts_equal_a_model_of_every_operation(
            ops in prop::collection::vec((any::<bool>(), any::<usize>()), 1..300),
            size_class in 0usize..3,
        ) {
            let class = SlabClass::new([64, 1024, 8192][size_class]);
            let lc = LocalClass::new(&class);
            let mut held: Vec<(NonNull<u8>, u32)> = Vec::new();
            let mut cached: Vec<NonNull<u8>> = Vec::new(); // model of the free list
            let mut live: HashSet<NonNull<u8>> = HashSet::new();
            let (mut allocs, mut frees) = (0u64, 0u64);
            for (alloc, pick) in ops {
                if alloc || held.is_empty() {
                    let (p, i) = lc.take(&class, 0).unwrap();
                    prop_assert!(live.insert(p), "slot handed out twice");
                    if cached.last() == Some(&p) {
                        cached.pop();
                    }
                    prop_assert_eq!(class.slot(i).1, p, "index and address agree");
                    held.push((p, i));
                    allocs += 1;
                } else {
                    let (p, i) = held.swap_remove(pick % held.len());
                    live.remove(&p);
                    // SAFETY: (p, i) is a live slot of `class` that we give up.
                    if unsafe { lc.push(p, i) } {
                        lc.flush(&class, 0);
                        cached.clear();
                    } else {
                        cached.push(p);
                    }
                    frees += 1;
                }
                prop_assert_eq!(lc.counts(), (allocs, frees));
                prop_assert_eq!(u64::from(len_of(lc.free_head.load(Ordering::Relaxed))), cached.len() as u64);
                for p in &cached {
                    prop_assert!(lc.contains(p.as_ptr()));
                }
                for (p, _) in &held {
                    prop_assert!(!lc.contains(p.as_ptr()));
                }
            }
            for (p, i) in held {
                // SAFETY: as above.
                if unsafe { lc.push(p, i) } {
                    lc.flush(&class, 0);
                }
                frees += 1;
            }
            lc.drain(&class, 0);
            prop_assert_eq!(lc.counts(), (allocs, frees));
            let s = class.stats(lc.counts());
            prop_assert_eq!(s.live_pages, 0);
            // Everything went back to the shared lists: every slot of the
            // carved chunks is free there, and none is LIVE.
            let mut r = 0;
            let mut n = 0u64;
            while let Some(i) = class.shards_pop_for_test(&mut r) {
                prop_assert_eq!(class.next_of(i), LIVE); // popped: marked LIVE
                n += 1;
            }
            prop_assert_eq!(n * class.slot_size() as u64, s.reserved_bytes);
        }
    }
}
